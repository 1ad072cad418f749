// Repair on kernel events, in a namespace: the dataplane programs vxlan.calico, an FDB and ARP
// entry for a remote VTEP, the route to its block and a workload route; then someone deletes each
// of them (and the device itself, or sets it down, or changes its MTU, local address, VNI or
// address), and the agent puts them back with no periodic resync running
// (it is set to an hour), so only events can have driven the repair. The workload route of an
// endpoint that arrived before its interface is written as soon as the interface appears (the CNI
// race). A flood of 100,000 foreign route changes leaves the watch alive and the state correct.
// Timing is not asserted here (`npm run bench -- repair` measures it); `eventually` only bounds the
// wait generously.
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { EndpointKey } from '../../agent/calc/messages.ts';
import type { Cidr, Ip4, Mac } from '../../model/net.ts';
import { isRoot, netnsScope, podBehind, sh, veth } from '../harness/netns.ts';
import { watchedDataplane } from '../helpers/watched-dataplane.ts';

const NODE_IP = '192.168.77.1' as Ip4;
const PEER_IP = '192.168.77.2' as Ip4;
const PEER_MAC = '66:bb:00:00:00:02' as Mac;
const PEER_TUNNEL = '10.20.0.0' as Ip4;
const BLOCK = '10.20.0.0/26' as Cidr;
const WL_IF = 'calikrtest0001';

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 8000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    // A device that is gone for the moment makes the look-up fail: not repaired yet.
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`not repaired: ${what}`);
}

