// Who changed an nf_tables table, from `nft monitor`: every committed transaction in the namespace
// is printed as its changes ("add rule ip filter cali-tw-x ...", "delete rule ip filter FORWARD
// handle 7") followed by "# new generation N by process PID (COMM)". A transaction by a process
// we did not start that touches our chains or the built-in chains our hooks sit in marks its
// tables (kube-proxy rewriting its KUBE-* chains does not); a drift check of an unmarked table reads
// nothing.
//
// Trust is earned: until the monitor has run a moment (its subscription is not instantaneous), after
// it exits (restarted a second later) or after a line it cannot place, every table counts as marked,
// so a check falls back to reading. Our own restores are told apart by their pid, so a burst of our
// writes (a cold start, a label change) costs the check nothing.
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { logger } from '../lib/log.ts';

const log = logger('nft-monitor');

/** How the iptables driver learns whether anyone else changed a table. */
export interface TableWatch {
  /** Nobody but us changed this table since it was last read (false whenever unsure). */
  quiet(table: string): boolean;
  /** A process of ours about to change tables (a restore): its transactions are ours. */
  ours(pid: number, table: string): void;
  /** The table is about to be read: what changed before is seen by that read. */
  reading(table: string): void;
  /** Called when another process changes one of the tables (to check it now rather than later). */
  onForeignChange(fn: (tables: string[]) => void): void;
  start(): void;
  stop(): void;
}

const TABLES = ['filter', 'nat', 'mangle', 'raw'];
/** "add rule ip filter CHAIN ...", "delete chain ip nat X", "flush table ip filter", "add table ip raw". */
const CHANGE = /^(?:add|insert|replace|delete|flush|destroy|new) (\w+) (\w+) (\S+)(?: (\S+))?/;
/** The chains a change must touch to concern us: ours, and the built-ins our hooks sit in. */
const OURS_OR_BUILTIN = /^(?:cali-|INPUT$|FORWARD$|OUTPUT$|PREROUTING$|POSTROUTING$)/;
const GENERATION = /^# new generation \d+ by process (\d+)/;
/** The subscription needs a moment after the process starts. */
const SETTLE_MS = 1000;
const RESTART_MS = 1000;
/** A monitor that keeps dying at once (no `nft` installed) is restarted ever more slowly, up to this. */
const RESTART_MAX_MS = 60_000;
/** How long a pid of ours is remembered (a restore runs well within this). */
const OURS_MS = 60_000;
/** How long a transaction by an unknown pid waits for that pid to be reported as ours. */
const PID_GRACE_MS = 100;

export class NftMonitor implements TableWatch {
  private proc?: ChildProcess;
  private trustedFrom = Number.POSITIVE_INFINITY;
  private stopped = false;
  private started = false;
  private restartTimer?: NodeJS.Timeout;
  /** Restarts since the monitor last ran for a while. */
  private failures = 0;
  /** Tables another process changed since they were last read. */
  private readonly marked = new Set<string>(TABLES);
  /** Tables the transaction being printed touches (until its generation line). */
  private readonly touching = new Set<string>();
  private readonly ourPids = new Map<number, number>();
  private readonly listeners: ((tables: string[]) => void)[] = [];
  /** Lines read (tests and the bench: the monitor is alive and reading). */
  lines = 0;

  constructor(private readonly opts: { netns?: string } = {}) {}

  quiet(table: string): boolean {
    return performance.now() >= this.trustedFrom && !this.marked.has(table);
  }

  ours(pid: number): void {
    const now = performance.now();
    this.ourPids.set(pid, now + OURS_MS);
    if (this.ourPids.size > 256)
      for (const [p, until] of this.ourPids) if (until < now) this.ourPids.delete(p);
  }

  reading(table: string): void {
    this.marked.delete(table);
  }

  onForeignChange(fn: (tables: string[]) => void): void {
    this.listeners.push(fn);
  }

  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.spawn();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    this.distrust();
    const p = this.proc;
    this.proc = undefined;
    if (p?.pid !== undefined && p.exitCode === null) p.kill('SIGTERM');
  }

  private distrust(): void {
    this.trustedFrom = Number.POSITIVE_INFINITY;
    for (const t of TABLES) this.marked.add(t);
  }

  private spawn(): void {
    // nft's stdout is block-buffered into a pipe: events would arrive kilobytes late.
    const monitor = ['stdbuf', '-oL', 'nft', 'monitor'];
    const [cmd, args] = this.opts.netns
      ? ['ip', ['netns', 'exec', this.opts.netns, ...monitor]]
      : [monitor[0] as string, monitor.slice(1)];
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const startedAt = performance.now();
    this.proc = proc;
    proc.unref();
    this.distrust();
    this.trustedFrom = performance.now() + SETTLE_MS;
    createInterface({ input: proc.stdout }).on('line', (line) => this.onLine(line));
    proc.stderr.on('data', (d: Buffer) => {
      // "netlink: Error: ... No buffer space" and the like: events were lost.
      log.warn({ netns: this.opts.netns, err: d.toString().trim().slice(0, 300) }, 'nft monitor complained');
      this.distrust();
      this.trustedFrom = performance.now() + SETTLE_MS;
    });
    proc.on('error', (e) => log.warn({ err: e.message }, 'nft monitor could not run; drift checks read'));
    proc.on('exit', (code) => {
      if (this.proc !== proc) return;
      this.proc = undefined;
      this.distrust();
      if (this.stopped) return;
      this.failures = performance.now() - startedAt > 10 * SETTLE_MS ? 0 : this.failures + 1;
      const delay = Math.min(RESTART_MS * 2 ** this.failures, RESTART_MAX_MS);
      log.warn(
        { netns: this.opts.netns, code, restartInMs: delay },
        'nft monitor exited (drift checks read meanwhile); restarting',
      );
      this.restartTimer = setTimeout(() => this.spawn(), delay);
      this.restartTimer.unref();
    });
  }

  private onLine(line: string): void {
    this.lines++;
    if (line === '') return;
    const gen = GENERATION.exec(line);
    if (gen !== null) {
      const pid = Number(gen[1]);
      const tables = [...this.touching];
      this.touching.clear();
      if (tables.length === 0 || this.ourPids.has(pid)) return;
      // Our launcher reports a restore's pid over another pipe: give it a moment to arrive.
      setTimeout(() => {
        if (this.ourPids.has(pid)) return;
        for (const t of tables) this.marked.add(t);
        for (const fn of this.listeners) fn(tables);
      }, PID_GRACE_MS).unref();
      return;
    }
    const m = CHANGE.exec(line);
    if (m === null) {
      // A line we cannot place (a continuation of a multi-line element, a new format): unsure.
      if (!line.startsWith(' ') && !line.startsWith('\t') && !line.startsWith('}')) {
        for (const t of TABLES) this.touching.add(t);
      }
      return;
    }
    // iptables-nft keeps its tables in the ip family under their iptables names. Changes to other
    // chains (kube-proxy's KUBE-*, resyncing often on a busy node) are no drift of ours.
    const [, object, family, table = '', chain = ''] = m;
    if (family !== 'ip' || !TABLES.includes(table)) return;
    if (object === 'table' || ((object === 'rule' || object === 'chain') && OURS_OR_BUILTIN.test(chain)))
      this.touching.add(table);
  }
}
