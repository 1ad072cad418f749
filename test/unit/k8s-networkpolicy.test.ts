// Kubernetes NetworkPolicy (networking.k8s.io/v1) → Calico NetworkPolicy (model/k8s-networkpolicy.ts,
// validated in model/validate/kube.ts). Three parts: the shape of the conversion (as Calico's
// K8sNetworkPolicyToCalico makes it), its meaning (the converted policy is fed through the syncer's
// conversion and the agent's policy compiler, then a small evaluator asks which peers each rule
// admits, against Kubernetes' semantics), and refusals of bad input naming resource and field.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LabelIndex, type MatcherSpec } from '../../agent/calc/label-index.ts';
import type { CompiledEntity, CompiledRule, IpSetId } from '../../agent/calc/messages.ts';
import {
  K8sPolicyConversionError,
  labelSelectorTerms,
  selectorLiteral,
} from '../../model/k8s-networkpolicy.ts';
import { type Cidr, cidrContainsIp, type Ip4 } from '../../model/net.ts';
import type { EntityRule, NamedPort, NetworkPolicy, Resource, Rule } from '../../model/resources.ts';
import { parseSelector } from '../../model/selector/index.ts';
import { parseYamlDocuments } from '../../model/validate.ts';
import { type CompiledPolicy, compilePolicy } from '../../policy/compiler.ts';
import { toUpdate } from '../../syncer/convert.ts';

const here = dirname(fileURLToPath(import.meta.url));
const FIXTURES = join(here, '../fixtures/k8s-np');
const SOURCE = '/clusters/a/policies.yaml';
const ORCH = "projectcalico.org/orchestrator == 'k8s'";

function parse(text: string) {
  return parseYamlDocuments(text, { source: SOURCE, baseDir: '/clusters/a' });
}

function accept(text: string): Resource[] {
  const r = parse(text);
  assert.deepEqual(r.errors, [], 'no errors expected');
  assert.deepEqual(r.skipped, [], 'nothing skipped');
  return r.resources;
}

function policies(text: string): Map<string, NetworkPolicy> {
  const out = new Map<string, NetworkPolicy>();
  for (const r of accept(text)) {
    assert.equal(r.kind, 'NetworkPolicy');
    if (r.kind === 'NetworkPolicy') out.set(r.name.replace(/^knp\.default\./, ''), r);
  }
  return out;
}

/** One policy from a spec written as YAML flow (namespace default). */
function convertOne(spec: string, name = 'p'): NetworkPolicy {
  const [r, ...rest] = accept(
    `{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: ${name}, namespace: default}, spec: ${spec}}`,
  );
  assert.equal(rest.length, 0);
  assert.equal(r?.kind, 'NetworkPolicy');
  return r as NetworkPolicy;
}

const entity = (e: Partial<EntityRule> = {}): EntityRule => ({
  nets: [],
  notNets: [],
  ports: [],
  notPorts: [],
  ...e,
});
const port = (first: number, last = first) => ({ kind: 'num' as const, first, last });
const named = (name: string) => ({ kind: 'name' as const, name });
const inRule = (source: Partial<EntityRule>, protocol?: string, ports: EntityRule['ports'] = []): Rule => ({
  action: 'Allow',
  ...(protocol ? { protocol } : {}),
  source: entity(source),
  destination: entity({ ports }),
});
const outRule = (dest: Partial<EntityRule>, protocol?: string, ports: EntityRule['ports'] = []): Rule => ({
  action: 'Allow',
  ...(protocol ? { protocol } : {}),
  source: entity(),
  destination: entity({ ...dest, ports }),
});

const docs = policies(readFileSync(join(FIXTURES, 'docs-examples.yaml'), 'utf8'));

function doc(name: string): NetworkPolicy {
  const p = docs.get(name);
  assert.ok(p, `${name} converted`);
  return p;
}

// ---------------------------------------------------------------------------------------------
// 1. Shape

