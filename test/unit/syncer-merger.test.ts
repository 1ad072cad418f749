// syncer/merger.ts driven by in-memory datastores: the local cluster "a" and, for every
// RemoteClusterConfiguration, a fake remote the test pushes listings, changes and statuses into.
// Assertions are on what an operator (or an agent) observes: the feed cache's contents, its
// in-sync marker and the per-remote status.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Resource } from '../../model/resources.ts';
import { parseYamlDocuments } from '../../model/validate.ts';
import {
  RemoteClusterState,
  type RemoteClusterStatus,
  ResourceKind,
  type Update,
} from '../../proto/service.ts';
import type { ConnectionConfig } from '../../syncer/datastore/connection.ts';
import type {
  Datastore,
  DatastoreEvent,
  DatastoreHandlers,
  DatastoreStatus,
} from '../../syncer/datastore/types.ts';
import { FeedCache, type FeedSubscriber } from '../../syncer/feed-cache.ts';

// Refusals are logged at warn; keep the test output readable (lib/log.ts reads the level when it
// loads, hence the dynamic imports).
process.env.FEDMESH_LOG_LEVEL ??= 'silent';
const { Merger } = await import('../../syncer/merger.ts');

// ---------------------------------------------------------------------------------------------
// Resources

function parse(yaml: string): Resource[] {
  const r = parseYamlDocuments(yaml, { source: 'test.yaml', baseDir: '/tmp' });
  assert.deepEqual(r.errors, [], 'fixture YAML is valid');
  return r.resources;
}

function one(yaml: string): Resource {
  const [r] = parse(yaml);
  assert.ok(r);
  return r;
}

const pool = (name: string, cidr: string) =>
  one(`apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: ${name}}
spec: {cidr: ${cidr}, vxlanMode: Always, natOutgoing: true, blockSize: 26}`);

const node = (name: string, ip: string, tunnel: string, mac: string) =>
  one(`apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: ${name}}
spec:
  bgp: {ipv4Address: ${ip}/24}
  ipv4VXLANTunnelAddr: ${tunnel}
  vxlanTunnelMACAddr: "${mac}"`);

const block = (cidr: string, affinity: string) =>
  one(`apiVersion: crd.projectcalico.org/v1
kind: IPAMBlock
metadata: {name: ${cidr.replace(/[./]/g, '-')}}
spec: {cidr: ${cidr}, affinity: "host:${affinity}"}`);

const namespace = (name: string) =>
  one(`apiVersion: v1
kind: Namespace
metadata: {name: ${name}, labels: {team: web}}`);

const wep = (nodeName: string, pod: string, ip: string, app: string) =>
  one(`apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: ${nodeName}-k8s-${pod}-eth0, namespace: shop, labels: {app: ${app}}}
spec: {node: ${nodeName}, pod: ${pod}, interfaceName: cali-${pod}, ipNetworks: [${ip}/32], profiles: [kns.shop]}`);

const policy = (name: string) =>
  one(`apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: ${name}, namespace: shop}
spec:
  selector: app == 'db'
  ingress: [{action: Allow, source: {selector: app == 'frontend'}}]`);

const globalPolicy = (name: string) =>
  one(`apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: ${name}}
spec: {selector: all(), types: [Ingress]}`);

function rcc(name: string, opts: { overlay?: boolean; type?: 'file' | 'etcdv3' } = {}): Resource {
  const spec =
    opts.type === 'etcdv3'
      ? 'datastoreType: etcdv3'
      : `datastoreType: file\n  fileDatastorePath: /nonexistent/${name}`;
  return one(`apiVersion: projectcalico.org/v3
kind: RemoteClusterConfiguration
metadata: {name: ${name}}
spec:
  ${spec}
  syncOptions: {overlayRoutingMode: ${opts.overlay === false ? 'Disabled' : 'Enabled'}}`);
}

/** Cluster a, as its own syncer reads it (plus the RCCs a test adds). */
const localA = () => [
  pool('a-pool', '10.10.0.0/16'),
  node('a-node1', '192.168.100.11', '10.10.1.0', '66:aa:00:00:00:01'),
  block('10.10.1.0/26', 'a-node1'),
  namespace('shop'),
  wep('a-node1', 'frontend-1', '10.10.1.5', 'frontend'),
  policy('frontend-egress'),
];

/** Cluster b, as a's syncer reads it through an RCC. */
const remoteB = () => [
  pool('b-pool', '10.20.0.0/16'),
  node('b-node1', '192.168.100.21', '10.20.1.0', '66:bb:00:00:00:01'),
  block('10.20.1.0/26', 'b-node1'),
  namespace('shop'),
  wep('b-node1', 'db-1', '10.20.1.5', 'db'),
  wep('b-node1', 'cache-1', '10.20.1.6', 'cache'),
  policy('db-ingress'),
  globalPolicy('b-default-deny'),
];

const A_KEYS = [
  'a-node1/k8s/shop/frontend-1/eth0',
  'ipamblock/10-10-1-0-26',
  'ippool/a-pool',
  'kns.shop',
  'node/a-node1',
  'policy/shop/frontend-egress',
];
const B_KEYS = [
  'b/b-node1/k8s/shop/cache-1/eth0',
  'b/b-node1/k8s/shop/db-1/eth0',
  'b/ipamblock/10-20-1-0-26',
  'b/ippool/b-pool',
  'b/kns.shop',
  'b/node/b-node1',
];
const B_OVERLAY_KEYS = ['b/ipamblock/10-20-1-0-26', 'b/ippool/b-pool', 'b/node/b-node1'];
const B_NON_OVERLAY_KEYS = B_KEYS.filter((k) => !B_OVERLAY_KEYS.includes(k));
const B_DB1 = 'b/b-node1/k8s/shop/db-1/eth0';

// ---------------------------------------------------------------------------------------------
// An in-memory datastore

