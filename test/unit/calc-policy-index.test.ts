// The policy-selector index (policies by what their selector requires, local endpoints by label)
// under random churn in random order: the resolver's active policies and each local endpoint's
// policy lists, and the index's own answers, must equal an evaluation from scratch of every policy
// on every endpoint; and the index must drain when everything is deleted.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { LabelIndex } from '../../agent/calc/label-index.ts';
import type { DataplaneMessage, EndpointKey, PolicyKey } from '../../agent/calc/messages.ts';
import { PolicyResolver, tiersOf } from '../../agent/calc/policy-resolver.ts';
import { PolicySelectorIndex } from '../../agent/calc/policy-selector-index.ts';
import type { Labels } from '../../model/resources.ts';
import { type CompiledPolicy, compilePolicy } from '../../policy/compiler.ts';
import { policy } from '../helpers/feed-builders.ts';

// Selectors of every kind of requirement: a label value, a set, a key, nothing in particular
// (all(), negations), disjunctions, conjunctions, impossible ones.
const SELECTORS = [
  'all()',
  "app == 'web'",
  "app in {'web', 'db'}",
  'has(role)',
  '!has(role)',
  "app != 'web'",
  "tier == 'fe' && app == 'db'",
  "app == 'web' || role == 'x'",
  "!(app == 'web' || has(tier))",
  'has(app) && !has(app)',
  "app == 'db' && role in {'x', 'y'} && tier != 'be'",
];
const NAMESPACES = ['shop', 'dev'];
const ENDPOINTS = ['e0', 'e1', 'e2', 'e3', 'e4', 'e5'] as EndpointKey[];
const POLICIES = ['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7'];

const labelsArb: fc.Arbitrary<Labels> = fc
  .tuple(
    fc.record(
      {
        app: fc.constantFrom('web', 'db', 'api'),
        role: fc.constantFrom('x', 'y'),
        tier: fc.constantFrom('fe', 'be'),
      },
      { requiredKeys: [] },
    ),
    fc.constantFrom(...NAMESPACES),
  )
  .map(([l, ns]) => ({ ...l, 'projectcalico.org/namespace': ns }));

type Op =
  | { op: 'ep'; key: EndpointKey; labels: Labels }
  | { op: 'epDel'; key: EndpointKey }
  | { op: 'pol'; name: string; selector: string; namespace?: string; tier: string; order: number }
  | { op: 'polDel'; name: string };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('ep' as const), key: fc.constantFrom(...ENDPOINTS), labels: labelsArb }),
  fc.record({ op: fc.constant('epDel' as const), key: fc.constantFrom(...ENDPOINTS) }),
  fc.record(
    {
      op: fc.constant('pol' as const),
      name: fc.constantFrom(...POLICIES),
      selector: fc.constantFrom(...SELECTORS),
      namespace: fc.constantFrom(...NAMESPACES),
      tier: fc.constantFrom('default', 'security'),
      order: fc.nat(3),
    },
    { requiredKeys: ['op', 'name', 'selector', 'tier', 'order'] },
  ),
  fc.record({ op: fc.constant('polDel' as const), name: fc.constantFrom(...POLICIES) }),
);

/** A policy's name is its identity here: one feed name, one compiled policy (global or not). */
function compile(o: Extract<Op, { op: 'pol' }>): CompiledPolicy {
  const u = policy({
    name: o.name,
    namespace: o.namespace,
    selector: o.selector,
    tier: o.tier,
    order: o.order,
  });
  if (u.body.case !== 'policy') throw new Error('not a policy');
  return compilePolicy(u.body.value);
}

/** What the sink said last, per key: active policies and endpoints' policy lists. */
class Recorder {
  readonly active = new Set<PolicyKey>();
  readonly endpoints = new Map<EndpointKey, string>();
  send(m: DataplaneMessage): void {
    if (m.kind === 'ActivePolicyUpdate') this.active.add(m.policy.key);
    else if (m.kind === 'ActivePolicyRemove') this.active.delete(m.key);
    else if (m.kind === 'EndpointUpdate')
      this.endpoints.set(m.endpoint.key, JSON.stringify([m.endpoint.ingress, m.endpoint.egress]));
    else if (m.kind === 'EndpointRemove') this.endpoints.delete(m.key);
  }
}

