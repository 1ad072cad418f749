// Label index: every item a rule selector can match (local and remote workload endpoints, host
// endpoints, network sets), and every active rule matcher with the ipset members it selects
// (Felix's ActiveRulesCalculator and selector index). It composes three jobs:
//   - label inheritance from profiles (profile-labels.ts): an item's effective labels, namespace
//     and service-account labels;
//   - selection, here: items are indexed by their own labels (key=value → sorted item ids), by
//     profile and by namespace; a new matcher reads off its selectors what an item must have
//     (selector-requirements.ts), takes the most selective condition's items as candidates and
//     intersects them with the next ones' lists before evaluating anything; matchers are
//     registered by their most selective condition (requirement-registry.ts), so an item's change
//     re-evaluates only the matchers that could select it, and a profile's change only the items
//     that name the profile;
//   - ipset membership (ipset-members.ts): the members a selected item gives a set, named ports,
//     and how an item's change moves them.
// Nothing is stored per (matcher, item) pair: items are immutable snapshots, replaced on every
// change, so "did the matcher select it" is the matcher evaluated on the previous snapshot. Memory
// per item is kept small: one effective-labels object (own labels are its keys listed in a shared
// key list), label values shared through the postings, and shared inherited parts.
// Output: IPSet messages to the sink.
import type { Labels } from '../../model/resources.ts';
import type { MatcherSpec } from '../../policy/compiled.ts';
import { ascending, getOrCreate, IdList, SelectedIds, Shared, TupleInterner } from './index-structures.ts';
import { IpSetMemberIndex } from './ipset-members.ts';
import type { IpSetId, MessageSink } from './messages.ts';
import { NAMESPACE_LABEL, NAMESPACE_LABEL_PREFIX, ProfileLabels } from './profile-labels.ts';
import { type Registration, RequirementRegistry, registrationOf } from './requirement-registry.ts';
import {
  type Clause,
  isGlobalOnly,
  isNothing,
  matcherRequirement,
  NOTHING,
  type Requirement,
} from './selector-requirements.ts';

// The label keys callers use with items, from where they are defined.
export { NAMESPACE_LABEL, NAMESPACE_LABEL_PREFIX, SERVICE_ACCOUNT_LABEL_PREFIX } from './profile-labels.ts';
export const SERVICE_ACCOUNT_LABEL = 'projectcalico.org/serviceaccount';
export const CLUSTER_LABEL = 'fedmesh.io/cluster';

export interface ItemInput {
  key: string;
  ownLabels: Labels;
  profiles: readonly string[];
  /** Namespace of a namespaced item (workload endpoint, network set); undefined for global ones. */
  namespace?: string;
  /** ipset members this item contributes when matched (CIDRs for hash:net). */
  nets: readonly string[];
  /** Named ports: name → 'proto:port' list, for hash:ip,port sets. */
  namedPorts?: ReadonlyMap<string, readonly string[]>;
}

/** An item's state; never mutated (a change replaces it), so old snapshots stay evaluable. */
interface Item {
  /** Small integer, stable while the key exists: what the index lists hold. */
  readonly id: number;
  readonly key: string;
  /** Effective labels: profiles' labels in order, then the item's own (own win). */
  readonly labels: Labels;
  /** Which keys of `labels` are the item's own (a shared list); null: all of them. */
  readonly ownKeys: readonly string[] | null;
  readonly profiles: readonly string[];
  readonly namespace: string | undefined;
  readonly nets: readonly string[];
  readonly namedPorts: ReadonlyMap<string, readonly string[]> | undefined;
  /** Labels of the item's namespace (from its kns profile, prefix stripped); undefined if global. */
  readonly nsLabels: Labels | undefined;
  /** Labels of the item's service account (from its ksa profile, prefix stripped). */
  readonly saLabels: Labels;
}

export type { MatcherSpec };

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
  /** Whether it selects an item: `matches` with what the spec does not use left out. */
  readonly test: (item: Item) => boolean;
}

export interface LabelIndexOptions {
  /**
   * Defer matchers' members until `endDeferral()`: matchers referenced before then are announced
   * with their members computed once, from the complete index, instead of following every item
   * as it arrives. For the first snapshot, before which the dataplane writes nothing.
   */
  deferMembers?: boolean;
}

/**
 * Dormant matchers (no reference left) are kept, still following item changes, up to this many
 * and while their selections hold at most this many ids in all; beyond that the least recently
 * active go. A policy that comes back (an endpoint's label flips back) then announces its sets
 * without evaluating anything: a selector no index narrows would cost a scan of every item.
 */
