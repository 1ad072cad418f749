// `fedmesh explain --from A --to B --port 5432/tcp`: is this flow allowed, and why.
//
// Policies are never federated, so a flow has two decisions, each taken in its own cluster: the
// source's egress by the policies of the source's cluster, the destination's ingress by the
// policies of the destination's cluster. Each is evaluated in that cluster's own view: its local
// endpoints, plus its remotes' endpoints renamed `<cluster>/...` with `fedmesh.io/cluster`, exactly
// as that cluster's syncer serves them (syncer/merged-view.ts runs the syncer's own Merger: remote
// conflicts refused, remote network sets left out). The other cluster's datastore is found through
// the RemoteClusterConfigurations of --datastore; when it cannot be read,
// its decision is unknown. The decision logic itself is agent/calc/flow-evaluator.ts.
//
// Each datastore is read once (syncer/datastore/snapshots.ts): the same read resolves the names
// and feeds every merged view that needs it. A decision needs only a sliver of a big cluster, so
// each view is focused on the flow (explain-focus.ts): policies are compiled for the ends they
// select, and only the items at the flow's two addresses are indexed.
import {
  type ClusterView,
  type DecidingRule,
  type Direction,
  type DirectionResult,
  evaluateDirection,
  type Flow,
  protocolName,
  type TierTrace,
  type ViewItem,
} from '../agent/calc/flow-evaluator.ts';
import { quietLogsForCli } from '../lib/log.ts';
import { addressOfIpNetwork, cidrContainsIp, type Ip4, NetParseError, parseIp4 } from '../model/net.ts';
import type {
  HostEndpoint,
  Labels,
  Resource,
  ResourceError,
  Secret,
  WorkloadEndpoint,
} from '../model/resources.ts';
import { RemoteClusterState } from '../proto/service.ts';
import { baseKey } from '../syncer/convert.ts';
import type { ConnectionConfig, FileConnection } from '../syncer/datastore/connection.ts';
import { type DatastoreFlags, parseDatastoreSpec } from '../syncer/datastore/open.ts';
import { defaultFileRoot } from '../syncer/datastore/paths.ts';
import { Snapshots } from '../syncer/datastore/snapshots.ts';
import { type MergedView, mergedViewOf } from '../syncer/merged-view.ts';
import { resolveRemoteConfig, type SecretLookup } from '../syncer/remote-config.ts';
import { type Focus, focusedView } from './explain-focus.ts';

export interface ExplainOptions {
  cluster: string;
  datastore: string;
  /** TLS and credentials for --datastore (--etcd-*, --k8s-* flags). */
  datastoreFlags?: DatastoreFlags;
  from: string;
  to: string;
  port: string;
  /** Usually unknown (ephemeral); rules that test it are then taken as not matching. */
  sourcePort?: string;
  output: string;
  /** RCC fileDatastorePaths must lie under it; default: the --datastore directory's parent. */
  fileDatastoreRoot?: string;
}

/** A problem with what was asked (unknown endpoint, bad --port): exit code 2. */
export class ExplainError extends Error {}

// ---------------------------------------------------------------------------------------------
// --port

export interface FlowPort {
  protocol: number;
  dstPort?: number;
  icmp?: { type: number; code?: number };
  /** For people: `tcp port 5432`, `icmp type 8 code 0 (echo request)`. */
  text: string;
}

