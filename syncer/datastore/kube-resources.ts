// What the kubernetes datastore reads from a cluster's API server: one table, so that the driver,
// the RBAC in daemonset/rbac.yaml (checked by test/unit/manifests.test.ts) and the tests agree.

export interface KubeResource {
  /** '' for the core group. */
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
  /**
   * Secrets are read only in the namespaces that RemoteClusterConfigurations' clusterAccessSecret
   * name: the syncer is granted Secrets there (a Role), never cluster-wide.
   */
  onlyInRccSecretNamespaces?: boolean;
}

const core = (plural: string, kind: string, namespaced: boolean): KubeResource => ({
  group: '',
  version: 'v1',
  plural,
  kind,
  namespaced,
});

const calico = (plural: string, kind: string, namespaced: boolean): KubeResource => ({
  group: 'crd.projectcalico.org',
  version: 'v1',
  plural,
  kind,
  namespaced,
});

export const KUBE_RESOURCES: readonly KubeResource[] = [
  // RemoteClusterConfigurations first: they decide which namespaces' Secrets are read.
  calico('remoteclusterconfigurations', 'RemoteClusterConfiguration', false),
  core('namespaces', 'Namespace', false),
  core('serviceaccounts', 'ServiceAccount', true),
  core('pods', 'Pod', true),
  core('nodes', 'Node', false),
  core('services', 'Service', true),
  core('endpoints', 'Endpoints', true),
  { ...core('secrets', 'Secret', true), onlyInRccSecretNamespaces: true },
  {
    group: 'discovery.k8s.io',
    version: 'v1',
    plural: 'endpointslices',
    kind: 'EndpointSlice',
    namespaced: true,
  },
  {
    group: 'networking.k8s.io',
    version: 'v1',
    plural: 'networkpolicies',
    kind: 'NetworkPolicy',
    namespaced: true,
  },
  calico('ippools', 'IPPool', false),
  calico('ipamblocks', 'IPAMBlock', false),
  calico('networkpolicies', 'NetworkPolicy', true),
  calico('globalnetworkpolicies', 'GlobalNetworkPolicy', false),
  calico('networksets', 'NetworkSet', true),
  calico('globalnetworksets', 'GlobalNetworkSet', false),
  calico('hostendpoints', 'HostEndpoint', false),
  calico('tiers', 'Tier', false),
];

export function apiVersionOf(r: Pick<KubeResource, 'group' | 'version'>): string {
  return r.group ? `${r.group}/${r.version}` : r.version;
}

/** The collection's path, in one namespace or across all. */
export function collectionPath(r: KubeResource, namespace?: string): string {
  const base = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  return namespace ? `${base}/namespaces/${namespace}/${r.plural}` : `${base}/${r.plural}`;
}
