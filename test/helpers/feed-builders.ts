// Small builders for feed Updates, shaped the way the syncer sends them (syncer/convert.ts): keys
// `<node>/<orchestrator>/<namespace>/<pod>/<endpoint>`, `kns.<ns>`, `policy/<ns>/<name>`, ... with a
// `<cluster>/` prefix on keys and profile names of remote clusters; every endpoint carries the
// implicit labels (namespace, orchestrator, `fedmesh.io/cluster`); namespaces arrive as label-only
// profiles with `pcns.`-prefixed labels.
//
//   const u = wep({ node: 'a-node1', namespace: 'shop', pod: 'web-1', ips: ['10.10.0.5'], labels: { app: 'web' } });
//   graph.onUpdate(u);
//   graph.onUpdate(deletion(u));
//
// The local cluster is `a` unless `localCluster` says otherwise; an update whose `cluster` differs
// from it gets the remote prefixes.
import { createHash } from 'node:crypto';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import {
  Action,
  type EntityRule,
  EntityRuleSchema,
  HostEndpointSchema,
  IcmpSchema,
  IPAMBlockSchema,
  IPPoolSchema,
  NetworkSetSchema,
  NodeSchema,
  PolicySchema,
  PortRangeSchema,
  ProfileSchema,
  ResourceKind,
  type Rule,
  RuleSchema,
  ServiceAccountMatchSchema,
  TierSchema,
  type Update,
  UpdateSchema,
  WorkloadEndpointSchema,
} from '../../proto/service.ts';

export const LOCAL_CLUSTER = 'a';
export const CLUSTER_LABEL = 'fedmesh.io/cluster';
export const NAMESPACE_LABEL = 'projectcalico.org/namespace';
export const ORCHESTRATOR_LABEL = 'projectcalico.org/orchestrator';
export const SERVICE_ACCOUNT_LABEL = 'projectcalico.org/serviceaccount';

export type Labels = Record<string, string>;

/** Which cluster an update comes from and which cluster is local to the receiving agent. */
export interface ClusterOpts {
  /** Default: the local cluster. */
  cluster?: string;
  /** Default: LOCAL_CLUSTER ('a'). */
  localCluster?: string;
}

function clusterOf(o: ClusterOpts | undefined): { cluster: string; remote: boolean } {
  const cluster = o?.cluster ?? o?.localCluster ?? LOCAL_CLUSTER;
  return { cluster, remote: cluster !== (o?.localCluster ?? LOCAL_CLUSTER) };
}

/** `key`, or `<cluster>/key` for a remote cluster (the syncer's renaming). */
export function feedKey(key: string, o?: ClusterOpts): string {
  const { cluster, remote } = clusterOf(o);
  return remote ? `${cluster}/${key}` : key;
}

type Body = MessageInitShape<typeof UpdateSchema>['body'];

/** An update of any kind; `key` as its own cluster spells it (renamed here for a remote one). */
export function update(kind: ResourceKind, key: string, o: ClusterOpts | undefined, body: Body): Update {
  const { cluster } = clusterOf(o);
  return create(UpdateSchema, { key: feedKey(key, o), cluster, kind, body });
}

/** The delete of whatever `u` set: same key, cluster and kind, no body. */
export function deletion(u: Update): Update {
  return create(UpdateSchema, { key: u.key, cluster: u.cluster, kind: u.kind, deleted: true });
}

/** A delete by feed key (already prefixed for remote clusters). */
export function deleted(kind: ResourceKind, key: string, cluster = LOCAL_CLUSTER): Update {
  return create(UpdateSchema, { key, cluster, kind, deleted: true });
}

/** Calico's interface name for a pod: `cali` + the first 11 hex digits of SHA-1(`<ns>.<pod>`). */
export function caliInterfaceName(namespace: string, pod: string): string {
  return 'cali' + createHash('sha1').update(`${namespace}.${pod}`).digest('hex').slice(0, 11);
}

// --- workload endpoints ---------------------------------------------------------------------