const deleteOf = (r: Resource): DatastoreEvent => ({
  type: 'delete',
  kind: r.kind,
  name: r.name,
  ...(r.namespace !== undefined ? { namespace: r.namespace } : {}),
});

/**
 * A Datastore the test drives. As the interface allows, handlers may still be called until the
 * promise stop() returns has resolved (it resolves on the next turn of the event loop); calling
 * them after that is a test error.
 */
class FakeDatastore implements Datastore {
  private handlers?: DatastoreHandlers;
  private revision = 0;
  stopCalled = false;
  private stopped = false;

  constructor(readonly description: string) {}

  async start(handlers: DatastoreHandlers): Promise<void> {
    assert.equal(this.handlers, undefined, `${this.description} started twice`);
    this.handlers = handlers;
  }

  stop(): Promise<void> {
    this.stopCalled = true;
    return new Promise((resolve) =>
      setImmediate(() => {
        this.stopped = true;
        resolve();
      }),
    );
  }

  private get h(): DatastoreHandlers {
    assert.ok(this.handlers, `${this.description} not started`);
    assert.ok(!this.stopped, `${this.description} used after stop() resolved`);
    return this.handlers;
  }

  status(st: DatastoreStatus, detail?: string): void {
    this.h.onStatus(st, detail);
  }

  events(events: DatastoreEvent[]): void {
    this.revision += 1;
    this.h.onEvents(events, this.revision);
  }

  upsert(...rs: Resource[]): void {
    this.events(rs.map((resource) => ({ type: 'upsert', resource })));
  }

  delete(...rs: Resource[]): void {
    this.events(rs.map(deleteOf));
  }

  /** A (re)sync: ResyncInProgress, the complete listing as one batch, InSync. */
  sync(rs: Resource[]): void {
    this.status('ResyncInProgress');
    this.upsert(...rs);
    this.status('InSync');
  }
}

// ---------------------------------------------------------------------------------------------
// The harness

interface Harness {
  cache: FeedCache;
  local: FakeDatastore;
  merger: InstanceType<typeof Merger>;
  /** Every remote datastore the factory made, in order. */
  made: FakeDatastore[];
  /** The latest remote datastore made for an RCC name. */
  remote(name: string): FakeDatastore;
  /** Every connection a datastore was opened with, in order. */
  connections: ConnectionConfig[];
}

async function harness(
  t: TestContext,
  opts: { remoteSyncTimeoutMs?: number; remoteRetentionMs?: number; reresolveMs?: number } = {},
): Promise<Harness> {
  const cache = new FeedCache();
  const connections: ConnectionConfig[] = [];
  const local = new FakeDatastore('local a');
  const made: FakeDatastore[] = [];
  const byName = new Map<string, FakeDatastore>();
  // Every resolved connection gets a fake, named after the directory (`/nonexistent/<remote>`) or
  // the first endpoint; the resolution itself (RCC + Secret → connection) is the syncer's own.
  const openRemote = (c: ConnectionConfig) => {
    const name =
      c.type === 'file'
        ? basename(c.dir)
        : c.type === 'etcdv3'
          ? new URL(c.endpoints[0] ?? '').hostname
          : 'k8s';
    const ds = new FakeDatastore(`remote ${name} #${made.length}`);
    made.push(ds);
    byName.set(name, ds);
    connections.push(c);
    return ds;
  };
  const merger = new Merger({
    cluster: 'a',
    local,
    cache,
    openRemote,
    defaultSecretNamespace: 'fedmesh-system',
    reresolveMs: opts.reresolveMs ?? 60_000,
    remoteSyncTimeoutMs: opts.remoteSyncTimeoutMs ?? 5_000,
    remoteRetentionMs: opts.remoteRetentionMs ?? 60_000,
  });
  await merger.start();
  t.after(() => merger.stop());
  return {
    cache,
    local,
    merger,
    made,
    connections,
    remote(name) {
      const ds = byName.get(name);
      assert.ok(ds, `a datastore was made for remote ${name}`);
      return ds;
    },
  };
}

/** Local a (with an RCC for b) in sync, then remote b in sync. */
async function meshed(t: TestContext, opts: Parameters<typeof harness>[1] & { overlay?: boolean } = {}) {
  const h = await harness(t, opts);
  h.local.sync([...localA(), rcc('b', { overlay: opts.overlay ?? true })]);
  h.remote('b').sync(remoteB());
  assert.equal(h.cache.inSync, true);
  return h;
}

function keys(cache: FeedCache, filter: (k: string) => boolean = () => true): string[] {
  return [...cache.all()]
    .map((u) => u.key)
    .filter(filter)
    .sort();
}

const remoteKeys = (cache: FeedCache, cluster = 'b') => keys(cache, (k) => k.startsWith(`${cluster}/`));

function statusOf(cache: FeedCache, cluster: string): RemoteClusterStatus {
  const st = cache.remoteStatuses().find((s) => s.cluster === cluster);
  assert.ok(st, `a status for remote cluster ${cluster}`);
  return st;
}

function counts(st: RemoteClusterStatus) {
  const { endpoints, profiles, pools, blocks, nodes, conflicts } = st;
  return { endpoints, profiles, pools, blocks, nodes, conflicts };
}

function wepOf(cache: FeedCache, key: string) {
  const u = cache.get(ResourceKind.WORKLOAD_ENDPOINT, key);
  assert.ok(u?.body.case === 'workloadEndpoint', `endpoint ${key} in the feed`);
  return u.body.value;
}

/** What a subscriber of the cache sees, in order. */
class Recorder implements FeedSubscriber {
  log: string[] = [];
  onUpdates(updates: Update[]): void {
    for (const u of updates) this.log.push(`${u.deleted ? 'del' : 'set'} ${u.key}`);
  }
  onInSync(): void {
    this.log.push('InSync');
  }
  onRemoteStatus(): void {}
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 2000): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
  return Date.now() - start;
}

// ---------------------------------------------------------------------------------------------

