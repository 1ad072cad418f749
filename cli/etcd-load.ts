// `fedmesh etcd-load --endpoints URL DIR`: write a cluster directory (the file datastore's YAML)
// into etcd in Calico's layout, e.g. to try the etcdv3 datastore, or to seed a test etcd.
import { etcdClient } from '../syncer/datastore/etcd.ts';
import { loadDirectory } from '../syncer/datastore/etcd-load.ts';
import { type DatastoreFlags, parseDatastoreSpec } from '../syncer/datastore/open.ts';

export async function runEtcdLoad(opts: {
  endpoints: string;
  flags: DatastoreFlags;
  dir: string;
}): Promise<number> {
  const conn = parseDatastoreSpec(`etcdv3:${opts.endpoints}`, opts.flags);
  if (conn.type !== 'etcdv3') throw new Error('expected etcd endpoints');
  const client = etcdClient(conn);
  try {
    const report = await loadDirectory(client, opts.dir);
    for (const s of report.skipped) process.stderr.write(`skipped: ${s.source}: ${s.reason}\n`);
    process.stdout.write(`wrote ${report.written.length} keys to ${conn.endpoints.join(',')}\n`);
    return 0;
  } finally {
    client.close();
  }
}
