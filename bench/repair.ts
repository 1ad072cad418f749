// Repair benchmark: how long the agent takes to put back what someone deleted or changed out of
// band (a block route, an FDB entry, an ARP entry; vxlan.calico deleted, set down, its MTU or local
// address changed, its tunnel address removed), driven by kernel events with the periodic resync
// and the iptables drift check off, on a node holding many remote VTEPs; and what the kernel watch
// costs while idle (this process plus the three monitor processes).
// Needs root (it works inside namespaces it creates and removes).
//   npm run bench -- repair [remoteNodes=2000,10000] [trials=10]
// Times run from the start of the damage command (its own duration is shown apart, and the median
// from its return in the last column, "after cmd", which is not what the target is held to). A
// device trial counts as repaired when the device is right again and the last VTEP's FDB entry,
// ARP entry and block route are back (each batch writes them last); after it, untimed, every
// entry is counted, and a trial that left any missing is reported in the "complete" column. At
// the end, the floor: the deletion, the same device and entries written by hand with the agent
// stopped, serially and concurrently (the lower is the floor).
import { loadavg } from 'node:os';
import { Dataplane } from '../agent/dataplane/dataplane.ts';
import { KernelWatch } from '../agent/dataplane/kernel-watch.ts';
import type { Ip4 } from '../model/net.ts';
import { run } from '../native/exec.ts';
import { diffFdb, diffNeighbours, IpRouteDriver, renderRoutePlan } from '../native/iproute.ts';
import { IpSetDriver } from '../native/ipset.ts';
import { IptablesDriver } from '../native/iptables.ts';
import { IpMonitorSource } from '../native/kernel-events.ts';
import { addNetns, deleteNetns, uniqueTag } from '../native/netns.ts';
import { remoteVtep, vtepSnapshot } from '../test/helpers/vteps.ts';

const SIZES = (process.argv[2] ?? '2000,10000').split(',').map(Number);
const TRIALS = Number(process.argv[3] ?? 10);
const TARGET_MS = 1000;
const NODE_IP = '172.16.0.1';
const MTU = 1450; // the veth underlay's 1500 - 50

/**
 * Polls until `check` holds: ms since `t0`. Every 10 ms: each poll starts an `ip` process, which
 * competes for the CPU with the repair it is timing.
 */
async function until(
  check: () => Promise<boolean>,
  t0 = performance.now(),
  timeoutMs = 30_000,
): Promise<number> {
  while (performance.now() - t0 < timeoutMs) {
    if (await check().catch(() => false)) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 10));
  }
  return Number.POSITIVE_INFINITY;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CPU seconds (user + system) a process has used, from /proc (clock ticks of 10 ms). */