describe('Merger: the merged feed', () => {
  test('local data unprefixed, remote data renamed <cluster>/..., each with its cluster label', async (t) => {
    const { cache } = await meshed(t);
    assert.deepEqual(keys(cache), [...A_KEYS, ...B_KEYS].sort());

    const local = wepOf(cache, 'a-node1/k8s/shop/frontend-1/eth0');
    assert.equal(local.labels['fedmesh.io/cluster'], 'a');
    assert.deepEqual(local.profiles, ['kns.shop']);
    assert.equal(cache.get(ResourceKind.WORKLOAD_ENDPOINT, 'a-node1/k8s/shop/frontend-1/eth0')?.cluster, 'a');

    const remote = wepOf(cache, B_DB1);
    assert.equal(remote.labels['fedmesh.io/cluster'], 'b');
    assert.equal(remote.labels.app, 'db');
    assert.deepEqual(remote.profiles, ['b/kns.shop']);
    assert.equal(cache.get(ResourceKind.WORKLOAD_ENDPOINT, B_DB1)?.cluster, 'b');
    assert.ok(cache.get(ResourceKind.PROFILE, 'b/kns.shop'), 'the remote namespace profile');

    assert.deepEqual(counts(statusOf(cache, 'b')), {
      endpoints: 2,
      profiles: 1,
      pools: 1,
      blocks: 1,
      nodes: 1,
      conflicts: 0,
    });
    assert.equal(statusOf(cache, 'b').state, RemoteClusterState.IN_SYNC);
  });

  test('remote policies never appear, neither in the listing nor as later changes', async (t) => {
    const { cache, remote } = await meshed(t);
    const isPolicy = (k: string) => k.includes('policy/');
    assert.deepEqual(keys(cache, isPolicy), ['policy/shop/frontend-egress']);
    remote('b').upsert(policy('another'), globalPolicy('another-global'));
    assert.deepEqual(keys(cache, isPolicy), ['policy/shop/frontend-egress']);
    assert.equal(
      [...cache.all()].filter((u) => u.kind === ResourceKind.POLICY && u.cluster === 'b').length,
      0,
    );
  });

  test('a remote endpoint change and delete arrive; the local cluster is untouched', async (t) => {
    const { cache, remote } = await meshed(t);
    remote('b').upsert(wep('b-node1', 'db-1', '10.20.1.5', 'db-v2'));
    assert.equal(wepOf(cache, B_DB1).labels.app, 'db-v2');
    remote('b').delete(wep('b-node1', 'cache-1', '10.20.1.6', 'cache'));
    assert.equal(cache.get(ResourceKind.WORKLOAD_ENDPOINT, 'b/b-node1/k8s/shop/cache-1/eth0'), undefined);
    assert.equal(statusOf(cache, 'b').endpoints, 1);
    assert.deepEqual(
      keys(cache, (k) => !k.startsWith('b/')),
      A_KEYS,
    );
  });
});

