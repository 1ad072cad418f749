// The item index (Felix's label index): every item a rule selector can match (local and remote
// workload endpoints, host endpoints, network sets) as an immutable snapshot with its effective
// labels (own plus inherited from profiles, profile-labels.ts), indexed by its own labels
// (key=value → sorted item ids), by profile and by namespace. Given what a selector requires of an
// item (selector-requirements.ts), it finds the candidates: the most selective condition's items,
// intersected with the next ones' lists, so a selector evaluates a few items instead of all.
// It knows nothing of which selectors are active or of ipsets (label-index.ts, ipset-members.ts).
// Memory per item is kept small: one effective-labels object (own labels are its keys listed in a
// shared key list), label values shared through the postings, and shared inherited parts.
import type { Labels } from '../../model/resources.ts';
import type { MatcherSpec } from '../../policy/compiled.ts';
import {
  areStringKeysOf,
  ascending,
  getOrCreate,
  IdList,
  Shared,
  TupleInterner,
} from './index-structures.ts';
import { NAMESPACE_LABEL, NAMESPACE_LABEL_PREFIX, ProfileLabels } from './profile-labels.ts';
import {
  type Clause,
  isGlobalOnly,
  isKeyable,
  isNothing,
  type Requirement,
} from './selector-requirements.ts';

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
export interface Item {
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

/** Items with one own label key=value; `value` is the one shared copy of the value string. */
interface ValueEntry {
  readonly value: string;
  /** Items with this own label. */
  refs: number;
  /** Their ids, once some matcher has needed the label key (see KeyPostings.indexed). */
  list: IdList | undefined;
}

/** A key's postings while indexKeys fills their lists, with the value entry it last found. */
interface KeyScan {
  readonly byValue: Map<string, ValueEntry>;
  last: ValueEntry | undefined;
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

/** Signatures of the named-port maps seen, by map: a caller that hands the same map again pays no text. */
const namedPortsSigs = new WeakMap<ReadonlyMap<string, readonly string[]>, string>();

function namedPortsSig(np: ReadonlyMap<string, readonly string[]>): string {
  let s = namedPortsSigs.get(np);
  if (s !== undefined) return s;
  s = '';
  for (const [name, ports] of np) s += `${name}=${ports.join(',')};`;
  namedPortsSigs.set(np, s);
  return s;
}

/** How the index finds a requirement's candidates; `run` undefined: every item is one. */
export interface CandidatePlan {
  /** The same for requirements whose candidates the index finds the same way. */
  readonly sig: string;
  readonly run: (() => readonly number[]) | undefined;
}

export class ItemIndex {
  private readonly items = new Map<string, Item>();
  /** Current snapshot by item id. */
  private readonly byId: (Item | undefined)[] = [];
  private readonly freeIds: number[] = [];
  /** Label inheritance from profiles. */
  private readonly profiles = new ProfileLabels();
  private readonly itemsByProfile = new Map<string, IdList>();

  // Items by own label (key → value → items), and namespaced items whose own namespace label is
  // not their namespace (the others are found through the namespace label's postings).
  private readonly postings = new Map<string, KeyPostings>();
  /** Label keys whose postings keep item lists (some matcher has looked them up). */
  private readonly indexedKeys = new Set<string>();
  private readonly unlabelledNamespace = new Map<string, IdList>();
  /**
   * The items without a key, by key (see withoutOwn), while no item changes: a load's matchers
   * that find their candidates so share one pass over the ids.
   */
  private readonly withoutOwnLists = new Map<string, readonly number[]>();
  /**
   * The ids of a filter clause's items as a bitset, by clause, while no item changes: a load's
   * plans filter their candidates with a bit test each, where merging each plan's candidates with
   * the clause's (long) lists cost a search each in memory the cache no longer held.
   */
  private readonly filterBits = new Map<string, Uint32Array>();

  // Shared per-item parts.
  private readonly ownKeyLists = new TupleInterner();
  private readonly sharedNamedPorts = new Shared<ReadonlyMap<string, readonly string[]>>();
  private readonly sharedNamespaces = new Shared<string>();
  private readonly templates = new LabelTemplates();

  get size(): number {
    return this.items.size;
  }

  get(key: string): Item | undefined {
    return this.items.get(key);
  }

  /** The item with this id now, if any. */
  at(id: number): Item | undefined {
    return this.byId[id];
  }

  /** One past the highest id ever given: ids of a scan of every item run below it. */
  get idLimit(): number {
    return this.byId.length;
  }

