// Turns kernel events into repairs: someone deleted or changed one of our routes, FDB or ARP
// entries, or vxlan.calico itself, and the affected manager re-reads and rewrites within a
// debounce; a workload interface appeared (the CNI race: the endpoint arrived before its veth), and
// its route is written at once. Our own writes come back as events too; they match what we want,
// so the classifier ignores them and no write loop starts.
import { logger } from '../../lib/log.ts';
import type { Ip4, Mac } from '../../model/net.ts';
import type { FdbSpec, NeighSpec, RouteSpec } from '../../native/iproute.ts';
import type { KernelEvent, KernelEventSource } from '../../native/kernel-events.ts';
import { VXLAN_DEVICE } from './vxlan.ts';

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
}

/**
 * What to do about one event: a manager re-reads and rewrites all it owns (`scope`), or just this
 * object is written again (`target`), which needs no read-back: the event said what went wrong.
 */
export type Repair =
  | { scope: RepairScope }
  | { target: 'route' | 'neigh' | 'fdb' | 'interface'; key: string };

/** Which repair this event asks for, if any (pure). */
export function classify(e: KernelEvent, want: DesiredKernelState): Repair | undefined {
  switch (e.object) {
    case 'link': {
      if (e.subject === VXLAN_DEVICE) {
        // Deleted, or set down: recreate / bring up (ensureVxlan reads it back).
        return e.deleted || !/<[^>]*\bUP\b/.test(e.line) ? { scope: 'vxlan' } : undefined;
      }
      // A workload interface appeared or came up: its routes can be written now (the CNI race).
      if (!e.deleted && want.workloadInterfaces.has(e.subject) && /<[^>]*\bUP\b/.test(e.line)) {
        return { target: 'interface', key: e.subject };
      }
      return undefined;
    }
    case 'route': {
      const ours = want.routes.get(e.subject);
      if (!ours) return undefined;
      if (e.deleted) return e.dev === ours.dev ? { target: 'route', key: e.subject } : undefined;
      const via = /\svia (\S+)/.exec(e.line)?.[1];
      return e.dev !== ours.dev || via !== ours.via ? { target: 'route', key: e.subject } : undefined;
    }
    case 'neigh': {
      if (e.dev !== VXLAN_DEVICE) return undefined;
      const mac = want.neighbours.get(e.subject);
      if (mac === undefined) return undefined;
      const ok = !e.deleted && /\bPERMANENT\b/.test(e.line) && /\slladdr (\S+)/.exec(e.line)?.[1] === mac;
      return ok ? undefined : { target: 'neigh', key: e.subject };
    }
    case 'fdb': {
      if (e.dev !== VXLAN_DEVICE) return undefined;
      const dst = want.fdb.get(e.subject);
      if (dst === undefined) return undefined;
      const ok = !e.deleted && /\sdst (\S+)/.exec(e.line)?.[1] === dst;
      return ok ? undefined : { target: 'fdb', key: e.subject };
    }
  }
}

/** The repairs one burst of events asks for. */
export interface RepairPlan {
  scopes: Set<RepairScope>;
  routes: RouteSpec[];
  neighbours: NeighSpec[];
  fdb: FdbSpec[];
}

/** Gathers a burst's repairs into one plan (pure); undefined when nothing is ours. */
export function planRepairs(
  events: readonly KernelEvent[],
  want: DesiredKernelState,
): RepairPlan | undefined {
  const plan: RepairPlan = { scopes: new Set(), routes: [], neighbours: [], fdb: [] };
  const routes = new Set<string>();
  let any = false;
  for (const e of events) {
    const r = classify(e, want);
    if (!r) continue;
    any = true;
    if ('scope' in r) {
      plan.scopes.add(r.scope);
    } else if (r.target === 'route' || r.target === 'interface') {
      const dsts =
        r.target === 'route'
          ? [r.key]
          : [...want.routes.values()].filter((x) => x.dev === r.key).map((x) => x.dst as string);
      for (const d of dsts) {
        if (routes.has(d)) continue;
        routes.add(d);
        plan.routes.push(want.routes.get(d)!);
      }
    } else if (r.target === 'neigh') {
      plan.neighbours.push({ ip: r.key as Ip4, mac: want.neighbours.get(r.key)! as Mac });
    } else {
      plan.fdb.push({ mac: r.key as Mac, dst: want.fdb.get(r.key)! as Ip4 });
    }
  }
  // A device check rewrites its FDB and ARP entries anyway (and the route sync every route).
  if (plan.scopes.has('vxlan')) {
    plan.neighbours = [];
    plan.fdb = [];
    plan.scopes.add('routes');
  }
  if (plan.scopes.has('routes')) plan.routes = [];
  return any ? plan : undefined;
}

export interface RepairTarget {
  repair(plan: RepairPlan, why: string): void;
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
    const plan = planRepairs(events, this.desired());
    if (!plan) return;
    this.stats.repairs++;
    const what = [
      ...plan.scopes,
      ...(plan.routes.length ? [`${plan.routes.length} routes`] : []),
      ...(plan.neighbours.length ? [`${plan.neighbours.length} ARP`] : []),
      ...(plan.fdb.length ? [`${plan.fdb.length} FDB`] : []),
    ];
    log.info({ repair: what, events: seen }, 'kernel changed under us: repairing');
    this.target.repair(plan, what.join(', '));
  }
}