const DORMANT_MAX = 16_384;
const DORMANT_MAX_IDS = 4_000_000;

/** Items with one own label key=value; `value` is the one shared copy of the value string. */
interface ValueEntry {
  readonly value: string;
  /** Items with this own label. */
  refs: number;
  /** Their ids, once some matcher has needed the label key (see KeyPostings.indexed). */
  list: IdList | undefined;
}

interface KeyPostings {
  /** Items with the key among their own labels. */
  count: number;
  /** Whether the values' item lists are kept: only for keys some matcher has looked up. */
  indexed: boolean;
  readonly byValue: Map<string, ValueEntry>;
}

/** Implicit labels: poor selectivity, so an index prefers any other atom of a selector. */
const IMPLICIT_KEYS: ReadonlySet<string> = new Set([
  NAMESPACE_LABEL,
  SERVICE_ACCOUNT_LABEL,
  CLUSTER_LABEL,
  'projectcalico.org/orchestrator',
]);
/** Candidate lists this short are evaluated as they are, without intersecting. */
const INTERSECT_MIN = 16;
/** At most this many further clauses filter the candidates, each with at most this many lists. */
const MAX_FILTERS = 2;
const MAX_FILTER_LISTS = 8;

function namedPortsSig(np: ReadonlyMap<string, readonly string[]>): string {
  let s = '';
  for (const [name, ports] of np) s += `${name}=${ports.join(',')};`;
  return s;
}

export class LabelIndex {
  private readonly items = new Map<string, Item>();
  /** Current snapshot by item id. */
  private readonly byId: (Item | undefined)[] = [];
  private readonly freeIds: number[] = [];
  /** Label inheritance from profiles. */
  private readonly profiles = new ProfileLabels();
  private readonly itemsByProfile = new Map<string, IdList>();
  private readonly matchers = new Map<IpSetId, MatcherState>();
  /** Matchers without references, least recently active first (a subset of `matchers`). */
  private readonly dormant = new Map<IpSetId, MatcherState>();
  private dormantIds = 0;
  /** Referenced matchers whose members wait for `endDeferral()`, while deferring. */
  private deferred: MatcherState[] | undefined;

  // Items by own label (key → value → items), and namespaced items whose own namespace label is
  // not their namespace (the others are found through the namespace label's postings).
  private readonly postings = new Map<string, KeyPostings>();
  /** Label keys whose postings keep item lists (some matcher has looked them up). */
  private readonly indexedKeys = new Set<string>();
  private readonly unlabelledNamespace = new Map<string, IdList>();
  /** ipset members from the items matchers select. */
  private readonly members = new IpSetMemberIndex<Item>((id) => this.byId[id]);

  /** Active matchers by what their items need. */
  private readonly registry = new RequirementRegistry<MatcherState>();

  // Shared per-item parts.
  private readonly ownKeyLists = new TupleInterner();
  private readonly sharedNamedPorts = new Shared<ReadonlyMap<string, readonly string[]>>();
  private readonly sharedNamespaces = new Shared<string>();

  private matcherSeq = 0;

  constructor(
    private readonly sink: MessageSink,
    opts: LabelIndexOptions = {},
  ) {
    if (opts.deferMembers) this.deferred = [];
  }

  get itemCount(): number {
    return this.items.size;
  }

  getLabels(key: string): Labels | undefined {
    return this.items.get(key)?.labels;
  }

  /** Add or replace an item; returns its effective labels. */
  upsertItem(input: ItemInput): Labels {
    const old = this.items.get(input.key);
    const key = old?.key ?? input.key;
    const id = old ? old.id : this.newId();
    // Own labels with the shared copies of their values (new ones are indexed here).
    const own: Record<string, string> = {};
    for (const k in input.ownLabels) {
      const v = input.ownLabels[k];
      if (typeof v !== 'string') continue;
      const oldV = old ? this.ownValue(old, k) : undefined;
      own[k] = oldV === v ? oldV : this.addOwn(k, v, id);
    }
    const item = this.build(id, key, own, input.profiles, input.namespace, input.nets, input.namedPorts);
    this.items.set(key, item);
    this.byId[id] = item;
    // Removals once the new snapshot is in place (the lists check membership against it).
    if (old) {
      this.forEachOwn(old, (k, v) => {
        if (own[k] !== v) this.removeOwn(k, v, id);
      });
    }
    this.reindexProfilesAndNamespace(item, old);
    this.members.reindex(item, old);
    if (old) this.release(old);
    this.reevaluate(item, old);
    return item.labels;
  }