/** `N/tcp`, `N/udp`, `N/sctp`, `icmp` (echo request), `icmp/TYPE` or `icmp/TYPE/CODE`. */
export function parseFlowPort(s: string): FlowPort {
  const spec = s.trim().toLowerCase();
  const icmp = /^icmp(?:\/(\d{1,3})(?:\/(\d{1,3}))?)?$/.exec(spec);
  if (icmp) {
    const type = icmp[1] === undefined ? 8 : Number(icmp[1]);
    const code = icmp[1] === undefined ? 0 : icmp[2] === undefined ? undefined : Number(icmp[2]);
    if (type > 255 || (code !== undefined && code > 255))
      throw new ExplainError(`--port ${s}: ICMP type and code are 0-255`);
    const what = code === undefined ? `type ${type}` : `type ${type} code ${code}`;
    const echo = type === 8 && code === 0 ? ' (echo request)' : '';
    return { protocol: 1, icmp: code === undefined ? { type } : { type, code }, text: `icmp ${what}${echo}` };
  }
  const m = /^(\d{1,5})\/(tcp|udp|sctp)$/.exec(spec);
  if (m) {
    const port = Number(m[1]);
    if (port < 1 || port > 65535) throw new ExplainError(`--port ${s}: port must be 1-65535`);
    const proto = m[2] as 'tcp' | 'udp' | 'sctp';
    const protocol = proto === 'tcp' ? 6 : proto === 'udp' ? 17 : 132;
    return { protocol, dstPort: port, text: `${proto} port ${port}` };
  }
  const hint = /^\d+$/.test(spec) ? ` (say ${spec}/tcp or ${spec}/udp)` : '';
  throw new ExplainError(`--port ${s}: expected N/tcp, N/udp, N/sctp or icmp${hint}`);
}

// ---------------------------------------------------------------------------------------------
// Clusters: the --datastore one and those its RCCs point at

interface Loaded {
  resources?: Resource[];
  error?: string;
  /** How it was read, for the merged view of that cluster. */
  connection?: ConnectionConfig;
  /** The cluster's merged view, when it was built as the datastore was read (a streamed read). */
  merged?: MergedView;
  /**
   * The resources are only those the ends can be looked up in (a streamed read keeps no more):
   * where a lookup fails, `full` reads them all, for the lookup to say exactly why.
   */
  full?: () => Promise<Resource[]>;
}

interface ClusterData extends Loaded {
  /** As the --cluster datastore names it (the RCC's name for remote ones). */
  name: string;
  local: boolean;
}

/**
 * Reads datastores once each (by connection), warning about refused resources on stderr. The same
 * reads feed the merged views (buildView): nothing is read twice.
 */
class Loader {
  readonly snapshots = new Snapshots();
  private readonly cache = new Map<string, Promise<Loaded>>();

  /** Where RCC file datastores may lie (false: nowhere, the local datastore is not a directory). */
  constructor(private readonly fileRoot: string | false) {}

  load(connection: ConnectionConfig): Promise<Loaded> {
    const key = JSON.stringify(connection);
    let p = this.cache.get(key);
    if (!p) {
      p = this.snapshots.read(connection).then((got): Loaded => {
        if ('error' in got) return { error: `${got.description}: ${got.error}` };
        for (const e of got.snapshot.errors) warn(e);
        return { resources: got.snapshot.resources, connection };
      });
      this.cache.set(key, p);
    }
    return p;
  }

  /**
   * A file datastore streamed into its cluster's merged view (as eval reads it): its resources are
   * not kept beside the view, only those `keep` picks (the ones the flow's ends are looked up in).
   */
  async stream(cluster: string, connection: FileConnection, keep: (r: Resource) => boolean): Promise<Loaded> {
    const resources: Resource[] = [];
    const outcome = this.snapshots.streamTo(connection, (r) => {
      if (keep(r)) resources.push(r);
    });
    let merged: MergedView;
    try {
      merged = await mergedViewOf(cluster, connection, {
        fileRoot: this.fileRoot,
        snapshots: this.snapshots,
      });
    } catch (e) {
      return { error: (e as Error).message };
    }
    for (const e of (await outcome)?.errors ?? []) warn(e);
    const full = async () => {
      const got = await this.snapshots.read(connection);
      if ('error' in got) throw new Error(`${got.description}: ${got.error}`);
      return got.snapshot.resources;
    };
    return { resources, connection, merged, full };
  }

  /** How a cluster reaches one of its remotes (resolved as the syncer resolves RCCs). */
  async remote(r: Resource, secrets: SecretLookup): Promise<Loaded> {
    if (r.kind !== 'RemoteClusterConfiguration') return { error: 'not a RemoteClusterConfiguration' };
    const resolved = resolveRemoteConfig(r, secrets, {
      defaultSecretNamespace: DEFAULT_SECRET_NAMESPACE,
      fileRoot: this.fileRoot,
    });
    if ('incomplete' in resolved) return { error: `its configuration is incomplete: ${resolved.incomplete}` };
    return this.load(resolved.connection);
  }
}

