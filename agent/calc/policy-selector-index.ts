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

interface PolicyEntry {
  readonly key: PolicyKey;
  readonly selector: Selector;
  /** Arrival order: an endpoint's policies are listed in it. */
  readonly seq: number;
  readonly req: Requirement;
  readonly reg: Registration;
  mark: number;
}

const NAMESPACE_LABEL = 'projectcalico.org/namespace';

export class PolicySelectorIndex {
  private readonly policies = new Map<PolicyKey, PolicyEntry>();
  private readonly registry = new RequirementRegistry<PolicyEntry>();
  private nextSeq = 0;
  private readonly endpoints = new Map<EndpointKey, Labels>();
  // Endpoints by label (key → value → endpoints) and by key alone.
  private readonly byLabel = new Map<string, Map<string, Set<EndpointKey>>>();
  private readonly byKey = new Map<string, Set<EndpointKey>>();

  /** Adds or replaces a policy's selector; a policy keeps its place in the order when replaced. */
  setPolicy(key: PolicyKey, selector: Selector): void {
    const old = this.policies.get(key);
    if (old?.selector === selector) return;
    if (old) this.registry.unregister(old, old.reg);
    const req = requirementOf(selectorAst(selector), false, 'labels', clauseCost);
    const entry: PolicyEntry = {
      key,
      selector,
      seq: old?.seq ?? this.nextSeq++,
      req,
      reg: registrationOf(req, clauseCost),
      mark: 0,
    };
    this.policies.set(key, entry);
    this.registry.register(entry, entry.reg);
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
    if (old) this.unlist(key, old);
    this.endpoints.set(key, labels);
    for (const k in labels) {
      const byValue = getOrCreate(this.byLabel, k, () => new Map<string, Set<EndpointKey>>());
      getOrCreate(byValue, labels[k]!, () => new Set<EndpointKey>()).add(key);
      getOrCreate(this.byKey, k, () => new Set<EndpointKey>()).add(key);
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
    const hits: PolicyEntry[] = [];
    for (const p of this.registry.collect({ labels })) if (p.selector.evaluate(labels)) hits.push(p);
    hits.sort(bySeq);
    return hits.map((p) => p.key);
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
    for (const k in labels) {
      const byValue = this.byLabel.get(k);
      const s = byValue?.get(labels[k]!);
      if (s?.delete(key) && s.size === 0) {
        byValue!.delete(labels[k]!);
        if (byValue!.size === 0) this.byLabel.delete(k);
      }
      const ks = this.byKey.get(k);
      if (ks?.delete(key) && ks.size === 0) this.byKey.delete(k);
    }
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

function bySeq(a: PolicyEntry, b: PolicyEntry): number {
  return a.seq - b.seq;
}
