// The services controller on file datastores, in process: two cluster directories (a with an RCC
// to b), the controller of a writing a/federated-endpoints.yaml, checked as a user would read it.
// The same behaviours on the Kubernetes API server double: services-kube-double.test.ts.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Endpoints, Resource } from '../../model/resources.ts';
import { parseYamlDocuments } from '../../model/validate.ts';
import { ServicesController } from '../../services/controller.ts';
import { OWNED_FILE } from '../../services/names.ts';
import { resolveRemote } from '../../services/remotes.ts';
import { FileWriter } from '../../services/writer.ts';
import { FileDatastore } from '../../syncer/datastore/file.ts';
import { waitFor } from '../helpers/wait.ts';

const FED = `apiVersion: v1
kind: Service
metadata: {name: fed, namespace: shop, annotations: {federation.tigera.io/serviceSelector: "app == 'db'"}}
spec: {ports: [{name: pg, port: 5432}]}
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: shop, annotations: {federation.tigera.io/serviceSelector: "app == 'db'"}}
spec: {ports: [{name: pg, port: 5432}]}
`;
const FOREIGN = `apiVersion: v1
kind: Endpoints
metadata: {name: other, namespace: shop}
subsets: [{addresses: [{ip: 192.0.2.1}], ports: [{name: pg, port: 1}]}]
`;
const RCC = `apiVersion: projectcalico.org/v3
kind: RemoteClusterConfiguration
metadata: {name: b}
spec: {datastoreType: file, fileDatastorePath: ../b}
`;
const backing = (ips: string[], port = 5432) => `apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {ports: [{name: pg, port: 5432}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: db, namespace: shop}
subsets: [{addresses: [${ips.map((ip) => `{ip: ${ip}, targetRef: {kind: Pod, name: db-${ip.split('.')[3]}, namespace: shop}}`).join(', ')}], ports: [{name: pg, port: ${port}}]}]
`;
const exported = (port: number, ts: string) => `apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec: {ports: [{name: http, port: ${port}}]}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: api, namespace: shop, creationTimestamp: "${ts}"}
`;

let root: string;
let controller: ServicesController;
const dirA = () => join(root, 'a');
const dirB = () => join(root, 'b');

function owned(): Resource[] {
  let text: string;
  try {
    text = readFileSync(join(dirA(), OWNED_FILE), 'utf8');
  } catch {
    return [];
  }
  return parseYamlDocuments(text, { source: OWNED_FILE, baseDir: dirA() }).resources;
}

function fedIps(): string[] {
  const e = owned().find((r): r is Endpoints => r.kind === 'Endpoints' && r.name === 'fed');
  return e ? e.subsets.flatMap((s) => s.addresses.map((a) => `${a.ip}=${a.targetRef?.name}`)).sort() : [];
}

