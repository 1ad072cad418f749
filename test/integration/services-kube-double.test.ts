// The whole services controller on the kubernetes datastore, against Kubernetes API server doubles
// (test/harness/kube-api-double.ts). They are doubles because no real API server can run on these
// machines; kube-api-double-kubectl.test.ts proves the double against kubectl. Wired as
// `fedmesh services-controller --datastore kubernetes:<kubeconfig>` wires it (services/main.ts):
// cluster a's double is the local datastore (the kubernetes driver) and the writer's target
// (services/kube-writer.ts); cluster b is a second double reached through an RCC in a
// (datastoreType kubernetes, a kubeconfig file path), resolved by services/remotes.ts. Every
// check reads the objects in the doubles, as `kubectl get` would. Only the timings are shortened
// (debounce, retry, b's reconnect backoff) to keep the test fast.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ServicesController } from '../../services/controller.ts';
import { writerFor } from '../../services/main.ts';
import { resolverFor } from '../../services/remotes.ts';
import type { KubernetesConnection } from '../../syncer/datastore/connection.ts';
import { KubernetesDatastore } from '../../syncer/datastore/kubernetes.ts';
import { openConnection, parseDatastoreSpec } from '../../syncer/datastore/open.ts';
import { KubeApiDouble, type KubeObject, kubeconfigFor } from '../harness/kube-api-double.ts';
import { waitFor } from '../helpers/wait.ts';

const SELECTOR = 'federation.tigera.io/serviceSelector';
const MCS = 'multicluster.x-k8s.io/v1alpha1';
const NS = 'shop';

const meta = (name: string, extra: KubeObject = {}) => ({ name, namespace: NS, ...extra });
const tcp = (name: string, port: number) => ({ name, port, protocol: 'TCP' });
const pod = (cluster: string, name: string, ip: string) => ({
  ip,
  nodeName: `${cluster}-node1`,
  targetRef: { kind: 'Pod', name, namespace: NS, uid: `uid-${cluster}-${name}` },
});
const service = (name: string, ports: KubeObject[], extra: KubeObject = {}, spec: KubeObject = {}) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: meta(name, extra),
  spec: { ports, ...spec },
});
const endpoints = (name: string, subsets: KubeObject[], extra: KubeObject = {}) => ({
  apiVersion: 'v1',
  kind: 'Endpoints',
  metadata: meta(name, extra),
  subsets,
});
const federated = { annotations: { [SELECTOR]: "app == 'db'" } };

/** b's backing db Endpoints: ready pods, one pod not ready, on port 6433. */
const bDb = (ready: string[]) =>
  endpoints('db', [
    {
      addresses: ready.map((ip, i) => pod('b', `db-${i + 1}`, ip)),
      notReadyAddresses: [pod('b', 'db-9', '10.20.0.9')],
      ports: [tcp('pg', 6433)],
    },
  ]);

