// One cluster's resources → the ClusterView the calculation takes, and the local objects that
// ownership decisions need. Pure. A Service's endpoints come from its Endpoints object; failing
// that, from its EndpointSlices; failing that, on a datastore with no endpoints controller (file),
// derived from the workload endpoints its selector matches. Endpoints the controller owns are never
// anyone's backing endpoints (a Service that loses its annotation must not feed on its old output).
import type {
  EndpointAddress,
  EndpointSlice,
  EndpointSubset,
  Endpoints,
  Resource,
  Service,
  ServiceExport,
  ServiceImport,
  WorkloadEndpoint,
} from '../model/resources.ts';
import { deriveEndpoints } from './derive.ts';
import { repack } from './endpoints.ts';
import { ownedEndpoints } from './federation.ts';
import { MANAGED_BY, MANAGED_BY_VALUE, SERVICE_NAME } from './names.ts';
import { type ClusterView, key } from './types.ts';

export interface LocalObjects {
  endpoints: Map<string, Endpoints>;
  imports: Map<string, ServiceImport>;
  /** EndpointSlices the controller owns (managed-by label). */
  slices: Map<string, EndpointSlice>;
}

function sliceSubsets(slices: readonly EndpointSlice[]): EndpointSubset[] {
  const subsets: EndpointSubset[] = [];
  for (const s of slices) {
    if (s.addressType === 'FQDN') continue;
    const addresses: EndpointAddress[] = [];
    const notReady: EndpointAddress[] = [];
    for (const e of s.endpoints) {
      for (const ip of e.addresses) {
        const a: EndpointAddress = {
          ip,
          ...(e.hostname ? { hostname: e.hostname } : {}),
          ...(e.nodeName ? { nodeName: e.nodeName } : {}),
          ...(e.targetRef ? { targetRef: e.targetRef } : {}),
        };
        // Kubernetes: a missing `ready` means ready.
        (e.conditions.ready === false ? notReady : addresses).push(a);
      }
    }
    subsets.push({ addresses, notReadyAddresses: notReady, ports: s.ports });
  }
  return repack(subsets);
}

export function clusterView(
  cluster: string,
  remote: boolean,
  resources: Iterable<Resource>,
  opts: { derive: boolean },
): { view: ClusterView; local: LocalObjects } {
  const services: Service[] = [];
  const exports: ServiceExport[] = [];
  const weps: WorkloadEndpoint[] = [];
  const local: LocalObjects = { endpoints: new Map(), imports: new Map(), slices: new Map() };
  const slicesByService = new Map<string, EndpointSlice[]>();
  for (const r of resources) {
    switch (r.kind) {
      case 'Service':
        services.push(r);
        break;
      case 'ServiceExport':
        exports.push(r);
        break;
      case 'WorkloadEndpoint':
        weps.push(r);
        break;
      case 'Endpoints':
        local.endpoints.set(key(r), r);
        break;
      case 'ServiceImport':
        local.imports.set(key(r), r);
        break;
      case 'EndpointSlice': {
        if (r.labels[MANAGED_BY] === MANAGED_BY_VALUE) {
          local.slices.set(key(r), r);
          break;
        }
        const svc = r.labels[SERVICE_NAME];
        if (svc) {
          const k = `${r.namespace}/${svc}`;
          slicesByService.set(k, [...(slicesByService.get(k) ?? []), r]);
        }
        break;
      }
      default:
        break;
    }
  }
  const endpoints = new Map<string, EndpointSubset[]>();
  for (const svc of services) {
    const k = key(svc);
    const obj = local.endpoints.get(k);
    if (obj) {
      if (!ownedEndpoints(obj)) endpoints.set(k, obj.subsets);
      continue;
    }
    const slices = slicesByService.get(k);
    if (slices) endpoints.set(k, sliceSubsets(slices));
    else if (opts.derive && svc.spec.selector) endpoints.set(k, deriveEndpoints(svc, weps));
  }
  return { view: { cluster, remote, services, endpoints, exports }, local };
}
