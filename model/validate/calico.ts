// The projectcalico.org/v3 kinds (and the crd.projectcalico.org/v1 IPPool and IPAMBlock).
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { cidrsOverlap, parseCidr, parseCidrParts, parseIp4 } from '../net.ts';
import { LABEL_NAMESPACE, LABEL_ORCHESTRATOR, LABEL_SERVICE_ACCOUNT } from '../pod.ts';
import type {
  GlobalNetworkPolicy,
  GlobalNetworkSet,
  HostEndpoint,
  IPAMBlock,
  IPPool,
  NetworkPolicy,
  NetworkSet,
  Node,
  Profile,
  RemoteClusterConfiguration,
  Tier,
  WorkloadEndpoint,
} from '../resources.ts';
import {
  checkBool,
  checked,
  checkInt,
  enumSchema,
  FieldError,
  isMapping,
  labelsSchema,
  nameSchema,
  requireString,
} from './common.ts';
import {
  addressList,
  checkCidr,
  checkIp4,
  checkIpNetwork,
  cidrSchema,
  ip4Schema,
  isIPv6,
  macSchema,
  namedPortSchema,
} from './fields.ts';
import { defineKind, type KindHandler } from './kind.ts';
import { policySpecSchema } from './policy.ts';

const str = checked(requireString);
const optStr = str.optional();
const stringList = z.array(str).default([]);
const bool = (dflt: boolean) => checked(checkBool).default(dflt);

/** Linux interface names: at most 15 characters (Calico's rule). */
const interfaceName = checked((v) => {
  const s = requireString(v);
  if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(s)) {
    throw new FieldError(`"${s}" is not an interface name (at most 15 letters, digits, '_', '.' or '-')`);
  }
  return s;
});

/** A node's name, as Kubernetes names nodes (a DNS subdomain): a 3 MB name goes no further. */
const nodeName = nameSchema('subdomain');

const specOf = <T>(spec: z.ZodType<T>) => z.object({ spec: spec.prefault({}) });

/**
 * Calico fields fedmesh does not use and that cannot widen what it enforces: known (so strict
 * decoding accepts them), never read.
 */
const ignored = (...names: string[]) => Object.fromEntries(names.map((n) => [n, z.unknown().optional()]));

// ---------------------------------------------------------------------------------------------
// Endpoints

const wepSpec = z
  .object({
    orchestrator: str.default('k8s'),
    workload: optStr,
    node: nodeName,
    pod: optStr,
    endpoint: str.default('eth0'),
    interfaceName,
    ipNetworks: addressList(checkIpNetwork, true),
    profiles: stringList,
    serviceAccountName: optStr,
    ports: z.array(namedPortSchema).default([]),
    mac: macSchema.optional(),
    ...ignored(
      'containerID',
      'ipNATs',
      'ipv4Gateway',
      'ipv6Gateway',
      'allowSpoofedSourcePrefixes',
      'qosControls',
    ),
  })
  .superRefine((s, ctx) => {
    if (s.pod === undefined && s.workload === undefined) {
      ctx.addIssue({ code: 'custom', message: 'required (or spec.workload)', path: ['pod'] });
    }
  });

const workloadEndpoint = defineKind({
  namespaced: true,
  nameRule: 'subdomain',
  body: specOf(wepSpec),
  build(meta, { spec }): WorkloadEndpoint {
    const namespace = meta.namespace as string;
    // Calico's implicit labels, so selectors on them work for hand-written endpoints too.
    const labels: Record<string, string> = { ...meta.labels };
    labels[LABEL_NAMESPACE] ??= namespace;
    labels[LABEL_ORCHESTRATOR] ??= spec.orchestrator;
    if (spec.serviceAccountName !== undefined) labels[LABEL_SERVICE_ACCOUNT] ??= spec.serviceAccountName;
    return {
      kind: 'WorkloadEndpoint',
      ...meta,
      namespace,
      labels,
      spec: {
        orchestrator: spec.orchestrator,
        node: spec.node,
        pod: spec.pod ?? (spec.workload as string),
        endpoint: spec.endpoint,
        interfaceName: spec.interfaceName,
        ipNetworks: spec.ipNetworks,
        profiles: spec.profiles,
        ...(spec.serviceAccountName !== undefined ? { serviceAccountName: spec.serviceAccountName } : {}),
        ports: spec.ports,
        ...(spec.mac !== undefined ? { mac: spec.mac } : {}),
      },
    };
  },
});

