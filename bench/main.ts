// `npm run bench -- <name> [args]`: dataplane | ipsets | selector | calc | merger | feed | services | repair | etcd | kube | files | eval
import { spawnSync } from 'node:child_process';
import { NODE_FLAGS } from '../lib/node-flags.ts';

const [name, ...rest] = process.argv.slice(2);
process.argv = [process.argv[0]!, process.argv[1]!, ...rest];
if (name === 'dataplane') await import('./dataplane.ts');
else if (name === 'ipsets') await import('./ipsets.ts');
else if (name === 'selector') await import('./selector.ts');
else if (name === 'etcd') await import('./etcd.ts');
else if (name === 'services') await import('./services.ts');
else if (name === 'repair') await import('./repair.ts');
else if (name === 'eval') await import('./eval.ts');
else if (name === 'merger') await import('./merger.ts');
else if (name === 'feed') await import('./feed.ts');
else if (name === 'kube') await import('./kube.ts');
else if (name === 'files') await import('./files.ts');
else if (name === 'calc') {
  if (typeof (globalThis as { gc?: unknown }).gc === 'function') await import('./calc.ts');
  else {
    // The memory figures need a forced GC: run again under `node --expose-gc` (tsx as a loader),
    // with the flags the agent runs with.
    const r = spawnSync(
      process.execPath,
      [
        ...NODE_FLAGS,
        '--expose-gc',
        '--max-old-space-size=8192',
        '--import',
        'tsx',
        process.argv[1]!,
        'calc',
        ...rest,
      ],
      { stdio: 'inherit' },
    );
    process.exit(r.status ?? 1);
  }
} else {
  process.stderr.write(
    'usage: npm run bench -- dataplane [remoteEndpoints remoteNodes policies changes legacyChanges] | ipsets [sets] | selector [endpoints] | calc [A|B|all] [changes] | services [rounds] | repair [remoteNodes trials] | merger [endpoints] | feed [endpoints stuck maxLagBytes maxLagAgeMs] | etcd [endpoints runs] | kube [pods] | files [endpoints files idleSeconds] | eval [endpoints runs]\n',
  );
  process.exit(2);
}
