// Dataplane benchmark: the agent's time to program a node from a fresh snapshot, beside the kernel
// floor for the same final state (DESIGN.md, "Performance"): the kernel tools loading exactly that
// state in one go (one `ipset restore`, one `iptables-restore` per table, one `ip -batch` for
// routes and ARP, one `bridge -batch` for FDB) into a fresh namespace. Printed as a ratio, measured
// side by side in one run. Needs root (it works inside namespaces it creates and removes).
// Then one-change latency: a local endpoint's label change (its policies change), feed message to
// kernel, p50/p99/max over CHANGES changes, on both iptables backends, and a remote endpoint's
// (only its sets change) on the first (BENCH_IPTABLES picks the cold-start backend). The
// other backend's run is bounded to LEGACY_CHANGES (default 300): a legacy restore rewrites the whole
// table blob (~0.3 s at 25,000 rules), so 1,000 changes would add minutes for no new information.
//   npm run bench -- dataplane [remoteEndpoints=20000] [remoteNodes=500] [policies=100] [changes=1000] [legacyChanges=300]
// BENCH_SKIP=drift,other leaves out the drift-check/repair part and the other backend's run, and
// BENCH_SKIP=changes everything after the cold start (for iterating on one part alone).
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { performance as perf } from 'node:perf_hooks';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { CalculationGraph } from '../agent/calc/graph.ts';
import type { DataplaneMessage } from '../agent/calc/messages.ts';
import { Sequencer } from '../agent/calc/sequencer.ts';
import { Dataplane, DRIFT_CHECK_DEFAULT_MS, RESYNC_DEFAULT_MS } from '../agent/dataplane/dataplane.ts';
import { intToIp4 } from '../model/net.ts';
import { type ExecRecord, observeExec, run } from '../native/exec.ts';
import { IpRouteDriver } from '../native/iproute.ts';
import { IpSetDriver, listedMemoryBytes } from '../native/ipset.ts';
import { IptablesDriver } from '../native/iptables.ts';
import { addNetns, deleteNetns, uniqueTag } from '../native/netns.ts';
import { RestoreSession } from '../native/restore-session.ts';
import { Action, ResourceKind, type Update, UpdateSchema } from '../proto/service.ts';

const [REMOTE_EPS = 20_000, REMOTE_NODES = 500, POLICIES = 100, CHANGES = 1000, LEGACY_CHANGES = 300] =
  process.argv.slice(2).map(Number);
const LOCAL_EPS = 50;
const SKIP = new Set((process.env.BENCH_SKIP ?? '').split(',').filter(Boolean));
const MY_NODE = 'bench-node';

function u(
  kind: ResourceKind,
  key: string,
  cluster: string,
  body: MessageInitShape<typeof UpdateSchema>['body'],
): Update {
  return create(UpdateSchema, { key, cluster, kind, body });
}

/** Local pod i, labelled app-<app>. */
function localEndpoint(i: number, app: number): Update {
  return u(ResourceKind.WORKLOAD_ENDPOINT, `${MY_NODE}/k8s/shop/pod-${i}/eth0`, 'a', {
    case: 'workloadEndpoint',
    value: {
      node: MY_NODE,
      namespace: 'shop',
      pod: `pod-${i}`,
      endpoint: 'eth0',
      interfaceName: `calibench${String(i).padStart(5, '0')}`,
      ipv4Nets: [`10.0.0.${i + 2}/32`],
      profiles: ['kns.shop'],
      labels: { app: `app-${app}`, 'projectcalico.org/namespace': 'shop' },
    },
  });
}

/** Remote pod i of cluster b, on node b-node<i mod REMOTE_NODES>, labelled app-<app>. */
function remoteEndpoint(i: number, app: number): Update {
  const n = i % REMOTE_NODES;
  const ip = intToIp4(0x0a400000 + n * 64 + 1 + Math.floor(i / REMOTE_NODES));
  return u(ResourceKind.WORKLOAD_ENDPOINT, `b/b-node${n}/k8s/shop/r-${i}/eth0`, 'b', {
    case: 'workloadEndpoint',
    value: {
      node: `b-node${n}`,
      namespace: 'shop',
      pod: `r-${i}`,
      endpoint: 'eth0',
      interfaceName: 'x',
      ipv4Nets: [`${ip}/32`],
      profiles: ['b/kns.shop'],
      labels: { app: `app-${app}`, 'projectcalico.org/namespace': 'shop', 'fedmesh.io/cluster': 'b' },
    },
  });
}

