// The calculation graph: feed updates in, dataplane messages out. Synchronous, no I/O, no timers:
// the same input always gives the same output, which is what makes it testable alone.
// A feed update the graph cannot use is refused (logged at warn with key and reason) and the
// previous state for that key stays: the dataplane keeps its last good state.
import { logger } from '../../lib/log.ts';
import { type Cidr, NetParseError, parseCidr } from '../../model/net.ts';
import { compilePolicy, compileProfile, PolicyError, type policyKey } from '../../policy/compiler.ts';
import { ResourceKind, type Update } from '../../proto/service.ts';
import { LabelIndex } from './label-index.ts';
import type { EndpointKey, MessageSink, ProfileId } from './messages.ts';
import { NamedPortsMemo } from './named-ports.ts';
import { OverlayResolver } from './overlay-resolver.ts';
import { type LocalEndpointInput, PolicyResolver, SharedActivePolicies } from './policy-resolver.ts';
import { ProfileResolver } from './profile-resolver.ts';

const log = logger('calc');

export interface GraphOptions {
  nodeName: string;
  /** The local cluster's name (from the syncer's hello). */
  localCluster: string;
  /**
   * Compute ipset members once, at the first in-sync, from the complete snapshot, instead of
   * following each item as it arrives (the agent: nothing reaches the kernel before in-sync).
   * Until then the output holds no ipset members; after it, everything is incremental.
   */
  deferUntilInSync?: boolean;
  /** Dormant ipsets with at least this many members stay in the dataplane (LabelIndexOptions.parkMin). */
  parkSetsMin?: number;
}

export interface RefusedUpdate {
  key: string;
  kind: string;
  reason: string;
}

export class CalculationGraph {
  readonly index: LabelIndex;
  readonly policies: PolicyResolver;
  /** The same policies, for this node's host endpoints. */
  readonly hostPolicies: PolicyResolver;
  readonly profiles: ProfileResolver;
  readonly overlay: OverlayResolver;
  private readonly localInputs = new Map<EndpointKey, LocalEndpointInput>();
  private readonly localHostInputs = new Map<EndpointKey, LocalEndpointInput>();
  /** Policy key in the dataplane for each feed key, so a delete finds what to remove. */
  private readonly policyKeys = new Map<string, ReturnType<typeof policyKey>>();
  readonly refused: RefusedUpdate[] = [];
  private readonly namedPorts = new NamedPortsMemo();

  constructor(
    private readonly opts: GraphOptions,
    private readonly sink: MessageSink,
  ) {
    const defer = opts.deferUntilInSync ?? false;
    this.index = new LabelIndex(sink, { deferMembers: defer, parkMin: opts.parkSetsMin });
    const shared = new SharedActivePolicies();
    this.policies = new PolicyResolver(this.index, sink, 'workload', { deferEndpoints: defer, shared });
    this.hostPolicies = new PolicyResolver(this.index, sink, 'host', { deferEndpoints: defer, shared });
    this.profiles = new ProfileResolver(this.index, sink);
    this.overlay = new OverlayResolver(opts.nodeName, sink, opts.localCluster);
  }

  get localCluster(): string {
    return this.opts.localCluster;
  }

  onUpdate(u: Update): void {
    try {
      if (u.deleted) this.onDelete(u);
      else this.onSet(u);
    } catch (e) {
      if (e instanceof PolicyError || e instanceof NetParseError || e instanceof RefuseError) {
        this.refuse(u, e.message);
        return;
      }
      throw e;
    }
  }

  inSync(): void {
    // Sets before the policies that use them, policies before the endpoints (the sequencer
    // orders a flush the same way; this keeps the raw stream in that order too).
    this.index.endDeferral();
    this.policies.endDeferral();
    this.hostPolicies.endDeferral();
    this.sink.send({ kind: 'InSync' });
  }

  private refuse(u: Update, reason: string): void {
    const kind = ResourceKind[u.kind] ?? String(u.kind);
    log.warn(
      { key: u.key, kind, cluster: u.cluster, reason },
      'refused feed update; keeping the last good state',
    );
    this.refused.push({ key: u.key, kind, reason });
    if (this.refused.length > 1000) this.refused.shift();
  }

  private isLocalCluster(cluster: string): boolean {
    return cluster === '' || cluster === this.opts.localCluster;
  }

