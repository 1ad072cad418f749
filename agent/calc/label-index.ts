// Label index: the active rule matchers (Felix's ActiveRulesCalculator and selector index) over
// the items of the item index, and the ipset members they select. It composes three jobs:
//   - the items, with label inheritance from profiles and candidate lookup (item-index.ts,
//     profile-labels.ts);
//   - matchers, here: referenced while some active policy's rule uses them; each is registered by
//     its most selective condition (requirement-registry.ts), so an item's change re-evaluates
//     only the matchers that could select it; each keeps the ids of the items it selects. A
//     matcher whose last reference goes stays dormant (registered, its selection kept) until the
//     dormant ones grow too many, so a policy that comes back announces its sets at once; a large
//     set stays in the dataplane meanwhile (parked), so coming back costs nothing. While a
//     snapshot loads, new matchers can wait: `endDeferral()` computes them all from the complete
//     index, matchers with the same candidates together;
//   - ipset membership (ipset-members.ts): the members a selected item gives a set, named ports,
//     and how an item's change moves them.
// Output: IPSet messages to the sink.
import type { Labels } from '../../model/resources.ts';
import type { MatcherSpec } from '../../policy/compiled.ts';
import { getOrCreate, LinkedQueue, type QueueLink, queueLink, SelectedIds } from './index-structures.ts';
import { IpSetMemberIndex, type MemberDelta } from './ipset-members.ts';
import { type CandidatePlan, type Item, ItemIndex, type ItemInput, matches, testOf } from './item-index.ts';
import type { IpSetId, MessageSink } from './messages.ts';
import { type Registration, RequirementRegistry, registrationOf } from './requirement-registry.ts';
import { matcherRequirement, NOTHING, type Requirement } from './selector-requirements.ts';

// The label keys callers use with items, from where they are defined.
export { CLUSTER_LABEL, type ItemInput, SERVICE_ACCOUNT_LABEL } from './item-index.ts';
export { NAMESPACE_LABEL, NAMESPACE_LABEL_PREFIX, SERVICE_ACCOUNT_LABEL_PREFIX } from './profile-labels.ts';
export type { MatcherSpec };

declare const matcherRef: unique symbol;
/** A reference `refMatcher` took, to give back with `unref` (which then looks nothing up). */
export type MatcherRef = { readonly [matcherRef]: true };

interface MatcherState {
  readonly spec: MatcherSpec;
  /** References taken; 0: dormant (its set is gone from the dataplane, its selection kept warm). */
  refs: number;
  /** Activation order: matchers touched by one change are handled in this order. */
  readonly seq: number;
  /** What an item needs for this matcher to select it (null: nothing in particular). */
  readonly req: Requirement;
  /** Where the matcher is registered for items' changes. */
  readonly reg: Registration;
  /** Scratch for the registry's collection passes. */
  mark: number;
  /**
   * The items it selects, kept up to date while it is registered; undefined while its members
   * wait for the end of a deferred load (it is not registered then).
   */
  selected: SelectedIds | undefined;
  /**
   * How many items `selected` holds, kept beside it: a policy's coming and going reads the counts
   * of its matchers, whose states are then in cache where their selections are not.
   */
  size: number;
  /** Whether it selects an item: `matches` with what the spec does not use left out. */
  readonly test: (item: Item) => boolean;
  /**
   * Dormant, but its set left in the dataplane and kept current there with deltas: a large set
   * (one of nearly every endpoint holds hundreds of thousands) whose policy comes back then needs
   * no message at all, where announcing it again would copy every member, and the dataplane would
   * write every member into the kernel again.
   */
  parked: boolean;
  /**
   * A small set's members as a list, kept current with its deltas (dormant or not): announcing
   * it again sends the list, where reading each member off its item id would cost a cache miss a
   * member (what most of a policy's coming back cost). Undefined for static and large sets.
   */
  list: string[] | undefined;
  /**
   * Whether `list` went out as a message's members: it is copied before its next change, not at
   * every announcement (the announcement then costs no copy, and the message's array never changes
   * under its reader).
   */
  listSent: boolean;
  /** Whether `matchers` holds it (a reference kept past its drop is only a hint). */
  live: boolean;
  /** Its places in the dormant and parked queues, made when it first goes dormant. */
  dormantLink: QueueLink<MatcherState> | undefined;
  parkedLink: QueueLink<MatcherState> | undefined;
}

