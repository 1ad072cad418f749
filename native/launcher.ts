// Tool runs through a small helper process. Starting a process from the agent copies the agent's
// page tables (fork): at 100,000 endpoints (a heap of gigabytes) each start cost ~25 ms of the
// agent's own CPU, the biggest share of a one-change write and of an idle drift check. A plain
// Node process with no state of its own starts them instead, for ~1 ms each, and hands back what
// they printed and how they ended. It exits when the agent does (its IPC channel closes).
import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  constants,
  createWriteStream,
  mkdtempSync,
  openSync,
  rmSync,
  type WriteStream,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface LaunchRequest {
  file: string;
  args: readonly string[];
  /**
   * The tool's standard input. Pieces (an iterable) are streamed as they are made, through a
   * FIFO: the tool starts on the first while the rest are still being produced.
   */
  input?: string | Iterable<string | Uint8Array>;
  timeoutMs: number;
  maxBuffer: number;
}

export interface LaunchResult {
  stdout: string;
  stderr: string;
  /** -1 when the tool could not start or was killed (timeout, signal). */
  exitCode: number;
  /** Why it could not start, or the signal that ended it. */
  failure?: string;
}

// Plain CommonJS run with `node -e`: no loader, no project code, a few MB of heap.
const CHILD = `
const { spawn } = require('node:child_process');
process.on('disconnect', () => process.exit(0));
process.on('message', (m) => {
  let done = false;
  const finish = (r) => { if (!done) { done = true; process.send({ id: m.id, ...r }); } };
  let child;
  let fd;
  try {
    // A large input comes as a file: it becomes the tool's stdin without passing through here.
    if (m.inputFile) fd = require('node:fs').openSync(m.inputFile, 'r');
    child = spawn(m.file, m.args, { stdio: [fd ?? 'pipe', 'pipe', 'pipe'] });
  } catch (e) {
    if (fd !== undefined) require('node:fs').closeSync(fd);
    finish({ exitCode: -1, stdout: '', stderr: String(e.message), failure: String(e.message) });
    return;
  }
  if (fd !== undefined) require('node:fs').closeSync(fd);
  if (child.pid !== undefined) process.send({ id: m.id, pid: child.pid });
  const out = [];
  const err = [];
  let size = 0;
  const keep = (into) => (d) => {
    size += d.length;
    if (size > m.maxBuffer) child.kill('SIGKILL');
    else into.push(d);
  };
  child.stdout.on('data', keep(out));
  child.stderr.on('data', keep(err));
  const timer = setTimeout(() => child.kill('SIGKILL'), m.timeoutMs);
  child.on('error', (e) => {
    clearTimeout(timer);
    finish({ exitCode: -1, stdout: '', stderr: e.message, failure: e.message });
  });
  child.on('close', (code, signal) => {
    clearTimeout(timer);
    finish({
      exitCode: code ?? -1,
      stdout: Buffer.concat(out).toString(),
      stderr: Buffer.concat(err).toString(),
      failure: signal ? 'killed by ' + signal : undefined,
    });
  });
  if (child.stdin) {
    child.stdin.on('error', () => {});
    child.stdin.end(m.input ?? '');
  }
});
`;

interface Pending {
  resolve: (r: LaunchResult) => void;
  onSpawn?: (pid: number) => void;
  /** A long-lived tool (launchFed): it must not keep the agent alive. */
  background?: boolean;
}

let helper: ChildProcess | undefined;
let nextId = 1;
const pending = new Map<number, Pending>();

