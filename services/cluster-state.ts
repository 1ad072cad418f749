// One datastore's resources as last listed and changed, with the datastore contract's resync rule:
// the first batch after ResyncInProgress is a complete listing, so whatever it omits is gone.
import { type Resource, resourceId } from '../model/resources.ts';
import type { DatastoreEvent, DatastoreStatus } from '../syncer/datastore/types.ts';

export class ClusterState {
  private readonly resources = new Map<string, Resource>();
  private listingExpected = true;
  status: DatastoreStatus = 'Connecting';
  detail = '';
  /** Has a complete listing ever arrived (the datastore was in sync at least once)? */
  synced = false;

  onStatus(status: DatastoreStatus, detail?: string): void {
    this.status = status;
    this.detail = detail ?? '';
    if (status === 'ResyncInProgress' || status === 'Connecting') this.listingExpected = true;
    if (status === 'InSync') this.synced = true;
  }

  apply(events: readonly DatastoreEvent[]): void {
    if (this.listingExpected) {
      this.resources.clear();
      this.listingExpected = false;
    }
    for (const ev of events) {
      if (ev.type === 'upsert') this.resources.set(resourceId(ev.resource), ev.resource);
      else this.resources.delete(resourceId({ kind: ev.kind, name: ev.name, namespace: ev.namespace }));
    }
  }

  values(): IterableIterator<Resource> {
    return this.resources.values();
  }

  clear(): void {
    this.resources.clear();
  }
}
