// Kernel event lines as `ip -4 -o -d monitor link address route neigh`, `ip -f bridge -o monitor
// neigh` and `bridge monitor fdb` print them
// (captured from this kernel), parsed, and classified against what the node wants: a foreign
// deletion or change of our state asks for a repair; our own writes, echoed back, do not.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  classify,
  type DesiredKernelState,
  KernelWatch,
  planRepairs,
  type RepairPlan,
} from '../../agent/dataplane/kernel-watch.ts';
import type { Cidr, Ip4, Mac } from '../../model/net.ts';
import type { RouteSpec } from '../../native/iproute.ts';
import {
  type EventStream,
  type KernelEvent,
  type KernelEventHandlers,
  parseMonitorLine,
} from '../../native/kernel-events.ts';

const ip = (l: string) => parseMonitorLine(l);
const br = (l: string) => parseMonitorLine(l, true);

describe('parseMonitorLine', () => {
  it('links, with the @peer suffix stripped', () => {
    assert.deepEqual(
      pick(
        ip(
          '4: vxlan.calico: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN group default \\    link/ether ba:f7:f8:bc:02:ae brd ff:ff:ff:ff:ff:ff',
        ),
      ),
      { object: 'link', deleted: false, subject: 'vxlan.calico', dev: 'vxlan.calico' },
    );
    assert.deepEqual(
      pick(ip('Deleted 4: vxlan.calico: <BROADCAST,MULTICAST> mtu 1450 qdisc noop state DOWN group default')),
      { object: 'link', deleted: true, subject: 'vxlan.calico', dev: 'vxlan.calico' },
    );
    assert.equal(
      ip('3: cali1a2b3c4d5e6@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500')?.subject,
      'cali1a2b3c4d5e6',
    );
    assert.equal(ip('Deleted 4: vxlan.calico: <BROADCAST,MULTICAST> mtu 1450 qdisc noop')?.ifindex, 4);
  });
  it('routes, a host route as a /32', () => {
    assert.deepEqual(
      pick(ip('Deleted 10.20.0.0/26 via 10.20.0.1 dev vxlan.calico proto 80 metric 1052 onlink ')),
      {
        object: 'route',
        deleted: true,
        subject: '10.20.0.0/26',
        dev: 'vxlan.calico',
      },
    );
    assert.deepEqual(pick(ip('10.10.0.5 dev cali1a2b3c4d5e6 scope link ')), {
      object: 'route',
      deleted: false,
      subject: '10.10.0.5/32',
      dev: 'cali1a2b3c4d5e6',
    });
    assert.equal(
      ip('local 10.10.0.1 dev vxlan.calico table local proto kernel scope host src 10.10.0.1 ')?.subject,
      '10.10.0.1/32',
    );
    // `-d` prints the route type first.
    assert.deepEqual(
      pick(
        ip(
          'Deleted unicast 10.20.0.0/26 via 10.20.0.1 dev vxlan.calico table main proto 80 scope global onlink ',
        ),
      ),
      { object: 'route', deleted: true, subject: '10.20.0.0/26', dev: 'vxlan.calico' },
    );
  });
  it('neighbours and FDB entries', () => {
    assert.deepEqual(pick(ip('10.20.0.1 dev vxlan.calico lladdr 66:00:00:00:00:02 PERMANENT ')), {
      object: 'neigh',
      deleted: false,
      subject: '10.20.0.1',
      dev: 'vxlan.calico',
    });
    assert.equal(ip('Deleted 10.20.0.1 dev vxlan.calico FAILED ')?.deleted, true);
    assert.deepEqual(pick(br('Deleted 66:00:00:00:00:02 dev vxlan.calico dst 10.99.0.2 self permanent')), {
      object: 'fdb',
      deleted: true,
      subject: '66:00:00:00:00:02',
      dev: 'vxlan.calico',
    });
  });
  it('FDB entries as `ip -f bridge monitor neigh` prints them', () => {
    const e = br('Deleted 172.16.0.10 dev vxlan.calico lladdr 66:BB:00:00:00:01 NOARP PERMANENT ');
    assert.deepEqual(pick(e), {
      object: 'fdb',
      deleted: true,
      subject: '66:bb:00:00:00:01',
      dev: 'vxlan.calico',
    });
    assert.equal(e?.dst, '172.16.0.10');
    assert.equal(br('dev vxlan.calico lladdr 66:aa:00:00:00:01 PERMANENT ')?.dst, undefined);
  });
  it('addresses; blank lines are not events', () => {
    assert.deepEqual(
      pick(
        ip(
          'Deleted 4: vxlan.calico    inet 10.10.0.1/32 scope global vxlan.calico\\       valid_lft forever',
        ),
      ),
      { object: 'addr', deleted: true, subject: '10.10.0.1/32', dev: 'vxlan.calico' },
    );
    assert.equal(ip(''), undefined);
  });
});

