// The VXLAN overlay on this node: the vxlan.calico device (VNI 4096, port 4789, parent = the
// interface holding the node IP, MTU = parent − 50), a permanent FDB entry (VTEP MAC → node IP) and
// ARP entry (tunnel IP → VTEP MAC) per remote VTEP, and an onlink route per remote block.
import { logger } from '../../lib/log.ts';
import type { Cidr, Ip4 } from '../../model/net.ts';
import type { FdbSpec, NeighSpec, RouteSpec, VxlanSpec } from '../../native/iproute.ts';
import type { DataplaneMessage, EndpointKey, HostConfig, RemoteBlockRoute, Vtep } from '../calc/messages.ts';
import { derivedVtepMac } from '../calc/overlay-resolver.ts';
import { ALL_VXLAN_NET_SET } from '../rules/names.ts';
import { Generations } from './generation.ts';
import type { IpSetManager } from './ipsets.ts';

const log = logger('vxlan');

export const VXLAN_DEVICE = 'vxlan.calico';
export const VXLAN_VNI = 4096;
export const VXLAN_PORT = 4789;

/** VXLAN over IPv4 costs 50 bytes of headers. */
const VXLAN_OVERHEAD = 50;
/** Felix's MTUIfacePattern default: the host interfaces whose smallest MTU bounds the overlay's. */
const MTU_IFACE_PATTERN = /^((en|wl|ww|sl|ib)[Pcopsvx].*|(eth|wlan|wwan).*)/;

/** The VXLAN MTU as Felix picks it: the smallest matching host interface's MTU (else the parent's) − 50. */
export function vxlanMtu(links: readonly { name: string; mtu: number }[], parent: { mtu: number }): number {
  const mtus = links.filter((l) => MTU_IFACE_PATTERN.test(l.name)).map((l) => l.mtu);
  return (mtus.length > 0 ? Math.min(...mtus) : parent.mtu) - VXLAN_OVERHEAD;
}

export interface LinkWriter {
  findDeviceWithAddress(ip: Ip4): Promise<{ name: string; mtu: number } | undefined>;
  interfaceMtus(): Promise<{ name: string; mtu: number }[]>;
  ensureVxlan(spec: VxlanSpec): Promise<unknown>;
  /** `fresh`: the device was just created, so it holds no entries and there is nothing to read. */
  syncNeighbours(dev: string, desired: readonly NeighSpec[], opts?: { fresh?: boolean }): Promise<unknown>;
  syncFdb(dev: string, desired: readonly FdbSpec[], opts?: { fresh?: boolean }): Promise<unknown>;
  syncRoutes(
    desired: readonly RouteSpec[],
    opts?: { ownedDevices?: (dev: string) => boolean },
  ): Promise<unknown>;
  /** Write these as wanted without a read-back (repairs of what kernel events reported). */
  rewrite(objects: {
    routes: readonly RouteSpec[];
    neighbours: readonly NeighSpec[];
    fdb: readonly FdbSpec[];
  }): Promise<unknown>;
}

export class VxlanManager {
  private host?: HostConfig;
  private readonly vteps = new Map<string, Vtep>();
  private readonly gen = new Generations();
  /** The device is checked when its settings (host config) change and on resync. */
  private readonly device = new Generations();
  /**
   * The device has been set up for the current host config, so routes may use it. Kept apart from
   * the device's pending check: a resync or repair asked for in the middle of a pass must not hide
   * the block routes from the route manager, which would then delete them.
   */
  private established = false;
  /** The device's MTU once programmed: VXLAN routes carry it (Felix). */
  mtu?: number;

  constructor(
    private readonly writer: LinkWriter,
    /** Where the VTEPs' node addresses go (all-vxlan-net: the VXLAN sources cali-INPUT accepts). */
    private readonly ipsets?: IpSetManager,
  ) {
    this.updateSourceSet();
  }

  private updateSourceSet(): void {
    this.ipsets?.replace(ALL_VXLAN_NET_SET, 'hash:net', () =>
      [...this.vteps.values()].map((v) => `${v.nodeIp}/32`),
    );
  }

  onUpdate(msg: DataplaneMessage): void {
    switch (msg.kind) {
      case 'HostConfigUpdate':
        if (JSON.stringify(msg.config) !== JSON.stringify(this.host)) {
          this.device.bump();
          this.established = false;
        }
        this.host = msg.config;
        break;
      case 'VTEPUpdate':
        this.vteps.set(msg.vtep.node, msg.vtep);
        this.updateSourceSet();
        break;
      case 'VTEPRemove':
        this.vteps.delete(msg.node);
        this.updateSourceSet();
        break;
      default:
        return;
    }
    this.gen.bump();
  }

