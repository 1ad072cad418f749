// `fedmesh demo`: two clusters, two nodes each, two pods per node, as network namespaces; one
// syncer per cluster and one agent per node, each agent inside its node's namespace; then real
// packets across a connectivity matrix, expected beside observed, and the relabel check.
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { NODE_FLAGS } from '../../lib/node-flags.ts';
import type { Resource } from '../../model/resources.ts';
import { parseYamlDocuments } from '../../model/validate.ts';
import { run } from '../../native/exec.ts';
import { FileDatastore } from '../../syncer/datastore/file.ts';
import {
  checkEtcdInstalled,
  demoSecretFile,
  loadDemoEtcd,
  setEtcdLabel,
  startDemoEtcd,
  writeEtcdRcc,
} from './etcd.ts';
import { FEDMESH_BIN, type StartedProcess, startProcess, stopRecorded, waitForLog } from './processes.ts';
import { DB_PORT, FEDERATED_SERVICE, FLOWS, type Flow, HOST_PORT, RELABEL } from './scenario.ts';
import {
  allPods,
  buildTopology,
  destroyTopology,
  type NodeSpec,
  type PodSpec,
  PROBE_SCRIPT,
  type ProbeResult,
  ping,
  type Topology,
  tcpProbe,
  topologyFromResources,
} from './topology.ts';

export const EXAMPLE_DIR = new URL('../../examples/two-cluster', import.meta.url).pathname;
export const DEFAULT_WORKDIR = '/tmp/fedmesh-demo';
export const DEFAULT_PREFIX = 'fmdemo';
/** Each agent's health/metrics port, on its node namespace's own loopback (as the DaemonSet has it). */
export const AGENT_HEALTH_PORT = 9099;
const CLUSTERS = ['a', 'b'];

export interface DemoOptions {
  keep: boolean;
  backend: 'nft' | 'legacy';
  /** Cluster b's data in a real etcd (Calico's layout), read by b's syncer and a's RCC. */
  etcd?: boolean;
  workDir?: string;
  prefix?: string;
  out?: (s: string) => void;
}

export interface Mesh {
  workDir: string;
  prefix: string;
  topology: Topology;
  agents: StartedProcess[];
  syncers: StartedProcess[];
  servicesControllers: StartedProcess[];
  timings: { startToAllInSyncMs: number; inSyncToProgrammedMs: number[]; startToAllProgrammedMs: number };
  /** With --etcd: b's etcd and the relabelled pod's WorkloadEndpoint there. */
  etcd?: { endpoint: string; relabel: { namespace: string; name: string } };
}

async function preflight(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the demo builds network namespaces: run it as root');
  for (const tool of ['ip', 'iptables-nft-restore', 'ipset', 'ping', 'bridge']) {
    const r = await run('sh', ['-c', `command -v ${tool}`], { allowFailure: true });
    if (r.exitCode !== 0)
      throw new Error(
        `${tool} is missing: run scripts/setup.sh (installs iproute2, iptables, ipset, iputils-ping)`,
      );
  }
}

function endpointOf(
  t: Topology,
  name: string,
): { netns: string; ip: string; pod?: PodSpec; node?: NodeSpec } {
  const [cluster, what] = name.split('/');
  const pod = allPods(t).find((p) => p.cluster === cluster && p.name === what);
  if (pod) return { netns: pod.netns, ip: pod.ip, pod };
  const node = t.nodes.find((n) => n.cluster === cluster && n.name === what);
  if (node) return { netns: node.netns, ip: node.ip, node };
  throw new Error(`scenario names unknown endpoint ${name}`);
}

export async function probe(
  t: Topology,
  f: Pick<Flow, 'from' | 'to' | 'proto' | 'port'>,
  timeoutMs = 1000,
): Promise<ProbeResult> {
  const from = endpointOf(t, f.from);
  const to = endpointOf(t, f.to);
  if (f.proto === 'icmp') return ping(from.netns, to.ip as never, Math.max(1, Math.round(timeoutMs / 1000)));
  return tcpProbe(from.netns, to.ip as never, f.port ?? DB_PORT, timeoutMs);
}