  deleteItem(key: string): void {
    const old = this.items.get(key);
    if (!old) return;
    this.items.delete(key);
    this.byId[old.id] = undefined;
    this.forEachOwn(old, (k, v) => this.removeOwn(k, v, old.id));
    this.reindexProfilesAndNamespace(undefined, old);
    this.members.reindex(undefined, old);
    this.release(old);
    this.reevaluate(undefined, old);
    this.freeIds.push(old.id);
    // Nothing left to select: dormant matchers would only be kept for nothing.
    if (this.items.size === 0) for (const m of [...this.dormant.values()]) this.drop(m);
  }

  /** Set (or with undefined, delete) a profile's labels; returns the keys of items whose labels changed. */
  setProfileLabels(name: string, labels: Labels | undefined): string[] {
    const labelsChanged = this.profiles.set(name, labels);
    const list = this.itemsByProfile.get(name);
    if (!list) return [];
    const ids = [...list.members(this.namesProfile(name))];
    const changed = ids.map((id) => this.byId[id]!.key);
    if (!labelsChanged) return changed;
    // Items naming the profile still hold what was built from its old labels: rebuild them.
    for (const id of ids) {
      const old = this.byId[id];
      if (!old) continue;
      const own: Record<string, string> = {};
      this.forEachOwn(old, (k, v) => {
        own[k] = v;
      });
      const item = this.build(id, old.key, own, old.profiles, old.namespace, old.nets, old.namedPorts);
      this.items.set(old.key, item);
      this.byId[id] = item;
      this.release(old);
      this.reevaluate(item, old);
    }
    return changed;
  }

  /**
   * Take a reference on a matcher; the first reference announces its members (computed from the
   * index, or kept from when it was last active; while deferring, at `endDeferral()`).
   */
  refMatcher(spec: MatcherSpec): void {
    const existing = this.matchers.get(spec.id);
    if (existing) {
      if (existing.refs++ > 0) return;
      // Dormant: its selection followed every change since; announce it again.
      this.dormant.delete(spec.id);
      this.dormantIds -= existing.selected!.size;
      this.announce(existing);
      return;
    }
    const req = spec.staticMembers ? NOTHING : matcherRequirement(spec, this.cost);
    const reg = registrationOf(req, this.cost);
    const state: MatcherState = {
      spec,
      refs: 1,
      seq: ++this.matcherSeq,
      req,
      reg,
      mark: 0,
      selected: undefined,
      test: this.testOf(spec),
    };
    this.matchers.set(spec.id, state);
    if (this.deferred && !spec.staticMembers) {
      this.deferred.push(state);
      return;
    }
    this.select(state);
    this.announce(state);
  }

  unrefMatcher(id: IpSetId): void {
    const state = this.matchers.get(id);
    if (!state || state.refs === 0) return;
    if (--state.refs > 0) return;
    if (!state.selected) {
      // Deferred and never announced: nothing to take back.
      this.matchers.delete(id);
      return;
    }
    this.sink.send({ kind: 'IPSetRemove', id });
    if (state.spec.staticMembers || this.items.size === 0) {
      this.drop(state);
      return;
    }
    this.dormant.set(id, state);
    this.dormantIds += state.selected.size;
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
    // Matchers that find their candidates the same way are evaluated together, item by item:
    // each candidate is read from memory once for all of them.
    const groups = new Map<string, MatcherState[]>();
    for (const m of live) getOrCreate(groups, this.planOf(m.req).sig, () => []).push(m);
    for (const group of groups.values()) {
      const selected = this.selectedIdsOfGroup(group);
      group.forEach((m, i) => {
        m.selected = new SelectedIds(selected[i]!);
        this.registry.register(m, m.reg);
      });
    }
    for (const m of live) this.announce(m);
  }

  /** Current members of an active matcher (for tests and `explain`). */
  membersOf_(id: IpSetId): string[] | undefined {
    const s = this.matchers.get(id);
    if (!s || s.refs === 0) return undefined;
    if (s.spec.staticMembers) return [...s.spec.staticMembers];
    return s.selected ? this.membersOfSelected(s) : this.computeMembers(s.spec, s.req);
  }

  get activeMatcherCount(): number {
    return this.matchers.size - this.dormant.size;
  }

  /** Does a (not necessarily active) matcher select the item? For one-off evaluation. */
  itemMatches(spec: MatcherSpec, key: string): boolean {
    const item = this.items.get(key);
    return item ? this.matches(spec, item) : false;
  }