  /**
   * Adds or replaces an item; returns the new snapshot and the one it replaced, which stays
   * evaluable (for what changed) though no longer indexed.
   */
  upsert(input: ItemInput): { item: Item; old: Item | undefined } {
    this.clearLoadCaches();
    const old = this.items.get(input.key);
    const key = old?.key ?? input.key;
    const id = old ? old.id : this.newId();
    const item = this.build(
      id,
      key,
      input.ownLabels,
      false,
      old,
      input.profiles,
      input.namespace,
      input.nets,
      input.namedPorts,
    );
    this.items.set(key, item);
    this.byId[id] = item;
    // Removals once the new snapshot is in place (the lists check membership against it).
    if (old) {
      this.forEachOwn(old, (k, v) => {
        if (this.ownValue(item, k) !== v) this.removeOwn(k, v, id);
      });
    }
    this.reindexProfilesAndNamespace(item, old);
    if (old) this.release(old);
    return { item, old };
  }

  /** Removes an item; returns its last snapshot (its id may be given again from now on). */
  delete(key: string): Item | undefined {
    const old = this.items.get(key);
    if (!old) return undefined;
    this.clearLoadCaches();
    this.items.delete(key);
    this.byId[old.id] = undefined;
    this.forEachOwn(old, (k, v) => this.removeOwn(k, v, old.id));
    this.reindexProfilesAndNamespace(undefined, old);
    this.release(old);
    this.freeIds.push(old.id);
    return old;
  }

  /**
   * Sets (or with undefined, deletes) a profile's labels; returns the keys of the items naming the
   * profile. Each item whose labels change is rebuilt and handed to `rebuilt` at once, before the
   * next one is (so that what follows from one change sees the others as they were).
   */
  setProfileLabels(
    name: string,
    labels: Labels | undefined,
    rebuilt: (item: Item, old: Item) => void,
  ): string[] {
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
      const item = this.build(
        id,
        old.key,
        own,
        true,
        undefined,
        old.profiles,
        old.namespace,
        old.nets,
        old.namedPorts,
      );
      this.items.set(old.key, item);
      this.byId[id] = item;
      this.release(old);
      rebuilt(item, old);
    }
    return changed;
  }

  /** Sizes of the internal indexes (for tests: everything drains when the items go). */
  sizes(): Record<string, number> {
    let postings = 0;
    let labelled = 0;
    for (const kp of this.postings.values()) {
      labelled += kp.count;
      for (const e of kp.byValue.values()) postings += e.list?.size ?? 0;
    }
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
      ownKeyLists: this.ownKeyLists.size,
      sharedNamedPorts: this.sharedNamedPorts.size,
      sharedNamespaces: this.sharedNamespaces.size,
    };
  }

  // --- items -------------------------------------------------------------------------------------

  /**
   * Drops what holds only while no item changes (withoutOwnLists, filterBits): done at the next
   * item change, or by the caller once a load's plans have run.
   */
  clearLoadCaches(): void {
    if (this.withoutOwnLists.size > 0) this.withoutOwnLists.clear();
    if (this.filterBits.size > 0) this.filterBits.clear();
  }

  private newId(): number {
    return this.freeIds.pop() ?? this.byId.length;
  }

  /**
   * An item snapshot: the string values of `own` are its own labels, laid over what its profiles
   * pass on. `shared`: they are the shared copies already; else each is indexed here (unless the
   * snapshot it replaces, `old`, had it), which gives its shared copy.
   */
  private build(
    id: number,
    key: string,
    own: Readonly<Record<string, unknown>>,
    shared: boolean,
    old: Item | undefined,
    inputProfiles: readonly string[],
    inputNamespace: string | undefined,
    nets: readonly string[],
    inputNamedPorts: ReadonlyMap<string, readonly string[]> | undefined,
  ): Item {
    const namespace =
      inputNamespace === undefined ? undefined : this.sharedNamespaces.share(inputNamespace, inputNamespace);
    const { profiles, inherited, nsLabels, saLabels } = this.profiles.acquire(inputProfiles, namespace);
    const ownKeys = inherited ? this.ownKeyLists.acquireStringKeysOf(own) : null;
    // A copy of the template for this inheritance and these own keys, its own values then
    // written over (see LabelTemplates); else built key by key: Object.assign, not spread (a spread
    // clone that then grows gets slow, un-shared shapes), the own labels going onto the copy one by
    // one, in the order assigning them all would give.
    const template = this.templates.find(inherited, ownKeys, own);
    const labels: Record<string, string> =
      template !== undefined ? template.make(template.labels) : inherited ? Object.assign({}, inherited) : {};
    for (const k in own) {
      const v = own[k];
      if (typeof v !== 'string') continue;
      if (shared) labels[k] = v;
      else {
        const oldV = old ? this.ownValue(old, k) : undefined;
        labels[k] = oldV === v ? oldV : this.addOwn(k, v, id);
      }
    }
    if (template === undefined) this.templates.add(inherited, ownKeys, labels);
    const namedPorts =
      inputNamedPorts && inputNamedPorts.size > 0
        ? this.sharedNamedPorts.share(namedPortsSig(inputNamedPorts), inputNamedPorts)
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
    if (!this.indexedKeys.has(k)) this.indexKeys([k]);
    return this.postings.get(k);
  }

