// The selector AST and its canonical printing.
//
// The canonical text follows Calico's `String()` of its AST (libcalico-go/lib/selector/parser)
// so that a selector's id (a hash of that text) is the one Felix computes for the same selector:
//   - `k == "v"`, `k != "v"`, `k contains "v"`, `k starts with "v"`, `k ends with "v"`;
//   - `k in {"a", "b"}`, `k not in {}` with items sorted (by code point, i.e. Go's byte order)
//     and de-duplicated;
//   - `has(k)`, `all()`, `global()`, `!<term>`;
//   - every && / || group wrapped in parentheses: `(a == "x" && (b == "y" || has(c)))`.
// Calico's string literals have no escape sequences (a backslash is an ordinary character), so a
// value is printed in double quotes unless it contains a double quote, then in single quotes.
// A value holding both kinds of quote cannot be written in the language, so it never reaches here.

/** A node of a parsed selector. Set items are already sorted and de-duplicated. */
export type Node =
  | { readonly kind: 'all' }
  | { readonly kind: 'global' }
  | { readonly kind: 'has'; readonly key: string }
  | { readonly kind: ValueOp; readonly key: string; readonly value: string }
  | { readonly kind: SetOp; readonly key: string; readonly values: readonly string[] }
  | { readonly kind: 'not'; readonly operand: Node }
  | { readonly kind: BoolOp; readonly operands: readonly Node[] };

export type ValueOp = 'eq' | 'ne' | 'contains' | 'startsWith' | 'endsWith';
export type SetOp = 'in' | 'notIn';
export type BoolOp = 'and' | 'or';

/**
 * The label Calico puts on namespaced entities. A rule's namespaceSelector of `global()` selects
 * entities without it (host endpoints, global network sets); `global()` itself, as Calico's
 * GlobalNode, is true wherever it stands.
 */
export const NAMESPACE_LABEL = 'projectcalico.org/namespace';

export const ALL_NODE: Node = { kind: 'all' };

const VALUE_OP_TEXT: Readonly<Record<ValueOp, string>> = {
  eq: ' == ',
  ne: ' != ',
  contains: ' contains ',
  startsWith: ' starts with ',
  endsWith: ' ends with ',
};

/**
 * Negation with double negation removed. Calico collapses a run of `!` into one, so `!!x` prints
 * as `x`; removing `!` from `!(!x)` as well keeps printing idempotent (Calico would print `!!x`,
 * which re-parses to a different text).
 */
export function negate(n: Node): Node {
  return n.kind === 'not' ? n.operand : { kind: 'not', operand: n };
}

/** Sorted, de-duplicated copy of set items, in code-point order (as Go sorts UTF-8 strings). */
export function normaliseSet(items: readonly string[]): string[] {
  const sorted = [...items].sort(compareCodePoints);
  const out: string[] = [];
  for (const s of sorted) {
    if (out.length === 0 || out[out.length - 1] !== s) out.push(s);
  }
  return out;
}

/**
 * Code-point order. UTF-16 order differs from it only when a surrogate (a character above U+FFFF)
 * meets a character in U+E000..U+FFFF; the surrogate's character is then the greater one.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys) return xs ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}

export function quote(value: string): string {
  return value.includes('"') ? `'${value}'` : `"${value}"`;
}

/** The canonical text of a node. */
export function print(n: Node): string {
  const parts: string[] = [];
  printInto(n, parts);
  return parts.join('');
}

function printInto(n: Node, out: string[]): void {
  switch (n.kind) {
    case 'all':
      out.push('all()');
      return;
    case 'global':
      out.push('global()');
      return;
    case 'has':
      out.push('has(', n.key, ')');
      return;
    case 'in':
    case 'notIn':
      out.push(n.key, n.kind === 'in' ? ' in {' : ' not in {', n.values.map(quote).join(', '), '}');
      return;
    case 'not':
      out.push('!');
      printInto(n.operand, out);
      return;
    case 'and':
    case 'or': {
      const sep = n.kind === 'and' ? ' && ' : ' || ';
      out.push('(');
      n.operands.forEach((op, i) => {
        if (i > 0) out.push(sep);
        printInto(op, out);
      });
      out.push(')');
      return;
    }
    default:
      out.push(n.key, VALUE_OP_TEXT[n.kind], quote(n.value));
  }
}

/** Every label key the node reads. */
export function collectKeys(n: Node, into: Set<string>): Set<string> {
  switch (n.kind) {
    case 'all':
    case 'global':
      break;
    case 'not':
      collectKeys(n.operand, into);
      break;
    case 'and':
    case 'or':
      for (const op of n.operands) collectKeys(op, into);
      break;
    default:
      into.add(n.key);
  }
  return into;
}

// Nodes are immutable, so a bool node's depth can be remembered; the parser asks for it at every
// group it builds, and without the memo that would be quadratic.
const depthMemo = new WeakMap<Node, number>();

/** How deeply && / || groups nest: the parenthesis depth of the canonical text. */
export function boolDepth(n: Node): number {
  if (n.kind === 'not') return boolDepth(n.operand);
  if (n.kind !== 'and' && n.kind !== 'or') return 0;
  let d = depthMemo.get(n);
  if (d === undefined) {
    d = 1;
    for (const op of n.operands) d = Math.max(d, 1 + boolDepth(op));
    depthMemo.set(n, d);
  }
  return d;
}
