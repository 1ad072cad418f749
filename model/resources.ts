// The resources fedmesh understands, after validation: the shapes the datastores produce and the
// syncer turns into feed messages. Field names follow projectcalico.org/v3; optional fields that
// Calico defaults are filled in by validation so the rest of the code never re-derives defaults.
import type { Cidr, Ip4, Mac } from './net.ts';

export type Labels = Readonly<Record<string, string>>;

/** Where a resource came from, for error messages and logs. */
export interface Origin {
  /** File path (file datastore) or key (etcd) or object path (kubernetes). */
  source: string;
  /** 0-based index of the document inside a multi-document YAML file. */
  document?: number;
}

interface Meta {
  name: string;
  namespace?: string;
  labels: Labels;
  annotations: Labels;
  origin: Origin;
}

export type Action = 'Allow' | 'Deny' | 'Log' | 'Pass';

/** A port, a range or a named port, as in Calico's `ports: [80, "8000:8080", "http"]`. */
export type PortSpec = { kind: 'num'; first: number; last: number } | { kind: 'name'; name: string };

export interface EntityRule {
  selector?: string;
  notSelector?: string;
  namespaceSelector?: string;
  nets: Cidr[];
  notNets: Cidr[];
  ports: PortSpec[];
  notPorts: PortSpec[];
  serviceAccounts?: { names: string[]; selector?: string };
}

export interface IcmpSpec {
  type?: number;
  code?: number;
}

export interface Rule {
  action: Action;
  /** Lower-case protocol name (tcp, udp, icmp, sctp, udplite, icmpv6) or a number as a string. */
  protocol?: string;
  notProtocol?: string;
  ipVersion?: 4 | 6;
  icmp?: IcmpSpec;
  notICMP?: IcmpSpec;
  source: EntityRule;
  destination: EntityRule;
}

export interface PolicySpec {
  tier: string;
  /** Calico: lower applies first; absent sorts after every explicit order. */
  order?: number;
  selector: string;
  types: { ingress: boolean; egress: boolean };
  ingress: Rule[];
  egress: Rule[];
  /** Host endpoints: also forwarded traffic (Calico's applyOnForward; preDNAT and doNotTrack need it). */
  applyOnForward?: boolean;
  /** Host endpoints: ingress before DNAT, in the mangle table. */
  preDNAT?: boolean;
  /** Host endpoints: untracked, in the raw table. */
  doNotTrack?: boolean;
}

export interface NetworkPolicy extends Meta {
  kind: 'NetworkPolicy';
  namespace: string;
  spec: PolicySpec;
}
export interface GlobalNetworkPolicy extends Meta {
  kind: 'GlobalNetworkPolicy';
  spec: PolicySpec;
}

export interface NamedPort {
  name: string;
  protocol: string;
  port: number;
}

export interface WorkloadEndpoint extends Meta {
  kind: 'WorkloadEndpoint';
  namespace: string;
  spec: {
    orchestrator: string;
    node: string;
    pod: string;
    endpoint: string;
    interfaceName: string;
    ipNetworks: Cidr[];
    profiles: string[];
    serviceAccountName?: string;
    ports: NamedPort[];
    mac?: Mac;
  };
}

export interface HostEndpoint extends Meta {
  kind: 'HostEndpoint';
  spec: { node: string; interfaceName?: string; expectedIPs: Ip4[]; profiles: string[]; ports: NamedPort[] };
}

export interface Namespace extends Meta {
  kind: 'Namespace';
}
export interface ServiceAccount extends Meta {
  kind: 'ServiceAccount';
  namespace: string;
}
export interface Profile extends Meta {
  kind: 'Profile';
  /** Rules apply after every tier (Felix's cali-pri-/cali-pro- chains); remote profiles lose them. */
  spec: { labelsToApply: Labels; ingress?: Rule[]; egress?: Rule[] };
}

/** Calico's policy tiers: lower order first; the default tier's order is 1,000,000. */
export interface Tier extends Meta {
  kind: 'Tier';
  spec: { order?: number; defaultAction?: 'Deny' | 'Pass' };
}

export interface NetworkSet extends Meta {
  kind: 'NetworkSet';
  namespace: string;
  spec: { nets: Cidr[] };
}
export interface GlobalNetworkSet extends Meta {
  kind: 'GlobalNetworkSet';
  spec: { nets: Cidr[] };
}

export interface IPPool extends Meta {
  kind: 'IPPool';
  spec: {
    cidr: Cidr;
    vxlanMode: 'Always' | 'CrossSubnet' | 'Never';
    ipipMode: 'Always' | 'CrossSubnet' | 'Never';
    natOutgoing: boolean;
    disabled: boolean;
    blockSize: number;
  };
}

export interface IPAMBlock extends Meta {
  kind: 'IPAMBlock';
  spec: {
    cidr: Cidr;
    /** The node the block is affine to (`host:<node>` in the resource), if any. */
    affinityNode?: string;
  };
}

export interface Node extends Meta {
  kind: 'Node';
  spec: {
    /** The node's IPv4 address without prefix, from spec.bgp.ipv4Address. */
    ipv4Address?: Ip4;
    /** Prefix length of spec.bgp.ipv4Address, when given. */
    ipv4PrefixLen?: number;
    vxlanTunnelAddress?: Ip4;
    vxlanTunnelMac?: Mac;
  };
}

