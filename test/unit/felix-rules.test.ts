// Felix's rule set where it changes behaviour, from feed updates through the calculation graph and
// the flow evaluator behind `fedmesh explain` (one meaning in both): profiles after the tiers, a
// Tier's defaultAction, notSelector-only rules, and the encapsulation guard.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ClusterView, evaluateDirection, type Flow } from '../../agent/calc/flow-evaluator.ts';
import { CalculationGraph } from '../../agent/calc/graph.ts';
import type { DataplaneMessage } from '../../agent/calc/messages.ts';
import { vxlanMtu } from '../../agent/dataplane/vxlan.ts';
import { parseIp4 } from '../../model/net.ts';
import { compilePolicy } from '../../policy/compiler.ts';
import type { Update } from '../../proto/service.ts';
import { toUpdate } from '../../syncer/convert.ts';
import {
  deletion,
  hostEndpoint,
  namespace,
  type PolicyOpts,
  policy,
  profile,
  serviceAccount,
  tier,
  wep,
  wepKey,
} from '../helpers/feed-builders.ts';

const DB = {
  node: 'a-node1',
  namespace: 'shop',
  pod: 'db-1',
  ips: ['10.10.0.6'],
  labels: { app: 'db' },
};
const FE = { node: 'a-node1', namespace: 'shop', pod: 'fe-1', ips: ['10.10.0.5'], labels: { app: 'fe' } };
const WORLD: Update[] = [namespace('shop'), serviceAccount('shop', 'default'), wep(DB), wep(FE)];

/** The last message matching (Array.prototype.findLast is ES2023, beyond this project's lib). */
function lastOf<T>(xs: readonly T[], pred: (x: T) => boolean): T | undefined {
  for (let i = xs.length - 1; i >= 0; i--) if (pred(xs[i]!)) return xs[i];
  return undefined;
}

function graph() {
  const out: DataplaneMessage[] = [];
  const g = new CalculationGraph({ nodeName: 'a-node1', localCluster: 'a' }, { send: (m) => out.push(m) });
  const feed = (...us: Update[]) => {
    for (const u of us) g.onUpdate(u);
  };
  return { g, out, feed };
}

/** The verdict of one direction for a flow to/from DB, as explain computes it. */
function verdict(
  updates: Update[],
  direction: 'ingress' | 'egress',
  peer: string,
  port: number,
  protocol = 6,
) {
  const view = new ClusterView('a', [...WORLD, ...updates]);
  assert.deepEqual(view.refused, []);
  const self = view.peer(parseIp4('10.10.0.6'));
  const other = view.peer(parseIp4(peer));
  const flow: Flow = {
    src: direction === 'ingress' ? other : self,
    dst: direction === 'ingress' ? self : other,
    protocol,
    dstPort: port,
  };
  return evaluateDirection({
    direction,
    endpointLabels: view.labels(wepKey(DB))!,
    policies: view.policies,
    index: view.index,
    flow,
    tierOrders: view.tierOrders,
    passTiers: view.passTiers,
    profiles: view.profilesOf(wepKey(DB)),
  });
}

const dbIn = (o: Partial<PolicyOpts>): Update =>
  policy({ name: 'db-in', namespace: 'shop', selector: "app == 'db'", ingress: [], ...o });

