// Felix's rule set with real packets, on both iptables backends: one topology, the agent's own
// pipeline (calculation graph → sequencer → dataplane → drivers) programming node A's namespace.
//
//   ext (203.0.113.1, outside every cluster) ── node A ── pod web (10.10.0.5), pod db (10.10.0.6)
//                                                  │ eth0 192.168.100.11/24
//   node B (192.168.100.12: cluster b's VTEP; 192.168.100.99: an unknown host) ┘
//
// Cases: profiles open an unselected pod; a Pass tier hands on and a Deny tier drops; a
// notSelector-only rule admits an outside address; VXLAN and UDP 4789 leaving a pod are dropped;
// VXLAN to the node is accepted only from a known VTEP (a remote cluster's included).
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { test } from 'node:test';
import { CalculationGraph } from '../../agent/calc/graph.ts';
import { Sequencer } from '../../agent/calc/sequencer.ts';
import { Dataplane } from '../../agent/dataplane/dataplane.ts';
import { VXLAN_DEVICE } from '../../agent/dataplane/vxlan.ts';
import { IpRouteDriver } from '../../native/iproute.ts';
import { IpSetDriver } from '../../native/ipset.ts';
import { type IptablesBackend, IptablesDriver } from '../../native/iptables.ts';
import type { Update } from '../../proto/service.ts';
import { hasTool, isRoot, netnsScope, ping, podBehind, sh, veth } from '../harness/netns.ts';
import {
  block,
  deletion,
  hostEndpoint,
  namespace,
  node,
  policy,
  pool,
  serviceAccount,
  tier,
  wep,
} from '../helpers/feed-builders.ts';

const WEB = { node: 'a-node1', namespace: 'shop', pod: 'web-1', ips: ['10.10.0.5'], labels: { app: 'web' } };
const DB = { node: 'a-node1', namespace: 'shop', pod: 'db-1', ips: ['10.10.0.6'], labels: { app: 'db' } };
const WEB_IF = 'caliweb0000001';
const DB_IF = 'calidb00000001';
const EXT = '203.0.113.1';

const WORLD: Update[] = [
  node({ name: 'a-node1', ip: '192.168.100.11', tunnelIp: '10.10.0.0' }),
  pool({ name: 'a-pool', cidr: '10.10.0.0/16' }),
  block({ cidr: '10.10.0.0/26', node: 'a-node1' }),
  // Cluster b's node, over the mesh's overlay routing: its VTEP is 192.168.100.12.
  node({ cluster: 'b', name: 'b-node1', ip: '192.168.100.12', tunnelIp: '10.20.0.0' }),
  pool({ cluster: 'b', name: 'b-pool', cidr: '10.20.0.0/16' }),
  block({ cluster: 'b', cidr: '10.20.0.0/26', node: 'b-node1' }),
  namespace('shop'),
  serviceAccount('shop', 'default'),
  wep({ ...WEB, interfaceName: WEB_IF }),
  wep({ ...DB, interfaceName: DB_IF }),
];

