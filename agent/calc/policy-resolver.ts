// Which policies apply to which local endpoints, and in what order. A policy is active while it
// selects at least one local endpoint; only active policies' rule matchers are referenced, so the
// ipsets a node holds are the ones its own endpoints' policies use (Felix's active-rules calculator).
// Policy selectors and local endpoints are indexed both ways (policy-selector-index.ts): an
// endpoint's change evaluates only the policies that could select it, and a policy's change only
// the endpoints that could be selected (thousands of policies, a handful of candidates each).
import type { Labels } from '../../model/resources.ts';
import { type CompiledPolicy, comparePolicies } from '../../policy/compiler.ts';
import type { LabelIndex, MatcherRef } from './label-index.ts';
import type {
  EndpointKey,
  LocalEndpoint,
  LocalHostEndpoint,
  MessageSink,
  PolicyKey,
  ProfileId,
  TierDefaultAction,
  TierPolicies,
} from './messages.ts';
import { bySeq, PolicySelectorIndex, type SelectedPolicy } from './policy-selector-index.ts';

export interface LocalEndpointInput {
  key: EndpointKey;
  interfaceName: string;
  ipv4Nets: LocalEndpoint['ipv4Nets'];
  profiles: readonly ProfileId[];
}

/** A Tier resource's settings that shape the endpoint chains. */
export interface TierSettings {
  order?: number;
  defaultAction: TierDefaultAction;
}

interface EndpointState {
  /** Its key as first seen: the same string each time, so comparing it with a kept one is cheap. */
  readonly key: EndpointKey;
  input: LocalEndpointInput;
  labels: Labels;
  /** The policies that select it, in no particular order (their rendering orders them). */
  policies: SelectedPolicy<PolicyState>[];
  /** The last rendering sent, to skip no-op updates. */
  lastSent?: LocalEndpoint;
  lastSentHost?: string;
}

/** Which endpoints a resolver serves: workloads (EndpointUpdate) or host endpoints (HostEndpointUpdate). */
export type EndpointKind = 'workload' | 'host';

/** How many resolvers have a policy active: one object per policy, held by each resolver's record of it. */
export interface ActiveCount {
  users: number;
  /** Resolvers holding a record of the policy (the object goes with the last). */
  holders: number;
}

/**
 * Lets two resolvers (workloads, host endpoints) share the policies: a policy is announced while
 * either has it active, and removed only when neither has. Each resolver keeps its policy's count
 * object, so that activating and deactivating look nothing up.
 */
export class SharedActivePolicies {
  private readonly counts = new Map<PolicyKey, ActiveCount>();

  /** The count of a policy, for a resolver that now holds a record of it. */
  hold(key: PolicyKey): ActiveCount {
    let c = this.counts.get(key);
    if (!c) {
      c = { users: 0, holders: 0 };
      this.counts.set(key, c);
    }
    c.holders++;
    return c;
  }

  /** A resolver let go of its record of the policy. */
  release(key: PolicyKey, c: ActiveCount): void {
    if (--c.holders === 0 && this.counts.get(key) === c) this.counts.delete(key);
  }
}

/** A policy as one resolver holds it. */
interface PolicyState {
  policy: CompiledPolicy;
  /**
   * The local endpoints it selects: none (undefined: it is not active here), one (most policies:
   * an endpoint's coming and going then touches no set), or several.
   */
  endpoints: EndpointKey | Set<EndpointKey> | undefined;
  /**
   * The matchers its rules reference while it is active, as the label index handed them out; kept
   * while it is not, so that coming back takes them again without looking them up.
   */
  matchers: MatcherRef[];
  /** Whether this resolver counts in `shared.users`. */
  counted: boolean;
  readonly shared: ActiveCount;
}

export class PolicyResolver {
  private readonly policies = new Map<PolicyKey, PolicyState>();
  private readonly endpoints = new Map<EndpointKey, EndpointState>();
  private activeCount = 0;
  /** Tier orders from Tier resources; the default tier has Calico's order unless one says otherwise. */
  private readonly tierOrders = new Map<string, number>();
  /** Policy selectors over the local endpoints; each entry carries the policy's state here. */
  private readonly selectors = new PolicySelectorIndex<PolicyState>();
  /**
   * Whether the selector index holds the policies: from the first endpoint on. Until then a policy
   * can select nothing, and indexing it would be work for nothing (a node without host endpoints,
   * the common case, never needs the host resolver's index).
   */
  private indexed = false;
  /** Tiers whose end passes instead of dropping (`defaultAction: Pass`). */
  private readonly passTiers = new Set<string>();
  /**
   * Endpoints whose rendering waits for `endDeferral()`, while deferring: during a snapshot an
   * endpoint's policy list changes with each of its policies, and is rendered once at the end.
   */
  private deferred: Set<EndpointState> | undefined;
  private readonly shared: SharedActivePolicies;