function scenario(): Update[] {
  const out: Update[] = [];
  out.push(
    u(ResourceKind.NODE, 'node/bench-node', 'a', {
      case: 'node',
      value: {
        name: MY_NODE,
        ipv4Address: '172.31.0.1',
        ipv4PrefixLen: 16,
        vxlanTunnelAddress: '10.0.0.1',
        vxlanTunnelMac: '66:00:00:00:00:01',
      },
    }),
  );
  out.push(
    u(ResourceKind.IP_POOL, 'ippool/a', 'a', {
      case: 'ipPool',
      value: { cidr: '10.0.0.0/16', natOutgoing: true, vxlanMode: 'Always', blockSize: 26 },
    }),
  );
  out.push(
    u(ResourceKind.IP_POOL, 'b/ippool/b', 'b', {
      case: 'ipPool',
      value: { cidr: '10.64.0.0/10', vxlanMode: 'Always', blockSize: 26 },
    }),
  );
  out.push(
    u(ResourceKind.PROFILE, 'kns.shop', 'a', { case: 'profile', value: { labels: { 'pcns.team': 'web' } } }),
  );
  for (let i = 0; i < LOCAL_EPS; i++) {
    out.push(localEndpoint(i, i % 10));
  }
  for (let n = 0; n < REMOTE_NODES; n++) {
    const name = `b-node${n}`;
    const block = 0x0a400000 + n * 64; // 10.64.x.y/26 blocks
    out.push(
      u(ResourceKind.NODE, `b/node/${name}`, 'b', {
        case: 'node',
        value: {
          name,
          ipv4Address: intToIp4(0xac1f0000 + 10 + n),
          ipv4PrefixLen: 16,
          vxlanTunnelAddress: intToIp4(block),
          vxlanTunnelMac: `66:bb:00:00:${((n >> 8) & 255).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`,
        },
      }),
    );
    out.push(
      u(ResourceKind.IPAM_BLOCK, `b/ipamblock/${n}`, 'b', {
        case: 'ipamBlock',
        value: { cidr: `${intToIp4(block)}/26`, affinityNode: name },
      }),
    );
  }
  for (let i = 0; i < REMOTE_EPS; i++) out.push(remoteEndpoint(i, i % 200));
  for (let p = 0; p < POLICIES; p++) {
    out.push(
      u(ResourceKind.POLICY, `policy/shop/p${p}`, 'a', {
        case: 'policy',
        value: {
          name: `p${p}`,
          namespace: 'shop',
          tier: 'default',
          hasOrder: true,
          order: p,
          selector: `app == 'app-${p % 10}'`,
          ingress: true,
          egress: true,
          ingressRules: [
            {
              action: Action.ALLOW,
              protocol: 'tcp',
              source: { selector: `app == 'app-${p % 200}'` },
              destination: { ports: [{ first: 8080, last: 8080 }] },
            },
          ],
          egressRules: [
            {
              action: Action.ALLOW,
              destination: { selector: `app in {'app-${(p * 7) % 200}', 'app-${(p * 13) % 200}'}` },
            },
          ],
        },
      }),
    );
  }
  return out;
}

async function makeNode(ns: string): Promise<void> {
  await addNetns(ns);
  const lines = [
    'link add eth0 type veth peer name eth0p',
    'addr add 172.31.0.1/16 dev eth0',
    'link set eth0 up',
    'link set eth0p up',
  ];
  for (let i = 0; i < LOCAL_EPS; i++) {
    const name = `calibench${String(i).padStart(5, '0')}`;
    lines.push(`link add ${name} type veth peer name pb${i}`, `link set ${name} up`, `link set pb${i} up`);
  }
  await run('ip', ['-n', ns, '-batch', '-'], { input: `${lines.join('\n')}\n` });
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, performance.now() - t0];
}

/** Kernel tool runs grouped by what they are for: one line each in the breakdown. */
function breakdown(records: readonly ExecRecord[]): string[] {
  const rows = new Map<string, { n: number; ms: number; kb: number }>();
  for (const r of records) {
    const what = r.file === 'ip' && r.args[0] === '-n' ? r.args.slice(2) : r.args;
    const write = /restore|-batch/.test(`${r.file} ${what.join(' ')}`);
    const key = `${write ? 'write' : 'read '} ${r.file} ${what.filter((a) => a !== '-').join(' ')}`.slice(
      0,
      70,
    );
    const row = rows.get(key) ?? { n: 0, ms: 0, kb: 0 };
    row.n++;
    row.ms += r.ms;
    row.kb += r.inputBytes / 1024;
    rows.set(key, row);
  }
  return [...rows].map(
    ([k, v]) =>
      `  ${k.padEnd(70)} ${String(v.n).padStart(3)}× ${v.ms.toFixed(0).padStart(6)} ms  ${v.kb.toFixed(0).padStart(6)} KiB in`,
  );
}

let changeNo = 0;
const DRIFT_MS = DRIFT_CHECK_DEFAULT_MS;
const IDLE_S = Number(process.env.BENCH_IDLE_S ?? 120);
const WARMUP_S = 20;
const RESYNC_S = RESYNC_DEFAULT_MS / 1000;

