// IpRouteDriver against the real kernel: a node namespace with an underlay veth, a VXLAN device
// and a workload veth; every check reads the kernel back with `ip` / `bridge`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Cidr, Ip4, Mac } from '../../model/net.ts';
import { IpRouteDriver, type RouteSpec, VXLAN_DEV, type VxlanSpec } from '../../native/iproute.ts';
import { isRoot, netnsScope, sh, veth } from '../harness/netns.ts';

const cidr = (s: string) => s as Cidr;
const ip = (s: string) => s as Ip4;
const mac = (s: string) => s as Mac;

const VX: VxlanSpec = {
  name: VXLAN_DEV,
  vni: 4096,
  port: 4789,
  parentDev: 'eth0',
  localIp: ip('192.168.100.1'),
  mac: mac('66:ee:ee:00:00:0a'),
  tunnelAddress: ip('10.244.0.0'),
};

const REMOTE_B: RouteSpec = {
  dst: cidr('10.244.1.0/26'),
  via: ip('10.244.1.0'),
  dev: VXLAN_DEV,
  onlink: true,
};
const REMOTE_C: RouteSpec = {
  dst: cidr('10.244.2.0/26'),
  via: ip('10.244.2.0'),
  dev: VXLAN_DEV,
  onlink: true,
};
const POD: RouteSpec = { dst: cidr('10.244.0.5/32'), dev: 'calipod1' };
const ownedDevices = (dev: string) => dev.startsWith('cali');

/**
 * Routes as `ip route` shows them, trimmed, without a gateway route's metric (it comes from the
 * gateway; checked on its own below).
 */
async function routes(ns: string, ...filter: string[]): Promise<string[]> {
  return (await sh(ns, 'ip', 'route', 'show', ...filter))
    .split('\n')
    .map((l) => l.trim().replace(/ metric \d+/, ''))
    .filter(Boolean);
}