describe('conversion shape: the Kubernetes documentation examples', () => {
  test('test-network-policy: identity, order, selector, one rule per peer, ports on each', () => {
    const p = doc('test-network-policy');
    assert.equal(p.kind, 'NetworkPolicy');
    assert.equal(p.name, 'knp.default.test-network-policy');
    assert.equal(p.namespace, 'default');
    assert.deepEqual(p.origin, { source: SOURCE, document: 0 });
    assert.deepEqual(p.spec, {
      tier: 'default',
      order: 1000,
      selector: `${ORCH} && role == 'db'`,
      types: { ingress: true, egress: true },
      ingress: [
        inRule({ nets: ['172.17.0.0/16' as Cidr], notNets: ['172.17.1.0/24' as Cidr] }, 'tcp', [port(6379)]),
        inRule({ selector: ORCH, namespaceSelector: "project == 'myproject'" }, 'tcp', [port(6379)]),
        inRule({ selector: `${ORCH} && role == 'frontend'` }, 'tcp', [port(6379)]),
      ],
      egress: [outRule({ nets: ['10.0.0.0/24' as Cidr] }, 'tcp', [port(5978)])],
    });
  });

  test('default-deny-ingress: selects every pod, Ingress only, no rules; namespace defaults to default', () => {
    const p = doc('default-deny-ingress');
    assert.equal(p.namespace, 'default');
    assert.deepEqual(p.spec, {
      tier: 'default',
      order: 1000,
      selector: ORCH,
      types: { ingress: true, egress: false },
      ingress: [],
      egress: [],
    });
  });

  test('allow-all-ingress: `- {}` is one rule with no protocol, no peer and no port', () => {
    const p = doc('allow-all-ingress');
    assert.deepEqual(p.spec.types, { ingress: true, egress: false });
    assert.deepEqual(p.spec.ingress, [inRule({})]);
  });

  test('default-deny-egress and allow-all-egress', () => {
    assert.deepEqual(doc('default-deny-egress').spec.types, { ingress: false, egress: true });
    assert.deepEqual(doc('default-deny-egress').spec.egress, []);
    assert.deepEqual(doc('allow-all-egress').spec.types, { ingress: false, egress: true });
    assert.deepEqual(doc('allow-all-egress').spec.egress, [outRule({})]);
  });

  test('default-deny-all: both directions, no rules', () => {
    const p = doc('default-deny-all');
    assert.deepEqual(p.spec.types, { ingress: true, egress: true });
    assert.deepEqual([p.spec.ingress, p.spec.egress], [[], []]);
  });

  test('multi-port-egress: port + endPort is one range', () => {
    assert.deepEqual(doc('multi-port-egress').spec.egress, [
      outRule({ nets: ['10.0.0.0/24' as Cidr] }, 'tcp', [port(32000, 32768)]),
    ]);
  });

  test('AND (one peer, both selectors) vs OR (two peers); policyTypes absent → Ingress', () => {
    const and = doc('and-peer');
    assert.deepEqual(and.spec.types, { ingress: true, egress: false });
    assert.deepEqual(and.spec.ingress, [
      inRule({ selector: `${ORCH} && role == 'client'`, namespaceSelector: "user == 'alice'" }),
    ]);
    assert.deepEqual(doc('or-peers').spec.ingress, [
      inRule({ selector: ORCH, namespaceSelector: "user == 'alice'" }),
      inRule({ selector: `${ORCH} && role == 'client'` }),
    ]);
  });

  test('a named port, protocol defaulting to TCP, no peers: from anywhere', () => {
    assert.deepEqual(doc('allow-http-by-name').spec.ingress, [inRule({}, 'tcp', [named('http')])]);
  });
});

