// ipset membership (Felix's IPSetMemberIndex): which members an item gives a set it is selected
// by — its nets for hash:net, its named port on each of its addresses for hash:ip,port — and how
// an item's change moves a set's members. A member stays while some other selected item still
// gives it, which the index of addresses to items answers; nothing is stored per (set, item).
// Which items a set selects is the selector index's job: it is passed in as `selects`.
import { Int32Table } from './index-structures.ts';
import type { IpSetType } from './messages.ts';

/** What the member index reads of an item. */
export interface MemberSource {
  /** Small integer, stable while the item exists. */
  readonly id: number;
  readonly nets: readonly string[];
  /** Named ports: name → 'proto:port' list. */
  readonly namedPorts: ReadonlyMap<string, readonly string[]> | undefined;
}

/** How a set's members come from the items it selects. */
export interface MemberRule {
  readonly type: IpSetType;
  /** For hash:ip,port sets: the named port (and protocol) whose number each item contributes. */
  readonly namedPort?: { readonly name: string; readonly protocol: string };
}

export interface MemberDelta {
  added: string[];
  removed: string[];
}

const NO_MEMBERS: readonly string[] = Object.freeze([]) as readonly string[];

export class IpSetMemberIndex<I extends MemberSource> {
  /**
   * Items by address (net, keyed by `netKey`): one id, or several when items share it. A /32 is
   * keyed by its address as a number: a lookup then neither hashes nor compares the string.
   */
  private readonly netHolders = new NetHolders();
  /** Addresses held by more than one item, and items with more than one address. */
  private sharedNets = 0;
  private multiNetItems = 0;
  /**
   * The address of each item with exactly one (by id), so that a set's members are read off a
   * dense array instead of each item object: what re-announcing a large set costs.
   */
  private readonly soleNet: (string | undefined)[] = [];

  constructor(private readonly itemById: (id: number) => I | undefined) {}

  sizes(): { nets: number; sharedNets: number; multiNetItems: number } {
    return { nets: this.netHolders.size, sharedNets: this.sharedNets, multiNetItems: this.multiNetItems };
  }

  /** An item was added (old undefined), changed, or deleted (item undefined). */
  reindex(item: I | undefined, old: I | undefined): void {
    const before = old?.nets ?? NO_MEMBERS;
    const after = item?.nets ?? NO_MEMBERS;
    if (before === after || sameList(before, after)) return;
    const id = (item ?? old)!.id;
    this.soleNet[id] = after.length === 1 ? after[0] : undefined;
    if (before.length > 1) this.multiNetItems--;
    if (after.length > 1) this.multiNetItems++;
    for (let i = 0; i < after.length; i++) if (!before.includes(after[i]!)) this.addHolder(after[i]!, id);
    for (let i = 0; i < before.length; i++)
      if (!after.includes(before[i]!)) this.removeHolder(before[i]!, id);
  }

  /** The members one selected item gives a set. */
  membersOf(rule: MemberRule, item: I): readonly string[] {
    if (rule.type === 'hash:net') return item.nets;
    const np = rule.namedPort;
    if (!np) return NO_MEMBERS;
    const ports = (item.namedPorts?.get(np.name) ?? []).filter((p) => p.startsWith(`${np.protocol}:`));
    const out: string[] = [];
    for (const net of item.nets) {
      const ip = net.endsWith('/32') ? net.slice(0, -3) : net;
      for (const p of ports) out.push(`${ip},${p}`);
    }
    return out;
  }

  /** The members of a set selecting the items with these ids (the first `count`), each once. */
  membersOfIds(rule: MemberRule, ids: ArrayLike<number>, count = ids.length): string[] {
    if (rule.type === 'hash:net') {
      // Nearly every item has one address: made at its size, the list is not grown and copied.
      const out = new Array<string>(count);
      const soleNet = this.soleNet;
      let k = 0;
      for (let i = 0; i < count; i++) {
        const net = soleNet[ids[i]!];
        if (net !== undefined) out[k++] = net;
        else for (const x of this.itemById(ids[i]!)?.nets ?? NO_MEMBERS) out[k++] = x;
      }
      out.length = k;
      // Shared addresses, or several per item, can repeat a member.
      return this.sharedNets > 0 || this.multiNetItems > 0 ? [...new Set(out)] : out;
    }
    const out: string[] = [];
    for (let i = 0; i < count; i++) {
      const item = this.itemById(ids[i]!);
      if (item) for (const x of this.membersOf(rule, item)) out.push(x);
    }
    // Several items (or ports) can give the same member.
    return [...new Set(out)];
  }

  /**
   * What an item's change does to a set: `was`/`now` say whether the set selected the old and the
   * new snapshot. A member comes (goes) when this item brings (takes) it and no other item the set
   * selects has it. Undefined when nothing changes.
   */
  delta(
    rule: MemberRule,
    selects: (item: I) => boolean,
    item: I | undefined,
    old: I | undefined,
    was: boolean,
    now: boolean,
  ): MemberDelta | undefined {
    if (!was && !now) return undefined;
    const self = (item ?? old)!.id;
    const before = was && old ? this.membersOf(rule, old) : NO_MEMBERS;
    const after = now && item ? this.membersOf(rule, item) : NO_MEMBERS;
    if (was && now && sameList(before, after)) return undefined;
    // No address held by two items, and this item's the same as before: only it holds its
    // members' addresses, so no other item can keep one (the lookups are cache misses in a map of
    // every address, what most of a label change's deltas would cost).
    const sole =
      this.sharedNets === 0 && item !== undefined && old !== undefined && sameList(item.nets, old.nets);
    let added: string[] | undefined;
    let removed: string[] | undefined;
    for (const x of after) {
      if (before.includes(x) || added?.includes(x) || (!sole && this.heldByOther(rule, selects, x, self)))
        continue;
      added ??= [];
      added.push(x);
    }
    for (const x of before) {
      if (after.includes(x) || removed?.includes(x) || (!sole && this.heldByOther(rule, selects, x, self)))
        continue;
      removed ??= [];
      removed.push(x);
    }
    if (!added && !removed) return undefined;
    return { added: added ?? [], removed: removed ?? [] };
  }

