// Datastore resources → feed updates. This is where a cluster's objects get their mesh-wide
// identity: remote keys, profile names, node names and block affinities gain a `<cluster>/` prefix
// (as Calico's remote-cluster syncer does, so two clusters may each have a `worker-1`), every
// endpoint gets the `fedmesh.io/cluster` label, namespaces and service accounts become profiles (a
// namespace's `kns.<ns>` allows all, as Calico's kube-controllers writes it). What a remote never
// sends, Calico never federates: policies, tiers, profile rules, NetworkSets and GlobalNetworkSets
// (a remote must not put CIDRs or rules into the local cluster).
import { create } from '@bufbuild/protobuf';
import type {
  IcmpSpec,
  Labels,
  EntityRule as MEntityRule,
  Rule as MRule,
  PortSpec,
  Resource,
} from '../model/resources.ts';
import {
  Action,
  EntityRuleSchema,
  HostEndpointSchema,
  IcmpSchema,
  IPAMBlockSchema,
  IPPoolSchema,
  NamedPortSchema,
  NetworkSetSchema,
  NodeSchema,
  PolicySchema,
  PortRangeSchema,
  ProfileSchema,
  ResourceKind,
  RuleSchema,
  TierSchema,
  type Update,
  UpdateSchema,
  WorkloadEndpointSchema,
} from '../proto/service.ts';

export const CLUSTER_LABEL = 'fedmesh.io/cluster';

export interface ConvertContext {
  cluster: string;
  /** Remote clusters' keys and profiles are prefixed; the local cluster's are not. */
  remote: boolean;
}

function prefix(ctx: ConvertContext, key: string): string {
  return ctx.remote ? `${ctx.cluster}/${key}` : key;
}

/**
 * An endpoint's labels with the cluster's: Object.assign, not a spread literal (a spread clone that
 * then grows gets slow, unshared shapes; see agent/calc/item-index.ts), one copy kept per endpoint.
 */
function withCluster(labels: Labels, ctx: ConvertContext): Record<string, string> {
  const out: Record<string, string> = Object.assign({}, labels);
  out[CLUSTER_LABEL] = ctx.cluster;
  return out;
}

function prefixed(labels: Labels, pre: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) out[pre + k] = v;
  return out;
}

const ACTIONS = { Allow: Action.ALLOW, Deny: Action.DENY, Log: Action.LOG, Pass: Action.PASS } as const;

function ports(list: readonly PortSpec[]) {
  return list.map((p) =>
    p.kind === 'name'
      ? create(PortRangeSchema, { name: p.name })
      : create(PortRangeSchema, { first: p.first, last: p.last }),
  );
}

function entity(e: MEntityRule) {
  return create(EntityRuleSchema, {
    selector: e.selector ?? '',
    notSelector: e.notSelector ?? '',
    namespaceSelector: e.namespaceSelector ?? '',
    nets: e.nets,
    notNets: e.notNets,
    ports: ports(e.ports),
    notPorts: ports(e.notPorts),
    serviceAccounts: e.serviceAccounts
      ? { names: e.serviceAccounts.names, selector: e.serviceAccounts.selector ?? '' }
      : undefined,
  });
}

function icmp(i: IcmpSpec | undefined) {
  if (!i) return undefined;
  return create(IcmpSchema, {
    hasType: i.type !== undefined,
    type: i.type ?? 0,
    hasCode: i.code !== undefined,
    code: i.code ?? 0,
  });
}

function rule(r: MRule) {
  return create(RuleSchema, {
    action: ACTIONS[r.action],
    protocol: r.protocol ?? '',
    notProtocol: r.notProtocol ?? '',
    ipVersion: r.ipVersion ?? 0,
    icmp: icmp(r.icmp),
    notIcmp: icmp(r.notICMP),
    source: entity(r.source),
    destination: entity(r.destination),
  });
}

function allowAll() {
  return create(RuleSchema, { action: Action.ALLOW });
}

