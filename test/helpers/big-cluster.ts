// A big file datastore for load tests and benchmarks: N workload endpoints in one YAML file
// (100,000 make ~30 MB, about the 27 MB issue 8 was measured with).

/** One WorkloadEndpoint document; `label` lets a test edit exactly one of them. */
export function endpointDoc(i: number, label = 'v1'): string {
  const pod = `pod-${i}`;
  const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  return `apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node${i % 100}-k8s-pod--${i}-eth0
  namespace: shop
  labels:
    app: app-${i % 50}
    version: ${label}
spec:
  orchestrator: k8s
  node: node${i % 100}
  pod: ${pod}
  endpoint: eth0
  interfaceName: cali${i.toString(16).padStart(11, '0')}
  ipNetworks: [${ip}/32]
  profiles: [kns.shop, ksa.shop.default]
`;
}

/** The whole file's text: `edited` endpoint gets label `v2`. */
export function bigClusterText(n: number, edited?: number): string {
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(endpointDoc(i, i === edited ? 'v2' : 'v1'));
  return parts.join('---\n');
}
