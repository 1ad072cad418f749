// eval and explain over a big cluster: N workload endpoints in a file datastore (one YAML file),
// `fedmesh eval` for one selector and `fedmesh explain` for one flow, each run as an operator runs
// it (a fresh process, several times), with its wall time, CPU time and peak RSS beside the
// issue's targets (3 s, 300 MB), and the machine's load as it started; then where the time goes,
// stage by stage, in this process (CPU ms).
//   npm run bench -- eval [endpoints=100000] [runs=3]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { bigClusterText } from '../test/helpers/big-cluster.ts';

const [N = 100_000, RUNS = 3] = process.argv.slice(2).map(Number);
const TARGET_MS = 3000;
const TARGET_MB = 300;
const BIN = new URL('../bin/fedmesh.js', import.meta.url).pathname;

interface Measured {
  ms: number;
  /** CPU time (user + system) of the command, all its threads: what the machine's load does not inflate much. */
  cpuMs: number;
  mb: number;
  ok: boolean;
  /** The machine's 1-minute load average as the command started (2 cores: above 2, others are waiting too). */
  load: number;
}

/** Wall time, CPU time and peak RSS of one fedmesh command. */
function measure(args: string[]): Measured {
  // GNU time (Debian's `time`) reports the peak RSS and CPU; without it, only the wall time is measured.
  const timed = existsSync('/usr/bin/time');
  const [cmd, argv] = timed
    ? ['/usr/bin/time', ['-f', '%U %S %M', process.execPath, BIN, ...args]]
    : [process.execPath, [BIN, ...args]];
  const load = loadavg()[0] as number;
  const t0 = performance.now();
  const r = spawnSync(cmd, argv, {
    encoding: 'utf8',
    env: { ...process.env, FEDMESH_LOG_LEVEL: 'silent' },
    maxBuffer: 256 * 1024 * 1024,
  });
  const ms = performance.now() - t0;
  const [u, sys, kb] = timed
    ? (/([\d.]+) ([\d.]+) (\d+)\s*$/
        .exec(r.stderr ?? '')
        ?.slice(1)
        .map(Number) ?? [])
    : [];
  const cpuMs = ((u ?? Number.NaN) + (sys ?? Number.NaN)) * 1000;
  return { ms, cpuMs, mb: (kb ?? Number.NaN) / 1024, ok: r.status === 0, load };
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
  const evalArgs = ['eval', "app == 'app-7'", ...ds, '--output', 'json'];
  const explainArgs = [
    'explain',
    ...ds,
    '--from',
    'a/shop/pod-1',
    '--to',
    'a/shop/pod-2',
    '--port',
    '80/tcp',
  ];
  // Each command RUNS times, alternately: one run on a busy machine says little.
  const rows: [string, Measured][] = [];
  for (let i = 0; i < RUNS; i++) {
    rows.push(['eval "app == \'app-7\'"', measure(evalArgs)]);
    rows.push(['explain shop/pod-1 -> shop/pod-2 tcp/80', measure(explainArgs)]);
  }
  rows.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  process.stdout.write(
    `eval and explain over ${N.toLocaleString('en')} endpoints (a fresh process each, ${RUNS} runs each)\n`,
  );
  process.stdout.write(
    `${'command'.padEnd(42)} ${'ms'.padStart(8)} ${'target'.padStart(7)} ${'ratio'.padStart(6)} ${'cpu ms'.padStart(7)} ${'peak MB'.padStart(8)} ${'target'.padStart(7)} ${'ratio'.padStart(6)} ${'load'.padStart(5)}\n`,
  );
  for (const [what, m] of rows) {
    process.stdout.write(
      `${what.padEnd(42)} ${m.ms.toFixed(0).padStart(8)} ${String(TARGET_MS).padStart(7)} ${(m.ms / TARGET_MS).toFixed(2).padStart(6)} ${m.cpuMs.toFixed(0).padStart(7)} ${m.mb.toFixed(0).padStart(8)} ${String(TARGET_MB).padStart(7)} ${(m.mb / TARGET_MB).toFixed(2).padStart(6)} ${m.load.toFixed(2).padStart(5)}${m.ok ? '' : '  (exited non-zero)'}\n`,
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