test('routes, FDB, ARP and vxlan.calico are repaired on kernel events', { skip: !isRoot() }, async (t) => {
  const scope = netnsScope(t);
  const node = await scope.add('node', { router: true });
  const peer = await scope.add('peer');
  const pod = await scope.add('pod');
  await veth(
    { ns: node, ifname: 'eth0', addr: `${NODE_IP}/24` },
    { ns: peer, ifname: 'eth0', addr: `${PEER_IP}/24` },
  );

  const { dataplane, watch } = watchedDataplane(t, node, { resyncIntervalMs: 3_600_000 });
  dataplane.onMessages([
    {
      kind: 'HostConfigUpdate',
      config: {
        node: 'n1',
        nodeIp: NODE_IP,
        tunnelIp: '10.10.0.0' as Ip4,
        vtepMac: '66:aa:00:00:00:01' as Mac,
      },
    },
    {
      kind: 'VTEPUpdate',
      vtep: { node: 'b/n2', cluster: 'b', nodeIp: PEER_IP, tunnelIp: PEER_TUNNEL, mac: PEER_MAC },
    },
    { kind: 'RouteUpdate', route: { dst: BLOCK, node: 'b/n2', cluster: 'b' } },
    {
      kind: 'EndpointUpdate',
      endpoint: {
        key: 'a/n1/k8s/shop/p1/eth0' as EndpointKey,
        interfaceName: WL_IF,
        ipv4Nets: ['10.10.0.5/32' as Cidr],
        profiles: [],
        ingress: [],
        egress: [],
      },
    },
    { kind: 'InSync' },
  ]);
  await dataplane.whenApplied();

  const routes = () => sh(node, 'ip', '-4', 'route', 'show');
  const hasBlockRoute = async () => (await routes()).includes(`${BLOCK} via ${PEER_TUNNEL} dev vxlan.calico`);
  const hasArp = async () =>
    (await sh(node, 'ip', 'neigh', 'show', 'dev', 'vxlan.calico')).includes(
      `${PEER_TUNNEL} lladdr ${PEER_MAC} PERMANENT`,
    );
  const hasFdb = async () =>
    (await sh(node, 'bridge', 'fdb', 'show', 'dev', 'vxlan.calico')).includes(`${PEER_MAC} dst ${PEER_IP}`);
  const hasWorkloadRoute = async () => (await routes()).includes(`10.10.0.5 dev ${WL_IF}`);
  assert.ok(await hasBlockRoute(), `block route programmed: ${await routes()}`);
  assert.ok(await hasArp(), 'ARP entry programmed');
  assert.ok(await hasFdb(), 'FDB entry programmed');
  assert.ok(!(await hasWorkloadRoute()), 'no interface yet: no workload route');

  await t.test('a workload route as soon as its interface appears (the CNI race)', async () => {
    await podBehind(node, pod, WL_IF, '10.10.0.5');
    await eventually('workload route', hasWorkloadRoute);
  });

  await t.test('a deleted block route', async () => {
    const before = watch.stats.repairs;
    await sh(node, 'ip', 'route', 'del', BLOCK);
    await eventually('block route', hasBlockRoute);
    assert.ok(watch.stats.repairs > before, 'an event drove the repair');
  });

  /** The block's routes: exactly ours, via the VTEP's tunnel address. */
  const onlyOurBlockRoute = async () => {
    const r = (await sh(node, 'ip', 'route', 'show', BLOCK)).trim().split('\n');
    return r.length === 1 && r[0]!.startsWith(`${BLOCK} via ${PEER_TUNNEL} dev vxlan.calico`);
  };

  await t.test('a block route changed to another next hop', async () => {
    const metric = /\smetric (\d+)/.exec(await sh(node, 'ip', 'route', 'show', BLOCK))?.[1];
    assert.ok(metric, 'a gateway route has a metric of its own');
    await sh(
      node,
      'ip',
      'route',
      'change',
      BLOCK,
      'via',
      '10.20.0.9',
      'dev',
      'vxlan.calico',
      'onlink',
      'proto',
      '80',
      'metric',
      metric,
    );
    await eventually('block route via its VTEP again', onlyOurBlockRoute);
  });

  await t.test('another route to the block on vxlan.calico, ahead of ours (metric 0): removed', async () => {
    await sh(node, 'ip', 'route', 'add', BLOCK, 'via', '10.20.0.9', 'dev', 'vxlan.calico', 'onlink');
    await eventually('only our block route', onlyOurBlockRoute);
  });

  await t.test('a deleted workload route', async () => {
    await sh(node, 'ip', 'route', 'del', '10.10.0.5/32', 'dev', WL_IF);
    await eventually('workload route', hasWorkloadRoute);
  });

  await t.test('a deleted ARP entry', async () => {
    await sh(node, 'ip', 'neigh', 'del', PEER_TUNNEL, 'dev', 'vxlan.calico');
    await eventually('ARP entry', hasArp);
  });

  await t.test('a deleted FDB entry', async () => {
    await sh(node, 'bridge', 'fdb', 'del', PEER_MAC, 'dev', 'vxlan.calico', 'dst', PEER_IP, 'self');
    await eventually('FDB entry', hasFdb);
  });

  await t.test('vxlan.calico deleted: device, FDB, ARP and route come back', async () => {
    await sh(node, 'ip', 'link', 'del', 'vxlan.calico');
    await eventually(
      'device, FDB, ARP, route',
      async () => (await hasFdb()) && (await hasArp()) && (await hasBlockRoute()),
    );
    assert.match(await sh(node, 'ip', '-d', 'link', 'show', 'vxlan.calico'), /vxlan id 4096 .*dstport 4789/);
  });

  const device = () => sh(node, 'ip', '-d', 'addr', 'show', 'dev', 'vxlan.calico');
  const deviceRight = async () => {
    const d = await device();
    return (
      /<[^>]*\bUP\b/.test(d) &&
      /vxlan id 4096 local 192\.168\.77\.1 dev eth0 /.test(d) &&
      / mtu 1450 /.test(d) &&
      d.includes('inet 10.10.0.0/32')
    );
  };
  const allBack = async () =>
    (await deviceRight()) && (await hasFdb()) && (await hasArp()) && (await hasBlockRoute());

  await t.test('vxlan.calico set down: brought up, its ARP entries and routes written back', async () => {
    await sh(node, 'ip', 'link', 'set', 'vxlan.calico', 'down');
    await eventually('device up, FDB, ARP, route', allBack);
  });

  await t.test('vxlan.calico with another MTU: the MTU is put back', async () => {
    await sh(node, 'ip', 'link', 'set', 'vxlan.calico', 'mtu', '1300');
    await eventually('MTU 1450', allBack);
  });

  await t.test('vxlan.calico with another local address: put back in place, entries kept', async () => {
    const index = (await device()).split(':')[0];
    await sh(node, 'ip', 'link', 'set', 'vxlan.calico', 'type', 'vxlan', 'local', '192.168.77.9');
    await eventually('local address, FDB, ARP, route', allBack);
    assert.equal((await device()).split(':')[0], index, 'the same device');
  });

  await t.test('vxlan.calico recreated by someone with another VNI: made again as ours', async () => {
    // Swapped in by renames in one batch: a deletion returns to its caller only after the kernel
    // has let go of the device (tens of ms), time enough for the agent to put its own back first.
    await sh(
      node,
      'ip',
      'link',
      'add',
      'vxtmp',
      'type',
      'vxlan',
      'id',
      '77',
      'dstport',
      '4789',
      'dev',
      'eth0',
    );
    await sh(
      node,
      'sh',
      '-c',
      "printf 'link set vxlan.calico down\\nlink set vxlan.calico name vxold\\nlink set vxtmp name vxlan.calico\\nlink set vxlan.calico up\\nlink del vxold\\n' | ip -batch -",
    );
    await eventually('VNI 4096, FDB, ARP, route', allBack);
  });

  await t.test("vxlan.calico's tunnel address removed, another added: put right", async () => {
    await sh(node, 'ip', 'addr', 'del', '10.10.0.0/32', 'dev', 'vxlan.calico');
    await sh(node, 'ip', 'addr', 'add', '10.99.0.1/24', 'dev', 'vxlan.calico');
    await eventually('tunnel address only', async () => {
      const d = await device();
      return d.includes('inet 10.10.0.0/32') && !d.includes('10.99.0.1') && (await allBack());
    });
  });

  await t.test('100,000 foreign route changes: the watch survives and still repairs', async () => {
    const adds: string[] = [];
    for (let i = 0; i < 50_000; i++)
      adds.push(`route add 10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32 via ${PEER_IP} dev eth0`);
    const dir = tmpdir();
    const addFile = join(dir, `fedmesh-flood-add-${process.pid}`);
    const delFile = join(dir, `fedmesh-flood-del-${process.pid}`);
    writeFileSync(addFile, `${adds.join('\n')}\n`);
    writeFileSync(delFile, `${adds.map((l) => l.replace('route add', 'route del')).join('\n')}\n`);
    t.after(() => {
      rmSync(addFile, { force: true });
      rmSync(delFile, { force: true });
    });
    await sh(node, 'ip', '-batch', addFile);
    await sh(node, 'ip', '-batch', delFile);
    const before = watch.stats.repairs;
    await sh(node, 'ip', 'route', 'del', BLOCK);
    await eventually('block route after the flood', hasBlockRoute, 20_000);
    assert.ok(watch.stats.repairs + watch.stats.lost > before);
    assert.ok(watch.stats.events >= 1000, `events seen: ${watch.stats.events}`);
    t.diagnostic(`events ${watch.stats.events}, repairs ${watch.stats.repairs}, lost ${watch.stats.lost}`);
  });
  // Stopped here, before the namespaces go (which would kill the monitors under the watch).
  watch.stop();
  dataplane.stop();
});
