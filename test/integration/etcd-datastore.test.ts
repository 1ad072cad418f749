// The etcdv3 datastore against a real etcd (Debian's etcd-server) on a loopback port: Calico's key
// layout listed and watched, bad values refused by key and field, a compaction behind a partition
// (relist, only the difference), etcd killed and restarted under a running driver (fail-static,
// then resumed), TLS with client certificates, and username/password.
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Etcd3 } from 'etcd3';
import type { Resource, ResourceError, WorkloadEndpoint } from '../../model/resources.ts';
import { CutProxy, hasEtcd, makeTestCa, TestEtcd } from '../harness/etcd.ts';

process.env.FEDMESH_LOG_LEVEL ??= 'silent';
const { EtcdDatastore, etcdClient } = await import('../../syncer/datastore/etcd.ts');
const { loadDirectory } = await import('../../syncer/datastore/etcd-load.ts');
const { blockKey, resourceKey } = await import('../../syncer/datastore/etcd-layout.ts');
const { FileDatastore } = await import('../../syncer/datastore/file.ts');
const { toUpdate } = await import('../../syncer/convert.ts');
const { parseDatastoreSpec, openConnection } = await import('../../syncer/datastore/open.ts');
const { readOnce } = await import('../../syncer/datastore/read-once.ts');

type DatastoreEvent = import('../../syncer/datastore/types.ts').DatastoreEvent;
type EtcdConnection = import('../../syncer/datastore/connection.ts').EtcdConnection;

const EXAMPLE_B = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', 'two-cluster', 'b');
const skip = !hasEtcd() && 'etcd is not installed (Debian package etcd-server; scripts/setup.sh installs it)';

/** What a syncer would see from the driver. */
class Recorder {
  batches: DatastoreEvent[][] = [];
  statuses: { status: string; detail?: string }[] = [];
  errors: ResourceError[] = [];
  state = new Map<string, Resource>();
  revisions: number[] = [];

  readonly handlers = {
    onEvents: (events: DatastoreEvent[], revision: number) => {
      this.batches.push(events);
      this.revisions.push(revision);
      for (const ev of events) {
        if (ev.type === 'upsert') this.state.set(id(ev.resource), ev.resource);
        else this.state.delete(id(ev));
      }
    },
    onStatus: (status: string, detail?: string) => {
      this.statuses.push({ status, ...(detail ? { detail } : {}) });
    },
    onErrors: (errors: ResourceError[]) => {
      this.errors.push(...errors);
    },
  };

  get status(): string | undefined {
    return this.statuses.at(-1)?.status;
  }
  /** Events since batch `from`. */
  eventsSince(from: number): DatastoreEvent[] {
    return this.batches.slice(from).flat();
  }
  wep(ns: string, name: string): WorkloadEndpoint | undefined {
    return this.state.get(`WorkloadEndpoint/${ns}/${name}`) as WorkloadEndpoint | undefined;
  }
}

function id(r: { kind: string; name: string; namespace?: string }): string {
  return r.namespace ? `${r.kind}/${r.namespace}/${r.name}` : `${r.kind}/${r.name}`;
}

