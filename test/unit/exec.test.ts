// The one place tools are run (native/exec.ts through the launcher): input given whole or in
// pieces reaches the tool intact, and a nice level is the tool's, not the agent's.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { observeExec, run } from '../../native/exec.ts';

test('input in pieces streams through to the tool, in order, and is counted', async () => {
  const pieces = Array.from({ length: 50 }, (_, i) => `${String(i).padStart(2, '0')} ${'x'.repeat(4000)}\n`);
  const seen: number[] = [];
  const unobserve = observeExec((r) => seen.push(r.inputBytes));
  try {
    const res = await run('sh', ['-c', 'wc -l; head -c 2'], { input: pieces.values() });
    assert.equal(res.stdout.trim().split('\n')[0], '50');
    assert.deepEqual(seen, [pieces.join('').length]);
    // A tool that stops reading early: the writer stops too, and the run still ends.
    const early = await run('sh', ['-c', 'head -c 10 >/dev/null; exit 3'], {
      input: pieces.values(),
      allowFailure: true,
    });
    assert.equal(early.exitCode, 3);
  } finally {
    unobserve();
  }
});

test('a nice level applies to the tool alone', async () => {
  const own = (await run('nice', [])).stdout.trim();
  assert.equal((await run('nice', [], { nice: 10 })).stdout.trim(), String(Number(own) + 10));
});