/** The feed key a resource has (without the cluster prefix), by kind. */
export function baseKey(r: Resource): string {
  switch (r.kind) {
    case 'WorkloadEndpoint':
      // join, not a template: one flat string, where a template leaves a chain of five
      // concatenations behind in every endpoint's key.
      return [r.spec.node, r.spec.orchestrator, r.namespace, r.spec.pod, r.spec.endpoint].join('/');
    case 'HostEndpoint':
      return `hostendpoint/${r.name}`;
    case 'Namespace':
      return `kns.${r.name}`;
    case 'ServiceAccount':
      return `ksa.${r.namespace}.${r.name}`;
    case 'Profile':
      return r.name;
    case 'NetworkPolicy':
      return `policy/${r.namespace}/${r.name}`;
    case 'GlobalNetworkPolicy':
      return `globalpolicy/${r.name}`;
    case 'NetworkSet':
      return `networkset/${r.namespace}/${r.name}`;
    case 'GlobalNetworkSet':
      return `globalnetworkset/${r.name}`;
    case 'Tier':
      return `tier/${r.name}`;
    case 'IPPool':
      return `ippool/${r.name}`;
    case 'IPAMBlock':
      return `ipamblock/${r.name}`;
    case 'Node':
      return `node/${r.name}`;
    case 'RemoteClusterConfiguration':
      return `rcc/${r.name}`;
    case 'Service':
    case 'Endpoints':
    case 'EndpointSlice':
    case 'ServiceExport':
    case 'ServiceImport':
      return `${r.kind.toLowerCase()}/${r.namespace}/${r.name}`;
    case 'Secret':
      return `secret/${r.namespace}/${r.name}`;
  }
}

/**
 * The feed update for a resource, or undefined when the resource is not part of the feed (RCCs,
 * which the syncer itself consumes; remote policies, which are never federated).
 */
