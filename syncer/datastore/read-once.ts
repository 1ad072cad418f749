// A one-shot read of any datastore, for CLI commands (eval, explain): start it, take its first
// complete listing, stop. A datastore that cannot be reached fails fast with its reason instead of
// retrying as the syncer does.
import { type Resource, type ResourceError, resourceId } from '../../model/resources.ts';
import { FileDatastore } from './file.ts';
import { type DatastoreFlags, openConnection, parseDatastoreSpec } from './open.ts';
import type { Datastore } from './types.ts';

export interface ReadResult {
  resources: Resource[];
  errors: ResourceError[];
}

export async function readOnce(ds: Datastore, timeoutMs = 30_000): Promise<ReadResult> {
  const state = new Map<string, Resource>();
  const errors: ResourceError[] = [];
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
        onErrors: (errs) => errors.push(...errs),
      }).catch(reject);
    });
  } finally {
    clearTimeout(timer);
    await ds.stop();
  }
  return { resources: [...state.values()], errors };
}

/** `--datastore` (and its flags) read once: a file directory directly, anything else through its driver. */
export async function readDatastore(spec: string, flags: DatastoreFlags = {}): Promise<ReadResult> {
  const config = parseDatastoreSpec(spec, flags);
  if (config.type === 'file') return FileDatastore.load(config.dir);
  return readOnce(openConnection(config));
}
