// The interface every datastore driver (file, etcdv3, kubernetes) offers the syncer: a listing,
// then changes, with a monotonically increasing revision and a sync status.
import type { Resource, ResourceError, ResourceKind } from '../../model/resources.ts';
import type { SkippedResource } from '../../model/validate.ts';

export type DatastoreStatus = 'Connecting' | 'ResyncInProgress' | 'InSync' | 'ConnectionFailed';

export type DatastoreEvent =
  | { type: 'upsert'; resource: Resource }
  | { type: 'delete'; kind: ResourceKind; name: string; namespace?: string };

export function deleteEvent(r: Resource): DatastoreEvent {
  return {
    type: 'delete',
    kind: r.kind,
    name: r.name,
    ...(r.namespace !== undefined ? { namespace: r.namespace } : {}),
  };
}

/** A datastore read once: what exists, what was refused, what is recognised but not handled. */
export interface DatastoreSnapshot {
  resources: Resource[];
  errors: ResourceError[];
  skipped: SkippedResource[];
}

export interface DatastoreHandlers {
  /**
   * A batch of changes; `revision` increases monotonically from batch to batch. The batches
   * between 'ResyncInProgress' and 'InSync' are a complete listing (an upsert for everything that
   * exists), as in Calico's syncers: whatever they do not mention is gone. A big listing or change
   * may come in several batches (so that no single one stalls the process). After
   * 'ConnectionFailed' a driver may resume without 'ResyncInProgress': it then sends only what
   * changed meanwhile, then 'InSync'.
   */
  onEvents(events: DatastoreEvent[], revision: number): void;
  onStatus(status: DatastoreStatus, detail?: string): void;
  /** Documents refused just now (the datastore also logs them at warn). */
  onErrors?(errors: ResourceError[]): void;
  /**
   * The refusals in force now, complete: replaces what was said before (an empty list when the
   * input has been fixed). For metrics and /status, which must go down when the input is fixed.
   */
  onRefusals?(refusals: ResourceError[]): void;
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
  /**
   * One-shot read for CLI commands (eval, explain), instead of start(); no watch is left behind.
   * Rejects when the store cannot be read. Optional: readOnce() falls back to start/stop.
   */
  list?(): Promise<DatastoreSnapshot>;
}
