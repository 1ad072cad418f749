// eval and explain over a big cluster: N workload endpoints in a file datastore (one YAML file),
// `fedmesh eval` for one selector and `fedmesh explain` for one flow, each run as an operator runs
// it (a fresh process), with its wall time and peak RSS beside the targets (3 s, 300 MB).
//   npm run bench -- eval [endpoints=100000]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bigClusterText } from '../test/helpers/big-cluster.ts';

const [N = 100_000] = process.argv.slice(2).map(Number);
const TARGET_MS = 3000;
const TARGET_MB = 300;
const BIN = new URL('../bin/fedmesh.js', import.meta.url).pathname;

/** Wall time and peak RSS of one fedmesh command. */
function measure(args: string[]): { ms: number; mb: number; ok: boolean } {
  // GNU time (Debian's `time`) reports the peak RSS; without it, only the wall time is measured.
  const timed = existsSync('/usr/bin/time');
  const [cmd, argv] = timed
    ? ['/usr/bin/time', ['-f', '%M', process.execPath, BIN, ...args]]
    : [process.execPath, [BIN, ...args]];
  const t0 = performance.now();
  const r = spawnSync(cmd, argv, {
    encoding: 'utf8',
    env: { ...process.env, FEDMESH_LOG_LEVEL: 'silent' },
    maxBuffer: 256 * 1024 * 1024,
  });
  const ms = performance.now() - t0;
  const kb = timed ? Number(/(\d+)\s*$/.exec(r.stderr ?? '')?.[1] ?? Number.NaN) : Number.NaN;
  return { ms, mb: kb / 1024, ok: r.status === 0 };
}

const dir = mkdtempSync(join(tmpdir(), 'fedmesh-bench-eval-'));
try {
  mkdirSync(join(dir, 'a'));
  writeFileSync(
    join(dir, 'a', 'namespace.yaml'),
    'apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n',
  );
  writeFileSync(join(dir, 'a', 'endpoints.yaml'), bigClusterText(N));
  const ds = ['--cluster', 'a', '--datastore', `file:${join(dir, 'a')}`];
  const rows: [string, { ms: number; mb: number; ok: boolean }][] = [
    ['eval "app == \'app-7\'"', measure(['eval', "app == 'app-7'", ...ds, '--output', 'json'])],
    [
      'explain shop/pod-1 -> shop/pod-2 tcp/80',
      measure(['explain', ...ds, '--from', 'a/shop/pod-1', '--to', 'a/shop/pod-2', '--port', '80/tcp']),
    ],
  ];
  process.stdout.write(`eval and explain over ${N.toLocaleString('en')} endpoints (a fresh process each)\n`);
  process.stdout.write(
    `${'command'.padEnd(42)} ${'ms'.padStart(8)} ${'target'.padStart(7)} ${'ratio'.padStart(6)} ${'peak MB'.padStart(8)} ${'target'.padStart(7)} ${'ratio'.padStart(6)}\n`,
  );
  for (const [what, m] of rows) {
    process.stdout.write(
      `${what.padEnd(42)} ${m.ms.toFixed(0).padStart(8)} ${String(TARGET_MS).padStart(7)} ${(m.ms / TARGET_MS).toFixed(2).padStart(6)} ${m.mb.toFixed(0).padStart(8)} ${String(TARGET_MB).padStart(7)} ${(m.mb / TARGET_MB).toFixed(2).padStart(6)}${m.ok ? '' : '  (exited non-zero)'}\n`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
