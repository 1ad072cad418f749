// The flow evaluator: Calico's policy semantics for one flow, from feed Updates through
// compilePolicy and a LabelIndex (a ClusterView of local cluster `a`, with remote cluster `b`).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ClusterView,
  type Direction,
  type DirectionResult,
  describeRule,
  evaluateDirection,
  type Flow,
  matchRule,
  protocolNumber,
} from '../../agent/calc/flow-evaluator.ts';
import { LabelIndex } from '../../agent/calc/label-index.ts';
import { type Ip4, parseIp4 } from '../../model/net.ts';
import { compilePolicy } from '../../policy/compiler.ts';
import type { Update } from '../../proto/service.ts';
import {
  namespace,
  networkSet,
  type PolicyOpts,
  policy,
  type RuleInit,
  tier,
  wep,
  wepKey,
} from '../helpers/feed-builders.ts';

// --- the world ------------------------------------------------------------------------------

const FE = {
  node: 'a-node1',
  namespace: 'shop',
  pod: 'frontend-1',
  ips: ['10.10.0.5'],
  labels: { app: 'frontend' },
};
const DB = {
  node: 'a-node1',
  namespace: 'shop',
  pod: 'db-1',
  ips: ['10.10.0.6'],
  labels: { app: 'db' },
  ports: [
    { name: 'pg', port: 5432 },
    { name: 'metrics', port: 9187 },
    { name: 'dns', protocol: 'UDP', port: 53 },
  ],
};
/** Same labels as FE, other namespace. */
const DEV_FE = {
  node: 'a-node2',
  namespace: 'dev',
  pod: 'frontend-9',
  ips: ['10.10.0.7'],
  labels: { app: 'frontend' },
};
const REMOTE_DB = {
  cluster: 'b',
  node: 'b-node1',
  namespace: 'shop',
  pod: 'db-9',
  ips: ['10.20.0.5'],
  labels: { app: 'db' },
};
type End = typeof FE | typeof DB | typeof DEV_FE | typeof REMOTE_DB | string;

const WORLD: Update[] = [
  namespace('shop', { team: 'web' }),
  namespace('dev', { team: 'dev' }),
  namespace('shop', { team: 'web' }, { cluster: 'b' }),
  wep(FE),
  wep(DB),
  wep(DEV_FE),
  wep(REMOTE_DB),
  networkSet({ name: 'corp', namespace: 'shop', nets: ['192.168.50.0/24'], labels: { role: 'corp' } }),
  networkSet({ name: 'partners', nets: ['192.168.60.0/24'], labels: { role: 'partner' } }),
  // Tier orders: lower first; `default` is 1,000,000; a tier without an order comes last.
  tier('security', 100),
  tier('zeta', 10),
  tier('alpha', 20),
];

const ipOf = (e: End): Ip4 => parseIp4(typeof e === 'string' ? e : e.ips[0]!);

/** `5432/tcp`, `53/udp`, `icmp/8/0`, `icmp/8`. */
function flowOf(view: ClusterView, from: End, to: End, port: string, srcPort?: number): Flow {
  const [a, b, c] = port.split('/');
  const f: Flow = { src: view.peer(ipOf(from)), dst: view.peer(ipOf(to)), protocol: 0 };
  if (a === 'icmp') {
    f.protocol = 1;
    f.icmp = c === undefined ? { type: Number(b) } : { type: Number(b), code: Number(c) };
  } else {
    f.protocol = protocolNumber(b!)!;
    f.dstPort = Number(a);
  }
  if (srcPort !== undefined) f.srcPort = srcPort;
  return f;
}

interface Case {
  name: string;
  policies: PolicyOpts[];
  direction: Direction;
  from: End;
  to: End;
  port: string;
  srcPort?: number;
  expect: {
    decision: 'allow' | 'deny';
    by: DirectionResult['by'];
    /** `policy#rule` of the deciding (or last-tier passing) rule. */
    rule?: string;
    /** Substring of the reason. */
    reason?: string;
    /** Tier outcomes in order. */
    tiers?: string[];
    notes?: number;
  };
}

