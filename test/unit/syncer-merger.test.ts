// syncer/merger.ts driven by in-memory datastores: the local cluster "a" and, for every
// RemoteClusterConfiguration, a fake remote the test pushes listings, changes and statuses into.
// Assertions are on what an operator (or an agent) observes: the feed cache's contents, its
// in-sync marker and the per-remote status.
import assert from 'node:assert/strict';
import { describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RemoteClusterConfiguration, Resource } from '../../model/resources.ts';
import { parseYamlDocuments } from '../../model/validate.ts';
import {
  RemoteClusterState,
  type RemoteClusterStatus,
  ResourceKind,
  type Update,
} from '../../proto/service.ts';
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
const { remoteDatastore } = await import('../../syncer/main.ts');

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

function rcc(name: string, opts: { overlay?: boolean; type?: 'file' | 'kubernetes' } = {}): Resource {
  const spec =
    opts.type === 'kubernetes'
      ? 'datastoreType: kubernetes\n  kubeconfig: /nonexistent/kubeconfig'
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
}

async function harness(
  t: TestContext,
  opts: { remoteSyncTimeoutMs?: number; remoteRetentionMs?: number } = {},
): Promise<Harness> {
  const cache = new FeedCache();
  const local = new FakeDatastore('local a');
  const made: FakeDatastore[] = [];
  const byName = new Map<string, FakeDatastore>();
  const makeRemote = (r: RemoteClusterConfiguration) => {
    // Only file RCCs get a fake; anything else goes through the syncer's real factory.
    if (r.spec.datastoreType !== 'file') return remoteDatastore(r);
    const ds = new FakeDatastore(`remote ${r.name} #${made.length}`);
    made.push(ds);
    byName.set(r.name, ds);
    return ds;
  };
  const merger = new Merger({
    cluster: 'a',
    local,
    cache,
    makeRemote,
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
  test('remote pool overlapping a local pool, endpoint inside a local pool, duplicate node name', async (t) => {
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
    assert.equal(cache.get(ResourceKind.NODE, 'b/node/a-node1'), undefined, 'duplicate node name refused');
    // Local wins: the local entries are as they were; the rest of b is still served.
    assert.deepEqual(cache.get(ResourceKind.NODE, 'node/a-node1'), localNode);
    assert.deepEqual(keys(cache), [...A_KEYS, ...B_KEYS].sort());

    const st = statusOf(cache, 'b');
    assert.deepEqual(counts(st), { endpoints: 2, profiles: 1, pools: 1, blocks: 1, nodes: 1, conflicts: 4 });
    assert.equal(st.state, RemoteClusterState.IN_SYNC);
    assert.match(st.detail, /10\.10\.128\.0\/17/);
    assert.match(st.detail, /10\.10\.1\.77/);
    assert.match(st.detail, /a-node1/);
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

  test('a later local node with a remote node’s name withdraws the remote node; removing it restores it', async (t) => {
    const { cache, local } = await meshed(t);
    const dup = node('b-node1', '192.168.100.13', '10.10.3.0', '66:aa:00:00:00:03');
    local.upsert(dup);
    assert.equal(cache.get(ResourceKind.NODE, 'b/node/b-node1'), undefined);
    assert.ok(cache.get(ResourceKind.NODE, 'node/b-node1'));
    assert.equal(statusOf(cache, 'b').conflicts, 1);
    assert.equal(statusOf(cache, 'b').nodes, 0);
    local.delete(dup);
    assert.ok(cache.get(ResourceKind.NODE, 'b/node/b-node1'));
    assert.equal(statusOf(cache, 'b').conflicts, 0);
    assert.equal(statusOf(cache, 'b').nodes, 1);
  });

  test('a node refused for duplicating another remote’s node is served once that remote drops it', async (t) => {
    const h = await meshed(t);
    h.local.upsert(rcc('c'));
    const shared = node('shared-node', '192.168.100.50', '10.40.0.0', '66:cc:00:00:00:01');
    h.remote('b').upsert(shared);
    h.remote('c').sync([pool('c-pool', '10.40.0.0/16'), shared]);
    assert.ok(h.cache.get(ResourceKind.NODE, 'b/node/shared-node'));
    assert.equal(h.cache.get(ResourceKind.NODE, 'c/node/shared-node'), undefined, 'refused while b has it');
    assert.equal(statusOf(h.cache, 'c').conflicts, 1);
    h.remote('b').delete(shared);
    assert.equal(h.cache.get(ResourceKind.NODE, 'b/node/shared-node'), undefined);
    assert.ok(
      h.cache.get(ResourceKind.NODE, 'c/node/shared-node'),
      'no duplicate any more: c’s node is served',
    );
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

  test('an RCC this build cannot serve gives ConfigIncomplete, not a crash, and does not hold in-sync', async (t) => {
    const h = await harness(t);
    h.local.sync([...localA(), rcc('e', { type: 'kubernetes' })]);
    const st = statusOf(h.cache, 'e');
    assert.equal(st.state, RemoteClusterState.CONFIG_INCOMPLETE);
    assert.match(st.detail, /kubernetes/);
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