function start(): ChildProcess {
  const child = spawn(process.execPath, ['-e', CHILD], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  child.on('message', (m: { id: number; pid?: number } & Partial<LaunchResult>) => {
    const p = pending.get(m.id);
    if (p === undefined) return;
    if (m.pid !== undefined) {
      p.onSpawn?.(m.pid);
      return;
    }
    pending.delete(m.id);
    if (![...pending.values()].some((x) => !x.background)) idle(child);
    p.resolve({
      stdout: m.stdout ?? '',
      stderr: m.stderr ?? '',
      exitCode: m.exitCode ?? -1,
      failure: m.failure,
    });
  });
  const lost = () => {
    if (helper === child) helper = undefined;
    for (const [id, p] of pending) {
      pending.delete(id);
      p.resolve({
        stdout: '',
        stderr: 'tool launcher exited',
        exitCode: -1,
        failure: 'tool launcher exited',
      });
    }
  };
  child.on('exit', lost);
  child.on('error', lost);
  idle(child);
  return child;
}

/** Nothing in flight: the helper must not keep the agent (or a test) alive. */
function idle(child: ChildProcess): void {
  child.unref();
  child.channel?.unref();
}

/**
 * Inputs above this size go to the tool through a file: the IPC channel's JSON encoding of a 15 MiB
 * ipset restore cost seconds of the agent's CPU; a file write costs milliseconds.
 */
const FILE_INPUT_BYTES = 16 * 1024;
let inputDir: string | undefined;

/** Run one tool through the helper process (started on first use). */
export async function launch(req: LaunchRequest, onSpawn?: (pid: number) => void): Promise<LaunchResult> {
  if (req.input !== undefined && typeof req.input !== 'string') return streamed(req, req.input, onSpawn);
  if (req.input === undefined || req.input.length < FILE_INPUT_BYTES)
    return send({ ...req, input: req.input }, onSpawn);
  inputDir ??= mkdtempSync(join(tmpdir(), 'fedmesh-input-'));
  const inputFile = join(inputDir, String(nextId));
  writeFileSync(inputFile, req.input);
  try {
    return await send({ ...req, input: undefined, inputFile }, onSpawn);
  } finally {
    rmSync(inputFile, { force: true });
  }
}

/**
 * The tool reads a FIFO that we write the pieces into as they come. The helper opens the FIFO's read end (its open waits for our writer) and hands it to
 * the tool as stdin; the tool ends when we close the write end.
 */
async function streamed(
  req: LaunchRequest,
  pieces: Iterable<string | Uint8Array>,
  onSpawn?: (pid: number) => void,
): Promise<LaunchResult> {
  const fifo = await makeFifo();
  if (typeof fifo !== 'string') return fifo;
  try {
    const result = send({ ...req, input: undefined, inputFile: fifo }, onSpawn);
    const out = createWriteStream(fifo);
    let failed = false;
    out.on('error', () => {
      failed = true; // the tool stopped reading (it failed): its result says why
    });
    const writing = (async () => {
      for (const piece of pieces) {
        if (failed || out.destroyed) break;
        // Queued, not waited for: the stream's writes run on libuv's thread pool as the tool
        // reads, so the pieces are all made in one go and the event loop is free after them.
        out.write(piece);
        // A turn of the loop between pieces lets the first ones reach the tool meanwhile.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      out.end();
    })();
    const res = await result;
    if (!out.pending) await writing;
    else {
      // The tool never opened it (it could not start): release our open with a reader of our own.
      failed = true;
      closeSync(openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK));
      out.destroy();
    }
    return res;
  } finally {
    rmSync(fifo, { force: true });
  }
}

/** A tool left running, fed through its standard input (see launchFed). */
export interface FedTool {
  pid: number;
  /** Its standard input; ending it ends the tool. */
  input: WriteStream;
  /** How it ended. */
  result: Promise<LaunchResult>;
}

/** A new FIFO in our input directory (mkfifo, through the helper), or how making it failed. */
async function makeFifo(): Promise<string | LaunchResult> {
  inputDir ??= mkdtempSync(join(tmpdir(), 'fedmesh-input-'));
  const fifo = join(inputDir, `fifo-${nextId++}`);
  const made = await send({
    file: 'mkfifo',
    args: ['-m', '600', fifo],
    timeoutMs: 10_000,
    maxBuffer: 65_536,
  });
  return made.exitCode === 0 ? fifo : made;
}

/**
 * Start a tool that keeps running, its standard input a FIFO we hold open: what we write reaches
 * it at once, and it ends when we end the input. It never keeps the agent alive. Resolves once it
 * runs, or with how it failed to start.
 */
export async function launchFed(req: Omit<LaunchRequest, 'input'>): Promise<FedTool | LaunchResult> {
  const fifo = await makeFifo();
  if (typeof fifo !== 'string') return fifo;
  let started: (pid: number) => void = () => {};
  const spawned = new Promise<number>((resolve) => {
    started = resolve;
  });
  const result = send({ ...req, inputFile: fifo }, (pid) => started(pid), true);
  const input = createWriteStream(fifo);
  input.on('error', () => {}); // the tool went away: its result says why
  // Nothing else may keep the event loop alive meanwhile (a background request does not).
  const keep = setInterval(() => {}, 60_000);
  const pid = await Promise.race([spawned, result]).finally(() => clearInterval(keep));
  // Both ends are open (or the tool never started): the name is no longer needed.
  rmSync(fifo, { force: true });
  if (typeof pid !== 'number') {
    input.destroy();
    return pid;
  }
  return { pid, input, result };
}

process.on('exit', () => {
  if (inputDir !== undefined) rmSync(inputDir, { recursive: true, force: true });
});

function send(
  req: Omit<LaunchRequest, 'input'> & { input?: string; inputFile?: string },
  onSpawn?: (pid: number) => void,
  background = false,
): Promise<LaunchResult> {
  helper ??= start();
  const child = helper;
  const id = nextId++;
  return new Promise((resolve) => {
    pending.set(id, { resolve, onSpawn, background });
    if (!background) {
      child.ref();
      child.channel?.ref();
    }
    try {
      child.send({ id, ...req });
    } catch (e) {
      pending.delete(id);
      if (helper === child) helper = undefined;
      const failure = `tool launcher unreachable: ${(e as Error).message}`;
      resolve({ stdout: '', stderr: failure, exitCode: -1, failure });
    }
  });
}