  /**
   * Keys of the items a matcher could select, by the index (a superset of those it selects), or
   * undefined when the index cannot narrow it down (every item is a candidate). For tests.
   */
  candidatesOf(spec: MatcherSpec): Set<string> | undefined {
    const req = matcherRequirement(spec, this.cost);
    if (req === null) return undefined;
    const out = new Set<string>();
    for (const id of this.candidateIds(req)) {
      const item = this.byId[id];
      if (item) out.add(item.key);
    }
    return out;
  }

  /** Active matchers an item's change would re-evaluate (ids), by the index. For tests. */
  matchersFor(key: string): Set<IpSetId> {
    const item = this.items.get(key);
    const out = new Set<IpSetId>();
    if (!item) return out;
    for (const m of this.collectMatchers(item, undefined)) out.add(m.spec.id);
    return out;
  }

  /** Sizes of the internal indexes (for tests: everything drains when items and matchers go). */
  indexSizes(): Record<string, number> {
    let postings = 0;
    let labelled = 0;
    for (const kp of this.postings.values()) {
      labelled += kp.count;
      for (const e of kp.byValue.values()) postings += e.list?.size ?? 0;
    }
    const { entries: matcherEntries, nodes: regNodes } = this.registry.sizes();
    let unlabelled = 0;
    for (const s of this.unlabelledNamespace.values()) unlabelled += s.size;
    let profileEntries = 0;
    for (const s of this.itemsByProfile.values()) profileEntries += s.size;
    return {
      items: this.items.size,
      itemIds: this.byId.length - this.freeIds.length,
      postingKeys: this.postings.size,
      ownLabels: labelled,
      postings,
      unlabelledNamespace: unlabelled,
      itemsByProfile: profileEntries,
      ...this.profiles.sizes(),
      ...this.members.sizes(),
      matchers: this.matchers.size,
      dormantMatchers: this.dormant.size,
      matcherEntries,
      regNodes,
      ownKeyLists: this.ownKeyLists.size,
      sharedNamedPorts: this.sharedNamedPorts.size,
      sharedNamespaces: this.sharedNamespaces.size,
    };
  }

  // --- items -------------------------------------------------------------------------------------

  private newId(): number {
    return this.freeIds.pop() ?? this.byId.length;
  }

  private build(
    id: number,
    key: string,
    own: Record<string, string>,
    inputProfiles: readonly string[],
    inputNamespace: string | undefined,
    nets: readonly string[],
    inputNamedPorts: ReadonlyMap<string, readonly string[]> | undefined,
  ): Item {
    const namespace =
      inputNamespace === undefined
        ? undefined
        : this.sharedNamespaces.acquire(inputNamespace, () => inputNamespace);
    const { profiles, inherited, nsLabels, saLabels } = this.profiles.acquire(inputProfiles, namespace);
    let labels: Record<string, string> = own;
    let ownKeys: readonly string[] | null = null;
    if (inherited) {
      // Object.assign, not spread: a spread clone that then grows gets slow (un-shared) shapes.
      labels = Object.assign({}, inherited, own);
      ownKeys = this.ownKeyLists.acquire(Object.keys(own));
    }
    const namedPorts =
      inputNamedPorts && inputNamedPorts.size > 0
        ? this.sharedNamedPorts.acquire(namedPortsSig(inputNamedPorts), () => inputNamedPorts)
        : undefined;
    return { id, key, labels, ownKeys, profiles, namespace, nets, namedPorts, nsLabels, saLabels };
  }

  /** Drop an item snapshot's references on shared parts. */
  private release(item: Item): void {
    this.profiles.release(item.profiles, item.namespace);
    if (item.ownKeys) this.ownKeyLists.release(item.ownKeys);
    if (item.namespace !== undefined) this.sharedNamespaces.release(item.namespace);
    if (item.namedPorts) this.sharedNamedPorts.release(namedPortsSig(item.namedPorts));
  }

  private forEachOwn(item: Item, fn: (k: string, v: string) => void): void {
    const labels = item.labels;
    if (item.ownKeys === null) {
      for (const k in labels) fn(k, labels[k]!);
    } else {
      for (const k of item.ownKeys) fn(k, labels[k]!);
    }
  }

  private ownValue(item: Item, k: string): string | undefined {
    if (item.ownKeys !== null && !item.ownKeys.includes(k)) return undefined;
    const v = item.labels[k];
    return typeof v === 'string' ? v : undefined;
  }

