// `fedmesh status`: connect to a syncer's feed like an agent would, wait for in-sync, and print
// each remote cluster's connection state and counts.
import { FeedClient } from '../agent/feed/client.ts';
import { feedClientTls, type TlsFlags } from '../lib/feed-tls.ts';
import { RemoteClusterState, type RemoteClusterStatus, ResourceKind, type Update } from '../proto/service.ts';

export interface StatusOptions {
  feed: string;
  output: string;
  timeoutMs: number;
  tls?: TlsFlags & { serverName?: string };
}

export async function runStatus(opts: StatusOptions): Promise<number> {
  const tls = feedClientTls(opts.feed, opts.tls ?? {}, 'status');
  const remotes = new Map<string, RemoteClusterStatus>();
  const counts = new Map<string, Map<string, number>>();
  let cluster = '';
  const result = await new Promise<'insync' | 'timeout'>((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), opts.timeoutMs);
    const client = new FeedClient(
      {
        target: opts.feed,
        nodeName: 'fedmesh-status',
        version: '0.1.0',
        maxBackoffMs: 1000,
        ...(tls ? { tls } : {}),
      },
      {
        onHello: (h) => {
          cluster = h.cluster;
        },
        onUpdates: (us: Update[]) => {
          for (const u of us) {
            if (u.deleted) continue;
            const c = u.cluster || cluster;
            const m = counts.get(c) ?? new Map<string, number>();
            counts.set(c, m);
            const k = ResourceKind[u.kind] ?? String(u.kind);
            m.set(k, (m.get(k) ?? 0) + 1);
          }
        },
        onInSync: () => {
          // Remote statuses arrive with the snapshot; give stragglers a moment.
          setTimeout(() => {
            clearTimeout(timer);
            client.stop();
            resolve('insync');
          }, 200);
        },
        onRemoteStatus: (s) => remotes.set(s.cluster, s),
      },
    );
    client.start();
    timer.unref();
    setTimeout(() => {
      if (!cluster) client.stop();
    }, opts.timeoutMs).unref();
  });
  const rows = [...remotes.values()].map((r) => ({
    cluster: r.cluster,
    state: RemoteClusterState[r.state] ?? String(r.state),
    endpoints: r.endpoints,
    profiles: r.profiles,
    pools: r.pools,
    blocks: r.blocks,
    nodes: r.nodes,
    conflicts: r.conflicts,
    detail: r.detail,
  }));
  if (opts.output === 'json') {
    const feedCounts = Object.fromEntries([...counts].map(([c, m]) => [c, Object.fromEntries(m)]));
    process.stdout.write(
      `${JSON.stringify({ cluster, inSync: result === 'insync', remotes: rows, feed: feedCounts }, null, 2)}\n`,
    );
  } else {
    process.stdout.write(
      `local cluster: ${cluster || '(no answer)'}   feed in sync: ${result === 'insync' ? 'yes' : 'no'}\n`,
    );
    const header = [
      'REMOTE',
      'STATE',
      'ENDPOINTS',
      'PROFILES',
      'POOLS',
      'BLOCKS',
      'NODES',
      'CONFLICTS',
      'DETAIL',
    ];
    const table = [
      header,
      ...rows.map((r) =>
        [r.cluster, r.state, r.endpoints, r.profiles, r.pools, r.blocks, r.nodes, r.conflicts, r.detail].map(
          String,
        ),
      ),
    ];
    const widths = header.map((_, i) => Math.max(...table.map((row) => (row[i] ?? '').length)));
    for (const row of table)
      process.stdout.write(
        `${row
          .map((c, i) => c.padEnd(widths[i] ?? 0))
          .join('  ')
          .trimEnd()}\n`,
      );
  }
  return result === 'insync' ? 0 : 1;
}