function warn(e: ResourceError): void {
  process.stderr.write(`warning: ${e.origin.source}: ${e.resource ?? ''} ${e.field ?? ''}: ${e.message}\n`);
}

const DEFAULT_SECRET_NAMESPACE =
  process.env.FEDMESH_NAMESPACE ?? process.env.POD_NAMESPACE ?? 'fedmesh-system';

const isRcc = (r: Resource) => r.kind === 'RemoteClusterConfiguration';
const isWep = (r: Resource): r is WorkloadEndpoint => r.kind === 'WorkloadEndpoint';
const isHep = (r: Resource): r is HostEndpoint => r.kind === 'HostEndpoint';

// ---------------------------------------------------------------------------------------------
// The two ends of the flow

interface FlowEnd {
  given: string;
  ip: Ip4;
  /** The endpoint, when the name or address is one. */
  endpoint?: { cluster: ClusterData; resource: WorkloadEndpoint | HostEndpoint; name: string };
}

function addresses(r: WorkloadEndpoint | HostEndpoint): Ip4[] {
  if (r.kind === 'HostEndpoint') return [...r.spec.expectedIPs];
  const out: Ip4[] = [];
  for (const n of r.spec.ipNetworks) {
    try {
      out.push(addressOfIpNetwork(n));
    } catch (e) {
      if (!(e instanceof NetParseError)) throw e;
    }
  }
  return out;
}

/**
 * `eval`'s name for an endpoint: `<ns>/<name>` (workload) or `<name>` (host) locally, with a
 * `<cluster>/` prefix for remote ones.
 */
function endpointName(c: ClusterData, r: WorkloadEndpoint | HostEndpoint): string {
  const base = r.kind === 'WorkloadEndpoint' ? `${r.namespace}/${r.name}` : r.name;
  return c.local ? base : `${c.name}/${base}`;
}

function end(given: string, c: ClusterData, r: WorkloadEndpoint | HostEndpoint, flag: string): FlowEnd {
  const ip = addresses(r)[0];
  if (!ip) throw new ExplainError(`--${flag} ${given}: ${endpointName(c, r)} has no IPv4 address`);
  return { given, ip, endpoint: { cluster: c, resource: r, name: endpointName(c, r) } };
}

function readable(flag: string, given: string, c: ClusterData): Resource[] {
  if (c.resources) return c.resources;
  throw new ExplainError(
    `--${flag} ${given}: cluster ${c.name}'s datastore cannot be read (${c.error}); give the endpoint's IP address to have the other side evaluated`,
  );
}

/**
 * What resolveEnd can look at in the local cluster, for the ends given: every resource but the
 * workload endpoints (a big cluster's bulk), and of those only the ones an end can name — at
 * an address given, or of a namespace and name (or pod) given — and the first of each namespace
 * given (which says the namespace has endpoints). Where an end is found among these, it is the
 * one it would be found as among all; where it is not, the lookup is done again among all.
 */
function lookedUp(cluster: string, given: readonly string[]): (r: Resource) => boolean {
  const ips = new Set<string>();
  const named = new Set<string>();
  const namespaces = new Set<string>();
  const seenNamespaces = new Set<string>();
  for (const g of given) {
    try {
      ips.add(parseIp4(g));
      continue;
    } catch (e) {
      if (!(e instanceof NetParseError)) throw e;
    }
    const parts = g.split('/');
    if (parts.length === 3 && parts[0] !== cluster) continue;
    if (parts.length < 2 || parts.length > 3) continue;
    const [ns, name] = parts.slice(-2) as [string, string];
    named.add(`${ns}/${name}`);
    namespaces.add(ns);
  }
  return (r) => {
    if (!isWep(r)) return true;
    if (namespaces.has(r.namespace) && !seenNamespaces.has(r.namespace)) {
      seenNamespaces.add(r.namespace);
      return true;
    }
    if (named.has(`${r.namespace}/${r.name}`) || named.has(`${r.namespace}/${r.spec.pod}`)) return true;
    return ips.size > 0 && addresses(r).some((ip) => ips.has(ip));
  };
}

