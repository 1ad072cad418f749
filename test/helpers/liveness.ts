// Polls a liveness URL every `everyMs`, as a kubelet would (but far more often), and records the
// longest time between two answers: the figure for "liveness answers within 100 ms".
import { request } from 'node:http';

export interface LivenessPoll {
  /** Stop polling; the longest gap between answers (ms), the number of answers and of failures. */
  stop(): Promise<{ maxGapMs: number; answers: number; failures: number }>;
}

function get(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request(url, { timeout: 30_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

export function pollLiveness(url: string, everyMs = 50): LivenessPoll {
  let stopped = false;
  let last = performance.now();
  let maxGapMs = 0;
  let answers = 0;
  let failures = 0;
  const loop = (async () => {
    while (!stopped) {
      const status = await get(url);
      const now = performance.now();
      if (status === 200) {
        maxGapMs = Math.max(maxGapMs, now - last);
        last = now;
        answers += 1;
      } else failures += 1;
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      // The time since the last answer counts too (a stall at the very end).
      maxGapMs = Math.max(maxGapMs, performance.now() - last - everyMs);
      return { maxGapMs, answers, failures };
    },
  };
}

/**
 * The syncer's core on a file datastore directory (merger and feed cache, no gRPC), with a health
 * server on a free loopback port: what the load test and the benchmark measure.
 */
export async function fileSyncer(dir: string) {
  const { startHealthServer } = await import('../../lib/health.ts');
  const { FileDatastore } = await import('../../syncer/datastore/file.ts');
  const { FeedCache } = await import('../../syncer/feed-cache.ts');
  const { Merger } = await import('../../syncer/merger.ts');
  const cache = new FeedCache();
  const merger = new Merger({
    cluster: 'a',
    local: new FileDatastore(dir),
    cache,
    resolveRemote: () => ({ incomplete: 'no remotes here' }),
    remoteSyncTimeoutMs: 1000,
    remoteRetentionMs: 60_000,
  });
  const health = await startHealthServer('127.0.0.1:0', {
    live: () => true,
    ready: () => cache.inSync,
    status: () => ({}),
  });
  const address = health.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    cache,
    merger,
    livenessUrl: `http://127.0.0.1:${port}/liveness`,
    async inSync() {
      while (!cache.inSync) await new Promise((r) => setTimeout(r, 20));
    },
    async close() {
      await merger.stop();
      health.close();
    },
  };
}
