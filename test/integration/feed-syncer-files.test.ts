// The whole syncer (runSyncer from syncer/main.ts) over a temporary copy of examples/two-cluster:
// cluster a's directory is the local file datastore, its RCC points at ../b. An agent's FeedClient
// on the Unix socket sees the merged feed; the test edits the YAML files as an operator would.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  RemoteClusterState,
  type RemoteClusterStatus,
  ResourceKind,
  type ServerHello,
  type Update,
} from '../../proto/service.ts';

// The syncer logs every refusal and connection; keep the test output readable (lib/log.ts reads
// the level when it loads, hence the dynamic imports).
process.env.FEDMESH_LOG_LEVEL ??= 'silent';
const { runSyncer } = await import('../../syncer/main.ts');
const { FeedClient } = await import('../../agent/feed/client.ts');

const EXAMPLE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', 'two-cluster');

const B_ENDPOINTS = [
  'b/b-node1/k8s/shop/cache-1/eth0',
  'b/b-node1/k8s/shop/db-1/eth0',
  'b/b-node2/k8s/shop/db-2/eth0',
  'b/b-node2/k8s/shop/web-b/eth0',
];
const A_ENDPOINTS = [
  'a-node1/k8s/shop/db-a/eth0',
  'a-node1/k8s/shop/frontend-1/eth0',
  'a-node1/k8s/shop/web-1/eth0',
  'a-node2/k8s/shop/batch-1/eth0',
  'a-node2/k8s/shop/frontend-2/eth0',
];

/** What an agent holds, from a real FeedClient. */
class Agent {
  state = new Map<string, Update>();
  statuses = new Map<string, RemoteClusterStatus>();
  hello?: ServerHello;
  inSync = false;
  /** Called after each batch is applied (for timing a change). */
  onBatch?: () => void;

  onHello(h: ServerHello): void {
    this.hello = h;
  }
  onUpdates(updates: Update[]): void {
    for (const u of updates) {
      const k = `${ResourceKind[u.kind]}|${u.key}`;
      if (u.deleted) this.state.delete(k);
      else this.state.set(k, u);
    }
    this.onBatch?.();
  }
  onInSync(): void {
    this.inSync = true;
  }
  onRemoteStatus(s: RemoteClusterStatus): void {
    this.statuses.set(s.cluster, s);
  }

  keys(kind: ResourceKind): string[] {
    return [...this.state.values()]
      .filter((u) => u.kind === kind)
      .map((u) => u.key)
      .sort();
  }
  get(kind: ResourceKind, key: string): Update | undefined {
    return this.state.get(`${ResourceKind[kind]}|${key}`);
  }
  /** Every entry as `KIND|key`, sorted. */
  all(): string[] {
    return [...this.state.keys()].sort();
  }
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
  return Date.now() - start;
}

