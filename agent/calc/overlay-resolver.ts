// VXLAN overlay: every other node of the mesh with a complete VTEP (node IP, tunnel IP, MAC)
// becomes a VTEP; every IPAM block affine to such a node becomes a route via it. A route waits for
// its VTEP (and goes when the VTEP goes), so the kernel never holds a route to a missing neighbour.
import { textDigest } from '../../lib/hash.ts';
import { type Cidr, type Mac, parseCidr, parseIp4, parseMac } from '../../model/net.ts';
import type { IPAMBlock, IPPool, Node } from '../../proto/service.ts';
import type { MessageSink, Pool, RemoteBlockRoute, Vtep } from './messages.ts';

/**
 * A VTEP MAC for a node whose resource names none, derived as Felix does (vxlan_resolver.go): 0x66
 * ('f', a locally administered unicast prefix) and the first 5 bytes of SHA-1 of the node's name,
 * so every agent, fedmesh's and Calico's alike, computes the same one without a datastore
 * write-back. A remote node's name is used without its `<cluster>/` prefix, as Calico Enterprise.
 */
export function derivedVtepMac(nodeName: string): Mac {
  const name = nodeName.slice(nodeName.lastIndexOf('/') + 1);
  const h = textDigest('sha1', name, 'hex');
  return `66:${h.slice(0, 2)}:${h.slice(2, 4)}:${h.slice(4, 6)}:${h.slice(6, 8)}:${h.slice(8, 10)}` as Mac;
}

interface BlockState {
  key: string;
  cidr: Cidr;
  node: string;
  cluster: string;
  /** Position in insertion order (a Map's iteration order), for "the first block" among several. */
  seq: number;
}

export class OverlayResolver {
  private readonly vteps = new Map<string, Vtep>();
  private readonly blocks = new Map<string, BlockState>();
  // The blocks by node and by CIDR, so a node's or a CIDR's change looks at its own blocks only.
  private readonly blocksByNode = new Map<string, Set<BlockState>>();
  private readonly blocksByCidr = new Map<Cidr, Set<BlockState>>();
  private blockSeq = 0;
  private readonly routesSent = new Map<Cidr, string>();
  private readonly pools = new Map<string, Pool>();

  constructor(
    private readonly myNode: string,
    private readonly sink: MessageSink,
    /** This node's cluster: only its blocks can be this node's own. */
    private readonly localCluster = '',
  ) {}

  get vtepCount(): number {
    return this.vteps.size;
  }
  get routeCount(): number {
    return this.routesSent.size;
  }

  /** Throws (NetParseError) on a malformed address: the caller refuses the update. */
  upsertNode(cluster: string, n: Node): void {
    const name = n.name;
    if (name === this.myNode) {
      this.sink.send({
        kind: 'HostConfigUpdate',
        config: {
          node: name,
          nodeIp: n.ipv4Address ? parseIp4(n.ipv4Address) : undefined,
          tunnelIp: n.vxlanTunnelAddress ? parseIp4(n.vxlanTunnelAddress) : undefined,
          vtepMac: n.vxlanTunnelMac
            ? parseMac(n.vxlanTunnelMac)
            : n.ipv4Address
              ? derivedVtepMac(name)
              : undefined,
        },
      });
      return;
    }
    let vtep: Vtep | undefined;
    if (n.ipv4Address && n.vxlanTunnelAddress) {
      const nodeIp = parseIp4(n.ipv4Address);
      vtep = {
        node: name,
        cluster,
        nodeIp,
        tunnelIp: parseIp4(n.vxlanTunnelAddress),
        mac: n.vxlanTunnelMac ? parseMac(n.vxlanTunnelMac) : derivedVtepMac(name),
      };
    }
    const old = this.vteps.get(name);
    if (vtep) {
      if (!old || !sameVtep(old, vtep)) {
        this.vteps.set(name, vtep);
        this.sink.send({ kind: 'VTEPUpdate', vtep });
      }
    } else if (old) {
      this.removeVtep(name);
    }
    this.refreshRoutesFor(name);
  }

  deleteNode(name: string): void {
    if (name === this.myNode) return;
    this.removeVtep(name);
    this.refreshRoutesFor(name);
  }

