// Links, addresses, routes, neighbours and FDB entries through iproute2: read with `ip -json`,
// write with one `ip -batch -` / `bridge -batch -` per sync, with `replace` verbs so that a batch is
// idempotent. (DESIGN.md names rtnetlink via the `netlink` package; this interface is what the
// agent sees, so the transport can be swapped later.)
//
// Ownership: routes with protocol 80, routes on vxlan.calico and routes on devices the caller
// names (the agent: cali*); permanent neighbour and FDB entries on the device being synced. The
// kernel's own `proto kernel` routes (derived from addresses) are never touched, nor anything else.
import { logger } from '../lib/log.ts';
import type { Cidr, Ip4, Mac } from '../model/net.ts';
import { CommandError, run } from './exec.ts';

const log = logger('iproute');

/** A batch longer than this runs at BULK_NICE (see IpRouteDriver.batch). */
const BULK_LINES = 1000;
const BULK_NICE = 10;

export const VXLAN_DEV = 'vxlan.calico';
/** The route protocol that marks our routes (DESIGN.md: protocol 80), so a restarted agent finds them. */
export const ROUTE_PROTO = 80;
const RTPROT_KERNEL = 2;
const RTPROT_BOOT = 3;

export interface RouteSpec {
  dst: Cidr;
  /** Empty for a blackhole route. */
  dev: string;
  via?: Ip4;
  onlink?: boolean;
  /** Default: 'global' with a gateway, 'link' without (what the kernel itself would pick). */
  scope?: 'link' | 'global';
  /** A blackhole route (Felix's for this node's own IPAM blocks): no device, drops what no /32 takes. */
  blackhole?: boolean;
  /** The route's MTU (`mtu N`), as Felix sets on VXLAN routes. */
  mtu?: number;
}

/** A route as read from the kernel (main table, unicast). */
export interface KernelRoute extends RouteSpec {
  proto: number;
  metric: number;
  /** The nexthop object the route goes through (an older version wrote them). */
  nhid?: number;
}

export interface NeighSpec {
  ip: Ip4;
  mac: Mac;
}

export interface FdbSpec {
  mac: Mac;
  dst: Ip4;
}

export interface VxlanSpec {
  name: string;
  vni: number;
  port: number;
  parentDev: string;
  localIp: Ip4;
  mac: Mac;
  /** Default: the parent's MTU minus 50 (VXLAN over IPv4 costs 50 bytes of headers). */
  mtu?: number;
  /** Written as /32; any other IPv4 address on the device is removed. */
  tunnelAddress?: Ip4;
}

export interface IpStats {
  /** Write commands run: 0 when the kernel already matched. */
  commands: number;
  lines: number;
  replaced: number;
  deleted: number;
  /** Desired entries not written this time (device missing or down, foreign route in the way). */
  skipped: string[];
  ms: number;
}

// ---------------------------------------------------------------------------------------------
// Routes: the pure part.

const VXLAN_OVERHEAD = 50;

function scopeOf(r: RouteSpec): 'link' | 'global' {
  return r.scope ?? (r.via ? 'global' : 'link');
}

/** Like the kernel's FIB key for one table: destination and priority. */
function routeKey(dst: string, metric: number): string {
  return `${dst}|${metric}`;
}

function sameRoute(want: RouteSpec, have: RouteSpec | KernelRoute): boolean {
  return (
    Boolean(want.blackhole) === Boolean(have.blackhole) &&
    (want.mtu ?? 0) === (have.mtu ?? 0) &&
    want.dev === have.dev &&
    (want.via ?? '') === (have.via ?? '') &&
    Boolean(want.onlink) === Boolean(have.onlink) &&
    scopeOf(want) === scopeOf(have) &&
    ('proto' in have ? have.proto === ROUTE_PROTO : true)
  );
}

export interface RoutePlan {
  replace: RouteSpec[];
  remove: (RouteSpec | KernelRoute)[];
  /** Desired routes a route we do not own would shadow (same destination, metric no higher): left alone. */
  conflicts: RouteSpec[];
}

/**
 * Plan the change from `owned` (our routes as the kernel has them) to `desired`. `foreign` are the
 * other routes of the table: a desired route that one of them would overwrite or shadow is not
 * written.
 */