describe('policy-selector index', () => {
  it('active policies and per-endpoint policy lists equal a from-scratch evaluation (property)', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 80 }), (ops) => {
        const rec = new Recorder();
        const resolver = new PolicyResolver(new LabelIndex(rec), rec);
        const index = new PolicySelectorIndex();
        const endpoints = new Map<EndpointKey, Labels>();
        const policies = new Map<string, CompiledPolicy>();
        for (const o of ops) {
          if (o.op === 'ep') {
            endpoints.set(o.key, o.labels);
            resolver.upsertEndpoint(
              { key: o.key, interfaceName: `cali${o.key}`, ipv4Nets: [], profiles: [] },
              o.labels,
            );
            index.setEndpoint(o.key, o.labels);
          } else if (o.op === 'epDel') {
            endpoints.delete(o.key);
            resolver.deleteEndpoint(o.key);
            index.deleteEndpoint(o.key);
          } else if (o.op === 'pol') {
            const p = compile(o);
            const old = policies.get(o.name);
            // A policy that moves (namespace, tier) is a delete and an add, as the graph does it.
            if (old && old.key !== p.key) {
              resolver.deletePolicy(old.key);
              index.deletePolicy(old.key);
            }
            policies.set(o.name, p);
            resolver.upsertPolicy(p);
            index.setPolicy(p.key, p.selector);
          } else {
            const old = policies.get(o.name);
            policies.delete(o.name);
            if (old) {
              resolver.deletePolicy(old.key);
              index.deletePolicy(old.key);
            }
          }
        }
        // From scratch: every policy on every endpoint.
        const selecting = (labels: Labels) =>
          [...policies.values()].filter((p) => p.selector.evaluate(labels));
        const wantActive = new Set<PolicyKey>();
        for (const labels of endpoints.values()) for (const p of selecting(labels)) wantActive.add(p.key);
        assert.deepEqual(rec.active, wantActive, 'active policies');
        assert.equal(resolver.activePolicyCount, wantActive.size);
        const wantEndpoints = new Map<EndpointKey, string>();
        for (const [k, labels] of endpoints) {
          const ps = selecting(labels);
          wantEndpoints.set(
            k,
            JSON.stringify([tiersOf(ps.filter((p) => p.ingress)), tiersOf(ps.filter((p) => p.egress))]),
          );
        }
        assert.deepEqual(rec.endpoints, wantEndpoints, 'per-endpoint policy lists');
        // The index's answers, both ways.
        for (const [k, labels] of endpoints)
          assert.deepEqual(
            new Set(index.policiesSelecting(labels)),
            new Set(selecting(labels).map((p) => p.key)),
            `policies selecting ${k}`,
          );
        for (const p of policies.values()) {
          const want = [...endpoints].filter(([, l]) => p.selector.evaluate(l)).map(([k]) => k);
          assert.deepEqual(new Set(index.endpointsSelectedBy(p.key)), new Set(want), `endpoints of ${p.key}`);
        }
        // Everything deleted: the index drains.
        for (const k of endpoints.keys()) index.deleteEndpoint(k);
        for (const p of policies.values()) index.deletePolicy(p.key);
        assert.deepEqual(index.sizes(), {
          policies: 0,
          endpoints: 0,
          postings: 0,
          postingKeys: 0,
          registrations: 0,
          regNodes: 0,
        });
      }),
      { numRuns: 300 },
    );
  });

  it('lists an endpoint’s policies in arrival order, and a replaced policy keeps its place', () => {
    const index = new PolicySelectorIndex();
    const sel = (s: string) =>
      compile({ op: 'pol', name: 'x', selector: s, tier: 'default', order: 0 }).selector;
    index.setPolicy('a' as PolicyKey, sel("app == 'web'"));
    index.setPolicy('b' as PolicyKey, sel('all()'));
    index.setPolicy('c' as PolicyKey, sel('has(app)'));
    index.setPolicy('a' as PolicyKey, sel("app in {'web', 'db'}"));
    assert.deepEqual(index.policiesSelecting({ app: 'web' }), ['a', 'b', 'c']);
    assert.deepEqual(index.policiesSelecting({ role: 'x' }), ['b']);
  });
});