/**
 * An end as `eval` names endpoints (`<ns>/<name>`, `<cluster>/<ns>/<name>`, a pod's name in place
 * of the endpoint's, host endpoints as `[<cluster>/]<name>`) or an IPv4 address.
 */
function resolveEnd(flag: string, given: string, clusters: ClusterData[]): FlowEnd {
  let ip: Ip4 | undefined;
  try {
    ip = parseIp4(given);
  } catch (e) {
    if (!(e instanceof NetParseError)) throw e;
  }
  if (ip !== undefined) {
    // A workload endpoint first, then a host endpoint; local cluster first.
    for (const kind of ['WorkloadEndpoint', 'HostEndpoint'] as const) {
      for (const c of clusters) {
        const r = (c.resources ?? [])
          .filter((x): x is WorkloadEndpoint | HostEndpoint => x.kind === kind)
          .find((x) => addresses(x).includes(ip));
        if (r) return { given, ip, endpoint: { cluster: c, resource: r, name: endpointName(c, r) } };
      }
    }
    return { given, ip };
  }
  const parts = given.split('/');
  if (parts.length < 1 || parts.length > 3 || parts.some((p) => p === ''))
    throw new ExplainError(
      `--${flag} ${given}: expected <namespace>/<name> (local), <cluster>/<namespace>/<name> or an IPv4 address`,
    );
  const local = clusters[0]!;
  const known = () => clusters.map((x) => x.name).join(', ');
  if (parts.length === 1) {
    const hep = (local.resources ?? []).filter(isHep).find((h) => h.name === given);
    if (hep) return end(given, local, hep, flag);
    throw new ExplainError(
      `--${flag} ${given}: no host endpoint ${given} in cluster ${local.name} (a workload endpoint is <namespace>/<name>)`,
    );
  }
  if (parts.length === 2) {
    // `<ns>/<name>` locally, or a remote host endpoint `<cluster>/<name>`.
    const [first, name] = parts as [string, string];
    const hasLocalNs = (local.resources ?? []).some(
      (r) => (isWep(r) && r.namespace === first) || (r.kind === 'Namespace' && r.name === first),
    );
    const remote = clusters.find((x) => !x.local && x.name === first);
    if (remote && !hasLocalNs) {
      const hep = readable(flag, given, remote)
        .filter(isHep)
        .find((h) => h.name === name);
      if (hep) return end(given, remote, hep, flag);
      throw new ExplainError(
        `--${flag} ${given}: no host endpoint ${name} in cluster ${remote.name} (a remote workload endpoint is <cluster>/<namespace>/<name>)`,
      );
    }
  }
  const clusterName = parts.length === 3 ? parts[0]! : local.name;
  const [ns, name] = parts.slice(-2) as [string, string];
  const c = clusters.find((x) => x.name === clusterName);
  if (!c)
    throw new ExplainError(
      `--${flag} ${given}: no cluster "${clusterName}" (cluster ${local.name} knows ${known()})`,
    );
  const inNs = readable(flag, given, c)
    .filter(isWep)
    .filter((w) => w.namespace === ns);
  const exact = inNs.filter((w) => w.name === name);
  const found = exact.length > 0 ? exact : inNs.filter((w) => w.spec.pod === name);
  if (found.length === 0) {
    const there = inNs.map((w) => w.name).sort();
    const hint = there.length > 0 ? ` (there: ${there.join(', ')})` : ` (no endpoints in namespace ${ns})`;
    throw new ExplainError(
      `--${flag} ${given}: no workload endpoint "${name}" in namespace ${ns} of cluster ${c.name}${hint}`,
    );
  }
  if (found.length > 1)
    throw new ExplainError(
      `--${flag} ${given}: pod ${name} has ${found.length} endpoints (${found.map((w) => w.name).join(', ')}); name one`,
    );
  return end(given, c, found[0]!, flag);
}

// ---------------------------------------------------------------------------------------------
// The report

export interface EndReport {
  given: string;
  /** `eval`'s name for it; null for an address that is no endpoint. */
  endpoint: string | null;
  kind: 'workload' | 'host' | null;
  ip: string;
  /** The cluster the endpoint lives in (and its identity, its labels, come from). */
  cluster: string | null;
  labels: Labels | null;
}

