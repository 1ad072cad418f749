// Endpoints for a Service with a spec.selector on a datastore without an endpoints controller (a
// file datastore): derived from the matching workload endpoints (or Pods) as Kubernetes' endpoints
// controller would. Pure.
import type { EndpointPort, EndpointSubset, Service, WorkloadEndpoint } from '../model/resources.ts';
import { repack } from './endpoints.ts';

/** The pod port a Service port reaches: a number, a container port's name, or the Service's own port. */
function podPort(svcPort: Service['spec']['ports'][number], wep: WorkloadEndpoint): number | undefined {
  const t = svcPort.targetPort;
  if (t === undefined) return svcPort.port;
  if (typeof t === 'number') return t;
  const named = wep.spec.ports.find(
    (p) => p.name === t && p.protocol.toLowerCase() === svcPort.protocol.toLowerCase(),
  );
  return named?.port;
}

function selects(
  selector: Readonly<Record<string, string>>,
  labels: Readonly<Record<string, string>>,
): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

export function deriveEndpoints(svc: Service, weps: Iterable<WorkloadEndpoint>): EndpointSubset[] {
  const selector = svc.spec.selector;
  if (!selector) return [];
  const subsets: EndpointSubset[] = [];
  for (const w of weps) {
    if (w.namespace !== svc.namespace || !selects(selector, w.labels)) continue;
    const net = w.spec.ipNetworks[0];
    if (!net) continue;
    const ports: EndpointPort[] = [];
    for (const sp of svc.spec.ports) {
      const port = podPort(sp, w);
      // Kubernetes leaves a pod out of a port it does not have (a named targetPort it lacks).
      if (port !== undefined) ports.push({ name: sp.name, port, protocol: sp.protocol });
    }
    if (ports.length === 0) continue;
    subsets.push({
      addresses: [
        {
          ip: net.split('/')[0]!,
          nodeName: w.spec.node,
          targetRef: { kind: 'Pod', name: w.spec.pod, namespace: w.namespace },
        },
      ],
      notReadyAddresses: [],
      ports,
    });
  }
  return repack(subsets);
}