function run(c: Pick<Case, 'policies' | 'direction' | 'from' | 'to' | 'port' | 'srcPort'>): DirectionResult {
  const view = new ClusterView('a', [...WORLD, ...c.policies.map(policy)]);
  assert.deepEqual(view.refused, []);
  const self = c.direction === 'egress' ? c.from : c.to;
  assert.ok(typeof self !== 'string', 'the endpoint whose policies apply is a workload endpoint');
  const labels = view.labels(wepKey(self));
  assert.ok(labels, 'endpoint known');
  return evaluateDirection({
    direction: c.direction,
    endpointLabels: labels,
    policies: view.policies,
    index: view.index,
    tierOrders: view.tierOrders,
    passTiers: view.passTiers,
    profiles: view.profilesOf(wepKey(self)),
    flow: flowOf(view, c.from, c.to, c.port, c.srcPort),
  });
}

/** Ingress policy on the db pods with the given rules. */
const dbIngress = (ingress: RuleInit[], extra: Partial<PolicyOpts> = {}): PolicyOpts => ({
  name: 'db-in',
  namespace: 'shop',
  selector: "app == 'db'",
  ingress,
  ...extra,
});
/** Egress policy on the frontends with the given rules. */
const feEgress = (egress: RuleInit[], extra: Partial<PolicyOpts> = {}): PolicyOpts => ({
  name: 'fe-out',
  namespace: 'shop',
  selector: "app == 'frontend'",
  types: ['Egress'],
  egress,
  ...extra,
});
const ALLOW_ALL: RuleInit = { action: 'Allow' };
const fromFrontend: RuleInit = {
  action: 'Allow',
  protocol: 'TCP',
  source: { selector: "app == 'frontend'" },
};

const IN = { direction: 'ingress' as const, from: FE, to: DB, port: '5432/tcp' };
const OUT = { direction: 'egress' as const, from: FE, to: DB, port: '5432/tcp' };