export interface PeerReport {
  ip: string;
  /** How the deciding cluster names the other end; null when it knows no endpoint there. */
  seenAs: string | null;
  identityFrom: string | null;
  labels: Labels | null;
  networkSets: string[];
}

export interface DirectionReport {
  direction: Direction;
  /** The cluster whose policies decide; null when no cluster's policies apply. */
  policiesOf: string | null;
  decision: 'allow' | 'deny' | 'unknown';
  by: DirectionResult['by'] | 'not-an-endpoint' | 'host-endpoint' | 'unreadable';
  reason: string;
  /** The other end, as the deciding cluster sees it. */
  peer?: PeerReport;
  rule?: DecidingRule;
  tiers: TierTrace[];
  notes: string[];
}

export interface ExplainReport {
  flow: {
    from: string;
    to: string;
    protocol: string;
    port: number | null;
    icmp?: { type: number; code?: number };
    sourcePort?: number;
    text: string;
  };
  verdict: 'allowed' | 'denied' | 'unknown';
  source: EndReport;
  destination: EndReport;
  egress: DirectionReport;
  ingress: DirectionReport;
  /** About the clusters' views (a remote that could not be read, refused resources). */
  notes: string[];
}

interface BuiltView {
  view: ClusterView;
  notes: string[];
}

/**
 * Cluster c's view for this flow. The merged view is the syncer's, whole; the ClusterView built
 * from it holds only what the flow can touch (focusedUpdates): the policies are compiled for the
 * endpoints they select, not all of them.
 */
async function buildView(
  c: ClusterData,
  fileRoot: string | false,
  snapshots: Snapshots,
  focus: Focus,
): Promise<BuiltView> {
  const notes: string[] = [];
  const merged =
    c.merged ??
    (c.connection ? await mergedViewOf(c.name, c.connection, { fileRoot, snapshots }) : undefined);
  for (const r of merged?.remotes ?? []) {
    if (r.state !== RemoteClusterState.IN_SYNC) {
      // The --datastore cluster's own remotes are reported once, with the error, by explain().
      const detail = c.local ? '' : ` (cannot be read here: ${r.detail || RemoteClusterState[r.state]})`;
      notes.push(
        `cluster ${r.cluster}'s endpoints have no identity (labels) in cluster ${c.name}'s view${detail}`,
      );
    } else if (r.conflicts > 0) {
      notes.push(`cluster ${c.name} refuses ${r.conflicts} resource(s) of cluster ${r.cluster}: ${r.detail}`);
    }
  }
  const view = focusedView(c.name, merged?.updates ?? [], focus);
  for (const x of view.refused) notes.push(`cluster ${c.name}: ${x.key} refused: ${x.reason}`);
  return { view, notes };
}

function peerReport(view: ClusterView, ip: Ip4): PeerReport {
  const items = view.itemsAt(ip);
  const ep: ViewItem | undefined = items.find((i) => i.kind !== 'networkSet');
  return {
    ip,
    seenAs: ep ? view.displayName(ep) : null,
    identityFrom: ep ? ep.cluster : null,
    labels: ep ? (view.labels(ep.key) ?? null) : null,
    networkSets: items.filter((i) => i.kind === 'networkSet').map((i) => view.displayName(i)),
  };
}

// A disabled pool allocates nothing: in flat routing it covers another cluster's pods (NAT exemption).
function poolOwner(clusters: readonly ClusterData[], ip: Ip4): ClusterData | undefined {
  return clusters.find((c) =>
    c.resources?.some((r) => r.kind === 'IPPool' && !r.spec.disabled && cidrContainsIp(r.spec.cidr, ip)),
  );
}

