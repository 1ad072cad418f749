// Drives the managers: messages in (cheap), then one apply pass that writes to the kernel in
// Felix's order, in two lines side by side — ipsets then the iptables tables that name them; the
// VXLAN device, FDB/ARP, then routes — and then the deferred ipset deletes. Nothing is written before the first InSync (a partial view would drop traffic). A failed
// pass leaves the kernel as it was, marks the agent unhealthy and is retried with backoff; a
// periodic pass re-reads the kernel and repairs drift.
import { logger } from '../../lib/log.ts';
import type { FdbSpec, NeighSpec, RouteSpec } from '../../native/iproute.ts';
import type { DataplaneMessage } from '../calc/messages.ts';
import { IpSetManager, type IpSetWriter } from './ipsets.ts';
import {
  type FilterFaults,
  FilterTableManager,
  HostTablesManager,
  NatManager,
  type TableManager,
  type TableWriter,
} from './iptables.ts';
import type { DesiredKernelState, RepairPlan } from './kernel-watch.ts';
import type { Refusal } from './refusals.ts';
import { desiredKernelState, type LinkWriter, RouteManager, VxlanManager } from './vxlan.ts';

const log = logger('dataplane');

/** Drift checks may keep the agent busy this share of the time, on average... */
const DRIFT_SHARE = 0.02;
/** ...saving up to this much check time while checks are cheap. */
const DRIFT_CREDIT_CAP_MS = 5_000;
/**
 * Every ipset member is compared with the kernel once in this period (Felix's ipset refresh
 * interval), a slice at each drift check: the counts catch a flush within one check, the sweep a
 * member swapped for another at the same count.
 */
const IPSET_SWEEP_MS = 90_000;
/**
 * The full resync, a safety net: events and the drift checks find damage within seconds, and a
 * resync of a node holding 100,000 endpoints costs about 2 s of CPU.
 */
export const RESYNC_DEFAULT_MS = 900_000;
/**
 * The cheap drift check's period: a flushed ipset (no kernel event tells us) is repaired within
 * about this plus one write; chains and hooks on nf_tables are checked at once on an `nft monitor`
 * event.
 */
export const DRIFT_CHECK_DEFAULT_MS = 3_000;

export interface DataplaneDrivers {
  ipsets: IpSetWriter;
  iptables: TableWriter;
  links: LinkWriter;
}

export interface DataplaneOptions {
  /**
   * Re-read the kernel and repair drift this often (default 15 min; Felix refreshes every 90 s): a
   * resync of a node holding 100,000 endpoints reads and diffs everything, seconds of CPU, while
   * the drift checks and kernel events catch damage within seconds.
   */
  resyncIntervalMs?: number;
  /**
   * Check this often, cheaply, that nobody changed our ipsets, chains or hooks (ipset member
   * counts; rule hashes of a save compared with our last write, skipped on nft while `nft monitor`
   * saw no other process touch the table); what drifted is repaired at once. 0 turns it off.
   */
  driftCheckIntervalMs?: number;
  /**
   * Coalesce bursts: wait this long after a change before applying (default 1 ms: the messages of
   * one feed read arrive together, and a change that comes during a pass waits for the next).
   */
  applyDelayMs?: number;
  /** Test hooks (see FilterFaults). */
  faults?: FilterFaults;
}

export interface DataplaneStats {
  inSync: boolean;
  applies: number;
  failures: number;
  lastApplyMs: number;
  firstProgrammedAt?: number;
  lastError?: string;
  /** What the kernel refused in the last pass, by policy where there is one; all else is applied. */
  refused: Refusal[];
}

export class Dataplane {
  readonly ipsets: IpSetManager;
  readonly filter: FilterTableManager;
  readonly nat: NatManager;
  readonly hostTables: HostTablesManager;
  readonly vxlan: VxlanManager;
  readonly routes: RouteManager;
  private inSync = false;
  private running = false;
  private again = false;
  private timer?: NodeJS.Timeout;
  private resyncTimer?: NodeJS.Timeout;
  private driftTimer?: NodeJS.Timeout;
  private driftBaseMs = 0;
  /** Check time (ms) the drift checks may still spend: 2% of the time passing, up to a cap. */
  private driftCredit = DRIFT_CREDIT_CAP_MS;
  private driftCreditAt = performance.now();
  /** A drift check was asked for while one ran: the next follows at once. */
  private driftAgain = false;
  /** When the last drift check's ipset member sweep ran (its share is the time since, over IPSET_SWEEP_MS). */
  private sweptAt = performance.now();
  private checking = false;
  private readonly iptables: TableWriter;
  private backoffMs = 0;
  private stopped = false;
  private readonly waiters: (() => void)[] = [];
  /** Messages that came in during a pass, for the next one. */
  private readonly arrived: DataplaneMessage[] = [];
  readonly stats: DataplaneStats = { inSync: false, applies: 0, failures: 0, lastApplyMs: 0, refused: [] };
  private readonly links: LinkWriter;
  /** Objects kernel events reported damaged, rewritten at the start of the next pass. */
  private rewrites: { routes: RouteSpec[]; neighbours: NeighSpec[]; fdb: FdbSpec[] } = {
    routes: [],
    neighbours: [],
    fdb: [],
  };

