// `npm run bench -- <name> [args]`: dataplane | selector | calc | files
import { spawnSync } from 'node:child_process';

const [name, ...rest] = process.argv.slice(2);
process.argv = [process.argv[0]!, process.argv[1]!, ...rest];
if (name === 'dataplane') await import('./dataplane.ts');
else if (name === 'selector') await import('./selector.ts');
else if (name === 'files') await import('./files.ts');
else if (name === 'calc') {
  if (typeof (globalThis as { gc?: unknown }).gc === 'function') await import('./calc.ts');
  else {
    // The memory figures need a forced GC: run again under `node --expose-gc` (tsx as a loader).
    const r = spawnSync(
      process.execPath,
      ['--expose-gc', '--max-old-space-size=8192', '--import', 'tsx', process.argv[1]!, 'calc', ...rest],
      { stdio: 'inherit' },
    );
    process.exit(r.status ?? 1);
  }
} else {
  process.stderr.write(
    'usage: npm run bench -- dataplane [remoteEndpoints remoteNodes policies] | selector [endpoints] | calc [A|B|all] [changes] | files [endpoints files idleSeconds]\n',
  );
  process.exit(2);
}