export async function explain(
  opts: ExplainOptions,
  /** streamed: false reads a local file datastore whole, as other datastores are (the differential test). */
  how: { streamed?: boolean } = {},
): Promise<ExplainReport> {
  const port = parseFlowPort(opts.port);
  let sourcePort: number | undefined;
  if (opts.sourcePort !== undefined) {
    sourcePort = Number(opts.sourcePort);
    if (!/^\d{1,5}$/.test(opts.sourcePort) || sourcePort < 1 || sourcePort > 65535)
      throw new ExplainError(`--source-port ${opts.sourcePort}: expected a port number 1-65535`);
  }
  let localConnection: ConnectionConfig;
  try {
    localConnection = parseDatastoreSpec(opts.datastore, opts.datastoreFlags);
  } catch (e) {
    throw new ExplainError((e as Error).message);
  }
  quietLogsForCli();
  const fileRoot = opts.fileDatastoreRoot ?? defaultFileRoot(opts.datastore) ?? false;
  const loader = new Loader(fileRoot);
  const own =
    localConnection.type === 'file' && how.streamed !== false
      ? await loader.stream(opts.cluster, localConnection, lookedUp(opts.cluster, [opts.from, opts.to]))
      : await loader.load(localConnection);
  if (own.error) throw new Error(own.error);
  const secrets = new Map<string, Secret>();
  for (const r of own.resources ?? []) if (r.kind === 'Secret') secrets.set(`${r.namespace}/${r.name}`, r);
  const clusters: ClusterData[] = [
    { name: opts.cluster, local: true, ...own, resources: own.resources ?? [] },
  ];
  for (const r of (own.resources ?? []).filter(isRcc)) {
    if (r.name === opts.cluster) continue;
    const got = await loader.remote(r, (ns, name) => secrets.get(`${ns}/${name}`));
    clusters.push({ name: r.name, local: false, ...got });
  }

  let src: FlowEnd;
  let dst: FlowEnd;
  try {
    src = resolveEnd('from', opts.from, clusters);
    dst = resolveEnd('to', opts.to, clusters);
  } catch (e) {
    // A lookup that fails among the resources kept says why from all of them (there: ...).
    if (!(e instanceof ExplainError) || !own.full) throw e;
    (clusters[0] as ClusterData).resources = await own.full();
    src = resolveEnd('from', opts.from, clusters);
    dst = resolveEnd('to', opts.to, clusters);
  }

  // What a cluster's view must hold: the two addresses, and the ends that live in it.
  const focusOf = (c: ClusterData): Focus => ({
    ips: [src.ip, dst.ip],
    selves: [src, dst].flatMap((e) =>
      e.endpoint && e.endpoint.cluster === c ? [baseKey(e.endpoint.resource)] : [],
    ),
  });
  const views = new Map<string, Promise<BuiltView>>();
  const viewOf = (c: ClusterData) => {
    let v = views.get(c.name);
    if (!v) {
      v = buildView(c, fileRoot, loader.snapshots, focusOf(c));
      views.set(c.name, v);
    }
    return v;
  };
  const notes = new Set<string>();
  const unreadable = clusters.filter((c) => !c.resources);
  for (const c of unreadable) notes.add(`cluster ${c.name}'s datastore cannot be read: ${c.error}`);

  const endReport = async (e: FlowEnd): Promise<EndReport> => {
    if (!e.endpoint)
      return { given: e.given, endpoint: null, kind: null, ip: e.ip, cluster: null, labels: null };
    const { view } = await viewOf(e.endpoint.cluster);
    return {
      given: e.given,
      endpoint: e.endpoint.name,
      kind: e.endpoint.resource.kind === 'WorkloadEndpoint' ? 'workload' : 'host',
      ip: e.ip,
      cluster: e.endpoint.cluster.name,
      labels: view.labels(baseKey(e.endpoint.resource)) ?? null,
    };
  };

  const side = async (direction: Direction, self: FlowEnd, other: FlowEnd): Promise<DirectionReport> => {
    const role = direction === 'egress' ? 'source' : 'destination';
    if (!self.endpoint) {
      const pool = poolOwner(clusters, self.ip);
      if (!pool && unreadable.length > 0) {
        const names = unreadable.map((c) => c.name).join(', ');
        return {
          direction,
          policiesOf: null,
          decision: 'unknown',
          by: 'unreadable',
          reason: `the ${role} ${self.ip} is no endpoint of a cluster that can be read; it may belong to cluster ${names}, whose datastore cannot be read: ${direction} decision unknown`,
          tiers: [],
          notes: [],
        };
      }
      const where = pool ? ` (an address of cluster ${pool.name}'s pool, but no workload endpoint)` : '';
      return {
        direction,
        policiesOf: null,
        decision: 'allow',
        by: 'not-an-endpoint',
        reason: `the ${role} ${self.ip} is not a workload endpoint${where}: no ${direction} policy applies`,
        tiers: [],
        notes: [],
      };
    }
    const c = self.endpoint.cluster;
    const { view, notes: viewNotes } = await viewOf(c);
    for (const n of viewNotes) notes.add(n);
    const peer = peerReport(view, other.ip);
    const res = self.endpoint.resource;
    const host = res.kind === 'HostEndpoint';
    // Policy applies to a host endpoint of a named interface (Felix's cali-th-/cali-fh- chains).
    if (res.kind === 'HostEndpoint' && (!res.spec.interfaceName || res.spec.interfaceName === '*')) {
      return {
        direction,
        policiesOf: null,
        decision: 'allow',
        by: 'host-endpoint',
        reason: `the ${role} is host endpoint ${self.endpoint.name} without an interface name: fedmesh applies no ${direction} policy to it`,
        peer,
        tiers: [],
        notes: [],
      };
    }
    const labels = view.labels(baseKey(self.endpoint.resource));
    if (!labels) {
      return {
        direction,
        policiesOf: c.name,
        decision: 'unknown',
        by: 'unreadable',
        reason: `cluster ${c.name} refused the ${role} endpoint; ${direction} decision unknown`,
        peer,
        tiers: [],
        notes: [],
      };
    }
    const flow: Flow = {
      src: view.peer(src.ip),
      dst: view.peer(dst.ip),
      protocol: port.protocol,
      ...(port.dstPort !== undefined ? { dstPort: port.dstPort } : {}),
      ...(sourcePort !== undefined ? { srcPort: sourcePort } : {}),
      ...(port.icmp ? { icmp: port.icmp } : {}),
    };
    const r = evaluateDirection({
      direction,
      endpointLabels: labels,
      policies: view.policies,
      index: view.index,
      flow,
      tierOrders: view.tierOrders,
      passTiers: view.passTiers,
      profiles: view.profilesOf(baseKey(self.endpoint.resource)),
      host,
    });
    return {
      direction,
      policiesOf: c.name,
      decision: r.decision,
      by: r.by,
      reason: r.reason,
      peer,
      ...(r.rule ? { rule: r.rule } : {}),
      tiers: r.tiers,
      ...(r.profiles ? { profiles: r.profiles } : {}),
      notes: r.notes,
    };
  };

  const egress = await side('egress', src, dst);
  const ingress = await side('ingress', dst, src);
  const decisions = [egress.decision, ingress.decision];
  const verdict = decisions.includes('deny')
    ? 'denied'
    : decisions.includes('unknown')
      ? 'unknown'
      : 'allowed';
  return {
    flow: {
      from: src.endpoint?.name ?? src.ip,
      to: dst.endpoint?.name ?? dst.ip,
      protocol: protocolName(port.protocol),
      port: port.dstPort ?? null,
      ...(port.icmp ? { icmp: port.icmp } : {}),
      ...(sourcePort !== undefined ? { sourcePort } : {}),
      text: port.text,
    },
    verdict,
    source: await endReport(src),
    destination: await endReport(dst),
    egress,
    ingress,
    notes: [...notes],
  };
}

