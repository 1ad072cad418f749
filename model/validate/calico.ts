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
  NamedPort,
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
  checkName,
  describe,
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
  checkMac,
  checkPortName,
  checkProtocol,
  cidrSchema,
  ip4Schema,
  isIPv6,
  macSchema,
  namedPortSchema,
  protocolHasPorts,
} from './fields.ts';
import { defineKind, ENVELOPE_KEYS, type KindHandler, type ValidateResult } from './kind.ts';
import { policySpecSchema, ruleSchema } from './policy.ts';

const str = checked(requireString);
const optStr = str.optional();
const stringList = z.array(str).default([]);
const bool = (dflt: boolean) => checked(checkBool).default(dflt);

/** Linux interface names: at most 15 characters (Calico's rule). */
function checkInterfaceName(v: unknown): string {
  const s = requireString(v);
  if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(s)) {
    throw new FieldError(`"${s}" is not an interface name (at most 15 letters, digits, '_', '.' or '-')`);
  }
  return s;
}
const interfaceName = checked(checkInterfaceName);

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

const WEP_SPEC_KEYS = new Set(Object.keys(wepSpec.shape));

/**
 * The spec fields fastWorkloadEndpoint reads, or knows wepSpec ignores. A field added to wepSpec
 * and not here turns the fast path off (it would drop the field); validate-fast.test.ts fails
 * then, to say so.
 */
const WEP_FAST_FIELDS = [
  ...['orchestrator', 'workload', 'node', 'pod', 'endpoint', 'interfaceName', 'ipNetworks', 'profiles'],
  ...['serviceAccountName', 'ports', 'mac', 'containerID', 'ipNATs', 'ipv4Gateway', 'ipv6Gateway'],
  ...['allowSpoofedSourcePrefixes', 'qosControls'],
];
export const WEP_FAST_PATH_COMPLETE =
  WEP_FAST_FIELDS.length === WEP_SPEC_KEYS.size && WEP_FAST_FIELDS.every((k) => WEP_SPEC_KEYS.has(k));

