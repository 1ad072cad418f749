// `npm run bench -- services [rounds]`: the time from a backing Endpoints change (a remote
// cluster's file rewritten) to the federated Endpoints written by the services controller, on file
// datastores. Target: within a second (the bar).
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServicesController } from '../services/controller.ts';
import { OWNED_FILE } from '../services/names.ts';
import { resolveRemote } from '../services/remotes.ts';
import { FileWriter } from '../services/writer.ts';
import { FileDatastore } from '../syncer/datastore/file.ts';

const TARGET_MS = 1000;
const rounds = Number(process.argv[2] ?? 20);
const root = mkdtempSync(join(tmpdir(), 'fedmesh-bench-svc-'));
const a = join(root, 'a');
const b = join(root, 'b');
mkdirSync(a);
mkdirSync(b);
const backing = (n: number) => `apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {ports: [{name: pg, port: 5432}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: db, namespace: shop}
subsets: [{addresses: [{ip: 10.20.0.${n}}], ports: [{name: pg, port: 5432}]}]
`;
writeFileSync(
  join(a, 'services.yaml'),
  `apiVersion: v1
kind: Service
metadata: {name: fed, namespace: shop, annotations: {federation.tigera.io/serviceSelector: "app == 'db'"}}
spec: {ports: [{name: pg, port: 5432}]}
---
apiVersion: projectcalico.org/v3
kind: RemoteClusterConfiguration
metadata: {name: b}
spec: {datastoreType: file, fileDatastorePath: ../b}
`,
);
writeFileSync(join(b, 'backing.yaml'), backing(1));
const controller = new ServicesController({
  cluster: 'a',
  local: new FileDatastore(a),
  localDerive: true,
  writer: new FileWriter(a),
  resolveRemote,
  remoteSyncTimeoutMs: 5000,
  remoteEndpointsGraceMs: 0,
});
await controller.start();
const owned = () => {
  try {
    return readFileSync(join(a, OWNED_FILE), 'utf8');
  } catch {
    return '';
  }
};
const waitFor = async (needle: string) => {
  const t0 = performance.now();
  while (!owned().includes(needle)) {
    if (performance.now() - t0 > 10_000) throw new Error(`${needle} never written`);
    await new Promise((r) => setTimeout(r, 2));
  }
  return performance.now() - t0;
};
await waitFor('10.20.0.1');
const times: number[] = [];
for (let i = 2; i < rounds + 2; i++) {
  await new Promise((r) => setTimeout(r, 50));
  const t0 = performance.now();
  // Written as a rename, as editors and ConfigMap updates do.
  writeFileSync(join(b, '.tmp'), backing(i));
  renameSync(join(b, '.tmp'), join(b, 'backing.yaml'));
  await waitFor(`10.20.0.${i}\n`);
  times.push(performance.now() - t0);
}
await controller.stop();
rmSync(root, { recursive: true, force: true });
times.sort((x, y) => x - y);
const median = times[Math.floor(times.length / 2)]!;
const max = times[times.length - 1]!;
console.log(
  `services: backing Endpoints change → federated Endpoints written, ${rounds} rounds: median ${median.toFixed(0)} ms, max ${max.toFixed(0)} ms; target ${TARGET_MS} ms; ratio (max/target) ${(max / TARGET_MS).toFixed(2)}`,
);