// ---------------------------------------------------------------------------------------------
// Text

const DECISION_WORD = { allow: 'ALLOWED', deny: 'DENIED', unknown: 'UNKNOWN' } as const;

/** Labels for people: the namespace's and service account's (pcns./pcsa.) inherited copies left out. */
function labelsText(l: Labels): string {
  return Object.entries(l)
    .filter(([k]) => !k.startsWith('pcns.') && !k.startsWith('pcsa.'))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
}

function endText(title: string, e: EndReport): string[] {
  if (!e.endpoint) return [`${title} ${e.ip}: not an endpoint of any cluster that can be read`];
  const host = e.kind === 'host' ? 'host endpoint ' : '';
  return [
    `${title} ${host}${e.endpoint} (${e.ip}), identity from cluster ${e.cluster}`,
    `${' '.repeat(title.length)} labels: ${e.labels ? labelsText(e.labels) : '(unknown)'}`,
  ];
}

function directionText(d: DirectionReport): string[] {
  const head = d.direction === 'egress' ? 'Egress from the source' : 'Ingress to the destination';
  const out: string[] = [];
  const whose = d.policiesOf ? `, by the policies of cluster ${d.policiesOf}` : '';
  out.push(`${head}${whose}: ${DECISION_WORD[d.decision]}`);
  if (d.peer && d.policiesOf) {
    const role = d.direction === 'egress' ? 'destination' : 'source';
    const seen = d.peer.seenAs
      ? `${d.peer.seenAs} (${d.peer.ip}), identity from cluster ${d.peer.identityFrom}`
      : `${d.peer.ip}, no endpoint with this address (only nets and ports rules can match it)`;
    const sets = d.peer.networkSets.length ? `; in network sets ${d.peer.networkSets.join(', ')}` : '';
    out.push(`  ${role} as cluster ${d.policiesOf} sees it: ${seen}${sets}`);
  }
  for (const t of d.tiers) {
    out.push(`  tier ${t.tier}`);
    for (const p of t.policies) {
      const order = p.order !== undefined ? ` (order ${p.order})` : '';
      out.push(`    policy ${p.policy}${order}`);
      if (p.rules.length === 0) out.push(`      no ${d.direction} rules`);
      for (const r of p.rules) {
        let what: string;
        if (r.uncertain) what = `taken as no match: ${r.uncertain}, which the flow does not say`;
        else if (!r.matched) what = `no match: ${r.why}`;
        else if (r.action === 'log') what = 'matched: logged, carrying on';
        else if (r.action === 'pass') what = 'matched: pass, on to the next tier';
        else what = `matched: ${r.action === 'allow' ? 'allowed' : 'denied'}`;
        out.push(`      rule ${r.index}  ${r.match}`);
        out.push(`              ${what}`);
      }
      if (p.outcome === 'no-match' && p.rules.length > 0)
        out.push('      no rule decided: on to the next policy');
    }
    if (t.outcome === 'pass' && d.tiers[d.tiers.length - 1] !== t)
      out.push(`  end of tier ${t.tier}: passed, on to the next tier`);
  }
  out.push(`  => ${d.reason}`);
  for (const n of d.notes) out.push(`  note: ${n}`);
  return out;
}

