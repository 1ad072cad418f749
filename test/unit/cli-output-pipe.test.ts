// The CLI's output through a pipe is whole: a pipe takes 64 KB at once, and exiting before the
// rest is written cut `fedmesh eval --output json` over a big cluster off mid-way.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { bigClusterText } from '../helpers/big-cluster.ts';

const BIN = new URL('../../bin/fedmesh.js', import.meta.url).pathname;

test('eval --output json through a pipe gives the whole document (well over 64 KB)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fedmesh-cli-pipe-'));
  try {
    mkdirSync(join(dir, 'a'));
    writeFileSync(join(dir, 'a', 'ns.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n');
    writeFileSync(join(dir, 'a', 'endpoints.yaml'), bigClusterText(2000));
    // Through a real pipe (`| cat`): Node's own stdio pipes are socket pairs with bigger buffers.
    const args = [BIN, 'eval', 'all()', '--cluster', 'a', '--datastore', `file:${join(dir, 'a')}`];
    const command = `"$0" ${args.map((a) => `'${a}'`).join(' ')} --output json | cat`;
    const child = spawn('sh', ['-c', command, process.execPath], {
      env: { ...process.env, FEDMESH_LOG_LEVEL: 'silent' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    const text = Buffer.concat(chunks).toString('utf8');
    assert.equal(code, 0);
    assert.ok(text.length > 65536, `only ${text.length} bytes`);
    const out = JSON.parse(text) as { matches: unknown[] };
    assert.equal(out.matches.length, 2000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
