// The remote cluster of `npm run bench -- kube`: an API server double holding N running pods on
// N/100 nodes (Calico's node annotations), 10 namespaces and a pool.
import { KubeApiDouble } from '../test/harness/kube-api-double.ts';

const pods = Number(process.argv[2] ?? 10_000);
const api = await new KubeApiDouble({ historyLimit: 1000 }).start();
const nodes = Math.max(1, Math.ceil(pods / 100));
api.put({
  apiVersion: 'crd.projectcalico.org/v1',
  kind: 'IPPool',
  metadata: { name: 'b-pool' },
  spec: { cidr: '10.20.0.0/16', vxlanMode: 'Always', natOutgoing: true, blockSize: 26 },
});
for (let ns = 0; ns < 10; ns++)
  api.put({
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: `ns-${ns}`, labels: { team: `t${ns}` } },
  });
for (let n = 0; n < nodes; n++) {
  api.put({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: `b-node${n}`,
      annotations: {
        'projectcalico.org/IPv4Address': `192.168.${100 + Math.floor(n / 250)}.${(n % 250) + 1}/16`,
        'projectcalico.org/IPv4VXLANTunnelAddr': `10.20.${n}.0`,
        'projectcalico.org/VXLANTunnelMACAddr': `66:bb:00:00:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`,
      },
    },
  });
}
for (let i = 0; i < pods; i++) {
  const node = Math.floor(i / 100);
  api.put({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: `pod-${i}`,
      namespace: `ns-${i % 10}`,
      labels: { app: `app-${i % 50}`, shard: String(i % 7) },
    },
    spec: {
      nodeName: `b-node${node}`,
      containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 8080 }] }],
    },
    status: { phase: 'Running', podIP: `10.20.${node}.${(i % 100) + 1}` },
  });
}
process.stdout.write(`url ${api.url}\n`);
