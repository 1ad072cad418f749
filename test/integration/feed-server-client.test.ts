// The feed over a real Unix socket: a FeedServer serving a FeedCache, and real clients (the
// agent's FeedClient, or a raw grpc-js call when the test must see the wire or misbehave).
// Checks the contract of DESIGN.md "The feed contract": hello → snapshot → InSync → deltas,
// heartbeats, a reconnecting client that only hands on the difference, and a slow client that is
// cut off without stalling the others.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import type { FeedHandlers } from '../../agent/feed/client.ts';
import {
  ClientHelloSchema,
  FEED_SYNC_PATH,
  feedServiceDefinition,
  ProfileSchema,
  RemoteClusterState,
  type RemoteClusterStatus,
  RemoteClusterStatusSchema,
  ResourceKind,
  type ServerHello,
  type ServerMessage,
  type Update,
  UpdateSchema,
} from '../../proto/service.ts';
import { FeedCache } from '../../syncer/feed-cache.ts';

// The server logs every (dis)connection; keep the test output readable (lib/log.ts reads the level
// when it loads, hence the dynamic imports).
process.env.FEDMESH_LOG_LEVEL ??= 'silent';
const { FeedServer, VERSION } = await import('../../syncer/server.ts');
const { FeedClient } = await import('../../agent/feed/client.ts');

type Server = InstanceType<typeof FeedServer>;

// ---------------------------------------------------------------------------------------------
// Helpers

const cleanups = new WeakMap<TestContext, (() => unknown)[]>();

/**
 * Register a cleanup. They run in reverse order (node:test runs t.after hooks in registration
 * order): clients are closed before their server stops, the server before its directory goes.
 */