  constructor(
    drivers: DataplaneDrivers,
    private readonly opts: DataplaneOptions = {},
  ) {
    this.links = drivers.links;
    this.iptables = drivers.iptables;
    this.ipsets = new IpSetManager(drivers.ipsets);
    // A cold start's ipset fill has slack when the filter table loads beside it: that load goes first.
    this.ipsets.lowerBulkPriority(drivers.iptables.stagesBesideSets === true);
    this.filter = new FilterTableManager(drivers.iptables, opts.faults);
    this.nat = new NatManager(drivers.iptables, this.ipsets);
    this.hostTables = new HostTablesManager(drivers.iptables, this.filter);

    this.vxlan = new VxlanManager(drivers.links, this.ipsets);
    this.routes = new RouteManager(drivers.links, this.vxlan);
    // Someone else changed a table (nft monitor): check now rather than at the next tick.
    drivers.iptables.onForeignChange?.(() => this.scheduleDriftCheck(50));
  }

  private get tableManagers(): TableManager[] {
    return [this.filter, this.nat, this.hostTables];
  }

  /** True once the first full apply after in-sync has succeeded and no apply has failed since. */
  get healthy(): boolean {
    return this.stats.firstProgrammedAt !== undefined && this.backoffMs === 0;
  }

  onMessages(msgs: readonly DataplaneMessage[]): void {
    // During a pass the managers must keep the state the pass began with: a policy arriving after
    // the ipsets were written would otherwise be rendered against a set not yet in the kernel. It
    // waits for the next pass (scheduled at once), so nothing is lost or reordered.
    if (this.running) this.arrived.push(...msgs);
    else this.deliver(msgs);
    if (msgs.length > 0) this.schedule();
  }

  private deliver(msgs: readonly DataplaneMessage[]): void {
    for (const m of msgs) {
      if (m.kind === 'InSync') {
        if (!this.inSync) log.info('in sync: programming the dataplane');
        this.inSync = true;
        this.stats.inSync = true;
        continue;
      }
      this.ipsets.onUpdate(m);
      this.filter.onUpdate(m);
      this.nat.onUpdate(m);
      this.hostTables.onUpdate(m);
      this.vxlan.onUpdate(m);
      this.routes.onUpdate(m);
    }
  }

  start(): void {
    const every = this.opts.resyncIntervalMs ?? RESYNC_DEFAULT_MS;
    this.resyncTimer = setInterval(() => this.resync(), every);
    this.resyncTimer.unref();
    this.driftBaseMs = this.opts.driftCheckIntervalMs ?? DRIFT_CHECK_DEFAULT_MS;
    this.scheduleDriftCheck(this.driftBaseMs);
  }

  /** The next drift check. One timer at a time: a check asked for sooner replaces the one due. */
  private scheduleDriftCheck(delay: number): void {
    if (this.stopped || this.driftBaseMs <= 0) return;
    clearTimeout(this.driftTimer);
    this.driftTimer = setTimeout(() => void this.runDriftCheck(), delay);
    this.driftTimer.unref();
  }

  private async runDriftCheck(): Promise<void> {
    if (this.checking) {
      this.driftAgain = true;
      return;
    }
    const started = performance.now();
    await this.checkDrift().catch(() => undefined);
    const now = performance.now();
    // A budget, not a per-check stretch: the one save that starts an nft monitor's watch (seconds
    // at 25,000 rules) must not push a cheap count check of the ipsets out by minutes.
    this.driftCredit = Math.min(
      DRIFT_CREDIT_CAP_MS,
      this.driftCredit + DRIFT_SHARE * (now - this.driftCreditAt) - (now - started),
    );
    this.driftCreditAt = now;
    const owed = this.driftCredit < 0 ? -this.driftCredit / DRIFT_SHARE : 0;
    const next = this.driftAgain ? 50 : Math.max(this.driftBaseMs, owed);
    this.driftAgain = false;
    this.scheduleDriftCheck(next);
  }

