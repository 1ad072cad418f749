// Remote VTEPs by number, as the repair test and benchmark program them: node i on the underlay at
// 172.16.0.10+i, its tunnel address and one /26 block at 10.64.0.0 + 64·i, its MAC from i.
import type { DataplaneMessage } from '../../agent/calc/messages.ts';
import { type Cidr, type Ip4, intToIp4, type Mac } from '../../model/net.ts';

export interface RemoteVtep {
  node: string;
  nodeIp: Ip4;
  tunnelIp: Ip4;
  mac: Mac;
  block: Cidr;
}

export function remoteVtep(i: number): RemoteVtep {
  const base = 0x0a400000 + i * 64;
  const hex = (n: number) => n.toString(16).padStart(2, '0');
  return {
    node: `b/n${i}`,
    nodeIp: intToIp4(0xac100000 + 10 + i) as Ip4,
    tunnelIp: intToIp4(base) as Ip4,
    mac: `66:bb:00:00:${hex((i >> 8) & 255)}:${hex(i & 255)}` as Mac,
    block: `${intToIp4(base)}/26` as Cidr,
  };
}

/** This node (its underlay address `nodeIp`, tunnel address 10.10.0.0), `count` remote VTEPs with a block route each, in sync. */
export function vtepSnapshot(nodeIp: Ip4, count: number): DataplaneMessage[] {
  const msgs: DataplaneMessage[] = [
    {
      kind: 'HostConfigUpdate',
      config: { node: 'n0', nodeIp, tunnelIp: '10.10.0.0' as Ip4, vtepMac: '66:aa:00:00:00:01' as Mac },
    },
  ];
  for (let i = 0; i < count; i++) {
    const v = remoteVtep(i);
    msgs.push({
      kind: 'VTEPUpdate',
      vtep: { node: v.node, cluster: 'b', nodeIp: v.nodeIp, tunnelIp: v.tunnelIp, mac: v.mac },
    });
    msgs.push({ kind: 'RouteUpdate', route: { dst: v.block, node: v.node, cluster: 'b' } });
  }
  msgs.push({ kind: 'InSync' });
  return msgs;
}