function defer(t: TestContext, fn: () => unknown): void {
  const stack = cleanups.get(t) ?? [];
  if (!cleanups.has(t)) {
    cleanups.set(t, stack);
    t.after(async () => {
      for (let f = stack.pop(); f; f = stack.pop()) await f();
    });
  }
  stack.push(fn);
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'fedmesh-feed-'));
  defer(t, () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** FeedServer.stop(), which must not hang (a hung stop would hold a syncer's shutdown). */
async function stopServer(server: Server): Promise<void> {
  const outcome = await Promise.race([server.stop().then(() => 'stopped'), sleep(3000).then(() => 'hung')]);
  assert.equal(outcome, 'stopped', 'FeedServer.stop() finishes within 3 s');
}

function profile(key: string, labels: Record<string, string> = {}): Update {
  return create(UpdateSchema, {
    key,
    cluster: 'a',
    kind: ResourceKind.PROFILE,
    body: { case: 'profile', value: create(ProfileSchema, { labels }) },
  });
}

function cacheWith(updates: Update[], inSync = true): FeedCache {
  const cache = new FeedCache();
  for (const u of updates) cache.set(u);
  if (inSync) cache.markInSync();
  return cache;
}

async function serve(
  t: TestContext,
  opts: {
    cache: FeedCache;
    listen: string;
    batchSize?: number;
    maxLagBytes?: number;
    maxLagAgeMs?: number;
    heartbeatMs?: number;
  },
): Promise<{ server: Server; target: string }> {
  const server = new FeedServer({ cluster: 'a', heartbeatMs: 60_000, ...opts });
  const target = await server.start();
  defer(t, () => stopServer(server));
  return { server, target };
}

/** A raw Sync call, recording every message, its end and its error. */
interface Raw {
  messages: ServerMessage[];
  error?: grpc.ServiceError;
  ended: boolean;
  call: grpc.ClientReadableStream<ServerMessage>;
  cases(): string[];
}

function rawCall(t: TestContext, target: string, nodeName: string, opts: { pauseAfter?: number } = {}): Raw {
  const client = new grpc.Client(target, grpc.credentials.createInsecure());
  const def = feedServiceDefinition.sync;
  const call = client.makeServerStreamRequest(
    FEED_SYNC_PATH,
    def.requestSerialize,
    def.responseDeserialize,
    create(ClientHelloSchema, { nodeName, version: 'test', capabilities: [] }),
  );
  const raw: Raw = {
    messages: [],
    ended: false,
    call,
    cases: () => raw.messages.map((m) => m.payload.case ?? 'none'),
  };
  call.on('data', (m: ServerMessage) => {
    raw.messages.push(m);
    if (raw.messages.length === opts.pauseAfter) call.pause(); // once: resume() is for the test
  });
  call.on('error', (e: grpc.ServiceError) => {
    raw.error = e;
  });
  call.on('end', () => {
    raw.ended = true;
  });
  defer(t, () => {
    call.cancel();
    client.close();
  });
  return raw;
}

/** An agent's view through the real FeedClient: what it was told, in order, and what it holds. */
class Agent implements FeedHandlers {
  log: string[] = [];
  hellos: ServerHello[] = [];
  batches: Update[][] = [];
  statuses: RemoteClusterStatus[] = [];
  inSyncs = 0;
  disconnects = 0;
  /** The state the agent's calculation graph would hold. */
  state = new Map<string, Update>();

  onHello(hello: ServerHello): void {
    this.hellos.push(hello);
    this.log.push('hello');
  }
  onUpdates(updates: Update[]): void {
    this.batches.push(updates);
    this.log.push(`updates(${updates.length})`);
    for (const u of updates) {
      if (u.deleted) this.state.delete(u.key);
      else this.state.set(u.key, u);
    }
  }
  onInSync(): void {
    this.inSyncs += 1;
    this.log.push('InSync');
  }
  onRemoteStatus(status: RemoteClusterStatus): void {
    this.statuses.push(status);
  }
  onConnectionState(state: 'connecting' | 'connected' | 'disconnected'): void {
    if (state === 'disconnected') this.disconnects += 1;
  }

  labelsOf(key: string): Record<string, string> | undefined {
    const u = this.state.get(key);
    return u?.body.case === 'profile' ? { ...u.body.value.labels } : undefined;
  }
}

function agent(t: TestContext, target: string, opts: { silenceTimeoutMs?: number } = {}) {
  const a = new Agent();
  const client = new FeedClient(
    { target, nodeName: 'node-1', version: 'test', maxBackoffMs: 500, ...opts },
    a,
  );
  client.start();
  defer(t, () => client.stop());
  return { agent: a, client };
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 3000): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
  return Date.now() - start;
}

const sortedKeys = (m: Map<string, Update>) => [...m.keys()].sort();

// ---------------------------------------------------------------------------------------------

describe('feed server and client over a Unix socket', () => {
  test('on the wire: hello, snapshot in batches, remote status, InSync, then deltas', async (t) => {
    const dir = tempDir(t);
    const cache = cacheWith(['p1', 'p2', 'p3', 'p4', 'p5'].map((k) => profile(k, { n: k })));
    cache.setRemoteStatus(
      create(RemoteClusterStatusSchema, { cluster: 'b', state: RemoteClusterState.IN_SYNC }),
    );
    const { target } = await serve(t, { cache, listen: `unix:${join(dir, 'feed.sock')}`, batchSize: 2 });
    assert.equal(target, `unix:${join(dir, 'feed.sock')}`);

    const raw = rawCall(t, target, 'node-1');
    await waitFor('InSync', () => raw.cases().includes('inSync'));
    assert.deepEqual(raw.cases(), ['hello', 'updates', 'updates', 'updates', 'remoteStatus', 'inSync']);
    const hello = raw.messages[0]?.payload;
    assert.ok(hello?.case === 'hello');
    assert.equal(hello.value.cluster, 'a');
    assert.equal(hello.value.version, VERSION);
    assert.ok(hello.value.syncerId.length > 0);
    const snapshot = raw.messages.flatMap((m) =>
      m.payload.case === 'updates' ? m.payload.value.updates : [],
    );
    assert.deepEqual(snapshot.map((u) => u.key).sort(), ['p1', 'p2', 'p3', 'p4', 'p5']);

    cache.set(profile('p6', { n: 'p6' }));
    cache.delete(ResourceKind.PROFILE, 'p1');
    await waitFor('the delta', () => raw.messages.length === 7);
    const delta = raw.messages[6]?.payload;
    assert.ok(delta?.case === 'updates');
    assert.deepEqual(
      delta.value.updates.map((u) => [u.key, u.deleted]),
      [
        ['p6', false],
        ['p1', true],
      ],
    );
  });

  test('FeedClient: hello, then the snapshot and InSync together, then deltas', async (t) => {
    const dir = tempDir(t);
    const cache = cacheWith([profile('p1', { a: '1' }), profile('p2', { a: '2' })], false);
    const { target } = await serve(t, { cache, listen: `unix:${join(dir, 'feed.sock')}` });
    const { agent: a } = agent(t, target);

    await waitFor('hello', () => a.hellos.length === 1);
    assert.equal(a.hellos[0]?.cluster, 'a');
    await sleep(100);
    assert.deepEqual(a.log, ['hello'], 'nothing is handed on before the syncer is in sync');

    cache.set(profile('p3', { a: '3' }));
    cache.markInSync();
    await waitFor('InSync', () => a.inSyncs === 1);
    assert.deepEqual(a.log, ['hello', 'updates(3)', 'InSync']);
    assert.deepEqual(sortedKeys(a.state), ['p1', 'p2', 'p3']);

    cache.set(profile('p2', { a: 'two' }));
    await waitFor('the delta', () => a.labelsOf('p2')?.a === 'two');
    assert.deepEqual(a.log, ['hello', 'updates(3)', 'InSync', 'updates(1)']);
    cache.delete(ResourceKind.PROFILE, 'p1');
    await waitFor('the delete', () => !a.state.has('p1'));
    assert.deepEqual(sortedKeys(a.state), ['p2', 'p3']);
    assert.equal(a.inSyncs, 1);
  });

  test('after a server restart the client hands on only the difference, at the new InSync', async (t) => {
    const dir = tempDir(t);
    const listen = `unix:${join(dir, 'feed.sock')}`;
    const cache1 = cacheWith([
      profile('same', { v: '1' }),
      profile('changed', { v: 'old' }),
      profile('removed', { v: '1' }),
    ]);
    const first = new FeedServer({ cluster: 'a', cache: cache1, listen, heartbeatMs: 60_000 });
    const target = await first.start();
    let firstStopped = false;
    defer(t, async () => {
      if (!firstStopped) await stopServer(first);
    });
    const { agent: a } = agent(t, target);
    await waitFor('first InSync', () => a.inSyncs === 1);
    const firstSyncer = a.hellos[0]?.syncerId;

    // The syncer restarts with a changed state; the socket path is the same.
    firstStopped = true;
    await stopServer(first);
    await waitFor('the disconnect', () => a.disconnects >= 1);
    const batchesBefore = a.batches.length;
    const cache2 = cacheWith([
      profile('same', { v: '1' }),
      profile('changed', { v: 'new' }),
      profile('added', { v: '1' }),
    ]);
    await serve(t, { cache: cache2, listen });
    await waitFor('second InSync', () => a.inSyncs === 2, 5000);

    assert.equal(a.hellos.length, 2);
    assert.notEqual(a.hellos[1]?.syncerId, firstSyncer, 'a restarted syncer has a new id');
    const after = a.batches.slice(batchesBefore);
    assert.equal(after.length, 1, 'one batch: the difference, handed on at InSync');
    assert.deepEqual(
      after[0]?.map((u) => `${u.deleted ? 'delete' : 'set'} ${u.key}`).sort(),
      ['delete removed', 'set added', 'set changed'],
      'never a flush: the unchanged entry is not sent again',
    );
    assert.deepEqual(a.log.slice(-3), ['hello', 'updates(3)', 'InSync']);
    assert.deepEqual(sortedKeys(a.state), ['added', 'changed', 'same']);
    assert.equal(a.labelsOf('changed')?.v, 'new');

    // Deltas flow again on the new connection.
    cache2.set(profile('later', { v: '1' }));
    await waitFor('a delta after the resync', () => a.state.has('later'));
  });

  test('heartbeats arrive, and keep an otherwise idle client connected', async (t) => {
    const dir = tempDir(t);
    const cache = cacheWith([profile('p1')]);
    const { target, server } = await serve(t, {
      cache,
      listen: `unix:${join(dir, 'feed.sock')}`,
      heartbeatMs: 50,
    });
    const raw = rawCall(t, target, 'watcher');
    const { agent: a } = agent(t, target, { silenceTimeoutMs: 300 });
    await waitFor('InSync', () => a.inSyncs === 1);
    await sleep(700);
    const beats = raw.messages.filter((m) => m.payload.case === 'heartbeat');
    assert.ok(beats.length >= 5, `${beats.length} heartbeats in ~700 ms at a 50 ms interval`);
    const last = beats.at(-1)?.payload;
    assert.ok(last?.case === 'heartbeat');
    assert.ok(Math.abs(Number(last.value.unixMillis) - Date.now()) < 5_000, 'heartbeat carries the time');
    assert.equal(a.disconnects, 0, 'idle for longer than the silence timeout, yet never disconnected');
    assert.equal(server.clientCount, 2);
  });

  test('a client that hears nothing reconnects, on exactly one stream', async (t) => {
    const dir = tempDir(t);
    const cache = cacheWith([profile('p1')]);
    const { target, server } = await serve(t, { cache, listen: `unix:${join(dir, 'feed.sock')}` });
    const { agent: a } = agent(t, target, { silenceTimeoutMs: 150 });
    await waitFor('a silence reconnect', () => a.hellos.length >= 2, 3000);
    await sleep(50);
    assert.ok(server.clientCount <= 1, `${server.clientCount} streams open for one client`);
    assert.deepEqual(sortedKeys(a.state), ['p1']);
  });

  test('a client that stops reading is cut off with RESOURCE_EXHAUSTED; another keeps receiving', async (t) => {
    const dir = tempDir(t);
    const cache = cacheWith([]);
    // 10 updates of ~2 kB per flush: one ~20 kB message per flush for each client. A paused
    // client's HTTP/2 window and socket buffer fill after a few dozen of them, then grpc-js's own
    // buffer, then the server's queue (maxLagBytes: 1 MB of the 6 MB pushed).
    const { target, server } = await serve(t, {
      cache,
      listen: `unix:${join(dir, 'feed.sock')}`,
      batchSize: 100,
      maxLagBytes: 1_000_000,
    });
    const slow = rawCall(t, target, 'slow', { pauseAfter: 1 });
    const { agent: normal } = agent(t, target);
    await waitFor('both connected', () => server.clientCount === 2 && normal.inSyncs === 1);
    assert.deepEqual(slow.cases(), ['hello'], 'the slow client read its hello, then stopped reading');

    const big = 'x'.repeat(2000);
    const start = Date.now();
    for (let i = 0; i < 3000; i++) {
      cache.set(profile(`p${i}`, { big }));
      if (i % 10 === 9) {
        cache.flush();
        await sleep(1); // the pace of a busy cluster; a reading client keeps up with it
      }
    }
    const pushMs = Date.now() - start;
    await waitFor('the normal client to have everything', () => normal.state.size === 3000, 10_000);
    assert.ok(pushMs < 8_000, `the syncer was not stalled: pushing took ${pushMs} ms`);
    assert.equal(normal.disconnects, 0, 'the client that keeps up is never cut off');

    await waitFor('the slow client to be cut off', () => server.clientCount === 1, 2000);
    const errorBeforeResume = slow.error;
    assert.equal(errorBeforeResume, undefined, 'nothing seen yet: the client is not reading');
    slow.call.resume();
    await waitFor('the slow client to see the error', () => slow.error !== undefined, 3000);
    assert.equal(slow.error?.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.ok(slow.messages.length < 301, `${slow.messages.length} messages reached the slow client`);

    // The one that kept up still gets deltas.
    cache.set(profile('after', { v: '1' }));
    await waitFor('a later delta', () => normal.state.has('after'));
    assert.equal(server.clientCount, 1);
  });

  test('a client whose oldest queued message is older than maxLagAgeMs is cut off, with no further change', async (t) => {
    const dir = tempDir(t);
    const cache = cacheWith([profile('p1')]);
    const { target, server } = await serve(t, {
      cache,
      listen: `unix:${join(dir, 'feed.sock')}`,
      batchSize: 10,
      maxLagAgeMs: 300,
    });
    const slow = rawCall(t, target, 'stuck', { pauseAfter: 1 });
    await waitFor('connected', () => server.clientCount === 1);
    // ~4 MB of deltas at once, in 100 messages: more than a paused grpc-js client takes in (its
    // HTTP/2 window and 16 buffered messages) and the messages in flight.
    const big = 'y'.repeat(4000);
    for (let i = 0; i < 1000; i++) cache.set(profile(`q${i}`, { big }));
    cache.flush();
    assert.equal(server.clientCount, 1, 'not cut off at once: 4 MB is within the byte bound');
    // The wait's own bound is generous (a loaded CI machine); the test is that it happens, not when.
    const ms = await waitFor('the age bound to cut it off', () => server.clientCount === 0, 15_000);
    assert.ok(ms >= 200, `cut off after ${ms} ms, not before its oldest message was 300 ms old`);
    assert.equal(server.cutOffCount, 1);
    slow.call.resume();
    await waitFor('the client to see an error', () => slow.error !== undefined, 15_000);
    assert.equal(slow.error?.code, grpc.status.RESOURCE_EXHAUSTED);
  });
});
