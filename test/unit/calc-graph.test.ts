// The calculation graph, driven only through feed Updates, checked only through the dataplane
// messages it emits: for node a-node1 of local cluster `a`, with remote cluster `b` in the mesh.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { CalculationGraph } from '../../agent/calc/graph.ts';
import type {
  ActivePolicy,
  CompiledEntity,
  DataplaneMessage,
  HostConfig,
  IpSetType,
  LocalEndpoint,
  MessageKind,
  MessageSink,
  Pool,
  RemoteBlockRoute,
  Vtep,
} from '../../agent/calc/messages.ts';
import { Sequencer } from '../../agent/calc/sequencer.ts';
import type { Update } from '../../proto/service.ts';
import {
  block,
  deletion,
  type EntityInit,
  hostEndpoint,
  namespace,
  node,
  policy,
  pool,
  profile,
  type RuleInit,
  tier,
  wep,
  wepKey,
} from '../helpers/feed-builders.ts';

const NODE = 'a-node1';

// --- a model of the dataplane, built only from the graph's messages ---------------------------

/**
 * What a dataplane holds after applying a message stream. `strict` (for the graph's raw stream)
 * fails on any message that does not fit the state: a delta to an unknown set, a member added twice
 * or removed while absent, a remove of something never announced. `checkDeps` (for the sequencer's
 * flushed stream) fails as soon as something is referenced while missing or removed while used:
 * exactly what would break an iptables-restore or leave a route to a missing neighbour.
 */
class DataplaneModel {
  readonly ipsets = new Map<string, { type: IpSetType; members: Set<string> }>();
  readonly policies = new Map<string, ActivePolicy>();
  readonly endpoints = new Map<string, LocalEndpoint>();
  readonly vteps = new Map<string, Vtep>();
  readonly routes = new Map<string, RemoteBlockRoute>();
  readonly pools = new Map<string, Pool>();
  host: HostConfig | undefined;
  inSync = false;

  constructor(readonly opts: { strict: boolean; checkDeps: boolean }) {}

  private fail(m: DataplaneMessage, why: string): never {
    assert.fail(`${why}: ${JSON.stringify(m)}`);
  }

  /**
   * A sequencer flush. The sequencer releases VTEP removes before route updates (a tunnel IP
   * may pass from a removed VTEP to a new one), so a route moving off a VTEP removed in the same
   * flush is re-pointed just after that remove: that one case is allowed.
   */
  applyFlush(ms: readonly DataplaneMessage[]): void {
    ms.forEach((m, i) => {
      const later = new Set<string>();
      if (m.kind === 'VTEPRemove')
        for (const n of ms.slice(i + 1))
          if (n.kind === 'RouteUpdate' && n.route.node !== m.node) later.add(n.route.dst);
      this.apply(m, later);
    });
  }

  apply(m: DataplaneMessage, movedLater: ReadonlySet<string> = new Set()): void {
    const { strict, checkDeps } = this.opts;
    switch (m.kind) {
      case 'IPSetUpdate':
        this.ipsets.set(m.id, { type: m.type, members: new Set(m.members) });
        return;
      case 'IPSetDelta': {
        const s = this.ipsets.get(m.id);
        if (!s) this.fail(m, 'delta to an ipset never created');
        for (const a of m.added) {
          if (strict && s.members.has(a)) this.fail(m, `member ${a} added twice`);
          s.members.add(a);
        }
        for (const r of m.removed) {
          if (!s.members.delete(r) && strict) this.fail(m, `member ${r} removed while absent`);
        }
        return;
      }
      case 'IPSetRemove':
        if (checkDeps) {
          for (const p of this.policies.values())
            if (policySets(p).has(m.id)) this.fail(m, `ipset removed while policy ${p.key} uses it`);
        }
        if (!this.ipsets.delete(m.id) && strict) this.fail(m, 'remove of an unknown ipset');
        return;
      case 'ActivePolicyUpdate':
        if (checkDeps) {
          for (const id of policySets(m.policy))
            if (!this.ipsets.has(id)) this.fail(m, `policy uses ipset ${id} before it exists`);
        }
        this.policies.set(m.policy.key, m.policy);
        return;
      case 'ActivePolicyRemove':
        if (checkDeps) {
          for (const e of this.endpoints.values())
            if (endpointPolicies(e).has(m.key)) this.fail(m, `policy removed while ${e.key} uses it`);
        }
        if (!this.policies.delete(m.key) && strict) this.fail(m, 'remove of an inactive policy');
        return;
      case 'EndpointUpdate':
        if (checkDeps) {
          for (const k of endpointPolicies(m.endpoint))
            if (!this.policies.has(k)) this.fail(m, `endpoint uses policy ${k} before it is active`);
        }
        this.endpoints.set(m.endpoint.key, m.endpoint);
        return;
      case 'EndpointRemove':
        if (!this.endpoints.delete(m.key) && strict) this.fail(m, 'remove of an unknown endpoint');
        return;
      case 'VTEPUpdate':
        if (m.vtep.node === NODE) this.fail(m, 'a VTEP for this node itself');
        this.vteps.set(m.vtep.node, m.vtep);
        return;
      case 'VTEPRemove':
        if (checkDeps) {
          for (const r of this.routes.values())
            if (r.node === m.node && !movedLater.has(r.dst))
              this.fail(m, `VTEP removed while route ${r.dst} uses it`);
        }
        if (!this.vteps.delete(m.node) && strict) this.fail(m, 'remove of an unknown VTEP');
        return;
      case 'RouteUpdate':
        // This node's own block is a blackhole route: it needs no VTEP.
        if (!m.route.local && !this.vteps.has(m.route.node)) this.fail(m, 'route before its VTEP');
        this.routes.set(m.route.dst, m.route);
        return;
      case 'RouteRemove':
        if (!this.routes.delete(m.dst) && strict) this.fail(m, 'remove of an unknown route');
        return;
      case 'PoolUpdate':
        this.pools.set(m.pool.cidr, m.pool);
        return;
      case 'PoolRemove':
        if (!this.pools.delete(m.cidr) && strict) this.fail(m, 'remove of an unknown pool');
        return;
      case 'HostConfigUpdate':
        this.host = m.config;
        return;
      case 'InSync':
        this.inSync = true;
        return;
    }
  }

  /** Dangling references in the current state (empty when consistent). */
  dangling(): string[] {
    const out: string[] = [];
    for (const p of this.policies.values())
      for (const id of policySets(p)) if (!this.ipsets.has(id)) out.push(`${p.key} → ipset ${id}`);
    for (const e of this.endpoints.values())
      for (const k of endpointPolicies(e)) if (!this.policies.has(k)) out.push(`${e.key} → policy ${k}`);
    for (const r of this.routes.values())
      if (!r.local && !this.vteps.has(r.node)) out.push(`${r.dst} → VTEP ${r.node}`);
    return out;
  }

  /**
   * A plain, order-independent picture of the state, for deepEqual; `referencedOnly`: only the
   * ipsets some policy uses (a graph that parks dormant sets leaves others in the dataplane).
   */
  snapshot(referencedOnly = false) {
    const sorted = <T>(m: Map<string, T>, f: (v: T) => unknown = (v) => v) =>
      [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => [k, f(v)]);
    const used = new Set([...this.policies.values()].flatMap((p) => [...policySets(p)]));
    const ipsets = referencedOnly ? new Map([...this.ipsets].filter(([id]) => used.has(id))) : this.ipsets;
    return {
      ipsets: sorted(ipsets, (s) => ({ type: s.type, members: [...s.members].sort() })),
      policies: sorted(this.policies),
      endpoints: sorted(this.endpoints),
      vteps: sorted(this.vteps),
      routes: sorted(this.routes),
      pools: sorted(this.pools),
    };
  }
}

function entitySets(e: CompiledEntity): string[] {
  return [...e.ipSets, ...e.notIpSets, ...e.namedPortIpSets];
}