const workloadEndpoint = defineKind({
  namespaced: true,
  nameRule: 'subdomain',
  body: specOf(wepSpec),
  ...(WEP_FAST_PATH_COMPLETE ? { fast: fastWorkloadEndpoint } : {}),
  build(meta, { spec }): WorkloadEndpoint {
    const namespace = meta.namespace as string;
    // Calico's implicit labels, so selectors on them work for hand-written endpoints too.
    // Object.assign, not spread: a spread clone that then grows gets slow, unshared shapes (see
    // agent/calc/item-index.ts), and the feed keeps a copy of these per endpoint.
    const labels: Record<string, string> = Object.assign({}, meta.labels);
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

/**
 * specOf(wepSpec) without zod, for valid endpoints (a big cluster is mostly these): the same
 * checks by the same functions, the same defaults; undefined at the first doubt (the schema then
 * says what is wrong). test/unit/validate-fast.test.ts holds it equal to the schema.
 */
function fastWorkloadEndpoint(obj: Record<string, unknown>): { spec: z.output<typeof wepSpec> } | undefined {
  for (const k of Object.keys(obj)) if (k !== 'spec' && !ENVELOPE_KEYS.has(k)) return undefined;
  const s = obj.spec;
  if (!isMapping(s)) return undefined;
  for (const k of Object.keys(s)) if (!WEP_SPEC_KEYS.has(k)) return undefined;
  try {
    // IPv6 addresses are dropped, as addressList(…, true) drops them.
    const ipNetworks = fastList(s.ipNetworks, checkIpNetwork, (v) => typeof v === 'string' && isIPv6(v));
    const profiles = fastList(s.profiles, requireString);
    const ports = fastList(s.ports, fastNamedPort);
    if (!ipNetworks || !profiles || !ports) return undefined;
    const spec = {
      orchestrator: s.orchestrator === undefined ? 'k8s' : requireString(s.orchestrator),
      workload: s.workload === undefined ? undefined : requireString(s.workload),
      node: checkName('subdomain', s.node),
      pod: s.pod === undefined ? undefined : requireString(s.pod),
      endpoint: s.endpoint === undefined ? 'eth0' : requireString(s.endpoint),
      interfaceName: checkInterfaceName(s.interfaceName),
      ipNetworks,
      profiles,
      serviceAccountName:
        s.serviceAccountName === undefined ? undefined : requireString(s.serviceAccountName),
      ports,
      mac: s.mac === undefined ? undefined : checkMac(s.mac),
    };
    if (spec.pod === undefined && spec.workload === undefined) return undefined;
    return { spec };
  } catch {
    return undefined;
  }
}

/**
 * `z.array(…).default([])`: absent is empty, anything but a list is the schema's to refuse; items
 * `dropped` are left out. Made by map, at its exact size: an array grown by push keeps room for
 * 17 items, 13 MB over 100,000 endpoints' one-address lists (which the feed keeps).
 */
function fastList<T>(
  v: unknown,
  read: (item: unknown) => T,
  dropped?: (item: unknown) => boolean,
): T[] | undefined {
  if (v === undefined) return [];
  if (!Array.isArray(v)) return undefined;
  // A hole (which map and filter skip) is an undefined item to the schema.
  for (let i = 0; i < v.length; i++) if (!(i in v)) return undefined;
  return (dropped && v.some(dropped) ? v.filter((x) => !dropped(x)) : v).map(read);
}

/** namedPortSchema without zod (throws where it would report an issue). */
function fastNamedPort(v: unknown): NamedPort {
  if (!isMapping(v)) throw new FieldError('not a mapping');
  for (const k of Object.keys(v))
    if (k !== 'name' && k !== 'protocol' && k !== 'port') throw new FieldError(k);
  const name = checkPortName(requireString(v.name));
  const protocol = v.protocol === undefined ? 'tcp' : checkProtocol(v.protocol);
  const port = checkInt(v.port, 1, 65535);
  if (!protocolHasPorts(protocol)) throw new FieldError(protocol);
  return { name, protocol, port };
}

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
  // Felix applies a profile's rules after the tiers (cali-pri-/cali-pro-); its labels are inherited.
  body: specOf(
    z.object({
      labelsToApply: labelsSchema,
      ingress: z.array(ruleSchema).default([]),
      egress: z.array(ruleSchema).default([]),
    }),
  ),
  build: (meta, { spec }): Profile => ({
    kind: 'Profile',
    ...meta,
    spec: { labelsToApply: spec.labelsToApply, ingress: spec.ingress, egress: spec.egress },
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
      // Calico: what the end of the tier does when no policy in it decided (Deny unless set).
      defaultAction: enumSchema(['Deny', 'Pass'] as const).default('Deny'),
    }),
  ),
  build: (meta, { spec }): Tier => ({
    kind: 'Tier',
    ...meta,
    spec: { ...(spec.order === undefined ? {} : { order: spec.order }), defaultAction: spec.defaultAction },
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
// RemoteClusterConfiguration: every field of Calico's (tigera/api remoteclusterconfig.go), checked
// as libcalico-go's validator checks them. What a working connection needs beyond that (endpoints
// for etcdv3, a kubeconfig or API endpoint for kubernetes, the Secret's keys) is not a validation
// error in Calico but ConfigIncomplete at run time: syncer/remote-config.ts.

/** A mapping that refuses fields it does not know: a misspelt connection field must not vanish. */
function strictObject<S extends z.ZodRawShape>(shape: S, what: string) {
  const known = Object.keys(shape).join(', ');
  return z.object(shape).catchall(
    checked((): never => {
      throw new FieldError(`unknown field in ${what} (known: ${known})`);
    }),
  );
}

// Calico: `https?://[^:]+:\d+`, the port required, several joined by commas for etcd.
const ENDPOINT_URL = /^https?:\/\/[^:/\s]+:\d+\/?$/;

/** Calico writes etcdEndpoints as one comma-separated string; a list is accepted too. */
const etcdEndpoints = checked((v) => {
  const items = Array.isArray(v) ? v : typeof v === 'string' ? v.split(',') : undefined;
  if (!items) throw new FieldError('expected a comma-separated string of URLs');
  const urls = items.map((x) => requireString(typeof x === 'string' ? x.trim() : x)).filter(Boolean);
  for (const u of urls) {
    if (!ENDPOINT_URL.test(u)) throw new FieldError(`"${u}" is not an http(s)://host:port URL`);
  }
  if (urls.length === 0) throw new FieldError('must not be empty');
  return urls;
});

const k8sEndpoint = checked((v) => {
  const s = requireString(v);
  if (!ENDPOINT_URL.test(s)) throw new FieldError(`"${s}" is not an http(s)://host:port URL`);
  return s;
});

/** Calico's `file` rule: any non-empty path without a NUL byte. */
const filePath = checked((v) => {
  const s = requireString(v);
  if (s.includes('\0')) throw new FieldError('a path must not contain a NUL byte');
  return s;
});

/** A value that must not be echoed in an error (password, token, inline kubeconfig). */
const secretText = checked((v) => {
  if (typeof v !== 'string') throw new FieldError(`expected a string, got ${typeof v}`);
  if (v === '') throw new FieldError('must not be empty');
  return v;
});

const clusterAccessSecret = strictObject(
  {
    name: checked((v) => checkName('subdomain', v)),
    namespace: checked((v) => checkName('label', v)).optional(),
    kind: checked((v) => {
      if (v !== 'Secret') throw new FieldError(`must be Secret, got ${describe(v)}`);
      return v;
    }).optional(),
    apiVersion: checked((v) => {
      if (v !== 'v1') throw new FieldError(`must be v1, got ${describe(v)}`);
      return v;
    }).optional(),
    uid: optStr,
    resourceVersion: optStr,
    fieldPath: optStr,
  },
  'spec.clusterAccessSecret',
);

/** Connection fields: with a clusterAccessSecret, all of these must be empty (Calico's rule). */
const CONNECTION_FIELDS = [
  'datastoreType',
  'fileDatastorePath',
  'etcdEndpoints',
  'etcdUsername',
  'etcdPassword',
  'etcdKeyFile',
  'etcdCertFile',
  'etcdCACertFile',
  'kubeconfig',
  'kubeconfigInline',
  'k8sAPIEndpoint',
  'k8sKeyFile',
  'k8sCertFile',
  'k8sCAFile',
  'k8sAPIToken',
  'k8sInsecureSkipTLSVerify',
] as const;

/** Refused with datastoreType kubernetes (libcalico-go validator). */
const ETCD_ONLY = ['etcdEndpoints', 'etcdPassword', 'etcdKeyFile', 'etcdCertFile', 'etcdCACertFile'] as const;

const rccSpec = strictObject(
  {
    datastoreType: enumSchema(['etcdv3', 'kubernetes', 'file'] as const).optional(),
    fileDatastorePath: filePath.optional(),
    etcdEndpoints: etcdEndpoints.optional(),
    etcdUsername: optStr,
    etcdPassword: secretText.optional(),
    etcdKeyFile: filePath.optional(),
    etcdCertFile: filePath.optional(),
    etcdCACertFile: filePath.optional(),
    kubeconfig: filePath.optional(),
    kubeconfigInline: secretText.optional(),
    k8sAPIEndpoint: k8sEndpoint.optional(),
    k8sKeyFile: filePath.optional(),
    k8sCertFile: filePath.optional(),
    k8sCAFile: filePath.optional(),
    k8sAPIToken: secretText.optional(),
    k8sInsecureSkipTLSVerify: checked(checkBool).optional(),
    clusterAccessSecret: clusterAccessSecret.optional(),
    syncOptions: strictObject(
      // The CRD's default is Disabled: without it a remote sends endpoints only, no routes.
      { overlayRoutingMode: enumSchema(['Enabled', 'Disabled'] as const).default('Disabled') },
      'spec.syncOptions',
    ).prefault({}),
  },
  'spec',
).superRefine((s, ctx) => {
  const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', message, path: [path] });
  const given = (f: (typeof CONNECTION_FIELDS)[number]) => s[f] !== undefined;
  if (s.clusterAccessSecret) {
    for (const f of CONNECTION_FIELDS) {
      if (given(f))
        issue(f, 'must be empty when clusterAccessSecret is set (the Secret holds the connection)');
    }
    return;
  }
  if (s.datastoreType === undefined) {
    issue('datastoreType', 'required (etcdv3, kubernetes or file) unless clusterAccessSecret is set');
    return;
  }
  if (s.datastoreType === 'kubernetes') {
    for (const f of ETCD_ONLY) if (given(f)) issue(f, 'not allowed with datastoreType kubernetes');
  }
  if (s.datastoreType === 'file') {
    if (!s.fileDatastorePath) issue('fileDatastorePath', 'required when datastoreType is file');
  } else if (s.fileDatastorePath !== undefined) {
    issue('fileDatastorePath', `only for datastoreType file, not ${s.datastoreType}`);
  }
});

const RCC_PATHS = [
  'fileDatastorePath',
  'etcdKeyFile',
  'etcdCertFile',
  'etcdCACertFile',
  'kubeconfig',
  'k8sKeyFile',
  'k8sCertFile',
  'k8sCAFile',
] as const;

const remoteClusterConfiguration = defineKind({
  namespaced: false,
  nameRule: 'subdomain',
  body: specOf(rccSpec),
  build(meta, { spec }, ctx): RemoteClusterConfiguration | ValidateResult {
    // Relative paths are relative to the directory holding the RCC's file, not to the cwd. An RCC
    // read from etcd or the Kubernetes API has no such directory: a relative path is refused.
    const paths: Partial<Record<(typeof RCC_PATHS)[number], string>> = {};
    for (const f of RCC_PATHS) {
      const p = spec[f];
      if (p === undefined) continue;
      if (isAbsolute(p)) paths[f] = p;
      else if (ctx.baseDir !== undefined) paths[f] = resolve(ctx.baseDir, p);
      else {
        return {
          errors: [
            {
              origin: ctx.origin,
              ...(ctx.id ? { resource: ctx.id } : {}),
              field: `spec.${f}`,
              message: `"${p}" is a relative path, and this RemoteClusterConfiguration was not read from a file (${ctx.origin.source}): there is no directory to resolve it against; give an absolute path`,
            },
          ],
        };
      }
    }
    const secret = spec.clusterAccessSecret;
    const opt = <K extends string, V>(k: K, v: V | undefined) => (v === undefined ? {} : { [k]: v });
    return {
      kind: 'RemoteClusterConfiguration',
      ...meta,
      spec: {
        ...opt('datastoreType', spec.datastoreType),
        ...opt('fileDatastorePath', paths.fileDatastorePath),
        ...opt('etcdEndpoints', spec.etcdEndpoints),
        ...opt('etcdUsername', spec.etcdUsername),
        ...opt('etcdPassword', spec.etcdPassword),
        ...opt('etcdKeyFile', paths.etcdKeyFile),
        ...opt('etcdCertFile', paths.etcdCertFile),
        ...opt('etcdCACertFile', paths.etcdCACertFile),
        ...opt('kubeconfig', paths.kubeconfig),
        ...opt('kubeconfigInline', spec.kubeconfigInline),
        ...opt('k8sAPIEndpoint', spec.k8sAPIEndpoint),
        ...opt('k8sKeyFile', paths.k8sKeyFile),
        ...opt('k8sCertFile', paths.k8sCertFile),
        ...opt('k8sCAFile', paths.k8sCAFile),
        ...opt('k8sAPIToken', spec.k8sAPIToken),
        ...opt('k8sInsecureSkipTLSVerify', spec.k8sInsecureSkipTLSVerify),
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