describe('Merger: conflicts are refused, local wins', () => {
  test('remote pool, block and endpoint inside an enabled local pool are refused; a same-named node is not', async (t) => {
    const { cache, remote } = await meshed(t);
    const localNode = cache.get(ResourceKind.NODE, 'node/a-node1');
    remote('b').upsert(
      pool('b-overlap', '10.10.128.0/17'),
      wep('b-node1', 'squatter', '10.10.1.77', 'db'),
      node('a-node1', '192.168.100.99', '10.20.9.0', '66:bb:00:00:00:99'),
      block('10.10.7.0/26', 'b-node1'),
    );
    assert.equal(
      cache.get(ResourceKind.IPAM_BLOCK, 'b/ipamblock/10-10-7-0-26'),
      undefined,
      'block inside a local pool refused (it would route local addresses to b)',
    );
    assert.equal(
      cache.get(ResourceKind.IP_POOL, 'b/ippool/b-overlap'),
      undefined,
      'overlapping pool refused',
    );
    assert.equal(
      cache.get(ResourceKind.WORKLOAD_ENDPOINT, 'b/b-node1/k8s/shop/squatter/eth0'),
      undefined,
      'endpoint in a local pool refused',
    );
    // Calico prefixes remote node names: b's a-node1 is b/a-node1, no clash with a's a-node1.
    const bNode = cache.get(ResourceKind.NODE, 'b/node/a-node1');
    assert.ok(bNode?.body.case === 'node');
    assert.equal(bNode.body.value.name, 'b/a-node1');
    assert.deepEqual(cache.get(ResourceKind.NODE, 'node/a-node1'), localNode);
    assert.deepEqual(keys(cache), [...A_KEYS, ...B_KEYS, 'b/node/a-node1'].sort());

    const st = statusOf(cache, 'b');
    assert.deepEqual(counts(st), { endpoints: 2, profiles: 1, pools: 1, blocks: 1, nodes: 2, conflicts: 3 });
    assert.equal(st.state, RemoteClusterState.IN_SYNC);
    assert.match(st.detail, /pool 10\.10\.128\.0\/17 overlaps enabled local pool a-pool/);
    assert.match(st.detail, /10\.10\.1\.77/);
  });

  test('conflicting data in the initial listing is refused too', async (t) => {
    const h = await harness(t);
    h.local.sync([...localA(), rcc('b')]);
    h.remote('b').sync([...remoteB(), wep('b-node1', 'squatter', '10.10.1.77', 'db')]);
    assert.deepEqual(keys(h.cache), [...A_KEYS, ...B_KEYS].sort());
    assert.equal(statusOf(h.cache, 'b').conflicts, 1);
  });

  test('a later local pool that creates a conflict withdraws the remote entries; removing it restores them', async (t) => {
    const { cache, local, remote } = await meshed(t);
    remote('b').upsert(pool('b-extra', '10.30.0.0/16'), wep('b-node1', 'extra-1', '10.30.0.5', 'db'));
    assert.ok(cache.get(ResourceKind.IP_POOL, 'b/ippool/b-extra'));
    assert.ok(cache.get(ResourceKind.WORKLOAD_ENDPOINT, 'b/b-node1/k8s/shop/extra-1/eth0'));
    assert.equal(statusOf(cache, 'b').conflicts, 0);

    const sub = new Recorder();
    cache.subscribe(sub);
    sub.log = [];
    const clash = pool('a-extra', '10.30.0.0/24');
    local.upsert(clash);
    cache.flush();
    assert.equal(cache.get(ResourceKind.IP_POOL, 'b/ippool/b-extra'), undefined);
    assert.equal(cache.get(ResourceKind.WORKLOAD_ENDPOINT, 'b/b-node1/k8s/shop/extra-1/eth0'), undefined);
    assert.ok(cache.get(ResourceKind.IP_POOL, 'ippool/a-extra'), 'local wins');
    assert.deepEqual(sub.log.sort(), [
      'del b/b-node1/k8s/shop/extra-1/eth0',
      'del b/ippool/b-extra',
      'set ippool/a-extra',
    ]);
    let st = statusOf(cache, 'b');
    assert.equal(st.conflicts, 2);
    assert.equal(st.pools, 1);
    assert.equal(st.endpoints, 2);

    sub.log = [];
    local.delete(clash);
    cache.flush();
    assert.ok(cache.get(ResourceKind.IP_POOL, 'b/ippool/b-extra'), 'remote pool restored');
    assert.ok(
      cache.get(ResourceKind.WORKLOAD_ENDPOINT, 'b/b-node1/k8s/shop/extra-1/eth0'),
      'endpoint restored',
    );
    assert.deepEqual(sub.log.sort(), [
      'del ippool/a-extra',
      'set b/b-node1/k8s/shop/extra-1/eth0',
      'set b/ippool/b-extra',
    ]);
    st = statusOf(cache, 'b');
    assert.equal(st.conflicts, 0);
    assert.equal(st.pools, 2);
    assert.equal(st.endpoints, 3);
  });

  test('same node names in the local cluster and two remotes: each served under its own prefix', async (t) => {
    const h = await meshed(t);
    h.local.upsert(rcc('c'));
    h.local.upsert(node('b-node1', '192.168.100.13', '10.10.3.0', '66:aa:00:00:00:03'));
    h.remote('c').sync([
      pool('c-pool', '10.40.0.0/16'),
      node('b-node1', '192.168.100.50', '10.40.0.0', '66:cc:00:00:00:01'),
      block('10.40.1.0/26', 'b-node1'),
    ]);
    const names = [...h.cache.all()]
      .flatMap((u) => (u.body.case === 'node' ? [u.body.value.name] : []))
      .sort();
    assert.deepEqual(names, ['a-node1', 'b-node1', 'b/b-node1', 'c/b-node1']);
    const cBlock = h.cache.get(ResourceKind.IPAM_BLOCK, 'c/ipamblock/10-40-1-0-26');
    assert.ok(cBlock?.body.case === 'ipamBlock');
    assert.equal(cBlock.body.value.affinityNode, 'c/b-node1', 'the block follows its prefixed node');
    assert.equal(statusOf(h.cache, 'b').conflicts, 0);
    assert.equal(statusOf(h.cache, 'c').conflicts, 0);
  });
});

describe('Merger: overlay resources', () => {
  test('with overlay routing disabled, remote pools, blocks and nodes stay out', async (t) => {
    const { cache } = await meshed(t, { overlay: false });
    assert.deepEqual(remoteKeys(cache), B_NON_OVERLAY_KEYS);
    assert.deepEqual(counts(statusOf(cache, 'b')), {
      endpoints: 2,
      profiles: 1,
      pools: 0,
      blocks: 0,
      nodes: 0,
      conflicts: 0,
    });
  });

  test('switching overlay routing on brings them in; switching it off withdraws them', async (t) => {
    const h = await meshed(t, { overlay: false });
    assert.equal(h.made.length, 1);

    h.local.upsert(rcc('b', { overlay: true }));
    assert.equal(h.made.length, 2, 'the RCC change reconnects the remote');
    assert.equal(h.made[0]?.stopCalled, true, 'the old remote datastore is stopped');
    h.remote('b').sync(remoteB());
    assert.deepEqual(remoteKeys(h.cache), B_KEYS);
    assert.equal(statusOf(h.cache, 'b').nodes, 1);

    h.local.upsert(rcc('b', { overlay: false }));
    // Withdrawn at once, before the new connection has even synced; endpoints stay (fail-static).
    assert.deepEqual(remoteKeys(h.cache), B_NON_OVERLAY_KEYS);
    h.remote('b').sync(remoteB());
    assert.deepEqual(remoteKeys(h.cache), B_NON_OVERLAY_KEYS);
    assert.equal(statusOf(h.cache, 'b').pools, 0);
    assert.equal(statusOf(h.cache, 'b').nodes, 0);
    // Later overlay changes from b are ignored while it is off.
    h.remote('b').upsert(block('10.20.2.0/26', 'b-node1'));
    assert.deepEqual(remoteKeys(h.cache), B_NON_OVERLAY_KEYS);
  });
});

