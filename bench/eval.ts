// eval and explain over a big cluster: N workload endpoints in a file datastore (one YAML file),
// `fedmesh eval` for one selector and `fedmesh explain` for one flow, each run as an operator runs
// it (a fresh process), with its wall time and peak RSS beside the targets (3 s, 300 MB);
// then where the time goes, stage by stage, in this process (CPU ms).
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

// The binary runs compiled and rebuilds itself after a source change (bin/compiled.js): build it
// now, as setup.sh does, so that no measured command includes a build.
spawnSync(process.execPath, [BIN, '--help'], { stdio: 'ignore' });
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
  await breakdown(join(dir, 'a'));
} finally {
  rmSync(dir, { recursive: true, force: true });
}

/** The stages of eval and explain, each timed alone (CPU ms of this process). */
async function breakdown(clusterDir: string): Promise<void> {
  process.env.FEDMESH_LOG_LEVEL ??= 'silent';
  const { readFileSync } = await import('node:fs');
  const { loadAll } = await import('js-yaml');
  const { parseDocuments, validateResource } = await import('../model/validate.ts');
  const { splitDocuments, Yielder } = await import('../syncer/datastore/file-parse.ts');
  const { loadFiles } = await import('../syncer/datastore/file-stream.ts');
  const { Snapshots } = await import('../syncer/datastore/snapshots.ts');
  const { mergedViewOf } = await import('../syncer/merged-view.ts');
  const { matchingEndpoints } = await import('../cli/eval.ts');
  const { focusedView } = await import('../cli/explain-focus.ts');
  const { parseSelector } = await import('../model/selector/index.ts');
  const cpu = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  const rows: [string, number][] = [];
  const time = async <T>(what: string, f: () => T | Promise<T>): Promise<T> => {
    const t0 = cpu();
    const r = await f();
    rows.push([what, cpu() - t0]);
    return r;
  };
  const file = join(clusterDir, 'endpoints.yaml');
  const origin = { source: file, baseDir: clusterDir };
  const text = readFileSync(file, 'utf8');
  const docs = await splitDocuments(text, new Yielder(Number.POSITIVE_INFINITY));
  await time('parse + validate (parseDocuments, per document)', () => {
    for (const d of docs) parseDocuments(d.text, origin);
  });
  const { parsePlainDocument } = await import('../model/yaml-plain.ts');
  await time('  of which YAML read by hand (parsePlainDocument)', () => {
    for (const d of docs) parsePlainDocument(d.text);
  });
  const objects: unknown[] = [];
  loadAll(text, (o) => objects.push(o));
  await time('  of which validation (validateResource)', () => {
    for (const o of objects) validateResource(o, { source: file }, clusterDir);
  });
  objects.length = 0;
  docs.length = 0;
  await time("the file datastore's streaming read (all of the above and its bookkeeping)", () =>
    loadFiles(clusterDir),
  );
  const connection = { type: 'file' as const, dir: clusterDir };
  const snapshots = new Snapshots();
  await snapshots.read(connection);
  const view = await time("merge (the syncer's Merger over the read, replayed)", () =>
    mergedViewOf('a', connection, { snapshots }),
  );
  const sel = parseSelector("app == 'app-7'");
  await time('eval: labels and selector over every endpoint', () =>
    matchingEndpoints(view.updates, sel, 'a'),
  );
  const ends = view.updates.filter((u) => u.body.case === 'workloadEndpoint').slice(1, 3);
  await time('explain: the view focused on one flow', () =>
    focusedView('a', view.updates, {
      ips: ['10.0.0.1', '10.0.0.2'] as never,
      selves: ends.map((u) => u.key),
    }),
  );
  process.stdout.write('\nwhere the time goes (each stage alone, in this process)\n');
  for (const [what, ms] of rows)
    process.stdout.write(`${what.padEnd(76)} ${ms.toFixed(0).padStart(7)} ms cpu\n`);
}
