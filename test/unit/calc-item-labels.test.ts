// An item's effective labels: its profiles' labels merged in order, then its own string-valued
// labels over them. The item index builds most of them by copying a template made for the same
// inheritance and own keys; this checks every item's labels (keys, their order, values) against
// the plain construction, under random items, updates, deletes and profile changes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ItemIndex } from '../../agent/calc/item-index.ts';

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