  /**
   * The cheap drift check: what our last writes left, compared with the kernel without a render or
   * a member listing. Managers whose state drifted re-read and rewrite on a pass scheduled now.
   * Skipped while a pass runs (the pass writes and the check would see it half done).
   */
  async checkDrift(): Promise<string[]> {
    if (this.running || this.checking || this.stopped || this.stats.firstProgrammedAt === undefined)
      return [];
    this.checking = true;
    try {
      const now = performance.now();
      const sweepShare = Math.min(1, (now - this.sweptAt) / IPSET_SWEEP_MS);
      this.sweptAt = now;
      const drifted: string[] = (await this.ipsets.checkDrift({ sweepShare })).map((s) => `ipset ${s}`);
      const managers = this.tableManagers;
      const tables = (await this.iptables.driftedTables?.(managers.flatMap((m) => m.tables))) ?? [];
      for (const m of managers) if (m.tables.some((t) => tables.includes(t))) m.drifted();
      drifted.push(...tables.map((t) => `${t} table`));
      if (drifted.length > 0) {
        log.warn({ drifted }, 'kernel state changed behind our back; repairing');
        this.schedule(0);
      }
      return drifted;
    } finally {
      this.checking = false;
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.resyncTimer);
    clearTimeout(this.driftTimer);
    this.iptables.close?.();
    this.ipsets.close();
  }

  /** Mark everything dirty so the next pass re-reads the kernel and repairs any drift. */
  resync(): void {
    this.ipsets.markDirty();
    this.filter.markDirty();
    this.nat.markDirty();
    this.hostTables.markDirty();
    this.vxlan.markDirty();
    this.routes.markDirty();
    this.schedule();
  }

  /**
   * Someone changed what these managers own (kernel events): rewrite the objects named, or have a
   * manager re-read and rewrite all it owns, now rather than at the next periodic resync. Resolves
   * once a pass with the repair has been applied.
   */
  repair(plan: RepairPlan, _why: string): Promise<void> {
    if (plan.device) this.vxlan.markLost(plan.device, plan.deviceIndexes);
    if (plan.scopes.has('vxlan')) this.vxlan.markDirty();
    if (plan.scopes.has('vxlan') || plan.scopes.has('routes')) this.routes.markDirty();
    const r = this.rewrites;
    r.routes.push(...plan.routes);
    r.neighbours.push(...plan.neighbours);
    r.fdb.push(...plan.fdb);
    this.schedule(0);
    return this.whenApplied();
  }

  /** What the VXLAN and route managers want in the kernel, for the kernel watch's classifier. */
  desiredKernelState(): DesiredKernelState {
    return desiredKernelState(this.routes, this.vxlan);
  }