export interface LabelIndexOptions {
  /**
   * Defer matchers' members until `endDeferral()`: matchers referenced before then are announced
   * with their members computed once, from the complete index, instead of following every item
   * as it arrives. For the first snapshot, before which the dataplane writes nothing.
   */
  deferMembers?: boolean;
  /** Dormant sets with at least this many members stay in the dataplane (see `parked`). */
  parkMin?: number;
  /** At most this many members in parked sets; beyond, the least recently active leave. */
  parkMaxIds?: number;
}

/**
 * Dormant matchers (no reference left) are kept, still following item changes, up to this many
 * and while their selections hold at most this many ids in all; beyond that the least recently
 * active go. A policy that comes back (an endpoint's label flips back) then announces its sets
 * without evaluating anything: a selector no index narrows would cost a scan of every item.
 */
const DORMANT_MAX = 16_384;
const DORMANT_MAX_IDS = 4_000_000;
/**
 * Parked sets (dormant, left in the dataplane): from this many members, and at most this many
 * members in all. The kernel holds them: about 29 bytes a member (`ipset list -t`, "Size in
 * memory", over 300 hash:net sets of 256–20,000 members), so 2M members are about 58 MB.
 */
const PARK_MIN = 256;
const PARKED_MAX_IDS = 2_000_000;
/** A group's scratch for its selections holds at most this many ids (16 MiB); larger ones push. */
const SCRATCH_MAX_IDS = 4_000_000;
const NO_IDS = new Int32Array(0);

export class LabelIndex {
  private readonly items = new ItemIndex();
  private readonly matchers = new Map<IpSetId, MatcherState>();
  /** Matchers without references, least recently active first (a subset of `matchers`). */
  private readonly dormant = new LinkedQueue<MatcherState>();
  private dormantIds = 0;
  /**
   * The parked ones among them, least recently active first: trimming takes parked sets out of
   * the dataplane without walking past the dormant ones that are not parked (thousands).
   */
  private readonly parked = new LinkedQueue<MatcherState>();
  /** Ids selected by parked matchers (a part of `dormantIds`). */
  private parkedIds = 0;
  /** Referenced matchers whose members wait for `endDeferral()`, while deferring. */
  private deferred: MatcherState[] | undefined;
  /** ipset members from the items matchers select. */
  private readonly members = new IpSetMemberIndex<Item>((id) => this.items.at(id));
  /** Registered matchers by what their items need. */
  private readonly registry = new RequirementRegistry<MatcherState>();
  private matcherSeq = 0;
  /** Where selectedIdsOfGroup writes, grown to the largest group's need (kept while a load ends). */
  private scratch: Int32Array = NO_IDS;
  private readonly parkMin: number;
  private readonly parkMaxIds: number;

  constructor(
    private readonly sink: MessageSink,
    opts: LabelIndexOptions = {},
  ) {
    if (opts.deferMembers) this.deferred = [];
    this.parkMin = opts.parkMin ?? PARK_MIN;
    this.parkMaxIds = opts.parkMaxIds ?? PARKED_MAX_IDS;
  }

  get itemCount(): number {
    return this.items.size;
  }

  getLabels(key: string): Labels | undefined {
    return this.items.get(key)?.labels;
  }

  /** Add or replace an item; returns its effective labels. */
  upsertItem(input: ItemInput): Labels {
    const { item, old } = this.items.upsert(input);
    this.members.reindex(item, old);
    this.reevaluate(item, old);
    return item.labels;
  }

  deleteItem(key: string): void {
    const old = this.items.delete(key);
    if (!old) return;
    this.members.reindex(undefined, old);
    this.reevaluate(undefined, old);
    // Nothing left to select: dormant matchers would only be kept for nothing.
    if (this.items.size === 0) for (const m of this.dormant.values()) this.drop(m);
  }

  /** Set (or with undefined, delete) a profile's labels; returns the keys of items whose labels changed. */
  setProfileLabels(name: string, labels: Labels | undefined): string[] {
    return this.items.setProfileLabels(name, labels, (item, old) => this.reevaluate(item, old));
  }

