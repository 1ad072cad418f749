// Small data structures for the label index, chosen for memory and allocation per item: an index
// entry costs one array slot (not a hash-set entry), and what many items have in common (key
// lists, profile lists, namespace label objects) is stored once and reference-counted.

/** Lists up to this long are kept exact (sorted inserts and removals in place); longer ones lazily. */
const EXACT_MAX = 4096;

/**
 * A list of item ids, read sorted with each member once, so it can be searched and intersected.
 * Short lists are kept exact: an id is inserted at its place and removed in place. Long ones
 * (where moving the tail would cost more) are lazy: adding is a push, removing only counts, and
 * stale or out-of-order entries are sorted out (with `isMember`, which must already reflect the
 * removal) when they grow too many or before the list is read. Add an id only when it is not a
 * member already, remove it only when it is.
 */
export class IdList {
  private ids: number[] = [];
  private live = 0;
  /** Sorted, and no stale entries (then `live === ids.length`). */
  private exact = true;

  get size(): number {
    return this.live;
  }

  add(id: number): void {
    const ids = this.ids;
    const n = ids.length;
    this.live++;
    if (n === 0 || ids[n - 1]! < id) {
      ids.push(id);
      return;
    }
    if (this.exact && n < EXACT_MAX) {
      ids.splice(lowerBound(ids, id), 0, id);
      return;
    }
    ids.push(id);
    this.exact = false;
  }

  remove(id: number, isMember: (id: number) => boolean): void {
    this.live--;
    const ids = this.ids;
    if (this.exact && ids.length <= EXACT_MAX) {
      const i = lowerBound(ids, id);
      if (ids[i] === id) {
        ids.splice(i, 1);
        return;
      }
    }
    this.exact = false;
    if (ids.length > 2 * this.live + 16) this.compact(isMember);
  }

  /** Every member once, in ascending order. */
  members(isMember: (id: number) => boolean): readonly number[] {
    if (!this.exact) this.compact(isMember);
    return this.ids;
  }

  private compact(isMember: (id: number) => boolean): void {
    // Sorted always (cheap when it is already): a reused id can follow a stale copy of itself.
    const out = this.ids.filter(isMember).sort(ascending);
    let n = 0;
    for (let i = 0; i < out.length; i++) if (i === 0 || out[i] !== out[n - 1]) out[n++] = out[i]!;
    out.length = n;
    this.ids = out;
    this.live = n;
    this.exact = true;
  }
}