function policySets(p: ActivePolicy): Set<string> {
  const s = new Set<string>();
  for (const r of [...p.inbound, ...p.outbound])
    for (const id of [...entitySets(r.src), ...entitySets(r.dst)]) s.add(id);
  return s;
}

function endpointPolicies(e: LocalEndpoint): Set<string> {
  return new Set([...e.ingress, ...e.egress].flatMap((t) => t.policies));
}

/** A sink that keeps every message (raw, in emission order) and a strict model of their effect. */
class Recorder implements MessageSink {
  all: DataplaneMessage[] = [];
  private mark = 0;
  readonly model = new DataplaneModel({ strict: true, checkDeps: false });
  send(m: DataplaneMessage): void {
    this.all.push(m);
    this.model.apply(m);
  }
  /** Messages since the last call. */
  take(): DataplaneMessage[] {
    const out = this.all.slice(this.mark);
    this.mark = this.all.length;
    return out;
  }
}

function newGraph(parkSetsMin?: number): {
  g: CalculationGraph;
  rec: Recorder;
  feed: (...us: Update[]) => DataplaneMessage[];
} {
  const rec = new Recorder();
  const g = new CalculationGraph({ nodeName: NODE, localCluster: 'a', parkSetsMin }, rec);
  const feed = (...us: Update[]) => {
    rec.take();
    for (const u of us) g.onUpdate(u);
    return rec.take();
  };
  return { g, rec, feed };
}

const kinds = (ms: readonly DataplaneMessage[]): MessageKind[] => ms.map((m) => m.kind);
const ofKind = <K extends MessageKind>(ms: readonly DataplaneMessage[], k: K) =>
  ms.filter((m): m is Extract<DataplaneMessage, { kind: K }> => m.kind === k);

function members(rec: Recorder, id: string): string[] {
  const s = rec.model.ipsets.get(id);
  assert.ok(s, `ipset ${id} exists`);
  return [...s.members].sort();
}

/** The ipset id of a policy's rule (first selector set of the rule's side). */
function ruleSet(
  rec: Recorder,
  key: string,
  dir: 'inbound' | 'outbound',
  i: number,
  side: 'src' | 'dst',
): string {
  const p = rec.model.policies.get(key);
  assert.ok(p, `policy ${key} is active`);
  const r = p[dir][i];
  assert.ok(r, `${key} ${dir}[${i}] exists`);
  const id = r[side].ipSets[0] ?? r[side].namedPortIpSets[0];
  assert.ok(id, `${key} ${dir}[${i}].${side} uses an ipset`);
  return id;
}

const egressAllowTo = (destination: EntityInit): RuleInit => ({
  action: 'Allow',
  protocol: 'TCP',
  destination,
});

// --- rule selectors across clusters -------------------------------------------------------------

describe('rule selector ipsets across clusters', () => {
  const setup = () => {
    const t = newGraph();
    t.feed(
      namespace('shop', { team: 'web' }),
      namespace('shop', { team: 'web' }, { cluster: 'b' }),
      namespace('other', {}, { cluster: 'b' }),
      wep({ node: NODE, namespace: 'shop', pod: 'web-1', ips: ['10.10.0.5'], labels: { app: 'web' } }),
      // Local, on another node of cluster a.
      wep({ node: 'a-node2', namespace: 'shop', pod: 'db-1', ips: ['10.10.1.6'], labels: { app: 'db' } }),
      // Remote, same namespace name.
      wep({
        cluster: 'b',
        node: 'b-node1',
        namespace: 'shop',
        pod: 'db-2',
        ips: ['10.20.0.7'],
        labels: { app: 'db' },
      }),
      // Remote and local, other namespace: outside the namespaced policy's reach.
      wep({
        cluster: 'b',
        node: 'b-node1',
        namespace: 'other',
        pod: 'db-3',
        ips: ['10.20.0.8'],
        labels: { app: 'db' },
      }),
      wep({ node: 'a-node2', namespace: 'other', pod: 'db-4', ips: ['10.10.1.9'], labels: { app: 'db' } }),
      // Local, matching namespace, not matching label.
      wep({
        node: 'a-node2',
        namespace: 'shop',
        pod: 'cache-1',
        ips: ['10.10.1.10'],
        labels: { app: 'cache' },
      }),
    );
    const out = t.feed(
      policy({
        name: 'frontend-to-db',
        namespace: 'shop',
        selector: "app == 'web'",
        types: ['Egress'],
        egress: [egressAllowTo({ selector: "app == 'db'", ports: [5432] })],
      }),
    );
    const id = ruleSet(t.rec, 'default/shop/frontend-to-db', 'outbound', 0, 'dst');
    return { ...t, out, id };
  };

  it('holds the IPs of matching local and remote endpoints of the policy namespace', () => {
    const { rec, out, id } = setup();
    const created = ofKind(out, 'IPSetUpdate').find((m) => m.id === id);
    assert.ok(created, 'the rule ipset is announced');
    assert.equal(created.type, 'hash:net');
    assert.deepEqual(members(rec, id), ['10.10.1.6/32', '10.20.0.7/32']);
    const ep = rec.model.endpoints.get(wepKey({ node: NODE, namespace: 'shop', pod: 'web-1' }));
    assert.deepEqual(ep?.egress, [{ tier: 'default', policies: ['default/shop/frontend-to-db'] }]);
    assert.deepEqual(ep?.ingress, []);
  });

  it("a remote endpoint's label change adds and removes its IP with IPSetDeltas", () => {
    const { feed, rec, id } = setup();
    const db2 = { cluster: 'b', node: 'b-node1', namespace: 'shop', pod: 'db-2', ips: ['10.20.0.7'] };
    let out = feed(wep({ ...db2, labels: { app: 'cache' } }));
    assert.deepEqual(out, [{ kind: 'IPSetDelta', id, added: [], removed: ['10.20.0.7/32'] }]);
    assert.deepEqual(members(rec, id), ['10.10.1.6/32']);
    out = feed(wep({ ...db2, labels: { app: 'db' } }));
    assert.deepEqual(out, [{ kind: 'IPSetDelta', id, added: ['10.20.0.7/32'], removed: [] }]);
    // A new remote address replaces the old one in one delta.
    out = feed(wep({ ...db2, ips: ['10.20.0.17'], labels: { app: 'db' } }));
    assert.deepEqual(out, [{ kind: 'IPSetDelta', id, added: ['10.20.0.17/32'], removed: ['10.20.0.7/32'] }]);
    out = feed(deletion(wep({ ...db2, labels: {} })));
    assert.deepEqual(out, [{ kind: 'IPSetDelta', id, added: [], removed: ['10.20.0.17/32'] }]);
    assert.deepEqual(members(rec, id), ['10.10.1.6/32']);
  });

  it('a remote endpoint moving into the policy namespace starts matching (namespace scoping)', () => {
    const { feed, rec, id } = setup();
    // db-3 lives in b/other: not matched. The same pod name in b/shop is.
    assert.ok(!members(rec, id).includes('10.20.0.8/32'));
    const out = feed(
      wep({
        cluster: 'b',
        node: 'b-node1',
        namespace: 'shop',
        pod: 'db-3',
        ips: ['10.20.0.8'],
        labels: { app: 'db' },
      }),
    );
    assert.deepEqual(out, [{ kind: 'IPSetDelta', id, added: ['10.20.0.8/32'], removed: [] }]);
  });

  it('an endpoint shared IP stays while another matching endpoint still has it', () => {
    const { feed, rec, id } = setup();
    // A second remote endpoint with the same address (say, mid-migration): the member is counted.
    const twin = wep({
      cluster: 'b',
      node: 'b-node2',
      namespace: 'shop',
      pod: 'db-9',
      ips: ['10.20.0.7'],
      labels: { app: 'db' },
    });
    assert.deepEqual(feed(twin), []);
    assert.deepEqual(feed(deletion(twin)), []);
    assert.deepEqual(members(rec, id), ['10.10.1.6/32', '10.20.0.7/32']);
  });

  it('a global policy rule selector spans every namespace and cluster', () => {
    const { feed, rec } = setup();
    feed(
      policy({
        name: 'all-db',
        selector: "app == 'web'",
        types: ['Egress'],
        egress: [egressAllowTo({ selector: "app == 'db'" })],
      }),
    );
    const id = ruleSet(rec, 'default/all-db', 'outbound', 0, 'dst');
    assert.deepEqual(members(rec, id), ['10.10.1.6/32', '10.10.1.9/32', '10.20.0.7/32', '10.20.0.8/32']);
  });

  it('the implicit cluster label lets a rule select one cluster', () => {
    const { feed, rec } = setup();
    feed(
      policy({
        name: 'db-in-b',
        namespace: 'shop',
        selector: "app == 'web'",
        types: ['Egress'],
        egress: [egressAllowTo({ selector: "app == 'db' && fedmesh.io/cluster == 'b'" })],
      }),
    );
    assert.deepEqual(members(rec, ruleSet(rec, 'default/shop/db-in-b', 'outbound', 0, 'dst')), [
      '10.20.0.7/32',
    ]);
  });
});

