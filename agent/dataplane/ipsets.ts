// The ipsets this node should hold: rule-selector sets from the calculation graph plus the pool
// sets NAT outgoing needs. onUpdate is cheap; apply() is one `ipset restore` of the difference.
import type { IpSetSpec, MemberDelta } from '../../native/ipset.ts';
import type { DataplaneMessage, IpSetId, IpSetType } from '../calc/messages.ts';
import { ipsetName } from '../rules/names.ts';
import { Generations } from './generation.ts';
import { type Refusal, RefusalLog } from './refusals.ts';

export interface IpSetWriteResult {
  refused?: readonly { set: string; reason: string }[];
}

export interface IpSetWriter {
  /** What it resolves to may say what the kernel refused ({ refused: [{ set, reason }] }). */
  /**
   * `reuseLastWrite`: nothing but our own writes changed our sets since the last apply, so the
   * writer may diff against what that apply left instead of reading every member back.
   */
  /**
   * `onWrite`: called as the write is handed to the kernel tool (work can overlap it from then).
   * `onCreated`: called, if the writer can tell, once every set of a big write exists while its
   * members are still going in (chains that name the sets can load from then).
   */
  apply(
    desired: ReadonlyMap<string, IpSetSpec>,
    opts?: {
      reuseLastWrite?: boolean;
      onWrite?: () => void;
      onCreated?: () => void;
      /**
       * With reuseLastWrite: the member changes since the last write of the sets that changed only
       * by deltas, so that the writer need not compare 100,000 members to find one.
       */
      deltas?: ReadonlyMap<string, MemberDelta>;
    },
  ): Promise<unknown>;
  destroyStale(keep: ReadonlySet<string>, opts?: { reuseLastWrite?: boolean }): Promise<unknown>;
  /**
   * Whether writing these sets only changes members of sets the kernel already holds as last
   * written (no create, no type or header change).
   */
  membersOnly?(desired: ReadonlyMap<string, IpSetSpec>): boolean;
  /** Stop whatever the writer keeps running (a kept restore process). */
  close?(): void;
  /**
   * Sets whose kernel copy no longer matches the last write, by a cheap check (member counts of
   * all, and the members of `sweepShare` of them in turn); the writer re-reads those, so the next
   * apply that reuses its last write repairs them.
   */
  driftedSets?(opts?: { sweepShare?: number }): Promise<string[]>;
  /**
   * Run a cold start's bulk restores below the agent's priority (on: the tables load beside the
   * fill and are what the node waits for) or at it (off: from the first programmed pass on).
   */
  lowerBulkPriority?(on: boolean): void;
}

/**
 * Members given as a function are read only when a write needs them; a list is kept as it is,
 * never changed (see IpSetManager.replace).
 */
export type Members = Iterable<string> | (() => Iterable<string>);

interface DesiredSet {
  name: string;
  type: IpSetType;
  /** A list as given (the graph's message), until a delta needs a Set. */
  members: Set<string> | readonly string[];
  /** Not read yet: `members` is filled from this on first use. */
  source?: () => Iterable<string>;
}

/** A desired set with its members read (a lazy source is read once, on first use). */
function materialised(s: DesiredSet): DesiredSet {
  if (s.source !== undefined) {
    s.members = new Set(s.source());
    s.source = undefined;
  }
  return s;
}

const NO_MEMBERS: readonly string[] = [];

export class IpSetManager {
  private readonly desired = new Map<string, DesiredSet>();
  private readonly gen = new Generations();
  /** Sets may exist in the kernel that we no longer want (bumped on removal and on resync). */
  private readonly stale = new Generations();
  private readonly refusals = new RefusalLog('an ipset', 'ipsets');
  /**
   * Sets changed since the last write; undefined means all of them (start, resync, failure). Only
   * these are handed to the writer, so a one-member change does not diff 100,000 members.
   */
  private changed: Set<string> | undefined;
  /**
   * Of the changed sets, those the graph changed only by deltas since the last write, with what
   * the deltas added and removed on balance; 'whole' once a set is replaced (or re-read).
   */
  private readonly deltas = new Map<string, { added: Set<string>; removed: Set<string> } | 'whole'>();

  constructor(private readonly writer: IpSetWriter) {}

  onUpdate(msg: DataplaneMessage): void {
    switch (msg.kind) {
      case 'IPSetUpdate':
        this.replace(msg.id, msg.type, msg.members);
        return;
      case 'IPSetDelta': {
        const found = this.desired.get(ipsetName(msg.id));
        if (!found) return; // a delta for a set we never had: the graph's next full update brings it
        const s = materialised(found);
        const members = Array.isArray(s.members) ? new Set<string>(s.members) : (s.members as Set<string>);
        s.members = members;
        // What changed in fact (a member added twice is added once), for the deltas' balance.
        const added = msg.added.filter((m) => !members.has(m));
        for (const m of added) members.add(m);
        const removed = msg.removed.filter((m) => members.delete(m));
        if (this.changed !== undefined) {
          this.changed.add(s.name);
          this.noteDelta(s.name, added, removed);
        }
        this.gen.bump();
        return;
      }
      case 'IPSetRemove':
        if (this.desired.delete(ipsetName(msg.id))) this.stale.bump();
        return;
      default:
    }
  }

