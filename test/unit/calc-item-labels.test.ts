// An item's effective labels: its profiles' labels merged in order, then its own string-valued
// labels over them. The item index builds most of them by copying a template made for the same
// inheritance and own keys; this checks every item's labels (keys, their order, values) against
// the plain construction, under random items, updates, deletes and profile changes. And the
// candidates a load finds with plans shared among its requirements (filtering by bitsets) are
// those each requirement's own plan finds.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ItemIndex } from '../../agent/calc/item-index.ts';
import { matcherRequirement } from '../../agent/calc/selector-requirements.ts';
import { parseSelector } from '../../model/selector/index.ts';

const PROFILES = ['kns.a', 'kns.b', 'ksa.a.x', 'p1', 'p2'];
// Keys shared between profiles and items, integer-like ones (which objects order first), and one
// whose value an item may give as a non-string (not a label: left out).
const KEYS = ['app', 'tier', 'pcns.team', '10', '2', 'x/y', 'odd'];
const VALUES = ['a', 'b', 'c'];

type Op =
  | { t: 'item'; slot: number; own: Record<string, unknown>; profiles: string[]; ns: boolean }
  | { t: 'del'; slot: number }
  | { t: 'profile'; name: string; labels: Record<string, string> | null };

const labelsArb = fc.dictionary(fc.constantFrom(...KEYS), fc.constantFrom(...VALUES), { maxKeys: 5 });

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant('item' as const),
      slot: fc.nat(11),
      own: fc.dictionary(
        fc.constantFrom(...KEYS),
        fc.oneof(fc.constantFrom(...VALUES), fc.constantFrom(1, null, undefined)),
        { maxKeys: 6 },
      ),
      profiles: fc.subarray(PROFILES),
      ns: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('del' as const), slot: fc.nat(11) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('profile' as const),
      name: fc.constantFrom(...PROFILES),
      labels: fc.option(labelsArb),
    }),
  },
);

/** The labels built the plain way: profiles' labels in order, then the own string values. */
function plainLabels(
  own: Record<string, unknown>,
  profiles: readonly string[],
  profileLabels: ReadonlyMap<string, Record<string, string>>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of profiles) Object.assign(out, profileLabels.get(p));
  for (const k in own) {
    const v = own[k];
    if (typeof v === 'string') out[k] = v;
  }
  return out;
}

describe('item labels', () => {
  it('equal the plain construction: same keys in the same order, same values (property)', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 80 }), (ops) => {
        const index = new ItemIndex();
        const inputs = new Map<string, { own: Record<string, unknown>; profiles: string[] }>();
        const profileLabels = new Map<string, Record<string, string>>();
        const check = () => {
          for (const [key, input] of inputs) {
            const item = index.get(key);
            assert.ok(item, key);
            const want = plainLabels(input.own, input.profiles, profileLabels);
            assert.deepEqual(Object.entries(item.labels), Object.entries(want), key);
            assert.equal(Object.getPrototypeOf(item.labels), Object.prototype);
          }
        };
        for (const op of ops) {
          const key = `item-${op.t === 'profile' ? '' : op.slot}`;
          if (op.t === 'item') {
            inputs.set(key, { own: op.own, profiles: op.profiles });
            index.upsert({
              key,
              ownLabels: op.own as Record<string, string>,
              profiles: op.profiles,
              namespace: op.ns ? 'a' : undefined,
              nets: [`10.0.0.${op.slot}/32`],
            });
          } else if (op.t === 'del') {
            inputs.delete(key);
            index.delete(key);
          } else {
            if (op.labels) profileLabels.set(op.name, op.labels);
            else profileLabels.delete(op.name);
            index.setProfileLabels(op.name, op.labels ?? undefined, () => {});
          }
          check();
        }
      }),
      { numRuns: 300 },
    );
  });

  it('many items of a few shapes: each equal to the plain construction', () => {
    const index = new ItemIndex();
    const profileLabels = new Map([['kns.a', { 'pcns.team': 't', app: 'inherited' }]]);
    index.setProfileLabels('kns.a', profileLabels.get('kns.a'), () => {});
    for (let i = 0; i < 200; i++) {
      const own: Record<string, string> = { app: `app-${i % 7}` };
      if (i % 3 === 0) own.tier = `tier-${i % 5}`;
      if (i % 2 === 0) own['5'] = 'five';
      const profiles = i % 4 === 0 ? [] : ['kns.a'];
      const item = index.upsert({ key: `k${i}`, ownLabels: own, profiles, nets: [] }).item;
      assert.deepEqual(
        Object.entries(item.labels),
        Object.entries(plainLabels(own, profiles, profileLabels)),
      );
    }
  });
});

// --- candidates found together in a load (shared plans, bitset filters) ---------------------------

const SELECTORS = [
  "app == 'a' && tier == 'x'",
  "app == 'b' && has(tier)",
  "app in {'a', 'b'} && tier == 'y' && zone == 'z1'",
  "zone == 'z2' && app == 'c'",
  "has(zone) && app != 'a'",
  "tier == 'x' && zone in {'z1', 'z2'}",
];

describe('candidates of a load', () => {
  it("are the same ids, in the same order, as each requirement's own plan gives, and hold every item selected (property)", () => {
    const item = fc.record({
      own: fc.record(
        {
          app: fc.constantFrom('a', 'b', 'c'),
          tier: fc.constantFrom('x', 'y'),
          zone: fc.constantFrom('z1', 'z2'),
        },
        { requiredKeys: [] },
      ),
      profiles: fc.subarray(['p1', 'p2']),
    });
    fc.assert(
      fc.property(
        fc.array(item, { minLength: 20, maxLength: 150 }),
        fc.array(fc.nat(99), { maxLength: 20 }),
        fc.option(labelsArb.map((l) => ({ tier: 'x', ...l }))),
        (items, deletes, p1) => {
          const index = new ItemIndex();
          if (p1) index.setProfileLabels('p1', p1, () => {});
          items.forEach((it, i) => {
            index.upsert({ key: `k${i}`, ownLabels: it.own, profiles: it.profiles, nets: [] });
          });
          for (const d of deletes) index.delete(`k${d}`);
          const selectors = SELECTORS.map((s) => parseSelector(s));
          const reqs = selectors.map((selector) => matcherRequirement({ selector }, index.cost));
          const memo = new Map();
          const shared = reqs.map((r) => index.planOf(r, memo));
          const alone = reqs.map((r) => [...(index.planOf(r).run?.() ?? [])]);
          shared.forEach((plan, i) => {
            assert.deepEqual([...(plan.run?.() ?? [])], alone[i], SELECTORS[i]);
          });
          // And they hold every item a selector selects (the label lists, filled when a
          // requirement first needs a key, after the items came, are right).
          for (let k = 0; k < items.length; k++) {
            const it = index.get(`k${k}`);
            if (!it) continue;
            selectors.forEach((sel, i) => {
              if (sel.evaluate(it.labels))
                assert.ok(alone[i]!.includes(it.id), `${SELECTORS[i]} misses k${k}`);
            });
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