describe('namespaceSelector matches namespace labels from kns profiles', () => {
  const setup = () => {
    const t = newGraph();
    t.feed(
      namespace('shop', { team: 'web' }),
      namespace('data', { team: 'data' }),
      namespace('data', { team: 'data' }, { cluster: 'b' }),
      namespace('legacy', { team: 'data' }, { cluster: 'b' }),
      wep({ node: NODE, namespace: 'shop', pod: 'web-1', ips: ['10.10.0.5'], labels: { app: 'web' } }),
      wep({ node: 'a-node2', namespace: 'data', pod: 'db-1', ips: ['10.10.1.6'], labels: { app: 'db' } }),
      wep({
        cluster: 'b',
        node: 'b-node1',
        namespace: 'data',
        pod: 'db-2',
        ips: ['10.20.0.7'],
        labels: { app: 'db' },
      }),
      wep({
        cluster: 'b',
        node: 'b-node1',
        namespace: 'legacy',
        pod: 'db-3',
        ips: ['10.20.0.8'],
        labels: { app: 'db' },
      }),
      // b/kns.nolabels is never sent: the endpoint's namespace has no labels.
      wep({
        cluster: 'b',
        node: 'b-node1',
        namespace: 'nolabels',
        pod: 'db-4',
        ips: ['10.20.0.9'],
        labels: { app: 'db' },
      }),
    );
    t.feed(
      policy({
        name: 'web-to-data',
        namespace: 'shop',
        selector: "app == 'web'",
        types: ['Egress'],
        egress: [egressAllowTo({ namespaceSelector: "team == 'data'", selector: "app == 'db'" })],
      }),
    );
    return { ...t, id: ruleSet(t.rec, 'default/shop/web-to-data', 'outbound', 0, 'dst') };
  };

  it('selects endpoints of every cluster whose namespace has the labels', () => {
    const { rec, id } = setup();
    assert.deepEqual(members(rec, id), ['10.10.1.6/32', '10.20.0.7/32', '10.20.0.8/32']);
  });

  it("a remote namespace's label change (b/kns.<ns>) re-evaluates only that cluster's endpoints", () => {
    const { feed, rec, id } = setup();
    let out = feed(namespace('data', { team: 'archive' }, { cluster: 'b' }));
    assert.deepEqual(out, [{ kind: 'IPSetDelta', id, added: [], removed: ['10.20.0.7/32'] }]);
    assert.deepEqual(members(rec, id), ['10.10.1.6/32', '10.20.0.8/32']);
    out = feed(namespace('nolabels', { team: 'data' }, { cluster: 'b' }));
    assert.deepEqual(out, [{ kind: 'IPSetDelta', id, added: ['10.20.0.9/32'], removed: [] }]);
    out = feed(deletion(namespace('legacy', {}, { cluster: 'b' })));
    assert.deepEqual(out, [{ kind: 'IPSetDelta', id, added: [], removed: ['10.20.0.8/32'] }]);
  });

  it('namespace labels are inherited as pcns.<key> labels that a plain selector can use', () => {
    const { feed, rec } = setup();
    feed(
      policy({
        name: 'pcns',
        selector: "app == 'web'",
        types: ['Egress'],
        egress: [egressAllowTo({ selector: "pcns.team == 'data'" })],
      }),
    );
    assert.deepEqual(members(rec, ruleSet(rec, 'default/pcns', 'outbound', 0, 'dst')), [
      '10.10.1.6/32',
      '10.20.0.7/32',
      '10.20.0.8/32',
    ]);
  });

  it('namespaceSelector all() means any namespaced endpoint, in any namespace', () => {
    const { feed, rec } = setup();
    feed(
      policy({
        name: 'any-ns',
        namespace: 'shop',
        selector: "app == 'web'",
        types: ['Egress'],
        egress: [egressAllowTo({ namespaceSelector: 'all()', selector: "app == 'db'" })],
      }),
    );
    assert.deepEqual(members(rec, ruleSet(rec, 'default/shop/any-ns', 'outbound', 0, 'dst')), [
      '10.10.1.6/32',
      '10.20.0.7/32',
      '10.20.0.8/32',
      '10.20.0.9/32',
    ]);
  });
});

// --- policy activation ------------------------------------------------------------------------