/**
 * CPU seconds of this process and of every process under it: its children still running (the tool
 * launcher with the tools it ran and reaped, the `nft monitor` the drift check keeps) and those it
 * reaped: utime+stime+cutime+cstime from /proc.
 */
function cpuSeconds(): number {
  const fields = (stat: string) =>
    stat
      .slice(stat.lastIndexOf(') ') + 2)
      .split(' ')
      .map(Number);
  const own = fields(readFileSync('/proc/self/stat', 'utf8'));
  let ticks = own[11]! + own[12]! + own[13]! + own[14]!;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const f = fields(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      // A running child's own time and that of the tools it reaped (the launcher's tools).
      if (f[1] === process.pid) ticks += f[11]! + f[12]! + f[13]! + f[14]!;
    } catch {
      // gone meanwhile
    }
  }
  return ticks / 100;
}

/**
 * The drift check holding this state: idle CPU while it runs every DRIFT_MS, then damage-to-repair
 * for a flushed ipset, a deleted hook and a foreign rule in our chain (the periodic resync is off).
 */
async function driftRepairs(dp: Dataplane, ns: string, backend: 'nft' | 'legacy'): Promise<void> {
  dp.start();
  // The first check reads every table once (the watch starts with it), and the collector settles the
  // cold start's garbage: one-offs, measured apart.
  const b0 = cpuSeconds();
  await new Promise((r) => setTimeout(r, WARMUP_S * 1000));
  console.log(
    `drift check start-up (${backend}): ${(cpuSeconds() - b0).toFixed(2)} CPU seconds over the first ${WARMUP_S} s (one save of every table, nft monitor started)`,
  );
  const idleRuns: ExecRecord[] = [];
  const unobserve = observeExec((r) => idleRuns.push(r));
  const c0 = cpuSeconds();
  const w0 = performance.now();
  const elu0 = perf.eventLoopUtilization();
  await new Promise((r) => setTimeout(r, IDLE_S * 1000));
  const idle = (cpuSeconds() - c0) / ((performance.now() - w0) / 1000);
  const busy = perf.eventLoopUtilization(elu0).utilization;
  unobserve();
  console.log(
    `drift check every ${DRIFT_MS} ms, idle with this state (${backend}): ${(idle * 100).toFixed(1)}% of a core over ${IDLE_S} s (agent + its tools; main thread busy ${(busy * 100).toFixed(1)}%); target ≤ 2%, ratio ${(idle / 0.02).toFixed(2)}`,
  );
  for (const line of breakdown(idleRuns)) console.log(line);
  // The periodic full resync (everything read back and diffed), amortised over its interval.
  const r0 = cpuSeconds();
  const rw0 = performance.now();
  const resynced = dp.whenApplied();
  dp.resync();
  await resynced;
  const resyncCpu = cpuSeconds() - r0;
  console.log(
    `one full resync (${backend}): ${(performance.now() - rw0).toFixed(0)} ms, ${resyncCpu.toFixed(2)} CPU seconds; every ${RESYNC_S} s (the default) that is ${((resyncCpu / RESYNC_S) * 100).toFixed(1)}% of a core; idle total ${((idle + resyncCpu / RESYNC_S) * 100).toFixed(1)}%`,
  );
  const ipt = backend === 'nft' ? 'iptables-nft' : 'iptables-legacy';
  const save = `${ipt}-save`;
  const sets = (await run('ipset', ['list', '-n'], { netns: ns })).stdout
    .split('\n')
    .filter((n) => n.startsWith('cali40'));
  const chain = /^:(cali-tw-\S+)/m.exec((await run(save, ['-t', 'filter'], { netns: ns })).stdout)?.[1] ?? '';
  const damages: [string, string[], () => Promise<boolean>][] = [
    [
      'flushed ipset',
      ['ipset', 'flush', sets[0] ?? ''],
      async () =>
        (await run('ipset', ['list', '-t', sets[0] ?? ''], { netns: ns })).stdout.includes(
          'Number of entries: 0',
        ) === false,
    ],
    [
      'deleted hook (FORWARD)',
      [ipt, '-D', 'FORWARD', '1'],
      async () => /-A FORWARD .*cali:/.test((await run(save, ['-t', 'filter'], { netns: ns })).stdout),
    ],
    [
      'foreign rule in our chain',
      [ipt, '-I', chain, '1', '-s', '10.99.0.1', '-j', 'ACCEPT'],
      async () => !(await run(save, ['-t', 'filter'], { netns: ns })).stdout.includes('10.99.0.1'),
    ],
  ];
  for (const [what, cmd, repaired] of damages) {
    const before = dp.stats.applies;
    await run(cmd[0]!, cmd.slice(1), { netns: ns });
    const t0 = performance.now();
    // Watch the pass counter, not the kernel: polling the kernel would be a drift check of its own.
    while (dp.stats.applies === before && performance.now() - t0 < 30_000)
      await new Promise((r) => setTimeout(r, 10));
    const ms = performance.now() - t0;
    const ok = await repaired();
    console.log(
      `repair of a ${what} (${backend}): ${ms.toFixed(0)} ms${ok ? '' : ' — NOT REPAIRED'}; target ≤ 5000 ms, ratio ${(ms / 5000).toFixed(2)}`,
    );
  }
}

