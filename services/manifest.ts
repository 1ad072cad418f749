// The objects the controller owns, as Kubernetes manifests (what the file writer prints and the
// Kubernetes writer sends). Empty optional fields are left out, so equal content is equal text.
import type { EndpointPort, EndpointSlice, Endpoints, ServiceImport } from '../model/resources.ts';

export type Owned = Endpoints | EndpointSlice | ServiceImport;

export const API_VERSION: Record<Owned['kind'], string> = {
  Endpoints: 'v1',
  EndpointSlice: 'discovery.k8s.io/v1',
  ServiceImport: 'multicluster.x-k8s.io/v1alpha1',
};

function metadata(r: Owned): Record<string, unknown> {
  return {
    name: r.name,
    namespace: r.namespace,
    ...(Object.keys(r.labels).length > 0 ? { labels: { ...r.labels } } : {}),
    ...(Object.keys(r.annotations).length > 0 ? { annotations: { ...r.annotations } } : {}),
  };
}

function port(p: EndpointPort): Record<string, unknown> {
  return { ...(p.name ? { name: p.name } : {}), port: p.port, protocol: p.protocol };
}

export function toManifest(r: Owned): Record<string, unknown> {
  const head = { apiVersion: API_VERSION[r.kind], kind: r.kind, metadata: metadata(r) };
  switch (r.kind) {
    case 'Endpoints':
      return {
        ...head,
        subsets: r.subsets.map((s) => ({
          ...(s.addresses.length > 0 ? { addresses: s.addresses } : {}),
          ...(s.notReadyAddresses.length > 0 ? { notReadyAddresses: s.notReadyAddresses } : {}),
          ports: s.ports.map(port),
        })),
      };
    case 'EndpointSlice':
      return { ...head, addressType: r.addressType, endpoints: r.endpoints, ports: r.ports.map(port) };
    case 'ServiceImport':
      return {
        ...head,
        spec: {
          type: r.spec.type,
          ports: r.spec.ports.map(port),
          ...(r.spec.ips.length > 0 ? { ips: r.spec.ips } : {}),
        },
        status: { clusters: r.clusters.map((cluster) => ({ cluster })) },
      };
  }
}
