// The annotations and labels the services controller reads and writes.
import type { Origin } from '../model/resources.ts';

/** Calico Enterprise's annotation: on a Service it federates it; on Endpoints it marks them as ours. */
export const TIGERA_SELECTOR = 'federation.tigera.io/serviceSelector';
/** fedmesh's own spelling, accepted on Services; if both are present they must agree. */
export const FEDMESH_SELECTOR = 'federation.fedmesh.io/serviceSelector';
/** Added to a remote backing Service's labels for matching. */
export const REMOTE_CLUSTER_LABEL = 'federation.tigera.io/remoteClusterName';
export const NAMESPACE_LABEL = 'projectcalico.org/namespace';

export const SERVICE_NAME = 'kubernetes.io/service-name';
export const MANAGED_BY = 'endpointslice.kubernetes.io/managed-by';
/**
 * The issue asked for `fedmesh.io/services-controller`, but a label value cannot hold '/': the API
 * server refuses it. Kubernetes' own controller writes `endpointslice-controller.k8s.io`; this is
 * the same shape.
 */
export const MANAGED_BY_VALUE = 'services-controller.fedmesh.io';
export const SOURCE_CLUSTER = 'multicluster.kubernetes.io/source-cluster';
export const MCS_SERVICE_NAME = 'multicluster.kubernetes.io/service-name';
/** Marks the ServiceImports the controller writes (there is no standard label for it). */
export const IMPORT_MANAGED_BY = 'app.kubernetes.io/managed-by';
/**
 * On owned Endpoints: Kubernetes mirrors selector-less Services' Endpoints into EndpointSlices
 * unless told not to; the controller writes its own slices.
 */
export const SKIP_MIRROR = 'endpointslice.kubernetes.io/skip-mirror';

/** The file the controller writes on a file datastore. */
export const OWNED_FILE = 'federated-endpoints.yaml';

export const CONTROLLER_ORIGIN: Origin = { source: 'fedmesh services-controller' };