function pick(e: KernelEvent | undefined) {
  assert.ok(e);
  return { object: e.object, deleted: e.deleted, subject: e.subject, dev: e.dev };
}

const WANT: DesiredKernelState = {
  routes: new Map<string, RouteSpec>([
    [
      '10.20.0.0/26',
      { dst: '10.20.0.0/26' as Cidr, dev: 'vxlan.calico', via: '10.20.0.1' as Ip4, onlink: true },
    ],
    ['10.10.0.5/32', { dst: '10.10.0.5/32' as Cidr, dev: 'cali1a2b3c4d5e6' }],
  ]),
  neighbours: new Map([['10.20.0.1', '66:00:00:00:00:02']]),
  fdb: new Map([['66:00:00:00:00:02', '10.99.0.2']]),
  workloadInterfaces: new Set(['cali1a2b3c4d5e6']),
  device: {
    name: 'vxlan.calico',
    vni: 4096,
    port: 4789,
    parentDev: 'eth0',
    localIp: '172.16.0.1' as Ip4,
    mac: '66:aa:00:00:00:01' as Mac,
    mtu: 1450,
    tunnelAddress: '10.10.0.0' as Ip4,
  },
};
/** A vxlan.calico link line as `ip -o -d monitor link` prints it, with these flags and details. */
const vx = (flags: string, more = '', mtu = 1450, qdisc = 'noqueue') =>
  ip(
    `4: vxlan.calico: <${flags}> mtu ${mtu} qdisc ${qdisc} state UNKNOWN group default \\    link/ether 66:aa:00:00:00:01 brd ff:ff:ff:ff:ff:ff promiscuity 0 \\    vxlan id ${more || '4096 local 172.16.0.1 dev eth0 srcport 0 0 dstport 4789'} nolearning ttl auto ageing 300`,
  );
/** The repair, written short: a scope name, or `target key`. */
const cls = (e: KernelEvent | undefined) => {
  const r = classify(e!, WANT);
  if (r === undefined) return undefined;
  if ('device' in r) return `device ${r.device}`;
  if ('resync' in r) return `resync ${r.resync}`;
  return `${r.target} ${r.key}`;
};