const hepSpec = z
  .object({
    node: nodeName,
    interfaceName: checked((v) => (v === '*' ? '*' : requireString(v))).optional(),
    expectedIPs: addressList(checkIp4, true),
    profiles: stringList,
    ports: z.array(namedPortSchema).default([]),
  })
  .superRefine((s, ctx) => {
    if (s.interfaceName === undefined && s.expectedIPs.length === 0) {
      ctx.addIssue({
        code: 'custom',
        message: 'interfaceName or expectedIPs is required',
        path: ['interfaceName'],
      });
    }
  });

const hostEndpoint = defineKind({
  namespaced: false,
  nameRule: 'subdomain',
  body: specOf(hepSpec),
  build(meta, { spec }): HostEndpoint {
    return {
      kind: 'HostEndpoint',
      ...meta,
      spec: {
        node: spec.node,
        ...(spec.interfaceName !== undefined ? { interfaceName: spec.interfaceName } : {}),
        expectedIPs: spec.expectedIPs,
        profiles: spec.profiles,
        ports: spec.ports,
      },
    };
  },
});

// ---------------------------------------------------------------------------------------------
// Profiles, policies, network sets

const profile = defineKind({
  namespaced: false,
  nameRule: 'subdomain',
  // A profile's rules are not modelled: profiles carry labels (kns.*/ksa.* and remote ones).
  body: specOf(z.object({ labelsToApply: labelsSchema, ...ignored('ingress', 'egress') })),
  build: (meta, { spec }): Profile => ({
    kind: 'Profile',
    ...meta,
    spec: { labelsToApply: spec.labelsToApply },
  }),
});

const networkPolicy = defineKind({
  namespaced: true,
  nameRule: 'policy',
  body: specOf(policySpecSchema),
  build: (meta, { spec }): NetworkPolicy => ({
    kind: 'NetworkPolicy',
    ...meta,
    namespace: meta.namespace as string,
    spec,
  }),
});

const globalNetworkPolicy = defineKind({
  namespaced: false,
  nameRule: 'policy',
  body: specOf(policySpecSchema),
  build: (meta, { spec }): GlobalNetworkPolicy => ({ kind: 'GlobalNetworkPolicy', ...meta, spec }),
});

// IPv6 members are dropped: they cannot match IPv4 traffic, and mixed sets are common.
const tier = defineKind({
  namespaced: false,
  nameRule: 'subdomain',
  body: specOf(
    z.object({
      order: z.number().finite().min(0).optional(),
      // A tier whose default is Pass would need a pass-through fedmesh does not implement.
      defaultAction: enumSchema(['Deny'] as const).optional(),
    }),
  ),
  build: (meta, { spec }): Tier => ({
    kind: 'Tier',
    ...meta,
    spec: spec.order === undefined ? {} : { order: spec.order },
  }),
});

const netSetSpec = z.object({ nets: addressList(checkCidr, true) });

const networkSet = defineKind({
  namespaced: true,
  nameRule: 'subdomain',
  body: specOf(netSetSpec),
  build: (meta, { spec }): NetworkSet => ({
    kind: 'NetworkSet',
    ...meta,
    namespace: meta.namespace as string,
    spec: { nets: spec.nets },
  }),
});

const globalNetworkSet = defineKind({
  namespaced: false,
  nameRule: 'subdomain',
  body: specOf(netSetSpec),
  build: (meta, { spec }): GlobalNetworkSet => ({
    kind: 'GlobalNetworkSet',
    ...meta,
    spec: { nets: spec.nets },
  }),
});

// ---------------------------------------------------------------------------------------------
// IP pools, blocks, nodes

/** IPv6 pools and blocks are skipped (listed once), not refused: dual-stack clusters have them. */
function skipIPv6Cidr(obj: Record<string, unknown>): string | undefined {
  const spec = obj.spec;
  return isMapping(spec) && typeof spec.cidr === 'string' && isIPv6(spec.cidr)
    ? 'IPv6 (fedmesh supports IPv4 only)'
    : undefined;
}

const ENCAP_MODES = ['Always', 'CrossSubnet', 'Never'] as const;
const LINK_LOCAL = parseCidr('169.254.0.0/16');

