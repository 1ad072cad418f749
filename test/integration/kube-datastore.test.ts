// The kubernetes datastore driver (syncer/datastore/kubernetes.ts) against a Kubernetes API server
// double (test/harness/kube-api-double.ts): no real API server can run on these machines, so the
// double stands in for one; test/integration/kube-api-double-kubectl.test.ts checks with a real
// kubectl that the double speaks the protocol. Here: each kind converted as Calico converts it,
// watch events, bookmarks, 410 Gone → relist and diff, the API server stopped (fail-static,
// ConnectionFailed) and restarted (the watch resumes), token authentication, TLS, in-cluster.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Resource, ResourceError } from '../../model/resources.ts';
import { resourceId } from '../../model/resources.ts';
import type { Datastore, DatastoreEvent, DatastoreStatus } from '../../syncer/datastore/types.ts';
import { KubeApiDouble, type KubeObject, kubeconfigFor, makeServerTls } from '../harness/kube-api-double.ts';

process.env.FEDMESH_LOG_LEVEL ??= 'silent';
const { KubernetesDatastore } = await import('../../syncer/datastore/kubernetes.ts');
const { parseDatastoreSpec, openConnection } = await import('../../syncer/datastore/open.ts');

type Driver = InstanceType<typeof KubernetesDatastore>;

/** What a consumer of the datastore holds, and everything it was told. */
class Recorder {
  readonly state = new Map<string, Resource>();
  readonly batches: DatastoreEvent[][] = [];
  readonly statuses: { status: DatastoreStatus; detail?: string }[] = [];
  readonly errors: ResourceError[] = [];
  revisions: number[] = [];

  handlers = {
    onEvents: (events: DatastoreEvent[], revision: number) => {
      this.batches.push(events);
      this.revisions.push(revision);
      for (const ev of events) {
        if (ev.type === 'upsert') this.state.set(resourceId(ev.resource), ev.resource);
        else this.state.delete(resourceId(ev));
      }
    },
    onStatus: (status: DatastoreStatus, detail?: string) => {
      this.statuses.push({ status, ...(detail !== undefined ? { detail } : {}) });
    },
    onErrors: (errs: ResourceError[]) => this.errors.push(...errs),
  };

  get status(): DatastoreStatus | undefined {
    return this.statuses[this.statuses.length - 1]?.status;
  }

  get(id: string): Resource | undefined {
    return this.state.get(id);
  }

  /** Every event since batch `from`. */
  eventsSince(from: number): DatastoreEvent[] {
    return this.batches.slice(from).flat();
  }
}

async function until(what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await sleep(10);
  }
}

/** Started, and in sync. */
async function synced(ds: Datastore): Promise<Recorder> {
  const rec = new Recorder();
  await ds.start(rec.handlers);
  await until(`${ds.description} in sync`, () => rec.status === 'InSync');
  return rec;
}

const pod = (
  ns: string,
  name: string,
  o: {
    node?: string;
    ip?: string;
    phase?: string;
    hostNetwork?: boolean;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deleting?: boolean;
    sa?: string;
  } = {},
): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    name,
    namespace: ns,
    labels: o.labels ?? { app: name },
    ...(o.annotations ? { annotations: o.annotations } : {}),
    ...(o.deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}),
  },
  spec: {
    nodeName: o.node ?? 'node-1',
    serviceAccountName: o.sa ?? 'default',
    hostNetwork: o.hostNetwork ?? false,
    containers: [
      { name: 'c', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }, { containerPort: 9090 }] },
    ],
  },
  status: { phase: o.phase ?? 'Running', ...(o.ip ? { podIP: o.ip, podIPs: [{ ip: o.ip }] } : {}) },
});

const crd = (kind: string, name: string, spec: KubeObject, namespace?: string): KubeObject => ({
  apiVersion: 'crd.projectcalico.org/v1',
  kind,
  metadata: { name, ...(namespace ? { namespace } : {}) },
  spec,
});

