// The program compiled: cli/main.ts and everything it imports, bundled by esbuild (which ships with
// tsx) into dist/<build>/, one chunk per subcommand, and rebuilt when a file it was built from has
// changed. Loading TypeScript through tsx costs every process its loader thread and a transform
// per file: 0.4 s and 35 MB before a command does anything, a sixth of `fedmesh eval`'s target.
// The source tree stays the program: nothing is committed, nothing is run that was not built from
// the files as they are now; whatever goes wrong here, bin/fedmesh.js runs the sources through tsx.
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

const ROOT = new URL('..', import.meta.url).pathname;
const DIST = join(ROOT, 'dist');
/** The build in use and the files it was built from, each with its modification time and size. */
const MANIFEST = join(DIST, 'current.json');
/** Builds older than this (not the current one) are deleted; a process may still be running one. */
const KEEP_MS = 24 * 3600_000;

/** The entry point of an up-to-date build (built now if needed), or undefined: run the sources. */
export async function compiledEntry() {
  if (process.env.FEDMESH_FROM_SOURCE) return undefined;
  const current = readManifest();
  if (current && isFresh(current)) return join(DIST, current.dir, 'main.js');
  try {
    return await build();
  } catch (e) {
    if (process.env.FEDMESH_BUILD_DEBUG)
      process.stderr.write(`fedmesh: build failed, running the sources: ${e}\n`);
    return undefined;
  }
}

function readManifest() {
  try {
    return JSON.parse(readFileSync(MANIFEST, 'utf8'));
  } catch {
    return undefined;
  }
}

function signature(file) {
  try {
    const st = statSync(join(ROOT, file));
    return `${st.mtimeMs}/${st.size}`;
  } catch {
    return 'missing';
  }
}

function isFresh(m) {
  if (typeof m.dir !== 'string' || !existsSync(join(DIST, m.dir, 'main.js'))) return false;
  for (const [file, sig] of Object.entries(m.inputs ?? {})) if (signature(file) !== sig) return false;
  return true;
}

async function build() {
  const { build: esbuild } = await import('esbuild');
  const dir = `b-${Date.now().toString(36)}-${process.pid}`;
  // Two levels below the root, as cli/demo/*.ts are: their `../../` paths from import.meta.url
  // find the same files.
  const outdir = join(DIST, dir);
  const started = Date.now();
  const result = await esbuild({
    absWorkingDir: ROOT,
    entryPoints: ['cli/main.ts'],
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    outdir,
    metafile: true,
    sourcemap: 'linked',
    logLevel: 'silent',
  });
  const inputs = {};
  let changedWhileBuilding = false;
  for (const file of Object.keys(result.metafile.inputs)) {
    inputs[file] = signature(file);
    // Edited while esbuild read it: use this build once, build again next time.
    if (statSync(join(ROOT, file)).mtimeMs >= started - 1) changedWhileBuilding = true;
  }
  if (!changedWhileBuilding) {
    const tmp = `${MANIFEST}.${process.pid}`;
    writeFileSync(tmp, JSON.stringify({ dir, inputs }));
    renameSync(tmp, MANIFEST);
  }
  sweep(dir);
  return join(outdir, 'main.js');
}

/** Old builds go (never the current one, nor one younger than KEEP_MS). */
function sweep(keep) {
  mkdirSync(DIST, { recursive: true });
  for (const name of readdirSync(DIST)) {
    if (!name.startsWith('b-') || name === keep) continue;
    try {
      if (Date.now() - statSync(join(DIST, name)).mtimeMs > KEEP_MS)
        rmSync(join(DIST, name), { recursive: true, force: true });
    } catch {
      // another process swept it
    }
  }
}