const CASES: Case[] = [
  // --- defaults
  {
    name: "no policy at all: the namespace's kns profile allows (Kubernetes default)",
    policies: [],
    ...IN,
    expect: {
      decision: 'allow',
      by: 'profile',
      reason: 'no policy selects the endpoint in this direction; allowed by profile kns.shop ingress rule 0',
    },
  },
  {
    name: 'a policy for another endpoint does not apply',
    policies: [dbIngress([], { selector: "app == 'cache'" })],
    ...IN,
    expect: { decision: 'allow', by: 'profile' },
  },
  {
    name: 'an egress-only policy does not apply to ingress',
    policies: [dbIngress([], { types: ['Egress'] })],
    ...IN,
    expect: { decision: 'allow', by: 'profile' },
  },
  {
    name: 'a policy without rules selects: end of tier denies',
    policies: [dbIngress([])],
    ...IN,
    expect: {
      decision: 'deny',
      by: 'end-of-tier',
      reason: 'end of tier default: denied (policies selected the endpoint, none allowed)',
      tiers: ['end-of-tier'],
    },
  },
  {
    name: 'no rule matches: end of tier denies',
    policies: [dbIngress([{ action: 'Allow', protocol: 'UDP' }])],
    ...IN,
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  // --- actions and their order
  {
    name: 'allow',
    policies: [dbIngress([fromFrontend])],
    ...IN,
    expect: {
      decision: 'allow',
      by: 'rule',
      rule: 'shop/db-in#0',
      reason: 'allowed by shop/db-in ingress rule 0 (tier default)',
      tiers: ['allow'],
    },
  },
  {
    name: 'deny before allow',
    policies: [dbIngress([{ action: 'Deny' }, fromFrontend])],
    ...IN,
    expect: { decision: 'deny', by: 'rule', rule: 'shop/db-in#0' },
  },
  {
    name: 'allow before deny',
    policies: [dbIngress([fromFrontend, { action: 'Deny' }])],
    ...IN,
    expect: { decision: 'allow', by: 'rule', rule: 'shop/db-in#0' },
  },
  {
    name: 'log carries on to the next rule',
    policies: [dbIngress([{ action: 'Log' }, fromFrontend])],
    ...IN,
    expect: { decision: 'allow', by: 'rule', rule: 'shop/db-in#1' },
  },
  {
    name: 'log alone: end of tier denies',
    policies: [dbIngress([{ action: 'Log' }])],
    ...IN,
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'a non-matching deny is skipped',
    policies: [dbIngress([{ action: 'Deny', protocol: 'UDP' }, ALLOW_ALL])],
    ...IN,
    expect: { decision: 'allow', by: 'rule', rule: 'shop/db-in#1' },
  },
  // --- policies in a tier, by order
  {
    name: 'lower order first: deny wins',
    policies: [
      dbIngress([{ action: 'Deny' }], { name: 'p1', order: 10 }),
      dbIngress([ALLOW_ALL], { name: 'p2', order: 20 }),
    ],
    ...IN,
    expect: { decision: 'deny', by: 'rule', rule: 'shop/p1#0' },
  },
  {
    name: 'lower order first: allow wins',
    policies: [
      dbIngress([{ action: 'Deny' }], { name: 'p1', order: 30 }),
      dbIngress([ALLOW_ALL], { name: 'p2', order: 20 }),
    ],
    ...IN,
    expect: { decision: 'allow', by: 'rule', rule: 'shop/p2#0' },
  },
  {
    name: 'no order sorts after an order',
    policies: [
      dbIngress([{ action: 'Deny' }], { name: 'aa' }),
      dbIngress([ALLOW_ALL], { name: 'zz', order: 1000 }),
    ],
    ...IN,
    expect: { decision: 'allow', by: 'rule', rule: 'shop/zz#0' },
  },
  {
    name: 'a policy with no match hands on to the next one in the tier',
    policies: [
      dbIngress([{ action: 'Allow', protocol: 'UDP' }], { name: 'p1', order: 1 }),
      dbIngress([fromFrontend], { name: 'p2', order: 2 }),
    ],
    ...IN,
    expect: { decision: 'allow', by: 'rule', rule: 'shop/p2#0' },
  },
  // --- tiers
  {
    name: 'pass goes to the next tier, which allows',
    policies: [
      dbIngress([{ action: 'Pass' }, { action: 'Deny' }], { name: 'sec', tier: 'security' }),
      dbIngress([fromFrontend]),
    ],
    ...IN,
    expect: { decision: 'allow', by: 'rule', rule: 'shop/db-in#0', tiers: ['pass', 'allow'] },
  },
  {
    name: 'pass skips the rest of its tier',
    policies: [
      dbIngress([{ action: 'Pass' }], { name: 'sec1', tier: 'security', order: 1 }),
      dbIngress([{ action: 'Deny' }], { name: 'sec2', tier: 'security', order: 2 }),
      dbIngress([fromFrontend]),
    ],
    ...IN,
    expect: { decision: 'allow', by: 'rule', rule: 'shop/db-in#0', tiers: ['pass', 'allow'] },
  },
  {
    name: 'pass, then the next tier ends: denied there',
    policies: [
      dbIngress([{ action: 'Pass' }], { name: 'sec', tier: 'security' }),
      dbIngress([{ action: 'Allow', protocol: 'UDP' }]),
    ],
    ...IN,
    expect: {
      decision: 'deny',
      by: 'end-of-tier',
      reason: 'end of tier default',
      tiers: ['pass', 'end-of-tier'],
    },
  },
  {
    name: 'a tier with no match denies even if a later tier would allow',
    policies: [
      dbIngress([{ action: 'Allow', protocol: 'UDP' }], { name: 'sec', tier: 'security' }),
      dbIngress([ALLOW_ALL]),
    ],
    ...IN,
    expect: { decision: 'deny', by: 'end-of-tier', reason: 'end of tier security', tiers: ['end-of-tier'] },
  },
  {
    name: 'tiers by order, not by name: zeta (10) before alpha (20)',
    policies: [
      dbIngress([{ action: 'Deny' }], { name: 'a', tier: 'alpha' }),
      dbIngress([ALLOW_ALL], { name: 'z', tier: 'zeta' }),
    ],
    ...IN,
    expect: { decision: 'allow', by: 'rule', rule: 'shop/z#0', tiers: ['allow'] },
  },
  {
    name: 'a tier without an order comes after default',
    policies: [dbIngress([{ action: 'Deny' }], { name: 'l', tier: 'late' }), dbIngress([ALLOW_ALL])],
    ...IN,
    expect: { decision: 'allow', by: 'rule', rule: 'shop/db-in#0' },
  },
  {
    name: 'default passes on to an unordered tier',
    policies: [dbIngress([{ action: 'Deny' }], { name: 'l', tier: 'late' }), dbIngress([{ action: 'Pass' }])],
    ...IN,
    expect: { decision: 'deny', by: 'rule', rule: 'shop/l#0', tiers: ['pass', 'deny'] },
  },
  {
    name: 'pass in the last tier: allowed',
    policies: [dbIngress([{ action: 'Pass' }])],
    ...IN,
    expect: { decision: 'allow', by: 'profile', rule: 'shop/db-in#0', tiers: ['pass'] },
  },
  // --- ports
  {
    name: 'port in list',
    policies: [dbIngress([{ action: 'Allow', protocol: 'TCP', destination: { ports: [80, 5432] } }])],
    ...IN,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'port in range',
    policies: [dbIngress([{ action: 'Allow', protocol: 'TCP', destination: { ports: [[5000, 6000]] } }])],
    ...IN,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'port not in list',
    policies: [dbIngress([{ action: 'Allow', protocol: 'TCP', destination: { ports: [80, [8000, 8080]] } }])],
    ...IN,
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'notPorts excludes',
    policies: [dbIngress([{ action: 'Allow', protocol: 'TCP', destination: { notPorts: [5432] } }])],
    ...IN,
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'notPorts elsewhere',
    policies: [dbIngress([{ action: 'Allow', protocol: 'TCP', destination: { notPorts: [[1, 1024]] } }])],
    ...IN,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'source port unknown: a rule on it is taken as not matching, with a note',
    policies: [dbIngress([{ action: 'Deny', protocol: 'TCP', source: { ports: [[1, 1023]] } }, ALLOW_ALL])],
    ...IN,
    expect: { decision: 'allow', by: 'rule', rule: 'shop/db-in#1', notes: 1 },
  },
  {
    name: 'source port given',
    policies: [dbIngress([{ action: 'Deny', protocol: 'TCP', source: { ports: [[1, 1023]] } }, ALLOW_ALL])],
    ...IN,
    srcPort: 999,
    expect: { decision: 'deny', by: 'rule', rule: 'shop/db-in#0', notes: 0 },
  },
  // --- named ports: the number is the destination endpoint's own
  {
    name: 'ingress, named port of the endpoint itself',
    policies: [dbIngress([{ action: 'Allow', protocol: 'TCP', destination: { ports: ['pg'] } }])],
    ...IN,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'ingress, other named port',
    policies: [dbIngress([{ action: 'Allow', protocol: 'TCP', destination: { ports: ['metrics'] } }])],
    ...IN,
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'ingress, named port or number',
    policies: [dbIngress([{ action: 'Allow', protocol: 'TCP', destination: { ports: ['metrics', 5432] } }])],
    ...IN,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'named port, no protocol: tcp counts',
    policies: [dbIngress([{ action: 'Allow', destination: { ports: ['pg'] } }])],
    ...IN,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'named port is tcp, flow is udp',
    policies: [dbIngress([{ action: 'Allow', destination: { ports: ['pg'] } }])],
    ...IN,
    port: '5432/udp',
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'named udp port',
    policies: [dbIngress([{ action: 'Allow', destination: { ports: ['dns'] } }])],
    ...IN,
    port: '53/udp',
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'egress, named port of the peer',
    policies: [
      feEgress([
        { action: 'Allow', protocol: 'TCP', destination: { selector: "app == 'db'", ports: ['pg'] } },
      ]),
    ],
    ...OUT,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'egress, peer without that named port',
    policies: [feEgress([{ action: 'Allow', protocol: 'TCP', destination: { ports: ['pg'] } }])],
    ...OUT,
    to: REMOTE_DB,
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: "named port in notPorts: the endpoint's own number is excluded",
    policies: [dbIngress([{ action: 'Allow', protocol: 'TCP', destination: { notPorts: ['pg'] } }])],
    ...IN,
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'named port in notPorts: other ports still pass',
    policies: [dbIngress([{ action: 'Allow', protocol: 'TCP', destination: { notPorts: ['metrics'] } }])],
    ...IN,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'a source-side named port matches nothing',
    policies: [dbIngress([{ action: 'Allow', protocol: 'TCP', source: { ports: ['pg'] } }])],
    ...IN,
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  // --- nets
  {
    name: 'source in net',
    policies: [dbIngress([{ action: 'Allow', source: { nets: ['10.10.0.0/24'] } }])],
    ...IN,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'source not in net',
    policies: [dbIngress([{ action: 'Allow', source: { nets: ['10.99.0.0/16'] } }])],
    ...IN,
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'source in one of several nets',
    policies: [dbIngress([{ action: 'Allow', source: { nets: ['10.99.0.0/16', '10.10.0.4/30'] } }])],
    ...IN,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'source in notNets',
    policies: [dbIngress([{ action: 'Allow', source: { notNets: ['10.10.0.5/32'] } }])],
    ...IN,
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'source in one of several notNets',
    policies: [dbIngress([{ action: 'Allow', source: { notNets: ['10.99.0.0/16', '10.10.0.0/16'] } }])],
    ...IN,
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'source outside notNets',
    policies: [dbIngress([{ action: 'Allow', source: { notNets: ['10.99.0.0/16', '10.98.0.0/16'] } }])],
    ...IN,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'egress to a bare address in net',
    policies: [feEgress([{ action: 'Allow', destination: { nets: ['8.8.8.0/24'] } }])],
    ...OUT,
    to: '8.8.8.8',
    port: '53/udp',
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'a bare address has no labels',
    policies: [feEgress([{ action: 'Allow', destination: { selector: 'all()' } }])],
    ...OUT,
    to: '8.8.8.8',
    port: '53/udp',
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'a bare address in a network set of the namespace is selected by its labels',
    policies: [feEgress([{ action: 'Allow', destination: { selector: "role == 'corp'" } }])],
    ...OUT,
    to: '192.168.50.10',
    port: '443/tcp',
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: "a global network set is not in a namespaced policy's namespace",
    policies: [feEgress([{ action: 'Allow', destination: { selector: "role == 'partner'" } }])],
    ...OUT,
    to: '192.168.60.10',
    port: '443/tcp',
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'a global network set through namespaceSelector global()',
    policies: [
      feEgress([
        { action: 'Allow', destination: { namespaceSelector: 'global()', selector: "role == 'partner'" } },
      ]),
    ],
    ...OUT,
    to: '192.168.60.10',
    port: '443/tcp',
    expect: { decision: 'allow', by: 'rule' },
  },
  // --- selectors, namespaces
  {
    name: 'source selector',
    policies: [dbIngress([fromFrontend])],
    ...IN,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'source notSelector',
    policies: [dbIngress([{ action: 'Allow', source: { notSelector: "app == 'frontend'" } }])],
    ...IN,
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'namespaced policy: rule selector only in its namespace',
    policies: [dbIngress([fromFrontend])],
    ...IN,
    from: DEV_FE,
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'global policy: rule selector in any namespace',
    policies: [dbIngress([fromFrontend], { namespace: undefined })],
    ...IN,
    from: DEV_FE,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'namespaced policy selects only in its namespace',
    policies: [dbIngress([{ action: 'Deny' }], { namespace: 'dev' })],
    ...IN,
    expect: { decision: 'allow', by: 'profile' },
  },
  {
    name: 'namespaceSelector matches the namespace labels',
    policies: [dbIngress([{ action: 'Allow', source: { namespaceSelector: "team == 'web'" } }])],
    ...IN,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'namespaceSelector: other namespace',
    policies: [dbIngress([{ action: 'Allow', source: { namespaceSelector: "team == 'web'" } }])],
    ...IN,
    from: DEV_FE,
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'namespaceSelector opens a namespaced policy to other namespaces',
    policies: [
      dbIngress([
        { action: 'Allow', source: { namespaceSelector: "team == 'dev'", selector: "app == 'frontend'" } },
      ]),
    ],
    ...IN,
    from: DEV_FE,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'namespaceSelector all(): any namespace',
    policies: [
      dbIngress([{ action: 'Allow', source: { namespaceSelector: 'all()', selector: "app == 'frontend'" } }]),
    ],
    ...IN,
    from: DEV_FE,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'serviceAccounts by name',
    policies: [dbIngress([{ action: 'Allow', source: { serviceAccounts: { names: ['default'] } } }])],
    ...IN,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'serviceAccounts, other name',
    policies: [dbIngress([{ action: 'Allow', source: { serviceAccounts: { names: ['robot'] } } }])],
    ...IN,
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'egress: destination is the peer',
    policies: [feEgress([{ action: 'Allow', destination: { selector: "app == 'db'" } }])],
    ...OUT,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'egress: source is the endpoint itself',
    policies: [feEgress([{ action: 'Allow', source: { selector: "app == 'db'" } }])],
    ...OUT,
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'ingress: destination is the endpoint itself',
    policies: [dbIngress([{ action: 'Allow', destination: { selector: "app == 'db'" } }])],
    ...IN,
    expect: { decision: 'allow', by: 'rule' },
  },
  // --- remote clusters
  {
    name: 'remote peer selected by label (namespace scope holds across clusters)',
    policies: [
      feEgress([
        { action: 'Allow', protocol: 'TCP', destination: { selector: "app == 'db'", ports: [5432] } },
      ]),
    ],
    ...OUT,
    to: REMOTE_DB,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'remote peer selected by cluster label',
    policies: [feEgress([{ action: 'Allow', destination: { selector: "fedmesh.io/cluster == 'b'" } }])],
    ...OUT,
    to: REMOTE_DB,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'local peer is not cluster b',
    policies: [feEgress([{ action: 'Allow', destination: { selector: "fedmesh.io/cluster == 'b'" } }])],
    ...OUT,
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  // --- protocol
  {
    name: 'protocol mismatch',
    policies: [dbIngress([{ action: 'Allow', protocol: 'UDP' }])],
    ...IN,
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'protocol by number',
    policies: [dbIngress([{ action: 'Allow', protocol: '6' }])],
    ...IN,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'notProtocol excludes',
    policies: [dbIngress([{ action: 'Allow', notProtocol: 'TCP' }])],
    ...IN,
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'notProtocol other',
    policies: [dbIngress([{ action: 'Allow', notProtocol: 'UDP' }])],
    ...IN,
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'sctp',
    policies: [dbIngress([{ action: 'Allow', protocol: 'SCTP', destination: { ports: [5432] } }])],
    ...IN,
    port: '5432/sctp',
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'a port rule does not match ICMP',
    policies: [dbIngress([{ action: 'Allow', protocol: 'TCP', destination: { ports: [5432] } }])],
    ...IN,
    port: 'icmp/8/0',
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  // --- ICMP
  {
    name: 'icmp any type',
    policies: [dbIngress([{ action: 'Allow', protocol: 'ICMP' }])],
    ...IN,
    port: 'icmp/8/0',
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'icmp type',
    policies: [dbIngress([{ action: 'Allow', protocol: 'ICMP', icmp: { type: 8 } }])],
    ...IN,
    port: 'icmp/8/0',
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'icmp other type',
    policies: [dbIngress([{ action: 'Allow', protocol: 'ICMP', icmp: { type: 0 } }])],
    ...IN,
    port: 'icmp/8/0',
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'icmp type and code',
    policies: [dbIngress([{ action: 'Allow', protocol: 'ICMP', icmp: { type: 3, code: 4 } }])],
    ...IN,
    port: 'icmp/3/4',
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'icmp type, other code',
    policies: [dbIngress([{ action: 'Allow', protocol: 'ICMP', icmp: { type: 3, code: 4 } }])],
    ...IN,
    port: 'icmp/3/1',
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'icmp code unknown: taken as not matching',
    policies: [dbIngress([{ action: 'Allow', protocol: 'ICMP', icmp: { type: 3, code: 4 } }])],
    ...IN,
    port: 'icmp/3',
    expect: { decision: 'deny', by: 'end-of-tier', notes: 1 },
  },
  {
    name: 'notICMP excludes',
    policies: [dbIngress([{ action: 'Allow', protocol: 'ICMP', notIcmp: { type: 8 } }])],
    ...IN,
    port: 'icmp/8/0',
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  {
    name: 'notICMP other',
    policies: [dbIngress([{ action: 'Allow', protocol: 'ICMP', notIcmp: { type: 0 } }])],
    ...IN,
    port: 'icmp/8/0',
    expect: { decision: 'allow', by: 'rule' },
  },
  {
    name: 'a tcp rule does not match ICMP',
    policies: [dbIngress([{ action: 'Allow', protocol: 'TCP' }])],
    ...IN,
    port: 'icmp/8/0',
    expect: { decision: 'deny', by: 'end-of-tier' },
  },
  // --- never
  {
    name: 'an IPv6 rule matches nothing',
    policies: [dbIngress([{ action: 'Deny', ipVersion: 6 }, ALLOW_ALL])],
    ...IN,
    expect: { decision: 'allow', by: 'rule', rule: 'shop/db-in#1' },
  },
];

describe('flow evaluator: one direction', () => {
  for (const c of CASES) {
    it(c.name, () => {
      const r = run(c);
      assert.equal(r.decision, c.expect.decision, r.reason);
      assert.equal(r.by, c.expect.by, r.reason);
      if (c.expect.rule) assert.equal(r.rule && `${r.rule.policy}#${r.rule.index}`, c.expect.rule);
      if (c.expect.by === 'end-of-tier' || (c.expect.by === 'profile' && !c.expect.rule))
        assert.equal(r.rule, undefined);
      if (c.expect.reason) assert.ok(r.reason.includes(c.expect.reason), r.reason);
      if (c.expect.tiers)
        assert.deepEqual(
          r.tiers.map((t) => t.outcome),
          c.expect.tiers,
        );
      if (c.expect.notes !== undefined) assert.equal(r.notes.length, c.expect.notes, r.notes.join('; '));
    });
  }
});

describe('flow evaluator: traces', () => {
  it('lists each tier, each selecting policy in order, and the rules up to the deciding one', () => {
    const r = run({
      ...IN,
      policies: [
        dbIngress([{ action: 'Log' }, { action: 'Pass', protocol: 'TCP' }, { action: 'Deny' }], {
          name: 'sec',
          tier: 'security',
        }),
        dbIngress([{ action: 'Allow', protocol: 'UDP' }], { name: 'p1', order: 1 }),
        dbIngress([fromFrontend, { action: 'Deny' }], { name: 'p2', order: 2 }),
        dbIngress([{ action: 'Deny' }], { name: 'p3', order: 3 }),
        dbIngress([{ action: 'Deny' }], { name: 'other', selector: "app == 'cache'" }),
      ],
    });
    assert.deepEqual(
      r.tiers.map((t) => ({
        tier: t.tier,
        outcome: t.outcome,
        policies: t.policies.map(
          (p) =>
            `${p.policy}:${p.outcome}:${p.rules.map((x) => `${x.index}${x.matched ? '+' : '-'}`).join(',')}`,
        ),
      })),
      [
        { tier: 'security', outcome: 'pass', policies: ['shop/sec:pass:0+,1+'] },
        { tier: 'default', outcome: 'allow', policies: ['shop/p1:no-match:0-', 'shop/p2:allow:0+'] },
      ],
    );
    assert.equal(r.rule?.match, 'allow tcp from selector app == "frontend" in namespace shop');
    assert.equal(r.tiers[1]?.policies[0]?.rules[0]?.why, 'protocol is tcp, rule wants udp');
    assert.equal(r.tiers[1]?.policies[0]?.order, 1);
  });

  it('says why a rule did not match', () => {
    const why = (rule: RuleInit, port = '5432/tcp', from: End = FE) =>
      run({ ...IN, from, port, policies: [dbIngress([rule])] }).tiers[0]?.policies[0]?.rules[0]?.why;
    assert.equal(
      why(fromFrontend, '5432/tcp', DEV_FE),
      'source 10.10.0.7 is not selected by selector app == "frontend" in namespace shop',
    );
    assert.equal(
      why({ action: 'Allow', protocol: 'TCP', destination: { ports: [80] } }),
      'destination port 5432 is not port 80 (of destination 10.10.0.6)',
    );
    assert.equal(
      why({ action: 'Allow', source: { nets: ['10.99.0.0/16'] } }),
      'source 10.10.0.5 is not in 10.99.0.0/16',
    );
    assert.equal(
      why({ action: 'Allow', protocol: 'TCP', destination: { notPorts: [[5000, 6000]] } }),
      'destination port 5432 is in notPorts 5000:6000',
    );
  });
});

describe('flow evaluator: straight from compilePolicy and a LabelIndex', () => {
  it('evaluates a rule with nothing but the compiled policy and the index', () => {
    const index = new LabelIndex({ send: () => {} });
    index.upsertItem({
      key: 'fe',
      ownLabels: { app: 'frontend' },
      profiles: [],
      namespace: 'shop',
      nets: ['10.0.0.1/32'],
    });
    index.upsertItem({
      key: 'db',
      ownLabels: { app: 'db' },
      profiles: [],
      namespace: 'shop',
      nets: ['10.0.0.2/32'],
      namedPorts: new Map([['pg', ['tcp:5432']]]),
    });
    const u = policy(
      dbIngress([
        {
          action: 'Allow',
          protocol: 'TCP',
          source: { selector: "app == 'frontend'" },
          destination: { ports: ['pg'] },
        },
      ]),
    );
    assert.equal(u.body.case, 'policy');
    if (u.body.case !== 'policy') return;
    const p = compilePolicy(u.body.value);
    const matchers = new Map(p.matchers.map((m) => [m.id as string, m]));
    const rule = p.inbound[0]!;
    const flow = (srcKey: string, port: number): Flow => ({
      src: {
        ip: parseIp4(srcKey === 'fe' ? '10.0.0.1' : '10.0.0.9'),
        items: srcKey === 'fe' ? [{ key: 'fe' }] : [],
      },
      dst: { ip: parseIp4('10.0.0.2'), items: [{ key: 'db', namedPorts: new Map([['pg', ['tcp:5432']]]) }] },
      protocol: 6,
      dstPort: port,
    });
    assert.equal(matchRule(rule, matchers, index, flow('fe', 5432)).matched, true);
    assert.equal(matchRule(rule, matchers, index, flow('fe', 5433)).matched, false);
    assert.equal(matchRule(rule, matchers, index, flow('x', 5432)).matched, false);
    assert.equal(
      describeRule(rule, matchers),
      'allow tcp from selector app == "frontend" in namespace shop to port "pg"',
    );
    const r = evaluateDirection({
      direction: 'ingress',
      endpointLabels: { app: 'db', 'projectcalico.org/namespace': 'shop' },
      policies: [p],
      index,
      profiles: [],
      flow: flow('fe', 5432),
    });
    assert.equal(r.decision, 'allow');
    assert.equal(r.rule?.index, 0);
  });

  it('a view refuses remote policies and bad updates, and keeps the rest', () => {
    const view = new ClusterView('a', [
      ...WORLD,
      policy({ name: 'remote', namespace: 'shop', cluster: 'b', ingress: [ALLOW_ALL] }),
      policy({
        name: 'bad',
        namespace: 'shop',
        ingress: [{ action: 'Allow', source: { selector: 'app ==' } }],
      }),
      policy({ name: 'good', namespace: 'shop', ingress: [ALLOW_ALL] }),
    ]);
    assert.deepEqual(
      view.policies.map((p) => p.displayName),
      ['shop/good'],
    );
    assert.equal(view.refused.length, 2);
    assert.deepEqual(
      view.itemsAt(parseIp4('10.20.0.5')).map((i) => view.displayName(i)),
      ['b/shop/b-node1-k8s-db-9-eth0'],
    );
  });
});