export interface WepOpts extends ClusterOpts {
  node: string;
  namespace?: string;
  pod: string;
  endpoint?: string;
  /** Addresses or CIDRs; a bare address becomes /32. */
  ips: readonly string[];
  /** The endpoint's own labels; the implicit ones are added unless `implicitLabels: false`. */
  labels?: Labels;
  implicitLabels?: boolean;
  /** Profile names as the local cluster spells them (`kns.shop`); remote ones get the prefix. */
  profiles?: readonly string[];
  serviceAccount?: string;
  /** Default: Calico's derived name. Empty string: none. */
  interfaceName?: string;
  ports?: readonly { name: string; protocol?: string; port: number }[];
}

/** The feed key of a workload endpoint (prefixed for a remote cluster). */
export function wepKey(o: Pick<WepOpts, 'node' | 'namespace' | 'pod' | 'endpoint'> & ClusterOpts): string {
  return feedKey(baseWepKey(o), o);
}

function baseWepKey(o: Pick<WepOpts, 'node' | 'namespace' | 'pod' | 'endpoint'>): string {
  return `${o.node}/k8s/${o.namespace ?? 'default'}/${o.pod}/${o.endpoint ?? 'eth0'}`;
}

export function wep(o: WepOpts): Update {
  const { cluster, remote } = clusterOf(o);
  const ns = o.namespace ?? 'default';
  const sa = o.serviceAccount ?? 'default';
  const labels: Labels =
    o.implicitLabels === false
      ? { ...o.labels }
      : {
          [NAMESPACE_LABEL]: ns,
          [ORCHESTRATOR_LABEL]: 'k8s',
          [SERVICE_ACCOUNT_LABEL]: sa,
          ...o.labels,
          [CLUSTER_LABEL]: cluster,
        };
  const profiles = (o.profiles ?? [`kns.${ns}`, `ksa.${ns}.${sa}`]).map((p) =>
    remote ? `${cluster}/${p}` : p,
  );
  return update(ResourceKind.WORKLOAD_ENDPOINT, baseWepKey(o), o, {
    case: 'workloadEndpoint',
    value: create(WorkloadEndpointSchema, {
      node: o.node,
      orchestrator: 'k8s',
      namespace: ns,
      pod: o.pod,
      endpoint: o.endpoint ?? 'eth0',
      interfaceName: o.interfaceName ?? caliInterfaceName(ns, o.pod),
      ipv4Nets: o.ips.map((ip) => (ip.includes('/') ? ip : `${ip}/32`)),
      profiles,
      labels,
      ports: (o.ports ?? []).map((p) => ({ name: p.name, protocol: p.protocol ?? 'TCP', port: p.port })),
      name: `${o.node}-k8s-${o.pod}-${o.endpoint ?? 'eth0'}`,
    }),
  });
}

// --- profiles -------------------------------------------------------------------------------

/** A plain Profile (labelsToApply, and rules for a local one). `name` as the local cluster spells it. */
export function profile(
  name: string,
  labels: Labels,
  o?: ClusterOpts,
  rules: { ingress?: readonly RuleInit[]; egress?: readonly RuleInit[] } = {},
): Update {
  return update(ResourceKind.PROFILE, name, o, {
    case: 'profile',
    value: create(ProfileSchema, {
      labels: { ...labels },
      inboundRules: (rules.ingress ?? []).map(rule),
      outboundRules: (rules.egress ?? []).map(rule),
    }),
  });
}

/**
 * A Namespace as the syncer sends it: profile `kns.<ns>` with `pcns.`-prefixed labels, allowing
 * everything in both directions for the local cluster (remote profiles carry labels only).
 */
export function namespace(name: string, labels: Labels = {}, o?: ClusterOpts): Update {
  const pl: Labels = {};
  for (const [k, v] of Object.entries(labels)) pl[`pcns.${k}`] = v;
  pl['pcns.projectcalico.org/name'] = name;
  const allow: RuleInit[] = [{ action: 'Allow' }];
  return profile(`kns.${name}`, pl, o, clusterOf(o).remote ? {} : { ingress: allow, egress: allow });
}

/** A ServiceAccount as the syncer sends it: profile `ksa.<ns>.<sa>` with `pcsa.`-prefixed labels. */
export function serviceAccount(ns: string, name: string, labels: Labels = {}, o?: ClusterOpts): Update {
  const pl: Labels = {};
  for (const [k, v] of Object.entries(labels)) pl[`pcsa.${k}`] = v;
  pl['pcsa.projectcalico.org/name'] = name;
  return profile(`ksa.${ns}.${name}`, pl, o);
}

// --- policies -------------------------------------------------------------------------------