  /** Index an item under an own label it did not have; returns the shared copy of the value. */
  private addOwn(k: string, v: string, id: number): string {
    let kp = this.postings.get(k);
    if (!kp) {
      kp = { count: 0, indexed: this.indexedKeys.has(k), byValue: new Map() };
      this.postings.set(k, kp);
    }
    let e = kp.byValue.get(v);
    if (!e) {
      e = { value: v, refs: 0, list: kp.indexed ? new IdList() : undefined };
      kp.byValue.set(v, e);
    }
    e.refs++;
    kp.count++;
    e.list?.add(id);
    return e.value;
  }

  /** The item no longer has the own label (its new snapshot, if any, is already in place). */
  private removeOwn(k: string, v: string, id: number): void {
    const kp = this.postings.get(k);
    const e = kp?.byValue.get(v);
    if (!kp || !e) return;
    kp.count--;
    if (--e.refs <= 0) {
      kp.byValue.delete(v);
      if (kp.byValue.size === 0) this.postings.delete(k);
    } else e.list?.remove(id, this.hasOwn(k, v));
  }

  /** Membership test of a posting list: does the item (now) have this own label? */
  private hasOwn(k: string, v: string): (id: number) => boolean {
    return (id) => {
      const item = this.byId[id];
      return item !== undefined && this.ownValue(item, k) === v;
    };
  }

  private namesProfile(p: string): (id: number) => boolean {
    return (id) => this.byId[id]?.profiles.includes(p) ?? false;
  }

  private inUnlabelledNamespace(ns: string): (id: number) => boolean {
    return (id) => {
      const item = this.byId[id];
      return item !== undefined && unlabelledNamespace(item) === ns;
    };
  }

  /** From now on keep item lists for this label key (built once from every item). */
  private ensureIndexed(k: string): KeyPostings | undefined {
    if (!this.indexedKeys.has(k)) {
      this.indexedKeys.add(k);
      const kp = this.postings.get(k);
      if (kp && !kp.indexed) {
        kp.indexed = true;
        for (const e of kp.byValue.values()) e.list = new IdList();
        for (const item of this.items.values()) {
          const v = this.ownValue(item, k);
          if (v !== undefined) kp.byValue.get(v)?.list?.add(item.id);
        }
      }
    }
    return this.postings.get(k);
  }

  private reindexProfilesAndNamespace(item: Item | undefined, old: Item | undefined): void {
    const id = (item ?? old)!.id;
    if (item?.profiles !== old?.profiles) {
      if (item) {
        for (const p of item.profiles) {
          if (old?.profiles.includes(p)) continue;
          let list = this.itemsByProfile.get(p);
          if (!list) {
            list = new IdList();
            this.itemsByProfile.set(p, list);
          }
          list.add(id);
        }
      }
      if (old) {
        for (const p of old.profiles) {
          if (item?.profiles.includes(p)) continue;
          const list = this.itemsByProfile.get(p);
          if (!list) continue;
          list.remove(id, this.namesProfile(p));
          if (list.size === 0) this.itemsByProfile.delete(p);
        }
      }
    }
    const was = old && unlabelledNamespace(old);
    const now = item && unlabelledNamespace(item);
    if (was !== now) {
      if (now) getOrCreate(this.unlabelledNamespace, now, () => new IdList()).add(id);
      if (was) {
        const list = this.unlabelledNamespace.get(was);
        list?.remove(id, this.inUnlabelledNamespace(was));
        if (list?.size === 0) this.unlabelledNamespace.delete(was);
      }
    }
  }

  // --- candidates ------------------------------------------------------------------------------