describe('policy activation', () => {
  const api = (o: { node?: string; cluster?: string; app: string }) =>
    wep({
      node: o.node ?? NODE,
      cluster: o.cluster,
      namespace: 'shop',
      pod: `api-${o.cluster ?? 'a'}-${o.node ?? NODE}`,
      ips: [o.cluster === 'b' ? '10.20.0.3' : o.node ? '10.10.1.3' : '10.10.0.3'],
      labels: { app: o.app },
    });
  const apiPolicy = policy({
    name: 'api-in',
    namespace: 'shop',
    selector: "app == 'api'",
    ingress: [
      {
        action: 'Allow',
        protocol: 'TCP',
        source: { selector: "role == 'client'" },
        destination: { ports: [443] },
      },
    ],
  });

  it('a policy selecting no local endpoint emits nothing, even when remote or other-node endpoints match', () => {
    const { feed } = newGraph();
    feed(api({ app: 'other' }));
    assert.deepEqual(feed(apiPolicy), []);
    // The main selector only ever selects this node's endpoints.
    assert.deepEqual(kinds(feed(api({ cluster: 'b', node: 'b-node1', app: 'api' }))), []);
    assert.deepEqual(kinds(feed(api({ node: 'a-node2', app: 'api' }))), []);
  });

  it('starts with the first matching local endpoint (ipsets, policy, endpoint in order) and ends with the last', () => {
    const { feed, rec } = newGraph();
    feed(api({ app: 'other' }), apiPolicy);
    let out = feed(api({ app: 'api' }));
    assert.deepEqual(kinds(out), ['IPSetUpdate', 'ActivePolicyUpdate', 'EndpointUpdate']);
    const ep = ofKind(out, 'EndpointUpdate')[0]!.endpoint;
    assert.deepEqual(ep.ingress, [{ tier: 'default', policies: ['default/shop/api-in'] }]);
    assert.deepEqual(ep.egress, []);
    const id = ruleSet(rec, 'default/shop/api-in', 'inbound', 0, 'src');
    assert.equal(ofKind(out, 'IPSetUpdate')[0]!.id, id);

    out = feed(api({ app: 'other' }));
    assert.deepEqual(out.map((m) => m.kind).sort(), ['ActivePolicyRemove', 'EndpointUpdate', 'IPSetRemove']);
    assert.deepEqual(ofKind(out, 'ActivePolicyRemove')[0]!.key, 'default/shop/api-in');
    assert.deepEqual(ofKind(out, 'IPSetRemove')[0]!.id, id);
    assert.deepEqual(ofKind(out, 'EndpointUpdate')[0]!.endpoint.ingress, []);
    assert.equal(rec.model.policies.size, 0);
    assert.equal(rec.model.ipsets.size, 0);
  });

  it('deleting the last selected endpoint or the policy itself deactivates it', () => {
    const { feed, rec } = newGraph();
    const ep = api({ app: 'api' });
    feed(ep, apiPolicy);
    assert.equal(rec.model.policies.size, 1);
    let out = feed(deletion(ep));
    // Its two profiles (kns, ksa) are no longer named by any local endpoint either.
    assert.deepEqual(out.map((m) => m.kind).sort(), [
      'ActivePolicyRemove',
      'ActiveProfileRemove',
      'ActiveProfileRemove',
      'EndpointRemove',
      'IPSetRemove',
    ]);
    feed(ep);
    out = feed(deletion(apiPolicy));
    assert.deepEqual(out.map((m) => m.kind).sort(), ['ActivePolicyRemove', 'EndpointUpdate', 'IPSetRemove']);
    assert.deepEqual(rec.model.snapshot().ipsets, []);
  });

  it('two active policies sharing a rule selector share one ipset until both are gone', () => {
    const { feed, rec } = newGraph();
    const rule: RuleInit = { action: 'Allow', source: { selector: "role == 'client'" } };
    feed(
      wep({ node: NODE, namespace: 'shop', pod: 'x', ips: ['10.10.0.8'], labels: { app: 'api' } }),
      wep({
        cluster: 'b',
        node: 'b-node1',
        namespace: 'shop',
        pod: 'c',
        ips: ['10.20.0.4'],
        labels: { role: 'client' },
      }),
    );
    feed(policy({ name: 'one', selector: "app == 'api'", ingress: [rule] }));
    const out = feed(policy({ name: 'two', selector: 'all()', ingress: [rule] }));
    assert.deepEqual(ofKind(out, 'IPSetUpdate'), [], 'the shared set is not announced again');
    const id = ruleSet(rec, 'default/one', 'inbound', 0, 'src');
    assert.equal(ruleSet(rec, 'default/two', 'inbound', 0, 'src'), id);
    assert.deepEqual(ofKind(feed(deletion(policy({ name: 'one' }))), 'IPSetRemove'), []);
    assert.deepEqual(members(rec, id), ['10.20.0.4/32']);
    assert.deepEqual(ofKind(feed(deletion(policy({ name: 'two' }))), 'IPSetRemove'), [
      { kind: 'IPSetRemove', id },
    ]);
  });
  it('a policy coming back announces its set with the members it has now, whatever changed while it was away', () => {
    const { feed, rec } = newGraph();
    const client = (pod: string, ip: string, role: string) =>
      wep({ cluster: 'b', node: 'b-node1', namespace: 'shop', pod, ips: [ip], labels: { role } });
    feed(
      client('c1', '10.20.0.4', 'client'),
      client('c2', '10.20.0.5', 'client'),
      client('c3', '10.20.0.6', 'other'),
      api({ app: 'api' }),
      apiPolicy,
    );
    const id = ruleSet(rec, 'default/shop/api-in', 'inbound', 0, 'src');
    assert.deepEqual(members(rec, id), ['10.20.0.4/32', '10.20.0.5/32']);
    // Away: the set leaves the dataplane...
    assert.deepEqual(ofKind(feed(api({ app: 'other' })), 'IPSetRemove'), [{ kind: 'IPSetRemove', id }]);
    // ...while its members change: one leaves, one comes, one goes and comes back, one is deleted.
    for (const u of [
      client('c1', '10.20.0.4', 'other'),
      client('c3', '10.20.0.6', 'client'),
      client('c2', '10.20.0.5', 'other'),
      client('c2', '10.20.0.5', 'client'),
      client('c4', '10.20.0.7', 'client'),
      deletion(client('c4', '10.20.0.7', 'client')),
    ])
      assert.deepEqual(ofKind(feed(u), 'IPSetDelta'), [], 'no delta for a set the dataplane does not hold');
    // Back: announced whole, with what a graph fed only the final state would announce.
    const [update] = ofKind(feed(api({ app: 'api' })), 'IPSetUpdate');
    assert.deepEqual([...update!.members].sort(), ['10.20.0.5/32', '10.20.0.6/32']);
    const fresh = newGraph();
    fresh.feed(
      client('c1', '10.20.0.4', 'other'),
      client('c2', '10.20.0.5', 'client'),
      client('c3', '10.20.0.6', 'client'),
      api({ app: 'api' }),
      apiPolicy,
    );
    assert.deepEqual(rec.model.snapshot(), fresh.rec.model.snapshot());
  });
});

// --- tiers and order --------------------------------------------------------------------------

describe("an endpoint's policies in Calico's order", () => {
  it('orders tiers, then order ascending with no order last, then name; Egress-only policies stay out of ingress', () => {
    const { feed, rec } = newGraph();
    const key = wepKey({ node: NODE, namespace: 'shop', pod: 'web-1' });
    feed(wep({ node: NODE, namespace: 'shop', pod: 'web-1', ips: ['10.10.0.5'], labels: { app: 'web' } }));
    const allow: RuleInit[] = [{ action: 'Allow' }];
    feed(
      policy({ name: 'aa-no-order', selector: 'all()', ingress: allow }),
      policy({ name: 'zz-order-10', namespace: 'shop', order: 10, selector: "app == 'web'", ingress: allow }),
      policy({ name: 'bb-order-20', order: 20, selector: 'all()', ingress: allow }),
      policy({ name: 'cc-order-20', order: 20, selector: 'all()', ingress: allow }),
      policy({ name: 'egress-only', order: 1, selector: 'all()', types: ['Egress'], egress: allow }),
      policy({
        name: 'both',
        order: 15,
        selector: 'all()',
        types: ['Ingress', 'Egress'],
        ingress: allow,
        egress: allow,
      }),
      tier('security', 100),
      policy({ name: 'sec', tier: 'security', order: 500, selector: 'all()', ingress: [{ action: 'Pass' }] }),
    );
    const ep = rec.model.endpoints.get(key);
    assert.deepEqual(ep?.ingress, [
      { tier: 'security', policies: ['security/sec'] },
      {
        tier: 'default',
        policies: [
          'default/shop/zz-order-10',
          'default/both',
          'default/bb-order-20',
          'default/cc-order-20',
          'default/aa-no-order',
        ],
      },
    ]);
    assert.deepEqual(ep?.egress, [{ tier: 'default', policies: ['default/egress-only', 'default/both'] }]);

    // A change of order moves the policy.
    feed(policy({ name: 'aa-no-order', order: 1, selector: 'all()', ingress: allow }));
    assert.deepEqual(rec.model.endpoints.get(key)?.ingress[1]?.policies[0], 'default/aa-no-order');
    // A change of tier re-keys it; the old key is removed.
    const out = feed(
      policy({ name: 'aa-no-order', tier: 'security', order: 1, selector: 'all()', ingress: allow }),
    );
    assert.ok(ofKind(out, 'ActivePolicyRemove').some((m) => m.key === 'default/aa-no-order'));
    assert.deepEqual(rec.model.endpoints.get(key)?.ingress[0], {
      tier: 'security',
      policies: ['security/aa-no-order', 'security/sec'],
    });
    assert.deepEqual(rec.model.dangling(), []);
  });
});

// --- profile label inheritance ----------------------------------------------------------------