/** A port: a number, a `[first, last]` range, or a name. */
export type PortInit = number | readonly [number, number] | string;

export interface EntityInit {
  selector?: string;
  notSelector?: string;
  namespaceSelector?: string;
  nets?: readonly string[];
  notNets?: readonly string[];
  ports?: readonly PortInit[];
  notPorts?: readonly PortInit[];
  serviceAccounts?: { names?: readonly string[]; selector?: string };
}

export type ActionName = 'Allow' | 'Deny' | 'Log' | 'Pass';

export interface RuleInit {
  action: ActionName;
  protocol?: string;
  notProtocol?: string;
  ipVersion?: number;
  icmp?: { type?: number; code?: number };
  notIcmp?: { type?: number; code?: number };
  source?: EntityInit;
  destination?: EntityInit;
}

const ACTIONS: Record<ActionName, Action> = {
  Allow: Action.ALLOW,
  Deny: Action.DENY,
  Log: Action.LOG,
  Pass: Action.PASS,
};

function portRanges(list: readonly PortInit[] | undefined) {
  return (list ?? []).map((p) =>
    typeof p === 'string'
      ? create(PortRangeSchema, { name: p })
      : typeof p === 'number'
        ? create(PortRangeSchema, { first: p, last: p })
        : create(PortRangeSchema, { first: p[0], last: p[1] }),
  );
}

export function entityRule(e: EntityInit = {}): EntityRule {
  return create(EntityRuleSchema, {
    selector: e.selector ?? '',
    notSelector: e.notSelector ?? '',
    namespaceSelector: e.namespaceSelector ?? '',
    nets: [...(e.nets ?? [])],
    notNets: [...(e.notNets ?? [])],
    ports: portRanges(e.ports),
    notPorts: portRanges(e.notPorts),
    serviceAccounts: e.serviceAccounts
      ? create(ServiceAccountMatchSchema, {
          names: [...(e.serviceAccounts.names ?? [])],
          selector: e.serviceAccounts.selector ?? '',
        })
      : undefined,
  });
}

function icmp(i: { type?: number; code?: number } | undefined) {
  if (!i) return undefined;
  return create(IcmpSchema, {
    hasType: i.type !== undefined,
    type: i.type ?? 0,
    hasCode: i.code !== undefined,
    code: i.code ?? 0,
  });
}

export function rule(r: RuleInit): Rule {
  return create(RuleSchema, {
    action: ACTIONS[r.action],
    protocol: r.protocol ?? '',
    notProtocol: r.notProtocol ?? '',
    ipVersion: r.ipVersion ?? 0,
    icmp: icmp(r.icmp),
    notIcmp: icmp(r.notIcmp),
    source: entityRule(r.source),
    destination: entityRule(r.destination),
  });
}

export interface PolicyOpts extends ClusterOpts {
  name: string;
  /** A NetworkPolicy when set, a GlobalNetworkPolicy when not. */
  namespace?: string;
  tier?: string;
  order?: number;
  selector?: string;
  /** Default as Calico: Ingress always, Egress when there are egress rules. */
  types?: readonly ('Ingress' | 'Egress')[];
  ingress?: readonly RuleInit[];
  egress?: readonly RuleInit[];
  /** Host endpoint policy kinds (GlobalNetworkPolicy). */
  applyOnForward?: boolean;
  preDNAT?: boolean;
  doNotTrack?: boolean;
}

/** The feed key of a policy: `policy/<ns>/<name>` or `globalpolicy/<name>`. */
export function policyFeedKey(o: Pick<PolicyOpts, 'name' | 'namespace'> & ClusterOpts): string {
  return feedKey(o.namespace ? `policy/${o.namespace}/${o.name}` : `globalpolicy/${o.name}`, o);
}

export function policy(o: PolicyOpts): Update {
  const types = o.types ?? (o.egress?.length ? ['Ingress', 'Egress'] : ['Ingress']);
  const key = o.namespace ? `policy/${o.namespace}/${o.name}` : `globalpolicy/${o.name}`;
  return update(ResourceKind.POLICY, key, o, {
    case: 'policy',
    value: create(PolicySchema, {
      name: o.name,
      namespace: o.namespace ?? '',
      tier: o.tier ?? 'default',
      hasOrder: o.order !== undefined,
      order: o.order ?? 0,
      selector: o.selector ?? 'all()',
      ingress: types.includes('Ingress'),
      egress: types.includes('Egress'),
      ingressRules: (o.ingress ?? []).map(rule),
      egressRules: (o.egress ?? []).map(rule),
      applyOnForward: o.applyOnForward ?? false,
      preDnat: o.preDNAT ?? false,
      doNotTrack: o.doNotTrack ?? false,
    }),
  });
}