  upsertBlock(key: string, cluster: string, b: IPAMBlock): void {
    const cidr = parseCidr(b.cidr);
    const old = this.blocks.get(key);
    if (old) this.unindexBlock(old);
    const block: BlockState = { key, cidr, node: b.affinityNode, cluster, seq: old?.seq ?? ++this.blockSeq };
    this.blocks.set(key, block);
    addTo(this.blocksByNode, block.node, block);
    addTo(this.blocksByCidr, block.cidr, block);
    if (old && old.cidr !== cidr) this.refreshRoute(old.cidr);
    this.refreshRoute(cidr);
  }

  deleteBlock(key: string): void {
    const old = this.blocks.get(key);
    if (!old) return;
    this.blocks.delete(key);
    this.unindexBlock(old);
    this.refreshRoute(old.cidr);
  }

  private unindexBlock(b: BlockState): void {
    removeFrom(this.blocksByNode, b.node, b);
    removeFrom(this.blocksByCidr, b.cidr, b);
  }

  upsertPool(key: string, cluster: string, local: boolean, p: IPPool): void {
    const pool: Pool = { cidr: parseCidr(p.cidr), cluster, local, natOutgoing: local && p.natOutgoing };
    const old = this.pools.get(key);
    this.pools.set(key, pool);
    if (old && old.cidr !== pool.cidr) this.poolGone(old.cidr);
    this.sink.send({ kind: 'PoolUpdate', pool });
  }

  deletePool(key: string): void {
    const old = this.pools.get(key);
    if (!old) return;
    this.pools.delete(key);
    this.poolGone(old.cidr);
  }

  /**
   * Pool messages are keyed by CIDR. Two pools may share one (a remote pool and the disabled local
   * pool that exempts it from NAT): when one goes, the other is sent again instead of a removal,
   * so the range never drops out of the all-pools set (which would masquerade it).
   */
  private poolGone(cidr: Cidr): void {
    const other = [...this.pools.values()].find((p) => p.cidr === cidr);
    this.sink.send(other ? { kind: 'PoolUpdate', pool: other } : { kind: 'PoolRemove', cidr });
  }

  private removeVtep(name: string): void {
    if (!this.vteps.delete(name)) return;
    this.refreshRoutesFor(name);
    this.sink.send({ kind: 'VTEPRemove', node: name });
  }

  private refreshRoutesFor(node: string): void {
    const blocks = this.blocksByNode.get(node);
    if (blocks) for (const b of inOrder(blocks)) this.refreshRoute(b.cidr);
  }

  /** Recompute the route for one CIDR from whichever block currently holds it. */
  private refreshRoute(cidr: Cidr): void {
    let want: RemoteBlockRoute | undefined;
    const blocks = this.blocksByCidr.get(cidr);
    for (const b of blocks ? inOrder(blocks) : []) {
      // This node's own block (Felix): a blackhole, so an address of it no pod holds goes nowhere.
      if (b.node === this.myNode && (b.cluster === '' || b.cluster === this.localCluster)) {
        want = { dst: cidr, node: b.node, cluster: b.cluster, local: true };
        break;
      }
      if (b.node === this.myNode || !this.vteps.has(b.node)) continue;
      want = { dst: cidr, node: b.node, cluster: b.cluster };
      break;
    }
    const sent = this.routesSent.get(cidr);
    const text = want ? `${want.node}${want.local ? ' (local)' : ''}` : undefined;
    if (text === sent) return;
    if (want) {
      this.routesSent.set(cidr, text!);
      this.sink.send({ kind: 'RouteUpdate', route: want });
    } else {
      this.routesSent.delete(cidr);
      this.sink.send({ kind: 'RouteRemove', dst: cidr });
    }
  }
}

function sameVtep(a: Vtep, b: Vtep): boolean {
  return (
    a.node === b.node &&
    a.cluster === b.cluster &&
    a.nodeIp === b.nodeIp &&
    a.tunnelIp === b.tunnelIp &&
    a.mac === b.mac
  );
}

function addTo<K>(m: Map<K, Set<BlockState>>, k: K, b: BlockState): void {
  const s = m.get(k);
  if (s) s.add(b);
  else m.set(k, new Set([b]));
}

function removeFrom<K>(m: Map<K, Set<BlockState>>, k: K, b: BlockState): void {
  const s = m.get(k);
  if (s?.delete(b) && s.size === 0) m.delete(k);
}

/** Blocks in the order the block map iterates them (usually just one). */
function inOrder(blocks: ReadonlySet<BlockState>): Iterable<BlockState> {
  return blocks.size <= 1 ? blocks : [...blocks].sort((a, b) => a.seq - b.seq);
}
