// The label index's own indexes: the id lists, the requirements read off selectors, and the
// LabelIndex's candidate sets (always supersets of what a matcher selects), its matcher
// registrations (an item's change finds every matcher that selects it before or after), its
// ipset members under churn (against a from-scratch evaluation), and that removals drain it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { hasId, IdList, SelectedIds, TupleInterner } from '../../agent/calc/index-structures.ts';
import { type ItemInput, LabelIndex, type MatcherSpec } from '../../agent/calc/label-index.ts';
import type { DataplaneMessage, IpSetId } from '../../agent/calc/messages.ts';
import {
  type Atom,
  type Clause,
  isNothing,
  matcherRequirement,
  type Requirement,
  requirementOf,
  selectorAst,
} from '../../agent/calc/selector-requirements.ts';
import { parseSelector } from '../../model/selector/index.ts';
import { matcherId } from '../../policy/compiler.ts';

const NS = 'projectcalico.org/namespace';
const SA = 'projectcalico.org/serviceaccount';

// --- id lists and interned tuples ------------------------------------------------------------------

describe('IdList', () => {
  it('reads sorted and unique, with lazy removals and re-added ids', () => {
    const members = new Set<number>();
    const isMember = (id: number) => members.has(id);
    const l = new IdList();
    for (const id of [5, 1, 9, 3]) {
      members.add(id);
      l.add(id);
    }
    assert.deepEqual(l.members(isMember), [1, 3, 5, 9]);
    members.delete(3);
    l.remove(3, isMember);
    members.add(3); // re-added after a removal: a stale copy and a new one
    l.add(3);
    members.add(11);
    l.add(11);
    assert.equal(l.size, 5);
    assert.deepEqual(l.members(isMember), [1, 3, 5, 9, 11]);
    assert.ok(hasId(l.members(isMember), 9));
    assert.ok(!hasId(l.members(isMember), 4));
  });

  it('compacts itself when stale entries pile up (property: always the live members)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.nat(40)), { maxLength: 300 }), (ops) => {
        const members = new Set<number>();
        const isMember = (id: number) => members.has(id);
        const l = new IdList();
        for (const [add, id] of ops) {
          if (add && !members.has(id)) {
            members.add(id);
            l.add(id);
          } else if (!add && members.has(id)) {
            members.delete(id);
            l.remove(id, isMember);
          }
        }
        assert.deepEqual(
          l.members(isMember),
          [...members].sort((a, b) => a - b),
        );
        assert.equal(l.size, members.size);
      }),
    );
  });
});

describe('IdList, long', () => {
  it('stays right past the length where it turns lazy', () => {
    let seed = 1;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const members = new Set<number>();
    const isMember = (id: number) => members.has(id);
    const l = new IdList();
    for (let step = 0; step < 30_000; step++) {
      const id = rnd(9000);
      if (members.has(id)) {
        members.delete(id);
        l.remove(id, isMember);
      } else {
        members.add(id);
        l.add(id);
      }
      if (step % 5000 === 0)
        assert.deepEqual(
          l.members(isMember),
          [...members].sort((a, b) => a - b),
        );
    }
    assert.deepEqual(
      l.members(isMember),
      [...members].sort((a, b) => a - b),
    );
    assert.equal(l.size, members.size);
  });
});