  /**
   * Take a reference on a matcher; the first reference announces its members (computed from the
   * index, or from its selection kept while dormant; while deferring, at `endDeferral()`), unless
   * its set is parked in the dataplane. `hint`: a reference once taken on the same matcher, used
   * instead of looking it up while the matcher lives.
   */
  refMatcher(spec: MatcherSpec, hint?: MatcherRef): MatcherRef {
    const h = hint as unknown as MatcherState | undefined;
    const existing = h?.live && h.spec.id === spec.id ? h : this.matchers.get(spec.id);
    if (existing) {
      const ref = existing as unknown as MatcherRef;
      if (existing.refs++ > 0) return ref;
      // Dormant: its selection followed every change since; announce it again unless the
      // dataplane still holds it, kept current.
      this.dormant.delete(existing.dormantLink);
      this.dormantIds -= existing.size;
      if (existing.parked) {
        existing.parked = false;
        this.parked.delete(existing.parkedLink);
        this.parkedIds -= existing.size;
      } else this.announce(existing);
      return ref;
    }
    const req = spec.staticMembers ? NOTHING : matcherRequirement(spec, this.items.cost);
    const reg = registrationOf(req, this.items.cost);
    const state: MatcherState = {
      spec,
      refs: 1,
      seq: ++this.matcherSeq,
      req,
      reg,
      mark: 0,
      selected: undefined,
      size: 0,
      test: testOf(spec),
      parked: false,
      list: undefined,
      listSent: false,
      live: true,
      dormantLink: undefined,
      parkedLink: undefined,
    };
    this.matchers.set(spec.id, state);
    if (this.deferred && !spec.staticMembers) {
      this.deferred.push(state);
      return state as unknown as MatcherRef;
    }
    this.select(state);
    this.announce(state);
    return state as unknown as MatcherRef;
  }

  unrefMatcher(id: IpSetId): void {
    const state = this.matchers.get(id);
    if (state) this.release(state);
  }

  /** Gives back a reference `refMatcher` returned. */
  unref(ref: MatcherRef): void {
    this.release(ref as unknown as MatcherState);
  }

  private release(state: MatcherState): void {
    if (state.refs === 0) return;
    if (--state.refs > 0) return;
    const id = state.spec.id;
    if (!state.selected) {
      // Deferred and never announced: nothing to take back.
      this.matchers.delete(id);
      state.live = false;
      return;
    }
    if (state.spec.staticMembers || this.items.size === 0) {
      this.sink.send({ kind: 'IPSetRemove', id });
      this.drop(state);
      return;
    }
    const size = state.size;
    if (size >= this.parkMin) {
      state.parked = true;
      state.parkedLink ??= queueLink(state);
      this.parked.push(state.parkedLink);
      this.parkedIds += size;
    } else this.sink.send({ kind: 'IPSetRemove', id });
    state.dormantLink ??= queueLink(state);
    this.dormant.push(state.dormantLink);
    this.dormantIds += size;
    this.trimDormant();
  }

  /**
   * Ends a deferred load: every matcher referenced meanwhile gets its members, computed from the
   * now complete index, and is announced; from here on members follow each change.
   */
  endDeferral(): void {
    const pending = this.deferred;
    if (!pending) return;
    this.deferred = undefined;
    const live = pending.filter((m) => m.refs > 0);
    this.items.prepareFor(live.map((m) => m.req));
    // Matchers that find their candidates the same way are evaluated together, item by item:
    // each candidate is read from memory once for all of them.
    const groups = new Map<string, { plan: CandidatePlan; group: MatcherState[] }>();
    const plans = new Map<string, CandidatePlan>();
    for (const m of live) {
      const plan = this.items.planOf(m.req, plans);
      getOrCreate(groups, plan.sig, () => ({ plan, group: [] })).group.push(m);
    }
    for (const { plan, group } of groups.values()) {
      const selected = this.selectedIdsOfGroup(group, plan, true);
      group.forEach((m, i) => {
        m.selected = new SelectedIds(selected[i]!);
        m.size = selected[i]!.length;
        this.registry.register(m, m.reg);
      });
    }
    for (const m of live) this.announce(m);
    this.scratch = NO_IDS;
    // The load's own lookups (filter bitsets, off the heap) go now, not at the next item change.
    this.items.clearLoadCaches();
  }

  /** Current members of an active matcher (for tests and `explain`). */
  membersOf_(id: IpSetId): string[] | undefined {
    const s = this.matchers.get(id);
    if (!s || s.refs === 0) return undefined;
    if (s.spec.staticMembers) return [...s.spec.staticMembers];
    if (s.selected) return this.membersOfSelected(s);
    // Deferred: computed here, not kept (the end of the deferral computes it for good).
    return this.members.membersOfIds(s.spec, this.selectedIdsOfGroup([s], this.items.planOf(s.req))[0]!);
  }

