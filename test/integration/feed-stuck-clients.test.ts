// 500 agents that connect and never read, while a 10,000-endpoint state is rewritten 8 times:
// the syncer cuts them off, its RSS stays under the stated bound (feed-load-bound.ts), the
// memory they held is given back, and the agents that keep up are never cut off and get every
// round. The syncer runs in its own process (its RSS alone); the precise figures, with a baseline
// latency, are in `npm run bench -- feed`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mb, runFeedLoad } from '../helpers/feed-load.ts';
import { rssBound } from '../helpers/feed-load-bound.ts';

const MAX_LAG_BYTES = 16 * 1024 * 1024;

test('500 stuck clients under churn: cut off, RSS bounded, memory returned, the others unharmed', {
  timeout: 400_000,
}, async () => {
  const o = {
    endpoints: 10_000,
    rounds: 8,
    stuck: 500,
    normal: 3,
    maxLagBytes: MAX_LAG_BYTES,
    maxLagAgeMs: 60_000,
  };
  const r = await runFeedLoad({ ...o, log: (l) => process.stdout.write(`# ${l}\n`) });
  // The stated bound, with a 25% margin for GC timing on a shared machine (the bench prints the
  // peak against the bound itself: 0.78-0.87 of it here).
  const bound = rssBound(r.rssBase, o.maxLagBytes, o.stuck);
  assert.ok(r.rssPeak <= bound * 1.25, `RSS peak ${mb(r.rssPeak)} over the bound ${mb(bound)} (+25%)`);
  // ...and far from where it was (issue 8: +960 MB with the same load).
  assert.ok(r.rssPeak - r.rssBase < 400 * 1024 * 1024, `RSS grew by ${mb(r.rssPeak - r.rssBase)}`);
  // Each round rewrites ~4 MB of endpoints: past 16 MiB queued, every stuck client is cut off.
  assert.equal(r.after.clients, o.normal, 'only the agents that keep up are still connected');
  assert.ok(r.after.cutOffs >= o.stuck, `${r.after.cutOffs} cut-offs`);
  assert.equal(r.normalDisconnects, 0, 'the agents that keep up are never cut off');
  // Every round reached every agent that keeps up; a generous bound on this shared machine (the
  // bench compares with the same rounds without stuck clients).
  assert.equal(r.latencyMs.length, o.rounds);
  for (const ms of r.latencyMs) assert.ok(ms < 30_000, `a round took ${ms} ms to reach every agent`);
  // Given back: nothing queued, and the heap is what it was with the state alone.
  assert.equal(r.after.queuedBytes, 0);
  assert.ok(
    r.after.memory.heapUsed < r.base.memory.heapUsed + 16 * 1024 * 1024,
    `heap after ${mb(r.after.memory.heapUsed)}, at rest before ${mb(r.base.memory.heapUsed)}`,
  );
  assert.ok(
    r.after.memory.arrayBuffers < 8 * 1024 * 1024,
    `buffers after ${mb(r.after.memory.arrayBuffers)}`,
  );
});