/** A small cluster with one of everything the driver reads. */
function seed(api: KubeApiDouble): void {
  api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { team: 'web' } } });
  api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'fedmesh-system' } });
  api.put({
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: { name: 'db', namespace: 'shop', labels: { tier: 'data' } },
  });
  api.put(pod('shop', 'frontend-1', { ip: '10.10.0.5' }));
  api.put(pod('shop', 'db-1', { ip: '10.10.0.6', sa: 'db', labels: { app: 'db' } }));
  api.put(pod('shop', 'hostnet', { ip: '192.168.0.1', hostNetwork: true }));
  api.put(pod('shop', 'pending'));
  api.put(pod('shop', 'done', { ip: '10.10.0.7', phase: 'Succeeded' }));
  api.put(pod('shop', 'failed', { ip: '10.10.0.8', phase: 'Failed' }));
  api.put(
    pod('shop', 'leaving', {
      ip: '10.10.0.9',
      deleting: true,
      annotations: { 'cni.projectcalico.org/podIP': '' },
    }),
  );
  api.put({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: 'node-1',
      annotations: {
        'projectcalico.org/IPv4Address': '192.168.100.11/24',
        'projectcalico.org/IPv4VXLANTunnelAddr': '10.10.0.0',
        'projectcalico.org/VXLANTunnelMACAddr': '66:aa:00:00:00:01',
      },
    },
    status: { addresses: [{ type: 'InternalIP', address: '192.168.100.11' }] },
  });
  api.put(
    crd('IPPool', 'pool-a', { cidr: '10.10.0.0/16', vxlanMode: 'Always', natOutgoing: true, blockSize: 26 }),
  );
  api.put(crd('IPAMBlock', '10-10-0-0-26', { cidr: '10.10.0.0/26', affinity: 'host:node-1' }));
  api.put(crd('Tier', 'security', { order: 100 }));
  api.put(
    crd(
      'NetworkPolicy',
      'default.allow-db',
      {
        selector: "app == 'db'",
        types: ['Ingress'],
        ingress: [{ action: 'Allow', protocol: 'TCP', destination: { ports: [5432] } }],
      },
      'shop',
    ),
  );
  api.put(crd('GlobalNetworkPolicy', 'default.deny-all', { selector: 'all()', types: ['Ingress'] }));
  api.put(crd('NetworkSet', 'partners', { nets: ['203.0.113.0/24'] }, 'shop'));
  api.put(crd('GlobalNetworkSet', 'blocklist', { nets: ['198.51.100.0/24'] }));
  api.put(
    crd('HostEndpoint', 'node-1-eth0', {
      node: 'node-1',
      interfaceName: 'eth0',
      expectedIPs: ['192.168.100.11'],
    }),
  );
  api.put(
    crd('RemoteClusterConfiguration', 'cluster-b', {
      clusterAccessSecret: { name: 'cluster-b-access', namespace: 'fedmesh-system' },
      syncOptions: { overlayRoutingMode: 'Enabled' },
    }),
  );
  api.put({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: 'web', namespace: 'shop' },
    spec: { podSelector: { matchLabels: { app: 'frontend-1' } }, ingress: [{ from: [{ podSelector: {} }] }] },
  });
  api.put({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'cluster-b-access', namespace: 'fedmesh-system' },
    stringData: { datastoreType: 'kubernetes' },
  });
  // A Secret in a namespace no RCC names: never read.
  api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'unrelated', namespace: 'shop' }, data: {} });
  api.put({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'db', namespace: 'shop' },
    spec: { selector: { app: 'db' }, ports: [{ name: 'pg', port: 5432 }] },
  });
  api.put({ apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'db', namespace: 'shop' }, subsets: [] });
  api.put({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'db-abcde', namespace: 'shop' },
    addressType: 'IPv4',
    endpoints: [],
  });
}

const WEP = (ns: string, podName: string, node = 'node-1') =>
  `WorkloadEndpoint/${ns}/${node.replace(/-/g, '--')}-k8s-${podName.replace(/-/g, '--')}-eth0`;

