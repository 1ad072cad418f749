// eval's labels (cli/eval.ts matchingEndpoints) must be exactly the labels an agent's label index
// gives each endpoint: random profiles, namespaces and endpoints (local and remote, workload and
// host), random selectors, against the label index itself (agent/calc/label-index.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { LabelIndex } from '../../agent/calc/label-index.ts';
import { matchingEndpoints } from '../../cli/eval.ts';
import { parseSelector, type Selector } from '../../model/selector/index.ts';
import type { Update } from '../../proto/service.ts';
import { hostEndpoint, namespace, profile, serviceAccount, wep } from '../helpers/feed-builders.ts';

/** The label index's answer, endpoint by endpoint (how eval computed it before). */
function byLabelIndex(updates: readonly Update[], selector: Selector, cluster: string): string[] {
  const index = new LabelIndex({ send: () => {} });
  for (const u of updates) if (u.body.case === 'profile') index.setProfileLabels(u.key, u.body.value.labels);
  const out: string[] = [];
  for (const u of updates) {
    const b = u.body;
    if (b.case !== 'workloadEndpoint' && b.case !== 'hostEndpoint') continue;
    const labels = index.upsertItem({
      key: u.key,
      ownLabels: b.value.labels,
      profiles: b.value.profiles,
      ...(b.case === 'workloadEndpoint' ? { namespace: b.value.namespace } : {}),
      nets: [],
    });
    index.deleteItem(u.key);
    if (!selector.evaluate(labels)) continue;
    const prefix = u.cluster !== cluster ? `${u.cluster}/` : '';
    out.push(
      b.case === 'workloadEndpoint'
        ? `${prefix}${b.value.namespace}/${b.value.name}`
        : `${prefix}${b.value.name}`,
    );
  }
  return out.sort();
}

const keys = ['app', 'tier', 'team', 'env'];
const values = ['a', 'b', 'c'];
const labels = fc.dictionary(fc.constantFrom(...keys), fc.constantFrom(...values), { maxKeys: 3 });
const cluster = fc.constantFrom(undefined, 'b');
const nsName = fc.constantFrom('shop', 'ops');

const updates = fc
  .tuple(
    fc.array(fc.tuple(nsName, labels, cluster), { maxLength: 3 }),
    fc.array(fc.tuple(fc.constantFrom('gold', 'silver'), labels, cluster), { maxLength: 3 }),
    fc.array(fc.tuple(nsName, fc.constantFrom('default', 'robot'), labels, cluster), { maxLength: 2 }),
    fc.array(
      fc.tuple(
        nsName,
        labels,
        fc.subarray(['kns.shop', 'kns.ops', 'gold', 'silver', 'ksa.shop.robot', 'ksa.ops.default']),
        cluster,
        fc.boolean(),
      ),
      { maxLength: 12 },
    ),
  )
  .map(([namespaces, profiles, accounts, endpoints]) => {
    const out: Update[] = [];
    for (const [ns, l, c] of namespaces) out.push(namespace(ns, l, c ? { cluster: c } : undefined));
    for (const [name, l, c] of profiles) out.push(profile(name, l, c ? { cluster: c } : undefined));
    for (const [ns, sa, l, c] of accounts)
      out.push(serviceAccount(ns, sa, l, c ? { cluster: c } : undefined));
    endpoints.forEach(([ns, l, ps, c, host], i) => {
      const where = c ? { cluster: c } : {};
      out.push(
        host
          ? hostEndpoint({ name: `host-${i}`, node: 'n1', labels: l, profiles: ps, ...where })
          : wep({
              node: 'n1',
              namespace: ns,
              pod: `pod-${i}`,
              ips: [`10.0.0.${i}`],
              labels: l,
              profiles: ps,
              ...where,
            }),
      );
    });
    return out;
  });

const selector = fc.oneof(
  fc.constantFrom('all()', "projectcalico.org/namespace == 'shop'", "fedmesh.io/cluster == 'b'", 'has(team)'),
  fc
    .tuple(fc.constantFrom(...keys), fc.constantFrom(...values), fc.constantFrom('==', '!='))
    .map(([k, v, op]) => `${k} ${op} '${v}'`),
  fc
    .tuple(fc.constantFrom(...keys), fc.constantFrom(...keys), fc.constantFrom(...values))
    .map(([k, k2, v]) => `has(${k}) && ${k2} != '${v}'`),
  fc.constantFrom("pcns.team == 'a'", "projectcalico.org/name == 'shop'", "sla in {'a', 'b'}"),
);

test("eval's labels are the label index's, for random clusters and selectors", () => {
  let matched = 0;
  fc.assert(
    fc.property(updates, selector, (us, sel) => {
      const s = parseSelector(sel);
      const got = matchingEndpoints(us, s, 'a').map((m) => m.name);
      assert.deepStrictEqual(got, byLabelIndex(us, s, 'a'));
      matched += got.length;
    }),
    { numRuns: 1500 },
  );
  assert.ok(matched > 500, `only ${matched} matches in all: the selectors hardly select`);
});
