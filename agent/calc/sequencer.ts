// Coalesces the graph's churn (at most one pending update per key) and releases it in dependency
// order, as Felix's event sequencer does: ipsets before the policies that use them, policies before
// the endpoints that jump to them, VTEPs before routes; removals in reverse; ipset removals last.
import type { Cidr } from '../../model/net.ts';
import type {
  DataplaneMessage,
  EndpointKey,
  HostConfig,
  IpSetId,
  MessageKind,
  MessageSink,
  PolicyKey,
  ProfileId,
} from './messages.ts';

type Msg<K extends MessageKind> = Extract<DataplaneMessage, { kind: K }>;
type IpSetUpdateMsg = Msg<'IPSetUpdate'>;
type IpSetDeltaMsg = Msg<'IPSetDelta'>;

/**
 * A set's pending change: a full update (the message as sent, plus the deltas that followed, kept
 * as a log and applied at flush: cheap when a snapshot sends millions of deltas), or deltas only:
 * one message of one member as it came (what a single label change sends; released as it is),
 * merged into sets from the second.
 */
type PendingSet =
  | { full: true; msg: IpSetUpdateMsg; log: string[] | undefined; adds: boolean[] | undefined }
  | { full: false; single: IpSetDeltaMsg | undefined; added: Set<string>; removed: Set<string> };

/** Stands for the sets of a pending delta that holds a single message. */
const NO_SET: Set<string> = new Set();

export class Sequencer implements MessageSink {
  private hostConfig?: HostConfig;
  private readonly ipsets = new Map<IpSetId, PendingSet>();
  // The last message for each key, released as it came (a flush of a busy change allocates no
  // copies): an update or a remove, told apart by kind.
  private readonly ipsetRemoves = new Map<IpSetId, Msg<'IPSetRemove'>>();
  private readonly policies = new Map<PolicyKey, Msg<'ActivePolicyUpdate' | 'ActivePolicyRemove'>>();
  private readonly profiles = new Map<ProfileId, Msg<'ActiveProfileUpdate' | 'ActiveProfileRemove'>>();
  private readonly endpoints = new Map<EndpointKey, Msg<'EndpointUpdate' | 'EndpointRemove'>>();
  private readonly hostEndpoints = new Map<EndpointKey, Msg<'HostEndpointUpdate' | 'HostEndpointRemove'>>();
  private readonly vteps = new Map<string, Msg<'VTEPUpdate' | 'VTEPRemove'>>();
  private readonly routes = new Map<Cidr, Msg<'RouteUpdate' | 'RouteRemove'>>();
  private readonly pools = new Map<Cidr, Msg<'PoolUpdate' | 'PoolRemove'>>();
  private inSync = false;
  private count = 0;

  /** Number of messages received since the last flush (before coalescing). */
  get pending(): number {
    return this.count;
  }

  send(msg: DataplaneMessage): void {
    this.count++;
    switch (msg.kind) {
      case 'IPSetUpdate':
        this.ipsetRemoves.delete(msg.id);
        this.ipsets.set(msg.id, { full: true, msg, log: undefined, adds: undefined });
        return;
      case 'IPSetDelta': {
        let p = this.ipsets.get(msg.id);
        if (!p) {
          if (msg.added.length + msg.removed.length === 1) {
            this.ipsets.set(msg.id, { full: false, single: msg, added: NO_SET, removed: NO_SET });
            return;
          }
          p = { full: false, single: undefined, added: new Set<string>(), removed: new Set<string>() };
          this.ipsets.set(msg.id, p);
        }
        if (p.full) {
          p.log ??= [];
          p.adds ??= [];
          const { log, adds } = p;
          for (const a of msg.added) {
            log.push(a);
            adds.push(true);
          }
          for (const r of msg.removed) {
            log.push(r);
            adds.push(false);
          }
          return;
        }
        if (p.single) {
          // A second delta: from here on merged.
          const first = p.single;
          p.single = undefined;
          p.added = new Set(first.added);
          p.removed = new Set(first.removed);
        }
        for (const a of msg.added) {
          p.removed.delete(a);
          p.added.add(a);
        }
        for (const r of msg.removed) {
          p.added.delete(r);
          p.removed.add(r);
        }
        return;
      }
      case 'IPSetRemove':
        this.ipsets.delete(msg.id);
        this.ipsetRemoves.set(msg.id, msg);
        return;
      case 'ActivePolicyUpdate':
        this.policies.set(msg.policy.key, msg);
        return;
      case 'ActivePolicyRemove':
        this.policies.set(msg.key, msg);
        return;
      case 'ActiveProfileUpdate':
        this.profiles.set(msg.profile.id, msg);
        return;
      case 'ActiveProfileRemove':
        this.profiles.set(msg.id, msg);
        return;
      case 'EndpointUpdate':
        this.endpoints.set(msg.endpoint.key, msg);
        return;
      case 'EndpointRemove':
        this.endpoints.set(msg.key, msg);
        return;
      case 'HostEndpointUpdate':
        this.hostEndpoints.set(msg.endpoint.key, msg);
        return;
      case 'HostEndpointRemove':
        this.hostEndpoints.set(msg.key, msg);
        return;
      case 'VTEPUpdate':
        this.vteps.set(msg.vtep.node, msg);
        return;
      case 'VTEPRemove':
        this.vteps.set(msg.node, msg);
        return;
      case 'RouteUpdate':
        this.routes.set(msg.route.dst, msg);
        return;
      case 'RouteRemove':
        this.routes.set(msg.dst, msg);
        return;
      case 'PoolUpdate':
        this.pools.set(msg.pool.cidr, msg);
        return;
      case 'PoolRemove':
        this.pools.set(msg.cidr, msg);
        return;
      case 'HostConfigUpdate':
        this.hostConfig = msg.config;
        return;
      case 'InSync':
        this.inSync = true;
        return;
    }
  }

