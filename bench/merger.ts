// `npm run bench -- merger [endpoints]`: the syncer's Merger with two remotes of N workload
// endpoints each (in-memory datastores, so only the merge is timed: renaming, conflict checks
// against the local pools and between remotes, the feed cache), then single-endpoint changes.
// Prints each figure with its target and the ratio.
import type { Resource } from '../model/resources.ts';
import { parseYamlDocuments } from '../model/validate.ts';
import type { ConnectionConfig } from '../syncer/datastore/connection.ts';
import type { Datastore, DatastoreEvent, DatastoreHandlers } from '../syncer/datastore/types.ts';
import { FeedCache } from '../syncer/feed-cache.ts';

process.env.FEDMESH_LOG_LEVEL ??= 'silent';
const { Merger } = await import('../syncer/merger.ts');

const N = Number(process.argv[2] ?? 10_000);

class MemoryDatastore implements Datastore {
  handlers?: DatastoreHandlers;
  constructor(readonly description: string) {}
  async start(h: DatastoreHandlers): Promise<void> {
    this.handlers = h;
  }
  async stop(): Promise<void> {}
  setListing(rs: Resource[]): void {
    const h = this.handlers!;
    h.onStatus('ResyncInProgress');
    h.onEvents(
      rs.map((resource): DatastoreEvent => ({ type: 'upsert', resource })),
      1,
    );
    h.onStatus('InSync');
  }
}

const parse = (yaml: string) => parseYamlDocuments(yaml, { source: 'bench', baseDir: '/bench' }).resources;

function endpoints(cluster: string, second: number, n: number): Resource[] {
  const docs: string[] = [];
  for (let i = 0; i < n; i++) {
    const ip = `10.${second}.${Math.floor(i / 250)}.${(i % 250) + 1}`;
    docs.push(
      `apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: ${cluster}-w${i}, namespace: shop, labels: {app: a${i % 10}}}\nspec: {node: n${i % 50}, pod: p${i}, interfaceName: cali${String(i).padStart(11, '0')}, ipNetworks: [${ip}/32]}`,
    );
  }
  return parse(docs.join('\n---\n'));
}

const local = new MemoryDatastore('local');
const remotes = new Map<string, MemoryDatastore>();
const cache = new FeedCache();
const merger = new Merger({
  cluster: 'a',
  local,
  cache,
  openRemote: (c: ConnectionConfig) => {
    const ds = new MemoryDatastore(c.type === 'file' ? c.dir : c.type);
    remotes.set(ds.description, ds);
    return ds;
  },
  remoteSyncTimeoutMs: 60_000,
  remoteRetentionMs: 60_000,
});
await merger.start();
local.setListing(
  parse(`apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: a-pool}
spec: {cidr: 10.10.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: flat-b}
spec: {cidr: 10.20.0.0/16, disabled: true}
---
apiVersion: projectcalico.org/v3
kind: RemoteClusterConfiguration
metadata: {name: b}
spec: {datastoreType: file, fileDatastorePath: /b}
---
apiVersion: projectcalico.org/v3
kind: RemoteClusterConfiguration
metadata: {name: c}
spec: {datastoreType: file, fileDatastorePath: /c}`),
);

const report = (what: string, ms: number, targetMs: number) =>
  process.stdout.write(
    `${what}: ${ms.toFixed(2)} ms (target ${targetMs} ms, ratio ${(ms / targetMs).toFixed(2)})\n`,
  );

const listings = { b: endpoints('b', 20, N), c: endpoints('c', 30, N) };
for (const [name, rs] of Object.entries(listings)) {
  const t0 = performance.now();
  remotes.get(`/${name}`)!.setListing(rs);
  report(`remote ${name}: ${N} endpoints listed and merged`, performance.now() - t0, N / 10);
}
for (const name of ['b', 'c']) {
  const first = listings[name as 'b' | 'c'][0] as Resource;
  const ds = remotes.get(`/${name}`)!;
  const rounds = 200;
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++)
    ds.handlers!.onEvents([{ type: 'upsert', resource: { ...first, labels: { app: `x${i}` } } }], 2 + i);
  report(`remote ${name}: one endpoint relabelled`, (performance.now() - t0) / rounds, 2);
}
process.stdout.write(`feed entries: ${cache.size}, in sync: ${cache.inSync}\n`);
await merger.stop();
