// The dataplane driver's contract, with recording fakes in place of the kernel drivers (the real
// drivers are covered against the kernel in test/integration and test/e2e): nothing is written
// before the first InSync; writes follow Felix's order; a failed pass is retried, not abandoned.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DataplaneMessage, EndpointKey, IpSetId, PolicyKey } from '../../agent/calc/messages.ts';
import { Dataplane } from '../../agent/dataplane/dataplane.ts';
import type { Cidr, Ip4, Mac } from '../../model/net.ts';

function recorder(failFirst?: string) {
  const calls: string[] = [];
  let failures = failFirst ? 1 : 0;
  const rec = (what: string) => {
    calls.push(what);
    if (failures > 0 && what === failFirst) {
      failures--;
      throw new Error(`injected failure in ${what}`);
    }
  };
  const drivers = {
    ipsets: {
      apply: async (d: ReadonlyMap<string, unknown>) => rec(`ipset.apply:${[...d.keys()].sort().join(',')}`),
      destroyStale: async () => rec('ipset.destroyStale'),
    },
    iptables: { syncTable: async (t: string) => rec(`iptables.${t}`) },
    links: {
      findDeviceWithAddress: async () => ({ name: 'eth0', mtu: 1500 }),
      interfaceMtus: async () => [
        { name: 'eth0', mtu: 1500 },
        { name: 'cali0123456789a', mtu: 1400 },
      ],
      ensureVxlan: async (s: { mtu?: number }) => rec(`vxlan.ensure:mtu=${s.mtu}`),
      syncNeighbours: async (_d: string, n: readonly unknown[]) => rec(`neigh:${n.length}`),
      syncFdb: async (_d: string, f: readonly unknown[]) => rec(`fdb:${f.length}`),
      syncRoutes: async (r: readonly { dst: string }[]) => rec(`routes:${r.map((x) => x.dst).join(',')}`),
      rewrite: async (o: { routes: readonly { dst: string }[] }) =>
        rec(`rewrite:${o.routes.map((x) => x.dst).join(',')}`),
    },
  };
  return { calls, drivers };
}

const msgs: DataplaneMessage[] = [
  {
    kind: 'HostConfigUpdate',
    config: { node: 'n1', nodeIp: '192.168.0.1' as Ip4, tunnelIp: '10.0.1.0' as Ip4 },
  },
  { kind: 'IPSetUpdate', id: 's:abc' as IpSetId, type: 'hash:net', members: ['10.0.2.5/32'] },
  {
    kind: 'VTEPUpdate',
    vtep: {
      node: 'n2',
      cluster: 'a',
      nodeIp: '192.168.0.2' as Ip4,
      tunnelIp: '10.0.2.0' as Ip4,
      mac: '66:00:00:00:00:02' as Mac,
    },
  },
  { kind: 'RouteUpdate', route: { dst: '10.0.2.0/26' as Cidr, node: 'n2', cluster: 'a' } },
  {
    kind: 'ActivePolicyUpdate',
    policy: { key: 'default/p' as PolicyKey, displayName: 'p', inbound: [], outbound: [] },
  },
  {
    kind: 'EndpointUpdate',
    endpoint: {
      key: 'n1/k8s/ns/pod/eth0' as EndpointKey,
      interfaceName: 'cali0123456789a',
      ipv4Nets: ['10.0.1.5/32' as Cidr],
      profiles: [],
      ingress: [],
      egress: [],
    },
  },
];

test('nothing is written to the kernel before the first InSync', async () => {
  const { calls, drivers } = recorder();
  const dp = new Dataplane(drivers, { applyDelayMs: 1 });
  dp.onMessages(msgs);
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(calls, []);
  const applied = dp.whenApplied();
  dp.onMessages([{ kind: 'InSync' }]);
  await applied;
  assert.ok(calls.length > 0);
  dp.stop();
});

test('writes follow the dependency order: ipsets before iptables, VXLAN before routes, ipset deletes last', async () => {
  const { calls, drivers } = recorder();
  const dp = new Dataplane(drivers, { applyDelayMs: 1 });
  const applied = dp.whenApplied();
  dp.onMessages([...msgs, { kind: 'InSync' }]);
  await applied;
  // The two lines (ipsets → tables; device → FDB/ARP → routes) run side by side: each keeps its order.
  const tables = calls.filter((c) => c.startsWith('ipset') || c.startsWith('iptables'));
  assert.deepEqual(tables, [
    'ipset.apply:cali40all-ipam-pools,cali40all-vxlan-net,cali40masq-ipam-pools,cali40s:abc',
    'iptables.filter',
    'iptables.nat',
    'iptables.mangle',
    'iptables.raw',
    'ipset.destroyStale',
  ]);
  const links = calls.filter((c) => !c.startsWith('ipset') && !c.startsWith('iptables'));
  assert.deepEqual(links, ['vxlan.ensure:mtu=1450', 'fdb:1', 'neigh:1', 'routes:10.0.1.5/32,10.0.2.0/26']);
  assert.equal(calls.at(-1), 'ipset.destroyStale', 'stale sets go once no rule can name them');
  // A second pass with nothing new writes nothing.
  calls.length = 0;
  const again = dp.whenApplied();
  await again;
  assert.deepEqual(calls, []);
  dp.stop();
});