/** A HostEndpoint as the syncer sends it (its feed key `hostendpoint/<name>`, prefixed when remote). */
export function hostEndpoint(
  o: {
    name: string;
    node: string;
    interfaceName?: string;
    ips?: readonly string[];
    labels?: Labels;
    profiles?: readonly string[];
  } & ClusterOpts,
): Update {
  const { cluster, remote } = clusterOf(o);
  return update(ResourceKind.HOST_ENDPOINT, `hostendpoint/${o.name}`, o, {
    case: 'hostEndpoint',
    value: create(HostEndpointSchema, {
      node: o.node,
      interfaceName: o.interfaceName ?? '',
      expectedIpv4s: [...(o.ips ?? [])],
      profiles: (o.profiles ?? []).map((p) => (remote ? `${cluster}/${p}` : p)),
      labels: { ...o.labels, [CLUSTER_LABEL]: cluster },
      name: o.name,
    }),
  });
}

// --- network sets ---------------------------------------------------------------------------

export function networkSet(
  o: { name: string; namespace?: string; nets: readonly string[]; labels?: Labels } & ClusterOpts,
): Update {
  const { cluster } = clusterOf(o);
  const key = o.namespace ? `networkset/${o.namespace}/${o.name}` : `globalnetworkset/${o.name}`;
  return update(ResourceKind.NETWORK_SET, key, o, {
    case: 'networkSet',
    value: create(NetworkSetSchema, {
      namespace: o.namespace ?? '',
      nets: [...o.nets],
      labels: { ...o.labels, [CLUSTER_LABEL]: cluster },
      name: o.name,
    }),
  });
}

// --- overlay: pools, blocks, nodes ----------------------------------------------------------

export function pool(
  o: {
    name: string;
    cidr: string;
    natOutgoing?: boolean;
    disabled?: boolean;
    blockSize?: number;
  } & ClusterOpts,
): Update {
  return update(ResourceKind.IP_POOL, `ippool/${o.name}`, o, {
    case: 'ipPool',
    value: create(IPPoolSchema, {
      cidr: o.cidr,
      natOutgoing: o.natOutgoing ?? false,
      disabled: o.disabled ?? false,
      vxlanMode: 'Always',
      blockSize: o.blockSize ?? 26,
      name: o.name,
    }),
  });
}

/** A policy tier with an order (Calico: lower first; the default tier is 1,000,000). */
export function tier(name: string, order?: number, defaultAction: 'Deny' | 'Pass' = 'Deny'): Update {
  return update(
    ResourceKind.TIER,
    `tier/${name}`,
    {},
    {
      case: 'tier',
      value: create(TierSchema, { name, hasOrder: order !== undefined, order: order ?? 0, defaultAction }),
    },
  );
}

/** An IPAM block affine to `node`; its key is derived from the CIDR as Calico names blocks. */
export function block(o: { cidr: string; node: string } & ClusterOpts): Update {
  const name = o.cidr.replace(/[./]/g, '-');
  return update(ResourceKind.IPAM_BLOCK, `ipamblock/${name}`, o, {
    case: 'ipamBlock',
    value: create(IPAMBlockSchema, { cidr: o.cidr, affinityNode: o.node }),
  });
}

export interface NodeOpts extends ClusterOpts {
  name: string;
  /** Node IP (no prefix). */
  ip?: string;
  prefixLen?: number;
  tunnelIp?: string;
  mac?: string;
}

export function node(o: NodeOpts): Update {
  return update(ResourceKind.NODE, `node/${o.name}`, o, {
    case: 'node',
    value: create(NodeSchema, {
      name: o.name,
      ipv4Address: o.ip ?? '',
      ipv4PrefixLen: o.prefixLen ?? (o.ip ? 24 : 0),
      vxlanTunnelAddress: o.tunnelIp ?? '',
      vxlanTunnelMac: o.mac ?? '',
    }),
  });
}