const ipPoolSpec = z
  .object({
    cidr: cidrSchema,
    vxlanMode: enumSchema(ENCAP_MODES).default('Never'),
    ipipMode: enumSchema(ENCAP_MODES).default('Never'),
    natOutgoing: bool(false),
    disabled: bool(false),
    blockSize: checked((v) => checkInt(v, 20, 32)).default(26),
    // Which nodes allocate from the pool and BGP export: no bearing on routing between clusters.
    ...ignored(
      'nodeSelector',
      'allowedUses',
      'disableBGPExport',
      'assignmentMode',
      'awsSubnetID',
      'ipip',
      'nat-outgoing',
    ),
  })
  .superRefine((s, ctx) => {
    const { len } = parseCidrParts(s.cidr);
    if (!s.disabled && len > s.blockSize) {
      ctx.addIssue({
        code: 'custom',
        message: `pool /${len} is smaller than its blockSize /${s.blockSize}`,
        path: ['cidr'],
      });
    }
    if (cidrsOverlap(s.cidr, LINK_LOCAL)) {
      ctx.addIssue({
        code: 'custom',
        message: 'overlaps the link-local range 169.254.0.0/16',
        path: ['cidr'],
      });
    }
    if (s.vxlanMode !== 'Never' && s.ipipMode !== 'Never') {
      ctx.addIssue({
        code: 'custom',
        message: 'vxlanMode and ipipMode cannot both be enabled',
        path: ['vxlanMode'],
      });
    }
  });

const ipPool = defineKind({
  namespaced: false,
  nameRule: 'subdomain',
  body: specOf(ipPoolSpec),
  skip: skipIPv6Cidr,
  build: (meta, { spec }): IPPool => ({ kind: 'IPPool', ...meta, spec }),
});

const ipamBlockSpec = z.object({
  cidr: cidrSchema,
  affinity: checked((v) => {
    if (typeof v !== 'string') throw new FieldError('expected a string like "host:<node>"');
    if (v.startsWith('host:') && v.length === 5) throw new FieldError('"host:" names no node');
    return v;
  }).optional(),
  // IPAM bookkeeping (crd.projectcalico.org/v1): which addresses are allocated, to whom.
  ...ignored(
    'affinityClaimTime',
    'allocations',
    'unallocated',
    'attributes',
    'deleted',
    'strictAffinity',
    'sequenceNumber',
    'sequenceNumberForAllocation',
  ),
});

const ipamBlock = defineKind({
  namespaced: false,
  nameRule: 'subdomain',
  body: specOf(ipamBlockSpec),
  skip: skipIPv6Cidr,
  build(meta, { spec }): IPAMBlock {
    // Only host affinity places a block on a node; other affinities (e.g. virtual:) do not route.
    const node = spec.affinity?.startsWith('host:') ? spec.affinity.slice(5) : undefined;
    return { kind: 'IPAMBlock', ...meta, spec: { cidr: spec.cidr, ...(node ? { affinityNode: node } : {}) } };
  },
});

/** `a.b.c.d/len` (the node's address on its subnet: host bits expected) or a bare address. */
const nodeAddress = checked((v) => {
  const s = requireString(v).trim();
  if (isIPv6(s)) throw new FieldError(`"${s}" is IPv6; fedmesh supports IPv4 only`);
  const { len } = parseCidrParts(s, true);
  const [addr, lenStr] = s.split('/');
  return { address: parseIp4(addr ?? ''), prefixLen: lenStr === undefined ? undefined : len };
});

const nodeSpec = z.object({
  bgp: z
    .object({
      ipv4Address: nodeAddress.optional(),
      ...ignored('ipv6Address', 'ipv4IPIPTunnelAddr', 'asNumber', 'routeReflectorClusterID'),
    })
    .optional(),
  ipv4VXLANTunnelAddr: ip4Schema.optional(),
  vxlanTunnelMACAddr: macSchema.optional(),
  ...ignored('ipv6VXLANTunnelAddr', 'vxlanTunnelMACAddrV6', 'orchRefs', 'wireguard', 'addresses'),
});

const node = defineKind({
  namespaced: false,
  nameRule: 'subdomain',
  body: specOf(nodeSpec),
  build(meta, { spec }): Node {
    const addr = spec.bgp?.ipv4Address;
    return {
      kind: 'Node',
      ...meta,
      spec: {
        ...(addr ? { ipv4Address: addr.address } : {}),
        ...(addr?.prefixLen !== undefined ? { ipv4PrefixLen: addr.prefixLen } : {}),
        ...(spec.ipv4VXLANTunnelAddr ? { vxlanTunnelAddress: spec.ipv4VXLANTunnelAddr } : {}),
        ...(spec.vxlanTunnelMACAddr ? { vxlanTunnelMac: spec.vxlanTunnelMACAddr } : {}),
      },
    };
  },
});