describe('Merger: remote cluster lifecycle', () => {
  test('deleting the RCC withdraws all its data and its status', async (t) => {
    const h = await meshed(t);
    h.local.delete(rcc('b'));
    assert.deepEqual(keys(h.cache), A_KEYS);
    assert.deepEqual(h.cache.remoteStatuses(), []);
    assert.deepEqual(h.merger.remoteNames(), []);
    assert.equal(h.made[0]?.stopCalled, true, 'its datastore is stopped');
  });

  test('a deleted remote’s datastore delivering events before its stop() resolves does not bring data back', async (t) => {
    const h = await meshed(t);
    const old = h.remote('b');
    h.local.delete(rcc('b'));
    assert.deepEqual(keys(h.cache), A_KEYS);
    // A watch event already in flight when the RCC was deleted (stop() has not resolved yet).
    old.upsert(wep('b-node1', 'late-1', '10.20.1.9', 'db'));
    assert.deepEqual(keys(h.cache), A_KEYS, 'nothing of a deleted remote comes back');
  });

  test('ConnectionFailed keeps the data (fail-static) until the retention time withdraws it', async (t) => {
    const h = await meshed(t, { remoteRetentionMs: 250 });
    const failedAt = Date.now();
    h.remote('b').status('ConnectionFailed', 'connection refused');
    assert.equal(statusOf(h.cache, 'b').state, RemoteClusterState.CONNECTION_FAILED);
    assert.match(statusOf(h.cache, 'b').detail, /connection refused/);
    await sleep(100);
    assert.deepEqual(remoteKeys(h.cache), B_KEYS, 'still served while within the retention time');
    await waitFor('the remote data to be withdrawn', () => remoteKeys(h.cache).length === 0);
    assert.ok(Date.now() - failedAt >= 240, 'not withdrawn before the retention time');
    assert.deepEqual(keys(h.cache), A_KEYS);
    const st = statusOf(h.cache, 'b');
    assert.equal(st.state, RemoteClusterState.CONNECTION_FAILED);
    assert.equal(st.endpoints, 0);

    // When it is back, a resync brings everything in again.
    h.remote('b').sync(remoteB());
    assert.deepEqual(remoteKeys(h.cache), B_KEYS);
    assert.equal(statusOf(h.cache, 'b').state, RemoteClusterState.IN_SYNC);
  });

  test('a remote back in sync before the retention time keeps its data', async (t) => {
    const h = await meshed(t, { remoteRetentionMs: 100 });
    h.remote('b').status('ConnectionFailed', 'timeout');
    await sleep(30);
    h.remote('b').sync(remoteB());
    await sleep(150);
    assert.deepEqual(remoteKeys(h.cache), B_KEYS);
  });

  test('the retention time running out during a resync does not lose the data it lists', async (t) => {
    const h = await meshed(t, { remoteRetentionMs: 100 });
    h.remote('b').status('ConnectionFailed', 'timeout');
    await sleep(50);
    // Reconnected: a (slow) resync starts and the listing arrives...
    h.remote('b').status('ResyncInProgress');
    h.remote('b').upsert(...remoteB());
    await sleep(100); // ...the retention time runs out before InSync...
    h.remote('b').status('InSync');
    // ...yet the remote is in sync with everything listed.
    assert.equal(statusOf(h.cache, 'b').state, RemoteClusterState.IN_SYNC);
    assert.deepEqual(remoteKeys(h.cache), B_KEYS);
  });

  test('an incomplete RCC (etcdv3 without endpoints) gives ConfigIncomplete, not a crash, and does not hold in-sync', async (t) => {
    const h = await harness(t);
    h.local.sync([...localA(), rcc('e', { type: 'etcdv3' })]);
    const st = statusOf(h.cache, 'e');
    assert.equal(st.state, RemoteClusterState.CONFIG_INCOMPLETE);
    assert.match(st.detail, /spec\.etcdEndpoints is required/);
    assert.equal(h.cache.inSync, true);
    assert.deepEqual(keys(h.cache), A_KEYS);

    // Fixing the RCC takes effect without a restart.
    h.local.upsert(rcc('e', { type: 'file' }));
    h.remote('e').sync([wep('e-node1', 'svc-1', '10.50.0.5', 'svc')]);
    assert.equal(statusOf(h.cache, 'e').state, RemoteClusterState.IN_SYNC);
    assert.ok(h.cache.get(ResourceKind.WORKLOAD_ENDPOINT, 'e/e-node1/k8s/shop/svc-1/eth0'));
  });
});

