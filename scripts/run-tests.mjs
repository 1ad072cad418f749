#!/usr/bin/env node
// Runs the test suites with Node's test runner (TypeScript through tsx): unit and integration
// files side by side, then the end-to-end files one at a time (each builds a whole mesh). Prints
// Node's own summary per phase and one closing line `N passed, N failed` for CI.
//   node scripts/run-tests.mjs [unit|integration|e2e ...]   (default: all)
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const wanted = process.argv.slice(2);
const suites = wanted.length ? wanted : ['unit', 'integration', 'e2e'];

function files(dir) {
  const abs = join(root, 'test', dir);
  if (!existsSync(abs)) return [];
  return readdirSync(abs)
    .filter((f) => f.endsWith('.test.ts'))
    .sort()
    .map((f) => join('test', dir, f));
}

const phases = [
  { name: 'unit+integration', files: suites.filter((s) => s !== 'e2e').flatMap(files), concurrency: 2 },
  { name: 'e2e', files: suites.includes('e2e') ? files('e2e') : [], concurrency: 1 },
];

let passed = 0;
let failed = 0;
let skipped = 0;
for (const phase of phases) {
  if (phase.files.length === 0) continue;
  process.stdout.write(`\n=== ${phase.name}: ${phase.files.length} files ===\n`);
  const res = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '--test',
      `--test-concurrency=${phase.concurrency}`,
      '--test-reporter=spec',
      ...phase.files,
    ],
    {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 256 * 1024 * 1024,
      env: { ...process.env, FEDMESH_LOG_LEVEL: process.env.FEDMESH_LOG_LEVEL ?? 'warn' },
    },
  );
  process.stdout.write(res.stdout);
  const count = (label) => Number(new RegExp(`^ℹ ${label} (\\d+)$`, 'm').exec(res.stdout)?.[1] ?? 0);
  passed += count('pass');
  skipped += count('skipped');
  const f = count('fail') + count('cancelled');
  failed += f;
  if (res.status !== 0 && f === 0) failed += 1; // the runner itself failed
}
process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
