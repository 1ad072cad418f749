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
import type { DesiredKernelState } from './kernel-watch.ts';

const log = logger('vxlan');

export const VXLAN_DEVICE = 'vxlan.calico';
export const VXLAN_VNI = 4096;
export const VXLAN_PORT = 4789;

/**
 * What happened to vxlan.calico, in rising order of what its repair must write back: `changed`
 * (MTU, address, VNI, local address, ... differ: fix the device; its entries only if it had to be
 * created again), `down` (the kernel flushed its ARP entries and routes), `deleted` (and its FDB).
 */
export type DeviceLoss = 'changed' | 'down' | 'deleted';
const LOSS_RANK: Record<DeviceLoss, number> = { changed: 1, down: 2, deleted: 3 };

/** The loss whose repair covers both. */
export function worseLoss(a: DeviceLoss | undefined, b: DeviceLoss): DeviceLoss {
  return a !== undefined && LOSS_RANK[a] >= LOSS_RANK[b] ? a : b;
}

/** VXLAN over IPv4 costs 50 bytes of headers. */
const VXLAN_OVERHEAD = 50;
/** Felix's MTUIfacePattern default: the host interfaces whose smallest MTU bounds the overlay's. */
const MTU_IFACE_PATTERN = /^((en|wl|ww|sl|ib)[Pcopsvx].*|(eth|wlan|wwan).*)/;

/** The VXLAN MTU as Felix picks it: the smallest matching host interface's MTU (else the parent's) − 50. */
export function vxlanMtu(links: readonly { name: string; mtu: number }[], parent: { mtu: number }): number {
  const mtus = links.filter((l) => MTU_IFACE_PATTERN.test(l.name)).map((l) => l.mtu);
  return (mtus.length > 0 ? Math.min(...mtus) : parent.mtu) - VXLAN_OVERHEAD;
}

/**
 * What ensureVxlan reports: `created` the device anew, in place of `replaced` (its index); the
 * index of the device now in place.
 */
interface EnsureResult {
  created?: boolean;
  replaced?: number;
  ifindex?: number;
}

export interface LinkWriter {
  findDeviceWithAddress(ip: Ip4): Promise<{ name: string; mtu: number } | undefined>;
  interfaceMtus(): Promise<{ name: string; mtu: number }[]>;
  /** `absent`: events said the device is gone; create it without looking first. */
  ensureVxlan(spec: VxlanSpec, opts?: { absent?: boolean }): Promise<unknown>;
  /** `fresh`: the device was just created, so it holds no entries and there is nothing to read. */
  syncNeighbours(dev: string, desired: readonly NeighSpec[], opts?: { fresh?: boolean }): Promise<unknown>;
  syncFdb(dev: string, desired: readonly FdbSpec[], opts?: { fresh?: boolean }): Promise<unknown>;
  syncRoutes(
    desired: readonly RouteSpec[],
    opts?: { ownedDevices?: (dev: string) => boolean; apartFrom?: string },
  ): Promise<unknown>;
  /**
   * Run bulk batches below the agent's priority (on: a cold start, where the ipset restore the
   * tables wait for needs the cores) or at it (off: from the first programmed pass on, where a
   * bulk batch is a repair the node waits for).
   */
  lowerBulkPriority?(on: boolean): void;
  /**
   * Write these as wanted without a read-back (repairs of what kernel events reported).
   * `deviceReady`: vxlan.calico was just checked or made, so a bulk need not look at it first.
   */
  rewrite(
    objects: { routes: readonly RouteSpec[]; neighbours: readonly NeighSpec[]; fdb: readonly FdbSpec[] },
    opts?: { deviceReady?: boolean },
  ): Promise<unknown>;
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
  /** Bumped whenever what this manager wants in the kernel may have changed. */
  version = 0;
  /** The device as last programmed: what a repair puts back without looking up parent and MTU. */
  programmed?: VxlanSpec;
  /** Kernel events said the device was deleted, set down or changed: repaired first in a pass. */
  private loss?: DeviceLoss;
  /** The interface indexes those events named (unknown when empty). */
  private lossIndexes = new Set<number>();
  /**
   * Indexes of vxlan.calico devices gone and already replaced by a repair. Deleting a device with
   * thousands of entries takes the kernel long enough that its `down` and `deleted` events can
   * land in two bursts; the first repair makes it good, the second is about a device long gone.
   */
  private readonly replaced = new Set<number>();
  /** The index of vxlan.calico as last checked or created. */
  private deviceIndex?: number;
  /** The routes on vxlan.calico (the route manager's): a lost device takes them with it. */
  deviceRoutes: () => RouteSpec[] = () => [];
  /**
   * Before a new device's entries are written at once: the route manager syncs its other routes
   * while the table holds none of the device's (10,000 at scale, otherwise read back after).
   */
  beforeFreshWrite: () => Promise<void> = async () => {};

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
    this.version++;
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