describe('classify', () => {
  it('our own writes, echoed back, ask for nothing', () => {
    assert.equal(
      cls(ip('10.20.0.0/26 via 10.20.0.1 dev vxlan.calico proto 80 metric 1052 onlink ')),
      undefined,
    );
    assert.equal(cls(ip('10.10.0.5 dev cali1a2b3c4d5e6 proto 80 scope link ')), undefined);
    assert.equal(cls(ip('10.20.0.1 dev vxlan.calico lladdr 66:00:00:00:00:02 PERMANENT ')), undefined);
    assert.equal(cls(br('66:00:00:00:00:02 dev vxlan.calico dst 10.99.0.2 self permanent')), undefined);
    assert.equal(
      cls(ip('4: vxlan.calico: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue')),
      undefined,
    );
    assert.equal(cls(vx('BROADCAST,MULTICAST,UP,LOWER_UP')), undefined);
    // Our own `link add`: a new device, never up yet, has nothing to lose.
    assert.equal(cls(vx('BROADCAST,MULTICAST', '', 1450, 'noop')), undefined);
    assert.equal(cls(ip('4: vxlan.calico    inet 10.10.0.0/32 scope global vxlan.calico')), undefined);
    // What we delete ourselves is no longer wanted.
    assert.equal(cls(ip('Deleted 10.30.0.0/26 via 10.30.0.1 dev vxlan.calico proto 80 onlink ')), undefined);
  });
  it('a deleted or changed route of ours is rewritten, that route alone', () => {
    assert.equal(
      cls(ip('Deleted 10.20.0.0/26 via 10.20.0.1 dev vxlan.calico proto 80 metric 1052 onlink ')),
      'route 10.20.0.0/26',
    );
    // Replaced at our metric (1 + the gateway 10.20.0.1 as a number mod 4093) by someone's route.
    assert.equal(cls(ip('10.20.0.0/26 via 192.168.1.1 dev eth0 metric 1052 ')), 'route 10.20.0.0/26');
  });
  it('another route to one of our destinations at another metric: on our device removed, else left', () => {
    // `ip route replace` without a metric adds beside ours, at metric 0, taking the traffic.
    assert.equal(cls(ip('10.20.0.0/26 via 10.20.0.9 dev vxlan.calico onlink ')), 'resync routes');
    assert.equal(cls(ip('10.20.0.0/26 via 192.168.1.1 dev eth0 proto 80 metric 7 ')), 'resync routes');
    assert.equal(cls(ip('Deleted 10.20.0.0/26 via 10.20.0.9 dev vxlan.calico onlink ')), undefined);
    assert.equal(cls(ip('10.20.0.0/26 via 192.168.1.1 dev eth0 ')), undefined);
    assert.equal(cls(ip('Deleted 10.10.0.5 dev cali1a2b3c4d5e6 scope link ')), 'route 10.10.0.5/32');
  });
  it('a deleted or changed ARP or FDB entry is rewritten; vxlan.calico gone or down asks for a device check', () => {
    assert.equal(
      cls(ip('Deleted 10.20.0.1 dev vxlan.calico lladdr 66:00:00:00:00:02 PERMANENT ')),
      'neigh 10.20.0.1',
    );
    assert.equal(cls(ip('10.20.0.1 dev vxlan.calico FAILED ')), 'neigh 10.20.0.1');
    assert.equal(
      cls(ip('10.20.0.1 dev vxlan.calico lladdr 66:00:00:00:00:99 PERMANENT ')),
      'neigh 10.20.0.1',
    );
    assert.equal(
      cls(br('Deleted 66:00:00:00:00:02 dev vxlan.calico dst 10.99.0.2 self permanent')),
      'fdb 66:00:00:00:00:02',
    );
    assert.equal(
      cls(br('66:00:00:00:00:02 dev vxlan.calico dst 10.99.0.7 self permanent')),
      'fdb 66:00:00:00:00:02',
    );
    assert.equal(
      cls(ip('Deleted 4: vxlan.calico: <BROADCAST,MULTICAST> mtu 1450 qdisc noop state DOWN')),
      'device deleted',
    );
    assert.equal(
      cls(ip('4: vxlan.calico: <BROADCAST,MULTICAST> mtu 1450 qdisc noqueue state DOWN')),
      'device down',
    );
  });
  it('vxlan.calico with another MTU, MAC, VNI, local address, parent or port, or address is changed', () => {
    assert.equal(cls(vx('BROADCAST,MULTICAST,UP,LOWER_UP', '', 1300)), 'device changed');
    for (const more of [
      '5000 local 172.16.0.1 dev eth0 srcport 0 0 dstport 4789',
      '4096 local 172.16.0.2 dev eth0 srcport 0 0 dstport 4789',
      '4096 local 172.16.0.1 dev eth1 srcport 0 0 dstport 4789',
      '4096 local 172.16.0.1 dev eth0 srcport 0 0 dstport 8472',
    ])
      assert.equal(cls(vx('BROADCAST,MULTICAST,UP,LOWER_UP', more)), 'device changed', more);
    assert.equal(
      cls(ip('4: vxlan.calico: <UP,LOWER_UP> mtu 1450 qdisc noqueue \\    link/ether 66:aa:00:00:00:99 brd')),
      'device changed',
    );
    // Its last IPv4 address gone, the kernel flushes its ARP entries and routes as on down.
    assert.equal(
      cls(ip('Deleted 4: vxlan.calico    inet 10.10.0.0/32 scope global vxlan.calico')),
      'device down',
    );
    assert.equal(cls(ip('4: vxlan.calico    inet 10.99.0.1/24 scope global vxlan.calico')), 'device changed');
    // Not ours to police: other devices' addresses.
    assert.equal(cls(ip('Deleted 3: eth0    inet 172.16.0.1/16 scope global eth0')), undefined);
  });
  it("a workload's interface appearing asks for its route (the CNI race)", () => {
    assert.equal(
      cls(ip('9: cali1a2b3c4d5e6@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue')),
      'interface cali1a2b3c4d5e6',
    );
    assert.equal(cls(ip('9: cali0000000000f@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500')), undefined);
  });
  it("a route's nexthop details line (with -d, someone's nhid route) is not an event", () => {
    assert.equal(ip('\tnh_info id 5 via 10.20.0.1 dev vxlan.calico scope link proto 80 onlink'), undefined);
  });
  it('foreign objects are not our business', () => {
    assert.equal(cls(ip('Deleted 192.168.7.0/24 via 10.99.0.9 dev eth0 ')), undefined);
    assert.equal(cls(ip('10.99.0.9 dev eth0 lladdr 11:22:33:44:55:66 REACHABLE ')), undefined);
  });
});