function describeEvent(e: DatastoreEvent): string {
  return e.type === 'upsert' ? `upsert ${id(e.resource)}` : `delete ${id(e)}`;
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

function wepJson(name: string, opts: { app: string; ip: string; node?: string }): string {
  return JSON.stringify({
    kind: 'WorkloadEndpoint',
    apiVersion: 'projectcalico.org/v3',
    metadata: {
      name,
      namespace: 'shop',
      uid: 'e2c1bb7d-3f4e-4a5b-9c6d-000000000001',
      creationTimestamp: '2026-01-01T00:00:00Z',
      labels: {
        app: opts.app,
        'projectcalico.org/namespace': 'shop',
        'projectcalico.org/orchestrator': 'k8s',
        'projectcalico.org/serviceaccount': 'default',
      },
    },
    spec: {
      orchestrator: 'k8s',
      node: opts.node ?? 'b-node1',
      pod: name,
      endpoint: 'eth0',
      interfaceName: `cali${name.replace(/[^a-z0-9]/g, '').slice(0, 11)}`,
      ipNetworks: [`${opts.ip}/32`],
      profiles: ['kns.shop', 'ksa.shop.default'],
    },
  });
}

const wepKey = (name: string) => resourceKey('WorkloadEndpoint', name, 'shop') as string;

/** etcd with cluster b loaded, a client to write with, and a started driver with its recorder. */
async function setup(
  t: TestContext,
  opts: { etcd?: TestEtcd; proxy?: boolean; conn?: (endpoint: string) => EtcdConnection } = {},
) {
  const etcd = opts.etcd ?? (await TestEtcd.start(t));
  const writer = etcdClient(opts.conn?.(etcd.endpoint) ?? { type: 'etcdv3', endpoints: [etcd.endpoint] });
  t.after(() => writer.close());
  await loadDirectory(writer, EXAMPLE_B);
  const proxy = opts.proxy ? await CutProxy.start(t, etcd.clientPort) : undefined;
  const endpoint = proxy ? `http://127.0.0.1:${proxy.port}` : etcd.endpoint;
  const ds = new EtcdDatastore(opts.conn?.(endpoint) ?? { type: 'etcdv3', endpoints: [endpoint] }, {
    retryMinMs: 100,
    retryMaxMs: 400,
    requestTimeoutMs: 3000,
  });
  const rec = new Recorder();
  t.after(() => ds.stop());
  await ds.start(rec.handlers);
  return { etcd, writer, ds, rec, proxy };
}

async function put(writer: Etcd3, key: string, value: string): Promise<void> {
  await writer.put(key).value(value).exec();
}

/** Write a workload endpoint of namespace shop, as Calico's CNI plugin would. */
function putWep(writer: Etcd3, name: string, app: string, ip: string): Promise<void> {
  return put(writer, wepKey(name), wepJson(name, { app, ip }));
}

describe('etcdv3 datastore (real etcd)', { skip }, () => {
  test('lists Calico’s layout; namespace labels reach endpoints exactly as from a Namespace', async (t) => {
    const { rec } = await setup(t);
    assert.deepEqual(
      rec.statuses.map((s) => s.status),
      ['Connecting', 'ResyncInProgress', 'InSync'],
    );
    assert.equal(rec.batches.length, 1, 'one complete listing');
    const fromFiles = await FileDatastore.load(EXAMPLE_B);
    assert.deepEqual(fromFiles.errors, []);
    // The feed a syncer makes of both must be identical: the Namespace `shop` and the etcd
    // Profile `kns.shop` (pcns.* labelsToApply) give the same profile update.
    const feed = (rs: Iterable<Resource>) =>
      [...rs]
        .map((r) => toUpdate({ cluster: 'b', remote: true }, r))
        .filter((u) => u !== undefined)
        .map((u) => JSON.stringify({ kind: u.kind, key: u.key, body: u.body }))
        .sort();
    assert.deepEqual(feed(rec.state.values()), feed(fromFiles.resources));
    const profile = rec.state.get('Profile/kns.shop');
    assert.ok(profile?.kind === 'Profile');
    assert.deepEqual(profile.spec.labelsToApply, {
      'pcns.team': 'web',
      'pcns.kubernetes.io/metadata.name': 'shop',
      'pcns.projectcalico.org/name': 'shop',
    });
    const block = rec.state.get('IPAMBlock/10-20-1-0-26');
    assert.ok(block?.kind === 'IPAMBlock');
    assert.equal(block.spec.affinityNode, 'b-node1');
    assert.equal(block.origin.source, '/calico/ipam/v2/assignment/ipv4/block/10.20.1.0-26');
  });

  test('watch: a new endpoint, a relabel and a delete arrive as single events in order', async (t) => {
    const { rec, writer } = await setup(t);
    const n = rec.batches.length;
    const rev0 = rec.revisions.at(-1) ?? 0;
    await putWep(writer, 'b--node1-k8s-api--1-eth0', 'api', '10.20.1.9');
    await waitFor('the new endpoint', () => rec.wep('shop', 'b--node1-k8s-api--1-eth0') !== undefined);
    await putWep(writer, 'b--node1-k8s-api--1-eth0', 'api-v2', '10.20.1.9');
    await waitFor('the relabel', () => rec.wep('shop', 'b--node1-k8s-api--1-eth0')?.labels.app === 'api-v2');
    await writer.delete().key(wepKey('b--node1-k8s-api--1-eth0')).exec();
    await waitFor('the delete', () => rec.wep('shop', 'b--node1-k8s-api--1-eth0') === undefined);
    assert.deepEqual(rec.eventsSince(n).map(describeEvent), [
      'upsert WorkloadEndpoint/shop/b--node1-k8s-api--1-eth0',
      'upsert WorkloadEndpoint/shop/b--node1-k8s-api--1-eth0',
      'delete WorkloadEndpoint/shop/b--node1-k8s-api--1-eth0',
    ]);
    const revs = rec.revisions.slice(n);
    assert.ok(
      revs.every((r, i) => r > (i === 0 ? rev0 : revs[i - 1]!)),
      `revisions increase: ${revs}`,
    );
    // The same value written again is no event.
    const same = await writer.get(wepKey('b--node1-k8s-db--1-eth0')).string();
    assert.ok(same);
    const m = rec.batches.length;
    await put(writer, wepKey('b--node1-k8s-db--1-eth0'), same);
    await putWep(writer, 'b--node1-k8s-marker-eth0', 'm', '10.20.1.10');
    await waitFor('the marker', () => rec.wep('shop', 'b--node1-k8s-marker-eth0') !== undefined);
    assert.deepEqual(rec.eventsSince(m).map(describeEvent), [
      'upsert WorkloadEndpoint/shop/b--node1-k8s-marker-eth0',
    ]);
  });

  test('bad values are refused with key and field; the last good version stays; the rest keeps working', async (t) => {
    const { rec, writer } = await setup(t);
    const dbKey = wepKey('b--node1-k8s-db--1-eth0');
    await put(writer, dbKey, '{"kind": "WorkloadEndpoint", "metadata": {');
    await putWep(writer, 'b--node1-k8s-bad--1-eth0', 'bad', '10.20.1.300');
    await put(writer, blockKey('10.20.3.0/26'), JSON.stringify({ cidr: '10.20.3.0/26', affinity: 'host:' }));
    await putWep(writer, 'b--node1-k8s-good--1-eth0', 'good', '10.20.1.11');
    await waitFor('the good endpoint', () => rec.wep('shop', 'b--node1-k8s-good--1-eth0') !== undefined);
    await waitFor('three refusals', () => rec.errors.length >= 3);
    const byKey = new Map(rec.errors.map((e) => [e.origin.source, e]));
    const json = byKey.get(dbKey);
    assert.match(json?.message ?? '', /invalid JSON/);
    assert.match(json?.message ?? '', /keeping the last good version/);
    assert.equal(json?.resource, 'WorkloadEndpoint/shop/b--node1-k8s-db--1-eth0');
    const ip = byKey.get(wepKey('b--node1-k8s-bad--1-eth0'));
    assert.equal(ip?.field, 'spec.ipNetworks[0]');
    const block = byKey.get(blockKey('10.20.3.0/26'));
    assert.equal(block?.field, 'affinity', 'AllocationBlock fields are named as in the block');
    assert.equal(rec.wep('shop', 'b--node1-k8s-db--1-eth0')?.labels.app, 'db', 'last good version kept');
    assert.equal(rec.wep('shop', 'b--node1-k8s-bad--1-eth0'), undefined);
    // A value that disagrees with its key is refused, naming the field.
    await put(
      writer,
      wepKey('b--node2-k8s-x-eth0'),
      wepJson('b--node2-k8s-y-eth0', { app: 'x', ip: '10.20.2.9' }),
    );
    await waitFor('the name mismatch', () => rec.errors.some((e) => e.field === 'metadata.name'));
    // Fixed: it comes through.
    await put(writer, dbKey, wepJson('b--node1-k8s-db--1-eth0', { app: 'db-fixed', ip: '10.20.1.5' }));
    await waitFor(
      'the fixed value',
      () => rec.wep('shop', 'b--node1-k8s-db--1-eth0')?.labels.app === 'db-fixed',
    );
    assert.equal(rec.status, 'InSync');
  });

  test('compaction behind a partition: relisted, only the difference emitted', async (t) => {
    const { rec, writer, proxy } = await setup(t, { proxy: true });
    assert.ok(proxy);
    const before = new Map(rec.state);
    proxy.cut();
    await waitFor('ConnectionFailed', () => rec.status === 'ConnectionFailed');
    const n = rec.batches.length;
    // Meanwhile: a relabel, a delete, a new endpoint, and a rewrite of an unchanged value.
    await putWep(writer, 'b--node1-k8s-db--1-eth0', 'db-retired', '10.20.1.5');
    await writer.delete().key(wepKey('b--node2-k8s-web--b-eth0')).exec();
    await putWep(writer, 'b--node2-k8s-new--1-eth0', 'new', '10.20.2.20');
    const cache = await writer.get(wepKey('b--node1-k8s-cache--1-eth0')).string();
    await put(writer, wepKey('b--node1-k8s-cache--1-eth0'), cache ?? '');
    // Compact everything up to now: the driver's watch revision is gone.
    const head = await writer.get('/none').exec();
    await writer.kv.compact({ revision: head.header.revision, physical: true });
    assert.equal(rec.batches.length, n, 'nothing emitted while cut off');
    assert.equal(rec.state.size, before.size, 'fail-static: every resource kept while cut off');
    proxy.restore();
    await waitFor('InSync again', () => rec.status === 'InSync');
    await waitFor('the difference', () => rec.batches.length > n);
    assert.deepEqual(rec.eventsSince(n).map(describeEvent).sort(), [
      'delete WorkloadEndpoint/shop/b--node2-k8s-web--b-eth0',
      'upsert WorkloadEndpoint/shop/b--node1-k8s-db--1-eth0',
      'upsert WorkloadEndpoint/shop/b--node2-k8s-new--1-eth0',
    ]);
    assert.equal(rec.wep('shop', 'b--node1-k8s-db--1-eth0')?.labels.app, 'db-retired');
    // And the watch runs again from the relisted revision.
    await putWep(writer, 'b--node1-k8s-after-eth0', 'after', '10.20.1.21');
    await waitFor(
      'a change after the relist',
      () => rec.wep('shop', 'b--node1-k8s-after-eth0') !== undefined,
    );
  });

  test('etcd killed under a running driver: data kept, ConnectionFailed; restarted: resumes and catches up', async (t) => {
    const { rec, writer, etcd } = await setup(t);
    const before = new Map(rec.state);
    const n = rec.batches.length;
    await etcd.stop();
    await waitFor('ConnectionFailed', () => rec.status === 'ConnectionFailed');
    assert.match(rec.statuses.at(-1)?.detail ?? '', /\S/, 'the failure says why');
    await sleep(800); // a few reconnect attempts
    assert.equal(rec.batches.length, n, 'nothing withdrawn while etcd is down');
    assert.deepEqual([...rec.state.keys()].sort(), [...before.keys()].sort());
    await etcd.resume();
    // A change made as soon as etcd is back, probably before the driver reconnects.
    await putWep(writer, 'b--node1-k8s-db--1-eth0', 'db-moved', '10.20.1.5');
    await waitFor('InSync again', () => rec.status === 'InSync', 15_000);
    await waitFor(
      'the change made meanwhile',
      () => rec.wep('shop', 'b--node1-k8s-db--1-eth0')?.labels.app === 'db-moved',
    );
    assert.deepEqual(rec.eventsSince(n).map(describeEvent), [
      'upsert WorkloadEndpoint/shop/b--node1-k8s-db--1-eth0',
    ]);
    await putWep(writer, 'b--node1-k8s-later-eth0', 'later', '10.20.1.22');
    await waitFor('a later change', () => rec.wep('shop', 'b--node1-k8s-later-eth0') !== undefined);
  });

  test('TLS with client certificates (a test CA); without a client certificate: ConnectionFailed', async (t) => {
    const ca = makeTestCa(t);
    const etcd = await TestEtcd.start(t, { tls: ca });
    const tls = { ca: ca.ca, cert: ca.clientCert, key: ca.clientKey };
    const { rec } = await setup(t, {
      etcd,
      conn: (endpoint) => ({ type: 'etcdv3', endpoints: [endpoint], tls }),
    });
    assert.equal(rec.status, 'InSync');
    assert.ok(rec.wep('shop', 'b--node1-k8s-db--1-eth0'));
    // The flags path: --datastore etcdv3:https://... with --etcd-*-file.
    const conn = parseDatastoreSpec(`etcdv3:${etcd.endpoint}`, {
      'etcd-ca-file': ca.caFile,
      'etcd-cert-file': ca.clientCertFile,
      'etcd-key-file': ca.clientKeyFile,
    });
    const snap = await readOnce(openConnection(conn));
    assert.ok(
      snap.resources.some((r) => r.kind === 'WorkloadEndpoint' && r.name === 'b--node1-k8s-db--1-eth0'),
    );
    const noCert = new EtcdDatastore(
      { type: 'etcdv3', endpoints: [etcd.endpoint], tls: { ca: ca.ca } },
      { requestTimeoutMs: 2000 },
    );
    const r2 = new Recorder();
    t.after(() => noCert.stop());
    await noCert.start(r2.handlers);
    assert.equal(r2.status, 'ConnectionFailed');
    assert.equal(r2.batches.length, 0);
  });

  test('username and password (etcd auth enabled); a wrong password is ConnectionFailed, saying why', async (t) => {
    const etcd = await TestEtcd.start(t);
    const admin = etcdClient({ type: 'etcdv3', endpoints: [etcd.endpoint] });
    await admin.role('root').create();
    await admin.user('root').create('root-secret');
    await admin.user('root').addRole('root');
    await admin.role('calico-reader').create();
    await admin
      .role('calico-reader')
      .grant({ permission: 'Read', range: admin.range({ prefix: '/calico/' }) });
    await admin.user('fedmesh').create('fedmesh-secret');
    await admin.user('fedmesh').addRole('calico-reader');
    await admin.auth.authEnable();
    admin.close();
    const rootConn = {
      type: 'etcdv3' as const,
      endpoints: [etcd.endpoint],
      username: 'root',
      password: 'root-secret',
    };
    const writer = etcdClient(rootConn);
    t.after(() => writer.close());
    await loadDirectory(writer, EXAMPLE_B);
    const ds = new EtcdDatastore({
      type: 'etcdv3',
      endpoints: [etcd.endpoint],
      username: 'fedmesh',
      password: 'fedmesh-secret',
    });
    const rec = new Recorder();
    t.after(() => ds.stop());
    await ds.start(rec.handlers);
    assert.equal(rec.status, 'InSync');
    assert.ok(rec.wep('shop', 'b--node1-k8s-db--1-eth0'));
    await putWep(writer, 'b--node1-k8s-db--1-eth0', 'db-auth', '10.20.1.5');
    await waitFor(
      'a watched change',
      () => rec.wep('shop', 'b--node1-k8s-db--1-eth0')?.labels.app === 'db-auth',
    );

    const wrong = new EtcdDatastore(
      { type: 'etcdv3', endpoints: [etcd.endpoint], username: 'fedmesh', password: 'nope' },
      { requestTimeoutMs: 2000 },
    );
    const r2 = new Recorder();
    t.after(() => wrong.stop());
    await wrong.start(r2.handlers);
    assert.equal(r2.status, 'ConnectionFailed');
    assert.match(r2.statuses.at(-1)?.detail ?? '', /auth/i);
  });
});