export function planRoutes(
  desired: readonly RouteSpec[],
  owned: readonly (RouteSpec | KernelRoute)[],
  foreign: readonly KernelRoute[] = [],
): RoutePlan {
  const byDst = new Map<string, RouteSpec>();
  for (const r of desired) byDst.set(r.dst, r); // last one wins for a duplicate destination
  const want = new Map([...byDst.values()].map((r) => [routeKey(r.dst, routeMetric(r)), r]));
  const have = new Map(owned.map((r) => [routeKey(r.dst, 'metric' in r ? r.metric : routeMetric(r)), r]));
  const lowestForeign = new Map<string, number>();
  for (const r of foreign) lowestForeign.set(r.dst, Math.min(r.metric, lowestForeign.get(r.dst) ?? r.metric));
  const plan: RoutePlan = { replace: [], remove: [], conflicts: [] };
  for (const [key, r] of want) {
    const cur = have.get(key);
    if (cur === undefined && (lowestForeign.get(r.dst) ?? Number.POSITIVE_INFINITY) <= routeMetric(r))
      plan.conflicts.push(r);
    else if (cur === undefined || !sameRoute(r, cur)) plan.replace.push(r);
  }
  for (const [key, r] of have) if (!want.has(key)) plan.remove.push(r);
  return plan;
}

// Gateway routes (the VXLAN block routes, one gateway per remote VTEP) carry a metric of their
// own, derived from the gateway. The kernel files an IPv4 route's next-hop info (fib_info) in a
// hash of protocol, scope, source, priority and device, not the gateway: 10,000 routes via distinct
// gateways on vxlan.calico at one metric share one bucket, and each insert scans it (measured here:
// 8–15 s by `ip -batch`; 2,000: 0.1 s). The priority spreads them (10,000: 0.2–0.4 s). Nexthop
// objects (one per gateway, `nhid` routes) insert as fast, but the kernel removes each nexthop
// of a device deleted or set down with a flush of the whole FIB: at 10,000 VTEPs 0.7–0.9 s inside
// the `ip link del`, every route gone only after it; plain routes go in one flush (40–70 ms).
// Nexthop objects of ours (protocol 80, from an older version) are removed once no route uses them.

/** Gateway routes' metrics cycle through this many values (a prime: gateways 64 apart all differ). */
const GATEWAY_METRICS = 4093;

/** The metric a route is written with: 0, or for a gateway route 1–4093 from its gateway. */
export function routeMetric(r: RouteSpec): number {
  if (r.blackhole || r.via === undefined || r.dev === '') return 0;
  // The address was checked where it entered (an Ip4): read here digit by digit, for this runs for
  // every route event of a 10,000-route repair.
  let n = 0;
  let part = 0;
  for (let i = 0; i < r.via.length; i++) {
    const c = r.via.charCodeAt(i);
    if (c === 46) {
      n = n * 256 + part;
      part = 0;
    } else part = part * 10 + c - 48;
  }
  return 1 + ((n * 256 + part) % GATEWAY_METRICS);
}

function renderReplace(r: RouteSpec): string {
  if (r.blackhole) return `route replace blackhole ${r.dst} proto ${ROUTE_PROTO} table main`;
  const mtu = r.mtu ? ` mtu ${r.mtu}` : '';
  const via = r.via ? ` via ${r.via}` : '';
  const onlink = r.onlink ? ' onlink' : '';
  const metric = routeMetric(r);
  return `route replace ${r.dst}${via} dev ${r.dev}${onlink} scope ${scopeOf(r)} proto ${ROUTE_PROTO}${metric ? ` metric ${metric}` : ''}${mtu} table main`;
}

function renderDelete(r: RouteSpec | KernelRoute): string {
  // Name the protocol and metric: if someone replaced our route meanwhile, this no longer matches.
  const proto = 'proto' in r ? r.proto : ROUTE_PROTO;
  const metric = 'metric' in r ? r.metric : routeMetric(r);
  if (r.blackhole) return `route del blackhole ${r.dst} proto ${proto} metric ${metric} table main`;
  // A route through a nexthop object is matched by its id only: named by device, the kernel would
  // pass it over and (metric 0 matching any) delete the next route of ours to the same place.
  const through = 'nhid' in r && r.nhid !== undefined ? `nhid ${r.nhid}` : `dev ${r.dev}`;
  return `route del ${r.dst} ${through} proto ${proto} metric ${metric} table main`;
}