const pct = (xs: readonly number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? Number.NaN;

/** The next local change: a pod's label alternates between two apps (its policy set changes each time). */
function nextLocalFlip(): Update {
  const k = changeNo % LOCAL_EPS;
  const flip = Math.floor(changeNo++ / LOCAL_EPS) % 2;
  return localEndpoint(k, (k + 1 + flip) % 10);
}

let remoteChangeNo = 0;
/**
 * The next remote change: a remote pod's label alternates between its app and the next one, so it
 * leaves the sets that select the one and joins those that select the other (ipsets only: no
 * local endpoint's policies change).
 */
function nextRemoteFlip(): Update {
  const i = (remoteChangeNo * 7919) % REMOTE_EPS;
  const flip = Math.floor(remoteChangeNo++ / REMOTE_EPS) % 2 === 0 ? 1 : 0;
  return remoteEndpoint(i, (i + flip) % 200);
}

/** p50, p99 and max of latencies in ms, as the result lines print them. */
function spread(xs: readonly number[]): string {
  return `p50 ${pct(xs, 0.5).toFixed(1)} ms, p99 ${pct(xs, 0.99).toFixed(1)} ms, max ${Math.max(...xs).toFixed(1)} ms`;
}

/**
 * Label changes from `next`, feed message into the graph → messages → the dataplane → kernel
 * written. Sequential, one at a time. Prints `title`, where the time went and the tool runs.
 */
async function labelChanges(
  title: string,
  graph: CalculationGraph,
  seq: Sequencer,
  dp: Dataplane,
  seen: DataplaneMessage[],
  count: number,
  next: () => Update = nextLocalFlip,
): Promise<number[]> {
  const out: number[] = [];
  let calcMs = 0;
  const tools: ExecRecord[] = [];
  const unobserve = observeExec((r) => tools.push(r));
  const w0 = performance.now();
  for (let i = 0; i < count; i++) {
    const update = next();
    const t0 = performance.now();
    graph.onUpdate(update);
    const applied = dp.whenApplied();
    const msgs = seq.flush();
    calcMs += performance.now() - t0;
    seen.push(...msgs);
    dp.onMessages(msgs);
    await applied;
    out.push(performance.now() - t0);
  }
  const wall = performance.now() - w0;
  unobserve();
  const toolMs = tools.reduce((a, r) => a + r.ms, 0);
  const per = (x: number) => `${(x / count).toFixed(1)} ms`;
  console.log(`${title}:`);
  console.log(
    `  per change: ${per(wall)} = tool runs ${per(toolMs)} (${(tools.length / count).toFixed(1)} per change) + calculation ${per(calcMs)} + render, plan and scheduling ${per(wall - toolMs - calcMs)}`,
  );
  for (const line of breakdown(tools)) console.log(line);
  return out;
}

/**
 * The tool floor of one label change: the endpoint chains the change rewrites (pod-0's
 * `cali-tw-`/`cali-fw-` chains, ~100 policy jumps each), written again by hand with one
 * `iptables-restore --noflush` into the same full table, through the same exec path as the agent.
 * Run with the agent stopped, so nothing else writes meanwhile.
 */
async function oneChangeFloor(ns: string, backend: 'nft' | 'legacy', count: number): Promise<number[]> {
  const save = (await run(`iptables-${backend}-save`, ['-t', 'filter'], { netns: ns })).stdout;
  const iface = 'calibench00000';
  const chains = [`cali-tw-${iface}`, `cali-fw-${iface}`];
  const lines = save.split('\n');
  const rules = lines.filter((l) => chains.some((c) => l.startsWith(`-A ${c} `)));
  const input = `*filter\n${chains.map((c) => `:${c} - [0:0]`).join('\n')}\n${rules.join('\n')}\nCOMMIT\n`;
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    await run(`iptables-${backend}-restore`, ['--noflush'], { netns: ns, input });
    out.push(performance.now() - t0);
  }
  console.log(
    `  tool floor of one change (${backend}): ${chains.join(' + ')} (${rules.length} rules) rewritten by hand ${count}×: p50 ${pct(out, 0.5).toFixed(1)} ms, p99 ${pct(out, 0.99).toFixed(1)} ms`,
  );
  return out;
}

