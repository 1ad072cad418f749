// Turns kernel events into repairs: someone deleted or changed one of our routes, FDB or ARP
// entries, or vxlan.calico itself, and within a debounce the objects named are written again (no
// read-back: the event said what went wrong) or the device is restored; a workload interface
// appeared (the CNI race: the endpoint arrived before its veth), and its route is written at once.
// Our own writes come back as events too; they match what we want, so the classifier ignores them
// and no write loop starts.
//
// Deleting vxlan.calico (or setting it down) makes the kernel drop its ARP entries (and, on
// deletion, its FDB entries), each with an event, and its routes silently: with 10,000 VTEPs,
// 20,000 events that say nothing the link event does not. They are implied by the device repair,
// which writes every entry back, so while the device is lost they are dropped rather than turned
// into thousands of rewrites aimed at a device that is not there. FDB events come on their own
// stream and may overtake the link event, so a burst holding a device loss drops them too.
import { logger } from '../../lib/log.ts';
import type { Ip4, Mac } from '../../model/net.ts';
import {
  type FdbSpec,
  type NeighSpec,
  type RouteSpec,
  routeMetric,
  type VxlanSpec,
} from '../../native/iproute.ts';
import { type KernelEvent, type KernelEventSource, wordAfter } from '../../native/kernel-events.ts';
import { type DeviceLoss, VXLAN_DEVICE, worseLoss } from './vxlan.ts';

const log = logger('kernel-watch');

export type RepairScope = 'vxlan' | 'routes';

/** What this node wants in the kernel, for telling a foreign change from our own. */
export interface DesiredKernelState {
  /** Route destination → the route we program for it. */
  routes: ReadonlyMap<string, RouteSpec>;
  /** ARP on vxlan.calico: tunnel IP → VTEP MAC (lower case). */
  neighbours: ReadonlyMap<string, string>;
  /** FDB on vxlan.calico: VTEP MAC (lower case) → remote node IP. */
  fdb: ReadonlyMap<string, string>;
  /** The interfaces our workload routes use. */
  workloadInterfaces: ReadonlySet<string>;
  /** vxlan.calico as last programmed (with its MTU); undefined before that. */
  device?: VxlanSpec;
}

/** What to do about one event: the device is repaired, or just this object is written again. */
export type Repair =
  | { device: DeviceLoss }
  | { target: 'route' | 'neigh' | 'fdb' | 'interface'; key: string }
  | { resync: RepairScope };

const isUp = (line: string) => /<[^>]*\bUP\b/.test(line);

/** Whether a vxlan.calico link line (`ip -d`) differs from the device we programmed. */
function deviceDiffers(line: string, d: VxlanSpec): boolean {
  const got = (re: RegExp) => re.exec(line)?.[1];
  const differs = (re: RegExp, want: string | number | undefined) => {
    const v = got(re);
    return v !== undefined && want !== undefined && v.toLowerCase() !== String(want).toLowerCase();
  };
  return (
    differs(/\smtu (\d+)/, d.mtu) ||
    differs(/link\/ether (\S+)/, d.mac) ||
    differs(/\svxlan id (\d+)/, d.vni) ||
    differs(/\svxlan id \d+.*?\slocal (\S+)/, d.localIp) ||
    differs(/\svxlan id \d+.*?\sdev (\S+)/, d.parentDev) ||
    differs(/\sdstport (\d+)/, d.port)
  );
}

const byDevice = new WeakMap<ReadonlyMap<string, RouteSpec>, Map<string, string[]>>();

/** Destinations of the wanted routes by device (built once per desired state). */
function routesOnDevice(want: DesiredKernelState, dev: string): string[] {
  let m = byDevice.get(want.routes);
  if (!m) {
    m = new Map();
    for (const r of want.routes.values()) m.set(r.dev, [...(m.get(r.dev) ?? []), r.dst]);
    byDevice.set(want.routes, m);
  }
  return m.get(dev) ?? [];
}

