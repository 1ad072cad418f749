// Label index: every item a rule selector can match (local and remote workload endpoints, host
// endpoints, network sets), with labels inherited from profiles, and every active rule matcher
// with the ipset members it selects, reference-counted.
//
// Incremental by construction: an item's change re-evaluates each active matcher once against
// that item (cost: number of active matchers); a profile's change re-evaluates only the items that
// name the profile; a new matcher scans the items once. Output: IPSet messages to the sink.
import type { Labels } from '../../model/resources.ts';
import type { Selector } from '../../model/selector/index.ts';
import type { IpSetId, IpSetType, MessageSink } from './messages.ts';

export const NAMESPACE_LABEL = 'projectcalico.org/namespace';
export const SERVICE_ACCOUNT_LABEL = 'projectcalico.org/serviceaccount';
export const CLUSTER_LABEL = 'fedmesh.io/cluster';
/** Namespace labels reach endpoints through the kns.<ns> profile with this prefix (as in Calico). */
export const NAMESPACE_LABEL_PREFIX = 'pcns.';
export const SERVICE_ACCOUNT_LABEL_PREFIX = 'pcsa.';

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

interface Item extends ItemInput {
  labels: Labels;
  /** Labels of the item's namespace (from its kns profile, prefix stripped); undefined if global. */
  nsLabels: Labels | undefined;
  /** Labels of the item's service account (from its ksa profile, prefix stripped). */
  saLabels: Labels;
}

/** A rule-side condition on items; everything given must hold. */
export interface MatcherSpec {
  id: IpSetId;
  type: IpSetType;
  selector?: Selector;
  notSelector?: Selector;
  /** Calico namespaceSelector semantics: all() → any namespaced item, global() → non-namespaced. */
  namespaceSelector?: Selector;
  /** Limit to one namespace (rule selectors of a namespaced policy without a namespaceSelector). */
  namespace?: string;
  serviceAccountNames?: readonly string[];
  serviceAccountSelector?: Selector;
  /** For hash:ip,port sets: the named port (and protocol) whose number each item contributes. */
  namedPort?: { name: string; protocol: string };
  /** Static members (net lists): no item matching at all. */
  staticMembers?: readonly string[];
}

interface MatcherState {
  spec: MatcherSpec;
  refs: number;
  matched: Set<string>;
  members: Map<string, number>;
}

function inheritLabels(
  own: Labels,
  profiles: readonly string[],
  profileLabels: ReadonlyMap<string, Labels>,
): Labels {
  if (profiles.length === 0) return own;
  const out: Record<string, string> = {};
  for (const p of profiles) Object.assign(out, profileLabels.get(p));
  return Object.assign(out, own);
}

function stripPrefixed(labels: Labels | undefined, prefix: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!labels) return out;
  for (const [k, v] of Object.entries(labels)) if (k.startsWith(prefix)) out[k.slice(prefix.length)] = v;
  return out;
}

/** `kns.<ns>` or `<cluster>/kns.<ns>` */
function isNamespaceProfile(p: string): boolean {
  return p.startsWith('kns.') || p.includes('/kns.');
}
function isServiceAccountProfile(p: string): boolean {
  return p.startsWith('ksa.') || p.includes('/ksa.');
}

export class LabelIndex {
  private readonly items = new Map<string, Item>();
  private readonly profileLabels = new Map<string, Labels>();
  private readonly itemsByProfile = new Map<string, Set<string>>();
  private readonly matchers = new Map<IpSetId, MatcherState>();

  constructor(private readonly sink: MessageSink) {}

  get itemCount(): number {
    return this.items.size;
  }

  getLabels(key: string): Labels | undefined {
    return this.items.get(key)?.labels;
  }

  /** Add or replace an item; returns its effective labels. */
  upsertItem(input: ItemInput): Labels {
    const old = this.items.get(input.key);
    if (old) this.unindexProfiles(old);
    const item = this.build(input);
    this.items.set(input.key, item);
    for (const p of item.profiles)
      this.itemsByProfile.get(p)?.add(item.key) ?? this.itemsByProfile.set(p, new Set([item.key]));
    this.reevaluate(item, old);
    return item.labels;
  }

  deleteItem(key: string): void {
    const old = this.items.get(key);
    if (!old) return;
    this.items.delete(key);
    this.unindexProfiles(old);
    for (const m of this.matchers.values()) {
      if (m.matched.delete(key)) this.removeMembers(m, this.membersOf(m.spec, old));
    }
  }

  /** Set (or with undefined, delete) a profile's labels; returns the keys of items whose labels changed. */
  setProfileLabels(name: string, labels: Labels | undefined): string[] {
    if (labels) this.profileLabels.set(name, labels);
    else this.profileLabels.delete(name);
    const changed: string[] = [];
    for (const key of this.itemsByProfile.get(name) ?? []) {
      const old = this.items.get(key);
      if (!old) continue;
      const item = this.build(old);
      this.items.set(key, item);
      this.reevaluate(item, old);
      changed.push(key);
    }
    return changed;
  }

  /** Take a reference on a matcher; the first reference computes and announces its members. */
  refMatcher(spec: MatcherSpec): void {
    const existing = this.matchers.get(spec.id);
    if (existing) {
      existing.refs++;
      return;
    }
    const state: MatcherState = { spec, refs: 1, matched: new Set(), members: new Map() };
    if (spec.staticMembers) {
      for (const m of spec.staticMembers) state.members.set(m, 1);
    } else {
      for (const item of this.items.values()) {
        if (!this.matches(spec, item)) continue;
        state.matched.add(item.key);
        for (const m of this.membersOf(spec, item)) state.members.set(m, (state.members.get(m) ?? 0) + 1);
      }
    }
    this.matchers.set(spec.id, state);
    this.sink.send({ kind: 'IPSetUpdate', id: spec.id, type: spec.type, members: [...state.members.keys()] });
  }

