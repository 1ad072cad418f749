// Selectors indexed by what an item needs for them to select it (Felix's active-rules calculator
// keeps rule selectors this way): each entry — a rule matcher, a policy — is registered under the
// atoms of its most selective required clause, and within those under a second single-atom clause
// (a label value or the namespace) when it has one. An item's change then collects only the
// entries registered under a label (or namespace label, or namespace) the item has, plus those
// that can select items with nothing in particular (`all()`, `!has(k)`...). Used by the label
// index for rule matchers over every item, and by the policy resolver for policy selectors over
// the local endpoints.
import type { Labels } from '../../model/resources.ts';
import { getOrCreate } from './index-structures.ts';
import {
  type Atom,
  type Clause,
  type CostFn,
  cheapestClause,
  isKeyable,
  isNothing,
  type Requirement,
} from './selector-requirements.ts';

/** An entry with a scratch mark, so that one collection lists it once without a set. */
export interface Registrant {
  mark: number;
}

/** What an item offers to the registry: the fields atoms are read from. */
export interface ItemView {
  readonly labels: Labels;
  /** Labels of the item's namespace (space `ns`); undefined for non-namespaced items. */
  readonly nsLabels?: Labels;
  /** The item's namespace name (space `scope`). */
  readonly namespace?: string;
}

/**
 * Where an entry is registered: 'always' (evaluated for every item), 'never' (selects nothing),
 * or under each atom of `primary`, narrowed by `secondary` when given.
 */
export type Registration = 'always' | 'never' | { readonly primary: Clause; readonly secondary?: Atom };

/**
 * The registration for a requirement: its cheapest clause an item can be looked up by, then its
 * cheapest single atom looked up in one step.
 */
export function registrationOf(req: Requirement, cost: CostFn): Registration {
  if (req === null) return 'always';
  if (isNothing(req)) return 'never';
  const keyable = req.filter(isKeyable);
  if (keyable.length === 0) return 'always';
  const primary = cheapestClause(keyable, cost);
  let secondary: Atom | undefined;
  let bestCost = Number.POSITIVE_INFINITY;
  for (const c of keyable) {
    if (c === primary || c.length !== 1) continue;
    const a = c[0]!;
    // A namespace label or a bare key cannot be looked up from the item in one step.
    if (a.space === 'ns' || (a.space === 'labels' && !a.values)) continue;
    const x = cost(c);
    if (x < bestCost) {
      secondary = a;
      bestCost = x;
    }
  }
  return secondary ? { primary, secondary } : { primary };
}

/** Entries registered under one atom, directly or by a second atom (key → value → entries). */
interface RegNode<T> {
  direct: Set<T> | undefined;
  bySecondary: Map<string, Map<string, Set<T>>> | undefined;
}

/** The secondary key standing for the item's namespace (not a valid label key). */
const SCOPE_KEY = '\0namespace';

export class RequirementRegistry<T extends Registrant> {
  private readonly byLabel = new Map<string, Map<string, RegNode<T>>>();
  private readonly byLabelKey = new Map<string, RegNode<T>>();
  private readonly byNsLabel = new Map<string, Map<string, RegNode<T>>>();
  private readonly byNsLabelKey = new Map<string, RegNode<T>>();
  private readonly byNamespace = new Map<string, RegNode<T>>();
  private readonly always = new Set<T>();
  private registrations = 0;
  private pass = 0;

  /** Registrations held (always-evaluated entries count once) and nodes: for drain checks. */
  sizes(): { entries: number; nodes: number } {
    let nodes = this.byLabelKey.size + this.byNsLabelKey.size + this.byNamespace.size;
    for (const m of [this.byLabel, this.byNsLabel]) for (const byValue of m.values()) nodes += byValue.size;
    return { entries: this.always.size + this.registrations, nodes };
  }

  register(entry: T, reg: Registration): void {
    if (reg === 'always') {
      this.always.add(entry);
      return;
    }
    if (reg === 'never') return;
    const { key: secKey, values: secValues } = secondaryKey(reg.secondary);
    for (const a of reg.primary) {
      for (const node of this.nodesFor(a)) {
        const sets: Set<T>[] = [];
        if (secKey === undefined) {
          node.direct ??= new Set();
          sets.push(node.direct);
        } else {
          node.bySecondary ??= new Map();
          const byValue = getOrCreate(node.bySecondary, secKey, () => new Map<string, Set<T>>());
          for (const v of secValues) sets.push(getOrCreate(byValue, v, () => new Set<T>()));
        }
        for (const set of sets) {
          if (set.has(entry)) continue;
          set.add(entry);
          this.registrations++;
        }
      }
    }
  }

  /** Undoes `register` (with the same registration). */
  unregister(entry: T, reg: Registration): void {
    if (reg === 'always') {
      this.always.delete(entry);
      return;
    }
    if (reg === 'never') return;
    const { key: secKey, values: secValues } = secondaryKey(reg.secondary);
    for (const a of reg.primary) {
      for (const { node, drop } of this.heldNodesOf(a)) {
        if (secKey === undefined) {
          if (node.direct?.delete(entry)) this.registrations--;
          if (node.direct?.size === 0) node.direct = undefined;
        } else {
          const byValue = node.bySecondary?.get(secKey);
          if (byValue) {
            for (const v of secValues) {
              const s = byValue.get(v);
              if (s?.delete(entry)) this.registrations--;
              if (s?.size === 0) byValue.delete(v);
            }
            if (byValue.size === 0) node.bySecondary!.delete(secKey);
          }
          if (node.bySecondary?.size === 0) node.bySecondary = undefined;
        }
        if (!node.direct && !node.bySecondary) drop();
      }
    }
  }