describe('profile label inheritance', () => {
  const setup = () => {
    const t = newGraph();
    t.feed(
      profile('env-prod', { env: 'prod', app: 'from-profile' }),
      wep({
        node: NODE,
        namespace: 'shop',
        pod: 'web-1',
        ips: ['10.10.0.5'],
        labels: { app: 'web' },
        profiles: ['kns.shop', 'env-prod'],
      }),
      wep({
        cluster: 'b',
        node: 'b-node1',
        namespace: 'shop',
        pod: 'db-1',
        ips: ['10.20.0.7'],
        labels: { app: 'db' },
        profiles: ['kns.shop', 'env-prod'],
      }),
      profile('env-prod', { env: 'prod' }, { cluster: 'b' }),
    );
    t.feed(
      policy({
        name: 'prod',
        selector: "env == 'prod'",
        types: ['Egress'],
        egress: [
          { action: 'Allow', destination: { selector: "env == 'prod'" } },
          { action: 'Deny', destination: { selector: "app == 'from-profile'" } },
        ],
      }),
    );
    return t;
  };
  const webKey = wepKey({ node: NODE, namespace: 'shop', pod: 'web-1' });

  it("a profile's labels reach policy and rule selectors; the endpoint's own labels win", () => {
    const { rec } = setup();
    assert.deepEqual(rec.model.endpoints.get(webKey)?.egress, [
      { tier: 'default', policies: ['default/prod'] },
    ]);
    // The remote endpoint inherits from b/env-prod, not from the local profile of the same name.
    assert.deepEqual(members(rec, ruleSet(rec, 'default/prod', 'outbound', 0, 'dst')), [
      '10.10.0.5/32',
      '10.20.0.7/32',
    ]);
    assert.deepEqual(members(rec, ruleSet(rec, 'default/prod', 'outbound', 1, 'dst')), []);
  });

  it("changing a profile's labels re-evaluates the endpoints that name it", () => {
    const { feed, rec } = setup();
    const id = ruleSet(rec, 'default/prod', 'outbound', 0, 'dst');
    let out = feed(profile('env-prod', { env: 'dev' }, { cluster: 'b' }));
    assert.deepEqual(out, [{ kind: 'IPSetDelta', id, added: [], removed: ['10.20.0.7/32'] }]);
    out = feed(profile('env-prod', { env: 'dev' }));
    assert.deepEqual(ofKind(out, 'ActivePolicyRemove'), [
      { kind: 'ActivePolicyRemove', key: 'default/prod' },
    ]);
    assert.equal(ofKind(out, 'IPSetRemove').length, 2);
    assert.equal(rec.model.ipsets.size, 0);
    assert.deepEqual(rec.model.endpoints.get(webKey)?.egress, []);
    out = feed(profile('env-prod', { env: 'prod' }));
    assert.ok(ofKind(out, 'ActivePolicyUpdate').length === 1);
    assert.deepEqual(members(rec, ruleSet(rec, 'default/prod', 'outbound', 0, 'dst')), ['10.10.0.5/32']);
    feed(deletion(profile('env-prod', {})));
    assert.deepEqual(rec.model.policies.size, 0);
  });
});

// --- bad input --------------------------------------------------------------------------------

describe('bad input is refused and the last good state stays', () => {
  const web = wep({
    node: NODE,
    namespace: 'shop',
    pod: 'web-1',
    ips: ['10.10.0.5'],
    labels: { app: 'web' },
  });
  const good = policy({
    name: 'p',
    namespace: 'shop',
    selector: "app == 'web'",
    types: ['Egress'],
    egress: [egressAllowTo({ selector: "app == 'db'" })],
  });

  it('a policy with an unparsable selector is refused with the field and emits nothing', () => {
    const { g, feed } = newGraph();
    feed(web);
    const bad = policy({ name: 'p', namespace: 'shop', selector: "app == 'web' &&" });
    assert.deepEqual(feed(bad), []);
    assert.equal(g.refused.length, 1);
    assert.equal(g.refused[0]?.key, 'policy/shop/p');
    assert.equal(g.refused[0]?.kind, 'POLICY');
    assert.match(g.refused[0]?.reason ?? '', /spec\.selector/);
  });

  it('a bad new version of an active policy keeps the previous version in effect', () => {
    const { g, feed, rec } = newGraph();
    feed(web, good);
    const before = rec.model.snapshot();
    const badRule = policy({
      name: 'p',
      namespace: 'shop',
      selector: 'all()',
      types: ['Egress'],
      egress: [egressAllowTo({ selector: "app in {'db'" })],
    });
    assert.deepEqual(feed(badRule), []);
    assert.match(g.refused.at(-1)?.reason ?? '', /spec\.egress\[0\]\.destination\.selector/);
    assert.deepEqual(feed(policy({ name: 'p', namespace: 'shop', selector: '!!' })), []);
    assert.deepEqual(rec.model.snapshot(), before);
    // A later good version still applies, and a delete still finds the policy.
    assert.equal(ofKind(feed(good), 'ActivePolicyUpdate').length, 1);
    assert.ok(ofKind(feed(deletion(good)), 'ActivePolicyRemove').length === 1);
  });

  it('a policy from a remote cluster is refused: policies are never federated', () => {
    const { g, feed, rec } = newGraph();
    feed(web);
    const remote = policy({ cluster: 'b', name: 'evil', selector: 'all()', ingress: [{ action: 'Deny' }] });
    assert.equal(remote.key, 'b/globalpolicy/evil');
    assert.deepEqual(feed(remote), []);
    assert.equal(g.refused[0]?.key, 'b/globalpolicy/evil');
    assert.match(g.refused[0]?.reason ?? '', /federated/);
    assert.equal(rec.model.policies.size, 0);
    assert.deepEqual(feed(deletion(remote)), []);
  });

  it('a workload endpoint with a malformed CIDR is refused; the rest of the batch applies', () => {
    const { g, feed, rec } = newGraph();
    feed(web, good);
    const id = ruleSet(rec, 'default/shop/p', 'outbound', 0, 'dst');
    const badDb = wep({
      node: 'a-node2',
      namespace: 'shop',
      pod: 'db-1',
      ips: ['10.10.1.300/32'],
      labels: { app: 'db' },
    });
    const goodDb = wep({
      cluster: 'b',
      node: 'b-node1',
      namespace: 'shop',
      pod: 'db-2',
      ips: ['10.20.0.7'],
      labels: { app: 'db' },
    });
    const local2 = wep({
      node: NODE,
      namespace: 'shop',
      pod: 'web-2',
      ips: ['10.10.0.6'],
      labels: { app: 'web' },
    });
    feed(badDb, goodDb, local2);
    assert.deepEqual(
      g.refused.map((r) => [r.key, r.kind]),
      [[badDb.key, 'WORKLOAD_ENDPOINT']],
    );
    assert.match(g.refused[0]!.reason, /10\.10\.1\.300/);
    assert.deepEqual(members(rec, id), ['10.20.0.7/32']);
    assert.deepEqual(rec.model.endpoints.get(local2.key)?.egress, [
      { tier: 'default', policies: ['default/shop/p'] },
    ]);
    // A malformed update of a known endpoint keeps its last good address.
    feed(
      wep({
        cluster: 'b',
        node: 'b-node1',
        namespace: 'shop',
        pod: 'db-2',
        ips: ['10.20.0/24'],
        labels: { app: 'db' },
      }),
    );
    assert.equal(g.refused.length, 2);
    assert.deepEqual(members(rec, id), ['10.20.0.7/32']);
  });

  it('a refused local endpoint (no interface name) leaves ipsets as they were', () => {
    const { g, feed, rec } = newGraph();
    const db = { node: NODE, namespace: 'shop', pod: 'db-1', labels: { app: 'db' } };
    feed(web, good, wep({ ...db, ips: ['10.10.0.6'] }));
    const id = ruleSet(rec, 'default/shop/p', 'outbound', 0, 'dst');
    assert.deepEqual(members(rec, id), ['10.10.0.6/32']);
    const out = feed(wep({ ...db, ips: ['10.10.0.9'], interfaceName: '' }));
    assert.equal(g.refused.length, 1);
    assert.match(g.refused[0]!.reason, /interfaceName/);
    assert.deepEqual(out, [], 'a refused update changes nothing');
    assert.deepEqual(members(rec, id), ['10.10.0.6/32']);
  });
});