function driverFor(api: KubeApiDouble, extra: { token?: string } = {}): Driver {
  return new KubernetesDatastore(
    { type: 'kubernetes', source: { kind: 'kubeconfig', text: kubeconfigFor(api.url, extra) } },
    { minBackoffMs: 50, maxBackoffMs: 200, unavailableRetryMs: 200 },
  );
}

describe('kubernetes datastore against the API server double', () => {
  let api: KubeApiDouble;
  let driver: Driver;
  const rec = new Recorder();

  before(async () => {
    api = await new KubeApiDouble({ bookmarkIntervalMs: 100 }).start();
    seed(api);
    driver = driverFor(api);
    await driver.start(rec.handlers);
    await until('in sync', () => rec.status === 'InSync');
  });
  after(async () => {
    await driver.stop();
    await api.stop();
  });

  test('the first listing is one batch between ResyncInProgress and InSync', () => {
    assert.deepEqual(
      rec.statuses.map((s) => s.status),
      ['Connecting', 'ResyncInProgress', 'InSync'],
    );
    assert.equal(rec.batches.length, 1);
    assert.ok(rec.batches[0]!.every((e) => e.type === 'upsert'));
  });

  test('running pods become workload endpoints as Calico converts them', () => {
    const wep = rec.get(WEP('shop', 'frontend-1'));
    assert.ok(wep && wep.kind === 'WorkloadEndpoint', 'frontend-1 has an endpoint');
    assert.equal(wep.name, 'node--1-k8s-frontend--1-eth0');
    assert.deepEqual(wep.spec.ipNetworks, ['10.10.0.5/32']);
    assert.match(wep.spec.interfaceName, /^cali[0-9a-f]{11}$/);
    assert.deepEqual(wep.spec.profiles, ['kns.shop', 'ksa.shop.default']);
    assert.equal(wep.labels['projectcalico.org/namespace'], 'shop');
    assert.equal(wep.labels['projectcalico.org/orchestrator'], 'k8s');
    assert.equal(wep.labels['projectcalico.org/serviceaccount'], 'default');
    assert.equal(wep.labels.app, 'frontend-1');
    assert.deepEqual(wep.spec.ports, [{ name: 'http', protocol: 'tcp', port: 8080 }]);
    const db = rec.get(WEP('shop', 'db-1'));
    assert.ok(db && db.kind === 'WorkloadEndpoint');
    assert.deepEqual(db.spec.profiles, ['kns.shop', 'ksa.shop.db']);
  });

  test('host-network pods, pods without an IP, and finished or released pods have no endpoint', () => {
    for (const name of ['hostnet', 'pending', 'done', 'failed', 'leaving'])
      assert.equal(rec.get(WEP('shop', name)), undefined, `${name} has no endpoint`);
    const weps = [...rec.state.values()].filter((r) => r.kind === 'WorkloadEndpoint');
    assert.equal(weps.length, 2);
  });

  test('namespaces, service accounts and nodes (from Calico annotations)', () => {
    const ns = rec.get('Namespace/shop');
    assert.ok(ns && ns.kind === 'Namespace');
    assert.equal(ns.labels.team, 'web');
    const sa = rec.get('ServiceAccount/shop/db');
    assert.ok(sa && sa.kind === 'ServiceAccount');
    assert.equal(sa.labels.tier, 'data');
    const node = rec.get('Node/node-1');
    assert.ok(node && node.kind === 'Node');
    assert.deepEqual(node.spec, {
      ipv4Address: '192.168.100.11',
      ipv4PrefixLen: 24,
      vxlanTunnelAddress: '10.10.0.0',
      vxlanTunnelMac: '66:aa:00:00:00:01',
    });
  });

  test('the Calico CRDs and Kubernetes NetworkPolicy', () => {
    for (const id of [
      'IPPool/pool-a',
      'IPAMBlock/10-10-0-0-26',
      'Tier/security',
      'NetworkPolicy/shop/default.allow-db',
      'GlobalNetworkPolicy/default.deny-all',
      'NetworkSet/shop/partners',
      'GlobalNetworkSet/blocklist',
      'HostEndpoint/node-1-eth0',
      'RemoteClusterConfiguration/cluster-b',
    ])
      assert.ok(rec.get(id), `${id} read`);
    const block = rec.get('IPAMBlock/10-10-0-0-26');
    assert.ok(block?.kind === 'IPAMBlock' && block.spec.affinityNode === 'node-1');
    const rcc = rec.get('RemoteClusterConfiguration/cluster-b');
    assert.ok(rcc?.kind === 'RemoteClusterConfiguration');
    assert.deepEqual(rcc.spec.clusterAccessSecret, { name: 'cluster-b-access', namespace: 'fedmesh-system' });
    assert.ok(
      [...rec.state.keys()].some((id) => id.startsWith('NetworkPolicy/shop/knp.default.web')),
      'the Kubernetes NetworkPolicy is converted',
    );
  });

  test('Secrets are read only in the namespaces RCCs name', () => {
    const read = api.requests.filter((r) => r.includes('/secrets'));
    assert.ok(read.length > 0);
    assert.ok(
      read.every((r) => r.includes('/namespaces/fedmesh-system/secrets')),
      read.join('\n'),
    );
  });

  test('watch: an added, changed and deleted pod; a pod that finishes is withdrawn', async () => {
    const from = rec.batches.length;
    api.put(pod('shop', 'web-2', { ip: '10.10.0.20', labels: { app: 'web' } }));
    await until('web-2 added', () => rec.get(WEP('shop', 'web-2')) !== undefined);
    api.put(pod('shop', 'web-2', { ip: '10.10.0.20', labels: { app: 'web', version: 'v2' } }));
    await until('web-2 relabelled', () => rec.get(WEP('shop', 'web-2'))?.labels.version === 'v2');
    api.put(
      pod('shop', 'web-2', { ip: '10.10.0.20', labels: { app: 'web', version: 'v2' }, phase: 'Succeeded' }),
    );
    await until('web-2 finished', () => rec.get(WEP('shop', 'web-2')) === undefined);
    api.put(pod('shop', 'web-3', { ip: '10.10.0.21' }));
    await until('web-3 added', () => rec.get(WEP('shop', 'web-3')) !== undefined);
    api.remove('v1', 'Pod', 'web-3', 'shop');
    await until('web-3 deleted', () => rec.get(WEP('shop', 'web-3')) === undefined);
    // A change that does not touch the endpoint (status only) is no event at all.
    const quiet = rec.batches.length;
    const fe = api.get('v1', 'Pod', 'frontend-1', 'shop')!;
    fe.status.conditions = [{ type: 'Ready', status: 'True' }];
    api.put(fe);
    api.put(crd('GlobalNetworkSet', 'marker', { nets: ['192.0.2.0/24'] }));
    await until('marker', () => rec.get('GlobalNetworkSet/marker') !== undefined);
    const after = rec.eventsSince(quiet);
    assert.ok(
      !after.some((e) => e.type === 'upsert' && e.resource.kind === 'WorkloadEndpoint'),
      'no endpoint event',
    );
    assert.ok(rec.eventsSince(from).length >= 5);
    const revs = rec.revisions;
    assert.ok(
      revs.every((r, i) => i === 0 || r > revs[i - 1]!),
      'revisions increase',
    );
  });

  test('a refused object names the object and the field; everything else keeps working', async () => {
    api.put(crd('IPPool', 'bad-pool', { cidr: '10.300.0.0/16' }));
    api.put(crd('GlobalNetworkSet', 'after-bad', { nets: ['192.0.2.128/25'] }));
    await until('refusal reported', () => rec.errors.some((e) => e.resource === 'IPPool/bad-pool'));
    await until('next object read', () => rec.get('GlobalNetworkSet/after-bad') !== undefined);
    const err = rec.errors.find((e) => e.resource === 'IPPool/bad-pool')!;
    assert.equal(err.field, 'spec.cidr');
    assert.match(err.origin.source, /ippools bad-pool$/);
    assert.equal(rec.get('IPPool/bad-pool'), undefined);
    // A later bad edit of a good object keeps its last good version.
    api.put(crd('IPPool', 'pool-a', { cidr: 'nonsense' }));
    await until('refusal of pool-a', () => rec.errors.some((e) => e.resource === 'IPPool/pool-a'));
    assert.ok(rec.get('IPPool/pool-a'), 'pool-a keeps its last good version');
    api.put(
      crd('IPPool', 'pool-a', {
        cidr: '10.10.0.0/16',
        vxlanMode: 'Always',
        natOutgoing: true,
        blockSize: 26,
      }),
    );
  });

  test('a bad Node annotation is refused naming the annotation', async () => {
    api.put({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'node-9', annotations: { 'projectcalico.org/IPv4Address': '1.2.3' } },
    });
    await until('refusal', () => rec.errors.some((e) => e.resource === 'Node/node-9'));
    const err = rec.errors.find((e) => e.resource === 'Node/node-9')!;
    assert.equal(err.field, 'metadata.annotations["projectcalico.org/IPv4Address"]');
    api.remove('v1', 'Node', 'node-9');
  });

  test('watches ask for bookmarks, and bookmarks move the resume point', async () => {
    const watches = api.requests.filter((r) => r.includes('watch=true'));
    assert.ok(watches.length >= 18, `one watch per collection (${watches.length})`);
    assert.ok(watches.every((w) => w.includes('allowWatchBookmarks=true')));
    // Changes to other collections raise the global revision; bookmarks carry it to every watch,
    // so after a clean end of the watches each resumes from a revision past those changes.
    for (let i = 0; i < 5; i++) api.put(crd('GlobalNetworkSet', `churn-${i}`, { nets: ['192.0.2.0/28'] }));
    const rv = api.resourceVersion;
    await sleep(300); // bookmarks every 100 ms
    const n = api.requests.length;
    api.closeWatches();
    await until(
      'watches resumed',
      () => api.requests.slice(n).filter((r) => r.includes('/pods?') && r.includes('watch=true')).length > 0,
    );
    const resumed = api.requests.slice(n).find((r) => r.includes('/pods?') && r.includes('watch=true'))!;
    const from = Number(new URL(resumed.split(' ')[1]!, 'http://x').searchParams.get('resourceVersion'));
    assert.ok(from >= rv, `pods watch resumed from ${from}, the bookmark's revision ${rv} or later`);
    assert.ok(
      !api.requests.slice(n).some((r) => r.includes('/pods?') && !r.includes('watch=true')),
      'no relist',
    );
  });

  test('410 Gone: relist, and only the difference goes out (nothing withdrawn and re-added)', async () => {
    const relists = driver.relistCount;
    // Stop the watches, change things while nobody watches, then forget the history.
    await api.stop();
    await until('connection failed', () => rec.status === 'ConnectionFailed');
    api.put(pod('shop', 'while-gone', { ip: '10.10.0.30' }));
    api.remove('crd.projectcalico.org/v1', 'GlobalNetworkSet', 'blocklist');
    const fe = api.get('v1', 'Pod', 'frontend-1', 'shop')!;
    fe.metadata.labels.version = 'v3';
    api.put(fe);
    api.compact();
    const from = rec.batches.length;
    await api.start();
    await until(
      'in sync again',
      () => rec.status === 'InSync' && rec.get(WEP('shop', 'while-gone')) !== undefined,
    );
    await until('relisted', () => driver.relistCount > relists);
    // Each collection relists on its own: wait until every change has arrived.
    await until(
      'every change seen',
      () =>
        rec.get('GlobalNetworkSet/blocklist') === undefined &&
        rec.get(WEP('shop', 'frontend-1'))?.labels.version === 'v3',
    );
    await sleep(200);
    const events = rec.eventsSince(from);
    const ids = events.map((e) => (e.type === 'upsert' ? resourceId(e.resource) : resourceId(e)));
    assert.deepEqual(
      new Set(ids),
      new Set([WEP('shop', 'while-gone'), 'GlobalNetworkSet/blocklist', WEP('shop', 'frontend-1')]),
      'only what changed',
    );
    assert.equal(rec.get(WEP('shop', 'frontend-1'))?.labels.version, 'v3');
    assert.equal(rec.get('GlobalNetworkSet/blocklist'), undefined);
    assert.ok(
      !events.some((e) => e.type === 'delete' && e.kind === 'WorkloadEndpoint'),
      'no withdraw of endpoints',
    );
  });

  test('API server stopped: ConnectionFailed, data kept; restarted: the watch resumes without a relist', async () => {
    const count = rec.state.size;
    const mark = rec.statuses.length;
    await api.stop();
    await until('connection failed', () => rec.status === 'ConnectionFailed');
    const before = rec.batches.length;
    await sleep(300);
    assert.equal(rec.state.size, count, 'fail-static: nothing withdrawn');
    assert.equal(rec.batches.length, before, 'no events while down');
    // Several retries (50 ms backoff), and never an InSync in between while the server is down.
    assert.deepEqual(
      rec.statuses.slice(mark).map((x) => x.status),
      ['ConnectionFailed'],
    );
    assert.match(rec.statuses[rec.statuses.length - 1]!.detail ?? '', /ECONNREFUSED|socket|closed|connect/i);
    // A change made while the driver cannot see it arrives through the resumed watch.
    api.put(pod('shop', 'late', { ip: '10.10.0.31' }));
    const n = api.requests.length;
    const relists = driver.relistCount;
    await api.start();
    await until('in sync', () => rec.status === 'InSync');
    await until('late pod', () => rec.get(WEP('shop', 'late')) !== undefined);
    assert.equal(driver.relistCount, relists, 'resumed, not relisted');
    assert.ok(
      !api.requests.slice(n).some((r) => r.startsWith('GET /api/v1/pods?') && !r.includes('watch=true')),
      'no pod list after the restart',
    );
    assert.equal(rec.state.size, count + 1);
  });

  test('an RCC naming another namespace brings a watch on that namespace’s Secrets', async () => {
    api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'other' } });
    api.put({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'c-access', namespace: 'other' },
      data: {},
    });
    api.put(
      crd('RemoteClusterConfiguration', 'cluster-c', {
        clusterAccessSecret: { name: 'c-access', namespace: 'other' },
      }),
    );
    await until('other secrets watched', () =>
      api.requests.some((r) => r.includes('/namespaces/other/secrets')),
    );
    api.remove('crd.projectcalico.org/v1', 'RemoteClusterConfiguration', 'cluster-c');
    await until('RCC gone', () => rec.get('RemoteClusterConfiguration/cluster-c') === undefined);
  });
});

