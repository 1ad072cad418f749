// The merged view of one cluster, built once: the syncer's own Merger run over the cluster's
// datastore and its remotes until in sync, then stopped. `fedmesh eval` and `fedmesh explain`
// read through this, so they see exactly what the syncer serves (remote conflicts refused, remote
// network sets left out, incomplete RCCs withdrawn) and nothing it refuses. The datastores are
// read once each (datastore/snapshots.ts) and replayed to the Merger, not watched.
import type { ResourceError } from '../model/resources.ts';
import type { RemoteClusterStatus, Update } from '../proto/service.ts';
import type { ConnectionConfig } from './datastore/connection.ts';
import { Snapshots } from './datastore/snapshots.ts';
import type { Datastore, DatastoreStatus } from './datastore/types.ts';
import { FeedCache } from './feed-cache.ts';
import { Merger } from './merger.ts';

export interface MergedView {
  /** What the syncer would serve its agents. */
  updates: Update[];
  /** Each remote's state, counts and refusals (as `fedmesh status` shows them). */
  remotes: RemoteClusterStatus[];
  /** Documents refused by validation. */
  errors: ResourceError[];
  /** False when the wait for in-sync timed out: the view may be partial. */
  inSync: boolean;
}

export async function buildMergedView(opts: {
  cluster: string;
  local: Datastore;
  openRemote?: (c: ConnectionConfig) => Datastore;
  defaultSecretNamespace?: string;
  fileRoot?: string | false;
  /** How long to wait for the local datastore and the remotes (the syncer's bounded wait). */
  timeoutMs?: number;
}): Promise<MergedView> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const cache = new FeedCache();
  // The local datastore's own state: a cluster that cannot be read is an error, not an empty view.
  let localStatus: { status: DatastoreStatus; detail?: string } | undefined;
  const local: Datastore = {
    description: opts.local.description,
    start: (h) =>
      opts.local.start({
        ...h,
        onStatus: (status, detail) => {
          localStatus = { status, ...(detail !== undefined ? { detail } : {}) };
          h.onStatus(status, detail);
        },
      }),
    stop: () => opts.local.stop(),
  };
  const merger = new Merger({
    cluster: opts.cluster,
    local,
    cache,
    ...(opts.openRemote ? { openRemote: opts.openRemote } : {}),
    ...(opts.defaultSecretNamespace ? { defaultSecretNamespace: opts.defaultSecretNamespace } : {}),
    ...(opts.fileRoot !== undefined ? { fileRoot: opts.fileRoot } : {}),
    remoteSyncTimeoutMs: timeoutMs,
    // A remote that fails while the view is built is shown as failed, not kept.
    remoteRetentionMs: 0,
  });
  try {
    await merger.start();
    const deadline = Date.now() + timeoutMs + 1000;
    while (!cache.inSync && Date.now() < deadline) {
      if (localStatus?.status === 'ConnectionFailed') break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const synced = cache.inSync;
    if (!synced && localStatus?.status !== 'InSync') {
      throw new Error(
        `${opts.local.description}: ${localStatus?.detail ?? localStatus?.status ?? 'not read'}`,
      );
    }
    return {
      updates: [...cache.all()],
      remotes: cache.remoteStatuses(),
      errors: [...merger.errors],
      inSync: synced,
    };
  } finally {
    await merger.stop();
  }
}

/**
 * A merged view of the cluster behind a connection (the `--datastore` of eval and explain), its
 * datastore and its remotes' read through `snapshots` (shared between views: each read once).
 */
export function mergedViewOf(
  cluster: string,
  connection: ConnectionConfig,
  opts: { timeoutMs?: number; fileRoot?: string | false; snapshots?: Snapshots } = {},
): Promise<MergedView> {
  const snapshots = opts.snapshots ?? new Snapshots({ once: true });
  return buildMergedView({
    cluster,
    local: snapshots.datastore(connection),
    openRemote: (c) => snapshots.datastore(c, true),
    ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    ...(opts.fileRoot !== undefined ? { fileRoot: opts.fileRoot } : {}),
  });
}