// --- overlay ----------------------------------------------------------------------------------

describe('overlay: VTEPs, routes, pools and host config', () => {
  const nodes = {
    self: node({ name: NODE, ip: '192.168.100.11', tunnelIp: '10.10.0.0', mac: '66:aa:00:00:00:01' }),
    a2: node({ name: 'a-node2', ip: '192.168.100.12', tunnelIp: '10.10.1.0', mac: '66:aa:00:00:00:02' }),
    b1: node({
      cluster: 'b',
      name: 'b-node1',
      ip: '192.168.100.21',
      tunnelIp: '10.20.0.0',
      mac: '66:bb:00:00:00:01',
    }),
  };
  const blocks = {
    self: block({ cidr: '10.10.0.0/26', node: NODE }),
    a2: block({ cidr: '10.10.1.0/26', node: 'a-node2' }),
    b1: block({ cluster: 'b', cidr: '10.20.0.0/26', node: 'b-node1' }),
    b1b: block({ cluster: 'b', cidr: '10.20.0.64/26', node: 'b-node1' }),
  };

  it("this node's own Node gives HostConfigUpdate and never a VTEP", () => {
    const { feed, rec } = newGraph();
    assert.deepEqual(feed(nodes.self), [
      {
        kind: 'HostConfigUpdate',
        config: { node: NODE, nodeIp: '192.168.100.11', tunnelIp: '10.10.0.0', vtepMac: '66:aa:00:00:00:01' },
      },
    ]);
    // Our own block: a blackhole route (Felix), needing no VTEP.
    assert.deepEqual(feed(blocks.self), [
      { kind: 'RouteUpdate', route: { dst: '10.10.0.0/26', node: NODE, cluster: 'a', local: true } },
    ]);
    assert.equal(rec.model.vteps.size, 0);
  });

  it('every other node of both clusters becomes a VTEP; a route waits for its VTEP', () => {
    const { feed, rec } = newGraph();
    feed(nodes.self);
    assert.deepEqual(feed(blocks.b1), [], 'no VTEP for b-node1 yet');
    let out = feed(nodes.a2);
    assert.deepEqual(out, [
      {
        kind: 'VTEPUpdate',
        vtep: {
          node: 'a-node2',
          cluster: 'a',
          nodeIp: '192.168.100.12',
          tunnelIp: '10.10.1.0',
          mac: '66:aa:00:00:00:02',
        },
      },
    ]);
    assert.deepEqual(feed(blocks.a2), [
      { kind: 'RouteUpdate', route: { dst: '10.10.1.0/26', node: 'a-node2', cluster: 'a' } },
    ]);
    out = feed(nodes.b1);
    assert.deepEqual(out, [
      {
        kind: 'VTEPUpdate',
        vtep: {
          node: 'b-node1',
          cluster: 'b',
          nodeIp: '192.168.100.21',
          tunnelIp: '10.20.0.0',
          mac: '66:bb:00:00:00:01',
        },
      },
      { kind: 'RouteUpdate', route: { dst: '10.20.0.0/26', node: 'b-node1', cluster: 'b' } },
    ]);
    feed(blocks.b1b, blocks.self);
    assert.deepEqual([...rec.model.vteps.keys()].sort(), ['a-node2', 'b-node1']);
    assert.deepEqual(
      [...rec.model.routes.values()]
        .filter((r) => !r.local)
        .map((r) => r.dst)
        .sort(),
      ['10.10.1.0/26', '10.20.0.0/26', '10.20.0.64/26'],
    );
    // An unchanged node re-sent is not re-announced.
    assert.deepEqual(feed(nodes.b1), []);
  });

  it('deleting a remote node removes its routes first, then its VTEP', () => {
    const { feed, rec } = newGraph();
    feed(nodes.self, nodes.a2, nodes.b1, blocks.self, blocks.a2, blocks.b1, blocks.b1b);
    const out = feed(deletion(nodes.b1));
    assert.equal(out.at(-1)?.kind, 'VTEPRemove');
    assert.deepEqual(out.at(-1), { kind: 'VTEPRemove', node: 'b-node1' });
    assert.deepEqual(
      ofKind(out, 'RouteRemove')
        .map((m) => m.dst)
        .sort(),
      ['10.20.0.0/26', '10.20.0.64/26'],
    );
    assert.equal(out.length, 3);
    assert.deepEqual(
      [...rec.model.routes.values()].filter((r) => !r.local).map((r) => r.dst),
      ['10.10.1.0/26'],
    );
    // The node coming back brings its routes back.
    const back = feed(nodes.b1);
    assert.deepEqual(kinds(back), ['VTEPUpdate', 'RouteUpdate', 'RouteUpdate']);
  });

  it('a node losing its tunnel address loses its VTEP and routes; a deleted block loses its route', () => {
    const { feed, rec } = newGraph();
    feed(nodes.a2, blocks.a2, nodes.b1, blocks.b1);
    const out = feed(node({ name: 'a-node2', ip: '192.168.100.12', mac: '66:aa:00:00:00:02' }));
    assert.deepEqual(out, [
      { kind: 'RouteRemove', dst: '10.10.1.0/26' },
      { kind: 'VTEPRemove', node: 'a-node2' },
    ]);
    assert.deepEqual(feed(deletion(blocks.b1)), [{ kind: 'RouteRemove', dst: '10.20.0.0/26' }]);
    assert.equal(rec.model.routes.size, 0);
    // A block moving to this node loses its route (it is ours now).
    feed(blocks.b1);
    assert.deepEqual(feed(block({ cluster: 'b', cidr: '10.20.0.0/26', node: NODE })), [
      { kind: 'RouteRemove', dst: '10.20.0.0/26' },
    ]);
  });

  it('a node naming no VTEP MAC gets the same derived MAC on its own agent and on its peers', () => {
    const bare = { ip: '192.168.100.21', tunnelIp: '10.20.0.0' };
    const peer = newGraph();
    const [vtep] = ofKind(peer.feed(node({ cluster: 'b', name: 'b-node1', ...bare })), 'VTEPUpdate');
    const self = new Recorder();
    const own = new CalculationGraph({ nodeName: 'b-node1', localCluster: 'b' }, self);
    own.onUpdate(node({ cluster: 'b', localCluster: 'b', name: 'b-node1', ...bare }));
    const [host] = ofKind(self.all, 'HostConfigUpdate');
    assert.ok(vtep && host);
    // Felix's derivation (vxlan_resolver.go): 'f' (0x66) + SHA-1("b-node1")[0:5], computed with
    // Python's hashlib for this test, so a Calico node and a fedmesh node agree on it.
    assert.equal(vtep.vtep.mac, '66:e1:c8:af:7b:a2');
    assert.equal(host.config.vtepMac, vtep.vtep.mac);
  });

  it('remote pools are never local nor natOutgoing; local pools keep their natOutgoing', () => {
    const { feed, rec } = newGraph();
    const out = feed(
      pool({ name: 'a-pool', cidr: '10.10.0.0/16', natOutgoing: true }),
      pool({ name: 'a-nonat', cidr: '10.11.0.0/16', natOutgoing: false }),
      pool({ cluster: 'b', name: 'b-pool', cidr: '10.20.0.0/16', natOutgoing: true }),
    );
    assert.deepEqual(out, [
      { kind: 'PoolUpdate', pool: { cidr: '10.10.0.0/16', cluster: 'a', local: true, natOutgoing: true } },
      { kind: 'PoolUpdate', pool: { cidr: '10.11.0.0/16', cluster: 'a', local: true, natOutgoing: false } },
      { kind: 'PoolUpdate', pool: { cidr: '10.20.0.0/16', cluster: 'b', local: false, natOutgoing: false } },
    ]);
    assert.deepEqual(feed(deletion(pool({ cluster: 'b', name: 'b-pool', cidr: '10.20.0.0/16' }))), [
      { kind: 'PoolRemove', cidr: '10.20.0.0/16' },
    ]);
    assert.equal(rec.model.pools.size, 2);
  });

  it('a disabled local pool and a remote pool with one CIDR: either going leaves the range in the pool set', () => {
    const { feed, rec } = newGraph();
    feed(
      pool({ name: 'b-range', cidr: '10.20.0.0/16', natOutgoing: false, disabled: true }),
      pool({ cluster: 'b', name: 'b-pool', cidr: '10.20.0.0/16' }),
    );
    assert.deepEqual(feed(deletion(pool({ cluster: 'b', name: 'b-pool', cidr: '10.20.0.0/16' }))), [
      { kind: 'PoolUpdate', pool: { cidr: '10.20.0.0/16', cluster: 'a', local: true, natOutgoing: false } },
    ]);
    assert.equal(rec.model.pools.size, 1, 'the remote range stays exempt from NAT outgoing');
    assert.deepEqual(feed(deletion(pool({ name: 'b-range', cidr: '10.20.0.0/16' }))), [
      { kind: 'PoolRemove', cidr: '10.20.0.0/16' },
    ]);
  });
});