/** Replace a file in one step, as editors and ConfigMap updates do. */
function replaceFile(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

/** A copy of the example, a syncer for cluster a on a Unix socket, and an agent in sync with it. */
async function mesh(t: TestContext) {
  const root = mkdtempSync(join(tmpdir(), 'fedmesh-syncer-'));
  const cleanups: (() => unknown)[] = [() => rmSync(root, { recursive: true, force: true })];
  // Reverse order: the client, then the syncer, then the directory.
  t.after(async () => {
    for (let f = cleanups.pop(); f; f = cleanups.pop()) await f();
  });
  cpSync(join(EXAMPLE, 'a'), join(root, 'a'), { recursive: true });
  cpSync(join(EXAMPLE, 'b'), join(root, 'b'), { recursive: true });
  const socket = join(root, 'feed.sock');
  const stop = await runSyncer({
    cluster: 'a',
    datastore: `file:${join(root, 'a')}`,
    listen: `unix:${socket}`,
  });
  cleanups.push(stop);
  const agent = new Agent();
  const client = new FeedClient({ target: `unix:${socket}`, nodeName: 'a-node1', version: 'test' }, agent);
  client.start();
  cleanups.push(() => client.stop());
  await waitFor('the feed to be in sync', () => agent.inSync);
  return { root, agent };
}

// ---------------------------------------------------------------------------------------------

describe('syncer over the two-cluster example (file datastores)', () => {
  test('the agent sees both clusters: b’s endpoints prefixed b/, b’s policies left out', async (t) => {
    const { agent } = await mesh(t);
    assert.equal(agent.hello?.cluster, 'a');
    assert.deepEqual(agent.keys(ResourceKind.WORKLOAD_ENDPOINT), [...A_ENDPOINTS, ...B_ENDPOINTS].sort());

    const db = agent.get(ResourceKind.WORKLOAD_ENDPOINT, 'b/b-node1/k8s/shop/db-1/eth0');
    assert.ok(db?.body.case === 'workloadEndpoint');
    assert.equal(db.cluster, 'b');
    assert.equal(db.body.value.labels.app, 'db');
    assert.equal(db.body.value.labels['fedmesh.io/cluster'], 'b');
    assert.deepEqual(db.body.value.profiles, ['b/kns.shop', 'b/ksa.shop.default']);
    assert.deepEqual(db.body.value.ipv4Nets, ['10.20.1.5/32']);

    const fe = agent.get(ResourceKind.WORKLOAD_ENDPOINT, 'a-node1/k8s/shop/frontend-1/eth0');
    assert.ok(fe?.body.case === 'workloadEndpoint');
    assert.equal(fe.body.value.labels['fedmesh.io/cluster'], 'a');

    // Policies: a's own only.
    assert.deepEqual(agent.keys(ResourceKind.POLICY), ['policy/shop/frontend-to-remote-db']);
    // Overlay routing is enabled in a's RCC for b: b's pool, blocks and nodes are there.
    assert.deepEqual(agent.keys(ResourceKind.IP_POOL), ['b/ippool/b-pool', 'ippool/a-pool']);
    assert.deepEqual(agent.keys(ResourceKind.NODE), [
      'b/node/b-node1',
      'b/node/b-node2',
      'node/a-node1',
      'node/a-node2',
    ]);
    assert.deepEqual(agent.keys(ResourceKind.IPAM_BLOCK), [
      'b/ipamblock/10-20-1-0-26',
      'b/ipamblock/10-20-2-0-26',
      'ipamblock/10-10-1-0-26',
      'ipamblock/10-10-2-0-26',
    ]);
    assert.deepEqual(agent.keys(ResourceKind.PROFILE), ['b/kns.shop', 'kns.shop']);
  });

  test('the remote status for b: IN_SYNC with its 4 endpoints (what `fedmesh status` shows)', async (t) => {
    const { agent } = await mesh(t);
    await waitFor('a status for b', () => agent.statuses.get('b')?.state === RemoteClusterState.IN_SYNC);
    const st = agent.statuses.get('b');
    assert.ok(st);
    assert.deepEqual([...agent.statuses.keys()], ['b'], 'one remote cluster');
    assert.equal(st.endpoints, 4);
    assert.equal(st.profiles, 1);
    assert.equal(st.pools, 1);
    assert.equal(st.blocks, 2);
    assert.equal(st.nodes, 2);
    assert.equal(st.conflicts, 0);
  });

  test('a label edited in b’s workloads.yaml reaches the agent as a delta within 2 s', async (t) => {
    const { root, agent } = await mesh(t);
    const file = join(root, 'b', 'workloads.yaml');
    const text = readFileSync(file, 'utf8');
    const before = '  name: b--node1-k8s-db--1-eth0\n  namespace: shop\n  labels: {app: db,';
    assert.ok(text.includes(before), 'the example has db-1 labelled app: db');
    const entriesBefore = agent.all();
    const batches: Update[][] = [];
    const origOnUpdates = agent.onUpdates.bind(agent);
    agent.onUpdates = (us) => {
      batches.push(us);
      origOnUpdates(us);
    };

    const start = Date.now();
    let arrivedAt = 0;
    agent.onBatch = () => {
      const u = agent.get(ResourceKind.WORKLOAD_ENDPOINT, 'b/b-node1/k8s/shop/db-1/eth0');
      if (!arrivedAt && u?.body.case === 'workloadEndpoint' && u.body.value.labels.app === 'database') {
        arrivedAt = Date.now();
      }
    };
    replaceFile(file, text.replace(before, before.replace('app: db,', 'app: database,')));
    await waitFor('the label change', () => arrivedAt > 0, 5000);
    const latency = arrivedAt - start;
    t.diagnostic(`label change reached the agent after ${latency} ms`);
    assert.ok(latency < 2000, `the change arrived after ${latency} ms`);

    // A delta: exactly that endpoint, nothing else re-sent or removed.
    assert.deepEqual(
      batches.flat().map((u) => `${u.deleted ? 'del' : 'set'} ${u.key}`),
      ['set b/b-node1/k8s/shop/db-1/eth0'],
    );
    assert.deepEqual(agent.all(), entriesBefore);
  });

  test('an invalid document added to a’s YAML removes nothing; the file’s valid documents still arrive', async (t) => {
    const { root, agent } = await mesh(t);
    const entriesBefore = agent.all();
    const file = join(root, 'a', 'cluster.yaml');
    const added = `
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: bad-pool}
spec: {cidr: 10.0.0.1/16, vxlanMode: Always}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: a-node3}
spec:
  bgp: {ipv4Address: 192.168.100.13/24}
  ipv4VXLANTunnelAddr: 10.10.3.0
  vxlanTunnelMACAddr: 66:aa:00:00:00:03
---
apiVersion: crd.projectcalico.org/v1
kind: IPAMBlock
metadata: {name: 10-10-3-0-26}
spec: {cidr: 10.10.3.0/26, affinity: "host:a-node3"}
`;
    replaceFile(file, readFileSync(file, 'utf8') + added);
    await waitFor('the valid new documents', () =>
      Boolean(
        agent.get(ResourceKind.NODE, 'node/a-node3') &&
          agent.get(ResourceKind.IPAM_BLOCK, 'ipamblock/10-10-3-0-26'),
      ),
    );
    // Give a wrongly emitted delete a chance to show up.
    await sleep(300);
    assert.equal(
      agent.get(ResourceKind.IP_POOL, 'ippool/bad-pool'),
      undefined,
      'the invalid pool is refused',
    );
    assert.deepEqual(
      agent.all(),
      [...entriesBefore, 'NODE|node/a-node3', 'IPAM_BLOCK|ipamblock/10-10-3-0-26'].sort(),
      'everything else is still there',
    );
    const pool = agent.get(ResourceKind.IP_POOL, 'ippool/a-pool');
    assert.ok(pool?.body.case === 'ipPool');
    assert.equal(pool.body.value.cidr, '10.10.0.0/16');
    const st = agent.statuses.get('b');
    assert.equal(st?.endpoints, 4, 'b is untouched');
  });
});
