// Input echoed back to people (issue 8): clipped and escaped in logs, /status and CLI output. A
// 3 MB name or a 1 MB label value never appears whole; raw escape bytes never reach a terminal.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { clip, clipDeep, terminalJson } from '../../lib/text.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const BIN = join(ROOT, 'bin/fedmesh.js');
const ESC = '\u001b';

test('clip: long values cut with a count, control and bidi characters escaped', () => {
  const huge = 'n'.repeat(3 * 1024 * 1024);
  const c = clip(huge);
  assert.ok(c.length < 200);
  assert.match(c, /…\(\+3145608 chars\)$/);
  assert.equal(clip(`a${ESC}[31mb\nc\u202ed`), 'a\\u001b[31mb\\nc\\u202ed');
  const deep = clipDeep({ name: huge, list: [huge], [`k${ESC}`]: 1 }) as Record<string, unknown>;
  assert.ok(JSON.stringify(deep).length < 3000);
  assert.ok(!JSON.stringify(deep).includes(ESC));
  assert.equal(terminalJson({ s: '\u009b31m' }), '{"s":"\\u009b31m"}');
});

test('a log line with a 3 MB field and a 1 MB message stays small', () => {
  const code = `import { logger } from ${JSON.stringify(join(ROOT, 'lib/log.ts'))};
logger('t').warn({ node: 'x'.repeat(3 * 1024 * 1024) }, 'hello ' + 'v'.repeat(1024 * 1024));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, FEDMESH_LOG_LEVEL: 'info' },
  });
  assert.equal(r.status, 0, r.stderr.slice(0, 2000));
  const line = r.stderr.trim().split('\n').at(-1) ?? '';
  assert.ok(line.length > 100 && line.length < 10_000, `log line of ${line.length} characters`);
  assert.match(line, /"node":"x+…\(\+\d+ chars\)"/);
});

test('fedmesh eval prints no raw escape bytes, from its selector or its files', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fedmesh-echo-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'a'));
  writeFileSync(
    join(dir, 'a', 'all.yaml'),
    [
      `apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: "${'\\e'}[2Jwiped"}}`,
      `apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: h1, labels: {role: node}}\nspec: {node: n1, interfaceName: eth0}`,
      `apiVersion: v1\nkind: Namespace\nmetadata: {name: big, labels: {team: ${'v'.repeat(1024 * 1024)}}}`,
    ].join('\n---\n'),
  );
  for (const output of ['text', 'json']) {
    const r = spawnSync(
      process.execPath,
      [
        BIN,
        'eval',
        `role == "node" || role == "${ESC}[31mred"`,
        '--cluster',
        'a',
        '--datastore',
        `file:${join(dir, 'a')}`,
        '--output',
        output,
      ],
      { encoding: 'utf8', env: { ...process.env, FEDMESH_LOG_LEVEL: 'warn' } },
    );
    assert.equal(r.status, 0, r.stderr.slice(0, 2000));
    assert.match(r.stdout, /h1/);
    assert.ok(!r.stdout.includes(ESC), `stdout (${output}) has a raw ESC`);
    assert.ok(!r.stderr.includes(ESC), `stderr (${output}) has a raw ESC`);
    assert.match(r.stdout, /\\u001b\[31mred/);
    assert.match(r.stderr, /\\u001b\[2Jwiped/);
    assert.ok(r.stderr.length < 20_000, `stderr of ${r.stderr.length} characters echoes the 1 MB value`);
  }
});