// --- incremental equals from scratch (property) -------------------------------------------------

/** Endpoint slots: local on this node, local elsewhere, remote. */
const EP_SLOTS = [
  { cluster: 'a', node: NODE, namespace: 'shop', pod: 'l1' },
  { cluster: 'a', node: NODE, namespace: 'dev', pod: 'l2' },
  { cluster: 'a', node: NODE, namespace: 'shop', pod: 'l3' },
  { cluster: 'a', node: 'a-node2', namespace: 'shop', pod: 'o1' },
  { cluster: 'b', node: 'b-node1', namespace: 'shop', pod: 'r1' },
  { cluster: 'b', node: 'b-node1', namespace: 'dev', pod: 'r2' },
  { cluster: 'b', node: 'b-node2', namespace: 'shop', pod: 'r3' },
] as const;

const POLICY_SELECTORS = [
  'all()',
  'all()',
  "app == 'web'",
  'has(role)',
  "app in {'web', 'db'} && role != 'x'",
  "env == 'prod'",
];
const RULE_SELECTORS = [
  "app == 'db'",
  "role == 'x'",
  'has(app)',
  'all()',
  "pcns.team == 'blue'",
  // Found through the items without the key.
  '!has(role)',
  "!has(app) && role == 'x'",
];

const labelsArb = fc.record(
  {
    app: fc.constantFrom('web', 'db', 'api'),
    role: fc.constantFrom('x', 'y'),
  },
  { requiredKeys: [] },
);

const entityArb: fc.Arbitrary<EntityInit> = fc.record(
  {
    selector: fc.constantFrom(...RULE_SELECTORS),
    notSelector: fc.constantFrom("role == 'y'", "app == 'api'"),
    namespaceSelector: fc.constantFrom("team == 'blue'", 'all()', "team != 'red'"),
    nets: fc.constantFrom(['10.99.0.0/16'], ['10.98.0.0/16', '10.97.0.0/16']),
  },
  { requiredKeys: [] },
);

const ruleArb: fc.Arbitrary<RuleInit> = fc.oneof(
  fc.record({
    action: fc.constantFrom('Allow', 'Deny', 'Pass', 'Log') as fc.Arbitrary<RuleInit['action']>,
    source: entityArb,
    destination: entityArb,
  }),
  // Named ports: hash:ip,port sets.
  fc.record({
    action: fc.constant('Allow' as const),
    protocol: fc.constant('TCP'),
    destination: fc.record(
      { selector: fc.constantFrom(...RULE_SELECTORS), ports: fc.constant(['http']) },
      { requiredKeys: ['ports'] },
    ),
  }),
);

type Op =
  | { t: 'ep'; slot: number; labels: Record<string, string>; ip: number; http: number | null; env: boolean }
  | { t: 'epDel'; slot: number }
  | { t: 'ns'; cluster: 'a' | 'b'; ns: 'shop' | 'dev'; team: string | null }
  | { t: 'env'; cluster: 'a' | 'b'; env: string | null }
  | {
      t: 'pol';
      slot: number;
      namespace: string;
      tier: string;
      order: number | null;
      selector: string;
      ingress: RuleInit[];
      egress: RuleInit[];
    }
  | { t: 'polDel'; slot: number; namespace: string }
  | { t: 'node'; which: number; complete: boolean; mac: boolean }
  | { t: 'nodeDel'; which: number }
  | { t: 'block'; which: number; node: number }
  | { t: 'blockDel'; which: number }
  | { t: 'flush' };

const POLICY_NAMESPACES = ['', 'shop', 'dev'];
const NODES = [
  { cluster: 'a', name: NODE },
  { cluster: 'a', name: 'a-node2' },
  { cluster: 'b', name: 'b-node1' },
  { cluster: 'b', name: 'b-node2' },
];
const BLOCKS = ['10.10.0.0/26', '10.10.1.0/26', '10.20.0.0/26', '10.20.0.64/26'];

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant('ep' as const),
      slot: fc.nat(EP_SLOTS.length - 1),
      labels: labelsArb,
      ip: fc.integer({ min: 1, max: 5 }),
      http: fc.option(fc.constantFrom(80, 8080)),
      env: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant('epDel' as const), slot: fc.nat(EP_SLOTS.length - 1) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('ns' as const),
      cluster: fc.constantFrom('a' as const, 'b' as const),
      ns: fc.constantFrom('shop' as const, 'dev' as const),
      team: fc.option(fc.constantFrom('blue', 'red')),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('env' as const),
      cluster: fc.constantFrom('a' as const, 'b' as const),
      env: fc.option(fc.constantFrom('prod', 'dev')),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant('pol' as const),
      slot: fc.nat(2),
      namespace: fc.constantFrom(...POLICY_NAMESPACES),
      tier: fc.constantFrom('default', 'security'),
      order: fc.option(fc.constantFrom(10, 20)),
      selector: fc.constantFrom(...POLICY_SELECTORS),
      ingress: fc.array(ruleArb, { maxLength: 2 }),
      egress: fc.array(ruleArb, { maxLength: 2 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('polDel' as const),
      slot: fc.nat(2),
      namespace: fc.constantFrom(...POLICY_NAMESPACES),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('node' as const),
      which: fc.nat(NODES.length - 1),
      complete: fc.boolean(),
      mac: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant('nodeDel' as const), which: fc.nat(NODES.length - 1) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('block' as const),
      which: fc.nat(BLOCKS.length - 1),
      node: fc.nat(NODES.length - 1),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant('blockDel' as const), which: fc.nat(BLOCKS.length - 1) }),
  },
  { weight: 2, arbitrary: fc.constant({ t: 'flush' as const }) },
);