/** A saved table's chains: each one's rules, as the chain each jumps or goes to (if any). */
function jumpsOf(save: string): Map<string, (string | undefined)[]> {
  const targets = new Map<string, (string | undefined)[]>();
  for (const line of save.split('\n')) {
    if (!line.startsWith('-A ')) continue;
    const chain = line.slice(3, line.indexOf(' ', 3));
    const list = targets.get(chain) ?? [];
    list.push(/ -[jg] (\S+)/.exec(line)?.[1]);
    targets.set(chain, list);
  }
  return targets;
}

/**
 * What nf_tables' validation walk covers in a saved table, counted two ways: each chain reachable
 * from a base chain once per hook (kernels with the late-2025 fix remember the chains validated for
 * a hook), and every rule once per path (kernels before it). `validationMemo` says which one this
 * kernel does.
 */
function validationScope(save: string): { perHook: Record<string, number>; perPath: number } {
  const targets = jumpsOf(save);
  const paths = new Map<string, number>();
  const visitsByPath = (chain: string): number => {
    let n = paths.get(chain);
    if (n !== undefined) return n;
    n = 0;
    for (const t of targets.get(chain) ?? []) n += 1 + (t && targets.has(t) ? visitsByPath(t) : 0);
    paths.set(chain, n);
    return n;
  };
  const perHook: Record<string, number> = {};
  let perPath = 0;
  for (const base of ['INPUT', 'FORWARD', 'OUTPUT']) {
    perPath += visitsByPath(base);
    const seen = new Set<string>();
    const stack = [base];
    let rules = 0;
    while (stack.length) {
      const c = stack.pop()!;
      if (seen.has(c) || !targets.has(c)) continue;
      seen.add(c);
      for (const t of targets.get(c)!) {
        rules++;
        if (t) stack.push(t);
      }
    }
    perHook[base] = rules;
  }
  return { perHook, perPath };
}

/**
 * Whether this kernel validates a chain that many paths reach once (remembered per hook) or once
 * per path: in a namespace of its own, a chain of 5,000 rules that each match an ipset (about half
 * a microsecond each to validate) reached from FORWARD by 1 path, then by 51, and one rule
 * committed through a kept `iptables-nft-restore` each time, with a verdict and bare. The walk is
 * the difference; walked once per path, the second would cover 255,000 rules, not 5,000.
 */
async function validationMemo(ns: string, count: number): Promise<{ one: number; many: number }> {
  await addNetns(ns);
  await run('ipset', ['create', 'fm-s', 'hash:net'], { netns: ns });
  const session = new RestoreSession('iptables-nft-restore', ['--noflush'], ns);
  const write = async (text: string) => {
    const r = await session.write(text);
    if (r.result !== 'landed') throw new Error(`validation memo probe: ${r.result}`);
  };
  const commit = async (rule: string) => {
    const t0 = performance.now();
    await write(`*filter\n:fm-probe - [0:0]\n-A fm-probe${rule}\nCOMMIT\n`);
    return performance.now() - t0;
  };
  /** The walk: a commit with a verdict less a bare one, median of `count` pairs. */
  const walk = async () => {
    const verdict: number[] = [];
    const bare: number[] = [];
    for (let i = 0; i < count; i++) {
      verdict.push(await commit(' -j RETURN'));
      bare.push(await commit(''));
    }
    return pct(verdict, 0.5) - pct(bare, 0.5);
  };
  try {
    const rules = Array.from(
      { length: 5000 },
      (_, i) => `-A fm-p -m set --match-set fm-s src -p tcp --dport ${i + 1} -j ACCEPT`,
    );
    await write(`*filter\n:fm-p - [0:0]\n${rules.join('\n')}\n-A FORWARD -j fm-p\nCOMMIT\n`);
    const one = await walk();
    const via = Array.from({ length: 50 }, (_, i) => `fm-e${i}`);
    await write(
      `*filter\n${via.map((c) => `:${c} - [0:0]`).join('\n')}\n${via.map((c) => `-A ${c} -j fm-p\n-A FORWARD -j ${c}`).join('\n')}\nCOMMIT\n`,
    );
    return { one, many: await walk() };
  } finally {
    session.end();
    await deleteNetns(ns);
  }
}

/**
 * What any commit that adds a verdict costs in this table, apart from what it writes: one rule
 * into a chain nothing jumps to, through a kept `iptables-nft-restore` as the agent writes, with a
 * verdict (`-j RETURN`: nf_tables then validates every chain reachable from the base chains) and
 * bare (no match, no target: only a counter, which asks for no validation). Their difference is
 * the kernel's validation walk, a floor under every label change that rewrites an endpoint chain.
 */