  /** Kernel events reported the device deleted, down or changed. */
  markLost(loss: DeviceLoss, ifindexes: readonly number[] = []): void {
    this.loss = worseLoss(this.loss, loss);
    for (const i of ifindexes) this.lossIndexes.add(i);
  }

  /**
   * Applies pending changes. What this pass wrote: nothing (false); the device's settings or
   * entries (true: the routes on it are to be synced); or a new device with every entry and route
   * on it (`fresh`: see RouteManager.deviceWritten).
   */
  async apply(): Promise<boolean | 'fresh'> {
    if (this.loss) await this.repairDevice();
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
      const spec: VxlanSpec = {
        name: VXLAN_DEVICE,
        vni: VXLAN_VNI,
        port: VXLAN_PORT,
        parentDev: parent.name,
        localIp: h.nodeIp,
        mac: h.vtepMac ?? derivedVtepMac(h.node),
        mtu,
        tunnelAddress: h.tunnelIp,
      };
      fresh = this.ensured((await this.writer.ensureVxlan(spec)) as EnsureResult | undefined, []);
      this.device.done(deviceGen);
      this.mtu = mtu;
      this.programmed = spec;
      this.established = true;
      this.version++;
    }
    if (fresh) {
      // A new device holds nothing: everything on it is written at once, as a lost device's repair,
      // after the routes elsewhere are synced.
      await this.beforeFreshWrite();
      await this.writeEverything();
      this.gen.done(gen);
      return 'fresh';
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

  /**
   * ensureVxlan for a repair. Deleted: the device is created without looking first (one tool run
   * less; the look follows only if the name is taken). Down: a deletion is reported as down first,
   * and the look may see the device still there while the kernel tears it down (the deleting
   * command holds the lock the fix needs): when the fix fails, once more, on what is there now.
   */
  private async ensureAfterLoss(spec: VxlanSpec, loss: DeviceLoss): Promise<EnsureResult | undefined> {
    const ensure = (absent: boolean) =>
      this.writer.ensureVxlan(spec, { absent }) as Promise<EnsureResult | undefined>;
    try {
      return await ensure(loss === 'deleted');
    } catch (e) {
      log.debug({ loss, err: (e as Error).message }, 'vxlan.calico changed under its repair; once more');
      return await ensure(false);
    }
  }

  /**
   * Notes what ensureVxlan did; true when it created the device. The device it replaced, the one
   * last seen (a device found missing was that one) and those the events named are gone for good:
   * their later events ask for nothing.
   */
  private ensured(res: EnsureResult | undefined, named: readonly number[]): boolean {
    const created = res?.created === true;
    if (created)
      for (const i of [...named, res?.replaced, this.deviceIndex])
        if (i !== undefined && i !== res?.ifindex) this.replaced.add(i);
    this.deviceIndex = res?.ifindex ?? (created ? undefined : this.deviceIndex);
    return created;
  }

  /**
   * Every FDB and ARP entry and route on the device, written as wanted without a read-back. `kept`:
   * the device was set down, not deleted, so the kernel kept its FDB entries: those are written
   * after the rest, not beside it (the node waits on the ARP entries and routes).
   */
  private async writeEverything(kept = false): Promise<{ vteps: number; routes: number }> {
    const vteps = [...this.vteps.values()];
    const routes = this.deviceRoutes();
    const neighbours = vteps.map((v) => ({ ip: v.tunnelIp, mac: v.mac }));
    const fdb = vteps.map((v) => ({ mac: v.mac, dst: v.nodeIp }));
    const ready = { deviceReady: true };
    await this.writer.rewrite({ routes, neighbours, fdb: kept ? [] : fdb }, ready);
    if (kept) await this.writer.rewrite({ routes: [], neighbours: [], fdb }, ready);
    return { vteps: vteps.length, routes: routes.length };
  }

  /**
   * The repair of a device that kernel events reported lost or changed, without reading its
   * thousands of entries back: the device is checked and fixed (one small read, one batch), and
   * unless only a setting was fixed in place, every FDB and ARP entry and route on it is written
   * again as wanted (one `bridge -batch`, one `ip -batch`): deleted or down, the kernel has dropped
   * them. A failure leaves it to the full check (which reads everything back).
   */
  private async repairDevice(): Promise<void> {
    const loss = this.loss!;
    const indexes = [...this.lossIndexes];
    this.loss = undefined;
    this.lossIndexes = new Set();
    if (indexes.length > 0 && indexes.every((i) => this.replaced.has(i))) {
      log.debug({ loss, indexes }, 'vxlan.calico loss already repaired (that device was replaced)');
      return;
    }
    const spec = this.programmed;
    if (!spec || !this.established) {
      this.markDirty(); // never programmed, or its settings are changing: the full path does it all
      return;
    }
    const started = performance.now();
    try {
      const res = await this.ensureAfterLoss(spec, loss);
      const recreated = this.ensured(res, indexes);
      const ensureMs = Math.round(performance.now() - started);
      if (loss === 'changed' && !recreated) {
        log.info({ loss, ms: ensureMs }, 'vxlan.calico fixed in place');
        return;
      }
      const counts = await this.writeEverything(loss === 'down' && !recreated);
      log.info(
        { loss, recreated, ...counts, ensureMs, ms: Math.round(performance.now() - started) },
        'vxlan.calico repaired: device, FDB, ARP and routes written back',
      );
    } catch (e) {
      log.warn(
        { loss, err: (e as Error).message },
        'vxlan.calico repair failed; checking the device and its entries in full',
      );
      this.markDirty();
    }
  }
}

/** Workload interfaces: their routes are ours whatever their protocol. */
const ownedDevice = (dev: string) => dev.startsWith('cali');

/**
 * Routes this node owns: a /32 per local workload address on its cali* interface, and an onlink
 * route via the VTEP's tunnel address for every remote block. One sync of the whole set.
 */
export class RouteManager {
  private readonly workloads = new Map<EndpointKey, { iface: string; nets: Cidr[] }>();
  private readonly blocks = new Map<Cidr, RemoteBlockRoute>();
  private readonly gen = new Generations();
  /** Bumped whenever the routes this manager wants may have changed. */
  version = 0;