  get activeMatcherCount(): number {
    return this.matchers.size - this.dormant.size;
  }

  /** Does a (not necessarily active) matcher select the item? For one-off evaluation. */
  itemMatches(spec: MatcherSpec, key: string): boolean {
    const item = this.items.get(key);
    return item ? matches(spec, item) : false;
  }

  /**
   * Keys of the items a matcher could select, by the index (a superset of those it selects), or
   * undefined when the index cannot narrow it down (every item is a candidate). For tests.
   */
  candidatesOf(spec: MatcherSpec): Set<string> | undefined {
    const req = matcherRequirement(spec, this.items.cost);
    if (req === null) return undefined;
    const out = new Set<string>();
    for (const id of this.items.candidateIds(req)) {
      const item = this.items.at(id);
      if (item) out.add(item.key);
    }
    return out;
  }

  /** Registered matchers (active or dormant) an item's change would re-evaluate (ids). For tests. */
  matchersFor(key: string): Set<IpSetId> {
    const item = this.items.get(key);
    const out = new Set<IpSetId>();
    if (!item) return out;
    for (const m of this.collectMatchers(item, undefined)) out.add(m.spec.id);
    return out;
  }

  /** Sizes of the internal indexes (for tests: everything drains when items and matchers go). */
  indexSizes(): Record<string, number> {
    const { entries: matcherEntries, nodes: regNodes } = this.registry.sizes();
    return {
      ...this.items.sizes(),
      ...this.members.sizes(),
      matchers: this.matchers.size,
      dormantMatchers: this.dormant.size,
      parkedMatchers: this.parked.size,
      matcherEntries,
      regNodes,
    };
  }

  /**
   * For each matcher of a group with one plan, the ids of the items it selects, ascending, each in
   * a typed array of its size (what SelectedIds keeps). At the end of a load (`scratch`) they are
   * written into one scratch array, a part per matcher as long as the candidates, when that fits:
   * no growing arrays of numbers to copy and then collect (millions of ids).
   */
  private selectedIdsOfGroup(
    group: readonly MatcherState[],
    plan: CandidatePlan,
    scratch = false,
  ): Int32Array[] {
    const tests = group.map((m) => m.test);
    const n = group.length;
    const items = this.items;
    const candidates = plan.run?.();
    const limit = candidates === undefined ? items.idLimit : candidates.length;
    const each = (visit: (id: number) => void) => {
      if (candidates === undefined) for (let id = 0; id < limit; id++) visit(id);
      else for (let i = 0; i < limit; i++) visit(candidates[i]!);
    };
    if (!scratch || n * limit > SCRATCH_MAX_IDS) {
      const outs: number[][] = group.map(() => []);
      each((id) => {
        const item = items.at(id);
        if (item === undefined) return;
        for (let j = 0; j < n; j++) if (tests[j]!(item)) outs[j]!.push(id);
      });
      return outs.map((out) => sortedInt32(Int32Array.from(out)));
    }
    if (this.scratch.length < n * limit)
      this.scratch = new Int32Array(Math.min(SCRATCH_MAX_IDS, Math.max(n * limit, this.scratch.length * 2)));
    const into = this.scratch;
    const ends = group.map((_, j) => j * limit);
    each((id) => {
      const item = items.at(id);
      if (item === undefined) return;
      for (let j = 0; j < n; j++) if (tests[j]!(item)) into[ends[j]!++] = id;
    });
    return ends.map((end, j) => sortedInt32(into.slice(j * limit, end)));
  }

  private membersOfSelected(state: MatcherState): string[] {
    const selected = state.selected!;
    return this.members.membersOfIds(state.spec, selected.sortedIds(), selected.size);
  }

  /** Computes a matcher's selection and registers it, so that it follows item changes. */
  private select(state: MatcherState): void {
    if (state.spec.staticMembers) {
      state.selected = new SelectedIds();
      return;
    }
    const ids = this.selectedIdsOfGroup([state], this.items.planOf(state.req))[0]!;
    state.selected = new SelectedIds(ids);
    state.size = ids.length;
    this.registry.register(state, state.reg);
  }

