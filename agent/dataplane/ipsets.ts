// The ipsets this node should hold: rule-selector sets from the calculation graph plus the pool
// sets NAT outgoing needs. onUpdate is cheap; apply() is one `ipset restore` of the difference.
import type { IpSetSpec } from '../../native/ipset.ts';
import type { DataplaneMessage, IpSetId, IpSetType } from '../calc/messages.ts';
import { ipsetName } from '../rules/names.ts';
import { Generations } from './generation.ts';
import { type Refusal, RefusalLog } from './refusals.ts';

export interface IpSetWriteResult {
  refused?: readonly { set: string; reason: string }[];
}

export interface IpSetWriter {
  /** What it resolves to may say what the kernel refused ({ refused: [{ set, reason }] }). */
  apply(desired: ReadonlyMap<string, IpSetSpec>): Promise<unknown>;
  destroyStale(keep: ReadonlySet<string>): Promise<unknown>;
}

export class IpSetManager {
  private readonly desired = new Map<string, { name: string; type: IpSetType; members: Set<string> }>();
  private readonly gen = new Generations();
  /** Sets may exist in the kernel that we no longer want (bumped on removal and on resync). */
  private readonly stale = new Generations();
  private readonly refusals = new RefusalLog('an ipset');

  constructor(private readonly writer: IpSetWriter) {}

  onUpdate(msg: DataplaneMessage): void {
    switch (msg.kind) {
      case 'IPSetUpdate':
        this.replace(msg.id, msg.type, msg.members);
        return;
      case 'IPSetDelta': {
        const s = this.desired.get(ipsetName(msg.id));
        if (!s) return; // a delta for a set we never had: the graph's next full update brings it
        for (const m of msg.added) s.members.add(m);
        for (const m of msg.removed) s.members.delete(m);
        this.gen.bump();
        return;
      }
      case 'IPSetRemove':
        if (this.desired.delete(ipsetName(msg.id))) this.stale.bump();
        return;
      default:
    }
  }

  /** Replace a set wholesale (the NAT manager's pool sets come through here too). */
  replace(id: IpSetId, type: IpSetType, members: Iterable<string>): void {
    const name = ipsetName(id);
    this.desired.set(name, { name, type, members: new Set(members) });
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
    this.gen.bump();
    this.stale.bump();
  }

  /** Create and update; never destroys (iptables may still reference a set). */
  async apply(): Promise<boolean> {
    if (!this.gen.pending) return false;
    const gen = this.gen.begin();
    const res = (await this.writer.apply(this.desired)) as IpSetWriteResult | undefined;
    this.refusals.set((res?.refused ?? []).map((r) => ({ table: 'ipset', object: r.set, reason: r.reason })));
    this.gen.done(gen);
    return true;
  }

  /** After iptables no longer references them, destroy the sets we no longer want. */
  async cleanup(): Promise<void> {
    if (!this.stale.pending) return;
    const gen = this.stale.begin();
    await this.writer.destroyStale(new Set(this.desired.keys()));
    this.stale.done(gen);
  }
}
