import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Cidr, Ip4, Mac } from '../../model/net.ts';
import {
  diffFdb,
  diffNeighbours,
  diffRoutes,
  type KernelRoute,
  ourNexthops,
  parseRoutes,
  planRoutes,
  type RouteSpec,
  renderRoutePlan,
} from '../../native/iproute.ts';

const cidr = (s: string) => s as Cidr;
const ip = (s: string) => s as Ip4;
const mac = (s: string) => s as Mac;

const REMOTE: RouteSpec = {
  dst: cidr('10.244.1.0/26'),
  via: ip('10.244.1.0'),
  dev: 'vxlan.calico',
  onlink: true,
};
const POD: RouteSpec = { dst: cidr('10.244.0.5/32'), dev: 'cali1234' };

function lines(text: string): string[] {
  return text.split('\n').filter(Boolean);
}

// Verbatim `ip -4 -N -j route show table main` from a test namespace.
const ROUTES_JSON = JSON.stringify([
  { type: '6', dst: '10.7.0.0/26', protocol: '80', flags: [] },
  { dst: '10.8.0.0/16', gateway: '192.168.100.2', dev: 'eth0', flags: ['linkdown'] },
  { dst: '10.9.0.5', dev: 'eth0', protocol: '80', scope: '253', metric: 5, flags: ['linkdown'] },
  {
    dst: '10.244.1.0/26',
    gateway: '10.244.1.0',
    dev: 'vxlan.calico',
    protocol: '80',
    metric: 3873,
    flags: ['onlink'],
  },
  { dst: '192.168.100.0/24', dev: 'eth0', protocol: '2', scope: '253', prefsrc: '192.168.100.1', flags: [] },
  { dst: 'default', gateway: '192.168.100.254', dev: 'eth0', protocol: '4', flags: [] },
  { dst: '10.1.1.1', dev: 'eth0', scope: '254', protocol: '80', flags: [] },
]);

describe('parseRoutes', () => {
  const got = parseRoutes(ROUTES_JSON);
  it('reads unicast and blackhole routes with numeric protocol and scope; bare addresses become /32', () => {
    assert.deepEqual(got, [
      { dst: '10.7.0.0/26', dev: '', blackhole: true, proto: 80, metric: 0 },
      { dst: '10.8.0.0/16', dev: 'eth0', via: '192.168.100.2', proto: 3, metric: 0, scope: 'global' },
      { dst: '10.9.0.5/32', dev: 'eth0', proto: 80, metric: 5, scope: 'link' },
      {
        dst: '10.244.1.0/26',
        dev: 'vxlan.calico',
        via: '10.244.1.0',
        onlink: true,
        proto: 80,
        metric: 3873,
        scope: 'global',
      },
      { dst: '192.168.100.0/24', dev: 'eth0', proto: 2, metric: 0, scope: 'link' },
      { dst: '0.0.0.0/0', dev: 'eth0', via: '192.168.100.254', proto: 4, metric: 0, scope: 'global' },
    ]);
  });
});