/** The feed update an op stands for (undefined for a flush). */
function toUpdate(op: Op): Update | undefined {
  switch (op.t) {
    case 'ep': {
      const s = EP_SLOTS[op.slot]!;
      const net = s.cluster === 'a' ? '10.10.0' : '10.20.0';
      return wep({
        ...s,
        ips: [`${net}.${op.ip}`],
        labels: op.labels,
        profiles: op.env ? [`kns.${s.namespace}`, 'env'] : [`kns.${s.namespace}`],
        ports: op.http === null ? [] : [{ name: 'http', port: op.http }],
      });
    }
    case 'epDel': {
      const s = EP_SLOTS[op.slot]!;
      return deletion(wep({ ...s, ips: [] }));
    }
    case 'ns':
      return op.team === null
        ? deletion(namespace(op.ns, {}, { cluster: op.cluster }))
        : namespace(op.ns, { team: op.team }, { cluster: op.cluster });
    case 'env':
      return op.env === null
        ? deletion(profile('env', {}, { cluster: op.cluster }))
        : profile('env', { env: op.env }, { cluster: op.cluster });
    case 'pol':
      return policy({
        name: `p${op.slot}`,
        namespace: op.namespace || undefined,
        tier: op.tier,
        order: op.order ?? undefined,
        selector: op.selector,
        types: [
          ...(op.ingress.length || !op.egress.length ? ['Ingress' as const] : []),
          ...(op.egress.length ? ['Egress' as const] : []),
        ],
        ingress: op.ingress,
        egress: op.egress,
      });
    case 'polDel':
      return deletion(policy({ name: `p${op.slot}`, namespace: op.namespace || undefined }));
    case 'node': {
      const n = NODES[op.which]!;
      const i = op.which + 1;
      return node({
        cluster: n.cluster,
        name: n.name,
        ip: `192.168.100.${i}`,
        // Without a tunnel address a node has no VTEP; without a MAC one is derived.
        tunnelIp: op.complete ? `10.${n.cluster === 'a' ? 10 : 20}.${i}.0` : undefined,
        mac: op.mac ? `66:00:00:00:00:0${i}` : undefined,
      });
    }
    case 'nodeDel': {
      const n = NODES[op.which]!;
      return deletion(node({ cluster: n.cluster, name: n.name }));
    }
    case 'block': {
      const cidr = BLOCKS[op.which]!;
      const n = NODES[op.node]!;
      // The block's cluster is the cluster of its CIDR; its node may be any (affinity moves).
      return block({ cluster: cidr.startsWith('10.10.') ? 'a' : 'b', cidr, node: n.name });
    }
    case 'blockDel': {
      const cidr = BLOCKS[op.which]!;
      return deletion(block({ cluster: cidr.startsWith('10.10.') ? 'a' : 'b', cidr, node: '' }));
    }
    case 'flush':
      return undefined;
  }
}

describe('incremental equals from scratch', () => {
  // Second run: every dormant set stays in the dataplane (parked); the sets in use must agree.
  for (const park of [undefined, 1])
    it(`random churn applied incrementally gives the state a fresh graph computes from the final resources${park ? ', dormant sets parked' : ''}`, () => {
      fc.assert(
        fc.property(
          fc.array(opArb, { minLength: 1, maxLength: 50, size: 'max' }),
          fc.boolean(),
          (ops, scratchReversed) => {
            // One graph with a strict model of its raw output...
            const inc = newGraph(park);
            // ...and one behind the sequencer, flushed at random points, whose every flush must leave
            // nothing referenced while missing.
            const seq = new Sequencer();
            const seqGraph = new CalculationGraph(
              { nodeName: NODE, localCluster: 'a', parkSetsMin: park },
              seq,
            );
            const seqModel = new DataplaneModel({ strict: false, checkDeps: true });
            const flush = () => {
              seqModel.applyFlush(seq.flush());
              assert.deepEqual(seqModel.dangling(), []);
            };
            const final = new Map<string, Update>();
            for (const op of ops) {
              const u = toUpdate(op);
              if (!u) {
                flush();
                continue;
              }
              inc.g.onUpdate(u);
              seqGraph.onUpdate(u);
              if (u.deleted) final.delete(u.key);
              else final.set(u.key, u);
            }
            flush();
            assert.deepEqual(inc.g.refused, [], 'the generator only makes valid updates');

            const scratch = newGraph();
            const finalUpdates = [...final.values()];
            if (scratchReversed) finalUpdates.reverse();
            for (const u of finalUpdates) scratch.g.onUpdate(u);

            const want = scratch.rec.model.snapshot();
            const used = park !== undefined;
            assert.deepEqual(inc.rec.model.snapshot(used), want, 'incremental graph, raw messages');
            assert.deepEqual(seqModel.snapshot(used), want, 'incremental graph through the sequencer');
            assert.deepEqual(inc.rec.model.dangling(), []);
            assert.deepEqual(scratch.rec.model.dangling(), []);
          },
        ),
        { numRuns: 200 },
      );
    });
});

describe('members deferred until in-sync', () => {
  for (const park of [undefined, 1])
    it(`a graph that computes ipset members at in-sync agrees with one that follows every update (property)${park ? ', dormant sets parked' : ''}`, () => {
      fc.assert(
        fc.property(
          fc.array(opArb, { minLength: 1, maxLength: 60, size: 'max' }),
          fc.nat(60),
          (ops, syncAt) => {
            // Incremental from the start, with a strict model of its raw output...
            const inc = newGraph(park);
            // ...and deferred, raw (strict: no delta to a set it never announced) and through the
            // sequencer, flushed at random points: from in-sync on, every flush must leave nothing
            // referenced while missing.
            const rec = new Recorder();
            const def = new CalculationGraph(
              { nodeName: NODE, localCluster: 'a', deferUntilInSync: true, parkSetsMin: park },
              rec,
            );
            const seq = new Sequencer();
            const defSeq = new CalculationGraph(
              { nodeName: NODE, localCluster: 'a', deferUntilInSync: true, parkSetsMin: park },
              seq,
            );
            const seqModel = new DataplaneModel({ strict: false, checkDeps: false });
            let synced = false;
            const check = () => {
              seqModel.applyFlush(seq.flush());
              if (!synced) return;
              assert.deepEqual(seqModel.dangling(), []);
              const used = park !== undefined;
              const want = inc.rec.model.snapshot(used);
              assert.deepEqual(rec.model.snapshot(used), want, 'deferred graph, raw messages');
              assert.deepEqual(seqModel.snapshot(used), want, 'deferred graph through the sequencer');
            };
            const sync = () => {
              for (const g of [inc.g, def, defSeq]) g.inSync();
              synced = true;
              seqModel.opts.checkDeps = true;
              check();
            };
            ops.forEach((op, i) => {
              if (i === syncAt) sync();
              const u = toUpdate(op);
              if (u) for (const g of [inc.g, def, defSeq]) g.onUpdate(u);
              else check();
            });
            if (!synced) sync();
            check();
            assert.deepEqual(rec.model.dangling(), []);
          },
        ),
        { numRuns: 200 },
      );
    });
});

describe('host endpoint policies', () => {
  it('policies that came before the first host endpoint apply to it as if they had come after', () => {
    const ops = [
      policy({ name: 'gw', selector: "role == 'gw'", order: 5, ingress: [{ action: 'Allow' }] }),
      policy({ name: 'any', selector: 'all()', order: 1, types: ['Egress'], egress: [{ action: 'Deny' }] }),
      policy({ name: 'gone', selector: 'has(role)', ingress: [{ action: 'Allow' }] }),
      // Replaced (a policy keeps its place) and deleted before the endpoint comes.
      policy({ name: 'gw', selector: "role == 'gw'", order: 0, ingress: [{ action: 'Deny' }] }),
      deletion(policy({ name: 'gone' })),
      policy({ name: 'other', selector: "role == 'db'", ingress: [{ action: 'Allow' }] }),
    ];
    const hep = hostEndpoint({ name: 'h1', node: NODE, interfaceName: 'eth0', labels: { role: 'gw' } });
    const run = (updates: Update[]) => {
      const seq = new Sequencer();
      const g = new CalculationGraph({ nodeName: NODE, localCluster: 'a' }, seq);
      for (const u of updates) g.onUpdate(u);
      g.inSync();
      const out = seq.flush();
      return {
        endpoints: out.filter((m) => m.kind === 'HostEndpointUpdate'),
        policies: out
          .filter((m) => m.kind === 'ActivePolicyUpdate')
          .map((m) => (m.kind === 'ActivePolicyUpdate' ? m.policy.key : ''))
          .sort(),
      };
    };
    const after = run([hep, ...ops]);
    const before = run([...ops, hep]);
    assert.equal(after.endpoints.length, 1);
    assert.deepEqual(before, after);
    assert.deepEqual(after.policies, ['default/any', 'default/gw']);
  });
});
