// One read of a datastore, for the CLI commands that look at a cluster once (eval, explain): the
// driver's own list() when it has one, else a start that is stopped as soon as the first listing
// is in (or the first attempt failed).
import { type Resource, resourceId } from '../../model/resources.ts';
import type { Datastore, DatastoreSnapshot, DatastoreStatus } from './types.ts';

export async function readOnce(ds: Datastore): Promise<DatastoreSnapshot> {
  if (ds.list) return ds.list();
  const resources = new Map<string, Resource>();
  const snapshot: DatastoreSnapshot = { resources: [], errors: [], skipped: [] };
  let status: { status: DatastoreStatus; detail?: string } | undefined;
  await ds.start({
    onEvents: (events) => {
      for (const ev of events) {
        if (ev.type === 'upsert') resources.set(resourceId(ev.resource), ev.resource);
        else resources.delete(resourceId(ev));
      }
    },
    onStatus: (s, detail) => {
      status = { status: s, ...(detail !== undefined ? { detail } : {}) };
    },
    onErrors: (errors) => snapshot.errors.push(...errors),
  });
  await ds.stop();
  if (status?.status !== 'InSync')
    throw new Error(`${ds.description}: ${status?.detail ?? status?.status ?? 'not read'}`);
  snapshot.resources = [...resources.values()];
  return snapshot;
}