describe('kubernetes datastore: authentication and configuration', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'fedmesh-kube-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('a wrong bearer token is refused (ConnectionFailed, 401); the right one is in sync', async () => {
    const api = await new KubeApiDouble({ token: 's3cret' }).start();
    seed(api);
    const bad = new Recorder();
    const d1 = driverFor(api, { token: 'wrong' });
    await d1.start(bad.handlers);
    await until('refused', () => bad.status === 'ConnectionFailed');
    assert.match(bad.statuses[bad.statuses.length - 1]!.detail ?? '', /401|Unauthorized/);
    assert.equal(bad.batches.length, 0);
    await d1.stop();
    const d2 = driverFor(api, { token: 's3cret' });
    const good = await synced(d2);
    assert.ok(good.get(WEP('shop', 'frontend-1')));
    await d2.stop();
    await api.stop();
  });

  test('endpoint + token file + CA file over HTTPS (--k8s-* flags), and in-cluster', async () => {
    const tls = makeServerTls(dir);
    const api = await new KubeApiDouble({ token: 'tok', tls: { key: tls.key, cert: tls.cert } }).start();
    seed(api);
    writeFileSync(join(dir, 'token'), 'tok\n');
    writeFileSync(join(dir, 'ca.pem'), tls.ca);
    const config = parseDatastoreSpec('kubernetes', {
      'k8s-api-endpoint': api.url,
      'k8s-token-file': join(dir, 'token'),
      'k8s-ca-file': join(dir, 'ca.pem'),
    });
    const ds = openConnection(config);
    const rec = await synced(ds);
    assert.ok(rec.get(WEP('shop', 'frontend-1')));
    await ds.stop();

    // Without the CA the server's certificate is not trusted.
    const untrusted = new Recorder();
    const ds2 = openConnection(
      parseDatastoreSpec('kubernetes', { 'k8s-api-endpoint': api.url, 'k8s-token-file': join(dir, 'token') }),
    );
    await ds2.start(untrusted.handlers);
    await until('refused', () => untrusted.status === 'ConnectionFailed');
    assert.match(
      untrusted.statuses[untrusted.statuses.length - 1]!.detail ?? '',
      /certificate|self.signed|issuer/i,
    );
    await ds2.stop();

    // In-cluster: the service account's token and CA at the standard paths, the service's address.
    const root = join(dir, 'root');
    const sa = join(root, 'var/run/secrets/kubernetes.io/serviceaccount');
    mkdirSync(sa, { recursive: true });
    writeFileSync(join(sa, 'token'), 'tok');
    writeFileSync(join(sa, 'ca.crt'), tls.ca);
    writeFileSync(join(sa, 'namespace'), 'fedmesh-system');
    const saved = { ...process.env };
    process.env.KUBERNETES_SERVICE_HOST = '127.0.0.1';
    process.env.KUBERNETES_SERVICE_PORT = String(api.port);
    delete process.env.KUBECONFIG;
    try {
      assert.deepEqual(parseDatastoreSpec('kubernetes'), {
        type: 'kubernetes',
        source: { kind: 'in-cluster' },
      });
      const inCluster = new KubernetesDatastore(
        { type: 'kubernetes', source: { kind: 'in-cluster' } },
        { inClusterRoot: root },
      );
      const r3 = await synced(inCluster);
      assert.ok(r3.get('RemoteClusterConfiguration/cluster-b'));
      await inCluster.stop();
    } finally {
      process.env = saved;
    }
    await api.stop();
  });

  test('--datastore kubernetes:PATH and KUBECONFIG read the kubeconfig; bad settings name the flag', () => {
    const path = join(dir, 'kubeconfig');
    writeFileSync(path, kubeconfigFor('http://127.0.0.1:1'));
    const c = parseDatastoreSpec(`kubernetes:${path}`);
    assert.equal(c.type === 'kubernetes' && c.source.kind, 'kubeconfig');
    assert.throws(
      () => parseDatastoreSpec('kubernetes:/nonexistent/kc'),
      /kubernetes: \/nonexistent\/kc: cannot read/,
    );
    assert.throws(
      () =>
        parseDatastoreSpec('kubernetes', { 'k8s-api-endpoint': 'https://x:6443', 'k8s-token-file': '/nope' }),
      /--k8s-token-file \/nope/,
    );
    assert.throws(
      () => parseDatastoreSpec('kubernetes', { 'k8s-api-endpoint': 'x:6443' }),
      /--k8s-api-endpoint x:6443/,
    );
    const saved = process.env.KUBECONFIG;
    process.env.KUBECONFIG = path;
    try {
      const k = parseDatastoreSpec('kubernetes');
      assert.equal(k.type === 'kubernetes' && k.source.kind, 'kubeconfig');
    } finally {
      if (saved === undefined) delete process.env.KUBECONFIG;
      else process.env.KUBECONFIG = saved;
    }
  });

  test('a resource the server does not serve or forbids counts as empty and blocks nothing', async () => {
    const { DEFAULT_TYPES } = await import('../harness/kube-api-double.ts');
    // An API server without the Calico CRDs and without EndpointSlices.
    const api = await new KubeApiDouble({
      types: DEFAULT_TYPES.filter(
        (t) => t.group !== 'crd.projectcalico.org' && t.group !== 'discovery.k8s.io',
      ),
    }).start();
    api.put(pod('shop', 'frontend-1', { ip: '10.10.0.5' }));
    const d = driverFor(api);
    const rec = await synced(d);
    assert.ok(rec.get(WEP('shop', 'frontend-1')));
    await d.stop();
    await api.stop();
  });
});