test('IpRouteDriver', { skip: !isRoot() && 'needs root (network namespaces)' }, async (t) => {
  const scope = netnsScope(t);
  const node = await scope.add('node', { router: true });
  const peer = await scope.add('peer');
  const pod = await scope.add('pod');
  await veth(
    { ns: node, ifname: 'eth0', addr: '192.168.100.1/24' },
    { ns: peer, ifname: 'eth0', addr: '192.168.100.2/24' },
  );
  await veth({ ns: node, ifname: 'calipod1', mtu: 1450 }, { ns: pod, ifname: 'eth0', mtu: 1450 });
  const drv = new IpRouteDriver({ netns: node });
  // Someone else's routes: they must survive every sync.
  await sh(node, 'ip', 'route', 'add', '10.50.0.0/16', 'via', '192.168.100.2', 'dev', 'eth0');
  await sh(
    node,
    'ip',
    'route',
    'add',
    '10.60.0.0/16',
    'via',
    '192.168.100.2',
    'dev',
    'eth0',
    'proto',
    'static',
  );
  const foreignIntact = async () => {
    const r = await routes(node);
    assert.ok(r.includes('10.50.0.0/16 via 192.168.100.2 dev eth0'), r.join('\n'));
    assert.ok(r.includes('10.60.0.0/16 via 192.168.100.2 dev eth0 proto static'), r.join('\n'));
    assert.ok(
      r.includes('192.168.100.0/24 dev eth0 proto kernel scope link src 192.168.100.1'),
      r.join('\n'),
    );
  };

  await t.test('findDeviceWithAddress', async () => {
    assert.deepEqual(await drv.findDeviceWithAddress(ip('192.168.100.1')), { name: 'eth0', mtu: 1500 });
    assert.equal(await drv.findDeviceWithAddress(ip('192.168.100.99')), undefined);
  });

  await t.test(
    'ensureVxlan creates the device: VNI, port, local, parent, MAC, MTU = parent - 50, /32, up',
    async () => {
      const r = await drv.ensureVxlan(VX);
      assert.deepEqual([r.created, r.changed], [true, true]);
      const d = await sh(node, 'ip', '-d', 'addr', 'show', 'dev', VXLAN_DEV);
      assert.match(d, /mtu 1450 /);
      assert.match(d, /<[^>]*\bUP\b[^>]*>/);
      assert.match(d, /link\/ether 66:ee:ee:00:00:0a /);
      assert.match(d, /vxlan id 4096 local 192\.168\.100\.1 dev eth0 .*dstport 4789 .*nolearning/);
      assert.match(d, /inet 10\.244\.0\.0\/32 /);
      const again = await drv.ensureVxlan(VX);
      assert.deepEqual([again.created, again.changed], [false, false]);
    },
  );

  await t.test('ensureVxlan fixes MTU and addresses in place', async () => {
    await sh(node, 'ip', 'addr', 'add', '10.99.0.1/24', 'dev', VXLAN_DEV);
    const r = await drv.ensureVxlan({ ...VX, mtu: 1400 });
    assert.deepEqual([r.created, r.changed], [false, true]);
    const d = await sh(node, 'ip', 'addr', 'show', 'dev', VXLAN_DEV);
    assert.match(d, /mtu 1400 /);
    assert.doesNotMatch(d, /10\.99\.0\.1/);
    await drv.ensureVxlan(VX);
  });

  await t.test('ensureVxlan changes the source in place when the parent address changes', async () => {
    await drv.syncFdb(VXLAN_DEV, [{ mac: mac('66:ee:ee:00:00:0b'), dst: ip('192.168.100.2') }]);
    await sh(node, 'ip', 'addr', 'del', '192.168.100.1/24', 'dev', 'eth0');
    await sh(node, 'ip', 'addr', 'add', '192.168.100.11/24', 'dev', 'eth0');
    const parent = await drv.findDeviceWithAddress(ip('192.168.100.11'));
    assert.equal(parent?.name, 'eth0');
    const r = await drv.ensureVxlan({ ...VX, localIp: ip('192.168.100.11'), parentDev: parent?.name ?? '' });
    assert.deepEqual([r.created, r.changed], [false, true]);
    assert.match(
      await sh(node, 'ip', '-d', 'link', 'show', 'dev', VXLAN_DEV),
      /vxlan id 4096 local 192\.168\.100\.11 /,
    );
    assert.match(
      await sh(node, 'bridge', 'fdb', 'show', 'dev', VXLAN_DEV),
      /66:ee:ee:00:00:0b dst 192\.168\.100\.2 self permanent/,
      'the same device: its entries kept',
    );
    await drv.syncFdb(VXLAN_DEV, []);
    // and back, so the rest of the test sees the original underlay
    await sh(node, 'ip', 'addr', 'del', '192.168.100.11/24', 'dev', 'eth0');
    await sh(node, 'ip', 'addr', 'add', '192.168.100.1/24', 'dev', 'eth0');
    await sh(node, 'ip', 'route', 'replace', '10.50.0.0/16', 'via', '192.168.100.2', 'dev', 'eth0');
    await sh(
      node,
      'ip',
      'route',
      'replace',
      '10.60.0.0/16',
      'via',
      '192.168.100.2',
      'dev',
      'eth0',
      'proto',
      'static',
    );
    assert.equal((await drv.ensureVxlan(VX)).created, false);
    assert.match(await sh(node, 'ip', '-d', 'link', 'show', 'dev', VXLAN_DEV), /local 192\.168\.100\.1 /);
  });

  await t.test('syncRoutes adds onlink VXLAN routes and workload routes with proto 80', async () => {
    // An older version's block route, through a nexthop object of ours at metric 0.
    await sh(
      node,
      'ip',
      'nexthop',
      'add',
      'id',
      '99',
      'via',
      '10.244.1.0',
      'dev',
      VXLAN_DEV,
      'onlink',
      'proto',
      '80',
    );
    await sh(node, 'ip', 'route', 'add', '10.244.1.0/26', 'nhid', '99', 'proto', '80');
    const st = await drv.syncRoutes([REMOTE_B, REMOTE_C, POD], { ownedDevices });
    assert.equal(st.commands, 1);
    assert.equal(st.replaced, 3);
    const ours = await routes(node, 'proto', '80');
    assert.deepEqual(ours.sort(), [
      '10.244.0.5 dev calipod1 scope link',
      '10.244.1.0/26 via 10.244.1.0 dev vxlan.calico onlink',
      '10.244.2.0/26 via 10.244.2.0 dev vxlan.calico onlink',
    ]);
    // Plain routes, each at the metric its gateway gives (1 + the address as a number mod 4093);
    // the older version's route and nexthop gone.
    assert.match(
      await sh(node, 'ip', 'route', 'show', '10.244.1.0/26'),
      /^10\.244\.1\.0\/26 via .* metric 3873 /,
    );
    assert.match(
      await sh(node, 'ip', 'route', 'show', '10.244.2.0/26'),
      /^10\.244\.2\.0\/26 via .* metric 36 /,
    );
    assert.equal((await sh(node, 'ip', 'route', 'show', '10.244.1.0/26')).trim().split('\n').length, 1);
    assert.equal(await sh(node, 'ip', 'nexthop', 'show'), '');
    await foreignIntact();
    assert.equal((await drv.syncRoutes([REMOTE_B, REMOTE_C, POD], { ownedDevices })).commands, 0);
  });

  await t.test(
    'syncRoutes apart from vxlan.calico leaves its routes alone, and syncs the others',
    async () => {
      // The device holds REMOTE_B and REMOTE_C from the test before; neither is asked for here, yet
      // both stay; a stale workload route elsewhere goes, and the pod's route is written.
      await sh(node, 'ip', 'route', 'del', '10.244.0.5/32');
      await sh(node, 'ip', 'route', 'add', '10.244.0.8/32', 'dev', 'calipod1', 'proto', '80');
      const st = await drv.syncRoutes([POD], { ownedDevices, apartFrom: VXLAN_DEV });
      assert.deepEqual([st.replaced, st.deleted], [1, 1]);
      const r = await routes(node);
      assert.ok(r.includes('10.244.1.0/26 via 10.244.1.0 dev vxlan.calico proto 80 onlink'), r.join('\n'));
      assert.ok(r.includes('10.244.2.0/26 via 10.244.2.0 dev vxlan.calico proto 80 onlink'), r.join('\n'));
      assert.ok(r.includes('10.244.0.5 dev calipod1 proto 80 scope link'), r.join('\n'));
      assert.ok(!r.some((l) => l.startsWith('10.244.0.8')), 'stale workload route swept');
      await foreignIntact();
    },
  );

  await t.test('syncRoutes changes and removes only owned routes', async () => {
    // a route on a workload device written by someone else (a CNI plugin, proto boot) is ours to sweep
    await sh(node, 'ip', 'route', 'add', '10.244.0.9/32', 'dev', 'calipod1');
    const moved: RouteSpec = { ...REMOTE_C, via: ip('10.244.2.1') };
    const st = await drv.syncRoutes([REMOTE_B, moved, POD], { ownedDevices });
    // The new gateway brings a new metric: the route at the new one, then the old one deleted.
    assert.deepEqual([st.replaced, st.deleted], [1, 2]);
    const r = await routes(node);
    assert.ok(r.includes('10.244.2.0/26 via 10.244.2.1 dev vxlan.calico proto 80 onlink'), r.join('\n'));
    assert.ok(!r.some((l) => l.startsWith('10.244.0.9')), 'stale workload route swept');
    const st2 = await drv.syncRoutes([POD], { ownedDevices });
    assert.equal(st2.deleted, 2);
    assert.deepEqual(await routes(node, 'proto', '80'), ['10.244.0.5 dev calipod1 scope link']);
    await foreignIntact();
  });

  await t.test(
    'syncRoutes skips routes whose device is missing and never overwrites a foreign route',
    async () => {
      const missing: RouteSpec = { dst: cidr('10.244.0.7/32'), dev: 'calinothere' };
      const clash: RouteSpec = {
        dst: cidr('10.50.0.0/16'),
        via: ip('10.244.1.0'),
        dev: VXLAN_DEV,
        onlink: true,
      };
      const st = await drv.syncRoutes([POD, REMOTE_B, missing, clash], { ownedDevices });
      assert.deepEqual(st.skipped.sort(), ['10.244.0.7/32', '10.50.0.0/16']);
      assert.equal(st.replaced, 1);
      assert.ok(
        (await routes(node, 'proto', '80')).includes('10.244.1.0/26 via 10.244.1.0 dev vxlan.calico onlink'),
      );
      await foreignIntact();
    },
  );

  await t.test(
    'syncNeighbours: permanent entries added, changed, removed; learned entries left',
    async () => {
      await sh(
        node,
        'ip',
        'neigh',
        'replace',
        '10.244.7.0',
        'lladdr',
        '66:ee:ee:00:00:77',
        'dev',
        VXLAN_DEV,
        'nud',
        'reachable',
      );
      const n = (i: string, m: string) => ({ ip: ip(i), mac: mac(m) });
      let st = await drv.syncNeighbours(VXLAN_DEV, [
        n('10.244.1.0', '66:ee:ee:00:00:0b'),
        n('10.244.2.0', '66:ee:ee:00:00:0c'),
      ]);
      assert.equal(st.replaced, 2);
      const show = async () => sh(node, 'ip', 'neigh', 'show', 'dev', VXLAN_DEV);
      assert.match(await show(), /10\.244\.1\.0 lladdr 66:ee:ee:00:00:0b PERMANENT/);
      assert.equal(
        (
          await drv.syncNeighbours(VXLAN_DEV, [
            n('10.244.1.0', '66:ee:ee:00:00:0b'),
            n('10.244.2.0', '66:ee:ee:00:00:0c'),
          ])
        ).commands,
        0,
      );
      st = await drv.syncNeighbours(VXLAN_DEV, [n('10.244.1.0', '66:ee:ee:00:00:1b')]);
      assert.deepEqual([st.replaced, st.deleted], [1, 1]);
      const out = await show();
      assert.match(out, /10\.244\.1\.0 lladdr 66:ee:ee:00:00:1b PERMANENT/);
      assert.doesNotMatch(out, /10\.244\.2\.0/);
      assert.match(out, /10\.244\.7\.0 lladdr 66:ee:ee:00:00:77/, 'learned entry untouched');
    },
  );

  await t.test('syncFdb: permanent entries added, moved, removed; the all-zero entry left', async () => {
    await sh(
      node,
      'bridge',
      'fdb',
      'append',
      '00:00:00:00:00:00',
      'dev',
      VXLAN_DEV,
      'dst',
      '192.168.100.9',
      'self',
      'permanent',
    );
    const f = (m: string, d: string) => ({ mac: mac(m), dst: ip(d) });
    let st = await drv.syncFdb(VXLAN_DEV, [
      f('66:ee:ee:00:00:0b', '192.168.100.2'),
      f('66:ee:ee:00:00:0c', '192.168.100.3'),
    ]);
    assert.equal(st.replaced, 2);
    const show = async () => sh(node, 'bridge', 'fdb', 'show', 'dev', VXLAN_DEV);
    assert.match(await show(), /66:ee:ee:00:00:0b dst 192\.168\.100\.2 self permanent/);
    assert.equal(
      (
        await drv.syncFdb(VXLAN_DEV, [
          f('66:ee:ee:00:00:0b', '192.168.100.2'),
          f('66:ee:ee:00:00:0c', '192.168.100.3'),
        ])
      ).commands,
      0,
    );
    st = await drv.syncFdb(VXLAN_DEV, [f('66:ee:ee:00:00:0b', '192.168.100.4')]);
    const out = await show();
    assert.match(out, /66:ee:ee:00:00:0b dst 192\.168\.100\.4 self permanent/);
    assert.doesNotMatch(out, /66:ee:ee:00:00:0b dst 192\.168\.100\.2/);
    assert.doesNotMatch(out, /66:ee:ee:00:00:0c/);
    assert.match(out, /00:00:00:00:00:00 dst 192\.168\.100\.9 self permanent/, 'default entry untouched');
    assert.equal((await drv.syncFdb(VXLAN_DEV, [f('66:ee:ee:00:00:0b', '192.168.100.4')])).commands, 0);
  });

  await t.test("someone else's nexthop and the routes through it are kept", async () => {
    await sh(node, 'ip', 'nexthop', 'add', 'id', '7', 'via', '192.168.100.2', 'dev', 'eth0');
    await sh(node, 'ip', 'route', 'add', '10.70.0.0/16', 'nhid', '7');
    await drv.syncRoutes([POD, REMOTE_B], { ownedDevices });
    await drv.syncRoutes([POD], { ownedDevices });
    assert.match(await sh(node, 'ip', 'nexthop', 'show', 'id', '7'), /via 192\.168\.100\.2 dev eth0/);
    assert.match(await sh(node, 'ip', 'route', 'show', '10.70.0.0/16'), /nhid 7 via 192\.168\.100\.2/);
    await sh(node, 'ip', 'nexthop', 'del', 'id', '7');
  });

  await t.test('timing: 10k routes, 10k FDB and 10k ARP entries, one batch each', async () => {
    const n = 10_000;
    const addr = (i: number) => `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    const rs: RouteSpec[] = Array.from({ length: n }, (_, i) => ({
      dst: cidr(`${addr(i)}/32`),
      via: ip('10.244.1.0'),
      dev: VXLAN_DEV,
      onlink: true,
    }));
    const macOf = (i: number) =>
      mac(
        `66:ee:ee:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
      );
    const fdb = Array.from({ length: n }, (_, i) => ({ mac: macOf(i), dst: ip('192.168.100.2') }));
    const arp = Array.from({ length: n }, (_, i) => ({ ip: ip(addr(i)), mac: macOf(i) }));
    const time = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
      const t0 = performance.now();
      const r = await f();
      return [r, performance.now() - t0];
    };
    const [r1, rt] = await time(() => drv.syncRoutes(rs, { ownedDevices }));
    const [, rnoop] = await time(() => drv.syncRoutes(rs, { ownedDevices }));
    const [f1, ft] = await time(() => drv.syncFdb(VXLAN_DEV, fdb));
    const [, fnoop] = await time(() => drv.syncFdb(VXLAN_DEV, fdb));
    const [a1, at] = await time(() => drv.syncNeighbours(VXLAN_DEV, arp));
    const [, anoop] = await time(() => drv.syncNeighbours(VXLAN_DEV, arp));
    assert.equal(r1.replaced, n);
    t.diagnostic(
      `ip -batch ${n} routes: sync ${rt.toFixed(0)} ms (batch ${r1.ms.toFixed(0)} ms), no-op ${rnoop.toFixed(0)} ms; ` +
        `${n} FDB: ${ft.toFixed(0)} ms (batch ${f1.ms.toFixed(0)}), no-op ${fnoop.toFixed(0)} ms; ` +
        `${n} ARP: ${at.toFixed(0)} ms (batch ${a1.ms.toFixed(0)}), no-op ${anoop.toFixed(0)} ms`,
    );
    await drv.syncRoutes([], { ownedDevices });
    await drv.syncFdb(VXLAN_DEV, []);
    await drv.syncNeighbours(VXLAN_DEV, []);
    assert.deepEqual(await routes(node, 'proto', '80'), []);
    await foreignIntact();
  });
});
