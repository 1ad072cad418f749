// The demo's processes (syncers, agents, probe servers): started detached with their output in
// log files, their PIDs recorded in the work directory so `fedmesh demo down` (or a later run) can
// stop everything even after the starting process is gone.
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const FEDMESH_BIN = new URL('../../bin/fedmesh.js', import.meta.url).pathname;

export interface StartedProcess {
  name: string;
  pid: number;
  log: string;
  child: ChildProcess;
}

export function pidFile(workDir: string): string {
  return join(workDir, 'pids');
}

/** Start `argv` (optionally inside a netns) with stdout+stderr to `<workDir>/<name>.log`. */
export function startProcess(
  workDir: string,
  name: string,
  argv: string[],
  opts: { netns?: string; env?: Record<string, string> } = {},
): StartedProcess {
  const log = join(workDir, `${name}.log`);
  const fd = openSync(log, 'a');
  const [cmd, ...args] = opts.netns ? ['ip', 'netns', 'exec', opts.netns, ...argv] : argv;
  const child = spawn(cmd!, args, {
    stdio: ['ignore', fd, fd],
    detached: true,
    env: { ...process.env, ...opts.env },
  });
  child.unref();
  if (child.pid === undefined) throw new Error(`could not start ${name}`);
  appendFileSync(pidFile(workDir), `${child.pid} ${name}\n`);
  return { name, pid: child.pid, log, child };
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM every recorded process group, then SIGKILL what is left after a grace period. */
export async function stopRecorded(workDir: string, graceMs = 3000): Promise<number> {
  const file = pidFile(workDir);
  if (!existsSync(file)) return 0;
  const pids = readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => Number(l.split(' ')[0]))
    .filter((p) => Number.isInteger(p) && p > 0);
  const signal = (pid: number, sig: NodeJS.Signals) => {
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, sig);
      } catch {
        // gone already
      }
    }
  };
  for (const p of pids) signal(p, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && pids.some(alive)) await new Promise((r) => setTimeout(r, 100));
  for (const p of pids.filter(alive)) signal(p, 'SIGKILL');
  writeFileSync(file, '');
  return pids.length;
}

/** Wait until a log file contains a line matching `re`; returns the match. */
export async function waitForLog(log: string, re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = existsSync(log) ? readFileSync(log, 'utf8') : '';
    const m = re.exec(text);
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${re} in ${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