async function validationFloor(ns: string, memoNs: string, count: number): Promise<void> {
  const save = (await run('iptables-nft-save', ['-t', 'filter'], { netns: ns })).stdout;
  const session = new RestoreSession('iptables-nft-restore', ['--noflush'], ns);
  const probe = (rule: string) => `*filter\n:fm-probe - [0:0]\n-A fm-probe${rule}\nCOMMIT\n`;
  const verdict: number[] = [];
  const bare: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      for (const [rule, out] of [
        [' -j RETURN', verdict],
        ['', bare],
      ] as const) {
        const t0 = performance.now();
        const r = await session.write(probe(rule));
        if (r.result !== 'landed') throw new Error(`validation probe: ${r.result}`);
        out.push(performance.now() - t0);
      }
    }
    await session.write('*filter\n-F fm-probe\n-X fm-probe\nCOMMIT\n');
  } finally {
    session.end();
  }
  const walk = pct(verdict, 0.5) - pct(bare, 0.5);
  const memo = await validationMemo(memoNs, 30);
  // Once per path would make the second walk about 51 times the first.
  const remembered = memo.many < 5 * Math.max(memo.one, 0.1);
  const { perHook, perPath } = validationScope(save);
  const hookRules = Object.values(perHook).reduce((a, b) => a + b, 0);
  const walked = remembered ? hookRules : perPath;
  console.log(
    `  validation floor (nft): one rule into an unreferenced chain through a kept iptables-nft-restore, ${count}× each: with a verdict p50 ${pct(verdict, 0.5).toFixed(1)} ms (p99 ${pct(verdict, 0.99).toFixed(1)}), bare p50 ${pct(bare, 0.5).toFixed(1)} ms (p99 ${pct(bare, 0.99).toFixed(1)}): the kernel's validation walk ≈ ${walk.toFixed(1)} ms of every commit that adds a jump`,
  );
  const hooks = Object.entries(perHook)
    .map(([h, n]) => `${h} ${n.toLocaleString('en')}`)
    .join(', ');
  console.log(
    `    this kernel validates a chain ${remembered ? 'once per hook' : 'once per path'} (a walk of 5,000 rules reached by 1 path: ${memo.one.toFixed(1)} ms; by 51 paths: ${memo.many.toFixed(1)} ms): ${walked.toLocaleString('en')} rules validated a commit here (per hook: ${hooks}; once per path it would be ${perPath.toLocaleString('en')}), ${((walk * 1000) / walked).toFixed(2)} µs a rule`,
  );
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the dataplane benchmark needs root');
  const backend = (process.env.BENCH_IPTABLES ?? 'nft') as 'nft' | 'legacy';
  const tag = uniqueTag(4);
  const agentNs = `fmb${tag}-agent`;
  const floorNs = `fmb${tag}-floor`;
  const memoNs = `fmb${tag}-memo`;
  try {
    await Promise.all([makeNode(agentNs), makeNode(floorNs)]);
    const updates = scenario();
    // The agent, in-process, against the real kernel of its namespace (drivers take the netns).
    const seq = new Sequencer();
    const graph = new CalculationGraph({ nodeName: MY_NODE, localCluster: 'a', deferUntilInSync: true }, seq);
    const drivers = (b: 'nft' | 'legacy') => ({
      ipsets: new IpSetDriver({ netns: agentNs }),
      iptables: new IptablesDriver({ backend: b, netns: agentNs }),
      links: new IpRouteDriver({ netns: agentNs }),
    });
    const dp = new Dataplane(drivers(backend), {
      resyncIntervalMs: 3_600_000,
      driftCheckIntervalMs: DRIFT_MS,
    });
    const records: ExecRecord[] = [];
    const unobserve = observeExec((r) => records.push(r));
    const elu0 = perf.eventLoopUtilization();
    const t0 = performance.now();
    for (const x of updates) graph.onUpdate(x);
    graph.inSync();
    const msgs = seq.flush();
    const calcMs = performance.now() - t0;
    const cpu0 = cpuSeconds();
    const applied = dp.whenApplied();
    dp.onMessages(msgs);
    await applied;
    const agentMs = performance.now() - t0;
    const writeCpuMs = (cpuSeconds() - cpu0) * 1000;
    const jsMs = perf.eventLoopUtilization(elu0).active;
    unobserve();
    const r0 = performance.now();
    dp.filter.render();
    const renderMs = performance.now() - r0;
    const execMs = records.reduce((a, r) => a + r.ms, 0);

    // The kernel floor: read back the final state once, then load it in one go into a fresh namespace.
    const save = backend === 'nft' ? 'iptables-nft-save' : 'iptables-legacy-save';
    const restore = backend === 'nft' ? 'iptables-nft-restore' : 'iptables-legacy-restore';
    const ipsets = (await run('ipset', ['save'], { netns: agentNs })).stdout;
    const filter = (await run(save, ['-t', 'filter'], { netns: agentNs })).stdout;
    const nat = (await run(save, ['-t', 'nat'], { netns: agentNs })).stdout;
    const routes = JSON.parse(
      (await run('ip', ['-j', 'route', 'show', 'proto', '80'], { netns: agentNs })).stdout,
    ) as { dst: string; dev: string; gateway?: string; nhid?: number; metric?: number }[];
    // The agent's block routes carry a metric from their gateway (native/iproute.ts: at one metric
    // the kernel inserts them far slower): the floor loads them with theirs. An older agent's went
    // through nexthop objects; the floor loads those too if any are there.
    const nexthops = JSON.parse(
      (await run('ip', ['-j', 'nexthop', 'show', 'protocol', '80'], { netns: agentNs })).stdout || '[]',
    ) as { id: number; gateway: string; dev: string; flags?: string[] }[];
    const neigh = JSON.parse(
      (await run('ip', ['-j', 'neigh', 'show', 'dev', 'vxlan.calico'], { netns: agentNs })).stdout,
    ) as { dst: string; lladdr: string }[];
    const fdb = JSON.parse(
      (await run('bridge', ['-j', 'fdb', 'show', 'dev', 'vxlan.calico'], { netns: agentNs })).stdout,
    ) as { mac: string; dst?: string }[];
    // The VXLAN device itself is set-up, not state to load: create it before timing.
    await run('ip', [
      '-n',
      floorNs,
      'link',
      'add',
      'vxlan.calico',
      'type',
      'vxlan',
      'id',
      '4096',
      'dstport',
      '4789',
      'local',
      '172.31.0.1',
      'dev',
      'eth0',
      'nolearning',
    ]);
    await run('ip', ['-n', floorNs, 'link', 'set', 'vxlan.calico', 'up']);
    const ipBatch = [
      ...neigh.map((n) => `neigh replace ${n.dst} lladdr ${n.lladdr} dev vxlan.calico nud permanent`),
      ...nexthops.map(
        (n) =>
          `nexthop replace id ${n.id} via ${n.gateway} dev ${n.dev}${n.flags?.includes('onlink') ? ' onlink' : ''} proto 80`,
      ),
      ...routes.map((r) =>
        r.nhid !== undefined
          ? `route replace ${r.dst} nhid ${r.nhid} proto 80`
          : `route replace ${r.dst} ${r.gateway ? `via ${r.gateway} onlink` : ''} dev ${r.dev} proto 80${r.metric ? ` metric ${r.metric}` : ''}`,
      ),
    ].join('\n');
    const fdbBatch = fdb
      .filter((f) => f.dst)
      .map((f) => `fdb replace ${f.mac} dev vxlan.calico dst ${f.dst} self permanent`)
      .join('\n');
    const [, ipsetFloor] = await timed(() => run('ipset', ['restore'], { netns: floorNs, input: ipsets }));
    const [, filterFloor] = await timed(() => run(restore, ['--noflush'], { netns: floorNs, input: filter }));
    const [, natFloor] = await timed(() => run(restore, ['--noflush'], { netns: floorNs, input: nat }));
    const [, ipFloor] = await timed(() =>
      run('ip', ['-n', floorNs, '-batch', '-'], { input: `${ipBatch}\n` }),
    );
    const [, fdbFloor] = await timed(() =>
      run('bridge', ['-n', floorNs, '-batch', '-'], { input: `${fdbBatch}\n` }),
    );
    const floorMs = ipsetFloor + filterFloor + natFloor + ipFloor + fdbFloor;
    const members = ipsets.split('\n').filter((l) => l.startsWith('add ')).length;
    const rules = filter.split('\n').filter((l) => l.startsWith('-A ')).length;
    // What the sets take in the kernel, by ipset's own count (it leaves out the allocators' rounding:
    // /proc/meminfo grew 1.6 times as much for 2,000 sets of 145 members at 128 buckets), and how
    // long the drift check's header listing takes.
    const [terse, terseMs] = await timed(() => run('ipset', ['list', '-t'], { netns: agentNs }));
    const setMemory = listedMemoryBytes(terse.stdout);
    const setCount = ipsets.split('\n').filter((l) => l.startsWith('create ')).length;
    const f = (n: number) => `${n.toFixed(0)} ms`;
    console.log(
      `dataplane benchmark (${backend}): ${REMOTE_EPS} remote endpoints on ${REMOTE_NODES} remote nodes, ${LOCAL_EPS} local endpoints, ${POLICIES} policies`,
    );
    console.log(
      `final state: ${members} ipset members, ${rules} filter rules, ${routes.length} routes (${nexthops.length} nexthops), ${neigh.length} ARP, ${fdb.length} FDB entries; ${setCount} ipsets holding ${(setMemory / 2 ** 20).toFixed(1)} MiB of kernel memory (ipset's count), their headers listed in ${f(terseMs)}`,
    );
    console.log(
      `agent: snapshot → programmed ${f(agentMs)} (calculation ${f(calcMs)}, kernel writes incl. read-back ${f(agentMs - calcMs)})`,
    );
    console.log(
      `kernel floor: ${f(floorMs)} (ipset ${f(ipsetFloor)}, filter ${f(filterFloor)}, nat ${f(natFloor)}, routes+ARP ${f(ipFloor)}, FDB ${f(fdbFloor)})`,
    );
    console.log(
      `ratio agent / floor: ${(agentMs / floorMs).toFixed(2)}; kernel writes only / floor: ${((agentMs - calcMs) / floorMs).toFixed(2)} (target ≤ 1.30)`,
    );
    console.log(
      `cold-start breakdown: calculation ${f(calcMs)}; JS after it (render, diff, payloads, parsing) ${f(jsMs - calcMs)}, of which one filter render ${f(renderMs)}; ${records.length} tool runs ${f(execMs)} summed over the two lines written side by side (ipsets → iptables; VXLAN → FDB/ARP → routes)`,
    );
    console.log(
      `  CPU from the calculation's end to programmed, agent and tools: ${f(writeCpuMs)} over ${f(agentMs - calcMs)} of wall time; on ${availableParallelism()} cores no schedule takes under ${f(writeCpuMs / availableParallelism())}`,
    );
    for (const line of breakdown(records)) console.log(line);
    console.log('cold-start timeline (ms after the calculation ended: start → end of each tool run):');
    for (const r of records) {
      const what = (r.file === 'ip' && r.args[0] === '-n' ? r.args.slice(2) : r.args).join(' ').slice(0, 40);
      const from = r.startedAt - (t0 + calcMs);
      console.log(
        `  ${from.toFixed(0).padStart(6)} → ${(from + r.ms).toFixed(0).padStart(6)}  ${r.file} ${what}`,
      );
    }

    if (SKIP.has('changes')) return;
    // One-change latency on this backend, then on the other (same namespace: the other backend's
    // tables start empty, ipsets and routes are already right).
    const other = backend === 'nft' ? 'legacy' : 'nft';
    const lat = {
      [backend]: await labelChanges(
        `${CHANGES} local label changes (${backend})`,
        graph,
        seq,
        dp,
        msgs,
        CHANGES,
      ),
    } as Record<string, number[]>;
    // The common change in a federation: a remote pod's labels. Only its sets change.
    const remote = await labelChanges(
      `${CHANGES} remote endpoints' label changes (${backend})`,
      graph,
      seq,
      dp,
      msgs,
      CHANGES,
      nextRemoteFlip,
    );
    console.log(
      `one remote endpoint's label change (ipsets only), feed message → kernel (${backend}, ${remote.length} changes): ${spread(remote)}; target p99 ≤ 15 ms, ratio ${(pct(remote, 0.99) / 15).toFixed(2)}`,
    );
    if (!SKIP.has('drift')) await driftRepairs(dp, agentNs, backend);
    dp.stop();
    const floors = { [backend]: await oneChangeFloor(agentNs, backend, 100) } as Record<string, number[]>;
    if (backend === 'nft') await validationFloor(agentNs, memoNs, 100);
    if (SKIP.has('other')) {
      const xs = lat[backend] ?? [];
      console.log(
        `one label change, feed message → kernel (${backend}, ${xs.length} changes): ${spread(xs)}; tool floor p99 ${pct(floors[backend] ?? [], 0.99).toFixed(1)} ms`,
      );
      return;
    }
    const dp2 = new Dataplane(drivers(other));
    const applied2 = dp2.whenApplied();
    dp2.onMessages(msgs);
    await applied2;
    const otherCount = other === 'legacy' ? Math.min(CHANGES, LEGACY_CHANGES) : CHANGES;
    lat[other] = await labelChanges(
      `${otherCount} local label changes (${other})`,
      graph,
      seq,
      dp2,
      [],
      otherCount,
    );
    dp2.stop();
    floors[other] = await oneChangeFloor(agentNs, other, 100);
    if (other === 'nft') await validationFloor(agentNs, memoNs, 100);
    for (const b of ['nft', 'legacy']) {
      const xs = lat[b] ?? [];
      const p99 = pct(xs, 0.99);
      const floorP99 = pct(floors[b] ?? [], 0.99);
      console.log(
        `one label change, feed message → kernel (${b}, ${xs.length} changes): ${spread(xs)}` +
          (b === 'nft' ? `; target p99 ≤ 15 ms, ratio ${(p99 / 15).toFixed(2)}` : '') +
          `; against the tool floor's p99 ${floorP99.toFixed(1)} ms: ratio ${(p99 / floorP99).toFixed(2)}`,
      );
    }
  } finally {
    await Promise.all([deleteNetns(agentNs), deleteNetns(floorNs), deleteNetns(memoNs)]);
  }
}

await main();