/** Copy the example clusters into the work directory (the demo edits its copy, never the repo). */
function writeClusters(workDir: string, exampleDir: string): void {
  for (const c of CLUSTERS) cpSync(join(exampleDir, c), join(workDir, c), { recursive: true });
}

async function loadClusters(workDir: string): Promise<Record<string, Resource[]>> {
  const out: Record<string, Resource[]> = {};
  for (const c of CLUSTERS) {
    const { resources, errors } = await FileDatastore.load(join(workDir, c));
    if (errors.length)
      throw new Error(
        `example cluster ${c} has invalid resources: ${errors.map((e) => e.message).join('; ')}`,
      );
    out[c] = resources;
  }
  return out;
}

/** Build the namespaces, start probe servers, syncers and agents, and wait until every node is programmed. */
export async function startMesh(opts: {
  workDir: string;
  prefix: string;
  backend: 'nft' | 'legacy';
  /** A directory with clusters a/ and b/ (default examples/two-cluster; tests use variants). */
  exampleDir?: string;
  /** Cluster b's data in a real etcd (Calico's layout) instead of YAML files. */
  etcd?: boolean;
}): Promise<Mesh> {
  const { workDir, prefix } = opts;
  await stopMesh(workDir, prefix);
  mkdirSync(workDir, { recursive: true });
  writeFileSync(join(workDir, 'prefix'), prefix);
  writeClusters(workDir, opts.exampleDir ?? EXAMPLE_DIR);
  let etcd: Mesh['etcd'];
  if (opts.etcd) {
    await checkEtcdInstalled();
    const { endpoint } = await startDemoEtcd(workDir);
    await loadDemoEtcd(endpoint, join(workDir, RELABEL.cluster));
    writeEtcdRcc(workDir, endpoint);
    etcd = { endpoint, relabel: { namespace: '', name: '' } };
  }
  const clusters = await loadClusters(workDir);
  const topology = topologyFromResources(prefix, clusters);
  if (etcd) {
    const w = clusters[RELABEL.cluster]?.find(
      (r) => r.kind === 'WorkloadEndpoint' && r.spec.pod === RELABEL.pod,
    );
    if (!w?.namespace) throw new Error(`relabel: pod ${RELABEL.pod} not found in cluster ${RELABEL.cluster}`);
    etcd.relabel = { namespace: w.namespace, name: w.name };
  }
  await buildTopology(topology);
  for (const p of allPods(topology)) {
    startProcess(
      workDir,
      `probe-${p.cluster}-${p.name}`,
      [process.execPath, PROBE_SCRIPT, 'serve', String(DB_PORT)],
      {
        netns: p.netns,
        env: { PROBE_NAME: `${p.cluster}/${p.name}` },
      },
    );
  }
  for (const n of topology.nodes) {
    startProcess(workDir, `probe-${n.name}`, [process.execPath, PROBE_SCRIPT, 'serve', String(HOST_PORT)], {
      netns: n.netns,
      env: { PROBE_NAME: `${n.cluster}/${n.name}` },
    });
  }
  const started = Date.now();
  // The demo reads its children's info-level logs (in sync, programmed): never quieter than info.
  const env = { FEDMESH_LOG_LEVEL: process.env.FEDMESH_LOG_LEVEL === 'debug' ? 'debug' : 'info' };
  const syncers = CLUSTERS.map((c) =>
    startProcess(
      workDir,
      `syncer-${c}`,
      [
        process.execPath,
        ...NODE_FLAGS,
        FEDMESH_BIN,
        'syncer',
        '--cluster',
        c,
        '--datastore',
        etcd && c === RELABEL.cluster ? `etcdv3:${etcd.endpoint}` : `file:${join(workDir, c)}`,
        '--listen',
        `unix:${join(workDir, `${c}.sock`)}`,
        // The clusters' directories are siblings under the work directory: an RCC of type file
        // may point there (the default root for a file:DIR datastore; needed for an etcd one).
        '--file-datastore-root',
        workDir,
      ],
      { env },
    ),
  );
  // One services controller per cluster, as the Deployment has it: each writes its cluster's
  // federated Endpoints into <cluster>/federated-endpoints.yaml.
  const servicesControllers = CLUSTERS.map((c) =>
    startProcess(
      workDir,
      `services-${c}`,
      [
        process.execPath,
        ...NODE_FLAGS,
        FEDMESH_BIN,
        'services-controller',
        '--cluster',
        c,
        '--datastore',
        `file:${join(workDir, c)}`,
      ],
      { env },
    ),
  );
  const agents = topology.nodes.map((n) =>
    startProcess(
      workDir,
      `agent-${n.name}`,
      [
        process.execPath,
        ...NODE_FLAGS,
        FEDMESH_BIN,
        'agent',
        '--node',
        n.name,
        '--feed',
        `unix:${join(workDir, `${n.cluster}.sock`)}`,
        '--iptables-backend',
        opts.backend,
        '--health-listen',
        `127.0.0.1:${AGENT_HEALTH_PORT}`,
      ],
      { netns: n.netns, env },
    ),
  );
  const timeout = 90_000;
  const inSync = await Promise.all(
    agents.map((a) => waitForLog(a.log, /"msSinceStart":(\d+),"msg":"feed in sync"/, timeout)),
  );
  const programmed = await Promise.all(
    agents.map((a) =>
      waitForLog(a.log, /"msSinceInSync":(\d+),"msSinceStart":(\d+),"msg":"node programmed"/, timeout),
    ),
  );
  const allInSync = Date.now();
  return {
    workDir,
    prefix,
    topology,
    agents,
    syncers,
    ...(etcd ? { etcd } : {}),
    servicesControllers,
    timings: {
      startToAllInSyncMs: Math.max(...inSync.map((m) => Number(m[1]))) + Math.min(allInSync - started, 0),
      inSyncToProgrammedMs: programmed.map((m) => Number(m[1])),
      startToAllProgrammedMs: Math.max(...programmed.map((m) => Number(m[2]))),
    },
  };
}

