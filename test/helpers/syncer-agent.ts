// A whole syncer (runSyncer) serving a Unix-socket feed, and an agent's FeedClient recording what
// it serves: the merged state by kind and key, each remote's status, the in-sync marker. Both are
// stopped when the test ends. Shared by the integration tests of the etcd and kubernetes datastores.
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import {
  RemoteClusterState,
  type RemoteClusterStatus,
  ResourceKind,
  type Update,
} from '../../proto/service.ts';

/** What an agent's feed client has seen so far. */
export class FeedRecorder {
  readonly state = new Map<string, Update>();
  readonly statuses = new Map<string, RemoteClusterStatus>();
  inSync = false;
  onHello(): void {}
  onUpdates(updates: Update[]): void {
    for (const u of updates) {
      const k = `${ResourceKind[u.kind]}|${u.key}`;
      if (u.deleted) this.state.delete(k);
      else this.state.set(k, u);
    }
  }
  onInSync(): void {
    this.inSync = true;
  }
  onRemoteStatus(s: RemoteClusterStatus): void {
    this.statuses.set(s.cluster, s);
  }
  get(kind: ResourceKind, key: string): Update | undefined {
    return this.state.get(`${ResourceKind[kind]}|${key}`);
  }
  /** Keys of one kind, sorted. */
  keys(kind: ResourceKind): string[] {
    return [...this.state.values()]
      .filter((u) => u.kind === kind)
      .map((u) => u.key)
      .sort();
  }
  remoteInSync(cluster: string): boolean {
    return this.statuses.get(cluster)?.state === RemoteClusterState.IN_SYNC;
  }
}

/**
 * Start the syncer of `cluster` on `datastore` with its feed at `<dir>/feed.sock`, and an agent
 * of node `a-node1` subscribed to it. `cleanup` takes what to stop (t.after, or a test's own list).
 */
export async function syncerWithAgent(
  opts: { cluster: string; datastore: string; dir: string; remoteSyncTimeoutMs?: number },
  cleanup: (stop: () => unknown) => void,
): Promise<FeedRecorder> {
  // Imported here: a test sets FEDMESH_LOG_LEVEL before the logger is first made.
  const { runSyncer } = await import('../../syncer/main.ts');
  const { FeedClient } = await import('../../agent/feed/client.ts');
  const socket = join(opts.dir, 'feed.sock');
  const stop = await runSyncer({
    cluster: opts.cluster,
    datastore: opts.datastore,
    listen: `unix:${socket}`,
    ...(opts.remoteSyncTimeoutMs !== undefined ? { remoteSyncTimeoutMs: opts.remoteSyncTimeoutMs } : {}),
  });
  cleanup(stop);
  const agent = new FeedRecorder();
  const client = new FeedClient({ target: `unix:${socket}`, nodeName: 'a-node1', version: 'test' }, agent);
  client.start();
  cleanup(() => client.stop());
  return agent;
}

/** `t.after` as a cleanup for syncerWithAgent. */
export function afterTest(t: TestContext): (stop: () => unknown) => void {
  return (stop) => t.after(async () => void (await stop()));
}