describe('profiles', () => {
  it('the local endpoints name their profiles; a local profile carries its rules, a remote one never does', () => {
    const { out, feed } = graph();
    feed(...WORLD);
    const ep = lastOf(out, (m) => m.kind === 'EndpointUpdate' && m.endpoint.key === wepKey(DB));
    assert.ok(ep?.kind === 'EndpointUpdate');
    assert.deepEqual(ep.endpoint.profiles, ['kns.shop', 'ksa.shop.default']);
    const kns = lastOf(out, (m) => m.kind === 'ActiveProfileUpdate' && m.profile.id === 'kns.shop');
    assert.ok(kns?.kind === 'ActiveProfileUpdate');
    assert.deepEqual(
      [kns.profile.inbound.map((r) => r.action), kns.profile.outbound.map((r) => r.action)],
      [['allow'], ['allow']],
    );
    // A remote cluster's profile with rules (a malformed feed): labels only, the rules are ignored.
    out.length = 0;
    feed(profile('kns.x', {}, { cluster: 'b' }, { ingress: [{ action: 'Deny' }] }));
    assert.deepEqual(
      out.filter((m) => m.kind === 'ActiveProfileUpdate'),
      [],
    );
  });

  it('a named profile the feed has not sent is active with no rules, so "no profile matched" drops', () => {
    const { out, feed } = graph();
    feed(wep({ ...DB, profiles: ['missing'] }));
    const p = out.find((m) => m.kind === 'ActiveProfileUpdate');
    assert.deepEqual(p, {
      kind: 'ActiveProfileUpdate',
      profile: { id: 'missing', inbound: [], outbound: [] },
    });
    assert.equal(
      verdict([wep({ ...DB, profiles: ['missing'] })], 'ingress', '10.10.0.5', 80).by,
      'no-profile',
    );
  });

  it("the last endpoint naming a profile going away removes it, and unreferences its rules' sets", () => {
    const { out, feed } = graph();
    feed(
      namespace('shop'),
      profile('guarded', {}, undefined, {
        ingress: [{ action: 'Allow', source: { selector: "app == 'fe'" } }],
      }),
      wep(FE),
      wep({ ...DB, profiles: ['guarded'] }),
    );
    const set = out.find((m) => m.kind === 'IPSetUpdate');
    assert.ok(set?.kind === 'IPSetUpdate', 'the profile rule selector is an ipset');
    assert.deepEqual(set.members, ['10.10.0.5/32']);
    out.length = 0;
    feed(deletion(wep({ ...DB, profiles: ['guarded'] })));
    assert.deepEqual(
      out
        .filter((m) => m.kind === 'ActiveProfileRemove')
        .map((m) => m.kind === 'ActiveProfileRemove' && m.id),
      ['guarded'],
    );
    assert.ok(out.some((m) => m.kind === 'IPSetRemove' && m.id === set.id));
  });

  it('explain: after the tiers, the profiles decide; none allowing denies', () => {
    assert.equal(verdict([], 'ingress', '10.10.0.5', 80).by, 'profile');
    const denied = verdict([wep({ ...DB, profiles: ['ksa.shop.default'] })], 'ingress', '10.10.0.5', 80);
    assert.equal(denied.decision, 'deny');
    assert.equal(denied.by, 'no-profile');
    assert.match(denied.reason, /no profile of the endpoint allowed it/);
  });

  it('the syncer gives a local namespace an allow-all kns profile, and a remote one labels only', () => {
    const ns = { kind: 'Namespace' as const, name: 'shop', labels: { team: 'web' } };
    const local = toUpdate({ cluster: 'a', remote: false }, ns as never);
    const remote = toUpdate({ cluster: 'b', remote: true }, ns as never);
    assert.ok(local?.body.case === 'profile' && remote?.body.case === 'profile');
    assert.equal(local.body.value.inboundRules.length, 1);
    assert.equal(local.body.value.outboundRules.length, 1);
    assert.equal(remote.body.value.inboundRules.length, 0);
    assert.equal(remote.body.value.outboundRules.length, 0);
    assert.equal(remote.body.value.labels['pcns.team'], 'web');
  });
});

describe("a Tier's defaultAction", () => {
  const quarantine = dbIn({
    name: 'q',
    tier: 'platform',
    ingress: [{ action: 'Deny', protocol: 'TCP', destination: { ports: [23] } }],
  });

  it('Deny (the default): the end of the tier drops', () => {
    const r = verdict([tier('platform', 10), quarantine], 'ingress', '10.10.0.5', 80);
    assert.equal(r.decision, 'deny');
    assert.equal(r.by, 'end-of-tier');
  });

  it('Pass: the end of the tier hands on to the next tier, then the profiles', () => {
    const r = verdict([tier('platform', 10, 'Pass'), quarantine], 'ingress', '10.10.0.5', 80);
    assert.equal(r.decision, 'allow');
    assert.equal(r.by, 'profile');
    assert.deepEqual(
      r.tiers.map((t) => t.outcome),
      ['end-of-tier-pass'],
    );
    assert.equal(
      verdict([tier('platform', 10, 'Pass'), quarantine], 'ingress', '10.10.0.5', 23).decision,
      'deny',
    );
  });

  it('reaches the endpoint as the calc graph sends it, and a change of it re-renders', () => {
    const { out, feed } = graph();
    feed(...WORLD, tier('platform', 10, 'Pass'), quarantine);
    const last = () => lastOf(out, (m) => m.kind === 'EndpointUpdate' && m.endpoint.key === wepKey(DB));
    const ep = last();
    assert.ok(ep?.kind === 'EndpointUpdate');
    assert.deepEqual(ep.endpoint.ingress, [
      { tier: 'platform', policies: ['platform/shop/q'], defaultAction: 'pass' },
    ]);
    feed(tier('platform', 10, 'Deny'));
    const again = last();
    assert.ok(again?.kind === 'EndpointUpdate');
    assert.deepEqual(again.endpoint.ingress, [{ tier: 'platform', policies: ['platform/shop/q'] }]);
  });
});

