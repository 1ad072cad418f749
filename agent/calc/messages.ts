// What the calculation graph tells the dataplane: dataplane-neutral messages in Felix's vocabulary.
// The graph emits them; the sequencer coalesces and orders them; the managers consume them.
import type { Cidr, Ip4, Mac } from '../../model/net.ts';

declare const brand: unique symbol;
/** A feed key of an endpoint. */
export type EndpointKey = string & { readonly [brand]: 'EndpointKey' };

export type {
  CompiledEntity,
  CompiledRule,
  IpSetId,
  IpSetType,
  PolicyKey,
  PortRange,
  ProfileId,
  RuleAction,
} from '../../policy/compiled.ts';

import type { CompiledRule, IpSetId, IpSetType, PolicyKey, ProfileId } from '../../policy/compiled.ts';

export interface ActivePolicy {
  key: PolicyKey;
  /** For people: `namespace/name` or `name`; used in LOG prefixes and comments. */
  displayName: string;
  inbound: CompiledRule[];
  outbound: CompiledRule[];
}

/** What the end of a tier does when no policy in it decided: Calico's `Deny` (default) or `Pass`. */
export type TierDefaultAction = 'deny' | 'pass';

export interface TierPolicies {
  tier: string;
  policies: PolicyKey[];
  /** Absent: `deny` ("End of tier X. Drop if no policies passed packet"). */
  defaultAction?: TierDefaultAction;
}

/** A profile some local endpoint names: its rules run after every tier (Felix's cali-pri-/cali-pro-). */
export interface ActiveProfile {
  id: ProfileId;
  inbound: CompiledRule[];
  outbound: CompiledRule[];
}

export interface LocalEndpoint {
  key: EndpointKey;
  interfaceName: string;
  ipv4Nets: Cidr[];
  /** Ordered tiers of the policies that apply to traffic into the endpoint (only tiers with ≥1 policy). */
  ingress: TierPolicies[];
  egress: TierPolicies[];
  /** The endpoint's profiles in order: after the tiers, one of them must allow, else drop. */
  profiles: ProfileId[];
}

/**
 * A host endpoint of this node (an interface with an explicit name): Felix's cali-th-/cali-fh-
 * chains. Its policies split by kind: normal ones (host-local traffic, INPUT/OUTPUT), forward ones
 * (applyOnForward: forwarded traffic too), pre-DNAT (mangle, ingress only) and untracked (raw).
 */
export interface LocalHostEndpoint {
  key: EndpointKey;
  interfaceName: string;
  profiles: ProfileId[];
  ingress: TierPolicies[];
  egress: TierPolicies[];
  forwardIngress: TierPolicies[];
  forwardEgress: TierPolicies[];
  preDnatIngress: TierPolicies[];
  untrackedIngress: TierPolicies[];
  untrackedEgress: TierPolicies[];
}

export interface Vtep {
  node: string;
  cluster: string;
  nodeIp: Ip4;
  tunnelIp: Ip4;
  mac: Mac;
}

export interface RemoteBlockRoute {
  dst: Cidr;
  /** The VTEP (node) the block lives behind. */
  node: string;
  cluster: string;
  /** The block is this node's own: a blackhole route (its pods' /32 routes are more specific). */
  local?: boolean;
}

export interface Pool {
  cidr: Cidr;
  cluster: string;
  local: boolean;
  natOutgoing: boolean;
}

/** This node's own settings, from its Node resource. */
export interface HostConfig {
  node: string;
  nodeIp?: Ip4;
  tunnelIp?: Ip4;
  vtepMac?: Mac;
}

export type DataplaneMessage =
  | { kind: 'IPSetUpdate'; id: IpSetId; type: IpSetType; members: string[] }
  | { kind: 'IPSetDelta'; id: IpSetId; added: string[]; removed: string[] }
  | { kind: 'IPSetRemove'; id: IpSetId }
  | { kind: 'ActivePolicyUpdate'; policy: ActivePolicy }
  | { kind: 'ActivePolicyRemove'; key: PolicyKey }
  | { kind: 'ActiveProfileUpdate'; profile: ActiveProfile }
  | { kind: 'ActiveProfileRemove'; id: ProfileId }
  | { kind: 'EndpointUpdate'; endpoint: LocalEndpoint }
  | { kind: 'EndpointRemove'; key: EndpointKey }
  | { kind: 'HostEndpointUpdate'; endpoint: LocalHostEndpoint }
  | { kind: 'HostEndpointRemove'; key: EndpointKey }
  | { kind: 'VTEPUpdate'; vtep: Vtep }
  | { kind: 'VTEPRemove'; node: string }
  | { kind: 'RouteUpdate'; route: RemoteBlockRoute }
  | { kind: 'RouteRemove'; dst: Cidr }
  | { kind: 'PoolUpdate'; pool: Pool }
  | { kind: 'PoolRemove'; cidr: Cidr }
  | { kind: 'HostConfigUpdate'; config: HostConfig }
  | { kind: 'InSync' };

export type MessageKind = DataplaneMessage['kind'];

/** Receives the graph's output; the sequencer implements it. */
export interface MessageSink {
  send(msg: DataplaneMessage): void;
}
