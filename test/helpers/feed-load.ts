// The feed under load, for the stuck-clients test and `npm run bench -- feed`: a syncer process
// (feed-load-syncer.ts) holding a state of N workload endpoints, a process of stuck agents that
// never read (feed-load-stuck.ts), and a few real FeedClients here whose delivery latency is
// measured while the whole state is rewritten round after round. The syncer's RSS is sampled from
// /proc throughout.
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FeedClient } from '../../agent/feed/client.ts';
import type { Update } from '../../proto/service.ts';

const HERE = new URL('.', import.meta.url).pathname;

export interface FeedLoadOptions {
  endpoints: number;
  rounds: number;
  stuck: number;
  /** Agents that keep up, whose latency is measured. */
  normal: number;
  maxLagBytes: number;
  maxLagAgeMs: number;
  /** Also run the rounds once before the stuck clients connect, for a baseline latency. */
  baseline?: boolean;
  log?: (line: string) => void;
}

export interface MemoryStats {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

interface SyncerStats {
  memory: MemoryStats;
  clients: number;
  queuedBytes: number;
  cutOffs: number;
}

export interface FeedLoadResult {
  /** RSS with the state loaded and the normal clients in sync, after a GC. */
  rssBase: number;
  /** RSS once the stuck clients hold their snapshots. */
  rssStuck: number;
  /** The highest RSS sampled (every 50 ms) during the churn. */
  rssPeak: number;
  /** RSS after the stuck clients were cut off, after a GC; with the syncer's own view. */
  after: SyncerStats;
  /** Queued bytes for the client furthest behind, just before the cut-offs. */
  queuedBytesBeforeCutOff: number;
  /** Per round, the slowest normal client's delivery time of the whole round (ms). */
  latencyMs: number[];
  baselineLatencyMs: number[];
  /** How long the stuck clients stayed connected after the last round (ms). */
  cutOffAfterMs: number;
  /** The syncer's view with the state loaded, before any stuck client (after a GC). */
  base: SyncerStats;
  /** Times a normal client lost its stream (cut off, or anything else). */
  normalDisconnects: number;
}

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

function nextMessage<T>(child: ChildProcess, type: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.off('message', on);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${type} from child ${child.pid}`));
    }, timeoutMs);
    const on = (m: { type: string }) => {
      if (m.type !== type) return;
      clearTimeout(timer);
      child.off('message', on);
      resolve(m as T);
    };
    child.on('message', on);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runFeedLoad(o: FeedLoadOptions): Promise<FeedLoadResult> {
  const log = o.log ?? (() => {});
  const dir = mkdtempSync(join(tmpdir(), 'fedmesh-feedload-'));
  const socket = join(dir, 'feed.sock');
  const children: ChildProcess[] = [];
  const clients: FeedClient[] = [];
  const env = { ...process.env, FEDMESH_LOG_LEVEL: process.env.FEDMESH_LOAD_LOG ?? 'error' };
  try {
    const syncer = fork(
      join(HERE, 'feed-load-syncer.ts'),
      [socket, String(o.endpoints), String(o.maxLagBytes), String(o.maxLagAgeMs)],
      { execArgv: ['--expose-gc', '--import', 'tsx'], env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
    );
    children.push(syncer);
    await nextMessage(syncer, 'ready', 120_000);
    const stats = async (gc = false) => {
      const reply = nextMessage<SyncerStats>(syncer, 'stats', 30_000);
      syncer.send({ type: 'stats', gc });
      return reply;
    };

    // The agents that keep up: each counts the endpoints it holds at the current round.
    let round = 0;
    const atRound: number[] = [];
    let synced = 0;
    let normalDisconnects = 0;
    for (let i = 0; i < o.normal; i++) {
      const held = new Map<string, number>();
      atRound.push(0);
      const c = new FeedClient(
        { target: `unix:${socket}`, nodeName: `normal-${i}`, version: 'load' },
        {
          onHello: () => {},
          onUpdates: (us: Update[]) => {
            for (const u of us) {
              if (u.body.case !== 'workloadEndpoint') continue;
              const was = held.get(u.key);
              const now = Number(u.body.value.labels.round ?? -1);
              held.set(u.key, now);
              if (was === round && now !== round) atRound[i]! -= 1;
              else if (now === round && was !== round) atRound[i]! += 1;
            }
          },
          onInSync: () => {
            synced += 1;
          },
          onConnectionState: (state) => {
            if (state === 'disconnected') normalDisconnects += 1;
          },
        },
      );
      c.start();
      clients.push(c);
    }
    while (synced < o.normal) await sleep(20);
    const base = await stats(true);
    const rssBase = base.memory.rss;
    log(`syncer with ${o.endpoints} endpoints and ${o.normal} agents in sync: RSS ${mb(rssBase)}`);

    const churn = async (): Promise<number> => {
      round += 1;
      atRound.fill(0);
      const start = Date.now();
      syncer.send({ type: 'churn', round });
      const complete = () => atRound.every((n) => n === o.endpoints);
      while (!complete()) {
        if (Date.now() - start > 120_000) throw new Error(`round ${round} not delivered within 120 s`);
        await sleep(10);
      }
      return Date.now() - start;
    };

    const baselineLatencyMs: number[] = [];
    if (o.baseline) {
      for (let r = 0; r < o.rounds; r++) baselineLatencyMs.push(await churn());
      log(`baseline (no stuck clients): round latency ms ${baselineLatencyMs.join(' ')}`);
    }

    const stuck = fork(join(HERE, 'feed-load-stuck.ts'), [`unix:${socket}`, String(o.stuck)], {
      execArgv: ['--import', 'tsx'],
      env,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.push(stuck);
    await nextMessage(stuck, 'ready', 180_000);
    // Each has its hello; let the first snapshot messages that fill their windows go out, so the
    // rounds measure stuck clients, not a connect storm.
    await sleep(3000);
    const rssStuck = rssOf(syncer.pid!);
    log(`${o.stuck} stuck clients connected: RSS ${mb(rssStuck)}`);

    let rssPeak = rssStuck;
    const sampler = setInterval(() => {
      rssPeak = Math.max(rssPeak, rssOf(syncer.pid!));
    }, 50);
    const latencyMs: number[] = [];
    try {
      for (let r = 0; r < o.rounds; r++) latencyMs.push(await churn());
      const before = await stats();
      rssPeak = Math.max(rssPeak, before.memory.rss);
      log(
        `${o.rounds} rounds with stuck clients: latency ms ${latencyMs.join(' ')}; RSS peak ${mb(rssPeak)}; queued for the furthest behind ${mb(before.queuedBytes)}; clients ${before.clients}`,
      );
      const lastRound = Date.now();
      let s = before;
      while (s.clients > o.normal) {
        if (Date.now() - lastRound > o.maxLagAgeMs + 30_000)
          throw new Error(`stuck clients not cut off: ${s.clients}`);
        await sleep(200);
        s = await stats();
        rssPeak = Math.max(rssPeak, s.memory.rss);
      }
      const cutOffAfterMs = Date.now() - lastRound;
      // Past the grace for cut-off streams to be reset (server.ts CLOSE_GRACE_MS), then a GC.
      await sleep(6_000);
      const after = await stats(true);
      log(
        `stuck clients cut off ${cutOffAfterMs} ms after the last round (${after.cutOffs} cut-offs); RSS after GC ${mb(after.memory.rss)}, heap ${mb(after.memory.heapUsed)}, buffers ${mb(after.memory.arrayBuffers)}, queued ${after.queuedBytes} B`,
      );
      return {
        rssBase,
        rssStuck,
        rssPeak,
        after,
        queuedBytesBeforeCutOff: before.queuedBytes,
        latencyMs,
        baselineLatencyMs,
        cutOffAfterMs,
        base,
        normalDisconnects,
      };
    } finally {
      clearInterval(sampler);
    }
  } finally {
    for (const c of clients) c.stop();
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

export function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