export async function stopMesh(workDir: string, prefix?: string): Promise<void> {
  await stopRecorded(workDir);
  const pfx =
    prefix ??
    (existsSync(join(workDir, 'prefix'))
      ? readFileSync(join(workDir, 'prefix'), 'utf8').trim()
      : DEFAULT_PREFIX);
  await destroyTopology(pfx);
}

export interface MatrixRow {
  flow: Flow;
  observed: 'allow' | 'deny';
  sourceSeen?: string;
  pass: boolean;
  detail: string;
}

export async function runMatrix(mesh: Mesh): Promise<MatrixRow[]> {
  const t = mesh.topology;
  return Promise.all(
    FLOWS.map(async (flow) => {
      // Expected denials time out; keep their timeout short. Allowed flows get more slack.
      const r = await probe(t, flow, flow.expect === 'deny' ? 1000 : 2000);
      const observed = r.ok ? 'allow' : 'deny';
      let pass = observed === flow.expect;
      let detail = r.detail;
      if (pass && r.ok && flow.source) {
        const from = endpointOf(t, flow.from);
        const fromNode = from.pod ? t.nodes.find((n) => n.pods.includes(from.pod!)) : from.node;
        const want = flow.source === 'pod' ? from.ip : fromNode?.ip;
        if (r.sourceSeen !== want) {
          pass = false;
          detail = `source seen ${r.sourceSeen}, expected ${want}`;
        }
      }
      return { flow, observed, sourceSeen: r.sourceSeen, pass, detail };
    }),
  );
}