  constructor(
    private readonly index: LabelIndex,
    private readonly sink: MessageSink,
    private readonly kind: EndpointKind = 'workload',
    opts: { deferEndpoints?: boolean; shared?: SharedActivePolicies } = {},
  ) {
    if (opts.deferEndpoints) this.deferred = new Set();
    this.shared = opts.shared ?? new SharedActivePolicies();
  }

  /** Ends deferral: every endpoint changed meanwhile is rendered and sent once. */
  endDeferral(): void {
    const pending = this.deferred;
    if (!pending) return;
    this.deferred = undefined;
    for (const ep of pending) if (this.endpoints.get(ep.input.key) === ep) this.sendEndpoint(ep);
  }

  get activePolicyCount(): number {
    return this.activeCount;
  }

  getPolicy(key: PolicyKey): CompiledPolicy | undefined {
    return this.policies.get(key)?.policy;
  }

  upsertPolicy(p: CompiledPolicy): void {
    let st = this.policies.get(p.key);
    if (st) st.policy = p;
    else {
      st = {
        policy: p,
        endpoints: undefined,
        matchers: [],
        counted: false,
        shared: this.shared.hold(p.key),
      };
      this.policies.set(p.key, st);
    }
    if (!this.indexed) return;
    this.selectors.setPolicy(p.key, p.selector, st);
    const before = new Set(keysOf(st.endpoints));
    const after = new Set(this.selectors.endpointsSelectedBy(p.key));
    const wasActive = before.size > 0;
    const isActive = after.size > 0;
    const oldMatchers = st.matchers;
    if (isActive) {
      // New references before old ones are dropped, so a shared ipset is never removed and re-added.
      st.matchers = p.matchers.map((m, i) => this.index.refMatcher(m, oldMatchers[i]));
      this.announce(st);
    }
    if (wasActive) for (const m of oldMatchers) this.index.unref(m);
    if (wasActive && !isActive) this.withdraw(st);
    if (isActive !== wasActive) this.activeCount += isActive ? 1 : -1;
    st.endpoints = after.size === 0 ? undefined : after.size === 1 ? first(after) : after;
    const entry = this.selectors.entryOf(p.key)!;
    const touched = new Set([...before, ...after]);
    for (const k of touched) {
      const ep = this.endpoints.get(k);
      if (!ep) continue;
      if (!after.has(k)) removePolicy(ep.policies, p.key);
      else if (!before.has(k)) ep.policies.push(entry);
      this.sendEndpoint(ep);
    }
  }

  deletePolicy(key: PolicyKey): void {
    const st = this.policies.get(key);
    if (!st) return;
    this.policies.delete(key);
    this.selectors.deletePolicy(key);
    const before = st.endpoints;
    st.endpoints = undefined;
    if (before) {
      this.activeCount--;
      for (const k of keysOf(before)) {
        const ep = this.endpoints.get(k);
        if (!ep) continue;
        removePolicy(ep.policies, key);
        this.sendEndpoint(ep);
      }
      this.withdraw(st);
      for (const m of st.matchers) this.index.unref(m);
    }
    this.shared.release(key, st.shared);
  }

  /** A local endpoint was added, changed, or its inherited labels changed. */
  upsertEndpoint(input: LocalEndpointInput, labels: Labels): void {
    if (!this.indexed) {
      this.indexed = true;
      // In arrival order (a replaced policy keeps its place), as they would have been indexed.
      for (const st of this.policies.values())
        this.selectors.setPolicy(st.policy.key, st.policy.selector, st);
    }
    const known = this.endpoints.get(input.key);
    const ep: EndpointState = known ?? { key: input.key, input, labels, policies: [] };
    const sameInput = known !== undefined && sameEndpointInput(known.input, input);
    ep.input = input;
    ep.labels = labels;
    this.endpoints.set(input.key, ep);
    this.selectors.setEndpoint(input.key, labels);
    const change = this.selectors.diffSelecting(labels, ep.policies);
    if (change) {
      for (const p of change.removed) this.detach(p.data, ep.key);
      for (const p of change.added) this.attach(p.data, ep.key);
      ep.policies = change.now;
    }
    const samePolicies = change === undefined;
    // A label change that moves no policy renders what was sent (hundreds of policies to order
    // again, for nothing): every other change to a rendering (a policy's, a tier's) renders it.
    const sent = this.kind === 'host' ? ep.lastSentHost : ep.lastSent;
    if (sameInput && samePolicies && sent !== undefined && !this.deferred) return;
    this.sendEndpoint(ep);
  }