// ---------------------------------------------------------------------------------------------
// RemoteClusterConfiguration

/** Calico writes etcdEndpoints as one comma-separated string; a list is accepted too. */
const etcdEndpoints = checked((v) => {
  const items = Array.isArray(v) ? v : typeof v === 'string' ? v.split(',') : undefined;
  if (!items) throw new FieldError('expected a comma-separated string of URLs');
  const urls = items.map((x) => requireString(typeof x === 'string' ? x.trim() : x)).filter(Boolean);
  for (const u of urls) {
    if (!/^https?:\/\/[^/\s]+/.test(u)) throw new FieldError(`"${u}" is not an http(s) URL`);
  }
  return urls;
});

const rccSpec = z
  .object({
    datastoreType: enumSchema(['file', 'etcdv3', 'kubernetes'] as const).optional(),
    fileDatastorePath: optStr,
    etcdEndpoints: etcdEndpoints.optional(),
    kubeconfig: optStr,
    clusterAccessSecret: z.object({ name: str, namespace: optStr }).optional(),
    syncOptions: z
      .object({ overlayRoutingMode: enumSchema(['Enabled', 'Disabled'] as const).default('Disabled') })
      .prefault({}),
  })
  .superRefine((s, ctx) => {
    const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', message, path: [path] });
    const type = rccDatastoreType(s);
    if (type === undefined) issue('datastoreType', 'required (file, etcdv3 or kubernetes)');
    if (type === 'file' && !s.fileDatastorePath)
      issue('fileDatastorePath', 'required when datastoreType is file');
    if (type === 'etcdv3' && !s.etcdEndpoints?.length)
      issue('etcdEndpoints', 'required when datastoreType is etcdv3');
    if (type === 'kubernetes' && !s.kubeconfig && !s.clusterAccessSecret) {
      issue('kubeconfig', 'kubeconfig or clusterAccessSecret is required when datastoreType is kubernetes');
    }
  });

/** A clusterAccessSecret holds a kubeconfig: without an explicit type it means kubernetes. */
function rccDatastoreType(s: {
  datastoreType?: RemoteClusterConfiguration['spec']['datastoreType'];
  clusterAccessSecret?: unknown;
}) {
  return s.datastoreType ?? (s.clusterAccessSecret ? 'kubernetes' : undefined);
}

const remoteClusterConfiguration = defineKind({
  namespaced: false,
  nameRule: 'subdomain',
  body: specOf(rccSpec),
  build(meta, { spec }, ctx): RemoteClusterConfiguration {
    // Relative paths are relative to the directory holding the RCC's file, not to the cwd.
    const abs = (p: string) => (isAbsolute(p) ? p : resolve(ctx.baseDir, p));
    const secret = spec.clusterAccessSecret;
    return {
      kind: 'RemoteClusterConfiguration',
      ...meta,
      spec: {
        datastoreType: rccDatastoreType(spec) as RemoteClusterConfiguration['spec']['datastoreType'],
        ...(spec.fileDatastorePath ? { fileDatastorePath: abs(spec.fileDatastorePath) } : {}),
        ...(spec.etcdEndpoints ? { etcdEndpoints: spec.etcdEndpoints } : {}),
        ...(spec.kubeconfig ? { kubeconfig: abs(spec.kubeconfig) } : {}),
        ...(secret
          ? {
              clusterAccessSecret: {
                name: secret.name,
                ...(secret.namespace ? { namespace: secret.namespace } : {}),
              },
            }
          : {}),
        overlayRouting: spec.syncOptions.overlayRoutingMode === 'Enabled',
      },
    };
  },
});

export const calicoV3: Record<string, KindHandler> = {
  WorkloadEndpoint: workloadEndpoint,
  HostEndpoint: hostEndpoint,
  Profile: profile,
  NetworkPolicy: networkPolicy,
  GlobalNetworkPolicy: globalNetworkPolicy,
  Tier: tier,
  NetworkSet: networkSet,
  GlobalNetworkSet: globalNetworkSet,
  IPPool: ipPool,
  IPAMBlock: ipamBlock,
  Node: node,
  RemoteClusterConfiguration: remoteClusterConfiguration,
};

export const calicoCrdV1: Record<string, KindHandler> = {
  IPPool: ipPool,
  IPAMBlock: ipamBlock,
};