describe('planRepairs', () => {
  it('gathers a burst: the routes of an interface that appeared, the entries named', () => {
    const { plan, deviceLost } = planRepairs(
      [
        ip('9: cali1a2b3c4d5e6@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500')!,
        ip('Deleted 10.20.0.1 dev vxlan.calico lladdr 66:00:00:00:00:02 PERMANENT ')!,
        br('Deleted 66:00:00:00:00:02 dev vxlan.calico dst 10.99.0.2 self permanent')!,
      ],
      WANT,
    );
    assert.ok(plan);
    assert.equal(deviceLost, false);
    assert.deepEqual([...plan.scopes], []);
    assert.equal(plan.device, undefined);
    assert.deepEqual(
      plan.routes.map((r) => r.dst),
      ['10.10.0.5/32'],
    );
    assert.deepEqual(plan.neighbours, [{ ip: '10.20.0.1', mac: '66:00:00:00:00:02' }]);
    assert.deepEqual(plan.fdb, [{ mac: '66:00:00:00:00:02', dst: '10.99.0.2' }]);
  });
  it('a deleted device implies its entries and routes: one device repair, not thousands of rewrites', () => {
    const { plan, deviceLost } = planRepairs(
      [
        // The FDB stream may overtake the link event.
        br('Deleted 10.99.0.2 dev vxlan.calico lladdr 66:00:00:00:00:02 NOARP PERMANENT ')!,
        vx('BROADCAST,MULTICAST')!,
        ip('Deleted 10.20.0.1 dev vxlan.calico lladdr 66:00:00:00:00:02 PERMANENT ')!,
        ip('Deleted 10.20.0.0/26 via 10.20.0.1 dev vxlan.calico proto 80 metric 1052 onlink ')!,
        ip('Deleted 10.10.0.5 dev cali1a2b3c4d5e6 scope link ')!,
        ip('Deleted 4: vxlan.calico: <BROADCAST,MULTICAST> mtu 1450 qdisc noop state DOWN')!,
      ],
      WANT,
    );
    assert.equal(plan?.device, 'deleted');
    assert.equal(deviceLost, true);
    assert.deepEqual([...(plan?.scopes ?? [])], []);
    assert.deepEqual([plan?.neighbours, plan?.fdb], [[], []]);
    // A workload route is not on the device: still rewritten on its own.
    assert.deepEqual(
      plan?.routes.map((r) => r.dst),
      ['10.10.0.5/32'],
    );
  });
  it('while the device is lost, later entry events wait for its repair; once it is up they count again', () => {
    const arpGone = ip('Deleted 10.20.0.1 dev vxlan.calico lladdr 66:00:00:00:00:02 PERMANENT ')!;
    const lost = planRepairs([arpGone], WANT, true);
    assert.equal(lost.plan, undefined);
    assert.equal(lost.deviceLost, true);
    const back = planRepairs(
      [vx('BROADCAST,MULTICAST', '', 1450, 'noop')!, vx('BROADCAST,MULTICAST,UP,LOWER_UP')!, arpGone],
      WANT,
      true,
    );
    assert.equal(back.deviceLost, false);
    assert.equal(back.plan?.device, undefined);
    assert.deepEqual(back.plan?.neighbours, [{ ip: '10.20.0.1', mac: '66:00:00:00:00:02' }]);
  });
  it('set down and up again within a burst is still a loss (the kernel flushed its entries)', () => {
    const { plan, deviceLost } = planRepairs(
      [vx('BROADCAST,MULTICAST')!, vx('BROADCAST,MULTICAST,UP,LOWER_UP')!],
      WANT,
    );
    assert.equal(plan?.device, 'down');
    assert.equal(deviceLost, false);
  });
  it('nothing of ours: no plan', () => {
    assert.equal(planRepairs([ip('Deleted 192.168.7.0/24 via 10.99.0.9 dev eth0 ')!], WANT).plan, undefined);
  });
});