  unrefMatcher(id: IpSetId): void {
    const state = this.matchers.get(id);
    if (!state) return;
    if (--state.refs > 0) return;
    this.matchers.delete(id);
    this.sink.send({ kind: 'IPSetRemove', id });
  }

  /** Current members of an active matcher (for tests and `explain`). */
  membersOf_(id: IpSetId): string[] | undefined {
    const s = this.matchers.get(id);
    return s ? [...s.members.keys()] : undefined;
  }

  get activeMatcherCount(): number {
    return this.matchers.size;
  }

  /** Does a (not necessarily active) matcher select the item? For one-off evaluation. */
  itemMatches(spec: MatcherSpec, key: string): boolean {
    const item = this.items.get(key);
    return item ? this.matches(spec, item) : false;
  }

  private build(input: ItemInput): Item {
    const nsProfile = input.profiles.find(isNamespaceProfile);
    const saProfile = input.profiles.find(isServiceAccountProfile);
    return {
      key: input.key,
      ownLabels: input.ownLabels,
      profiles: input.profiles,
      namespace: input.namespace,
      nets: input.nets,
      namedPorts: input.namedPorts,
      labels: inheritLabels(input.ownLabels, input.profiles, this.profileLabels),
      // The namespace's own labels, plus its name under the implicit key, so that global() (which
      // tests for that key) is false for namespaced items.
      nsLabels:
        input.namespace === undefined
          ? undefined
          : {
              ...stripPrefixed(
                nsProfile ? this.profileLabels.get(nsProfile) : undefined,
                NAMESPACE_LABEL_PREFIX,
              ),
              [NAMESPACE_LABEL]: input.namespace,
              'projectcalico.org/name': input.namespace,
            },
      saLabels: stripPrefixed(
        saProfile ? this.profileLabels.get(saProfile) : undefined,
        SERVICE_ACCOUNT_LABEL_PREFIX,
      ),
    };
  }

  private unindexProfiles(item: Item): void {
    for (const p of item.profiles) {
      const s = this.itemsByProfile.get(p);
      if (!s) continue;
      s.delete(item.key);
      if (s.size === 0) this.itemsByProfile.delete(p);
    }
  }

  private reevaluate(item: Item, old: Item | undefined): void {
    for (const m of this.matchers.values()) {
      if (m.spec.staticMembers) continue;
      const was = old !== undefined && m.matched.has(item.key);
      const now = this.matches(m.spec, item);
      const before = was && old ? this.membersOf(m.spec, old) : [];
      const after = now ? this.membersOf(m.spec, item) : [];
      if (now) m.matched.add(item.key);
      else m.matched.delete(item.key);
      if (!was && !now) continue;
      if (was && now && sameList(before, after)) continue;
      // Add first, then remove: a member shared by old and new never blinks out of the set.
      const added = this.addMembers(m, after, false);
      const removed = this.removeMembers(m, before, false);
      if (added.length || removed.length)
        this.sink.send({ kind: 'IPSetDelta', id: m.spec.id, added, removed });
    }
  }

  private matches(spec: MatcherSpec, item: Item): boolean {
    if (spec.staticMembers) return false;
    if (spec.namespace !== undefined && item.namespace !== spec.namespace) return false;
    if (spec.namespaceSelector) {
      // Calico: inside a namespaceSelector, all() means "any namespaced endpoint".
      if (item.nsLabels === undefined) {
        if (!spec.namespaceSelector.canonical.includes('global()')) return false;
        if (!spec.namespaceSelector.evaluate(item.labels)) return false;
      } else if (!spec.namespaceSelector.evaluate(item.nsLabels)) return false;
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

  private membersOf(spec: MatcherSpec, item: Item): readonly string[] {
    if (spec.type === 'hash:net') return item.nets;
    const np = spec.namedPort;
    if (!np) return [];
    const ports = (item.namedPorts?.get(np.name) ?? []).filter((p) => p.startsWith(`${np.protocol}:`));
    const out: string[] = [];
    for (const net of item.nets) {
      const ip = net.endsWith('/32') ? net.slice(0, -3) : net;
      for (const p of ports) out.push(`${ip},${p}`);
    }
    return out;
  }

  private addMembers(m: MatcherState, members: readonly string[], emit = true): string[] {
    const added: string[] = [];
    for (const x of members) {
      const n = m.members.get(x) ?? 0;
      m.members.set(x, n + 1);
      if (n === 0) added.push(x);
    }
    if (emit && added.length) this.sink.send({ kind: 'IPSetDelta', id: m.spec.id, added, removed: [] });
    return added;
  }

  private removeMembers(m: MatcherState, members: readonly string[], emit = true): string[] {
    const removed: string[] = [];
    for (const x of members) {
      const n = m.members.get(x) ?? 0;
      if (n <= 1) {
        m.members.delete(x);
        removed.push(x);
      } else m.members.set(x, n - 1);
    }
    if (emit && removed.length) this.sink.send({ kind: 'IPSetDelta', id: m.spec.id, added: [], removed });
    return removed;
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