describe('conversion shape: rules, ports, selectors', () => {
  test('ports of different protocols split into rules (sorted), each crossed with every peer', () => {
    const p = convertOne(`{ingress: [{
      from: [{podSelector: {matchLabels: {a: x}}}, {ipBlock: {cidr: 10.1.0.0/16}}],
      ports: [{protocol: UDP, port: 53}, {port: 53}, {protocol: SCTP, port: 9000}, {protocol: TCP, port: 8080}]}]}`);
    const a = { selector: `${ORCH} && a == 'x'` };
    const b = { nets: ['10.1.0.0/16' as Cidr] };
    assert.deepEqual(p.spec.ingress, [
      inRule(a, 'sctp', [port(9000)]),
      inRule(b, 'sctp', [port(9000)]),
      inRule(a, 'tcp', [port(53), port(8080)]),
      inRule(b, 'tcp', [port(53), port(8080)]),
      inRule(a, 'udp', [port(53)]),
      inRule(b, 'udp', [port(53)]),
    ]);
  });

  test('a port entry without a port number means every port of its protocol', () => {
    const p = convertOne(`{egress: [{ports: [{protocol: UDP, port: 53}, {protocol: UDP}, {port: 443}]}]}`);
    assert.deepEqual(p.spec.types, { ingress: true, egress: true }, 'egress rules add Egress by default');
    assert.deepEqual(p.spec.egress, [outRule({}, 'tcp', [port(443)]), outRule({}, 'udp')]);
    assert.deepEqual(convertOne('{ingress: [{ports: [{}]}]}').spec.ingress, [inRule({}, 'tcp')]);
  });

  test('numeric ports of one protocol merge into ranges; named ports follow', () => {
    const p = convertOne(
      `{ingress: [{ports: [{port: 82}, {port: http}, {port: 80}, {port: 81}, {port: 90, endPort: 95}, {port: 93}, {port: http}]}]}`,
    );
    assert.deepEqual(p.spec.ingress, [inRule({}, 'tcp', [port(80, 82), port(90, 95), named('http')])]);
  });

  test('empty ingress list with Ingress: selects, allows nothing; rules of an unlisted direction are dropped', () => {
    const p = convertOne(
      `{podSelector: {matchLabels: {app: a}}, policyTypes: [Ingress], ingress: [], egress: [{}]}`,
    );
    assert.deepEqual(p.spec.types, { ingress: true, egress: false });
    assert.deepEqual([p.spec.ingress, p.spec.egress], [[], []]);
  });

  test('policyTypes absent with only egress rules → Ingress and Egress (the API server default)', () => {
    const p = convertOne('{egress: [{to: [{podSelector: {}}]}]}');
    assert.deepEqual(p.spec.types, { ingress: true, egress: true });
    assert.deepEqual(p.spec.egress, [outRule({ selector: ORCH })]);
    assert.deepEqual(convertOne('{egress: []}').spec.types, { ingress: true, egress: false });
  });

  test('namespaceSelector {} → all(); podSelector {} → this namespace', () => {
    const p = convertOne(
      '{ingress: [{from: [{namespaceSelector: {}}, {podSelector: {}}, {namespaceSelector: {}, podSelector: {}}]}]}',
    );
    assert.deepEqual(p.spec.ingress, [
      inRule({ selector: ORCH, namespaceSelector: 'all()' }),
      inRule({ selector: ORCH }),
      inRule({ selector: ORCH, namespaceSelector: 'all()' }),
    ]);
  });

  test('matchLabels (sorted by key) and every matchExpressions operator', () => {
    const p = convertOne(`{podSelector: {
      matchLabels: {tier: web, app.kubernetes.io/name: shop},
      matchExpressions: [
        {key: env, operator: In, values: [prod, staging]},
        {key: env, operator: NotIn, values: [dev]},
        {key: team, operator: Exists},
        {key: legacy, operator: DoesNotExist}]}}`);
    assert.equal(
      p.spec.selector,
      `${ORCH} && app.kubernetes.io/name == 'shop' && tier == 'web' && env in {'prod', 'staging'} && ` +
        "env not in {'dev'} && has(team) && !has(legacy)",
    );
    const sel = parseSelector(p.spec.selector);
    const base = {
      'projectcalico.org/orchestrator': 'k8s',
      'app.kubernetes.io/name': 'shop',
      tier: 'web',
      team: 't',
    };
    assert.equal(sel.evaluate({ ...base, env: 'prod' }), true);
    assert.equal(sel.evaluate({ ...base, env: 'dev' }), false);
    assert.equal(sel.evaluate(base), false, 'In needs the label');
    assert.equal(sel.evaluate({ ...base, env: 'prod', legacy: '' }), false);
    const { team: _, ...noTeam } = base;
    assert.equal(sel.evaluate({ ...noTeam, env: 'prod' }), false, 'Exists needs the label');
    const notIn = parseSelector(
      labelSelectorTerms(
        { matchLabels: {}, matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['dev'] }] },
        'x',
      ).join(' && '),
    );
    assert.equal(notIn.evaluate({}), true, 'NotIn matches a pod without the label, as in Kubernetes');
  });

  test('selector values are quoted with the quote they do not contain; both quotes are refused', () => {
    assert.equal(selectorLiteral('plain', 'f'), "'plain'");
    assert.equal(selectorLiteral("it's", 'f'), `"it's"`);
    assert.equal(selectorLiteral('say "hi"', 'f'), `'say "hi"'`);
    assert.throws(
      () =>
        labelSelectorTerms(
          { matchLabels: {}, matchExpressions: [{ key: 'k', operator: 'In', values: ['ok', `a'b"c`] }] },
          'spec.podSelector',
        ),
      (e: unknown) =>
        e instanceof K8sPolicyConversionError && e.field === 'spec.podSelector.matchExpressions[0].values[1]',
    );
    for (const v of ["it's", `a'b"c`]) {
      const text = `{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: q},
        spec: {podSelector: {matchExpressions: [{key: k, operator: In, values: [${JSON.stringify(v)}]}]}}}`;
      const r = parse(text);
      assert.deepEqual(r.resources, []);
      assert.equal(r.errors[0]?.resource, 'NetworkPolicy/default/q');
      assert.equal(r.errors[0]?.field, 'spec.podSelector.matchExpressions[0].values[0]');
    }
  });

  test('ipBlock: host bits masked (as the API server and Calico do); IPv6 blocks match no IPv4 traffic', () => {
    const p = convertOne(`{ingress: [{from: [
      {ipBlock: {cidr: 192.168.1.1/24, except: [192.168.1.128/25]}},
      {ipBlock: {cidr: "fd00::/8", except: ["fd00:1::/32"]}}]}]}`);
    assert.deepEqual(p.spec.ingress, [
      inRule({ nets: ['192.168.1.0/24' as Cidr], notNets: ['192.168.1.128/25' as Cidr] }),
    ]);
    // Only IPv6 peers: no rule at all (never an allow-all).
    const v6 = convertOne(`{ingress: [{from: [{ipBlock: {cidr: "::/0"}}]}]}`);
    assert.deepEqual(v6.spec.types, { ingress: true, egress: false });
    assert.deepEqual(v6.spec.ingress, []);
  });

  test('labels and annotations are kept; a List of NetworkPolicies is read too', () => {
    const rs = accept(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicyList
items:
- metadata: {name: one, namespace: shop, labels: {team: a}}
  spec: {podSelector: {}}
- metadata: {name: two, namespace: shop}
  spec: {podSelector: {}}`);
    assert.deepEqual(
      rs.map((r) => [r.kind, r.namespace, r.name, r.labels]),
      [
        ['NetworkPolicy', 'shop', 'knp.default.one', { team: 'a' }],
        ['NetworkPolicy', 'shop', 'knp.default.two', {}],
      ],
    );
  });
});

// ---------------------------------------------------------------------------------------------
// 2. Meaning
//
// A small cluster (fixtures/k8s-np/cluster.yaml) goes through the syncer's conversion into a
// LabelIndex, as the agent's calculation graph does; each policy goes through toUpdate and
// compilePolicy. The evaluator below then decides, for one packet, what the compiled rules do.

interface Pod {
  key: string;
  ip: Ip4;
  namespace: string;
  ports: NamedPort[];
}

/** One end of a flow: a pod of the cluster, or an address outside it. */
type End = { pod: Pod } | { ip: Ip4 };

interface Packet {
  protocol: 'tcp' | 'udp' | 'sctp';
  port: number;
}

class World {
  readonly index = new LabelIndex({ send() {} });
  readonly pods = new Map<string, Pod>();

  constructor(text: string) {
    const ctx = { cluster: 'a', remote: false };
    for (const r of accept(text)) {
      const u = toUpdate(ctx, r);
      assert.ok(u);
      const b = u.body;
      if (b.case === 'profile') this.index.setProfileLabels(u.key, b.value.labels);
      else if (b.case === 'workloadEndpoint') {
        const w = b.value;
        const namedPorts = new Map<string, string[]>();
        for (const p of w.ports)
          namedPorts.set(p.name, [...(namedPorts.get(p.name) ?? []), `${p.protocol}:${p.port}`]);
        this.index.upsertItem({
          key: u.key,
          ownLabels: w.labels,
          profiles: w.profiles,
          namespace: w.namespace,
          nets: w.ipv4Nets,
          namedPorts,
        });
        const ip = (w.ipv4Nets[0] ?? '').replace(/\/32$/, '') as Ip4;
        this.pods.set(`${w.namespace}/${w.pod}`, { key: u.key, ip, namespace: w.namespace, ports: w.ports });
      }
    }
  }

  pod(name: string): Pod {
    const p = this.pods.get(name);
    assert.ok(p, `pod ${name} in the fixture`);
    return p;
  }

  /** Does the compiled policy select the pod (its own selector, namespace-scoped)? */
  selects(policy: CompiledPolicy, pod: Pod): boolean {
    const labels = this.index.getLabels(pod.key);
    assert.ok(labels);
    return policy.selector.evaluate(labels);
  }

  private addressOf(end: End): Ip4 {
    return 'pod' in end ? end.pod.ip : end.ip;
  }

  /** Is `end` a member of the ipset a (hash:net) matcher describes? */
  private inSet(spec: MatcherSpec, end: End): boolean {
    if (spec.staticMembers)
      return spec.staticMembers.some((n) => cidrContainsIp(n as Cidr, this.addressOf(end)));
    return 'pod' in end && this.index.itemMatches(spec, end.pod.key);
  }

  /** Is (address, protocol, port) in a named-port (hash:ip,port) set? */
  private inNamedPortSet(spec: MatcherSpec, end: End, pkt: Packet): boolean {
    const np = spec.namedPort;
    if (!np || !('pod' in end) || np.protocol !== pkt.protocol) return false;
    if (!this.index.itemMatches(spec, end.pod.key)) return false;
    return end.pod.ports.some((p) => p.name === np.name && p.protocol === np.protocol && p.port === pkt.port);
  }

  private entityMatches(
    e: CompiledEntity,
    end: End,
    port: number,
    pkt: Packet,
    matchers: ReadonlyMap<IpSetId, MatcherSpec>,
  ): boolean {
    if (e.matchesNothing) return false;
    const spec = (id: IpSetId) => {
      const s = matchers.get(id);
      assert.ok(s, `matcher ${id} listed in compiled.matchers`);
      return s;
    };
    const ip = this.addressOf(end);
    if (e.net && !cidrContainsIp(e.net, ip)) return false;
    if (e.notNet && cidrContainsIp(e.notNet, ip)) return false;
    if (!e.ipSets.every((id) => this.inSet(spec(id), end))) return false;
    if (e.notIpSets.some((id) => this.inSet(spec(id), end))) return false;
    if (e.notPorts.some((r) => port >= r.first && port <= r.last)) return false;
    // Numeric ports and named-port sets are alternatives (OR); none of either: any port.
    if (e.ports.length === 0 && e.namedPortIpSets.length === 0) return true;
    return (
      e.ports.some((r) => port >= r.first && port <= r.last) ||
      e.namedPortIpSets.some((id) => this.inNamedPortSet(spec(id), end, pkt))
    );
  }

  /** Does the compiled rule match a packet from `src` to `dst`? Source ports are not modelled (0). */
  ruleMatches(
    rule: CompiledRule,
    matchers: ReadonlyMap<IpSetId, MatcherSpec>,
    src: End,
    dst: End,
    pkt: Packet,
  ): boolean {
    if (rule.matchesNothing) return false;
    if (rule.protocol !== undefined && rule.protocol !== pkt.protocol) return false;
    if (rule.notProtocol !== undefined && rule.notProtocol === pkt.protocol) return false;
    return (
      this.entityMatches(rule.src, src, 0, pkt, matchers) &&
      this.entityMatches(rule.dst, dst, pkt.port, pkt, matchers)
    );
  }

  /**
   * Kubernetes' verdict for traffic into `dst` (ingress) or out of `src` (egress) under a set of
   * policies: a pod no policy selects (for that direction) is not isolated; an isolated pod takes
   * the traffic if some rule of a selecting policy allows it (the end-of-tier default deny
   * otherwise).
   */
  allowed(dir: 'ingress' | 'egress', ps: CompiledPolicy[], src: End, dst: End, pkt: Packet): boolean {
    const local = dir === 'ingress' ? dst : src;
    assert.ok('pod' in local, 'the policy side of a flow is a pod');
    const applying = ps.filter((p) => p[dir] && this.selects(p, local.pod));
    if (applying.length === 0) return true;
    return applying.some((p) => {
      const matchers = new Map(p.matchers.map((m) => [m.id, m]));
      const rules = dir === 'ingress' ? p.inbound : p.outbound;
      for (const r of rules) assert.equal(r.action, 'allow', 'Kubernetes policies only allow');
      return rules.some((r) => this.ruleMatches(r, matchers, src, dst, pkt));
    });
  }
}

function compile(p: NetworkPolicy): CompiledPolicy {
  const u = toUpdate({ cluster: 'a', remote: false }, p);
  assert.ok(u && u.body.case === 'policy', 'a local NetworkPolicy reaches the feed as a Policy');
  return compilePolicy(u.body.value);
}

const world = new World(readFileSync(join(FIXTURES, 'cluster.yaml'), 'utf8'));
const pod = (name: string): End => ({ pod: world.pod(name) });
const ext = (ip: string): End => ({ ip: ip as Ip4 });
const tcp = (port: number): Packet => ({ protocol: 'tcp', port });
const udp = (port: number): Packet => ({ protocol: 'udp', port });

type Case = [label: string, src: End, dst: End, pkt: Packet, allowed: boolean];

function check(dir: 'ingress' | 'egress', ps: NetworkPolicy[], cases: Case[]): void {
  const compiled = ps.map(compile);
  for (const [label, src, dst, pkt, want] of cases) {
    assert.equal(world.allowed(dir, compiled, src, dst, pkt), want, `${dir}: ${label}`);
  }
}

describe('meaning: which peers the compiled rules admit', () => {
  test('the compiled policy is namespaced, ordered, and selects exactly its pods', () => {
    const c = compile(doc('test-network-policy'));
    assert.equal(c.key, 'default/default/knp.default.test-network-policy');
    assert.equal(c.order, 1000);
    assert.equal(world.selects(c, world.pod('default/db')), true);
    assert.equal(world.selects(c, world.pod('default/frontend')), false);
    const denyAll = compile(doc('default-deny-ingress'));
    assert.equal(world.selects(denyAll, world.pod('default/web')), true);
    assert.equal(
      world.selects(denyAll, world.pod('other/frontend')),
      false,
      'a policy stays in its namespace',
    );
  });

  test('test-network-policy ingress: ipBlock/except, namespaceSelector, podSelector (this namespace), port', () => {
    const db = pod('default/db');
    check(
      'ingress',
      [doc('test-network-policy')],
      [
        ['frontend in the same namespace, 6379', pod('default/frontend'), db, tcp(6379), true],
        ['frontend in the same namespace, other port', pod('default/frontend'), db, tcp(6380), false],
        ['frontend in the same namespace, UDP 6379', pod('default/frontend'), db, udp(6379), false],
        ['same labels in another namespace', pod('other/frontend'), db, tcp(6379), false],
        [
          'any pod of a namespace the namespaceSelector matches',
          pod('myproject/worker'),
          db,
          tcp(6379),
          true,
        ],
        ['a pod of a namespace it does not match', pod('alice/client'), db, tcp(6379), false],
        ['an address inside the ipBlock', ext('172.17.0.5'), db, tcp(6379), true],
        ['an address inside except', ext('172.17.1.5'), db, tcp(6379), false],
        ['an address outside the ipBlock', ext('8.8.8.8'), db, tcp(6379), false],
        [
          'a pod the policy does not select is not isolated',
          ext('8.8.8.8'),
          pod('default/web'),
          tcp(80),
          true,
        ],
      ],
    );
  });

  test('test-network-policy egress: only the ipBlock on 5978', () => {
    const db = pod('default/db');
    check(
      'egress',
      [doc('test-network-policy')],
      [
        ['to 10.0.0.9:5978', db, ext('10.0.0.9'), tcp(5978), true],
        ['to 10.0.0.9:5979', db, ext('10.0.0.9'), tcp(5979), false],
        ['to 10.0.1.9:5978', db, ext('10.0.1.9'), tcp(5978), false],
        ['to a pod', db, pod('default/frontend'), tcp(5978), false],
      ],
    );
  });

  test('AND: one peer with podSelector and namespaceSelector', () => {
    const db = pod('default/db');
    check(
      'ingress',
      [doc('and-peer')],
      [
        ['client in a user=alice namespace', pod('alice/client'), db, tcp(5432), true],
        ['non-client in a user=alice namespace', pod('alice/web'), db, tcp(5432), false],
        ['client in this namespace', pod('default/client'), db, tcp(5432), false],
        ['client in another namespace', pod('other/client'), db, tcp(5432), false],
      ],
    );
  });

  test('OR: the same selectors as two peers', () => {
    const db = pod('default/db');
    check(
      'ingress',
      [doc('or-peers')],
      [
        ['client in a user=alice namespace', pod('alice/client'), db, tcp(5432), true],
        ['non-client in a user=alice namespace', pod('alice/web'), db, tcp(5432), true],
        ['client in this namespace', pod('default/client'), db, tcp(5432), true],
        ['client in another namespace', pod('other/client'), db, tcp(5432), false],
        ['an address outside the cluster', ext('8.8.8.8'), db, tcp(5432), false],
      ],
    );
  });

  test('namespaceSelector {} matches every namespace; podSelector {} only the policy namespace', () => {
    const db = pod('default/db');
    const all = convertOne(
      '{podSelector: {matchLabels: {role: db}}, ingress: [{from: [{namespaceSelector: {}}]}]}',
    );
    check(
      'ingress',
      [all],
      [
        ['a pod in another namespace', pod('other/client'), db, tcp(1), true],
        ['a pod in this namespace', pod('default/web'), db, tcp(1), true],
        ['an address outside the cluster', ext('10.99.0.1'), db, tcp(1), false],
      ],
    );
    const here = convertOne(
      '{podSelector: {matchLabels: {role: db}}, ingress: [{from: [{podSelector: {}}]}]}',
    );
    check(
      'ingress',
      [here],
      [
        ['a pod in another namespace', pod('other/client'), db, tcp(1), false],
        ['a pod in this namespace', pod('default/web'), db, tcp(1), true],
      ],
    );
  });

  test('endPort: the whole range, inclusive, nothing beyond', () => {
    const db = pod('default/db');
    check(
      'egress',
      [doc('multi-port-egress')],
      [
        ['32000', db, ext('10.0.0.1'), tcp(32000), true],
        ['32500', db, ext('10.0.0.1'), tcp(32500), true],
        ['32768', db, ext('10.0.0.1'), tcp(32768), true],
        ['31999', db, ext('10.0.0.1'), tcp(31999), false],
        ['32769', db, ext('10.0.0.1'), tcp(32769), false],
        ['32500 over UDP', db, ext('10.0.0.1'), udp(32500), false],
      ],
    );
  });

  test('named port (ingress): each selected pod by its own number for the name', () => {
    check(
      'ingress',
      [doc('allow-http-by-name')],
      [
        ['web: http is 8080', ext('8.8.8.8'), pod('default/web'), tcp(8080), true],
        ['web: 8081 is not its http', ext('8.8.8.8'), pod('default/web'), tcp(8081), false],
        ['web: metrics is not http', ext('8.8.8.8'), pod('default/web'), tcp(9090), false],
        ['web2: http is 8081', pod('default/client'), pod('default/web2'), tcp(8081), true],
        ['web2: 8080 is not its http', pod('default/client'), pod('default/web2'), tcp(8080), false],
        ['web: UDP 8080', ext('8.8.8.8'), pod('default/web'), udp(8080), false],
      ],
    );
  });

  test('named port (egress) towards selected pods', () => {
    const p = convertOne(
      '{podSelector: {matchLabels: {role: client}}, policyTypes: [Egress], egress: [{to: [{podSelector: {matchLabels: {role: web}}}], ports: [{port: http}]}]}',
    );
    const client = pod('default/client');
    check(
      'egress',
      [p],
      [
        ['to web on its http (8080)', client, pod('default/web'), tcp(8080), true],
        ['to web2 on its http (8081)', client, pod('default/web2'), tcp(8081), true],
        ['to web on 8081 (web2 number, not web)', client, pod('default/web'), tcp(8081), false],
        ['to db on 8080 (not selected)', client, pod('default/db'), tcp(8080), false],
        ['to web in another namespace', client, pod('alice/web'), tcp(8080), false],
      ],
    );
  });

  test('default deny: no rule matches, and the policy still selects the pod', () => {
    for (const name of ['default-deny-ingress', 'default-deny-all']) {
      const c = compile(doc(name));
      assert.equal(c.ingress, true);
      assert.equal(c.inbound.length, 0);
      assert.equal(world.selects(c, world.pod('default/db')), true);
      check(
        'ingress',
        [doc(name)],
        [
          ['a pod in the namespace', pod('default/frontend'), pod('default/db'), tcp(80), false],
          ['an outside address', ext('8.8.8.8'), pod('default/web'), tcp(8080), false],
        ],
      );
    }
    check(
      'egress',
      [doc('default-deny-all')],
      [['out to anywhere', pod('default/db'), ext('8.8.8.8'), tcp(53), false]],
    );
    check(
      'egress',
      [doc('default-deny-ingress')],
      [['egress not isolated', pod('default/db'), ext('8.8.8.8'), tcp(53), true]],
    );
    const empty = convertOne('{podSelector: {matchLabels: {role: db}}, policyTypes: [Ingress], ingress: []}');
    check(
      'ingress',
      [empty],
      [['ingress: [] denies', pod('default/frontend'), pod('default/db'), tcp(1), false]],
    );
  });

  test('allow-all wins over default deny (policies are a union)', () => {
    check(
      'ingress',
      [doc('default-deny-ingress'), doc('allow-all-ingress')],
      [
        ['a pod', pod('other/client'), pod('default/db'), tcp(80), true],
        ['an outside address', ext('8.8.8.8'), pod('default/db'), udp(53), true],
      ],
    );
    check(
      'egress',
      [doc('default-deny-egress'), doc('allow-all-egress')],
      [['anywhere', pod('default/db'), ext('8.8.8.8'), tcp(443), true]],
    );
    check(
      'ingress',
      [doc('default-deny-ingress'), doc('test-network-policy')],
      [
        ['frontend to db 6379', pod('default/frontend'), pod('default/db'), tcp(6379), true],
        ['frontend to web', pod('default/frontend'), pod('default/web'), tcp(6379), false],
      ],
    );
  });

  test('ports with no peers: those ports from anywhere; several protocols', () => {
    const p = convertOne(
      '{podSelector: {matchLabels: {role: db}}, ingress: [{ports: [{protocol: UDP, port: 53}, {port: 53}, {protocol: SCTP}]}]}',
    );
    const db = pod('default/db');
    check(
      'ingress',
      [p],
      [
        ['UDP 53 from outside', ext('8.8.8.8'), db, udp(53), true],
        ['TCP 53 from a pod elsewhere', pod('other/client'), db, tcp(53), true],
        ['TCP 54', ext('8.8.8.8'), db, tcp(54), false],
        ['SCTP any port', ext('8.8.8.8'), db, { protocol: 'sctp', port: 7777 }, true],
      ],
    );
  });

  test('matchExpressions select the same pods Kubernetes would', () => {
    const p = convertOne(`{podSelector: {matchLabels: {role: db}}, ingress: [{from: [{
      namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [default, other]}]},
      podSelector: {matchExpressions: [{key: role, operator: Exists}]}}]}]}`);
    const db = pod('default/db');
    check(
      'ingress',
      [p],
      [
        ['alice/client', pod('alice/client'), db, tcp(1), true],
        ['myproject/worker has no role', pod('myproject/worker'), db, tcp(1), false],
        ['other/client: namespace excluded', pod('other/client'), db, tcp(1), false],
        ['default/client: namespace excluded', pod('default/client'), db, tcp(1), false],
      ],
    );
  });
});

// ---------------------------------------------------------------------------------------------
// 3. Refusals

describe('bad input: refused whole, with resource and field; other documents unaffected', () => {
  const NP = (name: string, spec: string) =>
    `{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: ${name}, namespace: shop}, spec: ${spec}}`;
  const cases: [name: string, spec: string, field: string, message: RegExp][] = [
    [
      'bad-cidr',
      '{ingress: [{from: [{ipBlock: {cidr: 10.0.0.300/8}}]}]}',
      'spec.ingress[0].from[0].ipBlock.cidr',
      /not an IPv4 address/,
    ],
    [
      'bare-address',
      '{ingress: [{from: [{ipBlock: {cidr: 10.0.0.1}}]}]}',
      'spec.ingress[0].from[0].ipBlock.cidr',
      /not a CIDR/,
    ],
    [
      'bad-v6',
      '{ingress: [{from: [{ipBlock: {cidr: "fd00::zz/8"}}]}]}',
      'spec.ingress[0].from[0].ipBlock.cidr',
      /not a CIDR/,
    ],
    [
      'bad-except',
      '{egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/33]}}]}]}',
      'spec.egress[0].to[0].ipBlock.except[0]',
      /prefix length/,
    ],
    [
      'except-outside',
      '{ingress: [{from: [{ipBlock: {cidr: 172.17.0.0/16, except: [172.18.1.0/24]}}]}]}',
      'spec.ingress[0].from[0].ipBlock.except[0]',
      /not inside cidr 172\.17\.0\.0\/16/,
    ],
    [
      'except-equal',
      '{ingress: [{from: [{ipBlock: {cidr: 172.17.0.0/16, except: [172.17.0.0/16]}}]}]}',
      'spec.ingress[0].from[0].ipBlock.except[0]',
      /strict subset/,
    ],
    [
      'except-other-family',
      '{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: ["fd00::/16"]}}]}]}',
      'spec.ingress[0].from[0].ipBlock.except[0]',
      /not inside/,
    ],
    [
      'endport-below',
      '{egress: [{ports: [{port: 32768, endPort: 32000}]}]}',
      'spec.egress[0].ports[0].endPort',
      /less than port 32768/,
    ],
    [
      'endport-named',
      '{ingress: [{ports: [{port: http, endPort: 90}]}]}',
      'spec.ingress[0].ports[0].endPort',
      /named port/,
    ],
    [
      'endport-alone',
      '{ingress: [{ports: [{endPort: 90}]}]}',
      'spec.ingress[0].ports[0].endPort',
      /needs port/,
    ],
    [
      'endport-range',
      '{ingress: [{ports: [{port: 80, endPort: 70000}]}]}',
      'spec.ingress[0].ports[0].endPort',
      /out of range/,
    ],
    [
      'bad-protocol',
      '{ingress: [{ports: [{protocol: ICMP, port: 80}]}]}',
      'spec.ingress[0].ports[0].protocol',
      /unknown protocol "ICMP"/,
    ],
    [
      'lower-protocol',
      '{ingress: [{ports: [{protocol: tcp}]}]}',
      'spec.ingress[0].ports[0].protocol',
      /TCP, UDP or SCTP/,
    ],
    ['port-zero', '{ingress: [{ports: [{port: 0}]}]}', 'spec.ingress[0].ports[0].port', /out of range/],
    [
      'quoted-port',
      '{ingress: [{ports: [{port: "80"}]}]}',
      'spec.ingress[0].ports[0].port',
      /without quotes/,
    ],
    [
      'bad-port-name',
      '{ingress: [{ports: [{port: Web_Port}]}]}',
      'spec.ingress[0].ports[0].port',
      /not a port name/,
    ],
    [
      'empty-peer',
      '{ingress: [{from: [{}]}]}',
      'spec.ingress[0].from[0]',
      /needs podSelector, namespaceSelector or ipBlock/,
    ],
    [
      'ipblock-and-selector',
      '{egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}',
      'spec.egress[0].to[0].ipBlock',
      /separate peers/,
    ],
    [
      'typo-from',
      '{ingress: [{form: [{podSelector: {}}]}]}',
      'spec.ingress[0].form',
      /unknown field in an ingress rule/,
    ],
    [
      'to-in-ingress',
      '{ingress: [{to: [{podSelector: {}}]}]}',
      'spec.ingress[0].to',
      /unknown field in an ingress rule/,
    ],
    [
      'typo-matchlabels',
      '{podSelector: {matchLabel: {app: a}}}',
      'spec.podSelector.matchLabel',
      /unknown field in a label selector/,
    ],
    [
      'bad-operator',
      '{podSelector: {matchExpressions: [{key: a, operator: Equals, values: [b]}]}}',
      'spec.podSelector.matchExpressions[0].operator',
      /must be one of In, NotIn, Exists, DoesNotExist/,
    ],
    [
      'in-no-values',
      '{podSelector: {matchExpressions: [{key: a, operator: In}]}}',
      'spec.podSelector.matchExpressions[0].values',
      /at least one value/,
    ],
    [
      'exists-values',
      '{podSelector: {matchExpressions: [{key: a, operator: Exists, values: [b]}]}}',
      'spec.podSelector.matchExpressions[0].values',
      /takes no values/,
    ],
    [
      'bad-key',
      '{ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: "a b", operator: Exists}]}}]}]}',
      'spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].key',
      /invalid/,
    ],
    [
      'bad-label-value',
      '{podSelector: {matchLabels: {app: "a b"}}}',
      'spec.podSelector.matchLabels.app',
      /invalid/,
    ],
    [
      'quotes-value',
      `{podSelector: {matchLabels: {app: "it's"}}}`,
      'spec.podSelector.matchLabels.app',
      /invalid/,
    ],
    ['bad-policy-type', '{policyTypes: [Ingres]}', 'spec.policyTypes[0]', /must be one of Ingress, Egress/],
    ['twice-policy-type', '{policyTypes: [Ingress, Ingress]}', 'spec.policyTypes[1]', /listed twice/],
  ];
  const good = NP('good', '{podSelector: {matchLabels: {app: db}}, ingress: [{from: [{podSelector: {}}]}]}');
  const text = [
    '{apiVersion: v1, kind: Namespace, metadata: {name: shop}}',
    ...cases.flatMap(([name, spec], i) => (i === 3 ? [good, NP(name, spec)] : [NP(name, spec)])),
  ].join('\n---\n');
  const r = parse(text);

  test('the good documents in the same file are accepted', () => {
    assert.deepEqual(
      r.resources.map((x) => `${x.kind}/${x.namespace ?? ''}/${x.name}`),
      ['Namespace//shop', 'NetworkPolicy/shop/knp.default.good'],
    );
    assert.deepEqual(r.skipped, []);
  });

  for (const [name, , field, message] of cases) {
    test(`${name}: ${field}`, () => {
      const errs = r.errors.filter((e) => e.resource === `NetworkPolicy/shop/${name}`);
      assert.ok(errs.length > 0, `NetworkPolicy/shop/${name} refused`);
      assert.deepEqual(
        errs.map((e) => e.field),
        [field],
        `errors: ${JSON.stringify(errs.map((e) => `${e.field}: ${e.message}`))}`,
      );
      assert.match(errs[0]?.message ?? '', message);
      assert.equal(errs[0]?.origin.source, SOURCE);
    });
  }

  test('every error belongs to one of the bad documents', () => {
    const names = new Set(cases.map(([n]) => `NetworkPolicy/shop/${n}`));
    for (const e of r.errors)
      assert.ok(e.resource && names.has(e.resource), `unexpected error ${JSON.stringify(e)}`);
  });
});