describe('Merger: in-sync and resyncs', () => {
  test('the syncer’s in-sync waits for the remotes known at start, and comes after their data', async (t) => {
    const h = await harness(t);
    const sub = new Recorder();
    h.cache.subscribe(sub);
    h.local.sync([...localA(), rcc('b')]);
    assert.equal(h.cache.inSync, false, 'waiting for b');
    h.remote('b').status('ResyncInProgress');
    h.remote('b').upsert(...remoteB());
    assert.equal(h.cache.inSync, false, 'b is still listing');
    h.remote('b').status('InSync');
    assert.equal(h.cache.inSync, true);
    const inSyncAt = sub.log.indexOf('InSync');
    assert.ok(inSyncAt >= 0);
    const before = sub.log.slice(0, inSyncAt);
    for (const k of [...A_KEYS, ...B_KEYS]) assert.ok(before.includes(`set ${k}`), `${k} before InSync`);
    assert.equal(sub.log.filter((l) => l === 'InSync').length, 1);
  });

  test('a remote that never syncs does not hold in-sync beyond remoteSyncTimeoutMs', async (t) => {
    const h = await harness(t, { remoteSyncTimeoutMs: 200 });
    const start = Date.now();
    h.local.sync([...localA(), rcc('b')]);
    h.remote('b').status('Connecting');
    assert.equal(h.cache.inSync, false);
    await sleep(100);
    assert.equal(h.cache.inSync, false, 'still within the timeout');
    const waited = await waitFor('in-sync', () => h.cache.inSync);
    const elapsed = Date.now() - start;
    assert.ok(elapsed >= 190 && elapsed < 1500, `in sync after ${elapsed} ms (${waited} ms polled)`);
    assert.deepEqual(keys(h.cache), A_KEYS);
    // b's data arrives later, as deltas.
    h.remote('b').sync(remoteB());
    assert.deepEqual(remoteKeys(h.cache), B_KEYS);
  });

  test('a remote that fails at once does not hold in-sync', async (t) => {
    const h = await harness(t);
    h.local.sync([...localA(), rcc('b')]);
    assert.equal(h.cache.inSync, false);
    h.remote('b').status('ConnectionFailed', 'no route to host');
    assert.equal(h.cache.inSync, true);
  });

  test('an RCC added after start does not take in-sync away', async (t) => {
    const h = await harness(t);
    h.local.sync(localA());
    assert.equal(h.cache.inSync, true);
    h.local.upsert(rcc('b'));
    assert.equal(h.cache.inSync, true);
    h.remote('b').sync(remoteB());
    assert.deepEqual(remoteKeys(h.cache), B_KEYS);
  });

  test('a remote resync that omits a resource deletes it from the feed, touching nothing else', async (t) => {
    const { cache, remote } = await meshed(t);
    const sub = new Recorder();
    cache.subscribe(sub);
    sub.log = [];
    const without = remoteB().filter((r) => r.name !== 'b-node1-k8s-db-1-eth0');
    remote('b').status('ResyncInProgress');
    remote('b').upsert(...without);
    assert.ok(cache.get(ResourceKind.WORKLOAD_ENDPOINT, B_DB1), 'kept until the resync is complete');
    remote('b').status('InSync');
    cache.flush();
    assert.equal(cache.get(ResourceKind.WORKLOAD_ENDPOINT, B_DB1), undefined);
    assert.deepEqual(sub.log, [`del ${B_DB1}`], 'only the difference reaches the subscribers');
    assert.equal(statusOf(cache, 'b').endpoints, 1);
  });

  test('a local resync that omits a resource deletes it from the feed', async (t) => {
    const { cache, local } = await meshed(t);
    local.sync([...localA().filter((r) => r.kind !== 'NetworkPolicy'), rcc('b')]);
    assert.deepEqual(keys(cache), [...A_KEYS.filter((k) => !k.startsWith('policy/')), ...B_KEYS].sort());
  });

  test('a remote resync interrupted after its listing: the next listing alone decides what exists', async (t) => {
    const { cache, remote } = await meshed(t);
    remote('b').status('ResyncInProgress');
    remote('b').upsert(...remoteB());
    remote('b').status('ConnectionFailed', 'connection reset');
    remote('b').status('ResyncInProgress');
    remote('b').upsert(...remoteB().filter((r) => r.name !== 'b-node1-k8s-db-1-eth0'));
    remote('b').status('InSync');
    assert.equal(cache.get(ResourceKind.WORKLOAD_ENDPOINT, B_DB1), undefined, 'db-1 is gone from b');
  });

  test('a local resync that omits an RCC withdraws that remote', async (t) => {
    const { cache, local, merger } = await meshed(t);
    local.sync(localA());
    assert.deepEqual(merger.remoteNames(), []);
    assert.deepEqual(keys(cache), A_KEYS);
    assert.deepEqual(cache.remoteStatuses(), []);
  });
});

// ---------------------------------------------------------------------------------------------
// clusterAccessSecret, Calico's remote-cluster semantics

const secret = (name: string, data: Record<string, string>) =>
  one(`apiVersion: v1
kind: Secret
metadata: {name: ${name}, namespace: fedmesh-system}
stringData: ${JSON.stringify(data)}`);

const rccWithSecret = (name: string, secretName: string) =>
  one(`apiVersion: projectcalico.org/v3
kind: RemoteClusterConfiguration
metadata: {name: ${name}}
spec:
  clusterAccessSecret: {name: ${secretName}, namespace: fedmesh-system, kind: Secret}
  syncOptions: {overlayRoutingMode: Disabled}`);

const etcdSecret = (host: string) =>
  secret('remote-b', {
    datastoreType: 'etcdv3',
    etcdEndpoints: `https://${host}:2379`,
    etcdPassword: 's3cret-pw',
  });

const disabledPool = (name: string, cidr: string) =>
  one(`apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: ${name}}
spec: {cidr: ${cidr}, disabled: true, natOutgoing: false}`);