describe('notSelector', () => {
  const gnp = (notSelector: string, namespace?: string) =>
    policy({
      name: 'not-fe',
      ...(namespace ? { namespace } : {}),
      selector: "app == 'db'",
      ingress: [{ action: 'Allow', source: { notSelector } }],
    });

  it('alone in a GlobalNetworkPolicy rule: only a negated set, so outside addresses match (Felix)', () => {
    const u = gnp("app == 'fe'");
    assert.ok(u.body.case === 'policy');
    const [r] = compilePolicy(u.body.value).inbound;
    assert.deepEqual(r!.src.ipSets, []);
    assert.equal(r!.src.notIpSets.length, 1);
    assert.equal(verdict([gnp("app == 'fe'")], 'ingress', '203.0.113.7', 80).decision, 'allow');
    assert.equal(verdict([gnp("app == 'fe'")], 'ingress', '10.10.0.5', 80).decision, 'deny');
  });

  it('in a namespaced policy: limited to the namespace first, so an outside address does not match', () => {
    const u = gnp("app == 'fe'", 'shop');
    assert.ok(u.body.case === 'policy');
    const [r] = compilePolicy(u.body.value).inbound;
    assert.equal(r!.src.ipSets.length, 1, 'the namespace set');
    assert.equal(r!.src.notIpSets.length, 1, 'the negated notSelector set');
    assert.equal(verdict([gnp("app == 'fe'", 'shop')], 'ingress', '203.0.113.7', 80).decision, 'deny');
  });
});

describe('encapsulation from a workload', () => {
  it('VXLAN (UDP 4789) and IP-in-IP leaving a workload are denied before any policy; other UDP is not', () => {
    const vx = verdict([], 'egress', '192.168.100.12', 4789, 17);
    assert.equal(vx.decision, 'deny');
    assert.equal(vx.by, 'encap-guard');
    assert.equal(verdict([], 'egress', '192.168.100.12', 0, 4).by, 'encap-guard');
    assert.equal(verdict([], 'egress', '192.168.100.12', 4790, 17).decision, 'allow');
    // Into the workload, VXLAN is its ingress policy's to judge.
    assert.equal(verdict([], 'ingress', '192.168.100.12', 4789, 17).decision, 'allow');
  });
});