export function toUpdate(ctx: ConvertContext, r: Resource): Update | undefined {
  const key = prefix(ctx, baseKey(r));
  // create(UpdateSchema, …) written out (the body's value is a message already): every field in
  // the object itself, as for the endpoint below.
  const u = (kind: ResourceKind, body: Update['body']): Update => ({
    $typeName: UpdateSchema.typeName,
    key,
    cluster: ctx.cluster,
    deleted: false,
    kind,
    body,
  });
  switch (r.kind) {
    case 'WorkloadEndpoint':
      // create(WorkloadEndpointSchema, …) written out, every field in schema order: a big
      // cluster is mostly endpoints, and create() adds the fields one by one into a second array
      // (a fifth more memory per endpoint). test/unit/syncer-convert.test.ts holds it equal to
      // the decoded message.
      return u(ResourceKind.WORKLOAD_ENDPOINT, {
        case: 'workloadEndpoint',
        value: {
          $typeName: WorkloadEndpointSchema.typeName,
          node: prefix(ctx, r.spec.node),
          orchestrator: r.spec.orchestrator,
          namespace: r.namespace,
          pod: r.spec.pod,
          endpoint: r.spec.endpoint,
          interfaceName: r.spec.interfaceName,
          ipv4Nets: r.spec.ipNetworks,
          profiles: ctx.remote ? r.spec.profiles.map((p) => prefix(ctx, p)) : r.spec.profiles,
          labels: withCluster(r.labels, ctx),
          ports: r.spec.ports.map((p) =>
            create(NamedPortSchema, { name: p.name, protocol: p.protocol, port: p.port }),
          ),
          mac: r.spec.mac ?? '',
          name: r.name,
        },
      });
    case 'HostEndpoint':
      return u(ResourceKind.HOST_ENDPOINT, {
        case: 'hostEndpoint',
        value: create(HostEndpointSchema, {
          node: prefix(ctx, r.spec.node),
          interfaceName: r.spec.interfaceName ?? '',
          expectedIpv4s: r.spec.expectedIPs,
          profiles: ctx.remote ? r.spec.profiles.map((p) => prefix(ctx, p)) : r.spec.profiles,
          labels: withCluster(r.labels, ctx),
          ports: r.spec.ports.map((p) => ({ name: p.name, protocol: p.protocol, port: p.port })),
          name: r.name,
        }),
      });
    case 'Namespace':
      return u(ResourceKind.PROFILE, {
        case: 'profile',
        value: create(ProfileSchema, {
          labels: { ...prefixed(r.labels, 'pcns.'), 'pcns.projectcalico.org/name': r.name },
          // Kubernetes' default: a pod no policy selects is open. Felix gets it from this profile.
          ...(ctx.remote ? {} : { inboundRules: [allowAll()], outboundRules: [allowAll()] }),
        }),
      });
    case 'ServiceAccount':
      return u(ResourceKind.PROFILE, {
        case: 'profile',
        value: create(ProfileSchema, {
          labels: { ...prefixed(r.labels, 'pcsa.'), 'pcsa.projectcalico.org/name': r.name },
        }),
      });
    case 'Profile':
      return u(ResourceKind.PROFILE, {
        case: 'profile',
        value: create(ProfileSchema, {
          labels: { ...r.spec.labelsToApply },
          ...(ctx.remote
            ? {}
            : {
                inboundRules: (r.spec.ingress ?? []).map(rule),
                outboundRules: (r.spec.egress ?? []).map(rule),
              }),
        }),
      });
    case 'NetworkPolicy':
    case 'GlobalNetworkPolicy': {
      if (ctx.remote) return undefined;
      const s = r.spec;
      return u(ResourceKind.POLICY, {
        case: 'policy',
        value: create(PolicySchema, {
          name: r.name,
          namespace: r.kind === 'NetworkPolicy' ? r.namespace : '',
          tier: s.tier,
          hasOrder: s.order !== undefined,
          order: s.order ?? 0,
          selector: s.selector,
          ingress: s.types.ingress,
          egress: s.types.egress,
          ingressRules: s.ingress.map(rule),
          egressRules: s.egress.map(rule),
          applyOnForward: s.applyOnForward ?? false,
          preDnat: s.preDNAT ?? false,
          doNotTrack: s.doNotTrack ?? false,
        }),
      });
    }
    case 'NetworkSet':
    case 'GlobalNetworkSet':
      if (ctx.remote) return undefined;
      return u(ResourceKind.NETWORK_SET, {
        case: 'networkSet',
        value: create(NetworkSetSchema, {
          namespace: r.kind === 'NetworkSet' ? r.namespace : '',
          nets: r.spec.nets,
          labels: withCluster(r.labels, ctx),
          name: r.name,
        }),
      });
    case 'IPPool':
      return u(ResourceKind.IP_POOL, {
        case: 'ipPool',
        value: create(IPPoolSchema, {
          cidr: r.spec.cidr,
          natOutgoing: r.spec.natOutgoing,
          disabled: r.spec.disabled,
          vxlanMode: r.spec.vxlanMode,
          blockSize: r.spec.blockSize,
          name: r.name,
        }),
      });
    case 'IPAMBlock':
      return u(ResourceKind.IPAM_BLOCK, {
        case: 'ipamBlock',
        value: create(IPAMBlockSchema, {
          cidr: r.spec.cidr,
          affinityNode: r.spec.affinityNode ? prefix(ctx, r.spec.affinityNode) : '',
        }),
      });
    case 'Node':
      return u(ResourceKind.NODE, {
        case: 'node',
        value: create(NodeSchema, {
          // `<cluster>/<node>` for a remote; a VTEP MAC the agent derives uses the node IP, never
          // the name, so every cluster computes the same MAC for it.
          name: prefix(ctx, r.name),
          ipv4Address: r.spec.ipv4Address ?? '',
          ipv4PrefixLen: r.spec.ipv4PrefixLen ?? 0,
          vxlanTunnelAddress: r.spec.vxlanTunnelAddress ?? '',
          vxlanTunnelMac: r.spec.vxlanTunnelMac ?? '',
        }),
      });
    case 'Tier':
      // Tiers order policies, and policies are never federated: remote tiers stay home.
      if (ctx.remote) return undefined;
      return u(ResourceKind.TIER, {
        case: 'tier',
        value: create(TierSchema, {
          name: r.name,
          hasOrder: r.spec.order !== undefined,
          order: r.spec.order ?? 0,
          defaultAction: r.spec.defaultAction ?? 'Deny',
        }),
      });
    case 'RemoteClusterConfiguration':
    case 'Secret':
      // Consumed by the syncer itself; a Secret's values never leave it.
      return undefined;
    // Services and their endpoints are the services controller's, not the agents'.
    case 'Service':
    case 'Endpoints':
    case 'EndpointSlice':
    case 'ServiceExport':
    case 'ServiceImport':
      return undefined;
  }
}

/** Overlay resources (pools, blocks, nodes) come from a remote only with overlay routing on. */
export function isOverlayKind(kind: Resource['kind']): boolean {
  return kind === 'IPPool' || kind === 'IPAMBlock' || kind === 'Node';
}
