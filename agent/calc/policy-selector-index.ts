// Policy selectors over the local endpoints, indexed both ways so that neither side scans the
// other: policies are registered by what their selector requires (requirement-registry.ts), so an
// endpoint's change evaluates only the policies that could select it; endpoints are listed by
// label, so a policy's change evaluates only the endpoints with its selector's rarest required
// label. Answers "which policies select this endpoint" and "which endpoints does this policy
// select"; what follows from the answers (activation, per-endpoint lists) is the resolver's job.
import type { Labels } from '../../model/resources.ts';
import type { Selector } from '../../model/selector/index.ts';
import { getOrCreate } from './index-structures.ts';
import type { EndpointKey, PolicyKey } from './messages.ts';
import { type Registration, RequirementRegistry, registrationOf } from './requirement-registry.ts';
import {
  type Atom,
  type Clause,
  isKeyable,
  isNothing,
  type Requirement,
  requirementOf,
  selectorAst,
} from './selector-requirements.ts';

/**
 * A policy as an endpoint's list holds it: one object per policy for as long as the index holds
 * the policy (a changed selector updates it in place), so lists compare by identity.
 */
export interface SelectedPolicy<T> {
  readonly key: PolicyKey;
  /** Arrival order: policies that come to or leave an endpoint are handled in it. */
  readonly seq: number;
  /** What the index's user keeps of the policy (given with its selector). */
  readonly data: T;
}

interface PolicyEntry<T> extends SelectedPolicy<T> {
  data: T;
  selector: Selector;
  req: Requirement;
  reg: Registration;
  /** Scratch for the registry's collection passes. */
  mark: number;
  /** Scratch for `diffSelecting`: the pass that found it selecting, and the one that found it listed. */
  hit: number;
  listed: number;
}

/** How an endpoint's policy list changes (see `diffSelecting`). */
export interface PolicyListChange<T> {
  /** The new list, in no particular order. */
  readonly now: SelectedPolicy<T>[];
  /** The policies that left the list, and those that came, each in arrival order. */
  readonly removed: readonly SelectedPolicy<T>[];
  readonly added: readonly SelectedPolicy<T>[];
}

const NO_POLICIES: readonly never[] = Object.freeze([]) as readonly never[];

const NAMESPACE_LABEL = 'projectcalico.org/namespace';

const newValueMap = () => new Map<string, Set<EndpointKey>>();
const newKeySet = () => new Set<EndpointKey>();

export class PolicySelectorIndex<T = undefined> {
  private readonly policies = new Map<PolicyKey, PolicyEntry<T>>();
  private readonly registry = new RequirementRegistry<PolicyEntry<T>>();
  private nextSeq = 0;
  private pass = 0;
  private readonly endpoints = new Map<EndpointKey, Labels>();
  // Endpoints by label (key → value → endpoints) and by key alone.
  private readonly byLabel = new Map<string, Map<string, Set<EndpointKey>>>();
  private readonly byKey = new Map<string, Set<EndpointKey>>();

  /** Adds or replaces a policy's selector; a policy keeps its place in the order when replaced. */
  setPolicy(key: PolicyKey, selector: Selector, data?: T): void {
    const old = this.policies.get(key);
    if (old) old.data = data as T;
    if (old?.selector === selector) return;
    const req = requirementOf(selectorAst(selector), false, 'labels', clauseCost);
    const reg = registrationOf(req, clauseCost);
    if (old) {
      // In place: endpoints' lists hold this object.
      this.registry.unregister(old, old.reg);
      old.selector = selector;
      old.req = req;
      old.reg = reg;
      this.registry.register(old, reg);
      return;
    }
    const entry: PolicyEntry<T> = {
      key,
      selector,
      seq: this.nextSeq++,
      data: data as T,
      req,
      reg,
      mark: 0,
      hit: 0,
      listed: 0,
    };
    this.policies.set(key, entry);
    this.registry.register(entry, entry.reg);
  }

  /** The list entry of an indexed policy. */
  entryOf(key: PolicyKey): SelectedPolicy<T> | undefined {
    return this.policies.get(key);
  }

  deletePolicy(key: PolicyKey): void {
    const old = this.policies.get(key);
    if (!old) return;
    this.policies.delete(key);
    this.registry.unregister(old, old.reg);
  }

  setEndpoint(key: EndpointKey, labels: Labels): void {
    const old = this.endpoints.get(key);
    if (old === labels) return;
    this.endpoints.set(key, labels);
    // Only the labels that changed move (a label change touches one or two of a dozen).
    if (old)
      for (const k in old) if (labels[k] !== old[k]) this.unlistLabel(key, k, old[k]!, !hasLabel(labels, k));
    for (const k in labels) {
      const v = labels[k]!;
      if (old !== undefined && old[k] === v) continue;
      getOrCreate(getOrCreate(this.byLabel, k, newValueMap), v, newKeySet).add(key);
      if (old === undefined || !hasLabel(old, k)) getOrCreate(this.byKey, k, newKeySet).add(key);
    }
  }

  deleteEndpoint(key: EndpointKey): void {
    const old = this.endpoints.get(key);
    if (!old) return;
    this.endpoints.delete(key);
    this.unlist(key, old);
  }

  /** The policies whose selector selects these labels, in arrival order. */
  policiesSelecting(labels: Labels): PolicyKey[] {
    return this.selecting(labels)
      .sort(bySeq)
      .map((p) => p.key);
  }