/** Which repair this event asks for, if any (pure). */
export function classify(e: KernelEvent, want: DesiredKernelState): Repair | undefined {
  switch (e.object) {
    case 'link': {
      if (e.subject === VXLAN_DEVICE) {
        if (e.deleted) return { device: 'deleted' };
        // A device never up yet has no queueing discipline ("qdisc noop"): just created (by our
        // repair, or by someone whose deletion was reported before), holding nothing to lose.
        if (!isUp(e.line)) return /\sqdisc noop\s/.test(e.line) ? undefined : { device: 'down' };
        return want.device && deviceDiffers(e.line, want.device) ? { device: 'changed' } : undefined;
      }
      // A workload interface appeared or came up: its routes can be written now (the CNI race).
      if (!e.deleted && want.workloadInterfaces.has(e.subject) && isUp(e.line)) {
        return { target: 'interface', key: e.subject };
      }
      return undefined;
    }
    case 'addr': {
      // Our tunnel address removed, or another IPv4 address put on the device.
      if (e.dev !== VXLAN_DEVICE || !want.device?.tunnelAddress || e.subject.includes(':')) return undefined;
      // Removing a device's last IPv4 address makes the kernel flush its ARP entries and routes as
      // setting it down does: repaired the same way.
      const ours = e.subject === `${want.device.tunnelAddress}/32`;
      if (ours && e.deleted) return { device: 'down' };
      return !ours && !e.deleted ? { device: 'changed' } : undefined;
    }
    case 'route': {
      const ours = want.routes.get(e.subject);
      if (!ours) return undefined;
      if (Number(wordAfter(e.line, ' metric ') ?? 0) !== routeMetric(ours)) {
        // Another route to the same place, at another priority (one at a lower metric would take
        // the traffic): on a device of ours or with our protocol it is ours to remove, which the
        // route manager's full sync does; anyone else's is left alone.
        const owned = e.dev === VXLAN_DEVICE || e.dev === ours.dev || /\sproto 80\b/.test(e.line);
        return !e.deleted && owned ? { resync: 'routes' } : undefined;
      }
      if (e.deleted) return e.dev === ours.dev ? { target: 'route', key: e.subject } : undefined;
      const via = wordAfter(e.line, ' via ');
      return e.dev !== ours.dev || via !== ours.via ? { target: 'route', key: e.subject } : undefined;
    }
    case 'neigh': {
      if (e.dev !== VXLAN_DEVICE) return undefined;
      const mac = want.neighbours.get(e.subject);
      if (mac === undefined) return undefined;
      const ok = !e.deleted && e.line.includes(' PERMANENT') && wordAfter(e.line, ' lladdr ') === mac;
      return ok ? undefined : { target: 'neigh', key: e.subject };
    }
    case 'fdb': {
      if (e.dev !== VXLAN_DEVICE) return undefined;
      const dst = want.fdb.get(e.subject);
      if (dst === undefined) return undefined;
      const ok = !e.deleted && (e.dst ?? wordAfter(e.line, ' dst ')) === dst;
      return ok ? undefined : { target: 'fdb', key: e.subject };
    }
  }
}

/** The repairs one burst of events asks for. */
export interface RepairPlan {
  /** Managers that re-read and rewrite all they own (after lost events). */
  scopes: Set<RepairScope>;
  /** vxlan.calico must be repaired (and, for a loss, every entry on it written back). */
  device?: DeviceLoss;
  /** The interface indexes those events named: a repair that already replaced them skips it. */
  deviceIndexes?: number[];
  routes: RouteSpec[];
  neighbours: NeighSpec[];
  fdb: FdbSpec[];
}

/** A burst's plan (undefined when nothing is ours), and whether vxlan.calico is lost after it. */
export interface BurstOutcome {
  plan?: RepairPlan;
  deviceLost: boolean;
}

/**
 * Gathers a burst's repairs into one plan (pure). `deviceLost`: vxlan.calico was deleted or set
 * down and has not been seen up since; entries on it are then implied by the device repair.
 */
export function planRepairs(
  events: readonly KernelEvent[],
  want: DesiredKernelState,
  deviceLost = false,
): BurstOutcome {
  const plan: RepairPlan = { scopes: new Set(), routes: [], neighbours: [], fdb: [] };
  const routes = new Set<string>();
  let lost = deviceLost;
  let any = false;
  for (const e of events) {
    if (e.object === 'link' && e.subject === VXLAN_DEVICE && !e.deleted && isUp(e.line)) lost = false;
    // Entries on a lost device wait for its repair (the bulk of a device's loss: not classified).
    if (lost && e.dev === VXLAN_DEVICE && e.object !== 'link' && e.object !== 'addr') continue;
    const r = classify(e, want);
    if (!r) continue;
    if ('device' in r) {
      any = true;
      // Only a link event says when the device is back, so only one makes it lost.
      if (r.device !== 'changed' && e.object === 'link') lost = true;
      plan.device = worseLoss(plan.device, r.device);
      if (e.ifindex !== undefined) plan.deviceIndexes = [...(plan.deviceIndexes ?? []), e.ifindex];
      continue;
    }
    if ('resync' in r) {
      any = true;
      plan.scopes.add(r.resync);
      continue;
    }
    if (r.target === 'neigh') {
      if (lost) continue;
      plan.neighbours.push({ ip: r.key as Ip4, mac: want.neighbours.get(r.key)! as Mac });
    } else if (r.target === 'fdb') {
      if (lost) continue;
      plan.fdb.push({ mac: r.key as Mac, dst: want.fdb.get(r.key)! as Ip4 });
    } else {
      const dsts = r.target === 'route' ? [r.key] : routesOnDevice(want, r.key);
      for (const d of dsts) {
        const route = want.routes.get(d)!;
        if (routes.has(d) || (lost && route.dev === VXLAN_DEVICE)) continue;
        routes.add(d);
        plan.routes.push(route);
      }
    }
    any = true;
  }
  // A device loss writes back every entry on the device, and its routes.
  if (plan.device === 'down' || plan.device === 'deleted') {
    plan.neighbours = [];
    plan.fdb = [];
    plan.routes = plan.routes.filter((r) => r.dev !== VXLAN_DEVICE);
  }
  return { plan: any ? plan : undefined, deviceLost: lost };
}