  /**
   * Keeps item lists from now on for the label keys these requirements may look up, built in one
   * pass over the items for all of them (a load's matchers need several keys at once).
   */
  prepareFor(reqs: Iterable<Requirement>): void {
    const keys = new Set<string>();
    for (const req of reqs) {
      if (req === null) continue;
      for (const clause of req)
        for (const a of clause) {
          const k =
            a.space === 'scope'
              ? NAMESPACE_LABEL
              : a.space === 'labels' || a.space === 'absent'
                ? a.key
                : undefined;
          if (k !== undefined && !this.indexedKeys.has(k)) keys.add(k);
        }
    }
    if (keys.size > 0) this.indexKeys(keys);
  }

  private indexKeys(keys: Iterable<string>): void {
    const fresh = new Map<string, KeyPostings>();
    for (const k of keys) {
      if (this.indexedKeys.has(k)) continue;
      this.indexedKeys.add(k);
      const kp = this.postings.get(k);
      if (!kp || kp.indexed) continue;
      kp.indexed = true;
      for (const e of kp.byValue.values()) e.list = new IdList();
      fresh.set(k, kp);
    }
    if (fresh.size === 0) return;
    // By id, ascending: every list is built by appending. The postings of an own-key list's keys
    // are looked up once per (shared) list, not once per item; a key's last value entry is tried
    // before its map (runs of items share a cluster, a namespace, an orchestrator...: a value is
    // its one shared copy, so the test is a comparison of references).
    const scans = new Map<string, KeyScan>();
    for (const [k, kp] of fresh) scans.set(k, { byValue: kp.byValue, last: undefined });
    const byId = this.byId;
    const byKeyList = new Map<readonly string[], (KeyScan | undefined)[]>();
    for (let id = 0; id < byId.length; id++) {
      const item = byId[id];
      if (item === undefined) continue;
      const labels = item.labels;
      const keys = item.ownKeys;
      if (keys === null) {
        for (const k in labels) scans.get(k)?.byValue.get(labels[k]!)?.list?.add(id);
        continue;
      }
      let kss = byKeyList.get(keys);
      if (kss === undefined) {
        kss = keys.map((k) => scans.get(k));
        byKeyList.set(keys, kss);
      }
      for (let i = 0; i < keys.length; i++) {
        const scan = kss[i];
        if (scan === undefined) continue;
        const v = labels[keys[i]!]!;
        let e = scan.last;
        if (e === undefined || e.value !== v) {
          e = scan.byValue.get(v);
          if (e === undefined) continue;
          scan.last = e;
        }
        e.list?.add(id);
      }
    }
  }

