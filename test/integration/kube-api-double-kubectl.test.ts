// The Kubernetes API server double (test/harness/kube-api-double.ts) checked with a real kubectl:
// no real API server can run on these machines, so the kubernetes datastore is tested against the
// double, and this test makes sure the double speaks the protocol kubectl (client-go) speaks —
// discovery, list, get, create, patch (apply), delete, watch — over HTTPS with a bearer token.
// The kubernetes datastore driver reads the same double at the same time and sees kubectl's changes.
//
// kubectl: $FEDMESH_KUBECTL, else `kubectl` on PATH (scripts/setup.sh installs Debian's
// kubernetes-client). Debian's is 1.20; it validates against OpenAPI, which the double does not
// serve, hence --validate=false.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { resourceId } from '../../model/resources.ts';
import type { DatastoreEvent, DatastoreStatus } from '../../syncer/datastore/types.ts';
import { KubeApiDouble, kubeconfigFor, makeServerTls } from '../harness/kube-api-double.ts';

process.env.FEDMESH_LOG_LEVEL ??= 'silent';
const { openConnection, parseDatastoreSpec } = await import('../../syncer/datastore/open.ts');

const KUBECTL = process.env.FEDMESH_KUBECTL ?? 'kubectl';
const haveKubectl = spawnSync(KUBECTL, ['version', '--client'], { encoding: 'utf8' }).status === 0;

async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await sleep(20);
  }
}

const MANIFEST = `apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: web}
---
apiVersion: v1
kind: Pod
metadata:
  name: frontend-1
  namespace: shop
  labels: {app: frontend}
spec:
  nodeName: node-1
  containers:
  - name: c
    image: nginx
    ports: [{name: http, containerPort: 8080}]
status:
  phase: Running
  podIP: 10.10.0.5
---
apiVersion: crd.projectcalico.org/v1
kind: GlobalNetworkSet
metadata: {name: partners, labels: {kind: partner}}
spec: {nets: [203.0.113.0/24]}
`;

