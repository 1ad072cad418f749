// The interface every datastore driver (file, etcdv3, kubernetes) offers the syncer: a listing,
// then changes, with a monotonically increasing revision and a sync status.
import type { Resource, ResourceError, ResourceKind } from '../../model/resources.ts';

export type DatastoreStatus = 'Connecting' | 'ResyncInProgress' | 'InSync' | 'ConnectionFailed';

export type DatastoreEvent =
  | { type: 'upsert'; resource: Resource }
  | { type: 'delete'; kind: ResourceKind; name: string; namespace?: string };

export interface DatastoreHandlers {
  /**
   * A batch of changes; `revision` increases monotonically from batch to batch. The first batch
   * after 'ResyncInProgress' is a complete listing (an upsert for everything that exists), as in
   * Calico's syncers: whatever it does not mention is gone.
   */
  onEvents(events: DatastoreEvent[], revision: number): void;
  onStatus(status: DatastoreStatus, detail?: string): void;
  /** Refused documents (the datastore also logs them at warn). */
  onErrors?(errors: ResourceError[]): void;
}

export interface Datastore {
  /** For logs and status, e.g. `file:/path`. */
  readonly description: string;
  /**
   * Emits the initial listing as one batch, then 'InSync', then changes. Resolves once the first
   * attempt is over (in sync, or failed and retrying); it never rejects for an unreachable store.
   */
  start(handlers: DatastoreHandlers): Promise<void>;
  /** Stops watching; no handler is called after the returned promise resolves. */
  stop(): Promise<void>;
}