test('a new vxlan.calico: the other routes are synced first, then the device written whole, with no read-back', async () => {
  const { calls, drivers } = recorder();
  const syncs: { dsts: string[]; apartFrom?: string }[] = [];
  const links = {
    ...drivers.links,
    ensureVxlan: async () => {
      calls.push('vxlan.ensure');
      return { created: true, ifindex: 7 };
    },
    syncRoutes: async (r: readonly { dst: string }[], o?: { apartFrom?: string }) => {
      syncs.push({ dsts: r.map((x) => x.dst), apartFrom: o?.apartFrom });
      calls.push(`routes:${r.map((x) => x.dst).join(',')}`);
    },
  };
  const dp = new Dataplane({ ...drivers, links }, { applyDelayMs: 1 });
  const applied = dp.whenApplied();
  dp.onMessages([...msgs, { kind: 'InSync' }]);
  await applied;
  const linkCalls = calls.filter((c) => !c.startsWith('ipset') && !c.startsWith('iptables'));
  // The workload's route while the table holds none of the device's; then FDB, ARP and the block's
  // route via the device in one rewrite; no sync of every route after it.
  assert.deepEqual(linkCalls, ['vxlan.ensure', 'routes:10.0.1.5/32', 'rewrite:10.0.2.0/26']);
  assert.deepEqual(syncs, [{ dsts: ['10.0.1.5/32'], apartFrom: 'vxlan.calico' }]);
  // Anything new is synced as usual: a workload's second address.
  calls.length = 0;
  const again = dp.whenApplied();
  dp.onMessages([
    {
      kind: 'EndpointUpdate',
      endpoint: {
        ...(msgs[5] as Extract<DataplaneMessage, { kind: 'EndpointUpdate' }>).endpoint,
        ipv4Nets: ['10.0.1.5/32' as Cidr, '10.0.1.6/32' as Cidr],
      },
    },
  ]);
  await again;
  assert.deepEqual(
    calls.filter((c) => c.startsWith('routes')),
    ['routes:10.0.1.5/32,10.0.1.6/32,10.0.2.0/26'],
  );
  dp.stop();
});

test("a cold start's ipset fill runs below the agent's priority only while the tables load beside it", async () => {
  for (const stages of [true, false]) {
    const { calls, drivers } = recorder();
    const priority: boolean[] = [];
    const ipsets = { ...drivers.ipsets, lowerBulkPriority: (on: boolean) => priority.push(on) };
    const iptables = { ...drivers.iptables, stagesBesideSets: stages };
    const dp = new Dataplane({ ...drivers, ipsets, iptables }, { applyDelayMs: 1 });
    assert.deepEqual(priority, [stages], 'set as the dataplane starts');
    const applied = dp.whenApplied();
    dp.onMessages([...msgs, { kind: 'InSync' }]);
    await applied;
    // From the first programmed pass on, a bulk fill is a repair the node waits for.
    assert.deepEqual(priority, [stages, false]);
    assert.ok(calls.length > 0);
    dp.stop();
  }
});

test('a failed pass leaves the agent unhealthy and is retried until it succeeds', async () => {
  const { calls, drivers } = recorder('iptables.filter');
  const dp = new Dataplane(drivers, { applyDelayMs: 1 });
  const applied = dp.whenApplied();
  dp.onMessages([...msgs, { kind: 'InSync' }]);
  await applied;
  assert.equal(dp.stats.failures, 1);
  assert.equal(
    calls.filter((c) => c === 'iptables.filter').length,
    2,
    'filter table written again on the retry',
  );
  assert.ok(dp.healthy);
  dp.stop();
});

test('a members-only ipset change is written beside the tables; a new set still goes first', async () => {
  const events: string[] = [];
  let membersOnly = false;
  const endpoint = (msgs[5] as Extract<DataplaneMessage, { kind: 'EndpointUpdate' }>).endpoint;
  const slow = (what: string) => async (_d?: unknown, opts?: { onWrite?: () => void }) => {
    events.push(`${what} start`);
    opts?.onWrite?.();
    await new Promise((r) => setTimeout(r, 20));
    events.push(`${what} end`);
  };
  const { drivers } = recorder();
  const dp = new Dataplane(
    {
      ...drivers,
      ipsets: { ...drivers.ipsets, apply: slow('ipset'), membersOnly: () => membersOnly },
      iptables: { syncTable: async (t: string) => (t === 'filter' ? slow('filter')() : undefined) },
    },
    { applyDelayMs: 1 },
  );
  const first = dp.whenApplied();
  dp.onMessages([...msgs, { kind: 'InSync' }]);
  await first;
  assert.deepEqual(events, ['ipset start', 'ipset end', 'filter start', 'filter end'], 'sets created first');
  // One member more, and the endpoint's chain changes with it.
  events.length = 0;
  membersOnly = true;
  const second = dp.whenApplied();
  dp.onMessages([
    { kind: 'IPSetDelta', id: 's:abc' as IpSetId, added: ['10.0.2.6/32'], removed: [] },
    { kind: 'EndpointUpdate', endpoint: { ...endpoint, ipv4Nets: [] } },
  ]);
  await second;
  assert.deepEqual(events.slice(0, 2), ['ipset start', 'filter start'], 'written side by side');
  dp.stop();
});