  tunnelIpOf(node: string): Ip4 | undefined {
    return this.vteps.get(node)?.tunnelIp;
  }

  get ready(): boolean {
    return this.established;
  }

  /** The remote VTEPs this node programs (FDB and ARP on vxlan.calico). */
  desiredVteps(): Vtep[] {
    return [...this.vteps.values()];
  }

  markDirty(): void {
    this.gen.bump();
    this.device.bump();
  }

  async apply(): Promise<boolean> {
    if (!this.gen.pending) return false;
    const gen = this.gen.begin();
    const h = this.host;
    if (!h?.nodeIp || !h.tunnelIp) {
      if (this.vteps.size > 0)
        log.warn(
          { node: h?.node },
          'this node has no IPv4 address or tunnel address yet; VXLAN not programmed',
        );
      this.gen.done(gen);
      return false;
    }
    const vteps = [...this.vteps.values()];
    let fresh = false;
    if (this.device.pending) {
      const deviceGen = this.device.begin();
      const parent = await this.writer.findDeviceWithAddress(h.nodeIp);
      if (!parent)
        throw new Error(`no interface holds this node's address ${h.nodeIp}; cannot create ${VXLAN_DEVICE}`);
      const mtu = vxlanMtu(await this.writer.interfaceMtus(), parent);
      const res = await this.writer.ensureVxlan({
        name: VXLAN_DEVICE,
        vni: VXLAN_VNI,
        port: VXLAN_PORT,
        parentDev: parent.name,
        localIp: h.nodeIp,
        mac: h.vtepMac ?? derivedVtepMac(h.node),
        mtu,
        tunnelAddress: h.tunnelIp,
      });
      fresh = (res as { created?: boolean } | undefined)?.created === true;
      this.device.done(deviceGen);
      this.mtu = mtu;
      this.established = true;
    }
    await this.writer.syncFdb(
      VXLAN_DEVICE,
      vteps.map((v) => ({ mac: v.mac, dst: v.nodeIp })),
      { fresh },
    );
    await this.writer.syncNeighbours(
      VXLAN_DEVICE,
      vteps.map((v) => ({ ip: v.tunnelIp, mac: v.mac })),
      { fresh },
    );
    this.gen.done(gen);
    return true;
  }
}

/**
 * Routes this node owns: a /32 per local workload address on its cali* interface, and an onlink
 * route via the VTEP's tunnel address for every remote block. One sync of the whole set.
 */
export class RouteManager {
  private readonly workloads = new Map<EndpointKey, { iface: string; nets: Cidr[] }>();
  private readonly blocks = new Map<Cidr, RemoteBlockRoute>();
  private readonly gen = new Generations();

  constructor(
    private readonly writer: LinkWriter,
    private readonly vxlan: VxlanManager,
  ) {}

  onUpdate(msg: DataplaneMessage): void {
    switch (msg.kind) {
      case 'EndpointUpdate': {
        const old = this.workloads.get(msg.endpoint.key);
        const next = { iface: msg.endpoint.interfaceName, nets: msg.endpoint.ipv4Nets };
        if (old && JSON.stringify(old) === JSON.stringify(next)) return;
        this.workloads.set(msg.endpoint.key, next);
        break;
      }
      case 'EndpointRemove':
        this.workloads.delete(msg.key);
        break;
      case 'RouteUpdate':
        this.blocks.set(msg.route.dst, msg.route);
        break;
      case 'RouteRemove':
        this.blocks.delete(msg.dst);
        break;
      case 'VTEPUpdate':
      case 'VTEPRemove':
      case 'HostConfigUpdate':
        break;
      default:
        return;
    }
    this.gen.bump();
  }

  markDirty(): void {
    this.gen.bump();
  }

  desired(): RouteSpec[] {
    const out: RouteSpec[] = [];
    for (const w of this.workloads.values())
      for (const n of w.nets) out.push({ dst: n, dev: w.iface, scope: 'link' });
    for (const b of this.blocks.values()) if (b.local) out.push({ dst: b.dst, dev: '', blackhole: true });
    if (this.vxlan.ready) {
      const mtu = this.vxlan.mtu;
      for (const b of this.blocks.values()) {
        const via = b.local ? undefined : this.vxlan.tunnelIpOf(b.node);
        if (via) out.push({ dst: b.dst, dev: VXLAN_DEVICE, via, onlink: true, ...(mtu ? { mtu } : {}) });
      }
    }
    return out;
  }

  async apply(): Promise<boolean> {
    if (!this.gen.pending) return false;
    const gen = this.gen.begin();
    await this.writer.syncRoutes(this.desired(), { ownedDevices: (dev) => dev.startsWith('cali') });
    this.gen.done(gen);
    return true;
  }
}
