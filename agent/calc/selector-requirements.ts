// What an item must have for a rule matcher to possibly select it: necessary conditions read off
// the selectors' syntax trees, used by the label index to look at candidate items only (instead of
// every item), to intersect candidate lists, and to re-evaluate, on an item's change, only the
// matchers that could care.
//
// A requirement is a conjunction of clauses (all must hold), each a disjunction of atoms (at least
// one holds); a clause without atoms cannot hold, so the matcher selects nothing (NOTHING). `null`
// means nothing is known: the matcher can select items that have nothing in particular (`all()`,
// `k != 'v'`, `k not in {...}`, `global()`), and stays on an always-evaluate list.
// Atoms are in one of four spaces:
//   - `labels`: the item's effective labels (own plus inherited from profiles);
//   - `absent`: the item's effective labels lack a key (`!has(k)`): found as the complement of the
//     items that have it, so it narrows where the key is common; no item can be looked up by a
//     key it lacks, so such a clause is never one to register under;
//   - `ns`: the labels of the item's namespace (its kns profile's `pcns.` labels, prefix stripped);
//   - `scope`: the item's namespace name.
// Only necessity matters: the index still evaluates the whole matcher on every candidate.
import type { Node } from '../../model/selector/ast.ts';
import { type Selector, selectorAst } from '../../model/selector/index.ts';

export { selectorAst };

export const NS_NAME_LABEL = 'projectcalico.org/name';
const NAMESPACE_LABEL = 'projectcalico.org/namespace';
const SERVICE_ACCOUNT_LABEL = 'projectcalico.org/serviceaccount';

export type Atom =
  /** `labels[key]` is one of `values`, or (without values) `labels[key]` is present. */
  | { readonly space: 'labels' | 'ns'; readonly key: string; readonly values?: readonly string[] }
  /** `labels[key]` is absent. */
  | { readonly space: 'absent'; readonly key: string }
  /** The item is in this namespace. */
  | { readonly space: 'scope'; readonly namespace: string };

/** At least one atom holds; no atoms: cannot hold. */
export type Clause = readonly Atom[];
/** Every clause holds; null: nothing known. */
export type Requirement = readonly Clause[] | null;

/** Matches nothing. */
export const NOTHING: Requirement = Object.freeze([Object.freeze([]) as Clause]);

export function isNothing(r: Requirement): boolean {
  return r?.some((c) => c.length === 0) === true;
}

/** Estimated number of candidate items of a clause (lower is better). */
export type CostFn = (clause: Clause) => number;

/** The parts of a matcher that a requirement can be read from (a subset of MatcherSpec). */
export interface RequirementSource {
  selector?: Selector;
  notSelector?: Selector;
  namespaceSelector?: Selector;
  namespace?: string;
  serviceAccountNames?: readonly string[];
  serviceAccountSelector?: Selector;
  staticMembers?: readonly string[];
}

/**
 * A namespaceSelector of exactly `global()`: "non-namespaced entities only" (Calico rewrites it to
 * `!has(projectcalico.org/namespace)`). The rule compiler refuses global() anywhere else in one.
 */
export function isGlobalOnly(namespaceSelector: Selector): boolean {
  return selectorAst(namespaceSelector).kind === 'global';
}

/**
 * Necessary conditions for `n` (or, with `negated`, for `!n`) to hold on a label set of `space`.
 * A disjunction keeps, of each alternative, its cheapest clause by `cost`.
 */
