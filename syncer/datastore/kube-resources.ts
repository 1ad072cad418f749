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
  /**
   * Also read from a remote cluster: what Calico federates (endpoints and their identities, and
   * for overlay routing nodes, pools and blocks), which is exactly what the peer's
   * fedmesh-remote-cluster role (daemonset/remote-cluster-access.yaml) grants.
   */
  remote?: boolean;
}

const core = (plural: string, kind: string, namespaced: boolean, remote = false): KubeResource => ({
  group: '',
  version: 'v1',
  plural,
  kind,
  namespaced,
  ...(remote ? { remote } : {}),
});

const calico = (plural: string, kind: string, namespaced: boolean, remote = false): KubeResource => ({
  group: 'crd.projectcalico.org',
  version: 'v1',
  plural,
  kind,
  namespaced,
  ...(remote ? { remote } : {}),
});

export const KUBE_RESOURCES: readonly KubeResource[] = [
  calico('remoteclusterconfigurations', 'RemoteClusterConfiguration', false),
  core('namespaces', 'Namespace', false, true),
  core('serviceaccounts', 'ServiceAccount', true, true),
  core('pods', 'Pod', true, true),
  core('nodes', 'Node', false, true),
  core('services', 'Service', true, true),
  core('endpoints', 'Endpoints', true, true),
  { ...core('secrets', 'Secret', true), onlyInRccSecretNamespaces: true },
  {
    group: 'discovery.k8s.io',
    version: 'v1',
    plural: 'endpointslices',
    kind: 'EndpointSlice',
    namespaced: true,
    remote: true,
  },
  // The multi-cluster services API: exports are read from every cluster (a Service exported
  // anywhere is imported everywhere), imports only locally.
  {
    group: 'multicluster.x-k8s.io',
    version: 'v1alpha1',
    plural: 'serviceexports',
    kind: 'ServiceExport',
    namespaced: true,
    remote: true,
  },
  {
    group: 'multicluster.x-k8s.io',
    version: 'v1alpha1',
    plural: 'serviceimports',
    kind: 'ServiceImport',
    namespaced: true,
  },
  {
    group: 'networking.k8s.io',
    version: 'v1',
    plural: 'networkpolicies',
    kind: 'NetworkPolicy',
    namespaced: true,
  },
  calico('ippools', 'IPPool', false, true),
  calico('ipamblocks', 'IPAMBlock', false, true),
  calico('networkpolicies', 'NetworkPolicy', true),
  calico('globalnetworkpolicies', 'GlobalNetworkPolicy', false),
  calico('networksets', 'NetworkSet', true),
  calico('globalnetworksets', 'GlobalNetworkSet', false),
  calico('hostendpoints', 'HostEndpoint', false, true),
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