describe('diffRoutes', () => {
  it('adds missing routes with replace and proto 80, default scope by gateway', () => {
    // A gateway route's metric comes from its gateway (1 + 10.244.1.0 as a number mod 4093).
    assert.deepEqual(lines(diffRoutes([REMOTE, POD], [])), [
      'route replace 10.244.1.0/26 via 10.244.1.0 dev vxlan.calico onlink scope global proto 80 metric 3873 table main',
      'route replace 10.244.0.5/32 dev cali1234 scope link proto 80 table main',
    ]);
  });

  it('writes nothing when the kernel matches', () => {
    const actual = parseRoutes(ROUTES_JSON).filter((r) => r.proto === 80);
    const pinned = { dst: cidr('10.9.0.5/32'), dev: 'eth0' };
    // the metric-5 route is a different FIB entry: ours is written at metric 0, then the old one goes
    assert.deepEqual(lines(diffRoutes([REMOTE, pinned], actual)), [
      'route replace 10.9.0.5/32 dev eth0 scope link proto 80 table main',
      'route del blackhole 10.7.0.0/26 proto 80 metric 0 table main',
      'route del 10.9.0.5/32 dev eth0 proto 80 metric 5 table main',
    ]);
    assert.equal(
      diffRoutes(
        [REMOTE],
        actual.filter((r) => r.dst === REMOTE.dst),
      ),
      '',
    );
  });

  it('replaces a route whose gateway, device, onlink or protocol changed', () => {
    const actual: KernelRoute[] = [{ ...REMOTE, proto: 80, metric: 3873, scope: 'global' }];
    for (const changed of [
      { ...REMOTE, via: ip('10.244.1.1') },
      { ...REMOTE, dev: 'eth0' },
      { ...REMOTE, onlink: false },
    ]) {
      assert.match(diffRoutes([changed], actual), /^route replace 10\.244\.1\.0\/26 /);
    }
    // a CNI-written route on a workload device (proto boot) is taken over
    assert.match(
      diffRoutes([POD], [{ ...POD, proto: 3, metric: 0, scope: 'link' }]),
      /^route replace .* proto 80/,
    );
  });

  it('blackhole routes for own blocks and the MTU on VXLAN routes, as Felix writes them', () => {
    const hole = { dst: cidr('10.7.0.0/26'), dev: '', blackhole: true };
    assert.deepEqual(lines(diffRoutes([hole, { ...REMOTE, mtu: 1450 }], [])), [
      'route replace blackhole 10.7.0.0/26 proto 80 table main',
      'route replace 10.244.1.0/26 via 10.244.1.0 dev vxlan.calico onlink scope global proto 80 metric 3873 mtu 1450 table main',
    ]);
    const actual = parseRoutes(ROUTES_JSON).filter((r) => r.proto === 80);
    assert.equal(
      diffRoutes(
        [hole],
        actual.filter((r) => r.blackhole),
      ),
      '',
      'the kernel has it',
    );
    // An MTU change rewrites the route.
    const withMtu: KernelRoute = { ...REMOTE, proto: 80, metric: 3873, scope: 'global', mtu: 1450 };
    assert.equal(diffRoutes([{ ...REMOTE, mtu: 1450 }], [withMtu]), '');
    assert.match(diffRoutes([{ ...REMOTE, mtu: 1400 }], [withMtu]), /^route replace .* mtu 1400 /);
  });

  it('gateway routes at a metric from their gateway, then deletions, then our stale nexthops', () => {
    const other: RouteSpec = { ...REMOTE, dst: cidr('10.244.1.64/26'), mtu: 1450 };
    const elsewhere: RouteSpec = { ...REMOTE, dst: cidr('10.244.2.0/26'), via: ip('10.244.2.0') };
    const old: KernelRoute = { ...REMOTE, proto: 80, metric: 0, scope: 'global', nhid: 7 };
    const plan = planRoutes([REMOTE, other, elsewhere, POD], [old]);
    assert.deepEqual(renderRoutePlan(plan, [7]), [
      'route replace 10.244.1.0/26 via 10.244.1.0 dev vxlan.calico onlink scope global proto 80 metric 3873 table main',
      'route replace 10.244.1.64/26 via 10.244.1.0 dev vxlan.calico onlink scope global proto 80 metric 3873 mtu 1450 table main',
      'route replace 10.244.2.0/26 via 10.244.2.0 dev vxlan.calico onlink scope global proto 80 metric 36 table main',
      'route replace 10.244.0.5/32 dev cali1234 scope link proto 80 table main',
      // An older version's route at metric 0 goes once the new one is in (named by its nexthop:
      // named by device, the kernel would pass it over and delete the new one); its nexthop after.
      'route del 10.244.1.0/26 nhid 7 proto 80 metric 0 table main',
      'nexthop del id 7',
    ]);
  });

  it('reads our nexthops by protocol 80; none when the command failed', () => {
    const got = ourNexthops(
      JSON.stringify([
        { id: 7, gateway: '10.1.1.1', dev: 'vx', scope: '253', protocol: '80', flags: ['onlink'] },
        { id: 8, gateway: '10.1.1.2', dev: 'vx', scope: '253', flags: ['onlink'] },
      ]),
    );
    assert.deepEqual(got, [7]);
    assert.deepEqual(ourNexthops(''), []);
  });

  it('deletes stale owned routes naming their protocol and metric', () => {
    const actual = parseRoutes(ROUTES_JSON).filter((r) => r.proto === 80);
    assert.deepEqual(lines(diffRoutes([], actual)), [
      'route del blackhole 10.7.0.0/26 proto 80 metric 0 table main',
      'route del 10.9.0.5/32 dev eth0 proto 80 metric 5 table main',
      'route del 10.244.1.0/26 dev vxlan.calico proto 80 metric 3873 table main',
    ]);
  });

  it('does not overwrite a route it does not own', () => {
    const foreign = parseRoutes(ROUTES_JSON).filter((r) => r.proto !== 80);
    const plan = planRoutes([{ dst: cidr('10.8.0.0/16'), dev: 'vxlan.calico' }, POD], [], foreign);
    assert.deepEqual(
      plan.conflicts.map((r) => r.dst),
      ['10.8.0.0/16'],
    );
    assert.deepEqual(plan.replace, [POD]);
    // A gateway route (metric 3873) is not written under a foreign route that would shadow it
    // (lower metric), and is written over one it shadows (higher metric).
    const theirs = (metric: number): KernelRoute => ({ dst: REMOTE.dst, dev: 'eth0', proto: 3, metric });
    assert.deepEqual(planRoutes([REMOTE], [], [theirs(100)]).conflicts, [REMOTE]);
    assert.deepEqual(planRoutes([REMOTE], [], [theirs(5000)]).replace, [REMOTE]);
  });
});