export function renderText(r: ExplainReport): string {
  const lines: string[] = [];
  lines.push(`Flow ${r.flow.from} -> ${r.flow.to}, ${r.flow.text}: ${r.verdict.toUpperCase()}`);
  if (r.flow.sourcePort !== undefined) lines.push(`  (source port ${r.flow.sourcePort})`);
  lines.push('');
  lines.push(...endText('Source:     ', r.source));
  lines.push(...endText('Destination:', r.destination));
  lines.push('');
  lines.push(...directionText(r.egress));
  lines.push('');
  lines.push(...directionText(r.ingress));
  lines.push('');
  const word = (d: DirectionReport) =>
    d.decision === 'allow' ? 'allows' : d.decision === 'deny' ? 'denies' : 'unknown';
  const why =
    r.verdict === 'allowed'
      ? 'both directions allow it'
      : r.verdict === 'denied'
        ? `egress ${word(r.egress)}, ingress ${word(r.ingress)}`
        : `egress ${word(r.egress)}, ingress ${word(r.ingress)}: a decision is unknown`;
  lines.push(`Verdict: ${r.verdict.toUpperCase()} (${why})`);
  for (const n of r.notes) lines.push(`note: ${n}`);
  return `${lines.join('\n')}\n`;
}

export async function runExplain(opts: ExplainOptions): Promise<number> {
  if (opts.output !== 'text' && opts.output !== 'json') {
    process.stderr.write(`fedmesh explain: --output ${opts.output}: expected text or json\n`);
    return 2;
  }
  let report: ExplainReport;
  try {
    report = await explain(opts);
  } catch (e) {
    if (e instanceof ExplainError) {
      process.stderr.write(`fedmesh explain: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  process.stdout.write(opts.output === 'json' ? `${JSON.stringify(report, null, 2)}\n` : renderText(report));
  return 0;
}