/** The first position among the first `n` ids of a sorted array whose id is not below `id`. */
function lowerBound32(ids: Int32Array, n: number, id: number): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ids[mid]! < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The first position in a sorted list whose id is not below `id`. */
function lowerBound(ids: readonly number[], id: number): number {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ids[mid]! < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export function ascending(a: number, b: number): number {
  return a - b;
}

/** Whether a sorted id list holds `id`. */
export function hasId(ids: readonly number[], id: number): boolean {
  let lo = 0;
  let hi = ids.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const v = ids[mid]!;
    if (v === id) return true;
    if (v < id) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

interface TrieNode {
  next: Map<string, TrieNode> | undefined;
  tuple: readonly string[] | undefined;
  refs: number;
}

/**
 * Interned string tuples (an item's own label keys, its profile list): one frozen array per
 * distinct tuple, found without building a signature string, freed with its last reference.
 */
export class TupleInterner {
  private readonly root: TrieNode = { next: undefined, tuple: undefined, refs: 0 };
  private count = 0;
  /**
   * The nodes of the last few tuples acquired: items come in runs with the same key lists and
   * profile lists, and comparing with these costs no hashing (a walk costs a lookup per part).
   */
  private readonly recent: (TrieNode | undefined)[] = [undefined, undefined, undefined, undefined];
  private nextRecent = 0;

  get size(): number {
    return this.count;
  }

  /** The shared copy of `parts`, with one more reference. */
  acquire(parts: readonly string[]): readonly string[] {
    const recent = this.recent;
    for (let r = 0; r < recent.length; r++) {
      const t = recent[r]?.tuple;
      if (t !== undefined && sameParts(t, parts)) {
        recent[r]!.refs++;
        return t;
      }
    }
    let node = this.root;
    for (const p of parts) {
      node.next ??= new Map();
      let child = node.next.get(p);
      if (!child) {
        child = { next: undefined, tuple: undefined, refs: 0 };
        node.next.set(p, child);
      }
      node = child;
    }
    if (!node.tuple) {
      node.tuple = Object.freeze([...parts]);
      this.count++;
    }
    node.refs++;
    this.recent[this.nextRecent] = node;
    this.nextRecent = (this.nextRecent + 1) % this.recent.length;
    return node.tuple;
  }

  /**
   * `acquire` of the object's keys whose values are strings (in order), without making that array
   * when one of the last few tuples is those keys (items come in runs with the same label keys:
   * an array an item was most of what building an item threw away).
   */
  acquireStringKeysOf(obj: Readonly<Record<string, unknown>>): readonly string[] {
    const recent = this.recent;
    for (let r = 0; r < recent.length; r++) {
      const node = recent[r];
      const t = node?.tuple;
      if (t !== undefined && areStringKeysOf(t, obj)) {
        node!.refs++;
        return t;
      }
    }
    return this.acquire(stringKeysOf(obj));
  }

  /** Drops a reference taken by `acquire`; returns true when that was the last one. */
  release(tuple: readonly string[]): boolean {
    const path: TrieNode[] = [this.root];
    let node = this.root;
    for (const p of tuple) {
      const child = node.next?.get(p);
      if (!child) return false;
      node = child;
      path.push(node);
    }
    if (!node.tuple || --node.refs > 0) return false;
    node.tuple = undefined;
    this.count--;
    // Prune the branch that now leads nowhere.
    for (let i = path.length - 1; i > 0; i--) {
      const n = path[i]!;
      if (n.tuple || (n.next && n.next.size > 0)) break;
      path[i - 1]!.next!.delete(tuple[i - 1]!);
    }
    return true;
  }
}

/** Are these, in order, the object's (own, enumerable) keys whose values are strings? */
export function areStringKeysOf(keys: readonly string[], obj: Readonly<Record<string, unknown>>): boolean {
  let i = 0;
  for (const k in obj) {
    if (typeof obj[k] !== 'string') continue;
    if (i >= keys.length || keys[i] !== k) return false;
    i++;
  }
  return i === keys.length;
}

/** The object's (own, enumerable) keys whose values are strings, in order. */
export function stringKeysOf(obj: Readonly<Record<string, unknown>>): string[] {
  const out: string[] = [];
  for (const k in obj) if (typeof obj[k] === 'string') out.push(k);
  return out;
}

function sameParts(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Values shared by a pair of keys, reference-counted so that nothing outlives its last user. */
export class SharedByPair<V> {
  private readonly entries = new Map<string, Map<string, { value: V; refs: number }>>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** `make` gets the pair: a function made once, not a closure per call (one call per item). */
  acquire(a: string, b: string, make: (a: string, b: string) => V): V {
    let inner = this.entries.get(a);
    if (!inner) {
      inner = new Map();
      this.entries.set(a, inner);
    }
    let e = inner.get(b);
    if (!e) {
      e = { value: make(a, b), refs: 0 };
      inner.set(b, e);
      this.count++;
    }
    e.refs++;
    return e.value;
  }

  release(a: string, b: string): void {
    const inner = this.entries.get(a);
    const e = inner?.get(b);
    if (!inner || !e || --e.refs > 0) return;
    inner.delete(b);
    this.count--;
    if (inner.size === 0) this.entries.delete(a);
  }

  /** Replaces the values under `a` (their users keep the old ones until they are rebuilt). */
  remake(a: string, make: (b: string) => V): void {
    const inner = this.entries.get(a);
    if (inner) for (const [b, e] of inner) e.value = make(b);
  }
}

/** The value under `k`, made and stored first when there is none. */
export function getOrCreate<K, V>(m: Map<K, V>, k: K, make: () => V): V {
  let v = m.get(k);
  if (v === undefined) {
    v = make();
    m.set(k, v);
  }
  return v;
}

/** Values shared by signature, reference-counted so that nothing outlives its last user. */
export class Shared<V> {
  private readonly entries = new Map<string, { value: V; refs: number }>();

  /** `make` gets the signature: a function made once, not a closure per call (one call per item). */
  acquire(sig: string, make: (sig: string) => V): V {
    let e = this.entries.get(sig);
    if (!e) {
      e = { value: make(sig), refs: 0 };
      this.entries.set(sig, e);
    }
    e.refs++;
    return e.value;
  }

  /** The shared value under `sig` (`value` when there is none yet), with one more reference. */
  share(sig: string, value: V): V {
    let e = this.entries.get(sig);
    if (!e) {
      e = { value, refs: 0 };
      this.entries.set(sig, e);
    }
    e.refs++;
    return e.value;
  }

  release(sig: string): void {
    const e = this.entries.get(sig);
    if (e && --e.refs <= 0) this.entries.delete(sig);
  }

  /** Replaces the shared value under `sig` (its users keep the old one until they are rebuilt). */
  remake(sig: string, make: () => V): void {
    const e = this.entries.get(sig);
    if (e) e.value = make();
  }

  get size(): number {
    return this.entries.size;
  }
}

/**
 * The ids of the items one selector selects, read ascending, in a typed array (4 bytes an id,
 * sized to fit: millions of them are held). An id above every other is appended; any other change
 * is kept aside (an added or a removed id, in a set) and merged when the list is read or the
 * changes pile up, so neither a change nor a read costs an evaluation of the selector, and a read
 * of an unchanged list costs nothing. Add an id only when it is not a member, remove it only when
 * it is.
 */
export class SelectedIds {
  private ids: Int32Array;
  private length: number;
  private added: Set<number> | undefined;
  private removed: Set<number> | undefined;

  /** `ids`: ascending, each once (a typed array is kept as it is, not copied). */
  constructor(ids: readonly number[] | Int32Array = []) {
    this.ids = ids instanceof Int32Array ? ids : Int32Array.from(ids);
    this.length = ids.length;
  }

  get size(): number {
    return this.length + (this.added?.size ?? 0) - (this.removed?.size ?? 0);
  }

  add(id: number): void {
    if (this.removed?.delete(id)) return;
    const n = this.length;
    if ((n === 0 || this.ids[n - 1]! < id) && !this.added?.size) {
      if (n === this.ids.length) this.grow(n + 1);
      this.ids[n] = id;
      this.length = n + 1;
      return;
    }
    this.added ??= new Set();
    this.added.add(id);
    this.settleIfMany();
  }

  remove(id: number): void {
    if (this.added?.delete(id)) return;
    const n = this.length;
    if (n > 0 && this.ids[n - 1] === id) {
      this.length = n - 1;
      return;
    }
    this.removed ??= new Set();
    this.removed.add(id);
    this.settleIfMany();
  }

  /**
   * Every id once, ascending, in the first `size` places of the array returned (no view made):
   * valid until the next change.
   */
  sortedIds(): Int32Array {
    if (this.added?.size || this.removed?.size) this.settle();
    return this.ids;
  }

  private grow(min: number): void {
    const next = new Int32Array(Math.max(min, Math.ceil(this.ids.length * 1.5) + 4));
    next.set(this.ids.subarray(0, this.length));
    this.ids = next;
  }

  private settleIfMany(): void {
    const pending = (this.added?.size ?? 0) + (this.removed?.size ?? 0);
    if (pending > 16 && pending > this.length / 8) this.settle();
  }

  /**
   * Merges the pending changes in place: a new array (of the exact size) only when the ids no
   * longer fit. A typed array's store lives outside the heap, so making one costs far more than
   * moving ids. The ids between two changes move as one block (`copyWithin`, a memmove): a set
   * read after a few changes costs a binary search a change, not a pass over its ids in code that
   * may not be compiled yet (a dormant set is read rarely).
   */
  private settle(): void {
    const { removed, added } = this;
    this.added = undefined;
    this.removed = undefined;
    let ids = this.ids;
    let n = this.length;
    // Many changes (a pass anyway): one pass over the ids, not a block move each.
    const blocks = ((removed?.size ?? 0) + (added?.size ?? 0)) * 16 < n;
    if (removed?.size) {
      // A typed array sorts numerically in native code; a comparator costs a call a comparison.
      const gone = Int32Array.from(removed).sort();
      if (blocks) {
        // Where each removed id is, then the blocks between them down by as many as precede them.
        const at: number[] = [];
        for (let j = 0; j < gone.length; j++) {
          const p = lowerBound32(ids, n, gone[j]!);
          if (ids[p] === gone[j]) at.push(p);
        }
        for (let j = 0; j < at.length; j++) ids.copyWithin(at[j]! - j, at[j]! + 1, at[j + 1] ?? n);
        n -= at.length;
      } else {
        let k = lowerBound32(ids, n, gone[0]!);
        let r = 0;
        for (let i = k; i < n; i++) {
          const id = ids[i]!;
          while (r < gone.length && gone[r]! < id) r++;
          if (r < gone.length && gone[r] === id) r++;
          else ids[k++] = id;
        }
        n = k;
      }
    }
    if (added?.size) {
      const extra = Int32Array.from(added).sort();
      const total = n + extra.length;
      if (total > ids.length) {
        const next = new Int32Array(total);
        next.set(ids.subarray(0, n));
        ids = next;
        this.ids = next;
      }
      if (blocks) {
        // Where each added id goes among the others, then from the last: the block after it up
        // by as many as precede it and itself, and it in place.
        const at = new Int32Array(extra.length);
        for (let j = 0; j < extra.length; j++) at[j] = lowerBound32(ids, n, extra[j]!);
        for (let j = extra.length - 1; j >= 0; j--) {
          ids.copyWithin(at[j]! + j + 1, at[j]!, at[j + 1] ?? n);
          ids[at[j]! + j] = extra[j]!;
        }
      } else {
        // Merged from the back.
        let i = n - 1;
        let j = extra.length - 1;
        for (let k = total - 1; j >= 0; k--) ids[k] = i >= 0 && ids[i]! > extra[j]! ? ids[i--]! : extra[j--]!;
      }
      n = total;
    }
    this.length = n;
  }
}

/** A value's place in a LinkedQueue: made once per value and reused, so queueing allocates nothing. */
export interface QueueLink<T> {
  readonly value: T;
  prev: QueueLink<T> | undefined;
  next: QueueLink<T> | undefined;
  queued: boolean;
}

export function queueLink<T>(value: T): QueueLink<T> {
  return { value, prev: undefined, next: undefined, queued: false };
}

/**
 * Values in the order they were queued, with appending, taking out anywhere and reading the
 * oldest in constant time: what a Map used as a queue is not once entries leave it from the front
 * (finding its oldest entry steps over every deleted one until the table is rebuilt).
 */
export class LinkedQueue<T> {
  private head: QueueLink<T> | undefined;
  private tail: QueueLink<T> | undefined;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** The oldest value. */
  get first(): T | undefined {
    return this.head?.value;
  }

  /** Appends a link not queued anywhere. */
  push(l: QueueLink<T>): void {
    if (l.queued) throw new Error('queue link already queued');
    l.queued = true;
    l.prev = this.tail;
    l.next = undefined;
    if (this.tail) this.tail.next = l;
    else this.head = l;
    this.tail = l;
    this.count++;
  }

  /** Takes a link of this queue out; false when it is not queued. */
  delete(l: QueueLink<T> | undefined): boolean {
    if (!l?.queued) return false;
    if (l.prev) l.prev.next = l.next;
    else this.head = l.next;
    if (l.next) l.next.prev = l.prev;
    else this.tail = l.prev;
    l.prev = undefined;
    l.next = undefined;
    l.queued = false;
    this.count--;
    return true;
  }

  /** The values, oldest first (a copy: the queue may change while it is read). */
  values(): T[] {
    const out: T[] = [];
    for (let l = this.head; l; l = l.next) out.push(l.value);
    return out;
  }
}

/**
 * A map from int32 keys to non-negative integers, open-addressed in one typed array of (key,
 * value) pairs (linear probing; no tombstones: a removal shifts the entries after it back). For
 * hundreds of thousands of keys (every endpoint's address) it costs 16 bytes a slot outside the
 * heap, and a lookup a probe of adjacent memory, where a Map of numbers costs about 40 bytes an
 * entry on the heap, and a lookup touches its bucket, its entry and the chain's next ones.
 */
export class Int32Table {
  /** Slot i: the key at 2i, the value plus one at 2i + 1 (0: the slot is empty). */
  private data: Int32Array;
  private mask: number;
  /** 32 minus log2 of the slots: a key's home slot is the top bits of its Fibonacci hash. */
  private shift: number;
  private count = 0;

  constructor() {
    this.data = new Int32Array(32);
    this.mask = 15;
    this.shift = 28;
  }

  get size(): number {
    return this.count;
  }

  /** The value under `key`, or -1 when there is none. */
  get(key: number): number {
    const { data, mask } = this;
    for (let i = this.home(key); ; i = (i + 1) & mask) {
      const v = data[2 * i + 1]!;
      if (v === 0) return -1;
      if (data[2 * i] === key) return v - 1;
    }
  }

  /** Sets the value (a non-negative int32) under `key`. */
  set(key: number, value: number): void {
    const { data, mask } = this;
    for (let i = this.home(key); ; i = (i + 1) & mask) {
      const v = data[2 * i + 1]!;
      if (v === 0) {
        data[2 * i] = key;
        data[2 * i + 1] = value + 1;
        if (++this.count * 2 > mask) this.grow();
        return;
      }
      if (data[2 * i] === key) {
        data[2 * i + 1] = value + 1;
        return;
      }
    }
  }

  /** Removes `key`; returns whether it was there. */
  delete(key: number): boolean {
    const { data, mask } = this;
    let i = this.home(key);
    for (; ; i = (i + 1) & mask) {
      if (data[2 * i + 1] === 0) return false;
      if (data[2 * i] === key) break;
    }
    // Each later entry of the run whose home is not cyclically within (i, j] moves back into the
    // hole, so that every lookup still reaches its entry without crossing an empty slot.
    for (let j = (i + 1) & mask; data[2 * j + 1] !== 0; j = (j + 1) & mask) {
      const home = this.home(data[2 * j]!);
      if (i <= j ? i < home && home <= j : i < home || home <= j) continue;
      data[2 * i] = data[2 * j]!;
      data[2 * i + 1] = data[2 * j + 1]!;
      i = j;
    }
    data[2 * i + 1] = 0;
    this.count--;
    return true;
  }

  private home(key: number): number {
    return Math.imul(key, 0x9e3779b1) >>> this.shift;
  }

  private grow(): void {
    const old = this.data;
    this.data = new Int32Array(old.length * 2);
    this.mask = this.mask * 2 + 1;
    this.shift--;
    this.count = 0;
    for (let i = 0; i < old.length; i += 2) if (old[i + 1] !== 0) this.set(old[i]!, old[i + 1]! - 1);
  }
}