  /** Does an item other than `self` that the set selects contribute the member? */
  private heldByOther(
    rule: MemberRule,
    selects: (item: I) => boolean,
    member: string,
    self: number,
  ): boolean {
    const h = this.netHolders.get(netKey(rule.type === 'hash:net' ? member : netOfMember(member)));
    if (h === undefined) return false;
    if (typeof h === 'number') return h !== self && this.contributes(rule, selects, h, member);
    for (const id of h) if (id !== self && this.contributes(rule, selects, id, member)) return true;
    return false;
  }

  private contributes(rule: MemberRule, selects: (item: I) => boolean, id: number, member: string): boolean {
    const item = this.itemById(id);
    if (item === undefined || !selects(item)) return false;
    return rule.type === 'hash:net'
      ? item.nets.includes(member)
      : this.membersOf(rule, item).includes(member);
  }

  private addHolder(net: string, id: number): void {
    const key = netKey(net);
    const h = this.netHolders.get(key);
    if (h === undefined) this.netHolders.set(key, id);
    else if (typeof h === 'number') {
      if (h === id) return;
      this.netHolders.set(key, [h, id]);
      this.sharedNets++;
    } else if (!h.includes(id)) h.push(id);
  }

  private removeHolder(net: string, id: number): void {
    const key = netKey(net);
    const h = this.netHolders.get(key);
    if (h === undefined) return;
    if (typeof h === 'number') {
      if (h === id) this.netHolders.delete(key);
      return;
    }
    const i = h.indexOf(id);
    if (i < 0) return;
    h.splice(i, 1);
    if (h.length === 1) {
      this.netHolders.set(key, h[0]!);
      this.sharedNets--;
    }
  }
}

/** Table values from here on stand for a list of holders (ids stay far below). */
const LIST_FLAG = 2 ** 30;

/**
 * The holders of each net, as a Map from `netKey` to one id or a list of several would hold them:
 * addresses (numbers) in an Int32Table (the lists aside, the table holding LIST_FLAG plus a list's
 * place), any other net in a Map.
 */
class NetHolders {
  private readonly byAddress = new Int32Table();
  private readonly lists: (number[] | undefined)[] = [];
  private readonly freeLists: number[] = [];
  private readonly byNet = new Map<string, number | number[]>();

  get size(): number {
    return this.byAddress.size + this.byNet.size;
  }

  get(key: number | string): number | number[] | undefined {
    if (typeof key === 'string') return this.byNet.get(key);
    const v = this.byAddress.get(key);
    return v < 0 ? undefined : v < LIST_FLAG ? v : this.lists[v - LIST_FLAG];
  }

  set(key: number | string, h: number | number[]): void {
    if (typeof key === 'string') {
      this.byNet.set(key, h);
      return;
    }
    this.freeList(this.byAddress.get(key));
    if (typeof h === 'number') {
      this.byAddress.set(key, h);
      return;
    }
    const i = this.freeLists.pop() ?? this.lists.length;
    this.lists[i] = h;
    this.byAddress.set(key, LIST_FLAG + i);
  }

  delete(key: number | string): void {
    if (typeof key === 'string') {
      this.byNet.delete(key);
      return;
    }
    this.freeList(this.byAddress.get(key));
    this.byAddress.delete(key);
  }

  private freeList(v: number): void {
    if (v < LIST_FLAG) return;
    this.lists[v - LIST_FLAG] = undefined;
    this.freeLists.push(v - LIST_FLAG);
  }
}

/**
 * A net's key in `netHolders`: a canonical `a.b.c.d/32` (what endpoints have) as its address, a
 * number; anything else as it is. Nets reach here canonical (the graph checks them), so one
 * address always gets one key.
 */
export function netKey(net: string): number | string {
  const n = net.length;
  if (
    n < 10 ||
    n > 18 ||
    net.charCodeAt(n - 3) !== 0x2f ||
    net.charCodeAt(n - 2) !== 0x33 ||
    net.charCodeAt(n - 1) !== 0x32
  )
    return net;
  let ip = 0;
  let part = 0;
  let dots = 0;
  for (let i = 0; i < n - 3; i++) {
    const c = net.charCodeAt(i);
    if (c === 0x2e) {
      ip = ip * 256 + part;
      part = 0;
      dots++;
    } else if (c >= 0x30 && c <= 0x39) part = part * 10 + (c - 0x30);
    else return net;
  }
  // As an int32 (a small integer to V8, stored unboxed), not a number above 2^31 (a boxed one).
  return dots === 3 ? (ip * 256 + part) | 0 : net;
}

/** The address (net) a hash:ip,port member comes from: `10.0.0.5,tcp:80` → `10.0.0.5/32`. */
function netOfMember(member: string): string {
  const ip = member.slice(0, member.indexOf(','));
  return ip.includes('/') ? ip : `${ip}/32`;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