  private onSet(u: Update): void {
    const b = u.body;
    switch (b.case) {
      case 'workloadEndpoint': {
        const w = b.value;
        const nets = checkedCidrs(w.ipv4Nets);
        const key = u.key as EndpointKey;
        const local = this.isLocalCluster(u.cluster) && w.node === this.opts.nodeName;
        // Refuse before touching any state: a refused update must change nothing.
        if (local && !w.interfaceName)
          throw new RefuseError('spec.interfaceName: a local endpoint needs one');
        const labels = this.index.upsertItem({
          key,
          ownLabels: w.labels,
          profiles: w.profiles,
          namespace: w.namespace || undefined,
          nets,
          namedPorts: this.namedPorts.of(w.ports),
        });
        if (local) {
          const profiles = w.profiles as ProfileId[];
          const input: LocalEndpointInput = { key, interfaceName: w.interfaceName, ipv4Nets: nets, profiles };
          this.localInputs.set(key, input);
          this.profiles.setEndpoint(key, profiles);
          this.policies.upsertEndpoint(input, labels);
        } else if (this.localInputs.delete(key)) {
          this.policies.deleteEndpoint(key);
          this.profiles.setEndpoint(key, []);
        }
        return;
      }
      case 'hostEndpoint': {
        const h = b.value;
        const key = u.key as EndpointKey;
        const labels = this.index.upsertItem({
          key: u.key,
          ownLabels: h.labels,
          profiles: h.profiles,
          nets: h.expectedIpv4s.map((ip) => parseCidr(`${ip}/32`)),
          namedPorts: this.namedPorts.of(h.ports),
        });
        // Policy applies to this node's host endpoints with a named interface; remote ones (and
        // the all-interfaces `*`, not implemented) are selector members only.
        const local =
          this.isLocalCluster(u.cluster) &&
          h.node === this.opts.nodeName &&
          h.interfaceName !== '' &&
          h.interfaceName !== '*';
        if (local) {
          const profiles = h.profiles as ProfileId[];
          const input: LocalEndpointInput = { key, interfaceName: h.interfaceName, ipv4Nets: [], profiles };
          this.localHostInputs.set(key, input);
          this.profiles.setEndpoint(key, profiles);
          this.hostPolicies.upsertEndpoint(input, labels);
        } else if (this.localHostInputs.delete(key)) {
          this.hostPolicies.deleteEndpoint(key);
          this.profiles.setEndpoint(key, []);
        }
        return;
      }
      case 'networkSet': {
        const s = b.value;
        this.index.upsertItem({
          key: u.key,
          ownLabels: s.labels,
          profiles: [],
          namespace: s.namespace || undefined,
          nets: s.nets.map((n) => parseCidr(n)),
        });
        return;
      }
      case 'profile': {
        // Rules never come from a remote cluster (the syncer strips them; Calico Enterprise too).
        if (this.isLocalCluster(u.cluster))
          this.profiles.setProfile(u.key as ProfileId, compileProfile(u.key, b.value));
        for (const k of this.index.setProfileLabels(u.key, b.value.labels))
          this.refreshLocal(k as EndpointKey);
        return;
      }
      case 'policy': {
        if (!this.isLocalCluster(u.cluster))
          throw new RefuseError('policies are never federated from remote clusters');
        const compiled = compilePolicy(b.value);
        const oldKey = this.policyKeys.get(u.key);
        if (oldKey && oldKey !== compiled.key) {
          this.policies.deletePolicy(oldKey);
          this.hostPolicies.deletePolicy(oldKey);
        }
        this.policyKeys.set(u.key, compiled.key);
        this.policies.upsertPolicy(compiled);
        this.hostPolicies.upsertPolicy(compiled);
        return;
      }
      case 'tier':
        if (!this.isLocalCluster(u.cluster))
          throw new RefuseError('tiers are never federated from remote clusters');
        for (const r of [this.policies, this.hostPolicies])
          r.setTier(b.value.name, {
            ...(b.value.hasOrder ? { order: b.value.order } : {}),
            defaultAction: b.value.defaultAction === 'Pass' ? 'pass' : 'deny',
          });
        return;
      case 'ipPool':
        this.overlay.upsertPool(u.key, u.cluster, this.isLocalCluster(u.cluster), b.value);
        return;
      case 'ipamBlock':
        this.overlay.upsertBlock(u.key, u.cluster, b.value);
        return;
      case 'node':
        this.overlay.upsertNode(u.cluster, b.value);
        return;
      default:
        throw new RefuseError('update has no body');
    }
  }

