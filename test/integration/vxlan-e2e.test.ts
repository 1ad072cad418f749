// The reference topology (shared/reference/netns-vxlan-e2e.sh), with every node-side kernel object
// programmed by the drivers instead of hand-written commands: two nodes joined by a veth underlay,
// a VXLAN device on each, one pod behind each node. Then node B filters FORWARD with an ipset
// through IpSetDriver + IptablesDriver, on each iptables backend.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Cidr, Ip4, Mac } from '../../model/net.ts';
import { IpRouteDriver, VXLAN_DEV } from '../../native/iproute.ts';
import { IpSetDriver, type IpSetSpec } from '../../native/ipset.ts';
import { type IptablesBackend, IptablesDriver, type TableState } from '../../native/iptables.ts';
import { hasTool, isRoot, netnsScope, ping, podBehind, sh, veth } from '../harness/netns.ts';

interface NodeDef {
  ns: string;
  underlay: Ip4;
  block: string; // first three octets of the node's /26 pod block
  vtepMac: Mac;
  podIf: string;
  pod: string;
}

const podIp = (n: NodeDef) => `${n.block}.5`;
const tunnelIp = (n: NodeDef) => `${n.block}.0` as Ip4;

/** What the agent does for one node: VXLAN device, local pod route, per-peer ARP + FDB + route. */
async function programNode(self: NodeDef, peerNode: NodeDef): Promise<void> {
  const drv = new IpRouteDriver({ netns: self.ns });
  const parent = await drv.findDeviceWithAddress(self.underlay);
  assert.ok(parent, 'underlay device found by its address');
  await drv.ensureVxlan({
    name: VXLAN_DEV,
    vni: 4096,
    port: 4789,
    parentDev: parent.name,
    localIp: self.underlay,
    mac: self.vtepMac,
    tunnelAddress: tunnelIp(self),
  });
  // ARP and FDB before the route: the route is useless until the VTEP is known.
  await drv.syncNeighbours(VXLAN_DEV, [{ ip: tunnelIp(peerNode), mac: peerNode.vtepMac }]);
  await drv.syncFdb(VXLAN_DEV, [{ mac: peerNode.vtepMac, dst: peerNode.underlay }]);
  const routes = [
    { dst: `${podIp(self)}/32` as Cidr, dev: self.podIf },
    { dst: `${peerNode.block}.0/26` as Cidr, via: tunnelIp(peerNode), dev: VXLAN_DEV, onlink: true },
  ];
  const ownedDevices = (d: string) => d.startsWith('cali');
  const st = await drv.syncRoutes(routes, { ownedDevices });
  assert.deepEqual(st.skipped, []);
  // Idempotent: a resync of the same state writes nothing.
  assert.equal((await drv.syncRoutes(routes, { ownedDevices })).commands, 0);
}

/** Node B's policy: only sources in cali40allow may reach its pod. */
function policy(podIf: string): TableState {
  return {
    chains: [
      {
        name: 'cali-FORWARD',
        rules: [
          {
            match: `-o ${podIf} -m set --match-set cali40allow src`,
            action: '-j ACCEPT',
            comment: 'allow listed sources',
          },
          { match: `-o ${podIf}`, action: '-j DROP', comment: 'default deny to pod' },
        ],
      },
    ],
    hooks: [{ chain: 'FORWARD', rule: { match: '', action: '-j cali-FORWARD' } }],
  };
}

const allowSet = (members: string[]): Map<string, IpSetSpec> =>
  new Map([['cali40allow', { name: 'cali40allow', type: 'hash:net', members: new Set(members) }]]);

test('VXLAN between two node namespaces, programmed only by the drivers', {
  skip: !isRoot() && 'needs root',
}, async (t) => {
  const scope = netnsScope(t);
  const [nsA, nsB] = await Promise.all([
    scope.add('na', { router: true }),
    scope.add('nb', { router: true }),
  ]);
  const [podA, podB] = await Promise.all([scope.add('pa'), scope.add('pb')]);
  const A: NodeDef = {
    ns: nsA,
    underlay: '192.168.100.1' as Ip4,
    block: '10.244.0',
    vtepMac: '66:ee:ee:00:00:0a' as Mac,
    podIf: 'calipoda',
    pod: podA,
  };
  const B: NodeDef = {
    ns: nsB,
    underlay: '192.168.100.2' as Ip4,
    block: '10.244.1',
    vtepMac: '66:ee:ee:00:00:0b' as Mac,
    podIf: 'calipodb',
    pod: podB,
  };

  // The parts that are not the agent's job: the underlay and the CNI's pod side.
  await veth(
    { ns: nsA, ifname: 'eth0', addr: `${A.underlay}/24` },
    { ns: nsB, ifname: 'eth0', addr: `${B.underlay}/24` },
  );
  await podBehind(nsA, podA, A.podIf, podIp(A));
  await podBehind(nsB, podB, B.podIf, podIp(B));

  await programNode(A, B);
  await programNode(B, A);

  await t.test('pod A pings pod B through vxlan.calico', async () => {
    assert.ok(await ping(podA, podIp(B)), 'ping pod-a -> pod-b');
    const rx = await sh(nsB, 'ip', '-s', 'link', 'show', VXLAN_DEV);
    const packets = Number(/RX:.*\n\s*\d+\s+(\d+)/.exec(rx)?.[1] ?? 0);
    assert.ok(packets > 0, `node B ${VXLAN_DEV} received packets:\n${rx}`);
  });

  await t.test('MTU: 1450-byte packets with DF fit, 1451 do not', async () => {
    assert.ok(await ping(podA, podIp(B), { extra: ['-M', 'do', '-s', '1422'] }));
    assert.ok(!(await ping(podA, podIp(B), { extra: ['-M', 'do', '-s', '1423'], timeoutS: 0.3 })));
  });

  const legacy = await hasTool('iptables-legacy');
  for (const backend of ['nft', 'legacy'] as IptablesBackend[]) {
    await t.test(
      `policy on node B via ipset + iptables (${backend})`,
      { skip: backend === 'legacy' && !legacy && 'iptables-legacy not installed' },
      async () => {
        const sets = new IpSetDriver({ netns: nsB });
        const ipt = new IptablesDriver({ backend, netns: nsB });
        await sets.apply(allowSet([]));
        await ipt.syncTable('filter', policy(B.podIf));
        assert.ok(!(await ping(podA, podIp(B), { timeoutS: 0.3 })), 'denied: source not in the set');
        await sets.apply(allowSet([`${podIp(A)}/32`]));
        assert.ok(await ping(podA, podIp(B)), 'allowed once pod A is in the set');
        await sets.apply(allowSet([]));
        assert.ok(!(await ping(podA, podIp(B), { timeoutS: 0.3 })), 'denied again after removal');
        // Tear down in the agent's order: stop referencing the set, then destroy it.
        await ipt.syncTable('filter', { chains: [], hooks: [] });
        assert.deepEqual((await sets.destroyStale(new Set())).destroyed, ['cali40allow']);
        assert.ok(await ping(podA, podIp(B)), 'open again without policy');
      },
    );
  }
});
