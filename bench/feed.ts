// `npm run bench -- feed [endpoints] [stuck] [maxLagBytes] [maxLagAgeMs]`: the syncer's feed with
// agents that never read (issue 8: 500 stuck clients while a 10,000-endpoint state is rewritten 8
// times took a syncer from 390 MB to 1.35 GB, with no cut-off and no memory given back).
// Prints the syncer's RSS at rest, with the stuck clients connected, at its peak during the
// churn and after they were cut off, against the stated bound (test/helpers/feed-load-bound.ts),
// and the latency of the agents that keep up, against the same rounds with no stuck client.
process.env.FEDMESH_LOG_LEVEL ??= 'warn'; // read when lib/log.ts loads: the imports below are dynamic
const { mb, runFeedLoad } = await import('../test/helpers/feed-load.ts');
const { CHURN_ALLOWANCE_BYTES, rssBound, STUCK_CLIENT_BYTES } = await import(
  '../test/helpers/feed-load-bound.ts'
);

const [endpoints = 10_000, stuck = 500, maxLagBytes = 16 * 1024 * 1024, maxLagAgeMs = 60_000] = process.argv
  .slice(2)
  .map(Number);
const rounds = 8;
const normal = 3;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

const r = await runFeedLoad({
  endpoints,
  rounds,
  stuck,
  normal,
  maxLagBytes,
  maxLagAgeMs,
  baseline: true,
  log: (l) => process.stdout.write(`  ${l}\n`),
});
const bound = rssBound(r.rssBase, maxLagBytes, stuck);
const row = (what: string, v: string) => process.stdout.write(`${what.padEnd(52)} ${v}\n`);
process.stdout.write(
  `\nfeed: ${endpoints} endpoints rewritten ${rounds} times, ${stuck} stuck clients, ${normal} that keep up; cut-off at ${mb(maxLagBytes)} queued or ${maxLagAgeMs} ms\n`,
);
row('syncer RSS at rest (state loaded, GC)', mb(r.rssBase));
row(`RSS with ${stuck} stuck clients connected`, mb(r.rssStuck));
row('RSS peak during the churn (sampled every 50 ms)', mb(r.rssPeak));
row(
  'bound: rest + churn allowance + log cap + stuck x per-client',
  `${mb(bound)} = ${mb(r.rssBase)} + ${mb(CHURN_ALLOWANCE_BYTES)} + ${mb(maxLagBytes)} + ${stuck} x ${STUCK_CLIENT_BYTES / 1024} KB`,
);
row('peak / bound', (r.rssPeak / bound).toFixed(2));
row('peak cost per stuck client, above rest', `${((r.rssPeak - r.rssBase) / stuck / 1024).toFixed(0)} KB`);
row(
  'cut-offs (stuck clients cut off / total)',
  `${r.after.cutOffs} (stuck ${stuck}); agents that keep up lost their stream ${r.normalDisconnects} times`,
);
row('after the cut-offs (GC): RSS', mb(r.after.memory.rss));
row(
  'after the cut-offs (GC): heap used, at rest before',
  `${mb(r.after.memory.heapUsed)}, ${mb(r.base.memory.heapUsed)}`,
);
row(
  'after the cut-offs (GC): array buffers, queued bytes',
  `${mb(r.after.memory.arrayBuffers)}, ${r.after.queuedBytes} B`,
);
row(
  'round latency, no stuck clients: median / max (ms)',
  `${median(r.baselineLatencyMs)} / ${Math.max(...r.baselineLatencyMs)}`,
);
row(
  `round latency, ${stuck} stuck clients: median / max (ms)`,
  `${median(r.latencyMs)} / ${Math.max(...r.latencyMs)}`,
);
row(
  'latency ratio (median with / without stuck)',
  (median(r.latencyMs) / Math.max(1, median(r.baselineLatencyMs))).toFixed(2),
);
process.exit(0);
