// Polling for a state that arrives asynchronously (a file written, an object in an API double).
import assert from 'node:assert/strict';

/**
 * Polls `get` every 5 ms until `ok`; fails naming `what` and the last value. Resolves with the ms it
 * took. The bound is on waiting, not a timing target (benches measure those): generous for a busy
 * machine.
 */
export async function waitFor<T>(
  what: string,
  get: () => T,
  ok: (v: T) => boolean,
  timeoutMs = 20_000,
): Promise<number> {
  const start = performance.now();
  let v = get();
  while (!ok(v)) {
    if (performance.now() - start > timeoutMs)
      assert.fail(`${what}: not reached in ${timeoutMs} ms (last: ${JSON.stringify(v)})`);
    await new Promise((r) => setTimeout(r, 5));
    v = get();
  }
  return performance.now() - start;
}