describe('diffNeighbours', () => {
  it('replaces missing/changed permanent entries, removes stale permanent ones, ignores learned ones', () => {
    const got = diffNeighbours(
      'vxlan.calico',
      [
        { ip: ip('10.244.1.0'), mac: mac('66:ee:ee:00:00:0b') },
        { ip: ip('10.244.2.0'), mac: mac('66:ee:ee:00:00:0c') },
        { ip: ip('10.244.3.0'), mac: mac('66:ee:ee:00:00:0d') },
      ],
      [
        { ip: '10.244.1.0', mac: '66:ee:ee:00:00:0b', permanent: true },
        { ip: '10.244.2.0', mac: '66:ee:ee:00:00:ff', permanent: true },
        { ip: '10.244.3.0', mac: '66:ee:ee:00:00:0d', permanent: false },
        { ip: '10.244.9.0', mac: '66:ee:ee:00:00:09', permanent: true },
        { ip: '192.168.100.9', permanent: false },
      ],
    );
    assert.deepEqual(got, [
      'neigh del 10.244.9.0 dev vxlan.calico',
      'neigh replace 10.244.2.0 lladdr 66:ee:ee:00:00:0c dev vxlan.calico nud permanent',
      'neigh replace 10.244.3.0 lladdr 66:ee:ee:00:00:0d dev vxlan.calico nud permanent',
    ]);
  });
});

describe('diffFdb', () => {
  it('replaces missing/moved entries, removes stale ones, never the all-zero default entries', () => {
    const got = diffFdb(
      'vxlan.calico',
      [
        { mac: mac('66:ee:ee:00:00:0b'), dst: ip('192.168.100.2') },
        { mac: mac('66:ee:ee:00:00:0c'), dst: ip('192.168.100.3') },
        { mac: mac('66:ee:ee:00:00:0d'), dst: ip('192.168.100.4') },
      ],
      [
        { mac: '00:00:00:00:00:00', dst: '192.168.100.9' },
        { mac: '66:ee:ee:00:00:0b', dst: '192.168.100.2' },
        { mac: '66:ee:ee:00:00:0c', dst: '192.168.100.33' },
        { mac: '66:ee:ee:00:00:09', dst: '192.168.100.5' },
      ],
    );
    assert.deepEqual(got, [
      'fdb del 66:ee:ee:00:00:0c dev vxlan.calico dst 192.168.100.33 self',
      'fdb del 66:ee:ee:00:00:09 dev vxlan.calico dst 192.168.100.5 self',
      'fdb replace 66:ee:ee:00:00:0c dev vxlan.calico dst 192.168.100.3 self permanent',
      'fdb replace 66:ee:ee:00:00:0d dev vxlan.calico dst 192.168.100.4 self permanent',
    ]);
  });

  it('is empty when the kernel matches', () => {
    assert.deepEqual(
      diffFdb(
        'vxlan.calico',
        [{ mac: mac('66:ee:ee:00:00:0b'), dst: ip('192.168.100.2') }],
        [{ mac: '66:ee:ee:00:00:0b', dst: '192.168.100.2' }],
      ),
      [],
    );
  });
});
