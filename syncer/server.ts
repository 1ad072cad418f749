// Serves the merged feed over gRPC (TCP with mutual TLS, or a Unix socket). Each agent gets the
// snapshot, InSync, then deltas, with heartbeats.
//
// Memory is bounded per client in bytes, and does not grow with the number of clients:
// - deltas are encoded once into a shared log (feed-log.ts); a client holds a cursor into it, so
//   its queue costs nothing until it falls behind, and then only the log behind it;
// - a client's snapshot is read lazily from the cache as the client takes it, one small message
//   at a time, so a client that never reads holds one message, not the whole state; each Update
//   is encoded once for all clients (feed-encoding.ts);
// - at most MAX_IN_FLIGHT messages per client are handed to grpc-js (it copies each one);
// - a client whose queue exceeds maxLagBytes, or whose oldest queued message is older than
//   maxLagAgeMs, is cut off (RESOURCE_EXHAUSTED; it reconnects and resyncs from a fresh snapshot),
//   which releases its cursor and with it the log behind it. A cut-off client that does not even
//   read its status within CLOSE_GRACE_MS has its HTTP/2 stream reset and, unless it has opened a
//   new feed stream on it since, its connection closed: that releases what grpc-js and the socket
//   still hold for it.
// The others never wait for a slow one: nothing is written to a client that has not taken the last.
import { randomUUID } from 'node:crypto';
import { chmodSync, unlinkSync } from 'node:fs';
import { create, type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { certificateIdentities, ReloadingServerCredentials, type ServerTlsConfig } from '../lib/feed-tls.ts';
import { describeListenAddress, type ListenAddress, parseListenAddress } from '../lib/listen-address.ts';
import { logger } from '../lib/log.ts';
import {
  type ClientHello,
  feedServiceDefinition,
  type RemoteClusterStatus,
  type ServerMessage,
  ServerMessageSchema,
  type Update,
} from '../proto/service.ts';
import type { FeedCache, FeedSubscriber } from './feed-cache.ts';
import { encodeUpdatesMessage } from './feed-encoding.ts';
import { FeedLog, type LogEntry } from './feed-log.ts';

const log = logger('feed-server');

export const VERSION = '0.1.0';

/** Defaults for production (DESIGN.md, the feed contract): see the flags of `fedmesh syncer`. */
export const DEFAULT_MAX_LAG_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MAX_LAG_AGE_MS = 120_000;
/** A node name is a DNS subdomain (RFC 1123; Kubernetes' limit for Node names). */
export const MAX_NODE_NAME_BYTES = 253;
const NODE_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
/** A hello is a few hundred bytes; anything bigger is refused by grpc-js before it is decoded. */
const MAX_HELLO_BYTES = 16 * 1024;
const MAX_IN_FLIGHT = 2;
const CLOSE_GRACE_MS = 5_000;

export interface FeedServerOptions {
  cluster: string;
  cache: FeedCache;
  listen: string;
  /** Mutual TLS (required on TCP unless `insecure`). */
  tls?: ServerTlsConfig;
  /** Serve plaintext on TCP (--insecure). */
  insecure?: boolean;
  tlsReloadMs?: number;
  /** Updates per message (snapshot and deltas). */
  batchSize?: number;
  /** A client with more than this many bytes queued is cut off. */
  maxLagBytes?: number;
  /** A client whose oldest queued message is older than this is cut off. */
  maxLagAgeMs?: number;
  heartbeatMs?: number;
}

export function parseListen(listen: string): ListenAddress {
  return parseListenAddress(listen, '--listen', { unix: true });
}

/** The grpc-js address for a TCP listen address (every address: dual-stack `[::]`). */
function grpcAddress(a: Extract<ListenAddress, { kind: 'tcp' }>, host = a.host): string {
  const h = host ?? '::';
  return `${h.includes(':') ? `[${h}]` : h}:${a.port}`;
}

/** For logs: at most 64 characters of a name a client sent, escaped. */
function shown(name: string): string {
  const s = JSON.stringify(name.slice(0, 64)).slice(1, -1);
  return name.length > 64 ? `${s}…(${Buffer.byteLength(name)} bytes)` : s;
}

/** Why a hello's node name is refused, or undefined. */
export function nodeNameProblem(name: string): string | undefined {
  if (name === '') return 'the hello has no node name';
  const bytes = Buffer.byteLength(name);
  if (bytes > MAX_NODE_NAME_BYTES)
    return `node name of ${bytes} bytes is longer than ${MAX_NODE_NAME_BYTES} (a DNS name)`;
  if (!NODE_NAME.test(name))
    return 'node name must be a DNS name (letters, digits, "-", "_", "."; alphanumeric at both ends)';
  return undefined;
}

function encode(m: ServerMessage): Uint8Array {
  return toBinary(ServerMessageSchema, m);
}

function message(payload: MessageInitShape<typeof ServerMessageSchema>['payload']): Uint8Array {
  return encode(create(ServerMessageSchema, { payload }));
}

const updatesMessage = encodeUpdatesMessage;

/** The server's side of the service: messages arrive already encoded (the log's shared bytes). */
const encodedSyncDefinition = {
  sync: {
    ...feedServiceDefinition.sync,
    responseSerialize: (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength),
    responseDeserialize: (b: Buffer) => new Uint8Array(b),
  },
} satisfies grpc.ServiceDefinition;

type SyncCall = grpc.ServerWritableStream<ClientHello, Uint8Array>;

interface Http2StreamLike {
  close(code?: number): void;
  closed: boolean;
  session?: Http2SessionLike;
}
interface Http2SessionLike {
  destroy(): void;
  destroyed: boolean;
}

/** grpc-js's http2 stream under a call, to reset it (no public API); undefined if not found. */
function http2StreamOf(call: SyncCall): Http2StreamLike | undefined {
  let c: unknown = (call as unknown as { call?: unknown }).call;
  for (let i = 0; i < 8 && c && typeof c === 'object'; i++) {
    const s = (c as { stream?: { close?: unknown } }).stream;
    if (s && typeof s.close === 'function') return s as Http2StreamLike;
    c = (c as { nextCall?: unknown }).nextCall;
  }
  return undefined;
}

/** Feed streams open per HTTP/2 connection: a cut-off client's connection is closed only if none. */
const openStreams = new WeakMap<Http2SessionLike, number>();

class FeedConnection {
  /** The last log entry handed on; the client's queue is everything after it. */
  private last: LogEntry;
  /** While the snapshot is being sent: the cache's entries, read as the client takes them. */
  private snapshot?: Iterator<Update>;
  /** Sent after the snapshot: remote statuses and, if the cache was in sync, InSync. */
  private afterSnapshot: Uint8Array[];
  private readonly subscribedAt = Date.now();
  private inFlight = 0;
  private closed = false;
  private readonly session?: Http2SessionLike;

  constructor(
    private readonly call: SyncCall,
    readonly node: string,
    private readonly feedLog: FeedLog,
    hello: Uint8Array,
    snapshot: Iterator<Update>,
    afterSnapshot: Uint8Array[],
    private readonly batchSize: number,
    private readonly onClose: () => void,
  ) {
    this.last = feedLog.head;
    this.session = http2StreamOf(call)?.session;
    if (this.session) openStreams.set(this.session, (openStreams.get(this.session) ?? 0) + 1);
    this.snapshot = snapshot;
    this.afterSnapshot = [hello, ...afterSnapshot];
    // The hello goes first, before the snapshot.
    this.write(this.afterSnapshot.shift()!);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Bytes queued and the age of the oldest queued message (the snapshot counts from subscription). */
  lag(now: number): { bytes: number; ageMs: number } {
    const bytes = this.feedLog.bytesAfter(this.last);
    if (this.snapshot || this.afterSnapshot.length > 0) return { bytes, ageMs: now - this.subscribedAt };
    return { bytes, ageMs: this.last.next ? now - this.last.next.at : 0 };
  }

  pump(): void {
    while (!this.closed && this.inFlight < MAX_IN_FLIGHT) {
      const next = this.nextMessage();
      if (!next) return;
      this.write(next);
    }
  }

  private nextMessage(): Uint8Array | undefined {
    if (this.snapshot) {
      const chunk: Update[] = [];
      for (let r = this.snapshot.next(); !r.done; r = this.snapshot.next()) {
        chunk.push(r.value);
        if (chunk.length >= this.batchSize) break;
      }
      if (chunk.length > 0) return updatesMessage(chunk);
      this.snapshot = undefined;
    }
    const tail = this.afterSnapshot.shift();
    if (tail) return tail;
    const e = this.last.next;
    if (!e) return undefined;
    this.last = e;
    return e.bytes;
  }

  private write(bytes: Uint8Array): void {
    this.inFlight += 1;
    // The callback runs when grpc-js has handed the message to HTTP/2 within the client's flow
    // control window: a client that does not read stops the pump here, with MAX_IN_FLIGHT held.
    this.call.write(bytes, () => {
      this.inFlight -= 1;
      this.pump();
    });
  }

  close(err?: Partial<grpc.StatusObject>): void {
    if (this.closed) return;
    this.closed = true;
    this.snapshot = undefined;
    this.afterSnapshot = [];
    const session = this.session;
    if (session) openStreams.set(session, (openStreams.get(session) ?? 1) - 1);
    this.onClose();
    if (!err) {
      this.call.end();
      return;
    }
    // grpc-js sends a status to the client for an 'error' event (destroy() would send none).
    this.call.emit('error', Object.assign(new Error(err.details), err));
    // A client that reads nothing never takes that status, and grpc-js and the socket keep what
    // was queued for it until it does: reset the stream after a grace period, and close the
    // connection unless the client has started a new feed stream on it (a slow client that read
    // its status and reconnected at once).
    const stream = http2StreamOf(this.call);
    if (stream)
      setTimeout(() => {
        if (!stream.closed) stream.close(0x8 /* NGHTTP2_CANCEL */);
        if (session && !session.destroyed && (openStreams.get(session) ?? 0) === 0) session.destroy();
      }, CLOSE_GRACE_MS).unref();
  }
}

export class FeedServer {
  private readonly server = new grpc.Server({
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.max_receive_message_length': MAX_HELLO_BYTES,
  });
  private readonly clients = new Set<FeedConnection>();
  private readonly feedLog = new FeedLog();
  private heartbeat?: NodeJS.Timeout;
  private lagCheck?: NodeJS.Timeout;
  private unfollow?: () => void;
  private readonly syncerId = randomUUID();
  private socketPath?: string;
  private credentials?: ReloadingServerCredentials;
  private cutOffs = 0;

  constructor(private readonly opts: FeedServerOptions) {
    this.server.addService(encodedSyncDefinition, {
      sync: (call: SyncCall) => this.onSync(call),
    });
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** Clients cut off for falling behind, since start. */
  get cutOffCount(): number {
    return this.cutOffs;
  }

  /** Bytes of log kept for the client furthest behind (what the queues cost in memory). */
  get queuedBytes(): number {
    let max = 0;
    const now = Date.now();
    for (const c of this.clients) max = Math.max(max, c.lag(now).bytes);
    return max;
  }

  private get maxLagBytes(): number {
    return this.opts.maxLagBytes ?? DEFAULT_MAX_LAG_BYTES;
  }

  private get maxLagAgeMs(): number {
    return this.opts.maxLagAgeMs ?? DEFAULT_MAX_LAG_AGE_MS;
  }

  async start(): Promise<string> {
    const address = parseListen(this.opts.listen);
    if (address.kind === 'tcp' && !this.opts.tls && !this.opts.insecure)
      throw new Error(
        `--listen ${this.opts.listen}: a TCP feed needs TLS (--tls-ca-file, --tls-cert-file, --tls-key-file, --tls-client-cn), or --insecure to serve it in plain text`,
      );
    if (this.opts.tls)
      this.credentials = new ReloadingServerCredentials(this.opts.tls, this.opts.tlsReloadMs);
    const creds = this.credentials ?? grpc.ServerCredentials.createInsecure();
    let port: number;
    if (address.kind === 'unix') {
      try {
        unlinkSync(address.path); // a stale socket from a previous run
      } catch {
        // none
      }
      this.socketPath = address.path;
      // The socket is created with 0660 (owner and group), never more: the umask is narrowed
      // while grpc-js creates it, then the mode is set explicitly whatever the umask was.
      const umask = process.umask(0o117);
      try {
        port = await this.bind(`unix:${address.path}`, creds);
      } finally {
        process.umask(umask);
      }
      chmodSync(address.path, 0o660);
    } else {
      try {
        port = await this.bind(grpcAddress(address), creds);
      } catch (e) {
        // Every address, on a host without IPv6: IPv4's every address.
        if (address.host !== undefined) throw e;
        port = await this.bind(grpcAddress(address, '0.0.0.0'), creds);
      }
    }
    this.unfollow = this.opts.cache.follow(this.logWriter());
    this.heartbeat = setInterval(() => {
      if (this.clients.size > 0)
        this.append(message({ case: 'heartbeat', value: { unixMillis: BigInt(Date.now()) } }));
    }, this.opts.heartbeatMs ?? 10_000);
    this.heartbeat.unref();
    // Age is checked on a timer as well: a client can fall behind while nothing new arrives.
    this.lagCheck = setInterval(
      () => this.cutOffLaggards(),
      Math.min(1000, Math.max(50, this.maxLagAgeMs / 4)),
    );
    this.lagCheck.unref();
    log.info(
      {
        listen: this.opts.listen,
        on: describeListenAddress(address),
        port,
        tls: this.opts.tls !== undefined,
        maxLagBytes: this.maxLagBytes,
        maxLagAgeMs: this.maxLagAgeMs,
      },
      'feed server listening',
    );
    if (address.kind === 'unix') return `unix:${address.path}`;
    // Every address includes IPv4 loopback (dual-stack [::] or 0.0.0.0): a target that works here.
    return grpcAddress({ ...address, port }, address.host ?? '127.0.0.1');
  }

  private bind(target: string, creds: grpc.ServerCredentials): Promise<number> {
    return new Promise<number>((resolve, reject) =>
      this.server.bindAsync(target, creds, (err, p) =>
        err ? reject(new Error(`--listen ${this.opts.listen}: ${err.message}`)) : resolve(p),
      ),
    );
  }

  /** Ends every client's stream with UNAVAILABLE: each reconnects (and re-authenticates). */
  disconnectAll(reason = 'the syncer closed the connection; reconnect'): void {
    for (const c of [...this.clients]) c.close({ code: grpc.status.UNAVAILABLE, details: reason });
  }

  async stop(): Promise<void> {
    clearInterval(this.heartbeat);
    clearInterval(this.lagCheck);
    this.unfollow?.();
    this.credentials?.stop();
    for (const c of [...this.clients]) c.close();
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    if (this.socketPath) {
      try {
        unlinkSync(this.socketPath);
      } catch {
        // gone
      }
    }
  }

  /** Appends the cache's changes to the log, encoded once for every client. */
  private logWriter(): FeedSubscriber {
    const batch = this.opts.batchSize ?? 100;
    return {
      onUpdates: (updates: Update[]) => {
        if (this.clients.size === 0) return; // nobody to send it to; a new client gets a snapshot
        for (let i = 0; i < updates.length; i += batch)
          this.append(updatesMessage(updates.slice(i, i + batch)), false);
        this.afterAppend();
      },
      onInSync: () => this.append(message({ case: 'inSync', value: {} })),
      onRemoteStatus: (status: RemoteClusterStatus) =>
        this.append(message({ case: 'remoteStatus', value: status })),
    };
  }

  private append(bytes: Uint8Array, pump = true): void {
    this.feedLog.append(bytes);
    if (pump) this.afterAppend();
  }

  private afterAppend(): void {
    for (const c of this.clients) c.pump();
    this.cutOffLaggards();
  }

  private cutOffLaggards(): void {
    const now = Date.now();
    for (const c of this.clients) {
      const lag = c.lag(now);
      if (lag.bytes <= this.maxLagBytes && lag.ageMs <= this.maxLagAgeMs) continue;
      this.cutOffs += 1;
      log.warn(
        {
          node: c.node,
          queuedBytes: lag.bytes,
          oldestMs: lag.ageMs,
          maxLagBytes: this.maxLagBytes,
          maxLagAgeMs: this.maxLagAgeMs,
        },
        'agent too far behind; disconnecting it (it will resync from a fresh snapshot)',
      );
      c.close({
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: `client too slow (${lag.bytes} bytes queued, oldest ${lag.ageMs} ms); reconnect for a fresh snapshot`,
      });
    }
  }

  private refuse(call: SyncCall, code: grpc.status, details: string): void {
    call.emit('error', Object.assign(new Error(details), { code, details }));
  }

  private onSync(call: SyncCall): void {
    const hello = call.request;
    const peer = call.getPeer();
    const problem = nodeNameProblem(hello.nodeName);
    if (problem) {
      // Never log the whole name: it is whatever the client sent (up to MAX_HELLO_BYTES).
      log.warn({ node: shown(hello.nodeName), peer, problem }, 'agent hello refused');
      this.refuse(call, grpc.status.INVALID_ARGUMENT, `hello refused: ${problem}`);
      return;
    }
    const node = hello.nodeName;
    if (this.opts.tls) {
      const cert = call.getAuthContext()?.sslPeerCertificate;
      const names = cert ? certificateIdentities(cert) : [];
      if (!names.some((n) => this.opts.tls!.clientIdentity.test(n))) {
        log.warn(
          { node, peer, identities: names.slice(0, 8).map(shown), want: this.opts.tls.clientIdentity.source },
          'agent refused: its certificate matches no --tls-client-cn',
        );
        this.refuse(
          call,
          grpc.status.PERMISSION_DENIED,
          "client certificate refused: neither its CN nor a URI SAN matches the syncer's --tls-client-cn",
        );
        return;
      }
    }
    log.info({ node, version: hello.version.slice(0, 64), peer }, 'agent connected');
    const cache = this.opts.cache;
    cache.flush(); // pending changes go to the log first: the snapshot below already holds them
    const afterSnapshot = cache.remoteStatuses().map((st) => message({ case: 'remoteStatus', value: st }));
    if (cache.inSync) afterSnapshot.push(message({ case: 'inSync', value: {} }));
    const client: FeedConnection = new FeedConnection(
      call,
      node,
      this.feedLog,
      message({
        case: 'hello',
        value: { cluster: this.opts.cluster, version: VERSION, syncerId: this.syncerId },
      }),
      cache.all(),
      afterSnapshot,
      this.opts.batchSize ?? 100,
      () => this.clients.delete(client),
    );
    this.clients.add(client);
    client.pump();
    call.on('cancelled', () => {
      log.info({ node }, 'agent disconnected');
      client.close();
    });
    call.on('error', () => client.close());
  }
}