  /** Resolves after the next complete, successful apply pass. */
  whenApplied(): Promise<void> {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.schedule();
    });
  }

  private schedule(delay = this.opts.applyDelayMs ?? 1): void {
    if (!this.inSync || this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        void this.applyPass();
      },
      Math.max(delay, this.backoffMs),
    );
  }

  private async applyRewrites(): Promise<void> {
    const r = this.rewrites;
    if (r.routes.length + r.neighbours.length + r.fdb.length === 0) return;
    this.rewrites = { routes: [], neighbours: [], fdb: [] };
    const started = performance.now();
    await this.links.rewrite(r);
    log.debug(
      {
        routes: r.routes.length,
        arp: r.neighbours.length,
        fdb: r.fdb.length,
        ms: performance.now() - started,
      },
      'repaired objects reported by kernel events',
    );
  }

  /**
   * ipsets, then the tables. The tables a manager must read first (a start, a resync) are read in
   * one save while the ipset restore runs: before our writes fill them, so the read is cheap.
   */
  private async applyTables(handedOver: () => void): Promise<void> {
    try {
      await this.writeTables(handedOver);
    } finally {
      handedOver();
    }
  }

  /** `handedOver`: called once the ipset write is in the tool's hands (or needs none). */
  private async writeTables(handedOver: () => void): Promise<void> {
    const managers = this.tableManagers.filter((m) => m.tablesToRead().length > 0);
    const toRead = managers.flatMap((m) => m.tablesToRead());
    const reading =
      toRead.length > 0
        ? this.iptables.readTables?.(toRead).then(() => {
            for (const m of managers) m.primed();
          })
        : undefined;
    // Members added to or deleted from sets that exist as last written (one endpoint's change):
    // no rule can fail to load for want of them, so the tables are written alongside rather than
    // one tool run later. A created set, or one of a new type, still goes first (Felix's order).
    const alongside = this.ipsets.membersOnly();
    let launched: () => void = () => {};
    const writing = new Promise<void>((resolve) => {
      launched = resolve;
    });
    // A big ipset write (a cold start) creates its sets first and says so: from then on the new
    // chains naming them can load while their members go in (staged), unlinked until the tables'
    // own write below, so no packet meets a set still filling.
    let staging: Promise<void> | undefined;
    const stage = async () => {
      const [read] = await Promise.allSettled([reading]);
      if (read.status !== 'fulfilled') return;
      for (const m of this.tableManagers)
        await m
          .stage()
          .catch((e: Error) => log.debug({ err: e.message }, 'stage failed; written whole below'));
    };
    const applying = this.ipsets.apply(launched, () => {
      if (!alongside) staging ??= stage();
    });
    // Otherwise render and plan the tables while the ipset restore runs (at scale a second or
    // more), not after it: once the restore is under way, or the sets need no write, and the read
    // is in.
    await Promise.race([writing, applying.catch(() => undefined)]);
    handedOver();
    const [read] = await Promise.allSettled([reading]);
    if (staging === undefined) for (const m of this.tableManagers) m.prepare();
    const tables = alongside && read.status === 'fulfilled' ? this.applyTableManagers() : undefined;
    const [sets, written] = await Promise.allSettled([applying, tables, reading, staging]);
    await reading;
    if (sets.status === 'rejected') throw sets.reason;
    if (written.status === 'rejected') throw written.reason;
    if (tables === undefined) await this.applyTableManagers();
  }

  private async applyTableManagers(): Promise<void> {
    for (const m of this.tableManagers) await m.apply();
  }

  private async applyLinks(): Promise<void> {
    await this.applyRewrites();
    const vxlan = await this.vxlan.apply();
    if (vxlan === 'fresh') this.routes.deviceWritten();
    else if (vxlan) this.routes.markDirty();
    await this.routes.apply();
  }

  /** Refused ipsets are named by the policies that use them, one entry per policy. */
  private refusals(): Refusal[] {
    const sets = this.ipsets.refused.flatMap((r) => {
      const users = this.filter.policiesUsingSet(r.object);
      return users.length > 0 ? users.map((policy) => ({ ...r, policy })) : [r];
    });
    return [...this.filter.refused, ...sets];
  }

  private async applyPass(): Promise<void> {
    this.deliver(this.arrived.splice(0));
    this.running = true;
    this.again = false;
    const started = performance.now();
    try {
      // Two independent lines of writes, run side by side: ipsets before the iptables rules that
      // name them (Felix's order), and the VXLAN device, FDB, ARP and routes, which no rule needs.
      // The links line starts once the ipset restore has all its input (a cold start: 15 MiB
      // made on this thread): its own work has slack, the ipset restore is what the tables wait for.
      let handed: () => void = () => {};
      const handedOver = new Promise<void>((resolve) => {
        handed = resolve;
      });
      const results = await Promise.allSettled([
        this.applyTables(handed),
        handedOver.then(() => this.applyLinks()),
      ]);
      for (const r of results) if (r.status === 'rejected') throw r.reason;
      await this.ipsets.cleanup();
      this.stats.refused = this.refusals();
      const ms = performance.now() - started;
      this.stats.applies++;
      this.stats.lastApplyMs = ms;
      this.stats.lastError = undefined;
      if (this.stats.firstProgrammedAt === undefined) {
        this.stats.firstProgrammedAt = Date.now();
        this.links.lowerBulkPriority?.(false);
        this.ipsets.lowerBulkPriority(false);
        log.info({ ms: Math.round(ms) }, 'dataplane programmed');
      }
      log.debug({ ms }, 'apply pass done');
      this.backoffMs = 0;
      if (!this.again) for (const w of this.waiters.splice(0)) w();
    } catch (e) {
      this.stats.failures++;
      this.stats.lastError = (e as Error).message;
      this.backoffMs = Math.min(Math.max(this.backoffMs * 2, 250), 10_000);
      log.error(
        { err: (e as Error).message, retryInMs: this.backoffMs },
        'dataplane apply failed; kernel left as it was, retrying',
      );
      // Whatever half-applied is re-diffed from the kernel on the retry.
      this.ipsets.markDirty();
      this.filter.markDirty();
      this.nat.markDirty();
      this.hostTables.markDirty();
      this.vxlan.markDirty();
      this.routes.markDirty();
      this.again = true;
    } finally {
      this.running = false;
      if (this.again) this.schedule();
    }
  }
}
