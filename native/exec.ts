// Every kernel tool fedmesh runs goes through here: one place that times the call, logs it at debug
// with its input size, and turns a non-zero exit into an error that carries the tool's stderr.
import { logger } from '../lib/log.ts';
import { launch } from './launcher.ts';

const log = logger('exec');

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | undefined,
    readonly stderr: string,
  ) {
    super(`${command} failed (exit ${exitCode ?? '?'}): ${stderr.trim().slice(0, 2000)}`);
    this.name = 'CommandError';
  }
}

export interface RunOptions {
  /**
   * Text written to the tool's standard input (a restore file, an ip -batch script); pieces (an
   * iterable) are streamed as they are made.
   */
  input?: string | Iterable<string | Uint8Array>;
  /** Run inside this network namespace (ip netns exec NAME ...). */
  netns?: string;
  /** Do not throw on a non-zero exit; the caller inspects the result. */
  allowFailure?: boolean;
  timeoutMs?: number;
  /**
   * Run the tool at this nice level: a bulk write with slack (a cold start's routes and FDB) then
   * leaves the cores to the writes on the critical path (the ipset restore the tables wait for).
   */
  nice?: number;
  /** Told the tool's pid as it starts (with `netns`, `ip netns exec` execs the tool in place). */
  onSpawn?: (pid: number) => void;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** One finished tool run, as an observer sees it (the dataplane bench's breakdown). */
export interface ExecRecord {
  file: string;
  args: readonly string[];
  netns?: string;
  inputBytes: number;
  /** performance.now() when the run was asked for (a timeline of a pass). */
  startedAt: number;
  ms: number;
  exitCode: number;
  /** The nice level it ran at, when lowered. */
  nice?: number;
}

const observers = new Set<(r: ExecRecord) => void>();

/** Be told of every tool run (for measurement); returns the unsubscribe. */
export function observeExec(fn: (r: ExecRecord) => void): () => void {
  observers.add(fn);
  return () => observers.delete(fn);
}

/** Tell the observers of a tool run made other than through `run` (a kept restore session's block). */
export function noteRun(rec: ExecRecord): void {
  for (const o of observers) o(rec);
}

export async function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const tool = opts.nice === undefined ? [file, ...args] : ['nice', '-n', String(opts.nice), file, ...args];
  const [cmd, argv] = opts.netns
    ? ['ip', ['netns', 'exec', opts.netns, ...tool]]
    : [tool[0] as string, tool.slice(1)];
  const started = performance.now();
  let inputBytes = typeof opts.input === 'string' ? opts.input.length : 0;
  const input =
    opts.input === undefined || typeof opts.input === 'string'
      ? opts.input
      : (function* counted(pieces: Iterable<string | Uint8Array>) {
          for (const p of pieces) {
            inputBytes += typeof p === 'string' ? p.length : p.byteLength;
            yield p;
          }
        })(opts.input);
  // Through the launcher: a fork of the agent itself costs ~25 ms once its heap holds 100,000 endpoints.
  const res = await launch(
    {
      file: cmd,
      args: argv,
      input,
      timeoutMs: opts.timeoutMs ?? 60_000,
      maxBuffer: 512 * 1024 * 1024,
    },
    opts.onSpawn,
  );
  const ms = performance.now() - started;
  const exitCode = res.exitCode;
  if (observers.size > 0) {
    const rec = {
      file,
      args,
      netns: opts.netns,
      inputBytes,
      startedAt: started,
      ms,
      exitCode,
      ...(opts.nice === undefined ? {} : { nice: opts.nice }),
    };
    for (const o of observers) o(rec);
  }
  log.debug(
    {
      cmd: file,
      args: args.slice(0, 6),
      netns: opts.netns,
      inputBytes,
      ms,
      exitCode,
    },
    'ran',
  );
  if (exitCode !== 0 && !opts.allowFailure) {
    const what = [file, ...args.slice(0, 4)].join(' ');
    throw new CommandError(
      what,
      exitCode < 0 ? undefined : exitCode,
      res.stderr || res.stdout || res.failure || '',
    );
  }
  return { stdout: res.stdout, stderr: res.stderr, exitCode };
}
