// `npm run bench -- kube [pods]`: time from syncer start to in-sync with a remote cluster of
// 10,000 pods (default) served by the Kubernetes API server double (test/harness; no real API
// server runs here), read through an RCC `datastoreType: kubernetes` with a kubeconfig. The
// double runs in its own process, as an API server would. Measured three times (a new syncer
// each time, the same remote), median printed against the target.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

process.env.FEDMESH_LOG_LEVEL ??= 'warn';
const { runSyncer } = await import('../syncer/main.ts');
const { FeedClient } = await import('../agent/feed/client.ts');
const { kubeconfigFor } = await import('../test/harness/kube-api-double.ts');
const { ResourceKind } = await import('../proto/service.ts');
const { KubernetesDatastore } = await import('../syncer/datastore/kubernetes.ts');

const PODS = Number(process.argv[2] ?? 10_000);
const TARGET_MS = 5_000 * (PODS / 10_000);
const RUNS = 3;
const HERE = dirname(fileURLToPath(import.meta.url));

/** The remote API server: a child process that prints its URL once loaded. */
async function startRemote(): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(HERE, 'kube-remote.ts'), String(PODS)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^url (\S+)$/m.exec(out);
      if (m) resolve(m[1] as string);
    });
    proc.once('exit', (code) => reject(new Error(`remote API server exited (${code})`)));
  });
  return { url, proc };
}

async function once(dir: string, run: number): Promise<number> {
  const socket = join(dir, `feed-${run}.sock`);
  let remoteEndpoints = 0;
  let inSync = false;
  const t0 = performance.now();
  const stop = await runSyncer({
    cluster: 'a',
    datastore: `file:${join(dir, 'a')}`,
    listen: `unix:${socket}`,
    // In-sync must mean "with the remote", never the timeout.
    remoteSyncTimeoutMs: 600_000,
  });
  const client = new FeedClient(
    { target: `unix:${socket}`, nodeName: 'a-node1', version: 'bench' },
    {
      onHello() {},
      onUpdates(updates) {
        for (const u of updates)
          if (u.kind === ResourceKind.WORKLOAD_ENDPOINT && u.key.startsWith('b/'))
            remoteEndpoints += u.deleted ? -1 : 1;
      },
      onInSync() {
        inSync = true;
      },
      onRemoteStatus() {},
    },
  );
  client.start();
  while (!inSync) await new Promise((r) => setTimeout(r, 2));
  const ms = performance.now() - t0;
  client.stop();
  await stop();
  if (remoteEndpoints !== PODS)
    throw new Error(`in sync with ${remoteEndpoints} remote endpoints, expected ${PODS}`);
  return ms;
}

/** The driver alone (list in pages, convert, first batch), for the share of the total. */
async function driverOnly(url: string): Promise<number> {
  const t0 = performance.now();
  const ds = new KubernetesDatastore(
    { type: 'kubernetes', source: { kind: 'kubeconfig', text: kubeconfigFor(url) } },
    { remote: true },
  );
  await new Promise<void>((resolve) => {
    void ds.start({ onEvents() {}, onStatus: (s) => s === 'InSync' && resolve() });
  });
  const ms = performance.now() - t0;
  await ds.stop();
  return ms;
}

const dir = mkdtempSync(join(tmpdir(), 'fedmesh-bench-kube-'));
const remote = await startRemote();
try {
  writeFileSync(join(dir, 'b.kubeconfig'), kubeconfigFor(remote.url));
  mkdirSync(join(dir, 'a'));
  writeFileSync(
    join(dir, 'a', 'cluster.yaml'),
    `apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: a-pool}
spec: {cidr: 10.10.0.0/16, vxlanMode: Always, natOutgoing: true, blockSize: 26}
---
apiVersion: projectcalico.org/v3
kind: RemoteClusterConfiguration
metadata: {name: b}
spec:
  datastoreType: kubernetes
  kubeconfig: ${join(dir, 'b.kubeconfig')}
  syncOptions: {overlayRoutingMode: Enabled}
`,
  );
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) times.push(await once(dir, i));
  const median = [...times].sort((x, y) => x - y)[Math.floor(RUNS / 2)] as number;
  const drivers: number[] = [];
  for (let i = 0; i < RUNS; i++) drivers.push(await driverOnly(remote.url));
  const driverMedian = [...drivers].sort((x, y) => x - y)[Math.floor(RUNS / 2)] as number;
  console.log(
    `kube benchmark: syncer start → in sync (feed) with a remote of ${PODS} pods in the API double (node ${process.version})`,
  );
  console.log(
    `  load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')} on ${cpus().length} CPUs`,
  );
  console.log(`  runs: ${times.map((t) => `${(t / 1000).toFixed(2)} s`).join(', ')}`);
  console.log(
    `  median ${(median / 1000).toFixed(2)} s  [target ≤ ${(TARGET_MS / 1000).toFixed(1)} s: ${median <= TARGET_MS ? 'ok' : 'MISSED'}]  ratio ${(median / TARGET_MS).toFixed(2)}`,
  );
  console.log(
    `  of which the kubernetes datastore alone (list ${PODS} pods in pages of 500, convert, first batch): median ${(driverMedian / 1000).toFixed(2)} s`,
  );
} finally {
  remote.proc.kill();
  rmSync(dir, { recursive: true, force: true });
}