  /**
   * How the list of an endpoint whose labels are now `labels` changes from `current` (entries of
   * this index): undefined when the same policies select it. Neither list is copied into a set:
   * each entry is stamped with the pass that found it, so a change that moves no policy (most)
   * allocates only the list of selecting policies.
   */
  diffSelecting(labels: Labels, current: readonly SelectedPolicy<T>[]): PolicyListChange<T> | undefined {
    const pass = ++this.pass;
    const now = this.selecting(labels);
    for (const p of now) p.hit = pass;
    const removed: PolicyEntry<T>[] = [];
    for (const c of current) {
      const p = c as PolicyEntry<T>;
      if (p.hit === pass) p.listed = pass;
      else removed.push(p);
    }
    const added: PolicyEntry<T>[] = [];
    for (const p of now) if (p.listed !== pass) added.push(p);
    if (removed.length === 0 && added.length === 0) return undefined;
    return {
      now,
      removed: removed.length ? removed.sort(bySeq) : NO_POLICIES,
      added: added.length ? added.sort(bySeq) : NO_POLICIES,
    };
  }

  /** The policies whose selector selects these labels, in no particular order. */
  private selecting(labels: Labels): PolicyEntry<T>[] {
    const hits = this.registry.collect({ labels });
    let n = 0;
    for (const p of hits) if (p.selector.evaluate(labels)) hits[n++] = p;
    hits.length = n;
    return hits;
  }

  /** The endpoints a policy's selector selects (none for an unknown policy). */
  endpointsSelectedBy(key: PolicyKey): EndpointKey[] {
    const p = this.policies.get(key);
    if (!p) return [];
    const out: EndpointKey[] = [];
    const visit = (k: EndpointKey) => {
      if (p.selector.evaluate(this.endpoints.get(k)!)) out.push(k);
    };
    const candidates = this.candidates(p.req);
    if (candidates === undefined) for (const k of this.endpoints.keys()) visit(k);
    else for (const k of candidates) visit(k);
    return out;
  }

  /** Sizes of the indexes (for tests: everything drains when endpoints and policies go). */
  sizes(): Record<string, number> {
    let postings = 0;
    for (const byValue of this.byLabel.values()) for (const s of byValue.values()) postings += s.size;
    const reg = this.registry.sizes();
    return {
      policies: this.policies.size,
      endpoints: this.endpoints.size,
      postings,
      postingKeys: this.byKey.size,
      registrations: reg.entries,
      regNodes: reg.nodes,
    };
  }

  /**
   * The endpoints that satisfy a requirement's cheapest clause by the current postings (a
   * superset of those the selector selects), or undefined when nothing narrows it down.
   */
  private candidates(req: Requirement): Iterable<EndpointKey> | undefined {
    if (req === null) return undefined;
    if (isNothing(req)) return [];
    let best: Clause | undefined;
    let bestSize = Number.POSITIVE_INFINITY;
    for (const c of req) {
      // An absent key: the complement of what the postings list (not kept here; few endpoints).
      if (!isKeyable(c)) continue;
      let n = 0;
      for (const a of c) for (const s of this.postingsOf(a)) n += s.size;
      if (n < bestSize) {
        best = c;
        bestSize = n;
      }
    }
    if (best === undefined) return undefined;
    const lists = best.flatMap((a) => this.postingsOf(a));
    if (lists.length === 1) return lists[0]!;
    const out = new Set<EndpointKey>();
    for (const s of lists) for (const k of s) out.add(k);
    return out;
  }

  private postingsOf(a: Atom): Set<EndpointKey>[] {
    // A policy selector reads labels only; the other spaces never occur (see requirementOf).
    if (a.space !== 'labels') return [];
    if (!a.values) {
      const s = this.byKey.get(a.key);
      return s ? [s] : [];
    }
    const byValue = this.byLabel.get(a.key);
    if (!byValue) return [];
    const out: Set<EndpointKey>[] = [];
    for (const v of a.values) {
      const s = byValue.get(v);
      if (s) out.push(s);
    }
    return out;
  }

  private unlist(key: EndpointKey, labels: Labels): void {
    for (const k in labels) this.unlistLabel(key, k, labels[k]!, true);
  }

  /** Takes an endpoint off a label value's postings, and off the key's when `andKey`. */
  private unlistLabel(key: EndpointKey, k: string, v: string, andKey: boolean): void {
    const byValue = this.byLabel.get(k);
    const s = byValue?.get(v);
    if (s?.delete(key) && s.size === 0) {
      byValue!.delete(v);
      if (byValue!.size === 0) this.byLabel.delete(k);
    }
    if (!andKey) return;
    const ks = this.byKey.get(k);
    if (ks?.delete(key) && ks.size === 0) this.byKey.delete(k);
  }
}

/**
 * Static estimate (policies register before or after the endpoints they select arrive): a label
 * value beats a mere key, and any label beats the implicit namespace one, which every policy of
 * a namespace shares (it serves as the second key instead).
 */
function clauseCost(clause: Clause): number {
  let c = 0;
  for (const a of clause) {
    if (a.space === 'absent') c += 1000;
    else if (a.space !== 'labels') c += 100;
    else if (!a.values) c += 50;
    else c += a.values.length * (a.key === NAMESPACE_LABEL ? 10 : 1);
  }
  return c;
}

/** Whether labels have their own key `k` (not one of the object prototype's). */
function hasLabel(labels: Labels, k: string): boolean {
  return typeof labels[k] === 'string' && Object.hasOwn(labels, k);
}

/** Arrival order. */
export function bySeq(a: SelectedPolicy<unknown>, b: SelectedPolicy<unknown>): number {
  return a.seq - b.seq;
}