/**
 * Calico's RemoteClusterConfiguration, every field. Paths are absolute after validation (resolved
 * against the RCC file's directory); secrets (etcdPassword, k8sAPIToken) are held as given and
 * never logged.
 */
export interface RemoteClusterConfiguration extends Meta {
  kind: 'RemoteClusterConfiguration';
  spec: {
    /** Absent when clusterAccessSecret is set (the Secret's `datastoreType` key decides). */
    datastoreType?: 'file' | 'etcdv3' | 'kubernetes';
    /** For file (fedmesh's extension): an absolute path. */
    fileDatastorePath?: string;
    etcdEndpoints?: string[];
    etcdUsername?: string;
    etcdPassword?: string;
    etcdKeyFile?: string;
    etcdCertFile?: string;
    etcdCACertFile?: string;
    kubeconfig?: string;
    kubeconfigInline?: string;
    k8sAPIEndpoint?: string;
    k8sKeyFile?: string;
    k8sCertFile?: string;
    k8sCAFile?: string;
    k8sAPIToken?: string;
    k8sInsecureSkipTLSVerify?: boolean;
    clusterAccessSecret?: { name: string; namespace?: string };
    overlayRouting: boolean;
  };
}

// ---------------------------------------------------------------------------------------------
// Services (v1), their endpoints (v1 Endpoints, discovery.k8s.io/v1 EndpointSlice) and the
// multi-cluster services API (multicluster.x-k8s.io/v1alpha1): what the services controller
// reads and writes. Kubernetes' protocol spelling (TCP, UDP, SCTP) is kept, as these objects are
// written back to the API.

export type ServiceProtocol = 'TCP' | 'UDP' | 'SCTP';

export interface ServicePort {
  /** '' when the Service has a single unnamed port. */
  name: string;
  protocol: ServiceProtocol;
  port: number;
  /** A number or a container port's name; absent means the same as `port`. */
  targetPort?: number | string;
}

export interface Service extends Meta {
  kind: 'Service';
  namespace: string;
  spec: {
    /** Absent (or empty): a Service without a selector, whose endpoints someone else writes. */
    selector?: Labels;
    ports: ServicePort[];
    type?: string;
    /** `None` for a headless Service. */
    clusterIP?: string;
  };
}

export interface ObjectRef {
  kind?: string;
  name?: string;
  namespace?: string;
  uid?: string;
}

export interface EndpointAddress {
  ip: string;
  hostname?: string;
  nodeName?: string;
  targetRef?: ObjectRef;
}

export interface EndpointPort {
  /** '' for an unnamed port. */
  name: string;
  port: number;
  protocol: ServiceProtocol;
}

export interface EndpointSubset {
  addresses: EndpointAddress[];
  notReadyAddresses: EndpointAddress[];
  ports: EndpointPort[];
}

export interface Endpoints extends Meta {
  kind: 'Endpoints';
  namespace: string;
  subsets: EndpointSubset[];
}

export interface SliceEndpoint {
  addresses: string[];
  conditions: { ready?: boolean; serving?: boolean; terminating?: boolean };
  hostname?: string;
  nodeName?: string;
  zone?: string;
  targetRef?: ObjectRef;
}

export interface EndpointSlice extends Meta {
  kind: 'EndpointSlice';
  namespace: string;
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  endpoints: SliceEndpoint[];
  /** A port without a name has name ''; a port without a number (all ports) is not kept. */
  ports: EndpointPort[];
}

export interface ServiceExport extends Meta {
  kind: 'ServiceExport';
  namespace: string;
  /** metadata.creationTimestamp, when given: KEP-1645 resolves conflicts oldest-first. */
  createdAt?: string;
}

export interface ServiceImport extends Meta {
  kind: 'ServiceImport';
  namespace: string;
  spec: { type: 'ClusterSetIP' | 'Headless'; ports: EndpointPort[]; ips: string[] };
  /** status.clusters: the clusters the Service is exported from. */
  clusters: string[];
}

/**
 * A Kubernetes Secret (v1). Only read for RemoteClusterConfigurations' clusterAccessSecret; its
 * values never reach the feed, logs or errors. `data` is decoded from base64 and merged with
 * `stringData` (which wins, as the API server does).
 */
export interface Secret extends Meta {
  kind: 'Secret';
  namespace: string;
  data: Readonly<Record<string, string>>;
}

export type Resource =
  | NetworkPolicy
  | GlobalNetworkPolicy
  | WorkloadEndpoint
  | HostEndpoint
  | Namespace
  | ServiceAccount
  | Profile
  | Tier
  | NetworkSet
  | GlobalNetworkSet
  | IPPool
  | IPAMBlock
  | Node
  | RemoteClusterConfiguration
  | Service
  | Endpoints
  | EndpointSlice
  | ServiceExport
  | ServiceImport
  | Secret;

export type ResourceKind = Resource['kind'];

/** A stable identity for a resource within one cluster: kind, namespace (if any) and name. */
export function resourceId(r: Pick<Resource, 'kind' | 'name' | 'namespace'>): string {
  // join, not a template: one flat string (a map key, kept per resource), no chain of concatenations.
  return r.namespace ? [r.kind, r.namespace, r.name].join('/') : [r.kind, r.name].join('/');
}

/** A refused document: where it was and why, field by field. */
export interface ResourceError {
  origin: Origin;
  /** `Kind/namespace/name` when it could be read, else undefined. */
  resource?: string;
  /** Dotted path of the offending field, e.g. `spec.egress[0].destination.ports[1]`. */
  field?: string;
  message: string;
}
