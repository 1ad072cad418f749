// One read of a datastore, for the CLI commands that look at a cluster once (eval, explain): the
// driver's own list() when it has one; else start it, take its first complete listing, stop. A
// datastore that cannot be reached fails fast with its reason instead of retrying as the syncer
// does.
import { type Resource, resourceId } from '../../model/resources.ts';
import type { Datastore, DatastoreSnapshot } from './types.ts';

export async function readOnce(ds: Datastore, timeoutMs = 30_000): Promise<DatastoreSnapshot> {
  if (ds.list) return ds.list();
  const state = new Map<string, Resource>();
  const snapshot: DatastoreSnapshot = { resources: [], errors: [], skipped: [] };
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${ds.description}: not in sync after ${timeoutMs / 1000}s`)),
        timeoutMs,
      );
      ds.start({
        onEvents: (events) => {
          for (const ev of events) {
            if (ev.type === 'upsert') state.set(resourceId(ev.resource), ev.resource);
            else state.delete(resourceId(ev));
          }
        },
        onStatus: (status, detail) => {
          if (status === 'InSync') resolve();
          if (status === 'ConnectionFailed')
            reject(new Error(`${ds.description}: ${detail ?? 'connection failed'}`));
        },
        onErrors: (errs) => snapshot.errors.push(...errs),
      }).catch(reject);
    });
  } finally {
    clearTimeout(timer);
    await ds.stop();
  }
  snapshot.resources = [...state.values()];
  return snapshot;
}