  private reindexProfilesAndNamespace(item: Item | undefined, old: Item | undefined): void {
    const id = (item ?? old)!.id;
    if (item?.profiles !== old?.profiles) {
      // Indexed loops: the lists are frozen, and iterating a frozen array makes a result object a step.
      if (item) {
        const ps = item.profiles;
        for (let i = 0; i < ps.length; i++) {
          const p = ps[i]!;
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
        const ps = old.profiles;
        for (let i = 0; i < ps.length; i++) {
          const p = ps[i]!;
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
  readonly cost = (clause: Clause): number => {
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
      } else if (a.space === 'absent') {
        // Its candidates: the items without the key among their own labels.
        est = Math.max(0, total - (this.postings.get(a.key)?.count ?? 0));
        rank = 5;
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
      } else if (a.space === 'absent') {
        if (lists.length > 0) disjoint = false;
        onlyKey = ABSENT_KEY;
        lists.push(this.withoutOwn(a.key));
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
   * The ids of the items without the key among their own labels, ascending: a superset of those
   * whose effective labels lack it (an own label always wins over an inherited one). One pass
   * over the ids, marking the key's postings.
   */
  private withoutOwn(k: string): readonly number[] {
    const known = this.withoutOwnLists.get(k);
    if (known !== undefined) return known;
    const limit = this.byId.length;
    const has = new Uint8Array(limit);
    const kp = this.ensureIndexed(k);
    if (kp)
      for (const e of kp.byValue.values()) {
        const ids = e.list!.members(this.hasOwn(k, e.value));
        for (let i = 0; i < ids.length; i++) has[ids[i]!] = 1;
      }
    const out: number[] = [];
    const byId = this.byId;
    for (let id = 0; id < limit; id++) if (has[id] === 0 && byId[id] !== undefined) out.push(id);
    this.withoutOwnLists.set(k, out);
    return out;
  }

  /**
   * Ids of the items that satisfy every clause of a requirement as far as the index can tell
   * (a superset of those a matcher with it selects), each once: the most selective clause's items,
   * intersected with the lists of the next most selective ones.
   */
  candidateIds(req: readonly Clause[]): readonly number[] {
    return this.planOf(req).run?.() ?? NO_IDS;
  }

  /**
   * How the index finds a requirement's candidates (see candidateIds), with a signature that is
   * the same for requirements whose candidates it finds the same way: undefined runs list all.
   * With `memo`, requirements with the same clauses share one plan (a load's many matchers often
   * differ only in what no index narrows, `app == 'a' && team != 't'` for several teams): the
   * plans must be run before the index changes.
   */
  planOf(req: Requirement, memo?: Map<string, CandidatePlan>): CandidatePlan {
    if (memo === undefined || req === null) return this.newPlan(req);
    let key = '';
    for (const c of req) key += `${clauseSig(c)}\u0004`;
    let plan = memo.get(key);
    if (plan === undefined) {
      plan = this.newPlan(req, true);
      memo.set(key, plan);
    }
    return plan;
  }

  /** `bitsets`: filter by bitsets shared among a load's plans (see filterBits). */
  private newPlan(req: Requirement, bitsets = false): CandidatePlan {
    if (req === null) return { sig: '*', run: undefined };
    if (isNothing(req)) return { sig: '', run: () => NO_IDS };
    const costs = req.map((c) => ({ c, cost: this.cost(c) }));
    costs.sort((a, b) => a.cost - b.cost);
    const driver = this.clauseLists(costs[0]!.c);
    const lists = driver.lists;
    let sig = clauseSig(costs[0]!.c);
    // At least the driver's items (more when its lists overlap).
    let size = 0;
    for (const l of lists) size += l.length;
    if (size === 0) return { sig: '', run: () => NO_IDS };
    // Filters: the next clauses whose lists are few and (by estimate) clearly smaller than all.
    const filters: (readonly number[])[][] = [];
    const bits: Uint32Array[] = [];
    if (size >= INTERSECT_MIN) {
      const total = Math.max(1, this.items.size);
      for (let i = 1; i < costs.length && filters.length < MAX_FILTERS; i++) {
        if (costs[i]!.cost / 8 > total / 2) break;
        // A missing key's list is built by a pass over every id: worth it to drive, not to filter
        // a few candidates (a load with many `app == 'x' && !has(k)` would pass once per matcher).
        if (!isKeyable(costs[i]!.c)) continue;
        const f = this.clauseLists(costs[i]!.c).lists;
        if (f.length > MAX_FILTER_LISTS) continue;
        const fsig = clauseSig(costs[i]!.c);
        if (bitsets) bits.push(this.bitsOf(fsig, f));
        else filters.push(f);
        sig += `\u0003${fsig}`;
      }
    }
    // Sorted, disjoint lists whose union is the driver clause's items: merged only when run.
    const run = () =>
      filtered(!driver.disjoint && lists.length > 1 ? [sortedUnique(lists.flat())] : lists, filters, bits);
    return { sig, run };
  }

  /** The bitset of the ids in a filter clause's lists (`sig`: the clause's), made once a load. */
  private bitsOf(sig: string, lists: readonly (readonly number[])[]): Uint32Array {
    let bits = this.filterBits.get(sig);
    if (bits === undefined) {
      bits = new Uint32Array((this.byId.length + 31) >>> 5);
      for (const l of lists) for (let i = 0; i < l.length; i++) bits[l[i]! >>> 5]! |= 1 << (l[i]! & 31);
      this.filterBits.set(sig, bits);
    }
    return bits;
  }
}

/** At most this many label templates per inherited label object (and for items inheriting none). */
const TEMPLATES_MAX = 16;
/** At most this many label object makers (one per distinct key list), for all indexes together. */
const MAKERS_MAX = 256;

/** Makes a copy of a labels object with one given key list, every property inside the object. */
type LabelsMaker = (template: Labels) => Record<string, string>;

interface LabelTemplate {
  /** The own label keys: the interned list (for items that inherit), else a list of its own. */
  readonly ownKeys: readonly string[];
  readonly labels: Labels;
  readonly make: LabelsMaker;
}

const makers = new Map<string, LabelsMaker>();

/**
 * A function returning a copy of a labels object with exactly these keys, in this order: an object
 * literal, so the copy is allocated once at its final size with its properties inside it, and
 * copies of one key list share one hidden class. Undefined beyond MAKERS_MAX key lists, or for a
 * key a literal cannot hold as an ordinary property.
 */
function makerOf(keys: readonly string[]): LabelsMaker | undefined {
  const sig = keys.join('\u0000');
  let make = makers.get(sig);
  if (make !== undefined || makers.size >= MAKERS_MAX) return make;
  if (keys.includes('__proto__')) return undefined;
  // JSON.stringify of a string is a valid JavaScript string literal: no key can inject code.
  const props = keys.map((k) => `${JSON.stringify(k)}: t[${JSON.stringify(k)}]`).join(', ');
  make = new Function('t', `return { ${props} };`) as LabelsMaker;
  makers.set(sig, make);
  return make;
}

/**
 * Effective-label objects to copy, by the labels an item inherits and its own label keys. Items
 * come in a few shapes (their profiles' keys, then their own), and a copy of a template made by
 * its key list's maker (an object literal) has every property inside the object at its final size,
 * where building the labels key by key grew a property store outside it several times (most of
 * what building an item threw away, and one more memory access for each label a selector reads).
 * The copy's own values are then written over the template's: it has the same keys in the same
 * order as the labels built key by key.
 */
class LabelTemplates {
  private readonly byInherited = new WeakMap<Labels, LabelTemplate[]>();
  private readonly plain: LabelTemplate[] = [];

  /** `ownKeys`: the interned own keys of an item that inherits; null for one that does not. */
  find(
    inherited: Labels | null,
    ownKeys: readonly string[] | null,
    own: Readonly<Record<string, unknown>>,
  ): LabelTemplate | undefined {
    if (inherited === null) {
      const list = this.plain;
      for (let i = 0; i < list.length; i++) if (areStringKeysOf(list[i]!.ownKeys, own)) return list[i];
      return undefined;
    }
    const list = this.byInherited.get(inherited);
    if (list === undefined) return undefined;
    for (let i = 0; i < list.length; i++) if (list[i]!.ownKeys === ownKeys) return list[i];
    return undefined;
  }

  /** Keeps labels built for this inheritance and these own keys as a template, while there is room. */
  add(inherited: Labels | null, ownKeys: readonly string[] | null, labels: Labels): void {
    let list: LabelTemplate[] | undefined;
    if (inherited === null) list = this.plain;
    else {
      list = this.byInherited.get(inherited);
      if (list === undefined) {
        list = [];
        this.byInherited.set(inherited, list);
      }
    }
    if (list.length >= TEMPLATES_MAX) return;
    const keys = Object.keys(labels);
    const make = makerOf(keys);
    if (make === undefined) return;
    list.push({ ownKeys: ownKeys ?? keys, labels: make(labels), make });
  }
}

/** Does the matcher select the item? */
export function matches(spec: MatcherSpec, item: Item): boolean {
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

/** Whether the item passes the matcher: `matches`, specialised to what the spec uses. */
export function testOf(spec: MatcherSpec): (item: Item) => boolean {
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
  return (item) => matches(spec, item);
}

const NO_IDS: readonly number[] = Object.freeze([]) as readonly number[];
/** Stands for an absent-key list in clauseLists' check of whether its lists are disjoint. */
const ABSENT_KEY = '\0absent';

/**
 * The ids of sorted, disjoint lists that are also in one of each filter's lists and in each
 * bitset, list by list (so ascending within each list's part).
 */
function filtered(
  lists: readonly (readonly number[])[],
  filters: readonly (readonly number[])[][],
  bitsets: readonly Uint32Array[],
): readonly number[] {
  if (filters.length === 0 && bitsets.length === 0) return lists.length === 1 ? lists[0]! : lists.flat();
  const out: number[] = [];
  for (const l of lists) {
    let keep: readonly number[] = l;
    for (const bits of bitsets) {
      const next: number[] = [];
      for (let i = 0; i < keep.length; i++) {
        const id = keep[i]!;
        if ((bits[id >>> 5]! & (1 << (id & 31))) !== 0) next.push(id);
      }
      keep = next;
    }
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
        : a.space === 'absent'
          ? `absent:${a.key}`
          : `${a.space}:${a.key}${a.values ? `=${a.values.join('\u0001')}` : ''}`,
    )
    .join('\u0002');
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