  /** Keep the balance of a set's deltas since its last write (a member added then removed is neither). */
  private noteDelta(name: string, added: Iterable<string>, removed: Iterable<string>): void {
    let d = this.deltas.get(name);
    if (d === 'whole') return;
    if (d === undefined) {
      d = { added: new Set(), removed: new Set() };
      this.deltas.set(name, d);
    }
    for (const m of added) if (!d.removed.delete(m)) d.added.add(m);
    for (const m of removed) if (!d.added.delete(m)) d.removed.add(m);
  }

  /**
   * Replace a set wholesale (the NAT manager's pool sets, the VXLAN sources). Members given as a
   * function are read at the next write, once however often the set was replaced before it: a
   * snapshot of 10,000 VTEPs replaces the VXLAN source set 10,000 times, and copying it each time
   * was most of a cold start. A list is kept as given, not copied (the caller never changes it: the
   * graph's messages are not changed once sent), and made a Set only when a delta comes.
   */
  replace(id: IpSetId, type: IpSetType, members: Members): void {
    const name = ipsetName(id);
    this.desired.set(
      name,
      typeof members === 'function'
        ? { name, type, members: NO_MEMBERS, source: members }
        : { name, type, members: Array.isArray(members) ? (members as readonly string[]) : new Set(members) },
    );
    this.changed?.add(name);
    this.deltas.set(name, 'whole');
    this.gen.bump();
  }

  /** Sets the kernel refused in the last write (left as they were). */
  get refused(): readonly Refusal[] {
    return this.refusals.list;
  }

  has(id: IpSetId): boolean {
    return this.desired.has(ipsetName(id));
  }

  get size(): number {
    return this.desired.size;
  }

  markDirty(): void {
    this.changed = undefined;
    this.deltas.clear();
    this.gen.bump();
    this.stale.bump();
  }

  /** See IpSetWriter.lowerBulkPriority (a writer without priorities ignores it). */
  lowerBulkPriority(on: boolean): void {
    this.writer.lowerBulkPriority?.(on);
  }

  /** Stop what the writer keeps running. */
  close(): void {
    this.writer.close?.();
  }

  /** The sets someone changed behind our back; they are re-read and rewritten on the next pass. */
  async checkDrift(opts: { sweepShare?: number } = {}): Promise<string[]> {
    const sets = (await this.writer.driftedSets?.(opts)) ?? [];
    if (sets.length === 0) return sets;
    // The writer re-read them: rewrite just these, not 100,000 members of every set.
    for (const name of sets) {
      this.changed?.add(name);
      this.deltas.set(name, 'whole');
    }
    this.gen.bump();
    return sets;
  }

  /** The sets the next apply writes, their members read. */
  private pending(batch: ReadonlySet<string> | undefined): Map<string, IpSetSpec> {
    const want = new Map<string, IpSetSpec>();
    for (const name of batch ?? this.desired.keys()) {
      const s = this.desired.get(name);
      if (s) want.set(name, materialised(s));
    }
    return want;
  }

  /**
   * The next apply only changes members of sets that exist as last written (or writes nothing):
   * rules naming them load whether it lands before or after them.
   */
  membersOnly(): boolean {
    if (!this.gen.pending) return true;
    if (this.changed === undefined) return false;
    return this.writer.membersOnly?.(this.pending(this.changed)) ?? false;
  }

  /**
   * Create and update; never destroys (iptables may still reference a set). `onWrite` is called
   * as the restore starts (not at all when there is nothing to write); `onCreated` as in
   * IpSetWriter.apply.
   */
  async apply(onWrite?: () => void, onCreated?: () => void): Promise<boolean> {
    if (!this.gen.pending) return false;
    const gen = this.gen.begin();
    const batch = this.changed;
    this.changed = new Set();
    const want = this.pending(batch);
    const deltas = new Map<string, MemberDelta>();
    if (batch !== undefined) for (const [name, d] of this.deltas) if (d !== 'whole') deltas.set(name, d);
    this.deltas.clear();
    let res: IpSetWriteResult | undefined;
    try {
      res = (await this.writer.apply(want, {
        reuseLastWrite: batch !== undefined,
        onWrite,
        onCreated,
        deltas: deltas.size > 0 ? deltas : undefined,
      })) as IpSetWriteResult | undefined;
    } catch (e) {
      this.changed = undefined;
      throw e;
    }
    // A set refused this time is retried with everything at the next full pass.
    if (batch !== undefined && res?.refused?.length) this.changed = undefined;
    this.refusals.set((res?.refused ?? []).map((r) => ({ table: 'ipset', object: r.set, reason: r.reason })));
    this.gen.done(gen);
    return true;
  }

  /** After iptables no longer references them, destroy the sets we no longer want. */
  async cleanup(): Promise<void> {
    if (!this.stale.pending) return;
    const gen = this.stale.begin();
    // apply() ran just before in the same pass, and read the kernel if anything could have drifted.
    await this.writer.destroyStale(new Set(this.desired.keys()), { reuseLastWrite: true });
    this.stale.done(gen);
  }
}