async function cpuOf(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

interface Row {
  name: string;
  /** From the damage command's start to repaired. */
  ms: number[];
  /** How long the damage command itself took (deleting a device with 10,000 entries takes a while). */
  damageMs: number[];
  incomplete: number;
  /** CPU seconds per trial, damage to repaired: this process, the monitor processes. */
  agentCpu: number;
  monitorCpu: number;
}

async function scale(NODES: number): Promise<{
  rows: Row[];
  idle: string;
  stats: string;
  floorMs: number;
  serialMs: number;
  concurrentMs: number;
}> {
  const tag = uniqueTag();
  const node = `fmb${tag}-node`;
  const peer = `fmb${tag}-peer`;
  const sh = async (...args: string[]) => (await run('ip', ['-n', node, ...args])).stdout;
  const bridge = async (...args: string[]) => (await run('bridge', ['-n', node, ...args])).stdout;
  await addNetns(node);
  await addNetns(peer);
  let watch: KernelWatch | undefined;
  let dataplane: Dataplane | undefined;
  try {
    await run('ip', [
      '-n',
      node,
      'link',
      'add',
      'eth0',
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      peer,
    ]);
    await sh('addr', 'add', `${NODE_IP}/16`, 'dev', 'eth0');
    await sh('link', 'set', 'eth0', 'up');
    dataplane = new Dataplane(
      {
        ipsets: new IpSetDriver({ netns: node }),
        iptables: new IptablesDriver({ backend: 'nft', netns: node }),
        links: new IpRouteDriver({ netns: node }),
      },
      // Events alone drive the repairs: no periodic resync, no iptables drift check.
      { resyncIntervalMs: 3_600_000, driftCheckIntervalMs: 0 },
    );
    const dp = dataplane;
    const source = new IpMonitorSource(node);
    watch = new KernelWatch(source, dp, () => dp.desiredKernelState());
    watch.start();
    dp.start();
    const msgs = vtepSnapshot(NODE_IP as Ip4, NODES);
    const t0 = performance.now();
    dp.onMessages(msgs);
    await dp.whenApplied();
    process.stdout.write(
      `\n${NODES} VTEPs: programmed (FDB + ARP + block route each) in ${Math.round(performance.now() - t0)} ms\n`,
    );
    const settle = 300 + NODES / 10;
    await sleep(2 * settle); // let our own echoes pass

    // Idle: nothing changes; what do the watch and the agent cost?
    const pids = source.pids();
    const monitorCpu = async () =>
      (await Promise.all(source.pids().map((p) => cpuOf(p).catch(() => 0)))).reduce((a, b) => a + b, 0);
    const mon0 = await Promise.all(pids.map(cpuOf));
    const cpu0 = process.cpuUsage();
    const w0 = performance.now();
    await sleep(10_000);
    const wall = (performance.now() - w0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const mon = (await Promise.all(pids.map(cpuOf))).reduce((a, b, k) => a + b - mon0[k]!, 0);
    const agentPct = ((cpu.user + cpu.system) / 1e6 / wall) * 100;
    const monPct = (mon / wall) * 100;
    const idle = `idle over ${wall.toFixed(0)} s holding ${NODES} VTEPs: agent process ${agentPct.toFixed(2)}% + ${pids.length} monitor processes ${monPct.toFixed(2)}% of a core`;

    const last = remoteVtep(NODES - 1);
    const lastBack = async () =>
      (await sh('route', 'show', last.block)).includes('vxlan.calico') &&
      (await sh('neigh', 'show', last.tunnelIp, 'dev', 'vxlan.calico')).includes('PERMANENT') &&
      (await bridge('fdb', 'get', last.mac, 'dev', 'vxlan.calico', 'self')).includes(`dst ${last.nodeIp}`);
    const deviceRight = async () => {
      const d = await sh('-d', 'addr', 'show', 'dev', 'vxlan.calico');
      return (
        /<[^>]*\bUP\b/.test(d) &&
        d.includes(` mtu ${MTU} `) &&
        d.includes(`vxlan id 4096 local ${NODE_IP} `) &&
        d.includes('inet 10.10.0.0/32')
      );
    };
    /** Every FDB, ARP entry and block route present (untimed, after a trial). */
    const complete = async () => {
      const routes = (await sh('route', 'show', 'dev', 'vxlan.calico'))
        .split('\n')
        .filter((l) => l.includes(' via '));
      const arp = (await sh('neigh', 'show', 'dev', 'vxlan.calico', 'nud', 'permanent'))
        .split('\n')
        .filter(Boolean);
      const fdb = (await bridge('fdb', 'show', 'dev', 'vxlan.calico'))
        .split('\n')
        .filter((l) => l.includes(' dst ') && l.includes('permanent'));
      return routes.length === NODES && arp.length === NODES && fdb.length === NODES;
    };

    const rows: Row[] = [];
    const trial = async (
      name: string,
      trials: number,
      damage: (i: number) => Promise<unknown>,
      repaired: (i: number) => Promise<boolean>,
      wait: number,
    ) => {
      const row: Row = { name, ms: [], damageMs: [], incomplete: 0, agentCpu: 0, monitorCpu: 0 };
      for (let k = 0; k < trials; k++) {
        const i = (k * 7919) % NODES;
        const cpu0 = process.cpuUsage();
        const mon0 = await monitorCpu();
        const t0 = performance.now();
        await damage(i);
        row.damageMs.push(performance.now() - t0);
        row.ms.push(await until(() => repaired(i), t0));
        const cpu = process.cpuUsage(cpu0);
        row.agentCpu += (cpu.user + cpu.system) / 1e6 / trials;
        row.monitorCpu += ((await monitorCpu()) - mon0) / trials;
        await sleep(wait);
        if (!((await until(complete, performance.now(), 10_000)) < Number.POSITIVE_INFINITY))
          row.incomplete++;
      }
      rows.push(row);
    };
    const entry = 100;
    await trial(
      'block route deleted',
      TRIALS,
      (i) => sh('route', 'del', remoteVtep(i).block),
      async (i) => (await sh('route', 'show', remoteVtep(i).block)).includes('vxlan.calico'),
      entry,
    );
    await trial(
      'FDB entry deleted',
      TRIALS,
      (i) =>
        bridge('fdb', 'del', remoteVtep(i).mac, 'dev', 'vxlan.calico', 'dst', remoteVtep(i).nodeIp, 'self'),
      async (i) =>
        (await bridge('fdb', 'get', remoteVtep(i).mac, 'dev', 'vxlan.calico', 'self')).includes('dst'),
      entry,
    );
    await trial(
      'ARP entry deleted',
      TRIALS,
      (i) => sh('neigh', 'del', remoteVtep(i).tunnelIp, 'dev', 'vxlan.calico'),
      async (i) =>
        (await sh('neigh', 'show', remoteVtep(i).tunnelIp, 'dev', 'vxlan.calico')).includes('PERMANENT'),
      entry,
    );
    const devTrials = Math.max(3, Math.ceil(TRIALS / 2));
    const allBack = async () => (await deviceRight()) && (await lastBack());
    const device = (name: string, damage: () => Promise<unknown>) =>
      trial(`vxlan.calico ${name}`, devTrials, damage, allBack, settle);
    await device('deleted', () => sh('link', 'del', 'vxlan.calico'));
    await device('set down', () => sh('link', 'set', 'vxlan.calico', 'down'));
    await device('MTU changed (1300)', () => sh('link', 'set', 'vxlan.calico', 'mtu', '1300'));
    await device('local address changed', () =>
      sh('link', 'set', 'vxlan.calico', 'type', 'vxlan', 'local', '172.16.0.2'),
    );
    await device('tunnel address removed', () => sh('addr', 'del', '10.10.0.0/32', 'dev', 'vxlan.calico'));
    const stats = `kernel watch: ${watch.stats.events} events, ${watch.stats.repairs} repairs, ${watch.stats.lost} losses (monitor overflows: what they cover re-read)`;

    // The floor for a deleted device: the same device and entries written by hand, the agent and
    // its watch stopped. Serial: one ip -batch with the deletion, device, ARP and routes, then one
    // bridge -batch. Concurrent: the deletion and device in one ip -batch, then ARP, routes (two
    // ip -batch) and FDB (bridge -batch) side by side, as the agent's repair writes them.
    watch.stop();
    dp.stop();
    await sleep(settle);
    const vteps = Array.from({ length: NODES }, (_, i) => remoteVtep(i));
    const deviceLines = [
      'link del vxlan.calico',
      `link add vxlan.calico address 66:aa:00:00:00:01 mtu ${MTU} up type vxlan id 4096 dstport 4789 local ${NODE_IP} dev eth0 nolearning`,
      'addr replace 10.10.0.0/32 dev vxlan.calico',
    ];
    const arpLines = diffNeighbours(
      'vxlan.calico',
      vteps.map((v) => ({ ip: v.tunnelIp, mac: v.mac })),
      [],
    );
    const routeLines = renderRoutePlan({
      replace: vteps.map((v) => ({
        dst: v.block,
        dev: 'vxlan.calico',
        via: v.tunnelIp,
        onlink: true,
        mtu: MTU,
      })),
      remove: [],
      conflicts: [],
    });
    const fdbLines = diffFdb(
      'vxlan.calico',
      vteps.map((v) => ({ mac: v.mac, dst: v.nodeIp })),
      [],
    );
    const batch = (tool: string, lines: string[]) =>
      run(tool, ['-n', node, '-batch', '-'], { input: `${lines.join('\n')}\n` });
    const f0 = performance.now();
    await batch('ip', [...deviceLines, ...arpLines, ...routeLines]);
    await batch('bridge', fdbLines);
    const serialMs = performance.now() - f0;
    await sleep(settle);
    const f1 = performance.now();
    await batch('ip', deviceLines);
    await Promise.all([batch('ip', arpLines), batch('ip', routeLines), batch('bridge', fdbLines)]);
    const concurrentMs = performance.now() - f1;
    return { rows, idle, stats, floorMs: Math.min(serialMs, concurrentMs), serialMs, concurrentMs };
  } finally {
    watch?.stop();
    dataplane?.stop();
    await deleteNetns(node);
    await deleteNetns(peer);
  }
}

const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;

async function main(): Promise<void> {
  const out: string[] = [];
  for (const n of SIZES) {
    const load0 = loadavg()[0]!;
    const { rows, idle, stats, floorMs, serialMs, concurrentMs } = await scale(n);
    out.push(
      '',
      `repair, ${n} VTEPs`.padEnd(44) +
        ['trials', 'damage ms', 'median ms', 'max ms', 'target', 'ratio', 'complete', 'after cmd']
          .map((h) => h.padStart(10))
          .join(''),
    );
    const deleted = rows.find((r) => r.name === 'vxlan.calico deleted')!;
    for (const r of rows) {
      const max = Math.max(...r.ms);
      out.push(
        r.name.padEnd(44) +
          [
            String(r.ms.length),
            pct(r.damageMs, 0.5).toFixed(0),
            pct(r.ms, 0.5).toFixed(0),
            max.toFixed(0),
            String(TARGET_MS),
            (max / TARGET_MS).toFixed(2),
            r.incomplete === 0 ? 'yes' : `${r.incomplete} not`,
            pct(
              r.ms.map((ms, k) => ms - r.damageMs[k]!),
              0.5,
            ).toFixed(0),
          ]
            .map((c) => c.padStart(10))
            .join(''),
      );
    }
    out.push(
      'CPU per trial, damage to repaired (the agent process includes the polling of this bench):',
      ...rows.map(
        (r) =>
          `  ${r.name.padEnd(42)} agent ${r.agentCpu.toFixed(2)} s, monitors ${r.monitorCpu.toFixed(2)} s`,
      ),
      `floor for "vxlan.calico deleted" (the deletion, the same device and ${n} FDB, ARP entries and routes written by hand, no agent): ${floorMs.toFixed(0)} ms (serial ${serialMs.toFixed(0)}, concurrent ${concurrentMs.toFixed(0)}); "deleted" median / floor ${(pct(deleted.ms, 0.5) / floorMs).toFixed(2)}`,
      '"after cmd": median ms from the damage command\'s return (its own time left out), not the target\'s clock',
      `load average (1 min) at start ${load0.toFixed(2)}, at end ${loadavg()[0]!.toFixed(2)}`,
      idle,
      stats,
    );
    process.stdout.write(`${out.slice(-2 * rows.length - 8).join('\n')}\n`);
  }
  process.stdout.write(`\n=== summary ===${out.join('\n')}\n`);
}

await main();
