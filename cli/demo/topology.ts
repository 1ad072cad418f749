// A mesh of clusters as network namespaces, the way ../shared/reference/netns-vxlan-e2e.sh wires
// one: an underlay namespace holding a bridge; one namespace per node with eth0 on the bridge and
// the node's IP; one namespace per pod with eth0 (its /32, a static ARP entry for 169.254.1.1 and
// a default route via it) and, on the node side, a veth named as the endpoint's interfaceName.
// The agent adds the /32 routes; everything else here is what a CNI plugin and the cloud would do.
import { type Ip4, intToIp4, parseCidrParts } from '../../model/net.ts';
import type { Resource } from '../../model/resources.ts';
import { run } from '../../native/exec.ts';
import { addNetns, deleteNetns, inNetns, listNetns, sysctl } from '../../native/netns.ts';

/** The MAC Calico gives every workload veth's host side; pods reach their gateway through it. */
export const HOST_SIDE_MAC = 'ee:ee:ee:ee:ee:ee';
const POD_MTU = 1450;

export interface PodSpec {
  cluster: string;
  name: string;
  namespace: string;
  labels: Record<string, string>;
  iface: string;
  ip: Ip4;
  netns: string;
}

export interface NodeSpec {
  cluster: string;
  name: string;
  ip: Ip4;
  prefixLen: number;
  netns: string;
  pods: PodSpec[];
}

export interface Topology {
  prefix: string;
  underlay: string;
  nodes: NodeSpec[];
}

/** Derive the topology from the clusters' resources: Nodes and their WorkloadEndpoints. */
export function topologyFromResources(prefix: string, clusters: Record<string, Resource[]>): Topology {
  const nodes: NodeSpec[] = [];
  for (const [cluster, resources] of Object.entries(clusters)) {
    for (const r of resources) {
      if (r.kind !== 'Node' || !r.spec.ipv4Address) continue;
      const node: NodeSpec = {
        cluster,
        name: r.name,
        ip: r.spec.ipv4Address,
        prefixLen: r.spec.ipv4PrefixLen ?? 24,
        netns: `${prefix}-${r.name}`,
        pods: [],
      };
      for (const w of resources) {
        if (w.kind !== 'WorkloadEndpoint' || w.spec.node !== r.name) continue;
        const net = w.spec.ipNetworks[0];
        if (!net) continue;
        node.pods.push({
          cluster,
          name: w.spec.pod,
          namespace: w.namespace,
          labels: { ...w.labels },
          iface: w.spec.interfaceName,
          ip: intToIp4(parseCidrParts(net, true).base),
          netns: `${prefix}-${cluster}-${w.spec.pod}`,
        });
      }
      nodes.push(node);
    }
  }
  return { prefix, underlay: `${prefix}-underlay`, nodes };
}

export function allPods(t: Topology): PodSpec[] {
  return t.nodes.flatMap((n) => n.pods);
}

async function buildNode(t: Topology, n: NodeSpec, index: number): Promise<void> {
  await addNetns(n.netns);
  // New namespaces inherit ip_forward/rp_filter from the host: set them explicitly.
  await sysctl(n.netns, {
    'net.ipv4.ip_forward': 1,
    'net.ipv4.conf.all.rp_filter': 0,
    'net.ipv4.conf.default.rp_filter': 0,
  });
  const ulPort = `ul${index}`;
  await run('ip', [
    'link',
    'add',
    'eth0',
    'netns',
    n.netns,
    'type',
    'veth',
    'peer',
    'name',
    ulPort,
    'netns',
    t.underlay,
  ]);
  await run('ip', ['-n', t.underlay, 'link', 'set', ulPort, 'master', 'br0', 'up']);
  await run('ip', ['-n', n.netns, 'addr', 'add', `${n.ip}/${n.prefixLen}`, 'dev', 'eth0']);
  await run('ip', ['-n', n.netns, 'link', 'set', 'eth0', 'up']);
  for (const p of n.pods) await buildPod(n, p);
}

async function buildPod(n: NodeSpec, p: PodSpec): Promise<void> {
  await addNetns(p.netns);
  await run('ip', [
    '-n',
    n.netns,
    'link',
    'add',
    p.iface,
    'address',
    HOST_SIDE_MAC,
    'type',
    'veth',
    'peer',
    'name',
    'eth0',
    'netns',
    p.netns,
  ]);
  await run('ip', ['-n', n.netns, 'link', 'set', p.iface, 'mtu', String(POD_MTU), 'up']);
  const batch = [
    `link set eth0 mtu ${POD_MTU} up`,
    `addr add ${p.ip}/32 dev eth0`,
    'route add 169.254.1.1 dev eth0 scope link',
    `neigh add 169.254.1.1 lladdr ${HOST_SIDE_MAC} dev eth0 nud permanent`,
    'route add default via 169.254.1.1 dev eth0',
  ];
  await run('ip', ['-n', p.netns, '-batch', '-'], { input: `${batch.join('\n')}\n` });
}

export async function buildTopology(t: Topology): Promise<void> {
  await addNetns(t.underlay);
  await run('ip', ['-n', t.underlay, 'link', 'add', 'br0', 'type', 'bridge']);
  await run('ip', ['-n', t.underlay, 'link', 'set', 'br0', 'up']);
  // Nodes are independent of each other: build them side by side.
  await Promise.all(t.nodes.map((n, i) => buildNode(t, n, i)));
}

/** Remove every namespace with this prefix (also what a crashed earlier run left behind). */
export async function destroyTopology(prefix: string): Promise<string[]> {
  const mine = (await listNetns()).filter((n) => n === `${prefix}-underlay` || n.startsWith(`${prefix}-`));
  await Promise.all(mine.map((n) => deleteNetns(n)));
  return mine;
}

export interface ProbeResult {
  ok: boolean;
  /** For TCP: the address the server saw as the client's. */
  sourceSeen?: string;
  detail: string;
}

export async function ping(fromNetns: string, to: Ip4, timeoutS = 1): Promise<ProbeResult> {
  const r = await inNetns(fromNetns, 'ping', ['-n', '-q', '-c', '1', '-W', String(timeoutS), to], {
    allowFailure: true,
  });
  return { ok: r.exitCode === 0, detail: r.exitCode === 0 ? 'reply' : 'no reply' };
}

export const PROBE_SCRIPT = new URL('../../scripts/probe.mjs', import.meta.url).pathname;

export async function tcpProbe(
  fromNetns: string,
  to: Ip4,
  port: number,
  timeoutMs = 1000,
): Promise<ProbeResult> {
  const r = await inNetns(
    fromNetns,
    process.execPath,
    [PROBE_SCRIPT, 'connect', to, String(port), String(timeoutMs)],
    {
      allowFailure: true,
    },
  );
  const line = r.stdout.trim();
  const m = / saw (?:::ffff:)?([0-9.]+)$/.exec(line);
  return { ok: r.exitCode === 0, sourceSeen: m?.[1], detail: line || r.stderr.trim() };
}
