// Property tests of the selector parser: random text, mutated selectors, and generated selectors
// checked against a reference interpreter written independently of the compiler.
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type Labels, parseSelector, type Selector, SelectorParseError } from '../../model/selector/index.ts';

/** Per parse. The parser is linear: 60 KB inputs take 2-3 ms once the JIT has warmed up. */
// Guards against super-linear parsing (a quadratic parse of a 60,000-character input takes
// seconds), not a speed target: generous, so a busy machine does not fail it.
const MAX_MS = 250;

/** Best of a few timings, so JIT warm-up, GC pauses and a busy machine do not fail the test. */
function parseMs(src: string): number {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 4 && best >= MAX_MS; i++) {
    const t0 = performance.now();
    try {
      parseSelector(src);
    } catch {
      // Only the time matters here.
    }
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/** Parses, insisting on SelectorParseError as the only failure, speed, and a stable canonical form. */
function parseOrRefuse(src: string): Selector | undefined {
  let sel: Selector | undefined;
  try {
    sel = parseSelector(src);
  } catch (e) {
    if (!(e instanceof SelectorParseError)) throw e;
    assert.ok(
      e.position >= 0 && e.position <= src.length,
      `position ${e.position} for ${JSON.stringify(src)}`,
    );
  }
  const ms = parseMs(src);
  assert.ok(ms < MAX_MS, `${ms.toFixed(1)} ms for ${JSON.stringify(src.slice(0, 100))}`);
  if (sel) {
    const again = parseSelector(sel.canonical);
    assert.equal(again.canonical, sel.canonical, `round trip of ${JSON.stringify(src)}`);
    assert.equal(again.id, sel.id);
  }
  return sel;
}

// Generated selectors ----------------------------------------------------------------------------

type Ast =
  | { op: 'eq' | 'ne' | 'contains' | 'starts' | 'ends'; key: string; value: string }
  | { op: 'in' | 'notin'; key: string; values: string[] }
  | { op: 'has'; key: string }
  | { op: 'all' | 'global' }
  | { op: 'not'; n: Ast }
  | { op: 'and' | 'or'; ns: Ast[] };

const KEYS = ['a', 'b', 'app.kubernetes.io/name', 'has', 'in', 'projectcalico.org/namespace'];
const VALUES = ['', 'x', 'y', 'xy', "it's", 'say "hi"', 'a b', '\\', 'é'];

const key = fc.constantFrom(...KEYS);
const value = fc.constantFrom(...VALUES);
const leaf: fc.Arbitrary<Ast> = fc.oneof(
  fc.record({ op: fc.constantFrom('eq', 'ne', 'contains', 'starts', 'ends'), key, value }),
  fc.record({ op: fc.constantFrom('in', 'notin'), key, values: fc.array(value, { maxLength: 4 }) }),
  fc.record({ op: fc.constant('has'), key }),
  fc.record({ op: fc.constantFrom('all', 'global') }),
) as fc.Arbitrary<Ast>;

const { tree } = fc.letrec<{ tree: Ast; not: Ast; bool: Ast }>((tie) => ({
  tree: fc.oneof({ depthSize: 'small', maxDepth: 5 }, leaf, tie('not'), tie('bool')),
  not: tie('tree').map((n): Ast => ({ op: 'not', n })),
  bool: fc
    .record({ op: fc.constantFrom('and', 'or'), ns: fc.array(tie('tree'), { minLength: 2, maxLength: 4 }) })
    .map((r) => r as Ast),
}));

/** The meaning, straight from Calico's documentation. */
function reference(n: Ast, l: Labels): boolean {
  const has = (k: string) => Object.hasOwn(l, k);
  switch (n.op) {
    case 'eq':
      return has(n.key) && l[n.key] === n.value;
    case 'ne':
      return !has(n.key) || l[n.key] !== n.value;
    case 'contains':
      return has(n.key) && l[n.key]!.includes(n.value);
    case 'starts':
      return has(n.key) && l[n.key]!.startsWith(n.value);
    case 'ends':
      return has(n.key) && l[n.key]!.endsWith(n.value);
    case 'in':
      return has(n.key) && n.values.includes(l[n.key]!);
    case 'notin':
      return !has(n.key) || !n.values.includes(l[n.key]!);
    case 'has':
      return has(n.key);
    case 'all':
      return true;
    case 'global':
      return true;
    case 'not':
      return !reference(n.n, l);
    case 'and':
      return n.ns.every((c) => reference(c, l));
    case 'or':
      return n.ns.some((c) => reference(c, l));
  }
}

/** Renders a tree as text, spending `style` numbers on spacing, quoting and spelling choices. */
function render(n: Ast, style: number[]): string {
  let i = 0;
  const pick = (k: number) => (style.length === 0 ? 0 : style[i++ % style.length]! % k);
  const ws = () => ['', ' ', '  ', '\t', ' \t'][pick(5)]!;
  const sp = () => [' ', '  ', '\t', ' \t '][pick(4)]!; // where a separator is required
  const q = (v: string) =>
    v.includes('"') ? `'${v}'` : v.includes("'") ? `"${v}"` : pick(2) ? `'${v}'` : `"${v}"`;
  const words = {
    eq: () => '==',
    ne: () => '!=',
    contains: () => 'contains',
    starts: () => (pick(4) ? `starts${sp()}with` : 'startswith'),
    ends: () => (pick(4) ? `ends${sp()}with` : 'endswith'),
    in: () => 'in',
    notin: () => (pick(4) ? `not${sp()}in` : 'notin'),
  };
  const go = (n: Ast): string => {
    const out = term(n);
    // Redundant parentheses never change the meaning or the canonical form.
    return pick(5) === 0 ? `(${ws()}${out}${ws()})` : out;
  };
  const term = (n: Ast): string => {
    switch (n.op) {
      case 'has':
        return `has(${ws()}${n.key}${ws()})`;
      case 'all':
      case 'global':
        return `${n.op}(${ws()})`;
      case 'not':
        return `!${ws()}${n.n.op === 'and' || n.n.op === 'or' ? `(${go(n.n)})` : go(n.n)}`;
      case 'and':
      case 'or': {
        const sep = n.op === 'and' ? '&&' : '||';
        return n.ns
          .map((c) => (c.op === 'and' || c.op === 'or' ? `(${go(c)})` : go(c)))
          .join(`${ws()}${sep}${ws()}`);
      }
      case 'in':
      case 'notin': {
        const trailing = n.values.length > 0 && pick(4) === 0 ? ',' : '';
        const items = n.values.map(q).join(`${ws()},${ws()}`);
        return `${n.key}${sp()}${words[n.op]()}${ws()}{${ws()}${items}${trailing}${ws()}}`;
      }
      case 'eq':
      case 'ne':
        return `${n.key}${ws()}${words[n.op]()}${ws()}${q(n.value)}`;
      default:
        return `${n.key}${sp()}${words[n.op]()}${ws()}${q(n.value)}`;
    }
  };
  return `${ws()}${go(n)}${ws()}`;
}

const labels = fc.dictionary(key, value, { maxKeys: 4 });
const style = fc.array(fc.nat(1000), { minLength: 1, maxLength: 40 });

describe('selector fuzz', () => {
  it('generated selectors parse and agree with the reference semantics', () => {
    fc.assert(
      fc.property(tree, style, fc.array(labels, { minLength: 1, maxLength: 8 }), (t, st, ls) => {
        const src = render(t, st);
        const sel = parseOrRefuse(src);
        assert.ok(sel, `refused ${JSON.stringify(src)}`);
        for (const l of ls) assert.equal(sel.evaluate(l), reference(t, l), `${src} on ${JSON.stringify(l)}`);
      }),
      { numRuns: 1500 },
    );
  });

  it('every spelling of one tree has the same canonical form and id', () => {
    fc.assert(
      fc.property(tree, style, style, (t, s1, s2) => {
        const a = parseSelector(render(t, s1));
        const b = parseSelector(render(t, s2));
        assert.equal(a.canonical, b.canonical);
        assert.equal(a.id, b.id);
      }),
      { numRuns: 800 },
    );
  });

  it('random text parses or throws SelectorParseError', () => {
    const alphabet = fc.constantFrom(
      ...'ab/.-_=!&|(){},\'" \t\n%\\é'.split(''),
      'has',
      'all',
      'global',
      'in',
      'not',
      'contains',
      'starts',
      'ends',
      'with',
      '==',
      '!=',
      '&&',
      '||',
      "'x'",
      '"y"',
    );
    const selectorish = fc.array(alphabet, { maxLength: 40 }).map((a) => a.join(''));
    fc.assert(
      fc.property(selectorish, (s) => void parseOrRefuse(s)),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 60 }), (s) => void parseOrRefuse(s)),
      {
        numRuns: 1000,
      },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (s) => void parseOrRefuse(s)),
      { numRuns: 1000 },
    );
  });

  it('mutations of valid selectors parse or throw SelectorParseError', () => {
    const mutation = fc.tuple(fc.constantFrom('delete', 'insert', 'swap', 'duplicate'), fc.nat(), fc.nat());
    const chars = '()!&|=\'"{},a /-.';
    fc.assert(
      fc.property(tree, style, fc.array(mutation, { minLength: 1, maxLength: 4 }), (t, st, muts) => {
        let s = render(t, st);
        for (const [kind, x, y] of muts) {
          const i = s.length === 0 ? 0 : x % s.length;
          const j = s.length === 0 ? 0 : y % s.length;
          if (kind === 'delete') s = s.slice(0, i) + s.slice(i + 1);
          else if (kind === 'insert') s = s.slice(0, i) + chars[y % chars.length] + s.slice(i);
          else if (kind === 'swap') s = s.slice(0, Math.min(i, j)) + s.slice(Math.max(i, j)) + s.slice(i, j);
          else s = s.slice(0, i) + s.slice(Math.min(i, j), Math.max(i, j)) + s.slice(i);
        }
        parseOrRefuse(s);
      }),
      { numRuns: 2000 },
    );
  });

  it('adversarial inputs finish quickly', () => {
    const big = 60_000;
    const inputs = [
      '('.repeat(big),
      '!'.repeat(big),
      `${'!'.repeat(big)}has(a)`,
      `'${'x'.repeat(big)}`,
      `a == '${'x'.repeat(big)}`,
      'a'.repeat(big),
      `${'a.'.repeat(big / 2)}b == 'x'`,
      `has(${'a'.repeat(big)})`,
      `a in {${"'x',".repeat(big / 4)}}`,
      `a in {${"'x',".repeat(big / 4)}`,
      Array(big / 10)
        .fill("a == 'x'")
        .join('||')
        .slice(0, big),
      Array(big / 10)
        .fill('(a == "x" ||')
        .join('')
        .slice(0, big),
      '{'.repeat(big),
      `a == 'x' ${'&'.repeat(big)}`,
    ];
    for (const s of inputs) parseOrRefuse(s);
  });
});
