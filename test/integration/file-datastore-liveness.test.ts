// No stall (issue 8): a big file datastore behind the syncer's merger, liveness polled every
// 50 ms over HTTP throughout the initial load and an edit of one endpoint. Before the fix, one
// label edit in a 100,000-endpoint file held the event loop for 37 s. The precise figures (worst
// gap ≤ 100 ms, edit to the feed ≤ 1 s) are `npm run bench -- files`; this test asserts that
// liveness kept answering, with a generous bound for a loaded CI machine.
// FEDMESH_TEST_ENDPOINTS sets the size (default 30,000 endpoints, about 8 MB).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { bigClusterText } from '../helpers/big-cluster.ts';
import { fileSyncer, pollLiveness } from '../helpers/liveness.ts';

process.env.FEDMESH_LOG_LEVEL ??= 'warn';

const N = Number(process.env.FEDMESH_TEST_ENDPOINTS ?? 30_000);
const GENEROUS_GAP_MS = 2000;

test(`liveness answers throughout the load and an edit of a ${N}-endpoint file`, {
  timeout: 600_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fedmesh-liveness-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'endpoints.yaml');
  writeFileSync(file, bigClusterText(N));

  const syncer = await fileSyncer(dir);
  t.after(() => syncer.close());
  const { cache, merger } = syncer;
  const url = syncer.livenessUrl;

  let poll = pollLiveness(url, 50);
  await merger.start();
  await syncer.inSync();
  const load = await poll.stop();
  assert.equal(cache.size, N);
  assert.ok(load.answers > 0 && load.failures === 0, JSON.stringify(load));
  assert.ok(
    load.maxGapMs < GENEROUS_GAP_MS,
    `liveness silent for ${load.maxGapMs.toFixed(0)} ms during the load`,
  );

  const delivered: string[] = [];
  const unsubscribe = cache.subscribe({
    onUpdates: (us) => {
      for (const u of us) delivered.push(u.key);
    },
    onInSync: () => {},
    onRemoteStatus: () => {},
  });
  delivered.length = 0;
  const edited = Math.floor(N / 2);
  // Made before polling starts and written asynchronously: the test's own work is no stall.
  const editedText = Buffer.from(bigClusterText(N, edited));
  poll = pollLiveness(url, 50);
  await writeFile(file, editedText);
  const start = Date.now();
  while (delivered.length === 0 && Date.now() - start < 60_000) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 300));
  const edit = await poll.stop();
  unsubscribe();
  assert.equal(delivered.length, 1, 'exactly the edited endpoint goes out');
  assert.match(delivered[0] ?? '', new RegExp(`pod-${edited}\\b`));
  assert.ok(
    edit.maxGapMs < GENEROUS_GAP_MS,
    `liveness silent for ${edit.maxGapMs.toFixed(0)} ms during the edit`,
  );
});