describe('KernelWatch', () => {
  /** A watch on a fake source: `send` events or losses, then `settle` and read the plans asked for. */
  function watch() {
    let h: KernelEventHandlers | undefined;
    const plans: RepairPlan[] = [];
    const w = new KernelWatch(
      { start: (handlers) => (h = handlers), stop: () => undefined },
      {
        repair: (p) => {
          plans.push(p);
        },
      },
      () => WANT,
    );
    w.start();
    return {
      plans,
      send: (...es: (KernelEvent | undefined)[]) => {
        for (const e of es) h!.onEvent(e!);
      },
      lose: (stream: EventStream) => h!.onLost('No buffer space available', stream),
      settle: (ms = 150) => new Promise((r) => setTimeout(r, ms)),
      stop: () => w.stop(),
    };
  }
  const fdbGone = (i: number) =>
    br(
      `Deleted 10.99.0.${i} dev vxlan.calico lladdr 66:00:00:00:01:${(i % 256).toString(16).padStart(2, '0')} NOARP PERMANENT `,
    );

  it("a device's FDB flush, ahead of its link events, waits for them: one device repair", async () => {
    const t = watch();
    t.send(...Array.from({ length: 100 }, (_, i) => fdbGone(i)));
    await t.settle(60); // past the debounce, within the grace
    t.send(ip('Deleted 4: vxlan.calico: <BROADCAST,MULTICAST> mtu 1450 qdisc noop state DOWN'));
    await t.settle();
    t.stop();
    assert.deepEqual(
      t.plans.map((p) => [p.device, p.fdb.length]),
      [['deleted', 0]],
    );
  });

  it("after a loss, a stream's deletions up to the first echo of the repair are the old device's", async () => {
    const t = watch();
    t.send(vx('BROADCAST,MULTICAST')); // set down: the kernel flushes the ARP entries
    await t.settle();
    const arpGone = ip('Deleted 10.20.0.1 dev vxlan.calico lladdr 66:00:00:00:00:02 PERMANENT ');
    // Up again (the repair), then the flush's deletions, late on their own stream: nothing.
    t.send(vx('BROADCAST,MULTICAST,UP,LOWER_UP'), arpGone);
    await t.settle();
    assert.deepEqual(
      t.plans.map((p) => [p.device, p.neighbours.length]),
      [['down', 0]],
    );
    // The repair's own write, echoed: from here on a deletion is real.
    t.send(ip('10.20.0.1 dev vxlan.calico lladdr 66:00:00:00:00:02 PERMANENT '), arpGone);
    await t.settle();
    t.stop();
    assert.deepEqual(t.plans[1]?.neighbours, [{ ip: '10.20.0.1', mac: '66:00:00:00:00:02' }]);
  });

  it("a lost device's repair pauses the ARP and FDB streams until applied, then re-reads them", async () => {
    const calls: string[] = [];
    let h: KernelEventHandlers | undefined;
    let applied: () => void = () => {};
    const plans: RepairPlan[] = [];
    const w = new KernelWatch(
      {
        start: (handlers) => (h = handlers),
        stop: () => undefined,
        pause: (streams) => calls.push(`pause ${streams.join(' ')}`),
        resume: () => calls.push('resume'),
      },
      {
        repair: (p) => {
          plans.push(p);
          return new Promise<void>((r) => (applied = r));
        },
      },
      () => WANT,
    );
    w.start();
    h!.onEvent(ip('Deleted 4: vxlan.calico: <BROADCAST,MULTICAST> mtu 1450 qdisc noop state DOWN')!);
    await new Promise((r) => setTimeout(r, 60));
    assert.deepEqual(calls, ['pause arp fdb']);
    applied();
    await new Promise((r) => setTimeout(r, 60));
    w.stop();
    assert.deepEqual(calls, ['pause arp fdb', 'resume']);
    assert.deepEqual(
      plans.map((p) => [p.device, [...p.scopes]]),
      [
        ['deleted', []],
        [undefined, ['vxlan']],
      ],
    );
  });

  it('lost events: what their stream covers is re-read', async () => {
    const t = watch();
    t.lose('arp');
    await t.settle();
    t.lose('links');
    await t.settle();
    t.stop();
    assert.deepEqual(
      t.plans.map((p) => [...p.scopes].sort()),
      [['vxlan'], ['routes', 'vxlan']],
    );
  });
});
