// What the end-to-end tests do as an operator would: run the `fedmesh` binary, wait for a
// condition, and try a TCP connection from a pod's namespace.
import { spawnSync } from 'node:child_process';
import { run } from '../../native/exec.ts';

const BIN = new URL('../../bin/fedmesh.js', import.meta.url).pathname;
const PROBE = new URL('../../scripts/probe.mjs', import.meta.url).pathname;

export function fedmesh(args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 240_000 });
}

/** Poll until `fn` holds; the time it took. */
export async function waitFor(
  what: string,
  fn: () => Promise<boolean> | boolean,
  timeoutMs = 10_000,
): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if (await fn()) return Date.now() - start;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Does a TCP connection from the pod namespace to ip:5432 succeed (within 500 ms)? */
export async function tcp(podNs: string, ip: string): Promise<boolean> {
  const r = await run('ip', ['netns', 'exec', podNs, process.execPath, PROBE, 'connect', ip, '5432', '500'], {
    allowFailure: true,
  });
  return r.exitCode === 0;
}
