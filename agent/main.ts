// `fedmesh agent`: feed client → calculation graph → sequencer → dataplane → kernel, on one node.

import { feedClientTls, type TlsFlags } from '../lib/feed-tls.ts';
import { startHealthServer } from '../lib/health.ts';
import { logger } from '../lib/log.ts';
import { gauge } from '../lib/metrics.ts';
import { IpRouteDriver } from '../native/iproute.ts';
import { IpSetDriver } from '../native/ipset.ts';
import { type IptablesBackend, IptablesDriver } from '../native/iptables.ts';
import type { RemoteClusterStatus } from '../proto/service.ts';
import { CalculationGraph } from './calc/graph.ts';
import { Sequencer } from './calc/sequencer.ts';
import { Dataplane } from './dataplane/dataplane.ts';
import { FeedClient } from './feed/client.ts';

const log = logger('agent');

export interface AgentOptions {
  node: string;
  feed: string;
  iptablesBackend: IptablesBackend | 'auto';
  healthListen?: string;
  resyncIntervalMs?: number;
  /** --tls-* and --insecure (TCP feeds need one of them). */
  tls?: TlsFlags & { serverName?: string };
}

export const AGENT_VERSION = '0.1.0';

export function feedTarget(feed: string): string {
  if (feed.startsWith('unix:')) return feed;
  if (!/^(\[[0-9A-Fa-f:.]+\]|[^:\s[\]]+):\d{1,5}$/.test(feed))
    throw new Error(`--feed ${feed}: expected HOST:PORT, [IPv6]:PORT or unix:PATH`);
  return feed;
}

export async function runAgent(opts: AgentOptions): Promise<() => Promise<void>> {
  const started = Date.now();
  const target = feedTarget(opts.feed);
  const tls = feedClientTls(opts.feed, opts.tls ?? {}, 'agent');
  const backend =
    opts.iptablesBackend === 'auto' ? await IptablesDriver.detectBackend() : opts.iptablesBackend;
  log.info({ node: opts.node, feed: opts.feed, backend }, 'starting agent');
  const dataplane = new Dataplane(
    { ipsets: new IpSetDriver(), iptables: new IptablesDriver({ backend }), links: new IpRouteDriver() },
    { resyncIntervalMs: opts.resyncIntervalMs },
  );
  const sequencer = new Sequencer();
  let graph: CalculationGraph | undefined;
  let inSyncAt: number | undefined;
  const remotes = new Map<string, RemoteClusterStatus>();

  const feed = new FeedClient(
    { target, nodeName: opts.node, version: AGENT_VERSION, ...(tls ? { tls } : {}) },
    {
      onHello: (hello) => {
        if (graph && graph.localCluster !== hello.cluster) {
          // Mixing two clusters' state would program nonsense; keep the last good state instead.
          log.error(
            { was: graph.localCluster, now: hello.cluster },
            'the feed now serves a different cluster; ignoring it',
          );
          feed.stop();
          return;
        }
        graph ??= new CalculationGraph({ nodeName: opts.node, localCluster: hello.cluster }, sequencer);
      },
      onUpdates: (updates) => {
        if (!graph) return;
        for (const u of updates) graph.onUpdate(u);
        dataplane.onMessages(sequencer.flush());
      },
      onInSync: () => {
        if (!graph) return;
        graph.inSync();
        if (inSyncAt === undefined) {
          inSyncAt = Date.now();
          log.info({ msSinceStart: inSyncAt - started }, 'feed in sync');
          void dataplane
            .whenApplied()
            .then(() =>
              log.info(
                { msSinceInSync: Date.now() - (inSyncAt ?? 0), msSinceStart: Date.now() - started },
                'node programmed',
              ),
            );
        }
        dataplane.onMessages(sequencer.flush());
      },
      onRemoteStatus: (st) => remotes.set(st.cluster, st),
    },
  );
  gauge('fedmesh_agent_feed_connected', 'Whether the agent is connected to its feed.', [], (g) =>
    g.set(feed.connected ? 1 : 0),
  );
  gauge('fedmesh_agent_in_sync', 'Whether the agent has had its first in-sync.', [], (g) =>
    g.set(inSyncAt ? 1 : 0),
  );
  gauge('fedmesh_agent_apply_passes', 'Successful dataplane apply passes.', [], (g) =>
    g.set(dataplane.stats.applies),
  );
  gauge('fedmesh_agent_apply_failures', 'Failed dataplane apply passes (each retried).', [], (g) =>
    g.set(dataplane.stats.failures),
  );
  gauge('fedmesh_agent_last_apply_seconds', 'Duration of the last dataplane apply pass.', [], (g) =>
    g.set(dataplane.stats.lastApplyMs / 1000),
  );
  gauge('fedmesh_agent_refused_updates', 'Feed updates refused by the calculation graph (recent).', [], (g) =>
    g.set(graph?.refused.length ?? 0),
  );
  dataplane.start();
  feed.start();
  const health = opts.healthListen
    ? await startHealthServer(opts.healthListen, {
        live: () => dataplane.stats.failures < 10 || dataplane.healthy,
        ready: () => dataplane.healthy,
        status: () => ({
          node: opts.node,
          backend,
          feedConnected: feed.connected,
          feedEntries: feed.size,
          dataplane: dataplane.stats,
          refused: graph?.refused.slice(-20) ?? [],
          remotes: [...remotes.values()].map((r) => ({
            cluster: r.cluster,
            state: r.state,
            endpoints: r.endpoints,
          })),
        }),
      })
    : undefined;
  return async () => {
    feed.stop();
    dataplane.stop();
    health?.close();
  };
}