/** The agent for node A on one backend: feed updates, wait until the kernel has them. */
async function agent(ns: string, backend: IptablesBackend) {
  const seq = new Sequencer();
  const g = new CalculationGraph({ nodeName: 'a-node1', localCluster: 'a' }, seq);
  const iptables = new IptablesDriver({ backend, netns: ns });
  const dp = new Dataplane(
    { ipsets: new IpSetDriver({ netns: ns }), iptables, links: new IpRouteDriver({ netns: ns }) },
    { applyDelayMs: 1 },
  );
  const feed = async (...us: Update[]) => {
    for (const u of us) g.onUpdate(u);
    assert.deepEqual(g.refused, []);
    dp.onMessages(seq.flush());
    await withTimeout(dp.whenApplied(), 10_000, `apply on ${backend}: ${dp.stats.lastError ?? ''}`);
  };
  g.inSync();
  await feed(...WORLD);
  return {
    feed,
    /** Our tables out of the kernel, so the other backend starts clean. */
    async remove() {
      dp.stop();
      for (const t of ['filter', 'nat', 'mangle', 'raw'] as const)
        await iptables.syncTable(t, { chains: [], hooks: [] });
    },
  };
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

const live = new Set<ChildProcess>();

/**
 * Runs a Node.js snippet in a namespace: `ready` resolves when it prints "ready" (a listener bound),
 * `done` with its stdout when it exits. Killed by its own pid if it outlives `timeoutMs`.
 */
function nodeIn(
  ns: string,
  script: string,
  timeoutMs = 5000,
): { ready: Promise<void>; done: Promise<string>; stop: () => void } {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  let out = '';
  let err = '';
  let onReady: () => void = () => {};
  const ready = new Promise<void>((r) => {
    onReady = r;
  });
  child.stdout.on('data', (d) => {
    out += d;
    if (out.includes('ready')) onReady();
  });
  child.stderr.on('data', (d) => {
    err += d;
  });
  let stopped = false;
  const stop = () => {
    stopped = true;
    if (child.pid && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
  };
  const timer = setTimeout(stop, timeoutMs);
  const done = new Promise<string>((resolve, reject) => {
    child.on('close', (code) => {
      clearTimeout(timer);
      live.delete(child);
      onReady();
      if (code === 0 || stopped) resolve(out);
      else reject(new Error(`node in ${ns} exited ${code}: ${err}`));
    });
  });
  return { ready, done, stop };
}

/** Does a UDP datagram from `fromNs` reach `toIp:port`, where `listenNs` listens? */
async function udpArrives(fromNs: string, listenNs: string, toIp: string, port: number): Promise<boolean> {
  const listener = nodeIn(
    listenNs,
    `const s=require('dgram').createSocket('udp4');s.on('message',()=>{console.log('got');process.exit(0)});` +
      `s.bind(${port},()=>console.log('ready'));`,
  );
  await listener.ready;
  await nodeIn(
    fromNs,
    `const s=require('dgram').createSocket('udp4');s.send(Buffer.from('x'),${port},'${toIp}',()=>s.close());`,
  ).done;
  // Sent: it has arrived by now, or it never will (one veth hop).
  setTimeout(listener.stop, 300);
  return (await listener.done).includes('got');
}

/** Does a TCP connection from `fromNs` to `ip:port` open, where `listenNs` listens on all addresses? */
async function tcpOpens(fromNs: string, listenNs: string, ip: string, port: number): Promise<boolean> {
  const listener = nodeIn(
    listenNs,
    `const srv=require('net').createServer((c)=>{c.end('hi');srv.close()});` +
      `srv.listen(${port},()=>console.log('ready'));`,
  );
  await listener.ready;
  // A dropped SYN is retried after 1 s: 700 ms without an answer means dropped.
  const client = await nodeIn(
    fromNs,
    `const c=require('net').connect({host:'${ip}',port:${port}});c.setTimeout(700);` +
      `c.on('data',()=>{console.log('open');process.exit(0)});c.on('timeout',()=>process.exit(0));c.on('error',()=>process.exit(0));`,
  ).done;
  listener.stop();
  await listener.done;
  return client.includes('open');
}

/**
 * Sends one VXLAN datagram (VNI 4096, an inner broadcast ARP frame) from `src` to node A's VXLAN
 * port, as a VTEP would. Node A's vxlan.calico counts it only if cali-INPUT let it through.
 */
function sendVxlan(ns: string, src: string): Promise<string> {
  const frame = [
    '08000000', // flags: VNI present
    '00100000', // VNI 4096
    'ffffffffffff', // inner dst: broadcast
    '020000000001', // inner src
    '0806', // ARP
    '0001080006040001', // Ethernet/IPv4 request
    '020000000001',
    '0a140000', // 10.20.0.0
    '000000000000',
    '0a0a0000', // who has 10.10.0.0
  ].join('');
  return nodeIn(
    ns,
    `const s=require('dgram').createSocket('udp4');s.bind(0,'${src}',()=>` +
      `s.send(Buffer.from('${frame}','hex'),4789,'192.168.100.11',()=>s.close()));`,
  ).done;
}

async function vxlanRx(ns: string): Promise<number> {
  const out = await sh(ns, 'ip', '-j', '-s', 'link', 'show', VXLAN_DEVICE);
  return (JSON.parse(out) as { stats64: { rx: { packets: number } } }[])[0]!.stats64.rx.packets;
}

test('Felix rule set with real packets', { skip: !isRoot() && 'needs root' }, async (t) => {
  const scope = netnsScope(t);
  t.after(() => {
    for (const c of live) if (c.pid) process.kill(c.pid, 'SIGKILL');
  });
  const [nsA, nsB, ext, webNs, dbNs] = await Promise.all([
    scope.add('fa', { router: true }),
    scope.add('fb', { router: true }),
    scope.add('fx'),
    scope.add('fw'),
    scope.add('fd'),
  ]);
  await veth(
    { ns: nsA, ifname: 'eth0', addr: '192.168.100.11/24' },
    { ns: nsB, ifname: 'eth0', addr: '192.168.100.12/24' },
  );
  await sh(nsB, 'ip', 'addr', 'add', '192.168.100.99/24', 'dev', 'eth0');
  // A second host interface with a smaller MTU: Felix's VXLAN MTU follows the smallest one.
  await veth({ ns: nsA, ifname: 'eth1', mtu: 1400 }, { ns: nsB, ifname: 'eth1', mtu: 1400 });
  await veth(
    { ns: nsA, ifname: 'ext0', addr: '203.0.113.254/24' },
    { ns: ext, ifname: 'eth0', addr: `${EXT}/24` },
  );
  await sh(ext, 'ip', 'route', 'add', 'default', 'via', '203.0.113.254');
  await podBehind(nsA, webNs, WEB_IF, WEB.ips[0]!);
  await podBehind(nsA, dbNs, DB_IF, DB.ips[0]!);

  const legacy = await hasTool('iptables-legacy');
  for (const backend of ['nft', 'legacy'] as IptablesBackend[]) {
    await t.test(
      backend,
      { skip: backend === 'legacy' && !legacy && 'iptables-legacy not installed' },
      async (tt) => {
        const a = await agent(nsA, backend);
        tt.after(() => a.remove());
        const save = backend === 'nft' ? 'iptables-nft-save' : 'iptables-legacy-save';

        await tt.test(
          'no policy: the namespace profile opens the pods (and Felix names are in the kernel)',
          async () => {
            assert.ok(await ping(webNs, DB.ips[0]!), 'web -> db');
            assert.ok(await ping(ext, WEB.ips[0]!), 'outside -> web');
            const filter = await sh(nsA, save, '-t', 'filter');
            for (const want of [
              ':cali-pri-kns.shop',
              'DROP if no profiles matched',
              'Policy explicitly accepted packet.',
              'Allow IPv4 VXLAN packets from allowed hosts',
            ])
              assert.ok(filter.includes(want), `${want} in:\n${filter}`);
            assert.ok(!/-A cali-FORWARD -i cali\+ .*-j ACCEPT/.test(filter), 'no blanket ACCEPT of cali+');
          },
        );

        await tt.test(
          'routes as Felix: a blackhole for our own block, VXLAN MTU from the smallest host interface, on the routes too',
          async () => {
            const routes = await sh(nsA, 'ip', '-4', 'route', 'show');
            assert.match(routes, /^blackhole 10\.10\.0\.0\/26 proto 80/m, routes);
            assert.match(
              routes,
              /^10\.20\.0\.0\/26 via 10\.20\.0\.0 dev vxlan\.calico proto 80 metric 1051 onlink mtu 1350/m,
              routes,
            );
            const link = await sh(nsA, 'ip', 'link', 'show', VXLAN_DEVICE);
            assert.match(link, /mtu 1350 /, link);
            // A pod's /32 is more specific than the blackhole: local pods still reachable.
            assert.ok(await ping(webNs, DB.ips[0]!), 'web -> db');
          },
        );

        await tt.test('a Pass tier hands on to the profiles; the same tier with Deny drops', async () => {
          const quarantine = policy({
            name: 'quarantine',
            namespace: 'shop',
            tier: 'platform',
            selector: "app == 'db'",
            ingress: [{ action: 'Deny', protocol: 'ICMP', source: { nets: ['203.0.113.0/24'] } }],
          });
          await a.feed(tier('platform', 10, 'Pass'), quarantine);
          assert.ok(!(await ping(ext, DB.ips[0]!, { timeoutS: 0.3 })), 'denied by the platform tier');
          assert.ok(await ping(webNs, DB.ips[0]!), 'end of the Pass tier: on to the kns profile');
          await a.feed(tier('platform', 10, 'Deny'));
          assert.ok(!(await ping(webNs, DB.ips[0]!, { timeoutS: 0.3 })), 'end of a Deny tier drops');
          await a.feed(tier('platform', 10, 'Pass'));
          assert.ok(await ping(webNs, DB.ips[0]!), 'Pass again');
        });

        await tt.test(
          'a GlobalNetworkPolicy rule with only a notSelector admits an address outside every cluster',
          async () => {
            await a.feed(
              policy({
                name: 'web-not-db',
                selector: "app == 'web'",
                ingress: [{ action: 'Allow', source: { notSelector: "app == 'db'" } }],
              }),
            );
            assert.ok(await ping(ext, WEB.ips[0]!), 'outside -> web: not a db, allowed');
            assert.ok(!(await ping(dbNs, WEB.ips[0]!, { timeoutS: 0.3 })), 'db -> web: end of tier');
          },
        );

        await tt.test('VXLAN leaving a pod is dropped; other UDP is not', async () => {
          assert.ok(await udpArrives(webNs, ext, EXT, 4790), 'control: UDP 4790 from the pod arrives');
          assert.ok(!(await udpArrives(webNs, ext, EXT, 4789)), 'UDP 4789 from the pod is dropped');
        });

        await tt.test(
          'a host endpoint denies what no policy allows, but SSH (failsafe) stays reachable',
          async () => {
            const node = '203.0.113.254';
            assert.ok(await tcpOpens(ext, nsA, node, 8080), 'before: the node is open');
            const hep = hostEndpoint({
              name: 'a-node1-ext0',
              node: 'a-node1',
              interfaceName: 'ext0',
              ips: [node],
              labels: { role: 'node' },
            });
            // A policy that denies all TCP into the node: it cannot lock the operator out of SSH.
            const lockdown = policy({
              name: 'node-lockdown',
              selector: "role == 'node'",
              ingress: [{ action: 'Deny', protocol: 'TCP' }],
            });
            await a.feed(hep, lockdown);
            assert.ok(await tcpOpens(ext, nsA, node, 22), 'SSH: failsafe');
            assert.ok(!(await tcpOpens(ext, nsA, node, 8080)), '8080: denied by the policy');
            assert.ok(!(await ping(ext, node, { timeoutS: 0.3 })), 'ping: no policy or profile allows it');
            const filter = await sh(nsA, save, '-t', 'filter');
            for (const want of [
              ':cali-fh-ext0',
              ':cali-th-ext0',
              ':cali-failsafe-in',
              'Host endpoint policy accepted packet.',
            ])
              assert.ok(filter.includes(want), `${want} in:\n${filter}`);
            // Through the node to a pod is forwarded traffic: no applyOnForward policy, so allowed.
            assert.ok(await ping(ext, WEB.ips[0]!), 'forwarded to a pod');
            await a.feed(deletion(lockdown), deletion(hep));
            assert.ok(
              await tcpOpens(ext, nsA, node, 8080),
              `after: open again\n${await sh(nsA, save, '-t', 'filter')}`,
            );
          },
        );

        await tt.test(
          'preDNAT: a host endpoint policy that drops forwarded traffic before DNAT; SSH still failsafe',
          async () => {
            const node = '203.0.113.254';
            const hep = hostEndpoint({
              name: 'a-node1-ext0',
              node: 'a-node1',
              interfaceName: 'ext0',
              ips: [node],
              labels: { role: 'node' },
            });
            const allowHost = policy({
              name: 'node-open',
              selector: "role == 'node'",
              types: ['Ingress', 'Egress'],
              ingress: [{ action: 'Allow' }],
              egress: [{ action: 'Allow' }],
            });
            const preDnat = policy({
              name: 'no-icmp-in',
              selector: "role == 'node'",
              applyOnForward: true,
              preDNAT: true,
              ingress: [{ action: 'Deny', protocol: 'ICMP' }],
            });
            await a.feed(hep, allowHost);
            assert.ok(await ping(ext, WEB.ips[0]!), 'forwarded to a pod before the pre-DNAT policy');
            await a.feed(preDnat);
            assert.ok(!(await ping(ext, WEB.ips[0]!, { timeoutS: 0.3 })), 'dropped at PREROUTING (mangle)');
            assert.ok(!(await ping(ext, node, { timeoutS: 0.3 })), 'to the node itself too');
            assert.ok(await tcpOpens(ext, nsA, node, 22), 'SSH: failsafe in mangle as well');
            const mangle = await sh(nsA, save, '-t', 'mangle');
            assert.ok(
              mangle.includes(':cali-fh-ext0') && /-A PREROUTING .*-j cali-PREROUTING/.test(mangle),
              mangle,
            );
            await a.feed(deletion(preDnat));
            assert.ok(await ping(ext, WEB.ips[0]!), 'forwarded again');

            // doNotTrack: an untracked allow lets traffic in that the filter table's host endpoint
            // policy would drop (the node has no normal policy now, so it denies all but failsafe).
            const untracked = policy({
              name: 'untracked-8080',
              selector: "role == 'node'",
              applyOnForward: true,
              doNotTrack: true,
              types: ['Ingress', 'Egress'],
              ingress: [{ action: 'Allow', protocol: 'TCP', destination: { ports: [8080] } }],
              egress: [{ action: 'Allow', protocol: 'TCP', source: { ports: [8080] } }],
            });
            await a.feed(deletion(allowHost));
            assert.ok(!(await tcpOpens(ext, nsA, node, 8080)), 'filter: no policy allows 8080');
            await a.feed(untracked);
            assert.ok(await tcpOpens(ext, nsA, node, 8080), 'untracked allow: NOTRACK and accept');
            const raw = await sh(nsA, save, '-t', 'raw');
            assert.ok(raw.includes('-j NOTRACK') && raw.includes(':cali-th-ext0'), raw);
            await a.feed(deletion(untracked), deletion(hep));
            assert.ok(await tcpOpens(ext, nsA, node, 8080), 'no host endpoint: open again');
            assert.ok(!(await sh(nsA, save, '-t', 'raw')).includes('cali-'), 'raw table left clean');
          },
        );

        await tt.test(
          "VXLAN to the node: accepted from a remote cluster's VTEP, dropped from an unknown host",
          async () => {
            const before = await vxlanRx(nsA);
            await sendVxlan(nsB, '192.168.100.99');
            await new Promise((r) => setTimeout(r, 100));
            assert.equal(await vxlanRx(nsA), before, 'unknown source: dropped in cali-INPUT');
            await sendVxlan(nsB, '192.168.100.12');
            await new Promise((r) => setTimeout(r, 100));
            assert.equal(await vxlanRx(nsA), before + 1, "cluster b's VTEP: accepted");
          },
        );
      },
    );
  }
});