  deleteEndpoint(key: EndpointKey): void {
    const ep = this.endpoints.get(key);
    if (!ep) return;
    this.endpoints.delete(key);
    this.selectors.deleteEndpoint(key);
    this.deferred?.delete(ep);
    // One still waiting for its first rendering was never announced: nothing to take back.
    if (ep.lastSent !== undefined || ep.lastSentHost !== undefined)
      this.sink.send({ kind: this.kind === 'host' ? 'HostEndpointRemove' : 'EndpointRemove', key });
    for (const p of [...ep.policies].sort(bySeq)) this.detach(p.data, ep.key);
  }

  /** A Tier was set or deleted (undefined): every endpoint's tiers may change. */
  setTier(name: string, settings: TierSettings | undefined): void {
    if (settings?.order === undefined) this.tierOrders.delete(name);
    else this.tierOrders.set(name, settings.order);
    if (settings?.defaultAction === 'pass') this.passTiers.add(name);
    else this.passTiers.delete(name);
    for (const ep of this.endpoints.values()) this.sendEndpoint(ep);
  }

  hasEndpoint(key: EndpointKey): boolean {
    return this.endpoints.has(key);
  }

  private attach(st: PolicyState, ek: EndpointKey): void {
    const eps = st.endpoints;
    if (eps !== undefined) {
      if (typeof eps !== 'string') eps.add(ek);
      else if (eps !== ek) st.endpoints = new Set([eps, ek]);
      return;
    }
    st.endpoints = ek;
    this.activeCount++;
    // In place: while the policy is inactive the array holds only hints.
    const specs = st.policy.matchers;
    const refs = st.matchers;
    if (refs.length !== specs.length) refs.length = specs.length;
    for (let i = 0; i < specs.length; i++) refs[i] = this.index.refMatcher(specs[i]!, refs[i]);
    this.announce(st);
  }

  private detach(st: PolicyState, ek: EndpointKey): void {
    const eps = st.endpoints;
    if (eps === undefined) return;
    if (typeof eps === 'string') {
      if (eps !== ek) return;
    } else {
      if (!eps.delete(ek) || eps.size > 1) return;
      if (eps.size === 1) {
        st.endpoints = first(eps);
        return;
      }
    }
    st.endpoints = undefined;
    this.activeCount--;
    this.withdraw(st);
    for (const m of st.matchers) this.index.unref(m);
  }

  /** Sends the policy, counting this resolver among its users. */
  private announce(st: PolicyState): void {
    const p = st.policy;
    if (!st.counted) {
      st.counted = true;
      st.shared.users++;
    }
    this.sink.send({
      kind: 'ActivePolicyUpdate',
      policy: { key: p.key, displayName: p.displayName, inbound: p.inbound, outbound: p.outbound },
    });
  }

  /** This resolver no longer uses the policy: removed from the dataplane when no other does. */
  private withdraw(st: PolicyState): void {
    if (!st.counted) return;
    st.counted = false;
    if (--st.shared.users > 0) return;
    this.sink.send({ kind: 'ActivePolicyRemove', key: st.policy.key });
  }

  private sendEndpoint(ep: EndpointState): void {
    if (this.deferred) {
      this.deferred.add(ep);
      return;
    }
    if (this.kind === 'host') {
      this.sendHostEndpoint(ep);
      return;
    }
    const ingress: CompiledPolicy[] = [];
    const egress: CompiledPolicy[] = [];
    for (const { data } of ep.policies) {
      const p = data.policy;
      // Pre-DNAT and untracked policies apply to host endpoints only (Felix).
      if (p.preDNAT || p.doNotTrack) continue;
      if (p.ingress) ingress.push(p);
      if (p.egress) egress.push(p);
    }
    const endpoint: LocalEndpoint = {
      key: ep.input.key,
      interfaceName: ep.input.interfaceName,
      ipv4Nets: ep.input.ipv4Nets,
      ingress: tiersOf(ingress, this.tierOrders, this.passTiers),
      egress: tiersOf(egress, this.tierOrders, this.passTiers),
      profiles: [...ep.input.profiles],
    };
    // Compared field by field (what JSON text equality would say, without building the text).
    if (ep.lastSent && sameEndpoint(ep.lastSent, endpoint)) return;
    ep.lastSent = endpoint;
    this.sink.send({ kind: 'EndpointUpdate', endpoint });
  }