describe('the API server double, driven by kubectl', {
  skip: haveKubectl ? false : `${KUBECTL} not found`,
}, () => {
  let dir: string;
  let api: KubeApiDouble;
  let kubeconfig: string;
  const state = new Map<string, { labels: Record<string, string> }>();
  let status: DatastoreStatus | undefined;
  let stopDriver: () => Promise<void>;
  const watchers: ChildProcess[] = [];

  // Asynchronous: the double serves from this very process.
  const kubectl = (...args: string[]) =>
    new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      execFile(
        KUBECTL,
        ['--kubeconfig', kubeconfig, '--cache-dir', join(dir, 'cache'), ...args],
        { encoding: 'utf8', env: { ...process.env, HOME: dir }, timeout: 30_000 },
        (e, out, err) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
      );
    });
  const ok = async (...args: string[]) => {
    const r = await kubectl(...args);
    assert.equal(r.code, 0, `kubectl ${args.join(' ')}: ${r.err}`);
    return r.out;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fedmesh-kubectl-'));
    const tls = makeServerTls(dir);
    api = await new KubeApiDouble({ token: 'kubectl-token', tls: { key: tls.key, cert: tls.cert } }).start();
    kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, kubeconfigFor(api.url, { token: 'kubectl-token', caPem: tls.ca }));
    // The driver, through the same kubeconfig, as `--datastore kubernetes:<kubeconfig>`.
    const ds = openConnection(parseDatastoreSpec(`kubernetes:${kubeconfig}`));
    await ds.start({
      onEvents: (events: DatastoreEvent[]) => {
        for (const ev of events) {
          if (ev.type === 'upsert') state.set(resourceId(ev.resource), { labels: { ...ev.resource.labels } });
          else state.delete(resourceId(ev));
        }
      },
      onStatus: (s) => {
        status = s;
      },
    });
    stopDriver = () => ds.stop();
    await until('driver in sync', () => status === 'InSync');
  });

  after(async () => {
    for (const w of watchers) if (w.exitCode === null) w.kill();
    await stopDriver?.();
    await api?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('apply creates; get lists and gets; the driver sees what kubectl made', async () => {
    writeFileSync(join(dir, 'm.yaml'), MANIFEST);
    const out = await ok('apply', '--validate=false', '-f', join(dir, 'm.yaml'));
    assert.match(out, /namespace\/shop created/);
    assert.match(out, /pod\/frontend-1 created/);
    assert.match(out, /globalnetworkset.crd.projectcalico.org\/partners created/);
    assert.equal((await ok('get', 'pods', '-n', 'shop', '-o', 'name')).trim(), 'pod/frontend-1');
    assert.equal((await ok('get', 'namespaces', '-o', 'name')).trim(), 'namespace/shop');
    const gns = JSON.parse(
      await ok('get', 'globalnetworksets.crd.projectcalico.org', 'partners', '-o', 'json'),
    );
    assert.deepEqual(gns.spec.nets, ['203.0.113.0/24']);
    assert.ok(gns.metadata.resourceVersion);
    const all = JSON.parse(await ok('get', 'pods', '--all-namespaces', '-o', 'json'));
    assert.equal(all.items.length, 1);
    assert.equal(all.items[0].metadata.namespace, 'shop');
    await until('driver sees kubectl objects', () =>
      [
        'Namespace/shop',
        'GlobalNetworkSet/partners',
        'WorkloadEndpoint/shop/node--1-k8s-frontend--1-eth0',
      ].every((id) => state.has(id)),
    );
  });

  test('apply changes (patch); label; the driver sees the changes', async () => {
    writeFileSync(
      join(dir, 'm.yaml'),
      MANIFEST.replace('labels: {app: frontend}', 'labels: {app: frontend, version: v2}').replace(
        'labels: {kind: partner}',
        'labels: {kind: partner, tier: gold}',
      ),
    );
    const out = await ok('apply', '--validate=false', '-f', join(dir, 'm.yaml'));
    assert.match(out, /pod\/frontend-1 configured/);
    assert.match(out, /globalnetworkset.crd.projectcalico.org\/partners configured/);
    await ok('label', 'namespace', 'shop', 'env=prod');
    await until(
      'changes seen',
      () =>
        state.get('WorkloadEndpoint/shop/node--1-k8s-frontend--1-eth0')?.labels.version === 'v2' &&
        state.get('GlobalNetworkSet/partners')?.labels.tier === 'gold' &&
        state.get('Namespace/shop')?.labels.env === 'prod',
    );
    const pod = JSON.parse(await ok('get', 'pod', 'frontend-1', '-n', 'shop', '-o', 'json'));
    assert.equal(pod.metadata.labels.version, 'v2');
    assert.ok(pod.metadata.annotations['kubectl.kubernetes.io/last-applied-configuration']);
  });

  test('get -w streams changes; delete removes; the driver sees the deletion', async () => {
    const w = spawn(
      KUBECTL,
      [
        '--kubeconfig',
        kubeconfig,
        '--cache-dir',
        join(dir, 'cache'),
        'get',
        'globalnetworksets.crd.projectcalico.org',
        '-w',
        '-o',
        'name',
      ],
      { env: { ...process.env, HOME: dir } },
    );
    watchers.push(w);
    let seen = '';
    w.stdout.on('data', (d: Buffer) => {
      seen += d.toString();
    });
    w.stderr.on('data', (d: Buffer) => {
      seen += d.toString();
    });
    await until('the initial listing', () => seen.includes('partners'));
    writeFileSync(
      join(dir, 'extra.yaml'),
      'apiVersion: crd.projectcalico.org/v1\nkind: GlobalNetworkSet\nmetadata: {name: extra}\nspec: {nets: [198.51.100.0/24]}\n',
    );
    await ok('create', '--validate=false', '-f', join(dir, 'extra.yaml'));
    await until('the watch shows the new object', () => seen.includes('extra'));
    await ok('delete', 'globalnetworksets.crd.projectcalico.org', 'extra');
    await ok('delete', 'pod', 'frontend-1', '-n', 'shop');
    assert.equal((await ok('get', 'pods', '-n', 'shop', '-o', 'name')).trim(), '');
    await until(
      'driver sees deletions',
      () =>
        !state.has('WorkloadEndpoint/shop/node--1-k8s-frontend--1-eth0') &&
        !state.has('GlobalNetworkSet/extra'),
    );
    const lines = seen.trim().split('\n');
    assert.ok(lines.filter((l) => l.includes('extra')).length >= 1, seen);
  });

  test('errors as the real server gives them: NotFound, AlreadyExists, Unauthorized', async () => {
    const missing = await kubectl('get', 'pod', 'nope', '-n', 'shop');
    assert.notEqual(missing.code, 0);
    assert.match(missing.err, /NotFound|not found/);
    const dup = await kubectl('create', '--validate=false', '-f', join(dir, 'm.yaml'));
    assert.notEqual(dup.code, 0);
    assert.match(dup.err, /AlreadyExists|already exists/);
    writeFileSync(join(dir, 'bad-kubeconfig'), kubeconfigFor(api.url, { token: 'wrong', insecure: true }));
    kubeconfig = join(dir, 'bad-kubeconfig');
    const r = await kubectl('get', 'pods', '-A');
    kubeconfig = join(dir, 'kubeconfig');
    assert.notEqual(r.code, 0);
    assert.match(r.err, /Unauthorized|provide credentials/);
  });
});
