// The syncer on the kubernetes datastore, against Kubernetes API server doubles
// (test/harness/kube-api-double.ts; no real API server can run on these machines, and
// kube-api-double-kubectl.test.ts checks the double with kubectl):
// - a syncer whose local datastore is `kubernetes:<kubeconfig>` and whose RCC points at a second
//   cluster through `datastoreType: kubernetes` + `kubeconfig` serves both clusters' endpoints to an
//   agent's feed client;
// - the shipped Deployment (daemonset/syncer-deployment.yaml), run with its own arguments and the
//   in-cluster configuration a pod gets, starts and becomes ready.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { RemoteClusterState, ResourceKind } from '../../proto/service.ts';
import { freePort } from '../harness/etcd.ts';
import { KubeApiDouble, type KubeObject, kubeconfigFor, makeServerTls } from '../harness/kube-api-double.ts';
import { makeCa, makeLeaf } from '../helpers/certs.ts';
import { syncerWithAgent } from '../helpers/syncer-agent.ts';

process.env.FEDMESH_LOG_LEVEL ??= 'silent';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await sleep(20);
  }
}

/** A cluster: a namespace, a node with Calico's annotations, a pool, and running pods. */
function cluster(api: KubeApiDouble, prefix: string, octet: number, pods: string[]): void {
  api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } });
  api.put({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: `${prefix}-node1`,
      annotations: {
        'projectcalico.org/IPv4Address': `192.168.100.${octet}/24`,
        'projectcalico.org/IPv4VXLANTunnelAddr': `10.${octet}.0.0`,
        'projectcalico.org/VXLANTunnelMACAddr': `66:aa:00:00:00:${octet.toString(16).padStart(2, '0')}`,
      },
    },
  });
  api.put({
    apiVersion: 'crd.projectcalico.org/v1',
    kind: 'IPPool',
    metadata: { name: `${prefix}-pool` },
    spec: { cidr: `10.${octet}.0.0/16`, vxlanMode: 'Always', natOutgoing: true, blockSize: 26 },
  });
  pods.forEach((name, i) => {
    const pod: KubeObject = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: 'shop', labels: { app: name.replace(/-\d+$/, '') } },
      spec: { nodeName: `${prefix}-node1`, containers: [{ name: 'c' }] },
      status: { phase: 'Running', podIP: `10.${octet}.0.${i + 5}` },
    };
    api.put(pod);
  });
}

function cleanupList(t: TestContext) {
  const cleanups: (() => unknown)[] = [];
  t.after(async () => {
    for (let f = cleanups.pop(); f; f = cleanups.pop()) await f();
  });
  return cleanups;
}

