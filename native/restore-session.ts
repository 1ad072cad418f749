// One `iptables-nft-restore --noflush` (or `ipset restore`) kept running and fed one COMMIT block
// per write: the tool commits each block as it reads its COMMIT, so a write costs the kernel's
// transaction and not a process start, an `ip netns exec` and the tool's cache fetch as well
// (measured at 100,000 endpoints under load: one endpoint's two chains, 418 rules, 79 ms p50
// through a kept process against 121 ms for a process per write).
//
// The tool says nothing when a block lands; it says why and exits when one is refused. So a block
// has landed once the tool has read all of it (/proc/PID/io) and sleeps again in a read of its
// standard input (/proc/PID/stat and /proc/PID/syscall): it reads and handles lines in order, and
// sleeps in that read only with nothing left to handle. A refused block (the tool names the line
// and exits; iptables-restore commits none of the block, ipset restore the lines before it) and
// anything unsure (a /proc we cannot read, a write not handled in time) end the session; the
// caller then writes the block the usual way, one process, whose answer names the refused line,
// or re-reads the kernel; a later write starts a new session.
import { readFileSync } from 'node:fs';
import { logger } from '../lib/log.ts';
import { noteRun } from './exec.ts';
import { type FedTool, type LaunchResult, launchFed } from './launcher.ts';

const log = logger('restore-session');

/** A block not handled by then ends the session (the caller writes it again the usual way). */
const BLOCK_TIMEOUT_MS = 10_000;

export type SessionOutcome =
  /** The block was committed. */
  | { result: 'landed' }
  /** Not written (no session to be had, or one busy): write it the usual way. */
  | { result: 'not-sent'; why: string }
  /** The tool refused it (named a line, exited): nothing of it landed; write it the usual way. */
  | { result: 'refused'; why: string }
  /** Unknown whether it landed (the tool died otherwise, or took too long): read the table again. */
  | { result: 'unsure'; why: string };

/** How iptables-restore names the line it refused (as refusedLine in iptables.ts reads it). */
export const IPTABLES_REFUSAL = /Error occurred at line: \d+|line \d+(?::| failed)/;

export class RestoreSession {
  private tool: FedTool | undefined;
  private starting: Promise<FedTool | undefined> | undefined;
  /** Why sessions are off for good (no /proc to watch, the tool cannot start). */
  private off: string | undefined;
  private busy = false;

  constructor(
    /** The restore tool and its arguments (iptables-nft-restore --noflush). */
    private readonly file: string,
    private readonly args: readonly string[],
    private readonly netns: string | undefined,
    /** How the tool says it refused a line (it then exits): anything else is unsure. */
    private readonly refusal: RegExp = IPTABLES_REFUSAL,
  ) {}

  /** The running tool's pid, if any (for the nft monitor: its transactions are ours). */
  get pid(): number | undefined {
    return this.tool?.pid;
  }

