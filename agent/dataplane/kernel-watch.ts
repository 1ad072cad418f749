// Turns kernel events into repairs: someone deleted or changed one of our routes, FDB or ARP
// entries, or vxlan.calico itself, and the affected manager re-reads and rewrites within a
// debounce; a workload interface appeared (the CNI race: the endpoint arrived before its veth), and
// its route is written at once. Our own writes come back as events too; they match what we want,
// so the classifier ignores them and no write loop starts.
import { logger } from '../../lib/log.ts';
import type { KernelEvent, KernelEventSource } from '../../native/kernel-events.ts';
import { VXLAN_DEVICE } from './vxlan.ts';

const log = logger('kernel-watch');

export type RepairScope = 'vxlan' | 'routes';

/** What this node wants in the kernel, for telling a foreign change from our own. */
export interface DesiredKernelState {
  /** Route destination → the device (and next hop) we program for it. */
  routes: ReadonlyMap<string, { dev: string; via?: string }>;
  /** ARP on vxlan.calico: tunnel IP → VTEP MAC. */
  neighbours: ReadonlyMap<string, string>;
  /** FDB on vxlan.calico: VTEP MAC → remote node IP. */
  fdb: ReadonlyMap<string, string>;
  /** The interfaces our workload routes use. */
  workloadInterfaces: ReadonlySet<string>;
}

/** Which manager must repair after this event, if any (pure). */
export function classify(e: KernelEvent, want: DesiredKernelState): RepairScope | undefined {
  switch (e.object) {
    case 'link': {
      if (e.subject === VXLAN_DEVICE) {
        // Deleted, or set down: recreate / bring up (ensureVxlan reads it back).
        return e.deleted || !/<[^>]*\bUP\b/.test(e.line) ? 'vxlan' : undefined;
      }
      // A workload interface appeared or came up: its route can be written now.
      if (!e.deleted && want.workloadInterfaces.has(e.subject) && /<[^>]*\bUP\b/.test(e.line))
        return 'routes';
      return undefined;
    }
    case 'route': {
      const ours = want.routes.get(e.subject);
      if (!ours) return undefined;
      if (e.deleted) return e.dev === ours.dev ? 'routes' : undefined;
      const via = /\svia (\S+)/.exec(e.line)?.[1];
      return e.dev !== ours.dev || via !== ours.via ? 'routes' : undefined;
    }
    case 'neigh': {
      if (e.dev !== VXLAN_DEVICE) return undefined;
      const mac = want.neighbours.get(e.subject);
      if (mac === undefined) return undefined;
      if (e.deleted || !/\bPERMANENT\b/.test(e.line)) return 'vxlan';
      return /\slladdr (\S+)/.exec(e.line)?.[1] !== mac ? 'vxlan' : undefined;
    }
    case 'fdb': {
      if (e.dev !== VXLAN_DEVICE) return undefined;
      const dst = want.fdb.get(e.subject);
      if (dst === undefined) return undefined;
      if (e.deleted) return 'vxlan';
      return /\sdst (\S+)/.exec(e.line)?.[1] !== dst ? 'vxlan' : undefined;
    }
  }
}

export interface RepairTarget {
  /** Re-read and rewrite what these managers own, soon. */
  repair(scopes: ReadonlySet<RepairScope>, why: string): void;
  /** Events were lost: re-read everything. */
  resync(): void;
}

export interface KernelWatchOptions {
  /** Gather events this long before classifying them: one burst, one repair. */
  debounceMs?: number;
}

export class KernelWatch {
  private pending: KernelEvent[] = [];
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
      onLost: (why) => {
        this.stats.lost++;
        log.warn({ why }, 'kernel events lost: full resync');
        this.target.resync();
      },
    });
  }

  stop(): void {
    clearTimeout(this.timer);
    this.source.stop();
  }

  private flush(): void {
    this.timer = undefined;
    // Only the last word on each object counts: our own `link add` + `link set up`, or a route
    // replaced (deleted then added), end in the state we want.
    const last = new Map<string, KernelEvent>();
    for (const e of this.pending) {
      const id = `${e.object} ${e.subject} ${e.object === 'link' ? '' : (e.dev ?? '')}`;
      last.delete(id);
      last.set(id, e);
    }
    const events = [...last.values()];
    const seen = this.pending.length;
    this.pending = [];
    const want = this.desired();
    const scopes = new Set<RepairScope>();
    let example: KernelEvent | undefined;
    for (const e of events) {
      const s = classify(e, want);
      if (s && !scopes.has(s)) {
        scopes.add(s);
        example ??= e;
      }
    }
    if (scopes.size === 0 || !example) return;
    this.stats.repairs++;
    const why = `${example.deleted ? 'deleted ' : ''}${example.object} ${example.subject}${example.dev ? ` dev ${example.dev}` : ''}`;
    log.info({ scopes: [...scopes], events: seen, why }, 'kernel changed under us: repairing');
    this.target.repair(scopes, why);
  }
}