/**
 * The batch lines: the routes wanted, then deletions (a route moving to another metric is never
 * missing meanwhile), then our nexthops no longer used (`staleNexthops`, after the routes through
 * them: deleting a nexthop that routes still use flushes the FIB once per nexthop).
 */
export function renderRoutePlan(plan: RoutePlan, staleNexthops: readonly number[] = []): string[] {
  return [
    ...plan.replace.map(renderReplace),
    ...plan.remove.map(renderDelete),
    ...staleNexthops.map((id) => `nexthop del id ${id}`),
  ];
}

/** The `ip -batch` text turning `actual` (owned routes) into `desired`; '' when nothing to do. */
export function diffRoutes(
  desired: readonly RouteSpec[],
  actual: readonly (RouteSpec | KernelRoute)[],
): string {
  const lines = renderRoutePlan(planRoutes(desired, actual));
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// Neighbours and FDB: the pure part.

export interface KernelNeigh {
  ip: string;
  mac?: string;
  permanent: boolean;
}

export function diffNeighbours(
  dev: string,
  desired: readonly NeighSpec[],
  actual: readonly KernelNeigh[],
): string[] {
  const want = new Map(desired.map((n) => [n.ip as string, n]));
  const have = new Map(actual.map((n) => [n.ip, n]));
  const lines: string[] = [];
  for (const n of actual) {
    if (n.permanent && !want.has(n.ip)) lines.push(`neigh del ${n.ip} dev ${dev}`);
  }
  for (const n of want.values()) {
    const cur = have.get(n.ip);
    if (!cur?.permanent || cur.mac?.toLowerCase() !== n.mac) {
      lines.push(`neigh replace ${n.ip} lladdr ${n.mac} dev ${dev} nud permanent`);
    }
  }
  return lines;
}

export interface KernelFdb {
  mac: string;
  dst: string;
}

const ZERO_MAC = '00:00:00:00:00:00';

export function diffFdb(dev: string, desired: readonly FdbSpec[], actual: readonly KernelFdb[]): string[] {
  const want = new Map(desired.map((f) => [f.mac as string, f]));
  const lines: string[] = [];
  const ok = new Set<string>();
  for (const f of actual) {
    if (f.mac === ZERO_MAC) continue; // the kernel's default-destination entries are not ours
    const w = want.get(f.mac);
    if (w !== undefined && w.dst === f.dst && !ok.has(f.mac)) ok.add(f.mac);
    else lines.push(`fdb del ${f.mac} dev ${dev} dst ${f.dst} self`);
  }
  for (const f of want.values()) {
    if (!ok.has(f.mac)) lines.push(`fdb replace ${f.mac} dev ${dev} dst ${f.dst} self permanent`);
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------
// Reading iproute2 JSON.

interface JsonLink {
  ifindex?: number;
  ifname: string;
  mtu: number;
  address?: string;
  flags?: string[];
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

interface JsonRoute {
  type?: string;
  metrics?: { mtu?: number }[];
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
  metric?: number;
  nhid?: number;
  flags?: string[];
}

function parseJson<T>(text: string): T[] {
  const t = text.trim();
  return t === '' ? [] : (JSON.parse(t) as T[]);
}

function toCidr(dst: string): Cidr {
  if (dst === 'default') return '0.0.0.0/0' as Cidr;
  return (dst.includes('/') ? dst : `${dst}/32`) as Cidr;
}

/** iproute2 omits the scope for global (0); with -N, link is 253. */
function scopeName(scope: string | undefined): 'link' | 'global' | undefined {
  if (scope === undefined || scope === '0' || scope === 'global' || scope === 'universe') return 'global';
  if (scope === '253' || scope === 'link') return 'link';
  return undefined;
}

/** Routes from `ip -4 -N -j route show table main` (numeric protocol and scope). Unicast only. */
export function parseRoutes(text: string): KernelRoute[] {
  const out: KernelRoute[] = [];
  for (const r of parseJson<JsonRoute>(text)) {
    if (r.type === 'blackhole' || r.type === '6') {
      out.push({
        dst: toCidr(r.dst),
        dev: '',
        blackhole: true,
        proto: r.protocol === undefined ? RTPROT_BOOT : Number(r.protocol),
        metric: r.metric ?? 0,
      });
      continue;
    }
    // Unreachable/prohibit/... and multipath routes carry no single device: not modelled here.
    if ((r.type !== undefined && r.type !== '1' && r.type !== 'unicast') || r.dev === undefined) continue;
    const scope = scopeName(r.scope);
    if (scope === undefined) continue; // host/site scoped routes are never ours
    const route: KernelRoute = {
      dst: toCidr(r.dst),
      dev: r.dev,
      proto: r.protocol === undefined ? RTPROT_BOOT : Number(r.protocol),
      metric: r.metric ?? 0,
      scope,
    };
    if (r.gateway !== undefined) route.via = r.gateway as Ip4;
    if (r.nhid !== undefined) route.nhid = r.nhid;
    if (r.flags?.includes('onlink')) route.onlink = true;
    const mtu = r.metrics?.find((m) => m.mtu !== undefined)?.mtu;
    if (mtu !== undefined) route.mtu = mtu;
    out.push(route);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The driver.

type Tool = 'ip' | 'bridge';

export class IpRouteDriver {
  private readonly netns: string | undefined;
  /** Bulk batches run at BULK_NICE until the dataplane says the node is programmed. */
  private bulkNice = true;

  constructor(opts: { netns?: string } = {}) {
    this.netns = opts.netns;
  }

  /** Every link's name and MTU (Felix picks the VXLAN MTU from the host interfaces'). */
  async interfaceMtus(): Promise<{ name: string; mtu: number }[]> {
    const { stdout } = await run('ip', ['-j', 'link', 'show'], { netns: this.netns });
    return parseJson<JsonLink>(stdout).map((l) => ({ name: l.ifname, mtu: l.mtu }));
  }

  async findDeviceWithAddress(ip: Ip4): Promise<{ name: string; mtu: number } | undefined> {
    const { stdout } = await run('ip', ['-4', '-j', 'addr', 'show'], { netns: this.netns });
    const link = parseJson<JsonLink>(stdout).find((l) => l.addr_info?.some((a) => a.local === ip));
    return link ? { name: link.ifname, mtu: link.mtu } : undefined;
  }

  /**
   * Make the VXLAN device match `spec`. A device whose VNI, port, parent or MAC differ is deleted
   * and created again (those cannot be changed in place); source address, MTU, tunnel address and
   * up-state are fixed in place. One `ip -batch`, none when nothing differs.
   */
  async ensureVxlan(
    spec: VxlanSpec,
    opts: { absent?: boolean } = {},
  ): Promise<{ created: boolean; changed: boolean; ms: number; replaced?: number; ifindex?: number }> {
    // With the MTU given, the parent is only checked by the kernel when the device is created.
    const parent = spec.mtu === undefined ? await this.link(spec.parentDev, false) : undefined;
    if (spec.mtu === undefined && parent === undefined)
      throw new Error(`VXLAN parent device ${spec.parentDev} does not exist`);
    const mtu = spec.mtu ?? (parent?.mtu ?? 0) - VXLAN_OVERHEAD;
    if (opts.absent) {
      // Said to be gone: created without a look; if the name is taken after all, the look follows.
      try {
        return await this.createVxlan(spec, mtu, undefined);
      } catch (e) {
        log.debug({ netns: this.netns, err: (e as Error).message }, 'vxlan device not absent after all');
      }
    }
    const cur = await this.link(spec.name, true);
    if (cur === undefined || !vxlanMatches(cur, spec)) return this.createVxlan(spec, mtu, cur);
    const lines: string[] = [];
    if (cur.linkinfo?.info_data?.local !== spec.localIp) {
      // The kernel changes the source address in place, keeping every entry and route (the VNI,
      // port and parent it refuses to change; a new MAC would flush the ARP entries).
      lines.push(`link set ${spec.name} type vxlan local ${spec.localIp}`);
    }
    if (cur.mtu !== mtu) lines.push(`link set ${spec.name} mtu ${mtu}`);
    const want = spec.tunnelAddress ? `${spec.tunnelAddress}/32` : undefined;
    const addrs = (cur.addr_info ?? [])
      .filter((a) => a.family === 'inet')
      .map((a) => `${a.local}/${a.prefixlen}`);
    for (const a of addrs) if (a !== want) lines.push(`addr del ${a} dev ${spec.name}`);
    if (want !== undefined && !addrs.includes(want)) lines.push(`addr replace ${want} dev ${spec.name}`);
    if (!cur.flags?.includes('UP')) lines.push(`link set ${spec.name} up`);
    if (lines.length === 0) return { created: false, changed: false, ms: 0, ...known(cur.ifindex) };
    // Order matters here, so no -force: stop at the first error.
    const ms = await this.batch('ip', lines, false);
    return { created: false, changed: true, ms, ...known(cur.ifindex) };
  }

  /**
   * The device made anew (in place of `cur`, deleted first), with its MTU, address and up; its
   * index read back in the same batch (events name devices by index, and a repair must tell this
   * device from the one it replaced).
   */
  private async createVxlan(
    spec: VxlanSpec,
    mtu: number,
    cur: JsonLink | undefined,
  ): Promise<{ created: boolean; changed: boolean; ms: number; replaced?: number; ifindex?: number }> {
    const lines = [
      ...(cur ? [`link del ${spec.name}`] : []),
      `link add ${spec.name} address ${spec.mac} mtu ${mtu} type vxlan id ${spec.vni} dstport ${spec.port} ` +
        `local ${spec.localIp} dev ${spec.parentDev} nolearning`,
      ...(spec.tunnelAddress ? [`addr replace ${spec.tunnelAddress}/32 dev ${spec.name}`] : []),
      `link set ${spec.name} up`,
      `link show dev ${spec.name}`,
    ];
    // Order matters here (add before set), so no -force: stop at the first error.
    const { ms, stdout } = await this.batchOutput('ip', lines, false);
    log.info({ netns: this.netns, dev: spec.name, recreated: cur !== undefined }, 'vxlan device created');
    const ifindex = Number(/^(\d+): /m.exec(stdout)?.[1] ?? Number.NaN);
    return {
      created: true,
      changed: true,
      ms,
      ...(cur?.ifindex !== undefined ? { replaced: cur.ifindex } : {}),
      ...known(ifindex),
    };
  }

  /**
   * Make our routes in the main table exactly `desired`. Owned: proto 80, on vxlan.calico, or on a
   * device `ownedDevices` accepts. A route whose device is missing (or down, for a gateway route) is
   * skipped with a warning and picked up by a later sync; so is one whose destination is held by a
   * route we do not own. `apartFrom`: a device whose routes this sync leaves alone, neither ours to
   * sweep nor another's to yield to (a fresh vxlan.calico, whose routes are written as a whole).
   */
  async syncRoutes(
    desired: readonly RouteSpec[],
    opts: { ownedDevices?: (dev: string) => boolean; apartFrom?: string } = {},
  ): Promise<IpStats> {
    const [routesOut, linksOut, nexthopsOut] = await Promise.all([
      run('ip', ['-4', '-N', '-j', 'route', 'show', 'table', 'main'], { netns: this.netns }),
      run('ip', ['-j', 'link', 'show'], { netns: this.netns }),
      run('ip', ['-4', '-N', '-j', 'nexthop', 'show'], { netns: this.netns, allowFailure: true }),
    ]);
    const links = new Map(parseJson<JsonLink>(linksOut.stdout).map((l) => [l.ifname, l]));
    const isOwned = (r: KernelRoute) =>
      r.proto !== RTPROT_KERNEL &&
      (r.proto === ROUTE_PROTO || r.dev === VXLAN_DEV || (opts.ownedDevices?.(r.dev) ?? false));
    const apart = opts.apartFrom;
    const actual = parseRoutes(routesOut.stdout).filter((r) => apart === undefined || r.dev !== apart);
    const skipped: string[] = [];
    const writable = desired.filter((r) => {
      if (r.blackhole) return true;
      const link = links.get(r.dev);
      const why =
        link === undefined
          ? 'device missing'
          : r.via !== undefined && !link.flags?.includes('UP')
            ? 'device down'
            : undefined;
      if (why !== undefined) {
        skipped.push(r.dst);
        log.warn(
          { netns: this.netns, dst: r.dst, dev: r.dev, why },
          'route skipped until its device is ready',
        );
      }
      return why === undefined;
    });
    // A skipped route's old version stays until the device is back: do not delete what we skip.
    const skippedDsts = new Set<string>(skipped);
    const owned = actual.filter((r) => isOwned(r) && !skippedDsts.has(r.dst));
    const plan = planRoutes(
      writable,
      owned,
      actual.filter((r) => !isOwned(r)),
    );
    for (const r of plan.conflicts) {
      skipped.push(r.dst);
      log.warn(
        { netns: this.netns, dst: r.dst },
        'route skipped: a route we do not own holds this destination',
      );
    }
    // Our nexthops (an older version's): no route of ours uses them once this batch has run.
    const stale = ourNexthops(nexthopsOut.exitCode === 0 ? nexthopsOut.stdout : '');
    const lines = renderRoutePlan(plan, stale);
    const base = { lines: lines.length, replaced: plan.replace.length, deleted: plan.remove.length, skipped };
    if (lines.length === 0) return { ...base, commands: 0, ms: 0 };
    return { ...base, commands: 1, ms: await this.batch('ip', lines, true) };
  }

  /** Permanent ARP entries on `dev` exactly `desired`; other permanent entries there are removed. */
  async syncNeighbours(
    dev: string,
    desired: readonly NeighSpec[],
    opts: { fresh?: boolean } = {},
  ): Promise<IpStats> {
    const stdout = opts.fresh
      ? '[]'
      : (await run('ip', ['-4', '-j', 'neigh', 'show', 'dev', dev], { netns: this.netns })).stdout;
    const actual = parseJson<{ dst: string; lladdr?: string; state?: string[] }>(stdout).map((n) => ({
      ip: n.dst,
      mac: n.lladdr,
      permanent: n.state?.includes('PERMANENT') ?? false,
    }));
    return this.applyLines('ip', diffNeighbours(dev, desired, actual));
  }

  /** Permanent FDB entries (MAC -> remote VTEP) on `dev` exactly `desired`. */
  async syncFdb(dev: string, desired: readonly FdbSpec[], opts: { fresh?: boolean } = {}): Promise<IpStats> {
    const stdout = opts.fresh
      ? '[]'
      : (await run('bridge', ['-j', 'fdb', 'show', 'dev', dev], { netns: this.netns })).stdout;
    const actual = parseJson<{ mac: string; dst?: string; state?: string }>(stdout)
      // Entries without a remote are the device's own unicast/multicast addresses, not FDB state.
      .filter((f) => f.state === 'permanent' && f.dst !== undefined)
      .map((f) => ({ mac: f.mac.toLowerCase(), dst: f.dst as string }));
    return this.applyLines('bridge', diffFdb(dev, desired, actual));
  }

  /**
   * Writes these objects as wanted without reading the kernel first: the repair of objects that a
   * kernel event said were deleted or changed, or of a device lost with everything on it. FDB,
   * ARP and routes do not depend on one another (our gateway routes are onlink): one `bridge
   * -batch` beside one `ip -batch`, or, for bulk ARP and routes both, two `ip -batch` (the kernel
   * takes one request at a time, but the tools' parsing and formatting run beside it on another
   * core).
   *
   * Entries on vxlan.calico while it is missing or down cannot be written, and need not be: its
   * loss has its own event, whose repair writes every entry back. Such a failure is not an error;
   * and before a bulk (the thousands of FDB deletions that deleting the device begins with), the
   * device is looked at first unless the caller just made it (`deviceReady`): measured at 10,000
   * VTEPs, a bridge batch against a device gone took 0.8 s of failing lines.
   */
  async rewrite(
    o: { routes: readonly RouteSpec[]; neighbours: readonly NeighSpec[]; fdb: readonly FdbSpec[] },
    opts: { deviceReady?: boolean } = {},
  ): Promise<number> {
    const bulk = o.routes.length + o.neighbours.length + o.fdb.length >= BULK_LINES;
    if (bulk && !opts.deviceReady && !(await this.link(VXLAN_DEV, false))?.flags?.includes('UP')) {
      log.debug({ netns: this.netns }, 'rewrite skipped: vxlan.calico is missing or down');
      return 0;
    }
    try {
      const arp = diffNeighbours(VXLAN_DEV, o.neighbours, []);
      const routes = renderRoutePlan({ replace: [...o.routes], remove: [], conflicts: [] });
      const ip =
        arp.length >= BULK_LINES && routes.length >= BULK_LINES ? [arp, routes] : [[...arp, ...routes]];
      const done = await Promise.all([
        this.applyLines('bridge', diffFdb(VXLAN_DEV, o.fdb, [])),
        ...ip.map((lines) => this.applyLines('ip', lines)),
      ]);
      return Math.max(...done.map((d) => d.ms));
    } catch (e) {
      const dev = await this.link(VXLAN_DEV, false);
      if (dev?.flags?.includes('UP')) throw e;
      log.debug(
        { netns: this.netns, state: dev ? 'down' : 'missing' },
        'rewrite skipped: vxlan.calico is being repaired as a whole',
      );
      return 0;
    }
  }

  private async applyLines(tool: Tool, lines: string[]): Promise<IpStats> {
    const deleted = lines.filter((l) => / del /.test(` ${l}`)).length;
    const base = { lines: lines.length, replaced: lines.length - deleted, deleted, skipped: [] };
    if (lines.length === 0) return { ...base, commands: 0, ms: 0 };
    return { ...base, commands: 1, ms: await this.batch(tool, lines, true) };
  }

  private async link(name: string, details: boolean): Promise<JsonLink | undefined> {
    const args = [...(details ? ['-d'] : []), '-j', 'addr', 'show', 'dev', name];
    const res = await run('ip', args, { netns: this.netns, allowFailure: true });
    if (res.exitCode !== 0) {
      if (/does not exist|Cannot find device/i.test(res.stderr)) return undefined;
      throw new CommandError(`ip ${args.join(' ')}`, res.exitCode, res.stderr);
    }
    return parseJson<JsonLink>(res.stdout)[0];
  }

  lowerBulkPriority(on: boolean): void {
    this.bulkNice = on;
  }

  /**
   * One `ip -batch -` / `bridge -batch -`. With `force`, every line is tried; a failed `del` means
   * the entry is already gone (fine), any other failed line is an error reported after the batch.
   */
  private async batch(tool: Tool, lines: readonly string[], force: boolean): Promise<number> {
    return (await this.batchOutput(tool, lines, force)).ms;
  }

  /** `batch`, with what the tool printed (the output of `show` lines in it). */
  private async batchOutput(
    tool: Tool,
    lines: readonly string[],
    force: boolean,
  ): Promise<{ ms: number; stdout: string }> {
    const started = performance.now();
    const args = force ? ['-force', '-batch', '-'] : ['-batch', '-'];
    const res = await run(tool, args, {
      netns: this.netns,
      input: `${lines.join('\n')}\n`,
      allowFailure: true,
      // A bulk batch on a cold start (10,000 routes, ARP and FDB entries) is not what the agent
      // waits for (the ipset restore the tables need is): measured, at nice 0 beside it, both took
      // twice as long. Later (a lost device's repair: 40,000 objects, with the kernel monitors
      // busy beside it) it is what the node waits for: measured at 10,000 VTEPs, nice 10 made the
      // repair 0.4-0.5 s slower. Small batches always run at the agent's own priority.
      ...(this.bulkNice && lines.length > BULK_LINES ? { nice: BULK_NICE } : {}),
    });
    const ms = performance.now() - started;
    log.debug({ tool, netns: this.netns, lines: lines.length, ms, exitCode: res.exitCode }, `${tool} -batch`);
    if (res.exitCode === 0) return { ms, stdout: res.stdout };
    const failed = [...res.stderr.matchAll(/Command failed -:(\d+)/g)].map((m) => Number(m[1]));
    const real = failed.filter((n) => !/^\S+ del /.test(lines[n - 1] ?? ''));
    if (failed.length > 0 && real.length === 0) return { ms, stdout: res.stdout };
    const detail = real.map((n) => lines[n - 1]).join('; ');
    throw new CommandError(`${tool} -batch`, res.exitCode, `${res.stderr.trim()}\nfailed lines: ${detail}`);
  }
}

/** The ids of our nexthops (protocol 80) in `ip -4 -N -j nexthop show` ('' when it failed). */
export function ourNexthops(text: string): number[] {
  return parseJson<{ id: number; protocol?: string }>(text)
    .filter((n) => n.protocol === String(ROUTE_PROTO))
    .map((n) => n.id);
}

/** `{ ifindex }` when known. */
function known(ifindex: number | undefined): { ifindex?: number } {
  return ifindex === undefined || Number.isNaN(ifindex) ? {} : { ifindex };
}

function vxlanMatches(cur: JsonLink, spec: VxlanSpec): boolean {
  const d = cur.linkinfo?.info_data ?? {};
  return (
    cur.linkinfo?.info_kind === 'vxlan' &&
    d.id === spec.vni &&
    d.port === spec.port &&
    d.link === spec.parentDev &&
    cur.address?.toLowerCase() === spec.mac
  );
}