export function requirementOf(n: Node, negated: boolean, space: 'labels' | 'ns', cost: CostFn): Requirement {
  switch (n.kind) {
    case 'all':
    case 'global':
      return negated ? NOTHING : null;
    case 'has':
      if (negated) return space === 'labels' ? [[{ space: 'absent', key: n.key }]] : null;
      return atomRequirement(space, n.key);
    case 'contains':
    case 'startsWith':
    case 'endsWith':
      return negated ? null : atomRequirement(space, n.key);
    case 'eq':
      return negated ? null : atomRequirement(space, n.key, [n.value]);
    case 'ne':
      return negated ? atomRequirement(space, n.key, [n.value]) : null;
    case 'in':
      return negated ? null : n.values.length ? atomRequirement(space, n.key, n.values) : NOTHING;
    case 'notIn':
      return negated ? (n.values.length ? atomRequirement(space, n.key, n.values) : NOTHING) : null;
    case 'not':
      return requirementOf(n.operand, !negated, space, cost);
    case 'and':
    case 'or': {
      const parts = n.operands.map((op) => requirementOf(op, negated, space, cost));
      // and, or a negated or (De Morgan): every operand must hold.
      if ((n.kind === 'and') !== negated) return conjoin(parts);
      // or, or a negated and: one operand must hold (those that cannot are left out).
      if (parts.some((p) => p === null)) return null;
      const possible = parts.filter((p) => !isNothing(p)) as (readonly Clause[])[];
      if (possible.length === 0) return NOTHING;
      return [possible.flatMap((p) => cheapestClause(p, cost))];
    }
  }
}

/** All of the requirements. */
export function conjoin(parts: readonly Requirement[]): Requirement {
  const clauses: Clause[] = [];
  for (const p of parts) {
    if (p === null) continue;
    if (isNothing(p)) return NOTHING;
    clauses.push(...p);
  }
  return clauses.length > 0 ? clauses : null;
}

/** Whether an item can be looked up by each atom of the clause (by a label or namespace it has). */
export function isKeyable(c: Clause): boolean {
  for (const a of c) if (a.space === 'absent') return false;
  return true;
}

/** The clause with the fewest estimated candidates. */
export function cheapestClause(clauses: readonly Clause[], cost: CostFn): Clause {
  let best = clauses[0]!;
  let bestCost = Number.POSITIVE_INFINITY;
  for (const c of clauses) {
    const x = c.length === 0 ? -1 : cost(c);
    if (x < bestCost) {
      best = c;
      bestCost = x;
    }
  }
  return best;
}

/**
 * An atom in `space`. In the namespace space, the namespace's name (under the implicit keys)
 * becomes a scope atom; mere presence of an implicit key says nothing (every namespace has it).
 */
function atomRequirement(space: 'labels' | 'ns', key: string, values?: readonly string[]): Requirement {
  if (space === 'ns' && (key === NAMESPACE_LABEL || key === NS_NAME_LABEL)) {
    return values ? [values.map((namespace) => ({ space: 'scope', namespace }))] : null;
  }
  return [[values ? { space, key, values } : { space, key }]];
}

/** Necessary conditions for a matcher to select an item: what each of its parts requires. */
export function matcherRequirement(spec: RequirementSource, cost: CostFn): Requirement {
  if (spec.staticMembers) return NOTHING;
  const parts: Requirement[] = [];
  if (spec.namespace !== undefined) parts.push([[{ space: 'scope', namespace: spec.namespace }]]);
  // A namespaceSelector of global() selects non-namespaced items, which have no namespace labels
  // to index by: nothing to read from it then.
  if (spec.namespaceSelector && !isGlobalOnly(spec.namespaceSelector))
    parts.push(requirementOf(selectorAst(spec.namespaceSelector), false, 'ns', cost));
  if (spec.selector) parts.push(requirementOf(selectorAst(spec.selector), false, 'labels', cost));
  if (spec.notSelector) parts.push(requirementOf(selectorAst(spec.notSelector), true, 'labels', cost));
  if (spec.serviceAccountNames && spec.serviceAccountNames.length > 0)
    parts.push([[{ space: 'labels', key: SERVICE_ACCOUNT_LABEL, values: spec.serviceAccountNames }]]);
  if (spec.serviceAccountSelector) parts.push([[{ space: 'labels', key: SERVICE_ACCOUNT_LABEL }]]);
  return conjoin(parts);
}
