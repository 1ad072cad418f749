// `fedmesh syncer`: the local datastore plus every remote cluster's, merged and served to agents.
import { feedServerTls, type TlsFlags } from '../lib/feed-tls.ts';
import { startHealthServer } from '../lib/health.ts';
import { logger } from '../lib/log.ts';
import { gauge } from '../lib/metrics.ts';
import { clipDeep } from '../lib/text.ts';
import { RemoteClusterState } from '../proto/service.ts';
import { type DatastoreFlags, loadDrivers, openConnection, parseDatastoreSpec } from './datastore/open.ts';
import { defaultFileRoot } from './datastore/paths.ts';
import type { Datastore } from './datastore/types.ts';
import { FeedCache } from './feed-cache.ts';
import { Merger } from './merger.ts';
import { FeedServer } from './server.ts';

const log = logger('syncer');

export interface SyncerOptions {
  cluster: string;
  datastore: string;
  /** TLS and credentials for --datastore (--etcd-*, --k8s-* flags). */
  datastoreFlags?: DatastoreFlags;
  listen: string;
  healthListen?: string;
  remoteSyncTimeoutMs?: number;
  remoteRetentionMs?: number;
  /** The syncer's namespace: where a clusterAccessSecret without a namespace is looked up. */
  namespace?: string;
  /** --tls-* and --insecure (a TCP --listen needs one of them). */
  tls?: TlsFlags & { clientCn?: string };
  /** Per-client queue bounds (FeedServer's defaults when absent). */
  maxLagBytes?: number;
  maxLagAgeMs?: number;
  /**
   * RCC `fileDatastorePath`s must lie under this directory (--file-datastore-root); default for a
   * `file:DIR` local datastore: DIR's parent; none for etcd or Kubernetes.
   */
  fileDatastoreRoot?: string;
}

/** The local cluster's datastore, from `--datastore`. */
export function openDatastore(spec: string, flags: DatastoreFlags = {}): Datastore {
  return openConnection(parseDatastoreSpec(spec, flags));
}

export async function runSyncer(opts: SyncerOptions): Promise<() => Promise<void>> {
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(opts.cluster)) {
    throw new Error(`--cluster ${opts.cluster}: must be a DNS label (lower-case letters, digits, '-')`);
  }
  // Refuse a plaintext TCP feed, or half a TLS configuration, before touching any datastore.
  const tls = feedServerTls(opts.listen, opts.tls ?? {});
  const fileRoot = opts.fileDatastoreRoot ?? defaultFileRoot(opts.datastore) ?? false;
  // Remotes may use any driver: loaded now, so a configuration one cannot use is refused at once.
  await loadDrivers();
  const cache = new FeedCache();
  const merger = new Merger({
    cluster: opts.cluster,
    local: openDatastore(opts.datastore, opts.datastoreFlags),
    cache,
    // Remotes: RCC (+ its clusterAccessSecret) → ConnectionConfig (remote-config.ts) → openConnection.
    defaultSecretNamespace:
      opts.namespace ?? process.env.FEDMESH_NAMESPACE ?? process.env.POD_NAMESPACE ?? 'fedmesh-system',
    fileRoot,
    remoteSyncTimeoutMs: opts.remoteSyncTimeoutMs ?? 10_000,
    remoteRetentionMs: opts.remoteRetentionMs ?? 600_000,
  });
  const server = new FeedServer({
    cluster: opts.cluster,
    cache,
    listen: opts.listen,
    ...(tls ? { tls } : { insecure: opts.tls?.insecure === true }),
    ...(opts.maxLagBytes !== undefined ? { maxLagBytes: opts.maxLagBytes } : {}),
    ...(opts.maxLagAgeMs !== undefined ? { maxLagAgeMs: opts.maxLagAgeMs } : {}),
  });
  const address = await server.start();
  try {
    await merger.start();
  } catch (e) {
    // Never leave a listening server behind a failed start: the process could not exit.
    await server.stop();
    throw e;
  }
  gauge('fedmesh_syncer_in_sync', 'Whether the syncer serves an in-sync feed (1) or not yet (0).', [], (g) =>
    g.set(cache.inSync ? 1 : 0),
  );
  gauge('fedmesh_syncer_feed_entries', 'Entries in the merged feed.', [], (g) => g.set(cache.size));
  gauge('fedmesh_syncer_agents_connected', 'Agents connected to the feed.', [], (g) =>
    g.set(server.clientCount),
  );
  gauge(
    'fedmesh_syncer_feed_queued_bytes',
    'Bytes queued for the agent furthest behind (the feed log kept in memory for it).',
    [],
    (g) => g.set(server.queuedBytes),
  );
  gauge(
    'fedmesh_syncer_feed_cutoffs',
    'Agents cut off since start for falling too far behind (by bytes or by age).',
    [],
    (g) => g.set(server.cutOffCount),
  );
  gauge(
    'fedmesh_syncer_refused_documents',
    'Documents (and resources) refused now, over the local and remote datastores: it goes down when the input is fixed.',
    [],
    (g) => g.set(merger.refusals.count),
  );
  gauge(
    'fedmesh_remote_cluster_state',
    'Remote cluster connection state: 1 for the state it is in.',
    ['cluster', 'state'],
    (g) => {
      g.reset();
      for (const r of cache.remoteStatuses())
        g.set({ cluster: r.cluster, state: RemoteClusterState[r.state] ?? '' }, 1);
    },
  );
  gauge(
    'fedmesh_remote_cluster_endpoints',
    'Endpoints served from each remote cluster.',
    ['cluster'],
    (g) => {
      g.reset();
      for (const r of cache.remoteStatuses()) g.set({ cluster: r.cluster }, r.endpoints);
    },
  );
  gauge(
    'fedmesh_remote_cluster_conflicts',
    'Remote resources refused because they conflict with the local cluster (local wins).',
    ['cluster'],
    (g) => {
      g.reset();
      for (const r of cache.remoteStatuses()) g.set({ cluster: r.cluster }, r.conflicts);
    },
  );
  const health = opts.healthListen
    ? await startHealthServer(opts.healthListen, {
        live: () => true,
        ready: () => cache.inSync,
        // Input echoed back (names, messages, values) is clipped and escaped.
        status: () =>
          clipDeep({
            cluster: opts.cluster,
            inSync: cache.inSync,
            entries: cache.size,
            agents: server.clientCount,
            remotes: cache.remoteStatuses(),
            refused: merger.refusals.count,
            errors: merger.errors.slice(0, 20),
          }),
      })
    : undefined;
  log.info({ cluster: opts.cluster, datastore: opts.datastore, address }, 'syncer running');
  return async () => {
    await merger.stop();
    await server.stop();
    health?.close();
  };
}
