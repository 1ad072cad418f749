// Federation without the overlay ("flat routing"), end to end with real packets: two clusters in
// network namespaces (examples/flat-routing), RCCs with overlayRoutingMode Disabled, pod blocks
// routed by the underlay as BGP would route them (a plain `ip route ... via <other node>` added by
// the test), natOutgoing on each cluster's own pool and a disabled pool covering the other
// cluster's pods, as Calico's federation documents prescribe. Checked: remote-label policy allows
// and denies on both sides, the far side sees the real source address (no masquerade), and fedmesh
// programs nothing of the overlay (no proto-80 route to the remote block, no FDB entry).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startMesh, stopMesh } from '../../cli/demo/demo.ts';
import { tcpProbe } from '../../cli/demo/topology.ts';
import type { Ip4 } from '../../model/net.ts';
import { run } from '../../native/exec.ts';
import { listNetns, uniqueTag } from '../../native/netns.ts';

const EXAMPLE = new URL('../../examples/flat-routing', import.meta.url).pathname;
const isRoot = process.getuid?.() === 0;

test('flat routing: remote-label policy, source addresses kept, no overlay programmed', {
  skip: !isRoot && 'needs root (network namespaces)',
  timeout: 240_000,
}, async (t) => {
  const prefix = `fmf${uniqueTag(4)}`;
  const dir = mkdtempSync(join(tmpdir(), 'fedmesh-flat-'));
  t.after(async () => {
    await stopMesh(dir, prefix);
    rmSync(dir, { recursive: true, force: true });
  });
  const mesh = await startMesh({ workDir: dir, prefix, backend: 'nft', exampleDir: EXAMPLE });
  const nodeA = `${prefix}-a-node1`;
  const nodeB = `${prefix}-b-node1`;
  const pod = (cluster: string, name: string) => `${prefix}-${cluster}-${name}`;

  // What BGP would install on each node: the other cluster's block via the node that holds it.
  await run('ip', ['-n', nodeA, 'route', 'add', '10.20.1.0/26', 'via', '192.168.100.21', 'dev', 'eth0']);
  await run('ip', ['-n', nodeB, 'route', 'add', '10.10.1.0/26', 'via', '192.168.100.11', 'dev', 'eth0']);

  const db = '10.20.1.5' as Ip4;
  const cache = '10.20.1.6' as Ip4;

  await t.test('a frontend reaches the remote db, and the db sees the frontend’s own address', async () => {
    const r = await tcpProbe(pod('a', 'frontend-1'), db, 5432, 3000);
    assert.ok(r.ok, `allowed by a's egress (app == db) and b's ingress (a frontends): ${r.detail}`);
    assert.equal(r.sourceSeen, '10.10.1.5', 'not masqueraded: the disabled pool exempts b from NAT');
  });

  await t.test(
    'remote labels deny too: b refuses a web pod, a refuses the frontend to b’s cache',
    async () => {
      const web = await tcpProbe(pod('a', 'web-1'), db, 5432, 1000);
      assert.equal(web.ok, false, `b's ingress admits only a's frontends: ${web.detail}`);
      const toCache = await tcpProbe(pod('a', 'frontend-1'), cache, 5432, 1000);
      assert.equal(toCache.ok, false, `a's egress allows only app == db: ${toCache.detail}`);
      // Control: the same cache pod is reachable from a pod with no egress policy (b has none for it).
      const webToCache = await tcpProbe(pod('a', 'web-1'), cache, 5432, 3000);
      assert.ok(webToCache.ok, `no policy on either side: ${webToCache.detail}`);
      assert.equal(webToCache.sourceSeen, '10.10.1.6');
    },
  );

  await t.test(
    'nothing of the overlay: no route to the remote block, no FDB; the underlay route left alone',
    async () => {
      for (const [ns, remoteBlock] of [
        [nodeA, '10.20.'],
        [nodeB, '10.10.'],
      ] as const) {
        const proto80 = (await run('ip', ['-n', ns, 'route', 'show', 'proto', '80'])).stdout;
        assert.ok(
          !proto80.split('\n').some((l) => l.startsWith(remoteBlock)),
          `no fedmesh route to the remote cluster in ${ns}:\n${proto80}`,
        );
        const all = (await run('ip', ['-n', ns, 'route', 'show'])).stdout;
        assert.match(
          all,
          new RegExp(`^${remoteBlock.replace('.', '\\.')}1\\.0/26 via 192\\.168\\.100\\.\\d+ dev eth0`, 'm'),
        );
        const fdb = (await run('bridge', ['-n', ns, 'fdb', 'show'])).stdout;
        assert.doesNotMatch(fdb, /vxlan\.calico/, 'no VXLAN FDB entries');
      }
    },
  );

  await t.test(
    'NAT outgoing: the disabled pool is in the all-pools set, only the own pool masquerades',
    async () => {
      const sets = (await run('ipset', ['list'], { netns: nodeA })).stdout;
      const members = (name: string) => {
        const m = new RegExp(`Name: ${name}\\n[\\s\\S]*?Members:\\n((?:\\S+\\n?)*)`).exec(sets);
        assert.ok(m, `ipset ${name} exists`);
        return m[1]!.trim().split('\n').filter(Boolean).sort();
      };
      assert.deepEqual(members('cali40all-ipam-pools'), ['10.10.0.0/16', '10.20.0.0/16']);
      assert.deepEqual(members('cali40masq-ipam-pools'), ['10.10.0.0/16']);
    },
  );

  await t.test('the syncer serves b with no conflict and logs its in-sync once', () => {
    const log = readFileSync(join(dir, 'syncer-a.log'), 'utf8');
    assert.doesNotMatch(log, /refused remote resource/, 'disabled pools never conflict');
    const inSync = log
      .split('\n')
      .filter((l) => l.includes('remote cluster in sync: sending in-sync update'));
    assert.equal(inSync.length, 1);
    assert.match(inSync[0]!, /"remote":"b"/);
  });

  await stopMesh(dir, prefix);
  assert.deepEqual(
    (await listNetns()).filter((n) => n.startsWith(prefix)),
    [],
    'every namespace removed',
  );
  assert.ok(mesh.agents.length === 2);
});
