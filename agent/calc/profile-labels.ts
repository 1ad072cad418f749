// Label inheritance from profiles (Felix's label inheritance index): the labels a profile list
// passes on to an item (merged in order; the item's own labels win, which the caller applies), the
// labels of an item's namespace (its kns profile's `pcns.` labels) and of its service account (its
// ksa profile's `pcsa.` labels). What many items share — profile lists, the merged labels, the
// namespace and service-account label objects — is built once and reference-counted, and rebuilt
// when a profile's labels change. Which items name a profile is the item index's business.
import type { Labels } from '../../model/resources.ts';
import { getOrCreate, Shared, SharedByPair, TupleInterner } from './index-structures.ts';
import { NS_NAME_LABEL } from './selector-requirements.ts';

export const NAMESPACE_LABEL = 'projectcalico.org/namespace';
/** Namespace labels reach endpoints through the kns.<ns> profile with this prefix (as in Calico). */
export const NAMESPACE_LABEL_PREFIX = 'pcns.';
export const SERVICE_ACCOUNT_LABEL_PREFIX = 'pcsa.';

/** What an item inherits through its profiles; shared objects, never mutated. */
export interface Inheritance {
  /** The interned profile list (one array per distinct list). */
  readonly profiles: readonly string[];
  /** The profiles' labels merged in order, or null when they have none. */
  readonly inherited: Labels | null;
  /** Labels of the item's namespace (prefix stripped, plus its name); undefined if global. */
  readonly nsLabels: Labels | undefined;
  /** Labels of the item's service account (prefix stripped). */
  readonly saLabels: Labels;
}

const EMPTY_LABELS: Labels = Object.freeze({}) as Labels;
const NO_PROFILES: readonly string[] = Object.freeze([]) as readonly string[];

/** What is read off one interned profile list, once (every item with the list reads it). */
interface ListInfo {
  /** The profiles' labels merged in order (null: none); undefined until asked, and after a change. */
  inherited: Labels | null | undefined;
  /** The namespace and service-account profiles among them. */
  readonly nsProfile: string | undefined;
  readonly saProfile: string | undefined;
}

const NO_LIST_INFO: ListInfo = { inherited: null, nsProfile: undefined, saProfile: undefined };

export class ProfileLabels {
  private readonly labels = new Map<string, Labels>();
  /** Profiles by label (key → value → profile names). */
  private readonly byLabel = new Map<string, Map<string, Set<string>>>();
  private readonly lists = new TupleInterner();
  /** Per interned list, while it is held. */
  private readonly info = new Map<readonly string[], ListInfo>();
  private readonly nsLabels = new SharedByPair<Labels>();
  private readonly saLabels = new Shared<Labels>();

  /**
   * Sets (or with undefined, deletes) a profile's labels; returns whether they changed. Items
   * holding what was built from the old labels keep it until the caller rebuilds them.
   */
  set(name: string, labels: Labels | undefined): boolean {
    const before = this.labels.get(name);
    if (before) this.index(name, before, false);
    if (labels) {
      this.labels.set(name, labels);
      this.index(name, labels, true);
    } else this.labels.delete(name);
    if (sameLabels(before, labels)) return false;
    for (const [profiles, info] of this.info) if (profiles.includes(name)) info.inherited = undefined;
    if (isNamespaceProfile(name)) this.nsLabels.remake(name, (ns) => this.nsLabelsOf(name, ns));
    if (isServiceAccountProfile(name)) this.saLabels.remake(name, () => this.saLabelsOf(name));
    return true;
  }

  /** What an item with these profiles (in this namespace) inherits, with a reference taken. */
  acquire(profileList: readonly string[], namespace: string | undefined): Inheritance {
    const profiles = profileList.length === 0 ? NO_PROFILES : this.lists.acquire(profileList);
    const info = this.infoOf(profiles);
    let inherited = info.inherited;
    if (inherited === undefined) {
      inherited = this.merged(profiles);
      info.inherited = inherited;
    }
    const nsLabels =
      namespace === undefined
        ? undefined
        : this.nsLabels.acquire(info.nsProfile ?? '', namespace, this.nsLabelsOf);
    const saProfile = info.saProfile;
    const saLabels = saProfile ? this.saLabels.acquire(saProfile, this.saLabelsOf) : EMPTY_LABELS;
    return { profiles, inherited, nsLabels, saLabels };
  }

