// `fedmesh demo --etcd`: cluster b keeps its Calico data in a real etcd (Debian's etcd-server),
// as a production Calico cluster in etcd mode does. The demo starts etcd on free loopback ports
// with its data under the work directory (its pid recorded, so `demo down` stops it), writes
// cluster b's YAML into it in Calico's layout, and points b's syncer at it; a's RCC for b reaches
// it through a clusterAccessSecret.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { run } from '../../native/exec.ts';
import { etcdClient } from '../../syncer/datastore/etcd.ts';
import { resourceKey } from '../../syncer/datastore/etcd-layout.ts';
import { type LoadReport, loadDirectory } from '../../syncer/datastore/etcd-load.ts';
import { type StartedProcess, startProcess } from './processes.ts';

const ETCD_NAME = 'etcd-b';

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

export async function checkEtcdInstalled(): Promise<void> {
  const r = await run('sh', ['-c', 'command -v etcd'], { allowFailure: true });
  if (r.exitCode !== 0)
    throw new Error('etcd is missing: run scripts/setup.sh (installs Debian etcd-server)');
}

/** The command line is kept so the same etcd (same ports, same data) can be started again. */
function argvFile(workDir: string): string {
  return join(workDir, `${ETCD_NAME}.argv.json`);
}

export function demoEtcdEndpoint(workDir: string): string | undefined {
  const f = argvFile(workDir);
  if (!existsSync(f)) return undefined;
  return (JSON.parse(readFileSync(f, 'utf8')) as { endpoint: string }).endpoint;
}

/** Start (or, with the saved command line, restart) cluster b's etcd; resolves when it serves. */
export async function startDemoEtcd(workDir: string): Promise<{ endpoint: string; process: StartedProcess }> {
  let saved: { endpoint: string; argv: string[] } | undefined;
  if (existsSync(argvFile(workDir))) saved = JSON.parse(readFileSync(argvFile(workDir), 'utf8'));
  if (!saved) {
    const endpoint = `http://127.0.0.1:${await freePort()}`;
    const peer = `http://127.0.0.1:${await freePort()}`;
    const argv = [
      'etcd',
      '--name',
      'b',
      '--data-dir',
      join(workDir, ETCD_NAME),
      '--listen-client-urls',
      endpoint,
      '--advertise-client-urls',
      endpoint,
      '--listen-peer-urls',
      peer,
      '--initial-advertise-peer-urls',
      peer,
      '--initial-cluster',
      `b=${peer}`,
    ];
    saved = { endpoint, argv };
    writeFileSync(argvFile(workDir), JSON.stringify(saved));
  }
  const log = join(workDir, `${ETCD_NAME}.log`);
  const before = existsSync(log) ? readFileSync(log, 'utf8').length : 0;
  const proc = startProcess(workDir, ETCD_NAME, saved.argv);
  // Only a "ready" written by this start counts (the log is appended to across restarts).
  const deadline = Date.now() + 20_000;
  while (!readFileSync(log, 'utf8').slice(before).includes('ready to serve client requests')) {
    if (Date.now() > deadline || proc.child.exitCode !== null)
      throw new Error(
        `etcd did not start; see ${log}:\n${readFileSync(log, 'utf8').slice(before).slice(-1500)}`,
      );
    await new Promise((r) => setTimeout(r, 50));
  }
  return { endpoint: saved.endpoint, process: proc };
}

/**
 * Write cluster b's directory into etcd in Calico's layout. What has no place there (Services and
 * Endpoints live in the Kubernetes API) stays in b's YAML, which b's services controller reads.
 */
export async function loadDemoEtcd(endpoint: string, dir: string): Promise<LoadReport> {
  const client = etcdClient({ type: 'etcdv3', endpoints: [endpoint] });
  try {
    return await loadDirectory(client, dir);
  } finally {
    client.close();
  }
}

/** The clusterAccessSecret a's RCC for b names (in a's directory, so a test can delete and restore it). */
export const DEMO_SECRET = { name: 'remote-b-access', namespace: 'fedmesh-system' } as const;

export function demoSecretFile(workDir: string): string {
  return join(workDir, 'a', 'remote-b-secret.yaml');
}

/**
 * a's RCC for b and the Secret it names, as production has it: the RCC says only which Secret,
 * the Secret says how to reach b's etcd. The namespace is named in the RCC so the Secret is
 * found whatever namespace the syncer runs in. Separate files: deleting the Secret's file withdraws
 * b's data from a (ConfigIncomplete) until it is back, with no restart.
 */
export function writeEtcdRcc(workDir: string, endpoint: string): void {
  writeFileSync(
    join(workDir, 'a', 'remote-b.yaml'),
    `# Cluster a reads cluster b's Calico datastore in etcd (fedmesh demo --etcd), reached through
# the Secret in remote-b-secret.yaml.
apiVersion: projectcalico.org/v3
kind: RemoteClusterConfiguration
metadata: {name: b}
spec:
  clusterAccessSecret: {name: ${DEMO_SECRET.name}, namespace: ${DEMO_SECRET.namespace}, kind: Secret}
  syncOptions: {overlayRoutingMode: Enabled}
`,
  );
  writeFileSync(
    demoSecretFile(workDir),
    `# How cluster a reaches cluster b's etcd (named by the RCC in remote-b.yaml). Delete this file
# and a withdraws b's data (b ConfigIncomplete); put it back and a reconnects.
apiVersion: v1
kind: Secret
metadata: {name: ${DEMO_SECRET.name}, namespace: ${DEMO_SECRET.namespace}}
stringData:
  datastoreType: etcdv3
  etcdEndpoints: ${endpoint}
`,
  );
}

/** Set one label of a workload endpoint in etcd, as Calico's CNI plugin or an operator would. */
export async function setEtcdLabel(
  endpoint: string,
  wep: { namespace: string; name: string },
  label: string,
  value: string,
): Promise<void> {
  const client = etcdClient({ type: 'etcdv3', endpoints: [endpoint] });
  try {
    const key = resourceKey('WorkloadEndpoint', wep.name, wep.namespace) as string;
    const text = await client.get(key).string();
    if (text === null) throw new Error(`relabel: no key ${key} in etcd`);
    const obj = JSON.parse(text);
    obj.metadata.labels = { ...obj.metadata.labels, [label]: value };
    await client.put(key).value(JSON.stringify(obj)).exec();
  } finally {
    client.close();
  }
}