describe('host endpoints', () => {
  const hep = (o: { name: string; node: string; iface: string; cluster?: string }) =>
    hostEndpoint({
      name: o.name,
      node: o.node,
      interfaceName: o.iface,
      ips: ['192.168.100.11'],
      labels: { role: 'node' },
      ...(o.cluster ? { cluster: o.cluster } : {}),
    });
  const gnp = (name: string, extra: Partial<PolicyOpts>) =>
    policy({ name, selector: "role == 'node'", types: ['Ingress'], ingress: [{ action: 'Deny' }], ...extra });

  it("this node's host endpoint gets its policies split by kind; others' are members only", () => {
    const { out, feed } = graph();
    feed(
      gnp('normal', {}),
      gnp('fwd', { applyOnForward: true }),
      gnp('pre', { applyOnForward: true, preDNAT: true }),
      gnp('untracked', { applyOnForward: true, doNotTrack: true }),
      hep({ name: 'mine', node: 'a-node1', iface: 'eth0' }),
      hep({ name: 'other', node: 'a-node2', iface: 'eth0' }),
      hep({ name: 'remote', node: 'a-node1', iface: 'eth0', cluster: 'b' }),
    );
    const heps = out.filter((m) => m.kind === 'HostEndpointUpdate');
    assert.equal(heps.length, 1);
    assert.ok(heps[0]?.kind === 'HostEndpointUpdate');
    const e = heps[0].endpoint;
    const keys = (ts: { policies: string[] }[]) => ts.flatMap((t) => t.policies);
    assert.deepEqual(keys(e.ingress), ['default/fwd', 'default/normal']);
    assert.deepEqual(keys(e.forwardIngress), ['default/fwd']);
    assert.deepEqual(keys(e.preDnatIngress), ['default/pre']);
    assert.deepEqual(keys(e.untrackedIngress), ['default/untracked']);
    // The policies are active once, shared by workloads and host endpoints.
    const removes = () => out.filter((m) => m.kind === 'ActivePolicyRemove').length;
    out.length = 0;
    feed(deletion(hep({ name: 'mine', node: 'a-node1', iface: 'eth0' })));
    assert.equal(removes(), 4);
    assert.ok(out.some((m) => m.kind === 'HostEndpointRemove'));
  });

  it('pre-DNAT and untracked policies never apply to workloads', () => {
    const { out, feed } = graph();
    feed(
      ...WORLD,
      policy({
        name: 'pre',
        selector: 'all()',
        applyOnForward: true,
        preDNAT: true,
        ingress: [{ action: 'Deny' }],
      }),
    );
    const ep = lastOf(out, (m) => m.kind === 'EndpointUpdate' && m.endpoint.key === wepKey(DB));
    assert.ok(ep?.kind === 'EndpointUpdate');
    assert.deepEqual(ep.endpoint.ingress, []);
  });
});

describe('explain: a host endpoint as the kernel walks it', () => {
  const HEP = hostEndpoint({
    name: 'n1-eth0',
    node: 'a-node1',
    interfaceName: 'eth0',
    ips: ['192.168.100.11'],
    labels: { role: 'node' },
  });
  const hepKey = 'hostendpoint/n1-eth0';
  const toHost = (updates: Update[], port: number, protocol = 6) => {
    const view = new ClusterView('a', [...WORLD, HEP, ...updates]);
    assert.deepEqual(view.refused, []);
    return evaluateDirection({
      direction: 'ingress',
      endpointLabels: view.labels(hepKey)!,
      policies: view.policies,
      index: view.index,
      flow: {
        src: view.peer(parseIp4('203.0.113.7')),
        dst: view.peer(parseIp4('192.168.100.11')),
        protocol,
        dstPort: port,
      },
      profiles: view.profilesOf(hepKey),
      host: true,
    });
  };
  const node = (name: string, o: Partial<PolicyOpts>) => policy({ name, selector: "role == 'node'", ...o });

  it('failsafe first, then untracked and pre-DNAT policies, then the filter policies and profiles', () => {
    assert.equal(toHost([], 22).by, 'failsafe');
    assert.equal(toHost([], 8080).by, 'no-profile', 'no policy, no profile: denied');
    const untracked = node('u', {
      applyOnForward: true,
      doNotTrack: true,
      ingress: [{ action: 'Allow', protocol: 'TCP', destination: { ports: [8080] } }],
    });
    const r = toHost([untracked], 8080);
    assert.equal(r.decision, 'allow');
    assert.match(r.reason, /untracked \(raw table\)/);
    const preDnat = node('p', {
      applyOnForward: true,
      preDNAT: true,
      ingress: [{ action: 'Deny', protocol: 'TCP' }],
    });
    assert.match(toHost([preDnat], 8080).reason, /pre-DNAT \(mangle table\)/);
    assert.equal(toHost([preDnat], 22).by, 'failsafe', 'a pre-DNAT deny cannot lock out SSH');
  });
});

describe('VXLAN MTU', () => {
  it("is the smallest MTU of the host interfaces Felix's pattern matches, minus 50; else the parent's", () => {
    const links = [
      { name: 'eth0', mtu: 9000 },
      { name: 'ens3', mtu: 1500 },
      { name: 'cali1234567890a', mtu: 1000 }, // workload interfaces do not count
      { name: 'docker0', mtu: 1200 },
    ];
    assert.equal(vxlanMtu(links, { mtu: 9000 }), 1450);
    assert.equal(vxlanMtu([{ name: 'veth-x', mtu: 1400 }], { mtu: 1400 }), 1350, 'no match: the parent');
  });
});