describe('SelectedIds', () => {
  it('reads ascending, each id once, through appended and set-aside changes merged in place (property)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.nat(3000), { maxLength: 1500 }),
        fc.array(fc.nat(3000), { maxLength: 2000 }),
        fc.array(fc.nat(40), { maxLength: 10 }),
        (start, flips, reads) => {
          const members = new Set(start);
          const l = new SelectedIds([...start].sort((a, b) => a - b));
          const readAt = new Set(reads.map((r) => r * 50));
          flips.forEach((id, i) => {
            if (members.delete(id)) l.remove(id);
            else {
              members.add(id);
              l.add(id);
            }
            assert.equal(l.size, members.size);
            if (readAt.has(i)) {
              const want = [...members].sort((a, b) => a - b);
              // Read in place, settled where they are, between changes.
              assert.deepEqual(Array.from(l.sortedIds().subarray(0, l.size)), want);
            }
          });
          assert.deepEqual(
            Array.from(l.sortedIds().subarray(0, l.size)),
            [...members].sort((a, b) => a - b),
          );
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe('TupleInterner', () => {
  it('shares one array per distinct tuple and frees it with its last reference', () => {
    const t = new TupleInterner();
    const a = t.acquire(['x', 'y']);
    const b = t.acquire(['x', 'y']);
    const c = t.acquire(['x']);
    assert.equal(a, b);
    assert.notEqual(a, c);
    assert.equal(t.size, 2);
    assert.equal(t.release(a), false);
    assert.equal(t.release(b), true);
    assert.equal(t.size, 1);
    assert.equal(t.release(c), true);
    assert.equal(t.size, 0);
  });

  it('agrees with a count of references under random acquires (by parts or by keys of an object) and releases (property)', () => {
    // More distinct tuples than it remembers recent ones, prefixes of each other among them.
    const TUPLES = [[], ['a'], ['a', 'b'], ['b'], ['a', 'c'], ['b', 'a'], ['a', 'b', 'c']];
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.nat(TUPLES.length - 1), fc.boolean()), { maxLength: 120 }),
        (ops) => {
          const t = new TupleInterner();
          const held = new Map<number, (readonly string[])[]>();
          for (const [acquire, i, byKeys] of ops) {
            const list = held.get(i) ?? [];
            if (acquire) {
              // A copy: the interner must find the tuple by its parts, not by the array.
              const got = byKeys
                ? t.acquireStringKeysOf(Object.fromEntries(TUPLES[i]!.map((k) => [k, 'v'])))
                : t.acquire([...TUPLES[i]!]);
              assert.deepEqual([...got], TUPLES[i]);
              if (list.length > 0) assert.equal(got, list[0], 'one array per tuple while held');
              list.push(got);
              held.set(i, list);
            } else if (list.length > 0) {
              assert.equal(t.release(list.pop()!), list.length === 0);
              if (list.length === 0) held.delete(i);
            }
            assert.equal(t.size, held.size);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

// --- requirements read off selectors ----------------------------------------------------------------

const unitCost = (c: Clause) => c.length;

function req(src: string, negated = false, space: 'labels' | 'ns' = 'labels'): Requirement {
  return requirementOf(selectorAst(parseSelector(src)), negated, space, unitCost);
}

const kv = (key: string, ...values: string[]): Atom => ({ space: 'labels', key, values });
const has = (key: string): Atom => ({ space: 'labels', key });
const absent = (key: string): Atom => ({ space: 'absent', key });

describe('requirements of selectors', () => {
  it('label values, sets and presence are required; conjunctions keep every clause', () => {
    assert.deepEqual(req("app == 'web'"), [[kv('app', 'web')]]);
    assert.deepEqual(req("app in {'a', 'b'}"), [[kv('app', 'a', 'b')]]);
    assert.deepEqual(req('has(tier)'), [[has('tier')]]);
    assert.deepEqual(req("app starts with 'w'"), [[has('app')]]);
    assert.deepEqual(req("app == 'web' && has(tier)"), [[kv('app', 'web')], [has('tier')]]);
    assert.deepEqual(req("app == 'web' || tier == 'db'"), [[kv('app', 'web'), kv('tier', 'db')]]);
    // A negated != is an ==; a negated || is an &&.
    assert.deepEqual(req("!(app != 'web')"), [[kv('app', 'web')]]);
    assert.deepEqual(req("!(app != 'a' || tier != 'b')"), [[kv('app', 'a')], [kv('tier', 'b')]]);
  });

  it('selectors that can match items without the key require nothing', () => {
    for (const src of [
      'all()',
      '',
      "app != 'web'",
      "app not in {'a'}",
      'global()',
      "app == 'web' || app != 'db'",
      "!(app == 'web' && tier == 'db')",
    ])
      assert.equal(req(src), null, src);
    // ...but a conjunction with them keeps what the other side requires.
    assert.deepEqual(req("app == 'web' && tier != 'x'"), [[kv('app', 'web')]]);
  });

  it('a missing key is required as absent (in the item labels only)', () => {
    assert.deepEqual(req('!has(app)'), [[absent('app')]]);
    assert.deepEqual(req("app == 'web' && !has(tier)"), [[kv('app', 'web')], [absent('tier')]]);
    assert.deepEqual(req("app == 'web' || !has(tier)"), [[kv('app', 'web'), absent('tier')]]);
    assert.deepEqual(req("!(has(tier) || app != 'x')"), [[absent('tier')], [kv('app', 'x')]]);
    // A namespace's missing label: not indexed (namespace labels are few, shared objects).
    assert.equal(req('!has(team)', false, 'ns'), null);
    // Only presence is indexed: `!(k contains v)` holds for items with the key too.
    assert.equal(req("!(app contains 'w')"), null);
  });

  it('selectors that can never match require the impossible', () => {
    for (const src of ['!all()', 'app in {}', 'has(a) && app in {}']) assert.ok(isNothing(req(src)), src);
    assert.deepEqual(req("app in {} || tier == 'x'"), [[kv('tier', 'x')]]);
  });

  it('a namespace selector reads namespace labels; the namespace name is a scope', () => {
    assert.deepEqual(req("team == 'x'", false, 'ns'), [[{ space: 'ns', key: 'team', values: ['x'] }]]);
    assert.deepEqual(req(`${NS} in {'a', 'b'}`, false, 'ns'), [
      [
        { space: 'scope', namespace: 'a' },
        { space: 'scope', namespace: 'b' },
      ],
    ]);
    assert.equal(req('projectcalico.org/name == "a" || all()', false, 'ns'), null);
  });

  it('a matcher requires what each part requires', () => {
    const spec = (o: Partial<MatcherSpec>): MatcherSpec => ({ id: 'x' as IpSetId, type: 'hash:net', ...o });
    assert.deepEqual(
      matcherRequirement(
        spec({
          selector: parseSelector("app == 'db'"),
          notSelector: parseSelector("tier != 'x'"),
          namespace: 'shop',
          serviceAccountNames: ['sa1'],
          serviceAccountSelector: parseSelector('role == "r"'),
        }),
        unitCost,
      ),
      [
        [{ space: 'scope', namespace: 'shop' }],
        [kv('app', 'db')],
        [kv('tier', 'x')],
        [kv(SA, 'sa1')],
        [has(SA)],
      ],
    );
    // global() in a namespace selector reaches non-namespaced items: nothing read from it.
    assert.equal(matcherRequirement(spec({ namespaceSelector: parseSelector('global()') }), unitCost), null);
    assert.equal(
      matcherRequirement(spec({ namespaceSelector: parseSelector("global() || team == 'x'") }), unitCost),
      null,
    );
    assert.deepEqual(matcherRequirement(spec({ namespaceSelector: parseSelector('all()') }), unitCost), null);
    assert.ok(isNothing(matcherRequirement(spec({ staticMembers: ['10.0.0.0/8'] }), unitCost)));
  });
});

// --- the LabelIndex under churn, against evaluation from scratch -----------------------------------

const NAMESPACES = ['shop', 'dev'];
const SELECTORS = [
  "app == 'web'",
  "app in {'web', 'db'}",
  'has(tier)',
  "app == 'db' && tier == 'x'",
  "app == 'db' || role == 'r'",
  '!has(tier)',
  "app != 'web'",
  "app not in {'db'}",
  'all()',
  'global()',
  '!global() && has(app)',
  "env == 'prod'",
  "pcns.team == 'blue'",
  `${NS} == 'shop'`,
  "app == 'web' && !has(role)",
];
const NS_SELECTORS = ["team == 'blue'", "team != 'red'", 'all()', 'global()', `${NS} == 'dev'`, 'has(team)'];

interface ItemSlot {
  key: string;
  namespace?: string;
}
// Enough items that candidate lists get long enough to be intersected.
const SLOTS: ItemSlot[] = [
  { key: 'hostendpoint/h1' },
  { key: 'globalnetworkset/g1' },
  { key: 'networkset/shop/s1', namespace: 'shop' },
  ...Array.from({ length: 40 }, (_, i) => {
    const namespace = NAMESPACES[i % 2]!;
    return { key: `${i % 3 ? 'b/' : ''}n${i % 4}/k8s/${namespace}/p${i}/eth0`, namespace };
  }),
];

type Op =
  | {
      t: 'item';
      slot: number;
      labels: Record<string, string>;
      nsLabel: boolean;
      profiles: string[];
      ips: number[];
      http: number | null;
    }
  | { t: 'del'; slot: number }
  | { t: 'profile'; name: string; labels: Record<string, string> | null }
  | { t: 'ref'; m: number }
  | { t: 'unref'; m: number };

const PROFILES = ['kns.shop', 'kns.dev', 'env', 'ksa.shop.sa1'];

function profileLabelsArb(name: string): fc.Arbitrary<Record<string, string>> {
  if (name.startsWith('kns.'))
    return fc.record({ 'pcns.team': fc.constantFrom('blue', 'red') }, { requiredKeys: [] });
  if (name.startsWith('ksa.'))
    return fc.record({ 'pcsa.role': fc.constantFrom('r', 's') }, { requiredKeys: [] });
  return fc.record({ env: fc.constantFrom('prod', 'dev'), tier: fc.constant('x') }, { requiredKeys: [] });
}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant('item' as const),
      slot: fc.nat(SLOTS.length - 1),
      labels: fc.record(
        {
          app: fc.constantFrom('web', 'db'),
          tier: fc.constantFrom('x', 'y'),
          role: fc.constant('r'),
          [SA]: fc.constantFrom('sa1', 'sa2'),
        },
        { requiredKeys: [] },
      ),
      nsLabel: fc.boolean(),
      profiles: fc.subarray(PROFILES),
      // Few addresses, so that items share them.
      ips: fc.array(fc.integer({ min: 1, max: 4 }), { maxLength: 2 }),
      http: fc.option(fc.constantFrom(80, 8080)),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('del' as const), slot: fc.nat(SLOTS.length - 1) }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(...PROFILES).chain((name) =>
      fc.record({
        t: fc.constant('profile' as const),
        name: fc.constant(name),
        labels: fc.option(profileLabelsArb(name)),
      }),
    ),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('ref' as const), m: fc.nat(40) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('unref' as const), m: fc.nat(40) }) },
);

/** A pool of matchers mixing every kind of part. */
const MATCHERS: MatcherSpec[] = (() => {
  const out: MatcherSpec[] = [];
  const rnd = (() => {
    let a = 7;
    return () => {
      a = (a * 1103515245 + 12345) & 0x7fffffff;
      return a / 0x80000000;
    };
  })();
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)]!;
  for (let i = 0; i < 41; i++) {
    const spec: MatcherSpec = { id: '' as IpSetId, type: i % 7 === 0 ? 'hash:ip,port' : 'hash:net' };
    spec.selector = parseSelector(pick(SELECTORS));
    if (rnd() < 0.2) spec.notSelector = parseSelector(pick(SELECTORS));
    const scope = rnd();
    if (scope < 0.3) spec.namespaceSelector = parseSelector(pick(NS_SELECTORS));
    else if (scope < 0.5) spec.namespace = pick(NAMESPACES);
    if (rnd() < 0.1) spec.serviceAccountNames = ['sa1'];
    if (rnd() < 0.1) spec.serviceAccountSelector = parseSelector("role == 'r'");
    if (spec.type === 'hash:ip,port') spec.namedPort = { name: 'http', protocol: 'tcp' };
    spec.id = matcherId(spec);
    out.push(spec);
  }
  return out;
})();

function inputOf(op: Extract<Op, { t: 'item' }>): ItemInput {
  const slot = SLOTS[op.slot]!;
  const labels: Record<string, string> = { ...op.labels };
  if (slot.namespace && op.nsLabel) labels[NS] = slot.namespace;
  return {
    key: slot.key,
    ownLabels: labels,
    profiles: slot.namespace ? op.profiles : op.profiles.filter((p) => !p.startsWith('kns.')),
    namespace: slot.namespace,
    nets: op.ips.map((i) => `10.0.0.${i}/32`),
    namedPorts: op.http === null ? undefined : new Map([['http', [`tcp:${op.http}`]]]),
  };
}

/** Members as a plain evaluation would give them. */
function expectedMembers(index: LabelIndex, spec: MatcherSpec, items: Map<string, ItemInput>): string[] {
  const out = new Set<string>();
  for (const [key, it] of items) {
    if (!index.itemMatches(spec, key)) continue;
    for (const net of it.nets) {
      if (spec.type === 'hash:net') out.add(net);
      else
        for (const p of it.namedPorts?.get('http') ?? [])
          if (p.startsWith('tcp:')) out.add(`${net.replace(/\/32$/, '')},${p}`);
    }
  }
  return [...out].sort();
}

describe('LabelIndex indexes', () => {
  // Second run: every dormant set stays in the dataplane (parked), kept current with deltas;
  // third: parked sets over a few members in all leave the dataplane, least recently active first.
  for (const opts of [{}, { parkMin: 1 }, { parkMin: 1, parkMaxIds: 3 }])
    it(`candidates are supersets, registrations find every selecting matcher, members follow churn (property)${opts.parkMin ? ', dormant sets parked' : ''}${opts.parkMaxIds ? ' up to a bound' : ''}`, () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 1, maxLength: 150, size: 'max' }), (ops) => {
          const sets = new Map<string, Set<string>>();
          const sink = {
            send(m: DataplaneMessage) {
              if (m.kind === 'IPSetUpdate') {
                assert.equal(new Set(m.members).size, m.members.length, 'a member announced twice');
                sets.set(m.id, new Set(m.members));
              } else if (m.kind === 'IPSetDelta') {
                const s = sets.get(m.id);
                assert.ok(s, 'delta to an unknown set');
                for (const a of m.added) {
                  assert.ok(!s.has(a), `member ${a} added twice`);
                  s.add(a);
                }
                for (const r of m.removed) assert.ok(s.delete(r), `member ${r} removed while absent`);
              } else if (m.kind === 'IPSetRemove') assert.ok(sets.delete(m.id));
            },
          };
          const index = new LabelIndex(sink, opts);
          const items = new Map<string, ItemInput>();
          const refs = new Map<number, number>();
          const check = () => {
            for (const [m, n] of refs) {
              if (n === 0) continue;
              const spec = MATCHERS[m]!;
              const want = expectedMembers(index, spec, items);
              assert.deepEqual([...(sets.get(spec.id) ?? [])].sort(), want, `members of ${m}`);
              assert.deepEqual([...(index.membersOf_(spec.id) ?? [])].sort(), want);
            }
            // A set the dataplane holds while no reference is left (parked) is kept current too.
            const referenced = new Set([...refs].filter(([, n]) => n > 0).map(([m]) => MATCHERS[m]!.id));
            for (const spec of MATCHERS) {
              const held = sets.get(spec.id);
              if (!held || referenced.has(spec.id)) continue;
              assert.ok(opts.parkMin, `set ${spec.id} left in the dataplane without a reference`);
              assert.deepEqual([...held].sort(), expectedMembers(index, spec, items), `parked ${spec.id}`);
            }
            for (const spec of MATCHERS) {
              const cands = index.candidatesOf(spec);
              for (const key of items.keys()) {
                const matches = index.itemMatches(spec, key);
                if (matches && cands) assert.ok(cands.has(key), `candidates of ${spec.id} miss ${key}`);
                if (matches && refs.get(MATCHERS.indexOf(spec))) {
                  assert.ok(index.matchersFor(key).has(spec.id), `${key} does not find its matcher`);
                }
              }
              if (cands)
                for (const key of cands) assert.ok(items.has(key), `a deleted item ${key} is a candidate`);
            }
          };
          for (const op of ops) {
            switch (op.t) {
              case 'item': {
                const input = inputOf(op);
                items.set(input.key, input);
                index.upsertItem(input);
                break;
              }
              case 'del':
                items.delete(SLOTS[op.slot]!.key);
                index.deleteItem(SLOTS[op.slot]!.key);
                break;
              case 'profile':
                index.setProfileLabels(op.name, op.labels ?? undefined);
                break;
              case 'ref':
                refs.set(op.m, (refs.get(op.m) ?? 0) + 1);
                index.refMatcher(MATCHERS[op.m]!);
                break;
              case 'unref':
                if (!refs.get(op.m)) break;
                refs.set(op.m, refs.get(op.m)! - 1);
                index.unrefMatcher(MATCHERS[op.m]!.id);
                break;
            }
            check();
          }
          // Take everything away: every index drains.
          for (const [m, n] of refs) for (let i = 0; i < n; i++) index.unrefMatcher(MATCHERS[m]!.id);
          for (const key of items.keys()) index.deleteItem(key);
          for (const p of PROFILES) index.setProfileLabels(p, undefined);
          for (const [name, size] of Object.entries(index.indexSizes()))
            assert.equal(size, 0, `${name} left after everything was removed`);
          assert.deepEqual([...sets.keys()], [], 'sets left in the dataplane');
        }),
        { numRuns: 150 },
      );
    });

  it('an item change re-evaluates only matchers registered under labels it has or had', () => {
    const index = new LabelIndex({ send: () => {} });
    const spec = (src: string, o: Partial<MatcherSpec> = {}): MatcherSpec => {
      const s: MatcherSpec = { id: '' as IpSetId, type: 'hash:net', selector: parseSelector(src), ...o };
      s.id = matcherId(s);
      return s;
    };
    const web = spec("app == 'web'");
    const dbShop = spec("app == 'db'", { namespace: 'shop' });
    const notTier = spec('!has(tier)');
    const teamBlue = spec('all()', { namespaceSelector: parseSelector("team == 'blue'") });
    for (const m of [web, dbShop, notTier, teamBlue]) index.refMatcher(m);
    index.setProfileLabels('kns.shop', { 'pcns.team': 'blue' });
    const item = (key: string, labels: Record<string, string>, namespace?: string) =>
      index.upsertItem({
        key,
        ownLabels: labels,
        profiles: namespace ? [`kns.${namespace}`] : [],
        namespace,
        nets: ['10.1.1.1/32'],
      });
    item('w', { app: 'web' }, 'dev');
    item('d', { app: 'db' }, 'shop');
    item('h', { app: 'db', tier: 'x' });
    // !has(tier) is found by a missing label, which no item can be looked up by: always
    // re-evaluated. The others by label and namespace.
    assert.deepEqual([...index.matchersFor('w')].sort(), [web.id, notTier.id].sort());
    assert.deepEqual([...index.matchersFor('d')].sort(), [dbShop.id, notTier.id, teamBlue.id].sort());
    assert.deepEqual([...index.matchersFor('h')], [notTier.id]);
    // The candidates of a namespaced selector are intersected with the namespace (once there are
    // enough of them to make it worth it).
    for (let i = 0; i < 20; i++) item(`d${i}`, { app: 'db' }, 'dev');
    assert.deepEqual([...(index.candidatesOf(dbShop) ?? [])], ['d']);
    // Its candidates are the items without the key.
    assert.deepEqual(
      [...(index.candidatesOf(notTier) ?? [])].sort(),
      ['d', 'w', ...Array.from({ length: 20 }, (_, i) => `d${i}`)].sort(),
    );
    assert.equal(index.candidatesOf(spec("tier != 'x'")), undefined);
    assert.deepEqual([...(index.candidatesOf(teamBlue) ?? [])], ['d']);
  });

  it("a small set's announced members stay as sent while the set changes after (its kept list is copied first)", () => {
    const sent: DataplaneMessage[] = [];
    const index = new LabelIndex({ send: (m) => sent.push(m) });
    const spec: MatcherSpec = {
      id: '' as IpSetId,
      type: 'hash:net',
      selector: parseSelector("app == 'web'"),
    };
    spec.id = matcherId(spec);
    const item = (key: string, app: string, ip: string) =>
      index.upsertItem({ key, ownLabels: { app }, profiles: [], nets: [`${ip}/32`] });
    item('a', 'web', '10.0.0.1');
    item('b', 'web', '10.0.0.2');
    const announced = () => {
      const last = sent.filter((m) => m.kind === 'IPSetUpdate').at(-1);
      assert.ok(last && last.kind === 'IPSetUpdate');
      return last.members;
    };
    const ref = index.refMatcher(spec);
    const first = announced();
    const firstCopy = [...first];
    // Changes while active, then dormant (small: removed from the dataplane, its list kept), then
    // active again: each announcement is the set at its time, and no earlier one changed since.
    item('c', 'web', '10.0.0.3');
    item('a', 'db', '10.0.0.1');
    index.unref(ref);
    item('d', 'web', '10.0.0.4');
    const ref2 = index.refMatcher(spec);
    const second = announced();
    const secondCopy = [...second];
    assert.deepEqual([...second].sort(), ['10.0.0.2/32', '10.0.0.3/32', '10.0.0.4/32']);
    item('b', 'db', '10.0.0.2');
    item('e', 'web', '10.0.0.5');
    index.unref(ref2);
    index.refMatcher(spec);
    assert.deepEqual([...announced()].sort(), ['10.0.0.3/32', '10.0.0.4/32', '10.0.0.5/32']);
    assert.deepEqual(first, firstCopy);
    assert.deepEqual(second, secondCopy);
  });
});

