// The one `fedmesh` binary: subcommands per process (DESIGN.md, "The command-line contract").
// Flags are the contract; FEDMESH_<FLAG> environment variables (e.g. FEDMESH_NODE) are the
// DaemonSet's way in and are used when the flag is absent.
import { parseArgs } from 'node:util';
import { logger } from '../lib/log.ts';

const log = logger('cli');

const USAGE = `fedmesh — cluster-mesh federation for Kubernetes networking

Usage:
  fedmesh syncer --cluster NAME --datastore file:DIR --listen HOST:PORT|unix:PATH [--health-listen HOST:PORT] [--file-datastore-root DIR]
  fedmesh agent  --node NAME --feed HOST:PORT|unix:PATH [--iptables-backend auto|nft|legacy] [--health-listen HOST:PORT]
  fedmesh eval   SELECTOR --cluster NAME --datastore file:DIR [--output text|json]
  fedmesh status --feed HOST:PORT|unix:PATH [--output text|json]
  fedmesh explain --cluster NAME --datastore file:DIR --from ENDPOINT --to ENDPOINT --port N/tcp|N/udp|N/sctp|icmp [--source-port N] [--output text|json]
  fedmesh demo   [--keep] [--iptables-backend nft|legacy]
  fedmesh demo down

Environment: FEDMESH_<FLAG> (e.g. FEDMESH_NODE, FEDMESH_FEED) stands in for a missing flag;
FEDMESH_LOG_LEVEL sets the log level (default info; logs are JSON on stderr).
--file-datastore-root DIR (syncer, eval, explain): an RCC's fileDatastorePath must lie under DIR;
default for --datastore file:DIR is DIR's parent, none for etcd or Kubernetes.
`;

class UsageError extends Error {}

type FlagSpec = Record<string, { type: 'string' | 'boolean'; short?: string }>;

function flags<T extends FlagSpec>(argv: string[], spec: T) {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { ...spec, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: true,
  });
  const get = (name: string): string | undefined => {
    const v = (values as Record<string, unknown>)[name];
    if (typeof v === 'string') return v;
    return process.env[`FEDMESH_${name.toUpperCase().replace(/-/g, '_')}`];
  };
  const need = (name: string): string => {
    const v = get(name);
    if (!v) throw new UsageError(`--${name} is required`);
    return v;
  };
  return { values: values as Record<string, unknown>, positionals, get, need };
}

function ms(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+)(ms|s|m)?$/.exec(v);
  if (!m) throw new UsageError(`--${flag} ${v}: expected a duration like 500ms, 10s or 5m`);
  const n = Number(m[1]);
  return m[2] === 'm' ? n * 60_000 : m[2] === 's' || m[2] === undefined ? n * 1000 : n;
}

function onSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ sig }, 'stopping');
    void stop().finally(() => process.exit(0));
  };
  process.on('SIGINT', () => handler('SIGINT'));
  process.on('SIGTERM', () => handler('SIGTERM'));
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'syncer': {
      const f = flags(rest, {
        cluster: { type: 'string' },
        datastore: { type: 'string' },
        listen: { type: 'string' },
        'health-listen': { type: 'string' },
        'remote-sync-timeout': { type: 'string' },
        'remote-retention': { type: 'string' },
        'file-datastore-root': { type: 'string' },
      });
      const { runSyncer } = await import('../syncer/main.ts');
      const stop = await runSyncer({
        cluster: f.need('cluster'),
        datastore: f.need('datastore'),
        listen: f.need('listen'),
        healthListen: f.get('health-listen'),
        remoteSyncTimeoutMs: ms(f.get('remote-sync-timeout'), 'remote-sync-timeout'),
        remoteRetentionMs: ms(f.get('remote-retention'), 'remote-retention'),
        fileDatastoreRoot: f.get('file-datastore-root'),
      });
      onSignals(stop);
      return -1;
    }
    case 'agent': {
      const f = flags(rest, {
        node: { type: 'string' },
        feed: { type: 'string' },
        'iptables-backend': { type: 'string' },
        'health-listen': { type: 'string' },
        'resync-interval': { type: 'string' },
      });
      const backend = f.get('iptables-backend') ?? 'auto';
      if (!['auto', 'nft', 'legacy'].includes(backend)) {
        throw new UsageError(`--iptables-backend ${backend}: expected auto, nft or legacy`);
      }
      const { runAgent } = await import('../agent/main.ts');
      const stop = await runAgent({
        node: f.need('node'),
        feed: f.need('feed'),
        iptablesBackend: backend as 'auto' | 'nft' | 'legacy',
        healthListen: f.get('health-listen'),
        resyncIntervalMs: ms(f.get('resync-interval'), 'resync-interval'),
      });
      onSignals(stop);
      return -1;
    }
    case 'eval': {
      const f = flags(rest, {
        cluster: { type: 'string' },
        datastore: { type: 'string' },
        output: { type: 'string' },
        'file-datastore-root': { type: 'string' },
      });
      const selector = f.positionals[0];
      if (selector === undefined) throw new UsageError('eval needs a SELECTOR argument');
      const { runEval } = await import('./eval.ts');
      return runEval({
        selector,
        cluster: f.need('cluster'),
        datastore: f.need('datastore'),
        output: f.get('output') ?? 'text',
        fileDatastoreRoot: f.get('file-datastore-root'),
      });
    }
    case 'explain': {
      const f = flags(rest, {
        cluster: { type: 'string' },
        datastore: { type: 'string' },
        from: { type: 'string' },
        to: { type: 'string' },
        port: { type: 'string' },
        'source-port': { type: 'string' },
        output: { type: 'string' },
        'file-datastore-root': { type: 'string' },
      });
      if (f.positionals.length > 0) throw new UsageError(`explain: unexpected argument ${f.positionals[0]}`);
      const { runExplain } = await import('./explain.ts');
      const sourcePort = f.get('source-port');
      return runExplain({
        cluster: f.need('cluster'),
        datastore: f.need('datastore'),
        from: f.need('from'),
        to: f.need('to'),
        port: f.need('port'),
        ...(sourcePort !== undefined ? { sourcePort } : {}),
        output: f.get('output') ?? 'text',
        fileDatastoreRoot: f.get('file-datastore-root'),
      });
    }
    case 'status': {
      const f = flags(rest, {
        feed: { type: 'string' },
        output: { type: 'string' },
        timeout: { type: 'string' },
      });
      const { runStatus } = await import('./status.ts');
      return runStatus({
        feed: f.need('feed'),
        output: f.get('output') ?? 'text',
        timeoutMs: ms(f.get('timeout'), 'timeout') ?? 15_000,
      });
    }
    case 'demo': {
      const f = flags(rest, {
        keep: { type: 'boolean' },
        'iptables-backend': { type: 'string' },
        dir: { type: 'string' },
        prefix: { type: 'string' },
      });
      const { runDemo, demoDown } = await import('./demo/demo.ts');
      if (f.positionals[0] === 'down') return demoDown({ workDir: f.get('dir'), prefix: f.get('prefix') });
      if (f.positionals.length > 0) throw new UsageError(`demo: unknown argument ${f.positionals[0]}`);
      const backend = f.get('iptables-backend') ?? 'nft';
      if (backend !== 'nft' && backend !== 'legacy')
        throw new UsageError('--iptables-backend: expected nft or legacy');
      return runDemo({
        keep: f.values.keep === true,
        backend,
        workDir: f.get('dir'),
        prefix: f.get('prefix'),
      });
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return 0;
    default:
      throw new UsageError(`unknown subcommand ${cmd}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (e: Error) => {
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`fedmesh: ${e.message}\n\n${USAGE}`);
      process.exit(2);
    }
    process.stderr.write(`fedmesh: ${e.message}\n`);
    log.error({ err: e.message, stack: e.stack }, 'fatal');
    process.exit(1);
  },
);