  /** A host endpoint's policies, split by kind as Felix's HostEndpointToFilter/Mangle/RawChains take them. */
  private sendHostEndpoint(ep: EndpointState): void {
    const lists = {
      ingress: [] as CompiledPolicy[],
      egress: [] as CompiledPolicy[],
      forwardIngress: [] as CompiledPolicy[],
      forwardEgress: [] as CompiledPolicy[],
      preDnatIngress: [] as CompiledPolicy[],
      untrackedIngress: [] as CompiledPolicy[],
      untrackedEgress: [] as CompiledPolicy[],
    };
    for (const { data } of ep.policies) {
      const p = data.policy;
      if (p.preDNAT) {
        if (p.ingress) lists.preDnatIngress.push(p);
      } else if (p.doNotTrack) {
        if (p.ingress) lists.untrackedIngress.push(p);
        if (p.egress) lists.untrackedEgress.push(p);
      } else {
        if (p.ingress) lists.ingress.push(p);
        if (p.egress) lists.egress.push(p);
        if (p.applyOnForward && p.ingress) lists.forwardIngress.push(p);
        if (p.applyOnForward && p.egress) lists.forwardEgress.push(p);
      }
    }
    const t = (ps: CompiledPolicy[]) => tiersOf(ps, this.tierOrders, this.passTiers);
    const endpoint: LocalHostEndpoint = {
      key: ep.input.key,
      interfaceName: ep.input.interfaceName,
      profiles: [...ep.input.profiles],
      ingress: t(lists.ingress),
      egress: t(lists.egress),
      forwardIngress: t(lists.forwardIngress),
      forwardEgress: t(lists.forwardEgress),
      preDnatIngress: t(lists.preDnatIngress),
      untrackedIngress: t(lists.untrackedIngress),
      untrackedEgress: t(lists.untrackedEgress),
    };
    const text = JSON.stringify(endpoint);
    if (ep.lastSentHost === text) return;
    ep.lastSentHost = text;
    this.sink.send({ kind: 'HostEndpointUpdate', endpoint });
  }
}

/** The keys a policy's `endpoints` holds. */
function keysOf(eps: EndpointKey | Set<EndpointKey> | undefined): Iterable<EndpointKey> {
  return eps === undefined ? [] : typeof eps === 'string' ? [eps] : eps;
}

function first(set: Set<EndpointKey>): EndpointKey {
  return set.values().next().value as EndpointKey;
}

/** Takes a policy off an endpoint's list (whose order does not matter). */
function removePolicy(list: SelectedPolicy<unknown>[], key: PolicyKey): void {
  const i = list.findIndex((p) => p.key === key);
  if (i < 0) return;
  list[i] = list[list.length - 1]!;
  list.pop();
}

function sameEndpointInput(a: LocalEndpointInput, b: LocalEndpointInput): boolean {
  return (
    a === b ||
    (a.key === b.key &&
      a.interfaceName === b.interfaceName &&
      sameStrings(a.ipv4Nets, b.ipv4Nets) &&
      sameStrings(a.profiles, b.profiles))
  );
}

function sameEndpoint(a: LocalEndpoint, b: LocalEndpoint): boolean {
  return (
    a.key === b.key &&
    a.interfaceName === b.interfaceName &&
    sameStrings(a.ipv4Nets, b.ipv4Nets) &&
    sameStrings(a.profiles, b.profiles) &&
    sameTiers(a.ingress, b.ingress) &&
    sameTiers(a.egress, b.egress)
  );
}

function sameTiers(a: readonly TierPolicies[], b: readonly TierPolicies[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.tier !== y.tier || x.defaultAction !== y.defaultAction || !sameStrings(x.policies, y.policies))
      return false;
  }
  return true;
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Calico's order for the default tier when no Tier resource gives one. */
export const DEFAULT_TIER_ORDER = 1_000_000;

/**
 * Tiers by their order (Tier resources; `default` is 1,000,000 unless set; a tier with no order,
 * or no Tier resource, sorts after all ordered ones), then by name; policies ordered within; a
 * tier in `passTiers` ends in a pass rather than a drop.
 */
export function tiersOf(
  policies: CompiledPolicy[],
  tierOrders: ReadonlyMap<string, number> = new Map(),
  passTiers: ReadonlySet<string> = new Set(),
): TierPolicies[] {
  const byTier = new Map<string, CompiledPolicy[]>();
  for (const p of policies) byTier.get(p.tier)?.push(p) ?? byTier.set(p.tier, [p]);
  const orderOf = (t: string) =>
    tierOrders.get(t) ?? (t === 'default' ? DEFAULT_TIER_ORDER : Number.POSITIVE_INFINITY);
  const names = [...byTier.keys()].sort((a, b) => {
    const oa = orderOf(a);
    const ob = orderOf(b);
    if (oa !== ob) return oa < ob ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
  });
  return names.map((tier) => ({
    tier,
    policies: byTier
      .get(tier)!
      .sort(comparePolicies)
      .map((p) => p.key),
    ...(passTiers.has(tier) ? { defaultAction: 'pass' as const } : {}),
  }));
}