  /** Write one block (a whole `*table ... COMMIT` text). One at a time. */
  async write(block: string, onPid?: (pid: number) => void): Promise<SessionOutcome> {
    if (this.off !== undefined) return { result: 'not-sent', why: this.off };
    if (this.busy) return { result: 'not-sent', why: 'session busy' };
    this.busy = true;
    const started = performance.now();
    try {
      const tool = await this.ensure();
      if (tool === undefined) return { result: 'not-sent', why: this.off ?? 'session could not start' };
      onPid?.(tool.pid);
      const exited = tool.result.then((r) => r);
      // What it will have read once it has the whole block (it reads nothing else meanwhile but
      // the odd /etc file, which only adds): without this, a wake-up the kernel has queued but
      // not yet done shows the tool still asleep in its read, as if it were done.
      const readBefore = readChars(tool.pid);
      if (readBefore === undefined)
        return { result: 'not-sent', why: 'restore session: /proc/PID/io unreadable' };
      const target = readBefore + Buffer.byteLength(block);
      const written = new Promise<boolean>((resolve) => tool.input.write(block, (e) => resolve(!e)));
      let outcome: boolean | LaunchResult = await Promise.race([
        written.then((ok) => (ok ? this.handled(tool.pid, target) : false)),
        exited.then((r: LaunchResult) => r),
      ]);
      // Gone from /proc before the helper told us how it ended: wait a moment for that.
      if (outcome === false)
        outcome = await Promise.race([exited, new Promise<false>((r) => setTimeout(() => r(false), 2_000))]);
      if (outcome === true) {
        // A tool run as the bench's breakdown counts them: named apart from a started one.
        noteRun({
          file: `${this.file} (kept)`,
          args: this.args,
          netns: this.netns,
          inputBytes: block.length,
          startedAt: started,
          ms: performance.now() - started,
          exitCode: 0,
        });
        return { result: 'landed' };
      }
      this.end();
      if (typeof outcome === 'object') {
        const said = (outcome.stderr || outcome.failure || '').trim().slice(0, 300);
        const why = `session tool exited (${outcome.exitCode}): ${said}`;
        log.debug({ netns: this.netns, why }, 'restore session ended');
        return { result: outcome.exitCode > 0 && this.refusal.test(said) ? 'refused' : 'unsure', why };
      }
      log.warn({ netns: this.netns }, 'restore session: a block not seen handled; ended');
      return { result: 'unsure', why: 'block not seen handled in time' };
    } finally {
      this.busy = false;
    }
  }

  /** End the session (its tool exits at the end of its input). */
  end(): void {
    const tool = this.tool;
    this.tool = undefined;
    tool?.input.end();
  }

  private async ensure(): Promise<FedTool | undefined> {
    if (this.tool !== undefined) return this.tool;
    this.starting ??= (async () => {
      const args = this.netns ? ['netns', 'exec', this.netns, this.file, ...this.args] : [...this.args];
      const started = await launchFed({
        file: this.netns ? 'ip' : this.file,
        args,
        // The launcher's timer for the tool; the session is ended long before.
        timeoutMs: 2_147_483_647,
        maxBuffer: 1024 * 1024,
      });
      if (!('pid' in started)) {
        this.off = `restore session could not start: ${started.stderr || started.failure || started.exitCode}`;
        return undefined;
      }
      if (readState(started.pid) === undefined) {
        this.off = 'restore session: /proc/PID/syscall unreadable';
        started.input.end();
        return undefined;
      }
      // A tool that ends by itself (killed, or refused a block) is no session any more.
      void started.result.then(() => {
        if (this.tool === started) this.tool = undefined;
      });
      this.tool = started;
      return started;
    })().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  /**
   * Wait until the tool has read the block (`target` characters read in all) and sleeps in a read
   * of its standard input again: the block is handled.
   */
  private async handled(pid: number, target: number): Promise<boolean> {
    const until = performance.now() + BLOCK_TIMEOUT_MS;
    for (let spin = 0; performance.now() < until; spin++) {
      const s = readState(pid);
      if (s === undefined) return false;
      if (s.state === 'S' && s.readingStdin && (readChars(pid) ?? 0) >= target) return true;
      // The first checks come quickly (a small block lands in a few ms), then every millisecond.
      await new Promise((r) => (spin < 20 ? setImmediate(r) : setTimeout(r, 1)));
    }
    return false;
  }
}

/** The tool's scheduler state, and whether it is in read(0, ...) (read is syscall 0 on x86-64, 63 on arm64). */
function readState(pid: number): { state: string; readingStdin: boolean } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(') ') + 2, stat.lastIndexOf(') ') + 3);
    const [nr, fd] = readFileSync(`/proc/${pid}/syscall`, 'utf8').split(' ');
    return { state, readingStdin: nr === READ_SYSCALL && fd === '0x0' };
  } catch {
    return undefined;
  }
}

/** Characters the tool has read so far (`rchar` of /proc/PID/io: every read, its stdin's too). */
function readChars(pid: number): number | undefined {
  try {
    const m = /^rchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

const READ_SYSCALL = process.arch === 'arm64' ? '63' : '0';
