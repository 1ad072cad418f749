// One read of a cluster's datastore for the CLI (eval, explain): its resources, with what was
// refused written as warnings (to stderr unless the caller says where), as a person at a terminal
// wants it.
import type { Resource } from '../model/resources.ts';
import { readOnce } from '../syncer/datastore/read-once.ts';
import type { Datastore } from '../syncer/datastore/types.ts';

export async function readCluster(
  ds: Datastore,
  warn: (text: string) => void = (t) => process.stderr.write(t),
): Promise<Resource[]> {
  const { resources, errors } = await readOnce(ds);
  for (const e of errors)
    warn(`warning: ${e.origin.source}: ${e.resource ?? ''} ${e.field ?? ''}: ${e.message}\n`);
  return resources;
}