describe('candidates of a missing key', () => {
  it('are exactly the items without it among their own labels, a superset of the matches (differential, property)', () => {
    const KEYS = ['app', 'tier', 'role'];
    const itemArb = fc.record({
      labels: fc.record(
        { app: fc.constant('web'), tier: fc.constant('x'), role: fc.constant('r') },
        {
          requiredKeys: [],
        },
      ),
      // A profile passing `tier` on: such items lack it as an own label, yet have it.
      inherits: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.array(fc.option(itemArb, { nil: undefined }), { minLength: 1, maxLength: 60 }),
        fc.array(fc.nat(59), { maxLength: 20 }),
        (slots, deletions) => {
          const index = new LabelIndex({ send: () => {} });
          index.setProfileLabels('p', { tier: 'y' });
          const own = new Map<string, Record<string, string>>();
          slots.forEach((it, i) => {
            if (!it) return;
            const key = `i${i}`;
            own.set(key, it.labels);
            index.upsertItem({ key, ownLabels: it.labels, profiles: it.inherits ? ['p'] : [], nets: [] });
          });
          for (const i of deletions) {
            own.delete(`i${i}`);
            index.deleteItem(`i${i}`);
          }
          for (const k of KEYS) {
            for (const src of [`!has(${k})`, `!has(${k}) && has(app)`, `app == 'web' || !has(${k})`]) {
              const spec: MatcherSpec = {
                id: 'x' as IpSetId,
                type: 'hash:net',
                selector: parseSelector(src),
              };
              const cands = index.candidatesOf(spec);
              assert.ok(cands, `${src} is narrowed`);
              for (const key of own.keys())
                if (index.itemMatches(spec, key)) assert.ok(cands.has(key), `${src}: ${key} missed`);
              if (src.startsWith('!has') && !src.includes('&&')) {
                const want = [...own].filter(([, l]) => !(k in l)).map(([key]) => key);
                assert.deepEqual([...cands].sort(), want.sort(), src);
              }
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
