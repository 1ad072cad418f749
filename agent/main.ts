// `fedmesh agent`: feed client → calculation graph → sequencer → dataplane → kernel, on one node.

import { feedClientTls, type TlsFlags } from '../lib/feed-tls.ts';
import { startHealthServer } from '../lib/health.ts';
import { logger } from '../lib/log.ts';
import { gauge } from '../lib/metrics.ts';
import { IpRouteDriver } from '../native/iproute.ts';
import { IpSetDriver } from '../native/ipset.ts';
import { type IptablesBackend, IptablesDriver } from '../native/iptables.ts';
import { IpMonitorSource } from '../native/kernel-events.ts';
import type { RemoteClusterStatus } from '../proto/service.ts';
import { CalculationGraph } from './calc/graph.ts';
import { Sequencer } from './calc/sequencer.ts';
import { Dataplane } from './dataplane/dataplane.ts';
import { KernelWatch } from './dataplane/kernel-watch.ts';
import type { Refusal } from './dataplane/refusals.ts';
import { FeedClient } from './feed/client.ts';

const log = logger('agent');

export interface AgentOptions {
  node: string;
  feed: string;
  iptablesBackend: IptablesBackend | 'auto';
  healthListen?: string;
  resyncIntervalMs?: number;
  /** Repair routes, FDB, ARP and vxlan.calico on kernel events (default true). */
  kernelEvents?: boolean;
  /**
   * Test hook: policies (`namespace/name` or `name`) rendered with a rule no kernel loads, to prove
   * a refused policy holds back nothing else. From FEDMESH_TEST_UNLOADABLE_POLICIES (comma list).
   */
  unloadablePolicies?: string[];
  /** --tls-* and --insecure (TCP feeds need one of them). */
  tls?: TlsFlags & { serverName?: string };
}

export const AGENT_VERSION = '0.1.0';

function unloadableFromEnv(): string[] {
  return (process.env.FEDMESH_TEST_UNLOADABLE_POLICIES ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Refusals grouped by policy (endpoint chains and policy-less objects under their own name). */
export function refusedPolicies(
  refused: readonly Refusal[],
): { policy: string; objects: string[]; reason: string }[] {
  const by = new Map<string, { policy: string; objects: string[]; reason: string }>();
  for (const r of refused) {
    if (r.policy === undefined) continue;
    const e = by.get(r.policy) ?? { policy: r.policy, objects: [], reason: r.reason };
    e.objects.push(r.object);
    by.set(r.policy, e);
  }
  return [...by.values()];
}

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
    {
      resyncIntervalMs: opts.resyncIntervalMs,
      faults: { unloadablePolicies: new Set(opts.unloadablePolicies ?? unloadableFromEnv()) },
    },
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
        graph ??= new CalculationGraph(
          { nodeName: opts.node, localCluster: hello.cluster, deferUntilInSync: true },
          sequencer,
        );
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
  gauge(
    'fedmesh_agent_dataplane_refused',
    'Kernel objects (chains, ipsets) the kernel refused in the last apply, by policy; each keeps its last good version.',
    ['table', 'object', 'policy'],
    (g) => {
      g.reset();
      for (const r of dataplane.stats.refused)
        g.set({ table: r.table, object: r.object, policy: r.policy ?? '' }, 1);
    },
  );
  gauge(
    'fedmesh_agent_refused_policies',
    'Policies the kernel refused (their last good version stays in force).',
    [],
    (g) => g.set(refusedPolicies(dataplane.stats.refused).length),
  );
  gauge('fedmesh_agent_refused_updates', 'Feed updates refused by the calculation graph (recent).', [], (g) =>
    g.set(graph?.refused.length ?? 0),
  );
  // Kernel events drive repairs of routes, FDB, ARP and vxlan.calico within a second; the
  // periodic resync stays as the safety net for what events cannot show (iptables, ipsets).
  const watch =
    opts.kernelEvents === false
      ? undefined
      : new KernelWatch(new IpMonitorSource(), dataplane, () => dataplane.desiredKernelState());
  gauge(
    'fedmesh_agent_kernel_repairs',
    'Repairs started by kernel events (someone changed our state).',
    [],
    (g) => g.set(watch?.stats.repairs ?? 0),
  );
  dataplane.start();
  watch?.start();
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
          refusedPolicies: refusedPolicies(dataplane.stats.refused),
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
    watch?.stop();
    dataplane.stop();
    health?.close();
  };
}