  /**
   * Estimated candidates of a clause (scaled, with a tie-break by kind of atom). A value's count
   * is what the index holds now, but never less than an even share of the items among the key's
   * values: when a matcher comes before most items (policies before remote endpoints), "no item
   * has cluster == 'c' yet" must not make that the condition to index it under.
   */
  private readonly cost = (clause: Clause): number => {
    const total = Math.max(1, this.items.size);
    let c = 0;
    for (const a of clause) {
      let est = 0;
      let rank: number;
      if (a.space === 'scope') {
        const kp = this.postings.get(NAMESPACE_LABEL);
        const n =
          (kp?.byValue.get(a.namespace)?.refs ?? 0) + (this.unlabelledNamespace.get(a.namespace)?.size ?? 0);
        est = Math.max(n, total / Math.max(1, this.sharedNamespaces.size));
        rank = 3;
      } else {
        const k = a.space === 'ns' ? NAMESPACE_LABEL_PREFIX + a.key : a.key;
        const kp = a.space === 'labels' ? this.postings.get(k) : undefined;
        const distinct = (kp?.byValue.size ?? 0) + this.profiles.distinctValues(k);
        if (a.values) {
          for (const v of a.values) {
            let n = kp?.byValue.get(v)?.refs ?? 0;
            this.profiles.forEachWith(k, [v], (p) => {
              n += this.itemsByProfile.get(p)?.size ?? 0;
            });
            est += Math.max(n, total / Math.max(1, distinct));
          }
        } else {
          let n = kp?.count ?? 0;
          this.profiles.forEachWith(k, undefined, (p) => {
            n += this.itemsByProfile.get(p)?.size ?? 0;
          });
          est = n > 0 ? n : total;
        }
        rank = !a.values ? 4 : a.space === 'ns' ? 1 : IMPLICIT_KEYS.has(a.key) ? 2 : 0;
      }
      c += est * 8 + rank;
    }
    return c;
  };

  /**
   * The sorted id lists whose union holds every item satisfying the clause (superset), and
   * whether they are disjoint (postings of one key: an item has one value per key).
   */
  private clauseLists(clause: Clause): { lists: (readonly number[])[]; disjoint: boolean } {
    const lists: (readonly number[])[] = [];
    let onlyKey: string | undefined;
    let disjoint = true;
    const own = (k: string, e: ValueEntry | undefined) => {
      if (!e?.list) return;
      if (onlyKey !== undefined && onlyKey !== k) disjoint = false;
      onlyKey = k;
      lists.push(e.list.members(this.hasOwn(k, e.value)));
    };
    const viaProfiles = (k: string, values: readonly string[] | undefined) =>
      this.profiles.forEachWith(k, values, (p) => {
        const list = this.itemsByProfile.get(p);
        if (!list) return;
        disjoint = false;
        lists.push(list.members(this.namesProfile(p)));
      });
    for (const a of clause) {
      if (a.space === 'scope') {
        own(NAMESPACE_LABEL, this.ensureIndexed(NAMESPACE_LABEL)?.byValue.get(a.namespace));
        const extra = this.unlabelledNamespace.get(a.namespace);
        if (extra) {
          disjoint = false;
          lists.push(extra.members(this.inUnlabelledNamespace(a.namespace)));
        }
      } else if (a.space === 'labels') {
        const kp = this.ensureIndexed(a.key);
        if (kp) {
          if (a.values) for (const v of a.values) own(a.key, kp.byValue.get(v));
          else for (const e of kp.byValue.values()) own(a.key, e);
        }
        viaProfiles(a.key, a.values);
      } else viaProfiles(NAMESPACE_LABEL_PREFIX + a.key, a.values);
    }
    return { lists, disjoint };
  }

  /**
   * Ids of the items that satisfy every clause of a requirement as far as the index can tell
   * (a superset of those a matcher with it selects), each once: the most selective clause's items,
   * intersected with the lists of the next most selective ones.
   */
  private candidateIds(req: readonly Clause[]): readonly number[] {
    return this.planOf(req).run?.() ?? NO_IDS;
  }

  /**
   * How the index finds a requirement's candidates (see candidateIds), with a signature that is
   * the same for requirements whose candidates it finds the same way: undefined runs list all.
   */
  private planOf(req: Requirement): { sig: string; run: (() => readonly number[]) | undefined } {
    if (req === null) return { sig: '*', run: undefined };
    if (isNothing(req)) return { sig: '', run: () => NO_IDS };
    const costs = req.map((c) => ({ c, cost: this.cost(c) }));
    costs.sort((a, b) => a.cost - b.cost);
    const driver = this.clauseLists(costs[0]!.c);
    // Sorted, disjoint lists whose union is the driver clause's items.
    let lists = driver.lists;
    let sig = clauseSig(costs[0]!.c);
    if (!driver.disjoint && lists.length > 1) lists = [sortedUnique(lists.flat())];
    let size = 0;
    for (const l of lists) size += l.length;
    if (size === 0) return { sig: '', run: () => NO_IDS };
    // Filters: the next clauses whose lists are few and (by estimate) clearly smaller than all.
    const filters: (readonly number[])[][] = [];
    if (size >= INTERSECT_MIN) {
      const total = Math.max(1, this.items.size);
      for (let i = 1; i < costs.length && filters.length < MAX_FILTERS; i++) {
        if (costs[i]!.cost / 8 > total / 2) break;
        const f = this.clauseLists(costs[i]!.c).lists;
        if (f.length > MAX_FILTER_LISTS) continue;
        filters.push(f);
        sig += `\u0003${clauseSig(costs[i]!.c)}`;
      }
    }
    return { sig, run: () => filtered(lists, filters) };
  }