  private onDelete(u: Update): void {
    switch (u.kind) {
      case ResourceKind.WORKLOAD_ENDPOINT:
        this.index.deleteItem(u.key);
        if (this.localInputs.delete(u.key as EndpointKey)) {
          this.policies.deleteEndpoint(u.key as EndpointKey);
          this.profiles.setEndpoint(u.key as EndpointKey, []);
        }
        return;
      case ResourceKind.HOST_ENDPOINT:
        this.index.deleteItem(u.key);
        if (this.localHostInputs.delete(u.key as EndpointKey)) {
          this.hostPolicies.deleteEndpoint(u.key as EndpointKey);
          this.profiles.setEndpoint(u.key as EndpointKey, []);
        }
        return;
      case ResourceKind.NETWORK_SET:
        this.index.deleteItem(u.key);
        return;
      case ResourceKind.PROFILE:
        this.profiles.setProfile(u.key as ProfileId, undefined);
        for (const k of this.index.setProfileLabels(u.key, undefined)) this.refreshLocal(k as EndpointKey);
        return;
      case ResourceKind.POLICY: {
        const pk = this.policyKeys.get(u.key);
        this.policyKeys.delete(u.key);
        if (pk) {
          this.policies.deletePolicy(pk);
          this.hostPolicies.deletePolicy(pk);
        }
        return;
      }
      case ResourceKind.TIER:
        for (const r of [this.policies, this.hostPolicies])
          r.setTier(u.key.slice(u.key.lastIndexOf('/') + 1), undefined);
        return;
      case ResourceKind.IP_POOL:
        this.overlay.deletePool(u.key);
        return;
      case ResourceKind.IPAM_BLOCK:
        this.overlay.deleteBlock(u.key);
        return;
      case ResourceKind.NODE:
        this.overlay.deleteNode(nodeNameFromKey(u.key));
        return;
      default:
        throw new RefuseError(`delete of unknown kind ${u.kind}`);
    }
  }

  private refreshLocal(key: EndpointKey): void {
    const labels = this.index.getLabels(key);
    if (!labels) return;
    const input = this.localInputs.get(key);
    if (input) this.policies.upsertEndpoint(input, labels);
    const host = this.localHostInputs.get(key);
    if (host) this.hostPolicies.upsertEndpoint(host, labels);
  }
}

export class RefuseError extends Error {}

/** `checkedCidr` of each, in an array of exactly their number (the item keeps it). */
function checkedCidrs(list: readonly string[]): Cidr[] {
  return list.length === 1 ? [checkedCidr(list[0]!)] : list.map(checkedCidr);
}

/**
 * `parseCidr(s)` (no host bits allowed), without its allocations when `s` is already canonical,
 * as the syncer sends it: the common case on the snapshot's hot path.
 */
export function checkedCidr(s: string): Cidr {
  return isCanonicalCidr(s) ? (s as Cidr) : parseCidr(s, false);
}

/** `a.b.c.d/len` exactly as parseCidr prints it: no leading zeros, octets ≤ 255, no host bits. */
function isCanonicalCidr(s: string): boolean {
  let i = 0;
  let ip = 0;
  for (let part = 0; part < 4; part++) {
    if (part > 0) {
      if (s.charCodeAt(i) !== 0x2e) return false; // '.'
      i++;
    }
    const start = i;
    let n = 0;
    while (i < s.length && i - start < 4) {
      const c = s.charCodeAt(i);
      if (c < 0x30 || c > 0x39) break;
      n = n * 10 + (c - 0x30);
      i++;
    }
    const digits = i - start;
    if (digits === 0 || digits > 3 || n > 255 || (digits > 1 && s.charCodeAt(start) === 0x30)) return false;
    ip = ip * 256 + n;
  }
  if (s.charCodeAt(i) !== 0x2f) return false; // '/'
  i++;
  const start = i;
  let len = 0;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39 || i - start >= 2) return false;
    len = len * 10 + (c - 0x30);
    i++;
  }
  const digits = i - start;
  if (digits === 0 || len > 32 || (digits > 1 && s.charCodeAt(start) === 0x30)) return false;
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return (ip & mask) >>> 0 === ip;
}

/** Node keys are `<name>` locally and `<cluster>/<name>` for remote clusters. */
export function nodeNameFromKey(key: string): string {
  const i = key.lastIndexOf('/');
  return i >= 0 ? key.slice(i + 1) : key;
}

export type { Cidr };