describe('services controller over file datastores', () => {
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'fedmesh-svc-'));
    mkdirSync(dirA());
    mkdirSync(dirB());
    writeFileSync(join(dirA(), 'services.yaml'), FED);
    writeFileSync(join(dirA(), 'foreign.yaml'), FOREIGN);
    writeFileSync(join(dirA(), 'backing.yaml'), backing(['10.10.0.1']));
    writeFileSync(join(dirA(), 'export.yaml'), exported(81, '2026-02-01T00:00:00Z'));
    writeFileSync(join(dirA(), 'remote-b.yaml'), RCC);
    writeFileSync(join(dirB(), 'backing.yaml'), backing(['10.20.0.1']));
    writeFileSync(join(dirB(), 'export.yaml'), exported(80, '2026-01-01T00:00:00Z'));
    controller = new ServicesController({
      cluster: 'a',
      local: new FileDatastore(dirA(), { pollIntervalMs: 200 }),
      localDerive: true,
      writer: new FileWriter(dirA()),
      resolveRemote,
      openRemote: (c) => new FileDatastore((c as { dir: string }).dir, { pollIntervalMs: 200 }),
      remoteSyncTimeoutMs: 5000,
      remoteEndpointsGraceMs: 0,
    });
    await controller.start();
  });
  after(async () => {
    await controller.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test('after in-sync: local and remote backing endpoints, remote pods named <cluster>/<pod>; foreign Endpoints left alone', async () => {
    await waitFor('federated endpoints', fedIps, (v) => v.length === 2);
    assert.deepEqual(fedIps(), ['10.10.0.1=db-1', '10.20.0.1=b/db-1']);
    assert.equal(readFileSync(join(dirA(), 'foreign.yaml'), 'utf8'), FOREIGN);
    assert.equal(
      owned().some((r) => r.kind === 'Endpoints' && r.name === 'other'),
      false,
    );
    const other = controller.last?.services.find((s) => s.name === 'other');
    assert.match(other?.problems[0] ?? '', /not ours, left alone/);
  });

  test('EndpointSlices per cluster and the MCS import (with the export conflict on a) are in the file', () => {
    const slices = owned().filter((r) => r.kind === 'EndpointSlice');
    assert.deepEqual(
      slices
        .filter((s) => s.labels['kubernetes.io/service-name'] === 'fed')
        .map((s) => s.labels['multicluster.kubernetes.io/source-cluster'])
        .sort(),
      ['a', 'b'],
    );
    const imp = owned().find((r) => r.kind === 'ServiceImport');
    assert.ok(imp && imp.kind === 'ServiceImport');
    assert.deepEqual(imp.spec.ports, [{ name: 'http', port: 80, protocol: 'TCP' }]);
    assert.deepEqual(imp.clusters, ['a', 'b']);
    const conflict = controller.last?.exportStatus[0]?.conditions.find((c) => c.type === 'Conflict');
    assert.equal(conflict?.status, 'True');
    assert.equal(conflict?.reason, 'PortConflict');
  });

  test('a backing change in the remote reaches the federated Endpoints (time printed)', async () => {
    writeFileSync(join(dirB(), 'backing.yaml'), backing(['10.20.0.1', '10.20.0.2']));
    const ms = await waitFor('new remote endpoint', fedIps, (v) => v.includes('10.20.0.2=b/db-2'));
    console.log(`# backing Endpoints change → federated Endpoints written: ${ms.toFixed(0)} ms`);
  });

  test('a manual edit of the owned file is overwritten', async () => {
    const path = join(dirA(), OWNED_FILE);
    const good = readFileSync(path, 'utf8');
    writeFileSync(path, good.replace('10.20.0.2', '10.99.99.99'));
    await waitFor(
      'owned file restored',
      () => readFileSync(path, 'utf8'),
      (t) => t === good,
    );
  });

  test('a remote that fails has its endpoints withdrawn (grace 0), and they return when it recovers', async () => {
    renameSync(dirB(), `${dirB()}.away`);
    await waitFor('remote endpoints withdrawn', fedIps, (v) => v.join() === '10.10.0.1=db-1');
    assert.equal(controller.remoteStatuses()[0]?.status, 'ConnectionFailed');
    renameSync(`${dirB()}.away`, dirB());
    await waitFor('remote endpoints back', fedIps, (v) => v.length === 3);
  });

  test('deleting the RCC withdraws the remote at once', async () => {
    unlinkSync(join(dirA(), 'remote-b.yaml'));
    await waitFor('remote gone', fedIps, (v) => v.join() === '10.10.0.1=db-1');
    assert.deepEqual(controller.remoteStatuses(), []);
    const imp = owned().find((r) => r.kind === 'ServiceImport');
    assert.ok(imp && imp.kind === 'ServiceImport');
    assert.deepEqual(imp.clusters, ['a']);
  });

  test('removing the annotation deletes the owned Endpoints', async () => {
    writeFileSync(
      join(dirA(), 'services.yaml'),
      FED.replace(/annotations: \{[^}]*\}/, 'labels: {x: y}').replace(/\n---[\s\S]*$/, '\n'),
    );
    await waitFor('owned Endpoints gone', fedIps, (v) => v.length === 0);
    assert.equal(
      owned().filter((r) => r.kind === 'EndpointSlice' && r.labels['kubernetes.io/service-name'] === 'fed')
        .length,
      0,
    );
  });
});