  /** For each matcher of a group with one plan, the ids of the items it selects, ascending. */
  private selectedIdsOfGroup(group: readonly MatcherState[]): number[][] {
    const outs: number[][] = group.map(() => []);
    const tests = group.map((m) => m.test);
    const n = group.length;
    const byId = this.byId;
    const visit = (id: number) => {
      const item = byId[id];
      if (item === undefined) return;
      for (let j = 0; j < n; j++) if (tests[j]!(item)) outs[j]!.push(id);
    };
    const run = this.planOf(group[0]!.req).run;
    if (run === undefined) for (let id = 0; id < byId.length; id++) visit(id);
    else for (const id of run()) visit(id);
    for (const out of outs) if (!isAscending(out)) out.sort(ascending);
    return outs;
  }

  /** Whether the item passes the matcher: `matches`, specialised to what the spec uses. */
  private testOf(spec: MatcherSpec): (item: Item) => boolean {
    const { selector, namespace } = spec;
    const onlySelector =
      selector !== undefined &&
      !spec.staticMembers &&
      !spec.namespaceSelector &&
      !spec.notSelector &&
      !spec.serviceAccountNames?.length &&
      !spec.serviceAccountSelector &&
      !spec.namedPort;
    if (onlySelector && namespace === undefined) return (item) => selector.evaluate(item.labels);
    if (onlySelector) return (item) => item.namespace === namespace && selector.evaluate(item.labels);
    return (item) => this.matches(spec, item);
  }

  /** The ids of the items a matcher selects, ascending, computed from its candidates. */
  private selectedIds(spec: MatcherSpec, req: Requirement): number[] {
    const out: number[] = [];
    const byId = this.byId;
    const run = this.planOf(req).run;
    const visit = (id: number) => {
      const item = byId[id];
      if (item !== undefined && this.matches(spec, item)) out.push(id);
    };
    if (run === undefined) for (let id = 0; id < byId.length; id++) visit(id);
    else for (const id of run()) visit(id);
    return isAscending(out) ? out : out.sort(ascending);
  }

  /** The members of a matcher, computed from its candidates. */
  private computeMembers(spec: MatcherSpec, req: Requirement): string[] {
    return this.members.membersOfIds(spec, this.selectedIds(spec, req));
  }

  private membersOfSelected(state: MatcherState): string[] {
    return this.members.membersOfIds(state.spec, state.selected!.members());
  }

  /** Computes a matcher's selection and registers it, so that it follows item changes. */
  private select(state: MatcherState): void {
    if (state.spec.staticMembers) {
      state.selected = new SelectedIds();
      return;
    }
    state.selected = new SelectedIds(this.selectedIdsOfGroup([state])[0]!);
    this.registry.register(state, state.reg);
  }

  private announce(state: MatcherState): void {
    const { spec } = state;
    const members = spec.staticMembers ? [...spec.staticMembers] : this.membersOfSelected(state);
    this.sink.send({ kind: 'IPSetUpdate', id: spec.id, type: spec.type, members });
  }

  private drop(state: MatcherState): void {
    this.matchers.delete(state.spec.id);
    if (this.dormant.delete(state.spec.id)) this.dormantIds -= state.selected!.size;
    if (!state.spec.staticMembers) this.registry.unregister(state, state.reg);
  }

  /** Lets the least recently active dormant matchers go while they hold too many ids. */
  private trimDormant(): void {
    for (const state of this.dormant.values()) {
      if (this.dormantIds <= DORMANT_MAX_IDS && this.dormant.size <= DORMANT_MAX) return;
      this.drop(state);
    }
  }

  // --- matchers ----------------------------------------------------------------------------------

