// Coalesces the graph's churn (at most one pending update per key) and releases it in dependency
// order, as Felix's event sequencer does: ipsets before the policies that use them, policies before
// the endpoints that jump to them, VTEPs before routes; removals in reverse; ipset removals last.
import type { Cidr } from '../../model/net.ts';
import type {
  ActivePolicy,
  ActiveProfile,
  DataplaneMessage,
  EndpointKey,
  HostConfig,
  IpSetId,
  IpSetType,
  LocalEndpoint,
  LocalHostEndpoint,
  MessageSink,
  PolicyKey,
  Pool,
  ProfileId,
  RemoteBlockRoute,
  Vtep,
} from './messages.ts';

/**
 * A set's pending change: a full update (its members as sent, plus the deltas that followed, kept
 * as a log and applied at flush: cheap when a snapshot sends millions of deltas), or deltas only.
 */
type PendingSet =
  | { full: true; type: IpSetType; members: readonly string[]; log: string[] | undefined; adds: boolean[] }
  | { full: false; added: Set<string>; removed: Set<string> };

export class Sequencer implements MessageSink {
  private hostConfig?: HostConfig;
  private readonly ipsets = new Map<IpSetId, PendingSet>();
  private readonly ipsetRemoves = new Set<IpSetId>();
  private readonly policies = new Map<PolicyKey, ActivePolicy | null>();
  private readonly profiles = new Map<ProfileId, ActiveProfile | null>();
  private readonly endpoints = new Map<EndpointKey, LocalEndpoint | null>();
  private readonly hostEndpoints = new Map<EndpointKey, LocalHostEndpoint | null>();
  private readonly vteps = new Map<string, Vtep | null>();
  private readonly routes = new Map<Cidr, RemoteBlockRoute | null>();
  private readonly pools = new Map<Cidr, Pool | null>();
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
        this.ipsets.set(msg.id, {
          full: true,
          type: msg.type,
          members: msg.members,
          log: undefined,
          adds: [],
        });
        return;
      case 'IPSetDelta': {
        let p = this.ipsets.get(msg.id);
        if (!p) {
          p = { full: false, added: new Set<string>(), removed: new Set<string>() };
          this.ipsets.set(msg.id, p);
        }
        if (p.full) {
          p.log ??= [];
          const log = p.log;
          for (const a of msg.added) {
            log.push(a);
            p.adds.push(true);
          }
          for (const r of msg.removed) {
            log.push(r);
            p.adds.push(false);
          }
          return;
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
        this.ipsetRemoves.add(msg.id);
        return;
      case 'ActivePolicyUpdate':
        this.policies.set(msg.policy.key, msg.policy);
        return;
      case 'ActivePolicyRemove':
        this.policies.set(msg.key, null);
        return;
      case 'ActiveProfileUpdate':
        this.profiles.set(msg.profile.id, msg.profile);
        return;
      case 'ActiveProfileRemove':
        this.profiles.set(msg.id, null);
        return;
      case 'EndpointUpdate':
        this.endpoints.set(msg.endpoint.key, msg.endpoint);
        return;
      case 'EndpointRemove':
        this.endpoints.set(msg.key, null);
        return;
      case 'HostEndpointUpdate':
        this.hostEndpoints.set(msg.endpoint.key, msg.endpoint);
        return;
      case 'HostEndpointRemove':
        this.hostEndpoints.set(msg.key, null);
        return;
      case 'VTEPUpdate':
        this.vteps.set(msg.vtep.node, msg.vtep);
        return;
      case 'VTEPRemove':
        this.vteps.set(msg.node, null);
        return;
      case 'RouteUpdate':
        this.routes.set(msg.route.dst, msg.route);
        return;
      case 'RouteRemove':
        this.routes.set(msg.dst, null);
        return;
      case 'PoolUpdate':
        this.pools.set(msg.pool.cidr, msg.pool);
        return;
      case 'PoolRemove':
        this.pools.set(msg.cidr, null);
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
      if (p.full) out.push({ kind: 'IPSetUpdate', id, type: p.type, members: fullMembers(p) });
      else if (p.added.size || p.removed.size) {
        out.push({ kind: 'IPSetDelta', id, added: [...p.added], removed: [...p.removed] });
      }
    }
    for (const [, p] of this.pools) if (p) out.push({ kind: 'PoolUpdate', pool: p });
    for (const [, p] of this.policies) if (p) out.push({ kind: 'ActivePolicyUpdate', policy: p });
    for (const [, p] of this.profiles) if (p) out.push({ kind: 'ActiveProfileUpdate', profile: p });
    for (const [, e] of this.endpoints) if (e) out.push({ kind: 'EndpointUpdate', endpoint: e });
    for (const [, e] of this.hostEndpoints) if (e) out.push({ kind: 'HostEndpointUpdate', endpoint: e });
    for (const [key, e] of this.endpoints) if (!e) out.push({ kind: 'EndpointRemove', key });
    for (const [key, e] of this.hostEndpoints) if (!e) out.push({ kind: 'HostEndpointRemove', key });
    for (const [key, p] of this.policies) if (!p) out.push({ kind: 'ActivePolicyRemove', key });
    for (const [id, p] of this.profiles) if (!p) out.push({ kind: 'ActiveProfileRemove', id });
    for (const [dst, r] of this.routes) if (!r) out.push({ kind: 'RouteRemove', dst });
    for (const [node, v] of this.vteps) if (!v) out.push({ kind: 'VTEPRemove', node });
    for (const [, v] of this.vteps) if (v) out.push({ kind: 'VTEPUpdate', vtep: v });
    for (const [, r] of this.routes) if (r) out.push({ kind: 'RouteUpdate', route: r });
    for (const [cidr, p] of this.pools) if (!p) out.push({ kind: 'PoolRemove', cidr });
    for (const id of this.ipsetRemoves) out.push({ kind: 'IPSetRemove', id });
    if (this.inSync) out.push({ kind: 'InSync' });
    this.clear();
    return out;
  }

  private clear(): void {
    this.hostConfig = undefined;
    this.ipsets.clear();
    this.ipsetRemoves.clear();
    this.policies.clear();
    this.profiles.clear();
    this.endpoints.clear();
    this.hostEndpoints.clear();
    this.vteps.clear();
    this.routes.clear();
    this.pools.clear();
    this.inSync = false;
    this.count = 0;
  }
}

/**
 * A full update's members: as sent when no delta followed (the dataplane takes them as a set),
 * else the sent members with the deltas applied in order.
 */
function fullMembers(p: {
  members: readonly string[];
  log: string[] | undefined;
  adds: boolean[];
}): string[] {
  if (!p.log) return p.members as string[];
  const s = new Set(p.members);
  const { log, adds } = p;
  for (let i = 0; i < log.length; i++) {
    if (adds[i]) s.add(log[i]!);
    else s.delete(log[i]!);
  }
  return [...s];
}