describe('Merger: clusterAccessSecret watched at run time', () => {
  test('a Secret listed with its RCC connects once, with the Secret’s endpoints and credentials', async (t) => {
    const h = await harness(t);
    h.local.sync([...localA(), rccWithSecret('b', 'remote-b'), etcdSecret('b-etcd')]);
    assert.equal(h.made.length, 1, 'one connection, no ConfigIncomplete in between');
    assert.deepEqual(h.connections[0], {
      type: 'etcdv3',
      endpoints: ['https://b-etcd:2379'],
      password: 's3cret-pw',
    });
    h.remote('b-etcd').sync(remoteB());
    assert.deepEqual(remoteKeys(h.cache), B_NON_OVERLAY_KEYS);
    assert.equal(statusOf(h.cache, 'b').state, RemoteClusterState.IN_SYNC);
  });

  test('changed: reconnect in place; removed: ConfigIncomplete and data withdrawn; restored: data back', async (t) => {
    const h = await harness(t);
    h.local.sync([...localA(), rccWithSecret('b', 'remote-b'), etcdSecret('b-etcd')]);
    const first = h.remote('b-etcd');
    first.sync(remoteB());
    assert.deepEqual(remoteKeys(h.cache), B_NON_OVERLAY_KEYS);

    // The same content again (a relist, an annotation change): no reconnect.
    h.local.upsert(etcdSecret('b-etcd'));
    assert.equal(h.made.length, 1);

    // Changed: a new connection; the old data is served until the new listing replaces it.
    h.local.upsert(etcdSecret('b-etcd2'));
    assert.equal(h.made.length, 2);
    assert.ok(first.stopCalled, 'the old connection is stopped');
    assert.deepEqual(remoteKeys(h.cache), B_NON_OVERLAY_KEYS, 'fail-static across the reconnect');
    h.remote('b-etcd2').sync(remoteB().filter((r) => r.name !== 'b-node1-k8s-cache-1-eth0'));
    assert.deepEqual(
      remoteKeys(h.cache),
      B_NON_OVERLAY_KEYS.filter((k) => !k.includes('cache-1')),
    );

    // Removed: Calico withdraws the remote's data and reports ConfigIncomplete.
    h.local.delete(etcdSecret('b-etcd2'));
    assert.deepEqual(remoteKeys(h.cache), []);
    let st = statusOf(h.cache, 'b');
    assert.equal(st.state, RemoteClusterState.CONFIG_INCOMPLETE);
    assert.match(st.detail, /clusterAccessSecret fedmesh-system\/remote-b does not exist/);
    assert.ok(h.remote('b-etcd2').stopCalled);
    assert.deepEqual(keys(h.cache), A_KEYS, 'the local cluster is untouched');

    // Restored: a new connection and the data back, without restarting anything.
    h.local.upsert(etcdSecret('b-etcd3'));
    h.remote('b-etcd3').sync(remoteB());
    assert.deepEqual(remoteKeys(h.cache), B_NON_OVERLAY_KEYS);
    st = statusOf(h.cache, 'b');
    assert.equal(st.state, RemoteClusterState.IN_SYNC);
    assert.equal(st.detail, '');
  });

  test('a Secret that becomes invalid withdraws the data; the reason names the key, never a value', async (t) => {
    const h = await harness(t);
    h.local.sync([...localA(), rccWithSecret('b', 'remote-b'), etcdSecret('b-etcd')]);
    h.remote('b-etcd').sync(remoteB());
    h.local.upsert(
      secret('remote-b', {
        datastoreType: 'etcdv3',
        etcdEndpoint: 'https://x:2379',
        etcdPassword: 's3cret-pw',
      }),
    );
    const st = statusOf(h.cache, 'b');
    assert.equal(st.state, RemoteClusterState.CONFIG_INCOMPLETE);
    assert.match(st.detail, /unknown key etcdEndpoint/);
    assert.doesNotMatch(st.detail, /s3cret-pw/);
    assert.deepEqual(remoteKeys(h.cache), []);
  });

  test('a local resync that no longer lists the Secret withdraws the remote’s data', async (t) => {
    const h = await harness(t);
    h.local.sync([...localA(), rccWithSecret('b', 'remote-b'), etcdSecret('b-etcd')]);
    h.remote('b-etcd').sync(remoteB());
    h.local.sync([...localA(), rccWithSecret('b', 'remote-b')]);
    assert.equal(statusOf(h.cache, 'b').state, RemoteClusterState.CONFIG_INCOMPLETE);
    assert.deepEqual(remoteKeys(h.cache), []);
  });

  test('a driver this build lacks is ConfigIncomplete with the reason', async (t) => {
    const cache = new FeedCache();
    const local = new FakeDatastore('local a');
    const merger = new Merger({
      cluster: 'a',
      local,
      cache,
      openRemote: (c) => {
        throw new Error(`${c.type}: not in this build`);
      },
      remoteSyncTimeoutMs: 1000,
      remoteRetentionMs: 1000,
    });
    await merger.start();
    t.after(() => merger.stop());
    local.sync([...localA(), rccWithSecret('b', 'remote-b'), etcdSecret('b-etcd')]);
    assert.equal(statusOf(cache, 'b').state, RemoteClusterState.CONFIG_INCOMPLETE);
    assert.match(statusOf(cache, 'b').detail, /etcdv3: not in this build/);
    assert.equal(cache.inSync, true);
  });
});