  /** The active matchers that could select `item` (and, when given, `other`), in activation order. */
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
      if (was === now && !was) continue;
      const selected = m.selected!;
      if (was !== now) {
        if (now) selected.add(any.id);
        else selected.remove(any.id);
        if (m.refs === 0) {
          this.dormantIds += now ? 1 : -1;
          continue;
        }
      }
      if (m.refs === 0) continue;
      const d = this.members.delta(m.spec, m.test, item, old, was, now);
      if (d) this.sink.send({ kind: 'IPSetDelta', id: m.spec.id, added: d.added, removed: d.removed });
    }
  }

  private matches(spec: MatcherSpec, item: Item): boolean {
    if (spec.staticMembers) return false;
    if (spec.namespace !== undefined && item.namespace !== spec.namespace) return false;
    if (spec.namespaceSelector) {
      // Calico: a namespaceSelector of global() selects the non-namespaced items; any other
      // (all() included) selects namespaced items by their namespace's labels.
      if (isGlobalOnly(spec.namespaceSelector)) {
        if (item.nsLabels !== undefined) return false;
      } else if (item.nsLabels === undefined || !spec.namespaceSelector.evaluate(item.nsLabels)) return false;
    }
    if (spec.selector && !spec.selector.evaluate(item.labels)) return false;
    if (spec.notSelector?.evaluate(item.labels)) return false;
    if (spec.serviceAccountNames && spec.serviceAccountNames.length > 0) {
      const sa = item.labels[SERVICE_ACCOUNT_LABEL];
      if (sa === undefined || !spec.serviceAccountNames.includes(sa)) return false;
    }
    if (spec.serviceAccountSelector) {
      if (item.labels[SERVICE_ACCOUNT_LABEL] === undefined) return false;
      if (!spec.serviceAccountSelector.evaluate(item.saLabels)) return false;
    }
    if (spec.namedPort && !item.namedPorts?.has(spec.namedPort.name)) return false;
    return true;
  }
}

const NO_IDS: readonly number[] = Object.freeze([]) as readonly number[];

/**
 * The ids of sorted, disjoint lists that are also in one of each filter's lists, list by list
 * (so ascending within each list's part).
 */
function filtered(
  lists: readonly (readonly number[])[],
  filters: readonly (readonly number[])[][],
): readonly number[] {
  if (filters.length === 0) return lists.length === 1 ? lists[0]! : lists.flat();
  const out: number[] = [];
  for (const l of lists) {
    let keep: readonly number[] = l;
    for (const f of filters) {
      const hit = new Uint8Array(keep.length);
      for (const fl of f) markCommon(keep, fl, hit);
      const next: number[] = [];
      for (let i = 0; i < keep.length; i++) if (hit[i]) next.push(keep[i]!);
      keep = next;
      if (keep.length === 0) break;
    }
    for (const id of keep) out.push(id);
  }
  return out;
}

/** A clause as text: equal for clauses that find the same candidates. */
function clauseSig(c: Clause): string {
  return c
    .map((a) =>
      a.space === 'scope'
        ? `scope:${a.namespace}`
        : `${a.space}:${a.key}${a.values ? `=${a.values.join('\u0001')}` : ''}`,
    )
    .join('\u0002');
}

function isAscending(ids: readonly number[]): boolean {
  for (let i = 1; i < ids.length; i++) if (ids[i - 1]! > ids[i]!) return false;
  return true;
}

function sortedUnique(ids: number[]): number[] {
  ids.sort(ascending);
  let n = 0;
  for (let i = 0; i < ids.length; i++) if (i === 0 || ids[i] !== ids[n - 1]) ids[n++] = ids[i]!;
  ids.length = n;
  return ids;
}

/**
 * Marks in `hit` the positions of `a` whose id is also in `b` (both sorted): a merge that gallops
 * through `b`, so a short `a` against a long `b` costs about |a| · log(|b| / |a|).
 */
function markCommon(a: readonly number[], b: readonly number[], hit: Uint8Array): void {
  let j = 0;
  const n = b.length;
  for (let i = 0; i < a.length && j < n; i++) {
    const x = a[i]!;
    if (b[j]! < x) {
      // Gallop to a bound, then binary search within it.
      let step = 1;
      let lo = j;
      let hi = j + 1;
      while (hi < n && b[hi]! < x) {
        lo = hi;
        step *= 2;
        hi = j + step;
      }
      if (hi > n) hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (b[mid]! < x) lo = mid + 1;
        else hi = mid;
      }
      j = lo;
    }
    if (j < n && b[j] === x) hit[i] = 1;
  }
}

/** The namespace of a namespaced item whose own namespace label does not name it, else undefined. */
function unlabelledNamespace(item: Item): string | undefined {
  if (item.namespace === undefined) return undefined;
  if (item.ownKeys !== null && !item.ownKeys.includes(NAMESPACE_LABEL)) return item.namespace;
  return item.labels[NAMESPACE_LABEL] === item.namespace ? undefined : item.namespace;
}

function bySeq(a: MatcherState, b: MatcherState): number {
  return a.seq - b.seq;
}
