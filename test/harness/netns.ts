// Shared network-namespace set-up for integration tests: every test builds its own topology in
// namespaces named fmt<tag>-<role> and removes them afterwards, on success, failure or a crash of
// the test process. Nothing here writes to the root namespace: links are created from inside a
// test namespace and moved straight into the peer.
import { execFileSync } from 'node:child_process';
import type { TestContext } from 'node:test';
import { run } from '../../native/exec.ts';
import { addNetns, deleteNetns, inNetns, sysctl, uniqueTag } from '../../native/netns.ts';

/** Every namespace any scope in this process created and has not removed yet. */
const live = new Set<string>();

function removeLiveSync(): void {
  for (const name of live) {
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
  live.clear();
}

// Last resort if the test process ends between create and teardown (t.after never runs then):
// on a normal exit, an uncaught error, or Ctrl-C / the runner's SIGTERM.
process.once('exit', removeLiveSync);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    removeLiveSync();
    process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
  });
}

/** Is the caller root (can it create namespaces)? Integration tests skip otherwise. */
export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Does a tool exist on PATH? (e.g. iptables-legacy, which some images lack.) */
export async function hasTool(tool: string): Promise<boolean> {
  const res = await run('sh', ['-c', `command -v ${tool}`], { allowFailure: true });
  return res.exitCode === 0;
}

/** A group of namespaces sharing one random tag, torn down together. */
export class NetnsScope {
  readonly tag = uniqueTag();
  private readonly names: string[] = [];

  /** Create `fmt<tag>-<role>` with lo up; `router` also enables forwarding and disables rp_filter. */
  async add(role: string, opts: { router?: boolean } = {}): Promise<string> {
    const name = `fmt${this.tag}-${role}`;
    live.add(name);
    this.names.push(name);
    await addNetns(name);
    if (opts.router) {
      // New namespaces inherit these from the host; set them so the test does not depend on it.
      await sysctl(name, {
        'net.ipv4.ip_forward': 1,
        'net.ipv4.conf.all.rp_filter': 0,
        'net.ipv4.conf.default.rp_filter': 0,
      });
    }
    return name;
  }

  /** Remove every namespace of this scope (and whatever is running inside). Safe to call twice. */
  async teardown(): Promise<void> {
    const names = this.names.splice(0).reverse();
    await Promise.all(names.map((n) => deleteNetns(n)));
    for (const n of names) live.delete(n);
  }
}

/** A scope removed when the test (or suite) `t` ends, whatever its outcome. */
export function netnsScope(t: Pick<TestContext, 'after'>): NetnsScope {
  const scope = new NetnsScope();
  t.after(() => scope.teardown());
  return scope;
}

export interface VethEnd {
  ns: string;
  ifname: string;
  /** An address with prefix, e.g. '192.168.100.1/24'. */
  addr?: string;
  mac?: string;
  mtu?: number;
}

/** A veth pair between two namespaces, both ends up. Created inside `a.ns`, peer moved to `b.ns`. */
export async function veth(a: VethEnd, b: VethEnd): Promise<void> {
  const macA = a.mac ? ['address', a.mac] : [];
  const macB = b.mac ? ['address', b.mac] : [];
  await inNetns(a.ns, 'ip', [
    'link',
    'add',
    a.ifname,
    ...macA,
    'type',
    'veth',
    'peer',
    'name',
    b.ifname,
    ...macB,
    'netns',
    b.ns,
  ]);
  for (const end of [a, b]) {
    if (end.mtu !== undefined)
      await inNetns(end.ns, 'ip', ['link', 'set', end.ifname, 'mtu', String(end.mtu)]);
    if (end.addr !== undefined) await inNetns(end.ns, 'ip', ['addr', 'add', end.addr, 'dev', end.ifname]);
    await inNetns(end.ns, 'ip', ['link', 'set', end.ifname, 'up']);
  }
}

/** The side a CNI plugin would set up in the pod, Calico style (the node side is the agent's job):
 *  a veth `hostIf` on the node (MAC ee:ee:...), the pod's /32 on eth0, a default route via
 *  169.254.1.1 with a static ARP entry instead of proxy_arp. */
export async function podBehind(
  node: string,
  pod: string,
  hostIf: string,
  podIp: string,
  mtu = 1450,
): Promise<void> {
  await veth({ ns: node, ifname: hostIf, mac: 'ee:ee:ee:ee:ee:ee', mtu }, { ns: pod, ifname: 'eth0', mtu });
  await inNetns(pod, 'ip', ['addr', 'add', `${podIp}/32`, 'dev', 'eth0']);
  await inNetns(pod, 'ip', ['route', 'add', '169.254.1.1', 'dev', 'eth0', 'scope', 'link']);
  await inNetns(pod, 'ip', [
    'neigh',
    'add',
    '169.254.1.1',
    'lladdr',
    'ee:ee:ee:ee:ee:ee',
    'dev',
    'eth0',
    'nud',
    'permanent',
  ]);
  await inNetns(pod, 'ip', ['route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0']);
}

/** stdout of a command inside a namespace (throws with stderr on failure). */
export async function sh(ns: string, file: string, ...args: string[]): Promise<string> {
  return (await inNetns(ns, file, args)).stdout;
}

/** One ping from `ns`; true if it got an answer. `timeoutS` may be fractional for expected failures. */
export async function ping(
  ns: string,
  dst: string,
  opts: { timeoutS?: number; extra?: string[] } = {},
): Promise<boolean> {
  const args = ['-q', '-c1', `-W${opts.timeoutS ?? 1}`, ...(opts.extra ?? []), dst];
  const res = await inNetns(ns, 'ping', args, { allowFailure: true });
  return res.exitCode === 0;
}

/** Namespaces left behind by a scope with this tag (for assertions that cleanup worked). */
export async function leftovers(prefix = 'fmt'): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.startsWith(prefix));
}

/** Why a kernel test on this iptables backend cannot run here, or false when it can. */
export async function iptablesBackendSkip(backend: 'nft' | 'legacy'): Promise<string | false> {
  if (!isRoot()) return 'needs root (network namespaces)';
  if (backend === 'legacy' && !(await hasTool('iptables-legacy'))) return 'iptables-legacy is not installed';
  return false;
}