  private announce(state: MatcherState): void {
    const { spec } = state;
    let members: string[];
    if (spec.staticMembers) members = [...spec.staticMembers];
    else if (state.list) {
      members = state.list;
      state.listSent = true;
    } else {
      members = this.membersOfSelected(state);
      if (members.length < this.parkMin) {
        state.list = members;
        state.listSent = true;
      }
    }
    this.sink.send({ kind: 'IPSetUpdate', id: spec.id, type: spec.type, members });
  }

  private drop(state: MatcherState): void {
    this.matchers.delete(state.spec.id);
    if (this.dormant.delete(state.dormantLink)) this.dormantIds -= state.size;
    if (state.parked) this.unpark(state);
    if (!state.spec.staticMembers) this.registry.unregister(state, state.reg);
    // A reference kept as a hint may outlive it: let its selection go now.
    state.live = false;
    state.selected = undefined;
    state.size = 0;
    state.list = undefined;
  }

  /**
   * Takes the least recently active parked sets out of the dataplane while they hold too many
   * members (their matchers stay dormant), then lets the least recently active dormant matchers
   * go while they are too many or hold too many ids.
   */
  private trimDormant(): void {
    while (this.parkedIds > this.parkMaxIds && this.parked.first) this.unpark(this.parked.first);
    while ((this.dormantIds > DORMANT_MAX_IDS || this.dormant.size > DORMANT_MAX) && this.dormant.first)
      this.drop(this.dormant.first);
  }

  /** A parked set leaves the dataplane; its matcher stays dormant (announced again if it comes back). */
  private unpark(state: MatcherState): void {
    state.parked = false;
    this.parked.delete(state.parkedLink);
    this.parkedIds -= state.size;
    this.sink.send({ kind: 'IPSetRemove', id: state.spec.id });
  }

  /** A delta to a matcher's member list (whose order does not matter); a list grown large goes. */
  private applyToList(m: MatcherState, d: MemberDelta): void {
    let list = m.list!;
    if (m.listSent) {
      list = list.slice();
      m.list = list;
      m.listSent = false;
    }
    for (const x of d.removed) {
      const i = list.lastIndexOf(x);
      if (i < 0) continue;
      list[i] = list[list.length - 1]!;
      list.pop();
    }
    for (const x of d.added) list.push(x);
    if (list.length >= 2 * this.parkMin) m.list = undefined;
  }

  // --- matchers ----------------------------------------------------------------------------------

  /** The registered matchers that could select `item` (and, when given, `other`), in activation order. */
  private collectMatchers(item: Item, other: Item | undefined): MatcherState[] {
    const out = this.registry.collect(item, other);
    if (out.length > 1) out.sort(bySeq);
    return out;
  }

  /**
   * An item was added (old undefined), changed, or deleted (item undefined): update the
   * selections of the registered matchers it concerns, and the sets of the active ones.
   */
  private reevaluate(item: Item | undefined, old: Item | undefined): void {
    const any = item ?? old;
    if (!any || this.matchers.size === 0) return;
    for (const m of this.collectMatchers(any, item && old)) {
      const was = old !== undefined && m.test(old);
      const now = item !== undefined && m.test(item);
      if (!was && !now) continue;
      if (was !== now) {
        if (now) {
          m.selected!.add(any.id);
          m.size++;
        } else {
          m.selected!.remove(any.id);
          m.size--;
        }
        if (m.refs === 0) this.dormantIds += now ? 1 : -1;
        if (m.parked) this.parkedIds += now ? 1 : -1;
      }
      // A dormant matcher's members matter only when its set is parked in the dataplane, or to
      // keep its list.
      const inDataplane = m.refs > 0 || m.parked;
      if (!inDataplane && !m.list) continue;
      const d = this.members.delta(m.spec, m.test, item, old, was, now);
      if (!d) continue;
      if (m.list) this.applyToList(m, d);
      if (inDataplane)
        this.sink.send({ kind: 'IPSetDelta', id: m.spec.id, added: d.added, removed: d.removed });
    }
  }
}

/** Ascending ids, sorted in place when they are not. */
function sortedInt32(ids: Int32Array): Int32Array {
  for (let i = 1; i < ids.length; i++) if (ids[i - 1]! > ids[i]!) return ids.sort();
  return ids;
}

function bySeq(a: MatcherState, b: MatcherState): number {
  return a.seq - b.seq;
}