describe('Merger: Calico’s remote-cluster semantics', () => {
  test('a remote never sends NetworkSets or GlobalNetworkSets', async (t) => {
    const { cache, remote } = await meshed(t);
    remote('b').upsert(
      one(`apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: everything, labels: {app: frontend}}
spec: {nets: [0.0.0.0/0]}`),
      one(`apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: partners, namespace: shop}
spec: {nets: [198.51.100.0/24]}`),
    );
    assert.deepEqual(remoteKeys(cache), B_KEYS);
    assert.equal([...cache.all()].filter((u) => u.kind === ResourceKind.NETWORK_SET).length, 0);
  });

  test('an endpoint net wider than a host route is refused, whatever its first address', async (t) => {
    const { cache, remote } = await meshed(t);
    remote('b').upsert(
      one(`apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: b-node1-k8s-wide-eth0, namespace: shop, labels: {app: db}}
spec: {node: b-node1, pod: wide, interfaceName: cali-wide, ipNetworks: [10.0.0.0/8], profiles: [kns.shop]}`),
      one(`apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: b-node1-k8s-remote-wide-eth0, namespace: shop, labels: {app: db}}
spec: {node: b-node1, pod: remote-wide, interfaceName: cali-rw, ipNetworks: [10.20.8.0/24], profiles: [kns.shop]}`),
    );
    assert.equal(cache.get(ResourceKind.WORKLOAD_ENDPOINT, 'b/b-node1/k8s/shop/wide/eth0'), undefined);
    assert.equal(cache.get(ResourceKind.WORKLOAD_ENDPOINT, 'b/b-node1/k8s/shop/remote-wide/eth0'), undefined);
    const st = statusOf(cache, 'b');
    assert.match(st.detail, /endpoint net 10\.0\.0\.0\/8 is wider than a host route/);
    assert.match(st.detail, /endpoint net 10\.20\.8\.0\/24 is wider than a host route/);
  });

  test('a remote pool is compared as a whole range: 10.0.0.0/8 overlaps local 10.10.0.0/16', async (t) => {
    const { cache, remote } = await meshed(t);
    remote('b').upsert(pool('b-wide', '10.0.0.0/8'), block('10.0.0.0/26', 'b-node1'));
    assert.equal(cache.get(ResourceKind.IP_POOL, 'b/ippool/b-wide'), undefined);
    assert.ok(
      cache.get(ResourceKind.IPAM_BLOCK, 'b/ipamblock/10-0-0-0-26'),
      'a block outside the local pool is fine',
    );
    assert.match(
      statusOf(cache, 'b').detail,
      /pool 10\.0\.0\.0\/8 overlaps enabled local pool a-pool \(10\.10\.0\.0\/16\)/,
    );
  });

  test('disabled local pools never conflict: the flat-routing NAT-exemption pools', async (t) => {
    const h = await harness(t);
    h.local.sync([...localA(), disabledPool('b-range', '10.20.0.0/16'), rcc('b', { overlay: false })]);
    h.remote('b').sync(remoteB());
    assert.deepEqual(remoteKeys(h.cache), B_NON_OVERLAY_KEYS);
    const st = statusOf(h.cache, 'b');
    assert.equal(st.conflicts, 0);
    assert.equal(st.endpoints, 2);

    // The same pool enabled is a conflict; disabling it again clears it.
    h.local.upsert(pool('b-range', '10.20.0.0/16'));
    assert.deepEqual(remoteKeys(h.cache), ['b/kns.shop']);
    assert.equal(statusOf(h.cache, 'b').conflicts, 2);
    h.local.upsert(disabledPool('b-range', '10.20.0.0/16'));
    assert.deepEqual(remoteKeys(h.cache), B_NON_OVERLAY_KEYS);
    assert.equal(statusOf(h.cache, 'b').conflicts, 0);
  });

  test('with overlay routing, a disabled pool covering a remote pool is reported as no longer needed', async (t) => {
    const h = await harness(t);
    h.local.sync([...localA(), disabledPool('b-range', '10.20.0.0/16'), rcc('b', { overlay: true })]);
    h.remote('b').sync(remoteB());
    assert.deepEqual(remoteKeys(h.cache), B_KEYS, 'no harm: everything served');
    const st = statusOf(h.cache, 'b');
    assert.equal(st.conflicts, 0);
    assert.match(
      st.detail,
      /disabled local pool b-range \(10\.20\.0\.0\/16\) covers remote pool 10\.20\.0\.0\/16: .*no longer needed/,
    );
    h.local.delete(disabledPool('b-range', '10.20.0.0/16'));
    assert.doesNotMatch(
      statusOf(h.cache, 'b').detail,
      /no longer needed/,
      'cleared when the pool is deleted',
    );
  });

  test('two remotes serving the same addresses: the first by name wins, whatever the arrival order', async (t) => {
    const h = await harness(t);
    h.local.sync([...localA(), rcc('b', { overlay: true }), rcc('c', { overlay: true })]);
    // c arrives first, with b's pool and one of b's endpoint addresses.
    h.remote('c').sync([
      pool('c-pool', '10.20.0.0/16'),
      wep('c-node1', 'twin', '10.20.1.5', 'db'),
      wep('c-node1', 'own', '10.30.0.5', 'web'),
    ]);
    assert.ok(h.cache.get(ResourceKind.IP_POOL, 'c/ippool/c-pool'), 'alone, c is served');
    h.remote('b').sync(remoteB());
    assert.deepEqual(remoteKeys(h.cache), B_KEYS, 'b comes first by name: all of b is served');
    assert.equal(h.cache.get(ResourceKind.IP_POOL, 'c/ippool/c-pool'), undefined);
    assert.equal(h.cache.get(ResourceKind.WORKLOAD_ENDPOINT, 'c/c-node1/k8s/shop/twin/eth0'), undefined);
    assert.ok(
      h.cache.get(ResourceKind.WORKLOAD_ENDPOINT, 'c/c-node1/k8s/shop/own/eth0'),
      'the rest of c is fine',
    );
    const st = statusOf(h.cache, 'c');
    assert.equal(st.conflicts, 2);
    assert.match(st.detail, /pool 10\.20\.0\.0\/16 overlaps pool 10\.20\.0\.0\/16 of remote cluster b/);
    assert.match(st.detail, /endpoint net 10\.20\.1\.5\/32 overlaps .* of remote cluster b/);
    assert.equal(statusOf(h.cache, 'b').conflicts, 0);

    // b's RCC deleted: c's refused data is served.
    h.local.sync([...localA(), rcc('c', { overlay: true })]);
    assert.ok(h.cache.get(ResourceKind.IP_POOL, 'c/ippool/c-pool'));
    assert.ok(h.cache.get(ResourceKind.WORKLOAD_ENDPOINT, 'c/c-node1/k8s/shop/twin/eth0'));
    assert.equal(statusOf(h.cache, 'c').conflicts, 0);
  });
});

describe('Merger: files an RCC names', () => {
  test('a changed TLS file reconnects that remote in place (the RCC itself unchanged)', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'fedmesh-rcc-tls-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const pem = (body: string) => `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`;
    writeFileSync(join(dir, 'ca.crt'), pem('MIIB'));
    const h = await harness(t, { reresolveMs: 20 });
    const tlsRcc = one(`apiVersion: projectcalico.org/v3
kind: RemoteClusterConfiguration
metadata: {name: b}
spec: {datastoreType: etcdv3, etcdEndpoints: "https://b-etcd:2379", etcdCACertFile: ${join(dir, 'ca.crt')}}`);
    h.local.sync([...localA(), tlsRcc]);
    h.remote('b-etcd').sync(remoteB());
    assert.equal(h.made.length, 1);
    await sleep(60);
    assert.equal(h.made.length, 1, 'an unchanged file does not reconnect');
    writeFileSync(join(dir, 'ca.crt'), pem('MIIC'));
    await waitFor('a reconnect with the new CA', () => h.made.length === 2);
    const c = h.connections[1];
    assert.ok(c?.type === 'etcdv3');
    assert.match(c.tls?.ca ?? '', /MIIC/);
    assert.ok(h.made[0]?.stopCalled);
    assert.deepEqual(remoteKeys(h.cache), B_NON_OVERLAY_KEYS, 'the data stays while reconnecting');
    rmSync(join(dir, 'ca.crt'));
    await waitFor(
      'ConfigIncomplete when the file is gone',
      () => statusOf(h.cache, 'b').state === RemoteClusterState.CONFIG_INCOMPLETE,
    );
    assert.match(statusOf(h.cache, 'b').detail, /spec\.etcdCACertFile: cannot read .*ENOENT/);
    assert.deepEqual(remoteKeys(h.cache), []);
  });
});
