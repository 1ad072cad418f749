// bin/compiled.js: the binary runs cli/main.ts compiled by esbuild, built from the files as they
// are now: a build is reused while none of its files changed, rebuilt when one did, and the
// sources run through tsx when asked to (or when no build can be made).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
// @ts-expect-error: plain JavaScript, loaded before any TypeScript loader
import { compiledEntry } from '../../bin/compiled.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const MANIFEST = join(ROOT, 'dist', 'current.json');

test('a build is reused while its files are unchanged, and made again when one changed', async () => {
  const first: string = await compiledEntry();
  assert.ok(first.startsWith(join(ROOT, 'dist', 'b-')) && first.endsWith('/main.js'), first);
  const manifest = JSON.parse(readFileSync(MANIFEST, 'utf8'));
  // Built from the sources the commands run: eval's, explain's, the YAML reader's.
  for (const f of ['cli/main.ts', 'cli/eval.ts', 'cli/explain.ts', 'model/yaml-plain.ts'])
    assert.ok(f in manifest.inputs, f);
  assert.equal(await compiledEntry(), first, 'nothing changed: the same build');
  // A file as if edited since: another build.
  writeFileSync(
    MANIFEST,
    JSON.stringify({ ...manifest, inputs: { ...manifest.inputs, 'cli/eval.ts': '1/1' } }),
  );
  const second: string = await compiledEntry();
  assert.notEqual(second, first);
  assert.equal(await compiledEntry(), second);
});

test('the binary runs compiled, and from the sources with FEDMESH_FROM_SOURCE', () => {
  for (const env of [{}, { FEDMESH_FROM_SOURCE: '1' }]) {
    const r = spawnSync(
      process.execPath,
      [join(ROOT, 'bin/fedmesh.js'), 'eval', 'has((', '--cluster', 'a', '--datastore', 'file:/nonexistent'],
      {
        encoding: 'utf8',
        env: { ...process.env, ...env },
      },
    );
    // Either way the same program: the same refusal of a selector that does not parse.
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /fedmesh eval: invalid selector/);
  }
  const fromSource = spawnSync(
    process.execPath,
    ['-e', "import('./bin/compiled.js').then(async (m) => console.log(String(await m.compiledEntry())))"],
    { cwd: ROOT, encoding: 'utf8', env: { ...process.env, FEDMESH_FROM_SOURCE: '1' } },
  );
  assert.equal(fromSource.stdout.trim(), 'undefined');
});