export interface RepairTarget {
  /** Asks for the repair; may say when it has been applied. */
  repair(plan: RepairPlan, why: string): Promise<void> | void;
}

export interface KernelWatchOptions {
  /** Gather events this long before classifying them: one burst, one repair. */
  debounceMs?: number;
}

/**
 * Deleting vxlan.calico flushes its FDB first (the driver's own dellink), and only then is the
 * device closed and unregistered: the FDB stream reports thousands of deletions tens of ms before
 * the link stream says why (and the ARP stream's flush, on its own stream, may overtake it too).
 * A burst of at least this many FDB or ARP deletions on the device and no link event waits up to
 * FLUSH_GRACE_MS more for one, rather than starting a rewrite against a device on its way out
 * (measured at 10,000 VTEPs: a 0.2–0.3 s bridge batch that the device's repair then queued
 * behind). Someone flushing the entries by hand is repaired that much later.
 */
const FLUSH_BULK = 64;
const FLUSH_GRACE_MS = 100;
/** How long an entry stream may go without an echo of the repair after a device loss. */
const FLUSH_MAX_MS = 3_000;
/** The longest the entry streams stay paused for a device repair (see pauseEntries). */
const PAUSE_MAX_MS = 10_000;

export class KernelWatch {
  private pending: KernelEvent[] = [];
  /** The pending burst has waited its grace for a link event once already. */
  private graced = false;
  /** The device repair the entry streams are paused for (see pauseEntries). */
  private pausedFor?: object;
  private stopped = false;
  /** What streams that lost events cover, re-read with the next burst's repairs. */
  private lostScopes = new Set<RepairScope>();
  /**
   * Entry streams (ARP, FDB) still delivering a lost device's flush: each stream is in the
   * kernel's order, so its deletions up to the first echo of the repair's writes are about the
   * device gone (they lag the link stream by up to a second at 10,000 VTEPs, after the repair has
   * brought the device up, and would each be rewritten for nothing). Until then, since when.
   */
  private flushing = new Map<'neigh' | 'fdb', number>();
  /** vxlan.calico deleted or down, not seen up since: entries on it wait for the device repair. */
  private deviceLost = false;
  private timer?: NodeJS.Timeout;
  /** Events seen and repairs asked for, for metrics and tests. */
  readonly stats = { events: 0, repairs: 0, lost: 0 };

  constructor(
    private readonly source: KernelEventSource,
    private readonly target: RepairTarget,
    private readonly desired: () => DesiredKernelState,
    private readonly opts: KernelWatchOptions = {},
  ) {}

  start(): void {
    this.source.start({
      onEvent: (e) => {
        this.stats.events++;
        this.pending.push(e);
        this.timer ??= setTimeout(() => this.flush(), this.opts.debounceMs ?? 20);
      },
      onLost: (why, stream) => {
        // What the stream covers is re-read and rewritten: the links stream the device and our
        // routes (and the device's state is unknown now), the others the device's entries;
        // iptables and ipsets have their own drift check. Along with the burst under way, so
        // that a device loss in it (the usual cause of an overflow) is repaired first.
        this.stats.lost++;
        if (stream === 'links') {
          this.deviceLost = false;
          this.lostScopes.add('routes');
        }
        this.lostScopes.add('vxlan');
        log.warn({ why, stream }, 'kernel events lost: re-reading what that stream covers');
        this.timer ??= setTimeout(() => this.flush(), FLUSH_GRACE_MS);
      },
    });
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.source.stop();
  }

