// A remote cluster whose Calico data lives in a real etcd: cluster b is written into etcd with
// `fedmesh etcd-load`, cluster a (a file datastore) has an RCC `datastoreType: etcdv3` with
// etcdEndpoints. The whole syncer (runSyncer) serves the merged feed; an agent's FeedClient sees
// b's endpoints with b's namespace labels (from the kns. Profile), and a relabel written to etcd.
// `fedmesh eval` reads the same through --datastore etcdv3:URL and through the RCC.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { ResourceKind } from '../../proto/service.ts';
import { hasEtcd, TestEtcd } from '../harness/etcd.ts';
import { afterTest, syncerWithAgent } from '../helpers/syncer-agent.ts';

process.env.FEDMESH_LOG_LEVEL ??= 'silent';
const { etcdClient } = await import('../../syncer/datastore/etcd.ts');
const { resourceKey } = await import('../../syncer/datastore/etcd-layout.ts');

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const EXAMPLE = join(ROOT, 'examples', 'two-cluster');
const BIN = join(ROOT, 'bin', 'fedmesh.js');
const skip = !hasEtcd() && 'etcd is not installed (Debian package etcd-server; scripts/setup.sh installs it)';

function fedmesh(args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, FEDMESH_LOG_LEVEL: 'warn' },
  });
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

describe('syncer with a remote cluster in etcd', { skip }, () => {
  test('an agent sees b’s endpoints and namespace labels from etcd, and a relabel written to etcd', async (t) => {
    const etcd = await TestEtcd.start(t);
    const load = fedmesh(['etcd-load', '--endpoints', etcd.endpoint, join(EXAMPLE, 'b')]);
    assert.equal(load.status, 0, load.stderr);
    assert.match(load.stdout, /^wrote 12 keys to /m);

    const dir = mkdtempSync(join(tmpdir(), 'fedmesh-etcd-syncer-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    cpSync(join(EXAMPLE, 'a'), join(dir, 'a'), { recursive: true });
    writeFileSync(
      join(dir, 'a', 'remote-b.yaml'),
      `apiVersion: projectcalico.org/v3
kind: RemoteClusterConfiguration
metadata: {name: b}
spec:
  datastoreType: etcdv3
  etcdEndpoints: ${etcd.endpoint}
  syncOptions: {overlayRoutingMode: Enabled}
`,
    );
    const agent = await syncerWithAgent(
      { cluster: 'a', datastore: `file:${join(dir, 'a')}`, dir },
      afterTest(t),
    );
    await waitFor('the feed in sync', () => agent.inSync);
    await waitFor('b in sync', () => agent.remoteInSync('b'));

    assert.deepEqual(
      agent.keys(ResourceKind.WORKLOAD_ENDPOINT).filter((k) => k.startsWith('b/')),
      [
        'b/b-node1/k8s/shop/cache-1/eth0',
        'b/b-node1/k8s/shop/db-1/eth0',
        'b/b-node2/k8s/shop/db-2/eth0',
        'b/b-node2/k8s/shop/web-b/eth0',
      ],
    );
    const profile = agent.get(ResourceKind.PROFILE, 'b/kns.shop');
    assert.ok(profile?.body.case === 'profile');
    assert.equal(profile.body.value.labels['pcns.team'], 'web');
    assert.deepEqual(
      agent.keys(ResourceKind.IPAM_BLOCK).filter((k) => k.startsWith('b/')),
      ['b/ipamblock/10-20-1-0-26', 'b/ipamblock/10-20-2-0-26'],
    );
    assert.equal(agent.statuses.get('b')?.endpoints, 4);

    // A relabel, as Calico's CNI plugin or an operator would write it.
    const writer = etcdClient({ type: 'etcdv3', endpoints: [etcd.endpoint] });
    t.after(() => writer.close());
    const key = resourceKey('WorkloadEndpoint', 'b--node1-k8s-db--1-eth0', 'shop') as string;
    const wep = JSON.parse((await writer.get(key).string()) ?? '{}');
    wep.metadata.labels.app = 'db-retired';
    await writer.put(key).value(JSON.stringify(wep)).exec();
    await waitFor('the relabel', () => {
      const u = agent.get(ResourceKind.WORKLOAD_ENDPOINT, 'b/b-node1/k8s/shop/db-1/eth0');
      return u?.body.case === 'workloadEndpoint' && u.body.value.labels.app === 'db-retired';
    });

    // eval reads the remote through the RCC, and b itself through --datastore etcdv3:URL.
    const viaRcc = fedmesh([
      'eval',
      "app == 'db'",
      '--cluster',
      'a',
      '--datastore',
      `file:${join(dir, 'a')}`,
    ]);
    assert.equal(viaRcc.status, 0, viaRcc.stderr);
    assert.match(viaRcc.stdout, /^ {2}b\/shop\/b--node2-k8s-db--2-eth0$/m);
    assert.doesNotMatch(viaRcc.stdout, /b--node1-k8s-db--1-eth0/, 'the relabelled pod no longer matches');
    const direct = fedmesh([
      'eval',
      "pcns.team == 'web' && fedmesh.io/cluster == 'b'",
      '--cluster',
      'b',
      '--datastore',
      `etcdv3:${etcd.endpoint}`,
    ]);
    assert.equal(direct.status, 0, direct.stderr);
    assert.deepEqual(
      direct.stdout
        .trim()
        .split('\n')
        .slice(1)
        .map((l) => l.trim()),
      [
        'shop/b--node1-k8s-cache--1-eth0',
        'shop/b--node1-k8s-db--1-eth0',
        'shop/b--node2-k8s-db--2-eth0',
        'shop/b--node2-k8s-web--b-eth0',
      ],
    );
  });
});