describe('services controller: grace period, etcd-only remotes, failed writes', () => {
  let dir: string;
  let ctl: ServicesController | undefined;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'fedmesh-svc2-'));
  });
  after(async () => {
    await ctl?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function setup(
    name: string,
    opts: { graceMs?: number; writer?: FileWriter | { description: string; write(): Promise<void> } },
  ) {
    const a = join(dir, name, 'a');
    const b = join(dir, name, 'b');
    mkdirSync(a, { recursive: true });
    mkdirSync(b, { recursive: true });
    writeFileSync(join(a, 'services.yaml'), FED);
    writeFileSync(join(a, 'remote-b.yaml'), RCC);
    writeFileSync(
      join(a, 'remote-e.yaml'),
      'apiVersion: projectcalico.org/v3\nkind: RemoteClusterConfiguration\nmetadata: {name: e}\nspec: {datastoreType: etcdv3, etcdEndpoints: "http://127.0.0.1:1"}\n',
    );
    writeFileSync(join(b, 'backing.yaml'), backing(['10.20.0.1']));
    return {
      a,
      b,
      controller: new ServicesController({
        cluster: 'a',
        local: new FileDatastore(a, { pollIntervalMs: 100 }),
        localDerive: true,
        writer: opts.writer ?? new FileWriter(a),
        resolveRemote,
        openRemote: (c) => new FileDatastore((c as { dir: string }).dir, { pollIntervalMs: 100 }),
        remoteSyncTimeoutMs: 5000,
        remoteEndpointsGraceMs: opts.graceMs ?? 0,
        retryMs: 20,
      }),
    };
  }

  const ipsIn = (a: string) => () => {
    try {
      const rs = parseYamlDocuments(readFileSync(join(a, OWNED_FILE), 'utf8'), {
        source: 'x',
        baseDir: a,
      }).resources;
      return rs.flatMap((r) =>
        r.kind === 'Endpoints' && r.name === 'fed'
          ? r.subsets.flatMap((s) => s.addresses.map((x) => x.ip))
          : [],
      );
    } catch {
      return [];
    }
  };

  test('an etcd-only remote is skipped with a status entry; a failed remote keeps its endpoints for the grace period', async () => {
    const s = setup('grace', { graceMs: 1500 });
    ctl = s.controller;
    await ctl.start();
    await waitFor('remote endpoints', ipsIn(s.a), (v) => v.includes('10.20.0.1'));
    const e = ctl.remoteStatuses().find((r) => r.cluster === 'e');
    assert.equal(e?.status, 'Skipped');
    assert.match(e?.detail ?? '', /etcd access only/);
    renameSync(s.b, `${s.b}.away`);
    await waitFor(
      'b failed',
      () => ctl?.remoteStatuses().find((r) => r.cluster === 'b')?.status,
      (v) => v === 'ConnectionFailed',
    );
    const failedAt = performance.now();
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(ipsIn(s.a)().includes('10.20.0.1'), 'withdrawn before the grace period ended');
    await waitFor('withdrawn after grace', ipsIn(s.a), (v) => !v.includes('10.20.0.1'), 5000);
    assert.ok(performance.now() - failedAt >= 1400, 'withdrawn too early');
    await ctl.stop();
    ctl = undefined;
  });

  test('failed writes are retried with backoff until they succeed', async () => {
    let calls = 0;
    const stamps: number[] = [];
    const writer = {
      description: 'flaky',
      async write() {
        calls += 1;
        stamps.push(performance.now());
        if (calls <= 3) throw new Error(`injected failure ${calls}`);
      },
    };
    const s = setup('retry', { writer });
    ctl = s.controller;
    await ctl.start();
    await waitFor(
      'written after retries',
      () => ctl?.written !== undefined,
      (v) => v,
      5000,
    );
    assert.equal(ctl.writeFailures, 3);
    assert.equal(calls, 4);
    const gaps = stamps.slice(1).map((t, i) => t - stamps[i]!);
    // 20, 40, 80 ms: each wait at least the previous one (backoff), give or take timer slack.
    assert.ok(gaps[2]! >= gaps[0]! && gaps[2]! >= 70, `gaps ${gaps.map((g) => g.toFixed(0))}`);
    await ctl.stop();
    ctl = undefined;
  });
});