  /**
   * The events, less ARP and FDB events on vxlan.calico from a stream still delivering a lost
   * device's flush (see `flushing`). A stream that shows no echo within FLUSH_MAX_MS counts
   * again, and what it covers is re-read (a deletion it dropped may have been real).
   */
  private withoutFlush(events: KernelEvent[]): KernelEvent[] {
    const want = this.desired();
    const now = performance.now();
    for (const [stream, since] of this.flushing) {
      if (now - since < FLUSH_MAX_MS) continue;
      this.flushing.delete(stream);
      this.lostScopes.add('vxlan');
    }
    return events.filter((e) => {
      if (e.object === 'link' || e.object === 'addr') {
        const r = e.subject === VXLAN_DEVICE || e.object === 'addr' ? classify(e, want) : undefined;
        // Down, the kernel flushes the ARP entries; deleted, the FDB entries too.
        if (r && 'device' in r && r.device !== 'changed') this.flushing.set('neigh', now);
        if (r && 'device' in r && r.device === 'deleted') this.flushing.set('fdb', now);
        return true;
      }
      if (
        (e.object !== 'neigh' && e.object !== 'fdb') ||
        e.dev !== VXLAN_DEVICE ||
        !this.flushing.has(e.object)
      )
        return true;
      if (!e.deleted && classify(e, want) === undefined) this.flushing.delete(e.object); // our echo
      return false;
    });
  }

  /** A bulk of FDB or ARP deletions on vxlan.calico and no word yet of the device itself. */
  private awaitsLinkEvent(): boolean {
    let deleted = 0;
    for (const e of this.pending) {
      if (e.object === 'link' && e.subject === VXLAN_DEVICE) return false;
      if ((e.object === 'fdb' || e.object === 'neigh') && e.deleted && e.dev === VXLAN_DEVICE) deleted++;
    }
    return deleted >= FLUSH_BULK;
  }

  private flush(): void {
    this.timer = undefined;
    if (!this.graced && this.awaitsLinkEvent()) {
      this.graced = true;
      this.timer = setTimeout(() => this.flush(), FLUSH_GRACE_MS);
      return;
    }
    this.graced = false;
    // Only the last word on each object counts: a route replaced (deleted then added) ends in the
    // state we want. Not so for vxlan.calico's own events: set down and up again, its entries and
    // routes are gone all the same, so every one of them is kept, in order.
    const last = new Map<string, KernelEvent>();
    let n = 0;
    for (const e of this.withoutFlush(this.pending)) {
      const id =
        e.object === 'link'
          ? `link ${e.subject} ${e.subject === VXLAN_DEVICE ? n++ : ''}`
          : `${e.object} ${e.subject} ${e.dev ?? ''}`;
      last.delete(id);
      last.set(id, e);
    }
    const events = [...last.values()];
    const seen = this.pending.length;
    this.pending = [];
    const outcome = planRepairs(events, this.desired(), this.deviceLost);
    this.deviceLost = outcome.deviceLost;
    const lost = this.lostScopes;
    this.lostScopes = new Set();
    const plan =
      lost.size > 0
        ? {
            ...(outcome.plan ?? { routes: [], neighbours: [], fdb: [] }),
            scopes: new Set([...(outcome.plan?.scopes ?? []), ...lost]),
          }
        : outcome.plan;
    if (!plan) return;
    this.stats.repairs++;
    const what = [
      ...(plan.device ? [`vxlan.calico ${plan.device}`] : []),
      ...plan.scopes,
      ...(plan.routes.length ? [`${plan.routes.length} routes`] : []),
      ...(plan.neighbours.length ? [`${plan.neighbours.length} ARP`] : []),
      ...(plan.fdb.length ? [`${plan.fdb.length} FDB`] : []),
    ];
    log.info({ repair: what, events: seen }, 'kernel changed under us: repairing');
    const applied = this.target.repair(plan, what.join(', '));
    if ((plan.device === 'deleted' || plan.device === 'down') && applied) this.pauseEntries(applied);
  }

  /**
   * A lost device's repair writes every ARP and FDB entry: their streams would bring back 20,000
   * echoes of our own writes at 10,000 VTEPs (and mostly overflow on the flush before them), all
   * parsed while the node waits for the writes. They are stopped until the repair is applied (at
   * most PAUSE_MAX_MS), then started again, and what they cover is read back once. Measured at
   * 10,000 VTEPs: the monitors and this process spent 0.3–0.5 s of CPU on those echoes.
   */
  private pauseEntries(applied: Promise<void>): void {
    if (!this.source.pause || !this.source.resume) return;
    this.source.pause(['arp', 'fdb']);
    const token = {};
    this.pausedFor = token;
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<void>((r) => {
      timer = setTimeout(r, PAUSE_MAX_MS);
    });
    void Promise.race([applied, limit])
      .catch(() => undefined)
      .then(() => {
        clearTimeout(timer);
        if (this.pausedFor !== token || this.stopped) return; // a later loss paused them again
        this.pausedFor = undefined;
        this.source.resume?.();
        this.flushing.clear();
        this.lostScopes.add('vxlan');
        this.timer ??= setTimeout(() => this.flush(), this.opts.debounceMs ?? 20);
      });
  }
}