  /** The entries that could select `item` (or, when given, `other`), each once, in no order. */
  collect(item: ItemView, other?: ItemView): T[] {
    const pass = ++this.pass;
    const out: T[] = [];
    collectInto(this.always, pass, out);
    this.collectFor(item, pass, out);
    if (other) this.collectFor(other, pass, out);
    return out;
  }

  private collectFor(item: ItemView, pass: number, out: T[]): void {
    const byLabel = this.byLabel;
    const byKey = this.byLabelKey;
    if (byLabel.size > 0 || byKey.size > 0) {
      const labels = item.labels;
      for (const k in labels) {
        const values = byLabel.get(k);
        if (values !== undefined) {
          const node = values.get(labels[k]!);
          if (node !== undefined) collectNode(node, item, pass, out);
        }
        if (byKey.size > 0) {
          const node = byKey.get(k);
          if (node !== undefined) collectNode(node, item, pass, out);
        }
      }
    }
    const ns = item.nsLabels;
    if (ns && (this.byNsLabel.size > 0 || this.byNsLabelKey.size > 0)) {
      for (const k in ns) {
        const node = this.byNsLabel.get(k)?.get(ns[k]!);
        if (node !== undefined) collectNode(node, item, pass, out);
        const nodeK = this.byNsLabelKey.get(k);
        if (nodeK !== undefined) collectNode(nodeK, item, pass, out);
      }
    }
    if (item.namespace !== undefined && this.byNamespace.size > 0) {
      const node = this.byNamespace.get(item.namespace);
      if (node !== undefined) collectNode(node, item, pass, out);
    }
  }

  /**
   * The registration nodes of an atom (one per value), created where missing, for a registration:
   * without the closures `heldNodesOf` makes to drop them (a load registers tens of thousands).
   */
  private nodesFor(a: Atom): RegNode<T>[] {
    const out: RegNode<T>[] = [];
    if (a.space === 'scope') {
      out.push(nodeAt(this.byNamespace, a.namespace));
      return out;
    }
    // Never registered under (registrationOf leaves such clauses out).
    if (a.space === 'absent') return out;
    const [byValue, byKey] =
      a.space === 'labels' ? [this.byLabel, this.byLabelKey] : [this.byNsLabel, this.byNsLabelKey];
    if (!a.values) {
      out.push(nodeAt(byKey, a.key));
      return out;
    }
    const values = getOrCreate(byValue, a.key, () => new Map<string, RegNode<T>>());
    for (const v of a.values) out.push(nodeAt(values, v));
    return out;
  }

  /** The registration nodes an atom has (none made), for an unregistration: each with its drop. */
  private heldNodesOf(a: Atom): { node: RegNode<T>; drop: () => void }[] {
    const out: { node: RegNode<T>; drop: () => void }[] = [];
    const at = <K>(map: Map<K, RegNode<T>>, k: K) => {
      const node = map.get(k);
      if (node) out.push({ node, drop: () => map.delete(k) });
    };
    if (a.space === 'scope') {
      at(this.byNamespace, a.namespace);
      return out;
    }
    // Never registered under (registrationOf leaves such clauses out).
    if (a.space === 'absent') return out;
    const [byValue, byKey] =
      a.space === 'labels' ? [this.byLabel, this.byLabelKey] : [this.byNsLabel, this.byNsLabelKey];
    if (!a.values) {
      at(byKey, a.key);
      return out;
    }
    const vs = byValue.get(a.key);
    if (!vs) return out;
    for (const v of a.values) {
      const before = out.length;
      at(vs, v);
      if (out.length > before) {
        const drop = out[out.length - 1]!.drop;
        out[out.length - 1]!.drop = () => {
          drop();
          if (vs.size === 0) byValue.delete(a.key);
        };
      }
    }
    return out;
  }
}

/** The node under `k`, made when there is none. */
function nodeAt<K, T>(map: Map<K, RegNode<T>>, k: K): RegNode<T> {
  let node = map.get(k);
  if (node === undefined) {
    node = { direct: undefined, bySecondary: undefined };
    map.set(k, node);
  }
  return node;
}

function secondaryKey(sec: Atom | undefined): { key: string | undefined; values: readonly string[] } {
  if (sec === undefined) return { key: undefined, values: [] };
  if (sec.space === 'scope') return { key: SCOPE_KEY, values: [sec.namespace] };
  if (sec.space === 'absent') return { key: undefined, values: [] };
  return { key: sec.key, values: sec.values ?? [] };
}

function collectNode<T extends Registrant>(node: RegNode<T>, item: ItemView, pass: number, out: T[]): void {
  if (node.direct !== undefined) collectInto(node.direct, pass, out);
  if (node.bySecondary === undefined) return;
  for (const [k, byValue] of node.bySecondary) {
    const v = k === SCOPE_KEY ? item.namespace : item.labels[k];
    if (v === undefined) continue;
    const s = byValue.get(v);
    if (s !== undefined) collectInto(s, pass, out);
  }
}

function collectInto<T extends Registrant>(s: ReadonlySet<T>, pass: number, out: T[]): void {
  for (const m of s) {
    if (m.mark === pass) continue;
    m.mark = pass;
    out.push(m);
  }
}