  /** Everything pending, coalesced, in dependency order; empties the sequencer. */
  flush(): DataplaneMessage[] {
    const out: DataplaneMessage[] = [];
    if (this.hostConfig) out.push({ kind: 'HostConfigUpdate', config: this.hostConfig });
    for (const [id, p] of this.ipsets) {
      if (p.full) {
        const { msg } = p;
        out.push(
          p.log
            ? { kind: 'IPSetUpdate', id, type: msg.type, members: fullMembers(msg, p.log, p.adds!) }
            : msg,
        );
      } else if (p.single) out.push(p.single);
      else if (p.added.size || p.removed.size) {
        out.push({ kind: 'IPSetDelta', id, added: [...p.added], removed: [...p.removed] });
      }
    }
    pick(out, this.pools, 'PoolUpdate');
    pick(out, this.policies, 'ActivePolicyUpdate');
    pick(out, this.profiles, 'ActiveProfileUpdate');
    pick(out, this.endpoints, 'EndpointUpdate');
    pick(out, this.hostEndpoints, 'HostEndpointUpdate');
    pick(out, this.endpoints, 'EndpointRemove');
    pick(out, this.hostEndpoints, 'HostEndpointRemove');
    pick(out, this.policies, 'ActivePolicyRemove');
    pick(out, this.profiles, 'ActiveProfileRemove');
    pick(out, this.routes, 'RouteRemove');
    pick(out, this.vteps, 'VTEPRemove');
    pick(out, this.vteps, 'VTEPUpdate');
    pick(out, this.routes, 'RouteUpdate');
    pick(out, this.pools, 'PoolRemove');
    for (const m of this.ipsetRemoves.values()) out.push(m);
    if (this.inSync) out.push({ kind: 'InSync' });
    this.clear();
    return out;
  }

  private clear(): void {
    this.hostConfig = undefined;
    // Clearing a map makes it a new table, even an empty one: most flushes touch two or three.
    for (const m of [
      this.ipsets,
      this.ipsetRemoves,
      this.policies,
      this.profiles,
      this.endpoints,
      this.hostEndpoints,
      this.vteps,
      this.routes,
      this.pools,
    ] as Map<unknown, unknown>[])
      if (m.size > 0) m.clear();
    this.inSync = false;
    this.count = 0;
  }
}

/** The pending messages of one kind, in the order their keys first came. */
function pick(
  out: DataplaneMessage[],
  pending: ReadonlyMap<unknown, DataplaneMessage>,
  kind: MessageKind,
): void {
  if (pending.size === 0) return;
  for (const m of pending.values()) if (m.kind === kind) out.push(m);
}

/** A full update's members, with the deltas that followed it applied in order. */
function fullMembers(msg: IpSetUpdateMsg, log: readonly string[], adds: readonly boolean[]): string[] {
  const s = new Set(msg.members);
  for (let i = 0; i < log.length; i++) {
    if (adds[i]) s.add(log[i]!);
    else s.delete(log[i]!);
  }
  return [...s];
}
