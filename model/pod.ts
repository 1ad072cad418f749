// A Kubernetes Pod seen as the WorkloadEndpoint Calico would create for it, with Calico's names,
// so that a fedmesh cluster and a Calico cluster agree on interface and endpoint names.
import { createHash } from 'node:crypto';
import type { Cidr } from './net.ts';
import type { Labels, NamedPort, Origin, WorkloadEndpoint } from './resources.ts';

export const ORCHESTRATOR_K8S = 'k8s';
export const LABEL_NAMESPACE = 'projectcalico.org/namespace';
export const LABEL_ORCHESTRATOR = 'projectcalico.org/orchestrator';
export const LABEL_SERVICE_ACCOUNT = 'projectcalico.org/serviceaccount';
/** Written by Calico's CNI plugin; set to "" when it has released the pod's address. */
export const ANN_POD_IP = 'cni.projectcalico.org/podIP';
export const ANN_POD_IPS = 'cni.projectcalico.org/podIPs';

/** A Pod's fields that matter here, already validated (see model/validate/kube.ts). */
export interface PodInput {
  name: string;
  namespace: string;
  labels: Labels;
  annotations: Labels;
  origin: Origin;
  nodeName?: string;
  hostNetwork: boolean;
  phase?: string;
  /** metadata.deletionTimestamp is set: the pod is in its termination grace period. */
  deleting?: boolean;
  /** spec.serviceAccountName; Kubernetes fills in "default" when absent. */
  serviceAccountName?: string;
  /** The Pod's IPv4 addresses as /32s, in Calico's order of preference. */
  ips: Cidr[];
  /** Named container ports. */
  ports: NamedPort[];
}

/** Calico's host-side veth name: `cali` + the first 11 hex digits of SHA-1(`<namespace>.<pod>`). */
export function podInterfaceName(namespace: string, pod: string): string {
  const digest = createHash('sha1').update(`${namespace}.${pod}`).digest('hex');
  return `cali${digest.slice(0, 11)}`;
}

/** Calico escapes '-' as '--' in each segment so that '-' can separate the segments. */
function escapeSegment(s: string): string {
  return s.replace(/-/g, '--');
}

/** `<node>-<orchestrator>-<workload>-<endpoint>`, each segment with '-' doubled, as Calico names them. */
export function workloadEndpointName(
  node: string,
  orchestrator: string,
  workload: string,
  endpoint: string,
): string {
  return [node, orchestrator, workload, endpoint].map(escapeSegment).join('-');
}

/**
 * The WorkloadEndpoint for a running Pod, or why there is none. A Pod that is not scheduled, has
 * no IPv4 address yet or has finished is not running: nothing to program, and not an error. A
 * hostNetwork Pod shares its node's identity and has no endpoint of its own.
 */
export function podToWorkloadEndpoint(pod: PodInput): WorkloadEndpoint | { ignored: string } {
  if (pod.hostNetwork) return { ignored: 'hostNetwork pod' };
  if (!pod.nodeName) return { ignored: 'pod not scheduled yet' };
  // Calico's IsFinished: "Completed" is what some tools write into the phase; a pod being deleted
  // whose address Calico's CNI has released (podIP annotation emptied) is gone for the network.
  if (pod.phase === 'Succeeded' || pod.phase === 'Failed' || pod.phase === 'Completed')
    return { ignored: `pod ${pod.phase}` };
  if (pod.deleting && pod.annotations[ANN_POD_IP] === '')
    return { ignored: 'pod terminating and its address released by the CNI plugin' };
  if (pod.ips.length === 0) return { ignored: 'pod has no IPv4 address yet' };
  const serviceAccount = pod.serviceAccountName ?? 'default';
  const endpoint = 'eth0';
  return {
    kind: 'WorkloadEndpoint',
    name: workloadEndpointName(pod.nodeName, ORCHESTRATOR_K8S, pod.name, endpoint),
    namespace: pod.namespace,
    // As Calico: the implicit labels are set from the Pod itself and override any written ones.
    labels: {
      ...pod.labels,
      [LABEL_NAMESPACE]: pod.namespace,
      [LABEL_ORCHESTRATOR]: ORCHESTRATOR_K8S,
      [LABEL_SERVICE_ACCOUNT]: serviceAccount,
    },
    annotations: pod.annotations,
    origin: pod.origin,
    spec: {
      orchestrator: ORCHESTRATOR_K8S,
      node: pod.nodeName,
      pod: pod.name,
      endpoint,
      interfaceName: podInterfaceName(pod.namespace, pod.name),
      ipNetworks: pod.ips,
      profiles: [`kns.${pod.namespace}`, `ksa.${pod.namespace}.${serviceAccount}`],
      serviceAccountName: serviceAccount,
      ports: pod.ports,
    },
  };
}
