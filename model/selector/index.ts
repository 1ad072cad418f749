// Calico's label selector language: parse once, evaluate many times.
//
//   const sel = parseSelector("app == 'web' && tier in {'a', 'b'}");
//   sel.evaluate({ app: 'web', tier: 'a' });  // true
//   sel.canonical;  // '(app == "web" && tier in {"a", "b"})'
//   sel.id;         // 's:…', the id Felix gives the same selector
//
// Semantics as Calico: `!=` and `not in` are true when the label is absent; `==`, `in`,
// `contains`, `starts with`, `ends with` are false then. `global()` matches label sets without a
// `projectcalico.org/namespace` label, i.e. non-namespaced entities (see ast.ts).
import { textDigest } from '../../lib/hash.ts';
import type { Labels } from '../resources.ts';
import { ALL_NODE, boolDepth, collectKeys, type Node, print } from './ast.ts';
import { compile } from './compile.ts';
import { SelectorParseError } from './errors.ts';
import { MAX_NESTING, MAX_SELECTOR_BYTES, parse } from './parser.ts';

export type { Labels } from '../resources.ts';
export { SelectorParseError } from './errors.ts';
export { MAX_NESTING, MAX_SELECTOR_BYTES } from './parser.ts';

export interface Selector {
  /** The text as given. */
  readonly source: string;
  /** Canonical form: Calico's printing of the selector (see ast.ts). */
  readonly canonical: string;
  /** 's:' + base64url(SHA-224('s:' + canonical)), unpadded: Felix's UniqueID for the selector. */
  readonly id: string;
  evaluate(labels: Labels): boolean;
  /** Label keys the selector reads (for indexing); empty for all(). */
  readonly labelKeys: ReadonlySet<string>;
}

class CompiledSelector implements Selector {
  readonly canonical: string;
  readonly labelKeys: ReadonlySet<string>;
  /** An own property holding the compiled closure, so a call costs no extra dispatch. */
  readonly evaluate: (labels: Labels) => boolean;
  private cachedId: string | undefined;

  constructor(
    readonly source: string,
    /** The AST, kept so `and()` can combine selectors without re-parsing. */
    readonly ast: Node,
  ) {
    this.canonical = print(ast);
    this.labelKeys = collectKeys(ast, new Set());
    this.evaluate = compile(ast);
  }

  // Lazily: hashing costs more than parsing a short selector, and not every caller needs the id.
  get id(): string {
    this.cachedId ??= selectorId(this.canonical);
    return this.cachedId;
  }
}

/** Felix's hash.MakeUniqueID("s", canonical): note the prefix is hashed too. */
function selectorId(canonical: string): string {
  return `s:${textDigest('sha224', `s:${canonical}`, 'base64url')}`;
}

/** Parses a selector; empty or whitespace-only text is all(). Throws SelectorParseError. */
export function parseSelector(src: string): Selector {
  return checked(new CompiledSelector(src, parse(src)));
}

/**
 * Refuses a selector whose canonical text would not parse back: printing adds parentheses and
 * spaces, so a source near the size limit can print over it, and `and()` adds a nesting level.
 */
function checked(sel: CompiledSelector): CompiledSelector {
  if (boolDepth(sel.ast) > MAX_NESTING)
    throw new SelectorParseError(sel.source, 0, `at most ${MAX_NESTING} nested && / || groups`);
  const canonical = sel.canonical;
  if (canonical.length > MAX_SELECTOR_BYTES || Buffer.byteLength(canonical) > MAX_SELECTOR_BYTES) {
    throw new SelectorParseError(
      sel.source,
      0,
      `a selector whose canonical form is at most ${MAX_SELECTOR_BYTES} bytes`,
    );
  }
  return sel;
}

export const ALL: Selector = new CompiledSelector('all()', ALL_NODE);

/** Entries per generation of the cache: it holds between this many and twice as many. */
const CACHE_GENERATION = 25_000;
/** The most selectors parseSelectorCached keeps. */
export const SELECTOR_CACHE_MAX = 2 * CACHE_GENERATION;
let young = new Map<string, Selector>();
let old = new Map<string, Selector>();

/**
 * parseSelector with a bounded cache keyed by source text, in two generations: a hit in the old
 * one moves to the young one, and a full young generation becomes the old one (the old one
 * dropped). An LRU on one Map (delete and re-insert on each hit, evict the first key) leaves a
 * hole per hit that every eviction's `keys().next()` then steps over, and at Felix's scale
 * (30,000 selectors in 10,000 policies) it thrashed. Errors are not cached.
 */
export function parseSelectorCached(src: string): Selector {
  const hit = young.get(src);
  if (hit !== undefined) return hit;
  const sel = old.get(src) ?? parseSelector(src);
  if (young.size >= CACHE_GENERATION) {
    old = young;
    young = new Map();
  }
  young.set(src, sel);
  return sel;
}

/**
 * `a && b`, exactly as parsing `(a) && (b)` would give it (no simplification, not even of
 * all()), so the id is the one Felix computes for the same text. Its `source` is that text, built
 * from the canonical forms. Throws SelectorParseError in the (unlikely) case the result exceeds
 * the size or nesting limits.
 */
export function and(a: Selector, b: Selector): Selector {
  const source = `(${a.canonical}) && (${b.canonical})`;
  if (a instanceof CompiledSelector && b instanceof CompiledSelector) {
    return checked(new CompiledSelector(source, { kind: 'and', operands: [a.ast, b.ast] }));
  }
  // A Selector from elsewhere: its canonical text is all we can trust.
  return parseSelector(source);
}

const astCache = new WeakMap<Selector, Node>();

/** A selector's syntax tree: the compiled selector keeps it; any other is re-parsed once. */
export function selectorAst(sel: Selector): Node {
  const own = (sel as { ast?: Node }).ast;
  if (own && typeof own === 'object' && 'kind' in own) return own;
  let n = astCache.get(sel);
  if (!n) {
    n = parse(sel.canonical);
    astCache.set(sel, n);
  }
  return n;
}