  /** Drops the reference `acquire` took (with the interned list it returned). */
  release(profiles: readonly string[], namespace: string | undefined): void {
    const { nsProfile, saProfile } = this.infoOf(profiles);
    if (profiles.length > 0 && this.lists.release(profiles)) this.info.delete(profiles);
    if (namespace !== undefined) this.nsLabels.release(nsProfile ?? '', namespace);
    if (saProfile) this.saLabels.release(saProfile);
  }

  /** The info of an interned list (made at its first use). */
  private infoOf(profiles: readonly string[]): ListInfo {
    if (profiles.length === 0) return NO_LIST_INFO;
    let info = this.info.get(profiles);
    if (info === undefined) {
      info = {
        inherited: undefined,
        nsProfile: profiles.find(isNamespaceProfile),
        saProfile: profiles.find(isServiceAccountProfile),
      };
      this.info.set(profiles, info);
    }
    return info;
  }

  /** Calls `fn` with each profile that has label `k` (with one of `values`, when given). */
  forEachWith(k: string, values: readonly string[] | undefined, fn: (p: string) => void): void {
    const byValue = this.byLabel.get(k);
    if (!byValue) return;
    if (values) {
      for (const v of values) {
        const s = byValue.get(v);
        if (s) for (const p of s) fn(p);
      }
    } else for (const s of byValue.values()) for (const p of s) fn(p);
  }

  /** How many distinct values of label `k` profiles have. */
  distinctValues(k: string): number {
    return this.byLabel.get(k)?.size ?? 0;
  }

  sizes(): Record<string, number> {
    let profilesByLabel = 0;
    for (const byValue of this.byLabel.values()) for (const s of byValue.values()) profilesByLabel += s.size;
    return {
      profilesByLabel,
      profileLists: this.lists.size,
      profileListInfos: this.info.size,
      sharedNsLabels: this.nsLabels.size,
      sharedSaLabels: this.saLabels.size,
    };
  }

  /** The labels of these profiles, merged in order (null: none). */
  private merged(profiles: readonly string[]): Labels | null {
    let merged: Record<string, string> | null = null;
    for (const p of profiles) {
      const pl = this.labels.get(p);
      if (!pl) continue;
      for (const k in pl) {
        merged ??= {};
        merged[k] = pl[k]!;
      }
    }
    return merged;
  }

  /**
   * The namespace's own labels, plus its name under the implicit keys, so that global() (which
   * tests for that key) is false for namespaced items.
   */
  private readonly nsLabelsOf = (nsProfile: string | undefined, namespace: string): Labels => {
    const out = stripPrefixed(nsProfile ? this.labels.get(nsProfile) : undefined, NAMESPACE_LABEL_PREFIX);
    out[NAMESPACE_LABEL] = namespace;
    out[NS_NAME_LABEL] = namespace;
    return out;
  };

  private readonly saLabelsOf = (saProfile: string): Labels =>
    stripPrefixed(this.labels.get(saProfile), SERVICE_ACCOUNT_LABEL_PREFIX);

  private index(name: string, labels: Labels, add: boolean): void {
    for (const k in labels) {
      const v = labels[k]!;
      if (add)
        getOrCreate(
          getOrCreate(this.byLabel, k, () => new Map<string, Set<string>>()),
          v,
          () => new Set<string>(),
        ).add(name);
      else {
        const byValue = this.byLabel.get(k);
        const s = byValue?.get(v);
        if (!byValue || !s) continue;
        s.delete(name);
        if (s.size === 0) byValue.delete(v);
        if (byValue.size === 0) this.byLabel.delete(k);
      }
    }
  }
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

function sameLabels(a: Labels | undefined, b: Labels | undefined): boolean {
  if (a === b) return true;
  if (!a || !b) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (a[k] !== b[k]) return false;
  return true;
}
