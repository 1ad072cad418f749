// A child process for the feed load test and bench: the syncer's feed half (FeedCache and
// FeedServer, as `fedmesh syncer` runs them) holding N workload endpoints, churned on request, so
// that its RSS is measured alone. Driven over IPC by feed-load.ts.
//   node --expose-gc --import tsx feed-load-syncer.ts SOCKET ENDPOINTS MAX_LAG_BYTES MAX_LAG_AGE_MS
import { FeedCache } from '../../syncer/feed-cache.ts';
import { FeedServer } from '../../syncer/server.ts';
import { wep } from './feed-builders.ts';

const [socket, n, maxLagBytes, maxLagAgeMs] = process.argv.slice(2);
const endpoints = Number(n);
const send = (m: unknown) => process.send?.(m);

/** Endpoint i as round r writes it: a realistic WorkloadEndpoint, one label changed per round. */
function endpoint(i: number, round: number) {
  return wep({
    node: `node-${i % 200}`,
    namespace: `ns-${i % 50}`,
    pod: `app-${i % 300}-${i.toString(36)}-pod`,
    ips: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`],
    labels: {
      app: `app-${i % 300}`,
      tier: i % 2 ? 'backend' : 'frontend',
      version: 'v1.2.3',
      round: String(round),
    },
  });
}

const cache = new FeedCache();
for (let i = 0; i < endpoints; i++) cache.set(endpoint(i, 0));
cache.markInSync();
const server = new FeedServer({
  cluster: 'a',
  cache,
  listen: `unix:${socket}`,
  maxLagBytes: Number(maxLagBytes),
  maxLagAgeMs: Number(maxLagAgeMs),
  heartbeatMs: 1000,
});
await server.start();

/** A full GC, twice, a moment apart: ArrayBuffer backing stores are freed after their wrappers. */
async function collect(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  await new Promise((r) => setTimeout(r, 200));
  gc?.();
}

process.on('message', async (m: { type: string; round?: number; gc?: boolean }) => {
  if (m.type === 'churn') {
    for (let i = 0; i < endpoints; i++) cache.set(endpoint(i, m.round ?? 0));
    cache.flush();
    send({ type: 'churned', round: m.round });
  } else if (m.type === 'stats') {
    if (m.gc) await collect();
    send({
      type: 'stats',
      memory: process.memoryUsage(),
      clients: server.clientCount,
      queuedBytes: server.queuedBytes,
      cutOffs: server.cutOffCount,
    });
  } else if (m.type === 'stop') void server.stop().then(() => process.exit(0));
});
send({ type: 'ready' });