describe('services controller on the kubernetes datastore (API server doubles)', () => {
  let dir: string;
  let a: KubeApiDouble;
  let b: KubeApiDouble;
  let controller: ServicesController;
  let foreignVersion: string;
  const bStatuses: string[] = [];

  const fed = () => a.get('v1', 'Endpoints', 'fed', NS);
  /** The federated Endpoints' addresses as `ip=targetRef.name` (not-ready ones marked `!`). */
  const fedAddresses = (): string[] =>
    (fed()?.subsets ?? [])
      .flatMap((s: KubeObject) => [
        ...(s.addresses ?? []).map((x: KubeObject) => `${x.ip}=${x.targetRef?.name}`),
        ...(s.notReadyAddresses ?? []).map((x: KubeObject) => `!${x.ip}=${x.targetRef?.name}`),
      ])
      .sort();
  const slices = (label: string, value: string) =>
    a
      .list('discovery.k8s.io/v1', 'EndpointSlice')
      .filter((s) => s.metadata.labels?.[label] === value)
      .sort((x, y) => (x.metadata.name < y.metadata.name ? -1 : 1));
  /** What b contributes to a, in one line: federated addresses, slices from b, the import. */
  const fromB = () =>
    [
      fedAddresses().filter((x) => x.includes('=b/')).length,
      slices('multicluster.kubernetes.io/source-cluster', 'b').length,
      a.get(MCS, 'ServiceImport', 'api', NS) ? 1 : 0,
    ].join();
  const A_ONLY = ['10.10.0.1=db-1'];
  const WITH_B = ['!10.20.0.9=b/db-9', '10.10.0.1=db-1', '10.20.0.1=b/db-1'];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fedmesh-svc-kube-'));
    a = await new KubeApiDouble().start();
    b = await new KubeApiDouble({ token: 'b-token' }).start();
    writeFileSync(join(dir, 'a.kubeconfig'), kubeconfigFor(a.url));
    writeFileSync(join(dir, 'b.kubeconfig'), kubeconfigFor(b.url, { token: 'b-token' }));
    for (const api of [a, b]) api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });

    // a: the federated Service (pg/TCP and dns/TCP), a local backing db whose Endpoints offer pg/TCP
    // on 6432, dns only over UDP and an admin port; a subset with only admin must vanish.
    a.put(service('fed', [tcp('pg', 5432), tcp('dns', 53)], federated));
    a.put(service('db', [tcp('pg', 6432)], { labels: { app: 'db' } }, { selector: { app: 'db' } }));
    a.put(
      endpoints('db', [
        {
          addresses: [pod('a', 'db-1', '10.10.0.1')],
          ports: [tcp('pg', 6432), { name: 'dns', port: 53, protocol: 'UDP' }, tcp('admin', 7000)],
        },
        { addresses: [pod('a', 'admin-1', '10.10.0.7')], ports: [tcp('admin', 7000)] },
      ]),
    );
    // A "federated" Service with a spec.selector, and Endpoints the controller wrote for it before.
    a.put(service('legacy', [tcp('pg', 5432)], federated, { selector: { app: 'db' } }));
    a.put(endpoints('legacy', [{ addresses: [{ ip: '10.10.0.1' }], ports: [tcp('pg', 6432)] }], federated));
    // A federated Service whose Endpoints belong to someone else.
    a.put(service('other', [tcp('pg', 5432)], federated));
    foreignVersion = a.put(endpoints('other', [{ addresses: [{ ip: '192.0.2.1' }], ports: [tcp('pg', 1)] }]))
      .metadata.resourceVersion;
    a.put({
      apiVersion: 'crd.projectcalico.org/v1',
      kind: 'RemoteClusterConfiguration',
      metadata: { name: 'b' },
      spec: { datastoreType: 'kubernetes', kubeconfig: join(dir, 'b.kubeconfig') },
    });

    // b: its db (pg/TCP on 6433) and an api Service, exported later.
    b.put(service('db', [tcp('pg', 6433)], { labels: { app: 'db' } }, { selector: { app: 'db' } }));
    b.put(bDb(['10.20.0.1']));
    b.put(service('api', [tcp('http', 80)], {}, { selector: { app: 'api' } }));
    b.put(endpoints('api', [{ addresses: [pod('b', 'api-1', '10.20.1.1')], ports: [tcp('http', 8080)] }]));

    // As services/main.ts wires it, with short timings.
    const spec = `kubernetes:${join(dir, 'a.kubeconfig')}`;
    controller = new ServicesController({
      cluster: 'a',
      local: openConnection(parseDatastoreSpec(spec)),
      localDerive: false,
      writer: await writerFor(spec),
      resolveRemote: resolverFor(spec),
      openRemote: (c) => {
        const ds = new KubernetesDatastore(c as KubernetesConnection, {
          remote: true,
          minBackoffMs: 100,
          maxBackoffMs: 400,
        });
        // Every status b's driver reports to the controller, in order.
        const start = ds.start.bind(ds);
        ds.start = (h) =>
          start({
            ...h,
            onStatus: (st, detail) => {
              bStatuses.push(st);
              h.onStatus(st, detail);
            },
          });
        return ds;
      },
      remoteSyncTimeoutMs: 5000,
      remoteEndpointsGraceMs: 0,
      debounceMs: 5,
      retryMs: 50,
      maxRetryMs: 500,
    });
    await controller.start();
  });

  after(async () => {
    await controller?.stop();
    await a?.stop();
    await b?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('ports matched by name and protocol with the backing numbers; remote pods named <cluster>/<pod>', async () => {
    await waitFor('federated Endpoints with both clusters', fedAddresses, (v) => v.length === 3);
    const e = fed();
    assert.equal(e?.metadata.annotations[SELECTOR], "app == 'db'");
    assert.deepEqual(e?.subsets, [
      { addresses: [pod('a', 'db-1', '10.10.0.1')], ports: [tcp('pg', 6432)] },
      {
        // Renamed <cluster>/<pod>; namespace, node and uid kept.
        addresses: [
          {
            ip: '10.20.0.1',
            nodeName: 'b-node1',
            targetRef: { kind: 'Pod', name: 'b/db-1', namespace: NS, uid: 'uid-b-db-1' },
          },
        ],
        notReadyAddresses: [
          {
            ip: '10.20.0.9',
            nodeName: 'b-node1',
            targetRef: { kind: 'Pod', name: 'b/db-9', namespace: NS, uid: 'uid-b-db-9' },
          },
        ],
        ports: [tcp('pg', 6433)],
      },
    ]);
  });

  test('a Service with a spec.selector is not federated: its owned Endpoints are removed', async () => {
    await waitFor(
      'legacy Endpoints removed',
      () => a.get('v1', 'Endpoints', 'legacy', NS),
      (v) => !v,
    );
    assert.deepEqual(slices('kubernetes.io/service-name', 'legacy'), []);
    const report = controller.last?.services.find((s) => s.name === 'legacy');
    assert.match(report?.problems.join() ?? '', /spec\.selector/);
  });

  test('foreign Endpoints are untouched; a manual edit of owned Endpoints is overwritten', async () => {
    const other = a.get('v1', 'Endpoints', 'other', NS);
    assert.equal(other?.metadata.resourceVersion, foreignVersion);
    assert.equal(other?.metadata.annotations, undefined);
    assert.deepEqual(slices('kubernetes.io/service-name', 'other'), []);

    const good = fed()?.subsets;
    a.put({ ...fed(), subsets: [{ addresses: [{ ip: '10.99.99.99' }], ports: [tcp('pg', 1)] }] });
    await waitFor(
      'manual edit overwritten',
      () => fed()?.subsets,
      (s) => JSON.stringify(s) === JSON.stringify(good),
    );
  });

  test('one EndpointSlice per source cluster, labelled', () => {
    const fedSlices = slices('kubernetes.io/service-name', 'fed');
    assert.deepEqual(
      fedSlices
        .map((s) => [
          s.metadata.labels['multicluster.kubernetes.io/source-cluster'],
          s.metadata.labels['endpointslice.kubernetes.io/managed-by'],
          s.addressType,
          s.ports,
          s.endpoints.map(
            (x: KubeObject) => `${x.addresses.join()}=${x.targetRef?.name}/${x.conditions.ready}`,
          ),
        ])
        .sort(),
      [
        ['a', 'services-controller.fedmesh.io', 'IPv4', [tcp('pg', 6432)], ['10.10.0.1=db-1/true']],
        [
          'b',
          'services-controller.fedmesh.io',
          'IPv4',
          [tcp('pg', 6433)],
          ['10.20.0.1=b/db-1/true', '10.20.0.9=b/db-9/false'],
        ],
      ],
    );
  });

  test('a backing Endpoints change in b reaches the federated Endpoints (time printed)', async () => {
    b.put(bDb(['10.20.0.1', '10.20.0.2']));
    const ms = await waitFor(
      'new remote endpoint',
      fedAddresses,
      (v) => v.includes('10.20.0.2=b/db-2'),
      10_000,
    );
    console.log(`# backing Endpoints change in b → federated Endpoints in a: ${ms.toFixed(0)} ms`);
    b.put(bDb(['10.20.0.1']));
    await waitFor('remote endpoint removed again', fedAddresses, (v) => v.join() === WITH_B.join());
  });

  test('a ServiceExport in b becomes a ServiceImport and EndpointSlices in a', async () => {
    b.put({ apiVersion: MCS, kind: 'ServiceExport', metadata: meta('api') });
    await waitFor(
      'ServiceImport',
      () => a.get(MCS, 'ServiceImport', 'api', NS),
      (v) => v !== undefined,
    );
    const imp = a.get(MCS, 'ServiceImport', 'api', NS);
    assert.equal(imp?.metadata.labels['app.kubernetes.io/managed-by'], 'services-controller.fedmesh.io');
    assert.deepEqual(imp?.spec, { type: 'ClusterSetIP', ports: [tcp('http', 80)] });
    assert.deepEqual(imp?.status, { clusters: [{ cluster: 'b' }] });
    const imported = slices('multicluster.kubernetes.io/service-name', 'api');
    assert.deepEqual(
      imported.map((s) => [
        s.metadata.labels['multicluster.kubernetes.io/source-cluster'],
        s.ports,
        s.endpoints.map((x: KubeObject) => `${x.addresses.join()}=${x.targetRef?.name}`),
      ]),
      [['b', [tcp('http', 8080)], ['10.20.1.1=b/api-1']]],
    );
  });

  test("b's API server stopped: its endpoints are withdrawn (grace 0) and stay out; restarted: back", async () => {
    const mark = bStatuses.length;
    await b.stop();
    await waitFor('b withdrawn: no addresses, slices or import from b', fromB, (v) => v === '0,0,0');
    assert.deepEqual(fedAddresses(), A_ONLY);
    // While b is down (several reconnect attempts), its endpoints must not come back.
    const seen = new Set<string>();
    const until = performance.now() + 1500;
    while (performance.now() < until) {
      seen.add(fedAddresses().join());
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual([...seen], [A_ONLY.join()]);
    assert.equal(controller.remoteStatuses()[0]?.status, 'ConnectionFailed');
    // Nor may b's driver claim it is in sync again while its API server is down.
    assert.deepEqual(bStatuses.slice(mark), ['ConnectionFailed']);

    await b.start();
    // Back: b's two addresses in fed, its two slices (fed's and api's), the import.
    await waitFor('b back', fromB, (v) => v === '2,2,1', 10_000);
    assert.deepEqual(fedAddresses(), WITH_B);
  });

  test('deleting the RCC withdraws b at once', async () => {
    assert.equal(fromB(), '2,2,1');
    a.remove('crd.projectcalico.org/v1', 'RemoteClusterConfiguration', 'b');
    const ms = await waitFor('b withdrawn', fromB, (v) => v === '0,0,0');
    console.log(`# RCC deleted → everything from b withdrawn in a: ${ms.toFixed(0)} ms`);
    assert.deepEqual(fedAddresses(), A_ONLY);
    assert.deepEqual(controller.remoteStatuses(), []);
  });
});