describe('syncer on the kubernetes datastore (API server doubles)', () => {
  test('local cluster from kubernetes:<kubeconfig>, remote through an RCC with a kubeconfig', async (t) => {
    const cleanups = cleanupList(t);
    const dir = mkdtempSync(join(tmpdir(), 'fedmesh-kube-syncer-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const a = await new KubeApiDouble().start();
    cleanups.push(() => a.stop());
    const b = await new KubeApiDouble({ token: 'b-token' }).start();
    cleanups.push(() => b.stop());
    cluster(a, 'a', 10, ['frontend-1', 'web-1']);
    cluster(b, 'b', 20, ['db-1', 'db-2']);
    writeFileSync(join(dir, 'a.kubeconfig'), kubeconfigFor(a.url));
    writeFileSync(join(dir, 'b.kubeconfig'), kubeconfigFor(b.url, { token: 'b-token' }));
    a.put({
      apiVersion: 'crd.projectcalico.org/v1',
      kind: 'RemoteClusterConfiguration',
      metadata: { name: 'b' },
      spec: {
        datastoreType: 'kubernetes',
        kubeconfig: join(dir, 'b.kubeconfig'),
        syncOptions: { overlayRoutingMode: 'Enabled' },
      },
    });

    const agent = await syncerWithAgent(
      {
        cluster: 'a',
        datastore: `kubernetes:${join(dir, 'a.kubeconfig')}`,
        dir,
        remoteSyncTimeoutMs: 15_000,
      },
      (stop) => cleanups.push(stop),
    );
    await until('feed in sync', () => agent.inSync);
    assert.deepEqual(agent.keys(ResourceKind.WORKLOAD_ENDPOINT), [
      'a-node1/k8s/shop/frontend-1/eth0',
      'a-node1/k8s/shop/web-1/eth0',
      'b/b-node1/k8s/shop/db-1/eth0',
      'b/b-node1/k8s/shop/db-2/eth0',
    ]);
    assert.equal(agent.statuses.get('b')?.state, RemoteClusterState.IN_SYNC);
    // From the remote only what is federated is read: no policies, RCCs or Secrets.
    assert.ok(b.requests.some((r) => r.startsWith('GET /api/v1/pods')));
    assert.deepEqual(
      b.requests.filter((r) => /networkpolicies|remoteclusterconfigurations|secrets|tiers/.test(r)),
      [],
    );

    // A pod changed in the remote cluster reaches the agent through the watch.
    b.put({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'db-3', namespace: 'shop', labels: { app: 'db' } },
      spec: { nodeName: 'b-node1', containers: [{ name: 'c' }] },
      status: { phase: 'Running', podIP: '10.20.0.30' },
    });
    b.remove('v1', 'Pod', 'db-1', 'shop');
    await until('remote change', () => {
      const eps = agent.keys(ResourceKind.WORKLOAD_ENDPOINT);
      return eps.includes('b/b-node1/k8s/shop/db-3/eth0') && !eps.includes('b/b-node1/k8s/shop/db-1/eth0');
    });

    // The remote API server goes away: its endpoints stay (fail-static), its state says so.
    await b.stop();
    await until(
      'remote connection failed',
      () => agent.statuses.get('b')?.state === RemoteClusterState.CONNECTION_FAILED,
    );
    assert.ok(agent.keys(ResourceKind.WORKLOAD_ENDPOINT).includes('b/b-node1/k8s/shop/db-3/eth0'));
    await b.start();
    await until('remote in sync again', () => agent.statuses.get('b')?.state === RemoteClusterState.IN_SYNC);
  });

  test('fedmesh eval reads a kubernetes datastore once (--datastore kubernetes:<kubeconfig>)', async (t) => {
    const cleanups = cleanupList(t);
    const dir = mkdtempSync(join(tmpdir(), 'fedmesh-kube-eval-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const api = await new KubeApiDouble().start();
    cleanups.push(() => api.stop());
    cluster(api, 'a', 10, ['frontend-1', 'web-1']);
    writeFileSync(join(dir, 'kubeconfig'), kubeconfigFor(api.url));
    const run = (datastore: string) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        execFile(
          process.execPath,
          [
            '--import',
            'tsx',
            join(ROOT, 'cli', 'main.ts'),
            'eval',
            "app == 'frontend'",
            '--cluster',
            'a',
            '--datastore',
            datastore,
            '--output',
            'json',
          ],
          { encoding: 'utf8', env: { ...process.env, FEDMESH_LOG_LEVEL: 'silent' } },
          (e, out, err) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
        );
      });
    const r = await run(`kubernetes:${join(dir, 'kubeconfig')}`);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(JSON.parse(r.out).matches, [
      { endpoint: 'shop/a--node1-k8s-frontend--1-eth0', cluster: 'a' },
    ]);
    // An API server that cannot be reached: a clear error, not a hang.
    writeFileSync(join(dir, 'dead'), kubeconfigFor('http://127.0.0.1:1'));
    const dead = await run(`kubernetes:${join(dir, 'dead')}`);
    assert.notEqual(dead.code, 0);
    assert.match(dead.err, /kubernetes:http:\/\/127\.0\.0\.1:1.*ECONNREFUSED/);
  });

  test('the shipped syncer Deployment starts in-cluster and becomes ready', async (t) => {
    const cleanups = cleanupList(t);
    const dir = mkdtempSync(join(tmpdir(), 'fedmesh-kube-deploy-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const docs = parseAllDocuments(
      readFileSync(join(ROOT, 'daemonset', 'syncer-deployment.yaml'), 'utf8'),
    ).map((d) => d.toJS() as KubeObject);
    const deployment = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === 'fedmesh-syncer')!;
    const config = docs.find((d) => d.kind === 'ConfigMap')!;
    const container = deployment.spec.template.spec.containers[0];
    const health = await freePort();
    const feed = await freePort();
    // The manifest's own arguments; only the ports are moved to free loopback ones, and the feed's
    // TLS files (the mounted fedmesh-syncer-tls Secret) are a test CA's.
    const ca = makeCa(dir, 'feed-ca');
    const leaf = makeLeaf(ca, 'syncer', 'fedmesh-syncer', 'serverAuth', [
      'DNS:fedmesh-syncer.fedmesh-system.svc',
    ]);
    const mounted: Record<string, string> = {
      '/etc/fedmesh/tls/ca.crt': ca.crt,
      '/etc/fedmesh/tls/tls.crt': leaf.crt,
      '/etc/fedmesh/tls/tls.key': leaf.key,
    };
    const args: string[] = container.args.map(
      (a: string) =>
        mounted[a] ??
        a
          .replace('$(CLUSTER_NAME)', config.data.cluster_name)
          .replace(/^0\.0\.0\.0:5473$/, `127.0.0.1:${feed}`)
          .replace(/^\$\(POD_IP\):9098$/, `127.0.0.1:${health}`),
    );
    assert.ok(args.includes('kubernetes'), 'the Deployment runs --datastore kubernetes');

    // What a pod gets: the service account's token, CA and namespace, and the service's address.
    const tls = makeServerTls(dir);
    const api = await new KubeApiDouble({ token: 'sa-token', tls: { key: tls.key, cert: tls.cert } }).start();
    cleanups.push(() => api.stop());
    cluster(api, 'a', 10, ['frontend-1']);
    const sa = join(dir, 'root', 'var/run/secrets/kubernetes.io/serviceaccount');
    mkdirSync(sa, { recursive: true });
    writeFileSync(join(sa, 'token'), 'sa-token');
    writeFileSync(join(sa, 'ca.crt'), tls.ca);
    writeFileSync(join(sa, 'namespace'), deployment.metadata.namespace);
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const e of container.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
    env.FEDMESH_LOG_LEVEL = 'warn';
    env.KUBERNETES_SERVICE_HOST = '127.0.0.1';
    env.KUBERNETES_SERVICE_PORT = String(api.port);
    env.FEDMESH_K8S_IN_CLUSTER_ROOT = join(dir, 'root');
    delete env.KUBECONFIG;
    const proc: ChildProcess = spawn(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'cli', 'main.ts'), ...args],
      {
        env,
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    cleanups.push(async () => {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        await new Promise((resolve) => proc.once('exit', resolve));
      }
    });
    const probe = container.readinessProbe.httpGet;
    await until(
      'readiness probe passes',
      async () => {
        assert.equal(proc.exitCode, null, `the syncer exited: ${stderr}`);
        const r = await fetch(`http://127.0.0.1:${health}${probe.path}`).catch(() => undefined);
        return r?.status === 200;
      },
      30_000,
    );
    const live = await fetch(`http://127.0.0.1:${health}${container.livenessProbe.httpGet.path}`);
    assert.equal(live.status, 200);
    assert.ok(
      api.requests.some((r) => r.startsWith('GET /api/v1/pods')),
      'it read the pods',
    );
  });
});
