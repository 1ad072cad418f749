// The one `fedmesh` binary: subcommands per process (DESIGN.md, "The command-line contract").
// Flags are the contract; FEDMESH_<FLAG> environment variables (e.g. FEDMESH_NODE) are the
// DaemonSet's way in and are used when the flag is absent.
import { parseArgs } from 'node:util';
import { logger } from '../lib/log.ts';
import { KUBE_FLAGS } from '../syncer/datastore/kube-spec.ts';

const log = logger('cli');

const USAGE = `fedmesh — cluster-mesh federation for Kubernetes networking

Usage:
  fedmesh syncer --cluster NAME --datastore file:DIR|etcdv3:URL[,URL]|kubernetes[:KUBECONFIG] --listen HOST:PORT|:PORT|unix:PATH [--health-listen [HOST]:PORT]
                 [--tls-ca-file F --tls-cert-file F --tls-key-file F --tls-client-cn REGEX | --insecure]
                 [--max-lag-bytes SIZE (64Mi)] [--max-lag-age DURATION (120s)] [--file-datastore-root DIR]
  fedmesh agent  --node NAME --feed HOST:PORT|unix:PATH [--iptables-backend auto|nft|legacy] [--health-listen [HOST]:PORT]
                 [--tls-ca-file F --tls-cert-file F --tls-key-file F [--tls-server-name NAME] | --insecure]
  fedmesh eval   SELECTOR --cluster NAME --datastore file:DIR|etcdv3:URL[,URL]|kubernetes[:KUBECONFIG] [--output text|json]
  fedmesh status --feed HOST:PORT|unix:PATH [--output text|json] [TLS flags as for the agent | --insecure]
  fedmesh status --agent HOST:PORT [--output text|json]   (one agent: refused policies, apply state)
  fedmesh explain --cluster NAME --datastore file:DIR|etcdv3:URL[,URL]|kubernetes[:KUBECONFIG] --from ENDPOINT --to ENDPOINT --port N/tcp|N/udp|N/sctp|icmp [--source-port N] [--output text|json]
  fedmesh services-controller --cluster NAME --datastore file:DIR|kubernetes[:KUBECONFIG] [--health-listen HOST:PORT] [--remote-endpoints-grace 0s] [--remote-sync-timeout 10s]
  fedmesh services --cluster NAME --datastore file:DIR|kubernetes[:KUBECONFIG] [--output text|json]
  fedmesh demo   [--keep] [--iptables-backend nft|legacy] [--etcd]
  fedmesh demo down
  fedmesh etcd-load --endpoints URL[,URL] [ETCD FLAGS] DIR   (write a cluster directory into etcd in Calico's layout)

Datastores: --datastore file:DIR | etcdv3:URL[,URL]; with etcdv3, ETCD FLAGS are
  --etcd-ca-file F --etcd-cert-file F --etcd-key-file F --etcd-username U --etcd-password P
  (or FEDMESH_ETCD_CA_FILE, FEDMESH_ETCD_CERT_FILE, ... ; FEDMESH_ETCD_PASSWORD keeps it off the command line).

Kubernetes datastore (syncer, eval, explain): --datastore kubernetes:KUBECONFIG, or $KUBECONFIG,
or --k8s-api-endpoint URL [--k8s-token-file F] [--k8s-ca-file F] [--k8s-cert-file F --k8s-key-file F]
[--k8s-insecure-skip-tls-verify], else the in-cluster service account.

Environment: FEDMESH_<FLAG> (e.g. FEDMESH_NODE, FEDMESH_FEED) stands in for a missing flag;
FEDMESH_LOG_LEVEL sets the log level (default info; logs are JSON on stderr).
A TCP feed is mutual TLS; plain text needs --insecure. A Unix socket is created with mode 0660.
--health-listen PORT listens on loopback only, :PORT on every address, HOST:PORT on HOST.
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
  /** A boolean flag, or FEDMESH_<FLAG>=true|1. */
  const bool = (name: string): boolean => {
    if ((values as Record<string, unknown>)[name] === true) return true;
    return /^(true|1|yes)$/i.test(process.env[`FEDMESH_${name.toUpperCase().replace(/-/g, '_')}`] ?? '');
  };
  return { values: values as Record<string, unknown>, positionals, get, need, bool };
}

/** The feed's TLS flags, for the syncer (with --tls-client-cn) and its clients (--tls-server-name). */
const TLS_FLAGS = {
  'tls-ca-file': { type: 'string' },
  'tls-cert-file': { type: 'string' },
  'tls-key-file': { type: 'string' },
  insecure: { type: 'boolean' },
} as const;

function tlsFlags(f: ReturnType<typeof flags>) {
  return {
    caFile: f.get('tls-ca-file'),
    certFile: f.get('tls-cert-file'),
    keyFile: f.get('tls-key-file'),
    insecure: f.bool('insecure'),
  };
}

function bytes(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(v);
  if (!m) throw new UsageError(`--${flag} ${v}: expected a size like 1048576, 512Ki, 64Mi or 1Gi`);
  return Number(m[1]) * (m[2] === 'Gi' ? 1 << 30 : m[2] === 'Mi' ? 1 << 20 : m[2] === 'Ki' ? 1 << 10 : 1);
}

/** --etcd-ca-file and the other credentials of `--datastore etcdv3:...`. */
/** The --etcd-* and --k8s-* flags of commands that open a datastore (FEDMESH_ETCD_*, FEDMESH_K8S_*). */
const ETCD_FLAGS = ['etcd-ca-file', 'etcd-cert-file', 'etcd-key-file', 'etcd-username', 'etcd-password'];
const DATASTORE_FLAGS: FlagSpec = Object.fromEntries([
  ...ETCD_FLAGS.map((n) => [n, { type: 'string' as const }]),
  ...KUBE_FLAGS.map((n) => [n, { type: n === 'k8s-insecure-skip-tls-verify' ? 'boolean' : 'string' }]),
]);

function datastoreFlags(f: ReturnType<typeof flags>): Record<string, string | undefined> {
  return Object.fromEntries(
    [...ETCD_FLAGS, ...KUBE_FLAGS].map((n) => [n, f.values[n] === true ? 'true' : f.get(n)]),
  );
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
        ...TLS_FLAGS,
        'tls-client-cn': { type: 'string' },
        'max-lag-bytes': { type: 'string' },
        'max-lag-age': { type: 'string' },
        ...DATASTORE_FLAGS,
        'file-datastore-root': { type: 'string' },
      });
      const { runSyncer } = await import('../syncer/main.ts');
      const stop = await runSyncer({
        cluster: f.need('cluster'),
        datastore: f.need('datastore'),
        datastoreFlags: datastoreFlags(f),
        listen: f.need('listen'),
        healthListen: f.get('health-listen'),
        remoteSyncTimeoutMs: ms(f.get('remote-sync-timeout'), 'remote-sync-timeout'),
        remoteRetentionMs: ms(f.get('remote-retention'), 'remote-retention'),
        tls: { ...tlsFlags(f), clientCn: f.get('tls-client-cn') },
        maxLagBytes: bytes(f.get('max-lag-bytes'), 'max-lag-bytes'),
        maxLagAgeMs: ms(f.get('max-lag-age'), 'max-lag-age'),
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
        ...TLS_FLAGS,
        'tls-server-name': { type: 'string' },
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
        tls: { ...tlsFlags(f), serverName: f.get('tls-server-name') },
      });
      onSignals(stop);
      return -1;
    }
    case 'eval': {
      const f = flags(rest, {
        cluster: { type: 'string' },
        datastore: { type: 'string' },
        output: { type: 'string' },
        ...DATASTORE_FLAGS,
        'file-datastore-root': { type: 'string' },
      });
      const selector = f.positionals[0];
      if (selector === undefined) throw new UsageError('eval needs a SELECTOR argument');
      const { runEval } = await import('./eval.ts');
      return runEval({
        selector,
        cluster: f.need('cluster'),
        datastore: f.need('datastore'),
        datastoreFlags: datastoreFlags(f),
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
        ...DATASTORE_FLAGS,
        'file-datastore-root': { type: 'string' },
      });
      if (f.positionals.length > 0) throw new UsageError(`explain: unexpected argument ${f.positionals[0]}`);
      const { runExplain } = await import('./explain.ts');
      const sourcePort = f.get('source-port');
      return runExplain({
        cluster: f.need('cluster'),
        datastore: f.need('datastore'),
        datastoreFlags: datastoreFlags(f),
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
        agent: { type: 'string' },
        output: { type: 'string' },
        timeout: { type: 'string' },
        ...TLS_FLAGS,
        'tls-server-name': { type: 'string' },
      });
      const agent = f.get('agent');
      if (agent !== undefined) {
        const { runAgentStatus } = await import('./agent-status.ts');
        const timeoutMs = ms(f.get('timeout'), 'timeout') ?? 5_000;
        return runAgentStatus({ agent, output: f.get('output') ?? 'text', timeoutMs });
      }
      const { runStatus } = await import('./status.ts');
      return runStatus({
        feed: f.need('feed'),
        output: f.get('output') ?? 'text',
        timeoutMs: ms(f.get('timeout'), 'timeout') ?? 15_000,
        tls: { ...tlsFlags(f), serverName: f.get('tls-server-name') },
      });
    }
    case 'services-controller': {
      const f = flags(rest, {
        cluster: { type: 'string' },
        datastore: { type: 'string' },
        'health-listen': { type: 'string' },
        'remote-sync-timeout': { type: 'string' },
        'remote-endpoints-grace': { type: 'string' },
        ...DATASTORE_FLAGS,
      });
      const { runServicesController } = await import('../services/main.ts');
      const stop = await runServicesController({
        cluster: f.need('cluster'),
        datastore: f.need('datastore'),
        datastoreFlags: datastoreFlags(f),
        healthListen: f.get('health-listen'),
        remoteSyncTimeoutMs: ms(f.get('remote-sync-timeout'), 'remote-sync-timeout'),
        remoteEndpointsGraceMs: ms(f.get('remote-endpoints-grace'), 'remote-endpoints-grace'),
      });
      onSignals(stop);
      return -1;
    }
    case 'services': {
      const f = flags(rest, {
        cluster: { type: 'string' },
        datastore: { type: 'string' },
        output: { type: 'string' },
        ...DATASTORE_FLAGS,
      });
      const { runServices } = await import('./services.ts');
      return runServices({
        cluster: f.need('cluster'),
        datastore: f.need('datastore'),
        datastoreFlags: datastoreFlags(f),
        output: f.get('output') ?? 'text',
      });
    }
    case 'demo': {
      const f = flags(rest, {
        keep: { type: 'boolean' },
        etcd: { type: 'boolean' },
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
        etcd: f.values.etcd === true,
        backend,
        workDir: f.get('dir'),
        prefix: f.get('prefix'),
      });
    }
    case 'etcd-load': {
      const f = flags(rest, { endpoints: { type: 'string' }, ...DATASTORE_FLAGS });
      const dir = f.positionals[0];
      if (dir === undefined || f.positionals.length > 1)
        throw new UsageError('etcd-load needs one DIR argument');
      const { runEtcdLoad } = await import('./etcd-load.ts');
      return runEtcdLoad({ endpoints: f.need('endpoints'), flags: datastoreFlags(f), dir });
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

/**
 * Exit once stdout and stderr have taken what was written: a pipe takes 64 KB at once, and
 * process.exit drops the rest (eval's JSON over a big cluster was cut off mid-way in a pipe).
 */
function exitAfterOutput(code: number): void {
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) exitAfterOutput(code);
  },
  (e: Error) => {
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`fedmesh: ${e.message}\n\n${USAGE}`);
      exitAfterOutput(2);
      return;
    }
    process.stderr.write(`fedmesh: ${e.message}\n`);
    log.error({ err: e.message, stack: e.stack }, 'fatal');
    exitAfterOutput(1);
  },
);