export function formatMatrix(rows: MatrixRow[]): string {
  const head = ['FROM', 'TO', 'PROTO', 'EXPECTED', 'OBSERVED', 'SOURCE SEEN', 'RESULT', 'WHY'];
  const body = rows.map((r) => [
    r.flow.from,
    r.flow.to,
    r.flow.proto === 'tcp' ? `tcp/${r.flow.port}` : 'icmp',
    r.flow.expect,
    r.observed,
    r.sourceSeen ?? '-',
    r.pass ? 'ok' : 'MISMATCH',
    r.pass ? r.flow.why : `${r.flow.why} [${r.detail}]`,
  ]);
  const all = [head, ...body];
  const w = head.map((_, i) => Math.max(...all.map((row) => row[i]!.length)));
  return all
    .map((row) =>
      row
        .map((c, i) => c.padEnd(w[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Edit one pod's label in the cluster's YAML (document-aware, so only that pod changes). */
function setPodLabel(workDir: string, from: string, to: string): void {
  const file = join(workDir, RELABEL.cluster, RELABEL.file);
  const docs = readFileSync(file, 'utf8').split('\n---\n');
  const i = docs.findIndex((d) => new RegExp(`^\\s*pod: ${RELABEL.pod}$`, 'm').test(d));
  if (i < 0 || !docs[i]!.includes(from))
    throw new Error(`relabel: ${RELABEL.pod} with "${from}" not found in ${file}`);
  docs[i] = docs[i]!.replace(from, to);
  writeFileSync(file, docs.join('\n---\n'));
}

/** Poll the flow until it reaches the wanted state; the time from the edit, or undefined if never. */
async function timeUntil(t: Topology, want: boolean, limitMs: number): Promise<number | undefined> {
  const start = Date.now();
  while (Date.now() - start < limitMs) {
    const r = await probe(t, RELABEL.flow, 300);
    if (r.ok === want) return Date.now() - start;
    await new Promise((res) => setTimeout(res, 50));
  }
  return undefined;
}

export interface FederatedEndpointRow {
  cluster: string;
  pod: string;
  ip: string;
  port: number;
  observed: 'allow' | 'deny';
  sourceSeen?: string;
  pass: boolean;
}

/**
 * The federated Service of cluster a as its services controller wrote it (Endpoints and the
 * EndpointSlices that say which cluster each address comes from), then real packets from a's
 * frontend to every endpoint: each must answer and see the frontend's own IP.
 */
/** How many endpoints the federated Service must have in this mesh. */
export function federatedExpected(mesh: Mesh): number {
  return mesh.etcd ? FEDERATED_SERVICE.expectedWithEtcd : FEDERATED_SERVICE.expected;
}

export async function runFederatedService(mesh: Mesh): Promise<FederatedEndpointRow[]> {
  const { cluster, namespace, name, from } = FEDERATED_SERVICE;
  const expected = federatedExpected(mesh);
  const file = join(mesh.workDir, cluster, 'federated-endpoints.yaml');
  let resources: Resource[] = [];
  const start = Date.now();
  const addresses = () =>
    resources.flatMap((r) =>
      r.kind === 'Endpoints' && r.namespace === namespace && r.name === name
        ? r.subsets.flatMap((s) => s.addresses)
        : [],
    );
  while (addresses().length < expected && Date.now() - start < 30_000) {
    await new Promise((r) => setTimeout(r, 100));
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    resources = parseYamlDocuments(text, { source: file, baseDir: dirname(file) }).resources;
  }
  const clusterOf = new Map<string, string>();
  for (const r of resources)
    if (r.kind === 'EndpointSlice' && r.labels['kubernetes.io/service-name'] === name)
      for (const e of r.endpoints)
        for (const ip of e.addresses)
          clusterOf.set(ip, r.labels['multicluster.kubernetes.io/source-cluster'] ?? '?');
  const port =
    resources.flatMap((r) =>
      r.kind === 'Endpoints' && r.name === name ? r.subsets.flatMap((s) => s.ports) : [],
    )[0]?.port ?? DB_PORT;
  const client = endpointOf(mesh.topology, from);
  return Promise.all(
    addresses().map(async (a) => {
      const r = await tcpProbe(client.netns, a.ip as never, port, 2000);
      return {
        cluster: clusterOf.get(a.ip) ?? '?',
        pod: a.targetRef?.name ?? '-',
        ip: a.ip,
        port,
        observed: r.ok ? ('allow' as const) : ('deny' as const),
        ...(r.sourceSeen ? { sourceSeen: r.sourceSeen } : {}),
        pass: r.ok && r.sourceSeen === client.ip,
      };
    }),
  );
}

export function formatFederated(rows: FederatedEndpointRow[]): string {
  const { cluster, namespace, name, from } = FEDERATED_SERVICE;
  const head = ['CLUSTER', 'POD', 'IP', 'PORT', `FROM ${from}`, 'SOURCE SEEN', 'RESULT'];
  const body = rows.map((r) => [
    r.cluster,
    r.pod,
    r.ip,
    `${r.port}/tcp`,
    r.observed,
    r.sourceSeen ?? '-',
    r.pass ? 'ok' : 'MISMATCH',
  ]);
  const all = [head, ...body];
  const w = head.map((_, i) => Math.max(...all.map((row) => row[i]!.length)));
  return [
    `federated Service ${namespace}/${name} in cluster ${cluster} (written by its services controller): ${rows.length} endpoints`,
    ...all.map((row) =>
      row
        .map((c, i) => c.padEnd(w[i]!))
        .join('  ')
        .trimEnd(),
    ),
  ].join('\n');
}

export interface RelabelResult {
  cutMs?: number;
  restoredMs?: number;
  pass: boolean;
}

/** Relabel the pod where its cluster keeps it: the YAML file, or etcd with --etcd. */
export async function relabel(mesh: Mesh, retired: boolean): Promise<void> {
  const { key, value, retired: other } = RELABEL.label;
  if (mesh.etcd) await setEtcdLabel(mesh.etcd.endpoint, mesh.etcd.relabel, key, retired ? other : value);
  else if (retired) setPodLabel(mesh.workDir, RELABEL.from.label, RELABEL.from.to);
  else setPodLabel(mesh.workDir, RELABEL.from.to, RELABEL.from.label);
}

export async function runRelabel(mesh: Mesh): Promise<RelabelResult> {
  const limit = RELABEL.deadlineMs * 3;
  await relabel(mesh, true);
  const cutMs = await timeUntil(mesh.topology, false, limit);
  await relabel(mesh, false);
  const restoredMs = await timeUntil(mesh.topology, true, limit);
  const ok = (v: number | undefined) => v !== undefined && v <= RELABEL.deadlineMs;
  return { cutMs, restoredMs, pass: ok(cutMs) && ok(restoredMs) };
}

function lookCommands(mesh: Mesh): string {
  const n = mesh.topology.nodes[0]!;
  const pod = n.pods[0]!;
  return [
    'Everything is still up. Look at it as an operator would, e.g. on node ' + n.name + ':',
    `  ip netns exec ${n.netns} iptables-save -t filter | grep cali`,
    `  ip netns exec ${n.netns} iptables-save -t nat | grep cali`,
    `  ip netns exec ${n.netns} ipset list`,
    `  ip -n ${n.netns} route show proto 80`,
    `  ip -n ${n.netns} route show dev ${pod.iface}`,
    `  ip -n ${n.netns} neigh show dev vxlan.calico`,
    `  bridge -n ${n.netns} fdb show dev vxlan.calico`,
    `  ip netns exec ${pod.netns} ping -c1 <ip>        (pods: ${allPods(mesh.topology)
      .map((p) => `${p.netns}=${p.ip}`)
      .join(' ')})`,
    `  npx fedmesh status --feed unix:${join(mesh.workDir, 'a.sock')}`,
    `Cluster YAML (edit it live): ${join(mesh.workDir, 'a')} and ${join(mesh.workDir, 'b')}; logs: ${mesh.workDir}/*.log`,
    ...(mesh.etcd
      ? [
          `Cluster b's data is in etcd at ${mesh.etcd.endpoint}: npx fedmesh eval "app == 'db'" --cluster b --datastore etcdv3:${mesh.etcd.endpoint}`,
          `a reaches b through the Secret in ${demoSecretFile(mesh.workDir)}: move it away and fedmesh status shows b CONFIG_INCOMPLETE (its data withdrawn); put it back and b returns`,
        ]
      : []),
    'Remove everything: npx fedmesh demo down',
  ].join('\n');
}

export async function runDemo(opts: DemoOptions): Promise<number> {
  const out = opts.out ?? ((s: string) => process.stdout.write(`${s}\n`));
  await preflight();
  const workDir = opts.workDir ?? DEFAULT_WORKDIR;
  const prefix = opts.prefix ?? DEFAULT_PREFIX;
  let keep = opts.keep;
  const onSignal = () => {
    keep = false;
    void stopMesh(workDir, prefix).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    out(
      `fedmesh demo: clusters a and b, 2 nodes each, 2 pods per node plus a db pod on a-node1 (iptables backend: ${opts.backend})${opts.etcd ? "; cluster b's data in etcd" : ''}`,
    );
    const mesh = await startMesh({ workDir, prefix, backend: opts.backend, etcd: opts.etcd === true });
    if (mesh.etcd)
      out(
        `cluster b's Calico data is in etcd at ${mesh.etcd.endpoint} (Calico's key layout); b's syncer reads it with --datastore etcdv3:${mesh.etcd.endpoint}, a reaches b through a clusterAccessSecret (a/remote-b-secret.yaml: datastoreType etcdv3)`,
      );
    const tm = mesh.timings;
    out(
      `all agents in sync ${tm.startToAllInSyncMs} ms after start; every node programmed ${Math.max(...tm.inSyncToProgrammedMs)} ms after its in-sync (all programmed ${tm.startToAllProgrammedMs} ms after start)`,
    );
    const rows = await runMatrix(mesh);
    out('');
    out(formatMatrix(rows));
    out('');
    const fed = await runFederatedService(mesh);
    out(formatFederated(fed));
    const fedOk = fed.length === federatedExpected(mesh) && fed.every((r) => r.pass);
    if (mesh.etcd)
      out(
        "(with b in etcd, a's Secret for b gives etcd access only, no Kubernetes API, so b's Services are not read: only a's own backends, as in Calico)",
      );
    out('');
    const rel = await runRelabel(mesh);
    out(
      `relabel b/db-1 app=db → app=db-retired${mesh.etcd ? ' (written to etcd)' : ''}: a/frontend-1 → b/db-1:5432 cut after ${rel.cutMs ?? 'never'} ms; ` +
        `relabelled back: restored after ${rel.restoredMs ?? 'never'} ms (bar: ${RELABEL.deadlineMs} ms) ${rel.pass ? 'ok' : 'MISMATCH'}`,
    );
    const failed = rows.filter((r) => !r.pass).length + (rel.pass ? 0 : 1) + (fedOk ? 0 : 1);
    out(`${rows.length + 2 - failed} passed, ${failed} failed`);
    if (keep) out(`\n${lookCommands(mesh)}`);
    return failed === 0 ? 0 : 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (!keep) {
      await stopMesh(workDir, prefix);
      rmSync(workDir, { recursive: true, force: true });
    }
  }
}

export async function demoDown(opts: { workDir?: string; prefix?: string } = {}): Promise<number> {
  const workDir = opts.workDir ?? DEFAULT_WORKDIR;
  await stopMesh(workDir, opts.prefix);
  rmSync(workDir, { recursive: true, force: true });
  process.stdout.write('demo removed: processes stopped, namespaces deleted, files removed\n');
  return 0;
}