  constructor(
    private readonly writer: LinkWriter,
    private readonly vxlan: VxlanManager,
  ) {
    vxlan.deviceRoutes = () => this.desired().filter((r) => r.dev === VXLAN_DEVICE);
    vxlan.beforeFreshWrite = () => this.syncApartFromDevice();
  }

  /** The generation a sync of the routes off a fresh vxlan.calico covered (see deviceWritten). */
  private apartSynced: number | undefined;

  /** Every route of ours but those on vxlan.calico, synced (the device is new: it holds none). */
  private async syncApartFromDevice(): Promise<void> {
    const gen = this.gen.begin();
    await this.writer.syncRoutes(
      this.desired().filter((r) => r.dev !== VXLAN_DEVICE),
      { ownedDevices: ownedDevice, apartFrom: VXLAN_DEVICE },
    );
    this.apartSynced = gen;
  }

  /**
   * A new vxlan.calico was written whole, its routes included, after the others were synced: the
   * routes are as wanted without reading the table back (its 10,000 device routes at scale). A
   * change since then (a message, a kernel event) stays pending.
   */
  deviceWritten(): void {
    if (this.apartSynced !== undefined) this.gen.done(this.apartSynced);
    this.apartSynced = undefined;
  }

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
    this.version++;
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
    await this.writer.syncRoutes(this.desired(), { ownedDevices: ownedDevice });
    this.gen.done(gen);
    return true;
  }
}

const kernelStates = new WeakMap<RouteManager, { key: string; state: DesiredKernelState }>();

/**
 * What the route and VXLAN managers want in the kernel, for the kernel watch's classifier. Built
 * once per change of either: a flood of events (our own 40,000 echoes after a device repair at
 * 10,000 VTEPs) is classified in bursts every few tens of ms, and rebuilding 10,000 routes for each
 * burst cost more CPU than the repair's writes.
 */
export function desiredKernelState(routes: RouteManager, vxlan: VxlanManager): DesiredKernelState {
  const key = `${routes.version}/${vxlan.version}`;
  const cached = kernelStates.get(routes);
  if (cached?.key === key) return cached.state;
  const byDst = new Map<string, RouteSpec>();
  const workloadInterfaces = new Set<string>();
  for (const r of routes.desired()) {
    byDst.set(r.dst, r);
    if (r.dev !== VXLAN_DEVICE && !r.blackhole) workloadInterfaces.add(r.dev);
  }
  const neighbours = new Map<string, string>();
  const fdb = new Map<string, string>();
  for (const v of vxlan.desiredVteps()) {
    neighbours.set(v.tunnelIp, v.mac.toLowerCase());
    fdb.set(v.mac.toLowerCase(), v.nodeIp);
  }
  const state = { routes: byDst, neighbours, fdb, workloadInterfaces, device: vxlan.programmed };
  kernelStates.set(routes, { key, state });
  return state;
}
