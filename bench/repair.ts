// Repair benchmark: how long the agent takes to put back what someone deleted out of band (a block
// route, an FDB entry, an ARP entry, vxlan.calico itself), driven by kernel events with the
// periodic resync off, on a node holding many remote VTEPs; and what the watch costs while idle.
// Needs root (it works inside namespaces it creates and removes).
//   npm run bench -- repair [remoteNodes=2000] [trials=15]
import type { DataplaneMessage } from '../agent/calc/messages.ts';
import { Dataplane } from '../agent/dataplane/dataplane.ts';
import { KernelWatch } from '../agent/dataplane/kernel-watch.ts';
import { type Cidr, type Ip4, intToIp4, type Mac } from '../model/net.ts';
import { run } from '../native/exec.ts';
import { IpRouteDriver } from '../native/iproute.ts';
import { IpSetDriver } from '../native/ipset.ts';
import { IptablesDriver } from '../native/iptables.ts';
import { IpMonitorSource } from '../native/kernel-events.ts';
import { addNetns, deleteNetns, uniqueTag } from '../native/netns.ts';

const [NODES = 2000, TRIALS = 15] = process.argv.slice(2).map(Number);
const TARGET_MS = 1000;
const tag = uniqueTag();
const node = `fmb${tag}-node`;
const peer = `fmb${tag}-peer`;
const sh = async (...args: string[]) => (await run('ip', ['-n', node, ...args])).stdout;

function vtep(i: number) {
  const base = 0x0a400000 + i * 64; // 10.64.0.0 + 64 per node: one /26 block each
  return {
    node: `b/n${i}`,
    nodeIp: intToIp4(0xac100000 + 10 + i) as Ip4, // 172.16.0.10+i on the underlay
    tunnelIp: intToIp4(base) as Ip4,
    mac: `66:bb:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` as Mac,
    block: `${intToIp4(base)}/26` as Cidr,
  };
}

async function until(check: () => Promise<boolean>, timeoutMs = 30_000): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    if (await check().catch(() => false)) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 5));
  }
  return Number.POSITIVE_INFINITY;
}

const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;

async function main(): Promise<void> {
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
    await sh('addr', 'add', '172.16.0.1/16', 'dev', 'eth0');
    await sh('link', 'set', 'eth0', 'up');
    await sh('link', 'set', 'lo', 'up');
    dataplane = new Dataplane(
      {
        ipsets: new IpSetDriver({ netns: node }),
        iptables: new IptablesDriver({ backend: 'nft', netns: node }),
        links: new IpRouteDriver({ netns: node }),
      },
      { resyncIntervalMs: 3_600_000 },
    );
    const dp = dataplane;
    watch = new KernelWatch(new IpMonitorSource(node), dp, () => dp.desiredKernelState());
    watch.start();
    dp.start();
    const msgs: DataplaneMessage[] = [
      {
        kind: 'HostConfigUpdate',
        config: {
          node: 'n0',
          nodeIp: '172.16.0.1' as Ip4,
          tunnelIp: '10.10.0.0' as Ip4,
          vtepMac: '66:aa:00:00:00:01' as Mac,
        },
      },
    ];
    for (let i = 0; i < NODES; i++) {
      const v = vtep(i);
      msgs.push({
        kind: 'VTEPUpdate',
        vtep: { node: v.node, cluster: 'b', nodeIp: v.nodeIp, tunnelIp: v.tunnelIp, mac: v.mac },
      });
      msgs.push({ kind: 'RouteUpdate', route: { dst: v.block, node: v.node, cluster: 'b' } });
    }
    msgs.push({ kind: 'InSync' });
    const t0 = performance.now();
    dp.onMessages(msgs);
    await dp.whenApplied();
    process.stdout.write(
      `programmed ${NODES} VTEPs (FDB + ARP + block route each) in ${Math.round(performance.now() - t0)} ms\n`,
    );
    await new Promise((r) => setTimeout(r, 500)); // let our own echoes pass

    // Idle: nothing changes; what do the watch and the agent cost?
    const cpu0 = process.cpuUsage();
    const w0 = performance.now();
    await new Promise((r) => setTimeout(r, 5000));
    const cpu = process.cpuUsage(cpu0);
    const idlePct = ((cpu.user + cpu.system) / 1000 / (performance.now() - w0)) * 100;

    const results: [string, number[]][] = [];
    const trial = async (
      name: string,
      damage: (i: number) => Promise<unknown>,
      repaired: (i: number) => Promise<boolean>,
    ) => {
      const ms: number[] = [];
      for (let k = 0; k < TRIALS; k++) {
        const i = (k * 7919) % NODES;
        await damage(i);
        ms.push(await until(() => repaired(i)));
        await new Promise((r) => setTimeout(r, 100));
      }
      results.push([name, ms]);
    };
    await trial(
      'block route deleted',
      (i) => sh('route', 'del', vtep(i).block),
      async (i) => (await sh('route', 'show', vtep(i).block)).includes('vxlan.calico'),
    );
    await trial(
      'FDB entry deleted',
      (i) =>
        run('bridge', [
          '-n',
          node,
          'fdb',
          'del',
          vtep(i).mac,
          'dev',
          'vxlan.calico',
          'dst',
          vtep(i).nodeIp,
          'self',
        ]),
      async (i) =>
        (await run('bridge', ['-n', node, 'fdb', 'show', 'dev', 'vxlan.calico'])).stdout.includes(
          `${vtep(i).mac} dst`,
        ),
    );
    await trial(
      'ARP entry deleted',
      (i) => sh('neigh', 'del', vtep(i).tunnelIp, 'dev', 'vxlan.calico'),
      async (i) => (await sh('neigh', 'show', vtep(i).tunnelIp, 'dev', 'vxlan.calico')).includes('PERMANENT'),
    );
    const deviceTrials = Math.max(3, Math.floor(TRIALS / 3));
    const dev: number[] = [];
    for (let k = 0; k < deviceTrials; k++) {
      await sh('link', 'del', 'vxlan.calico');
      const last = vtep(NODES - 1);
      dev.push(await until(async () => (await sh('route', 'show', last.block)).includes('vxlan.calico')));
      await new Promise((r) => setTimeout(r, 300));
    }
    results.push([`vxlan.calico deleted (device + ${NODES} FDB, ARP, routes back)`, dev]);

    process.stdout.write(
      `\n${'damage'.padEnd(62)} ${'p50 ms'.padStart(8)} ${'max ms'.padStart(8)} ${'target'.padStart(8)} ${'ratio'.padStart(6)}\n`,
    );
    for (const [name, ms] of results) {
      const max = Math.max(...ms);
      process.stdout.write(
        `${name.padEnd(62)} ${pct(ms, 0.5).toFixed(0).padStart(8)} ${max.toFixed(0).padStart(8)} ${String(TARGET_MS).padStart(8)} ${(max / TARGET_MS).toFixed(2).padStart(6)}\n`,
      );
    }
    process.stdout.write(
      `\nidle over 5 s holding ${NODES} VTEPs with the kernel watch running: ${idlePct.toFixed(2)}% of a core (this process; the two monitor processes sleep in the kernel)\n`,
    );
    process.stdout.write(
      `kernel watch: ${watch.stats.events} events, ${watch.stats.repairs} repairs, ${watch.stats.lost} losses\n`,
    );
  } finally {
    watch?.stop();
    dataplane?.stop();
    await deleteNetns(node);
    await deleteNetns(peer);
  }
}

await main();
