// The agent's end of the feed. One stream: snapshot, InSync, deltas. On disconnect the dataplane
// stays as it is (fail-static); the client reconnects with backoff and, when the new snapshot is
// complete, hands on only the difference from what it had — it never flushes and rebuilds.
import { create, equals } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { type ClientCredentials, type ClientTlsConfig, clientCredentials } from '../../lib/feed-tls.ts';
import { logger } from '../../lib/log.ts';
import {
  ClientHelloSchema,
  FEED_SYNC_PATH,
  feedServiceDefinition,
  type RemoteClusterStatus,
  type ServerHello,
  type ServerMessage,
  type Update,
  UpdateSchema,
} from '../../proto/service.ts';

const log = logger('feed-client');

export interface FeedHandlers {
  onHello(hello: ServerHello): void;
  /** A batch of changes; during a resync, the difference computed at its InSync. */
  onUpdates(updates: Update[]): void;
  onInSync(): void;
  onRemoteStatus?(status: RemoteClusterStatus): void;
  onConnectionState?(state: 'connecting' | 'connected' | 'disconnected', detail?: string): void;
}

export interface FeedClientOptions {
  target: string;
  nodeName: string;
  version: string;
  /** Reconnect when nothing (not even a heartbeat) arrives for this long. */
  silenceTimeoutMs?: number;
  maxBackoffMs?: number;
  /** Mutual TLS; its files are re-read at each (re)connection, so rotated certificates are used. */
  tls?: ClientTlsConfig;
}

const key = (u: Update) => `${u.kind}|${u.key}`;

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 20_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.max_receive_message_length': 256 * 1024 * 1024,
};

export class FeedClient {
  private client: grpc.Client;
  private credentials: ClientCredentials;
  /** What this agent currently believes the feed holds (last applied). */
  private readonly state = new Map<string, Update>();
  /** The snapshot being received on a new connection, until its InSync. */
  private incoming?: Map<string, Update>;
  private call?: grpc.ClientReadableStream<ServerMessage>;
  private stopped = false;
  private backoffMs = 200;
  private silenceTimer?: NodeJS.Timeout;
  private reconnectTimer?: NodeJS.Timeout;
  private everInSync = false;
  connected = false;

  constructor(
    private readonly opts: FeedClientOptions,
    private readonly handlers: FeedHandlers,
  ) {
    // Unreadable or mismatched files at start are an error for the caller to report.
    this.credentials = clientCredentials(opts.tls);
    this.client = this.newClient();
  }

  private newClient(): grpc.Client {
    return new grpc.Client(this.opts.target, this.credentials.credentials, {
      ...CHANNEL_OPTIONS,
      ...this.credentials.options,
    });
  }

  /** New certificate files since the last connection: a new channel with them. */
  private refreshCredentials(): void {
    if (!this.opts.tls) return;
    let next: ClientCredentials;
    try {
      next = clientCredentials(this.opts.tls);
    } catch (e) {
      // Caught mid-rotation, say: keep the last good ones and try again at the next connection.
      log.warn({ err: (e as Error).message }, 'feed certificates unreadable; keeping the current ones');
      return;
    }
    if (next.digest === this.credentials.digest) return;
    this.credentials = next;
    this.client.close();
    this.client = this.newClient();
    log.info({ certFile: this.opts.tls.certFile }, 'feed certificates changed; reconnecting with them');
  }

  start(): void {
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.silenceTimer);
    clearTimeout(this.reconnectTimer);
    this.call?.cancel();
    this.client.close();
  }

  get size(): number {
    return this.state.size;
  }

  private connect(): void {
    if (this.stopped) return;
    this.handlers.onConnectionState?.('connecting');
    this.refreshCredentials();
    this.incoming = new Map();
    const def = feedServiceDefinition.sync;
    const hello = create(ClientHelloSchema, {
      nodeName: this.opts.nodeName,
      version: this.opts.version,
      capabilities: ['resync-diff'],
    });
    const call = this.client.makeServerStreamRequest(
      FEED_SYNC_PATH,
      def.requestSerialize,
      def.responseDeserialize,
      hello,
    );
    this.call = call;
    this.armSilenceTimer();
    call.on('data', (m: ServerMessage) => {
      if (this.call !== call) return;
      this.armSilenceTimer();
      try {
        this.onMessage(m);
      } catch (e) {
        // A message the agent cannot use is logged; the stream and the dataplane go on.
        log.warn({ err: (e as Error).message }, 'could not process a feed message; skipped');
      }
    });
    call.on('error', (e: grpc.ServiceError) => {
      if (this.call === call)
        this.disconnected(`${grpc.status[e.code] ?? e.code}: ${e.details || e.message}`);
    });
    call.on('end', () => {
      if (this.call === call) this.disconnected('stream ended');
    });
  }

  private armSilenceTimer(): void {
    clearTimeout(this.silenceTimer);
    this.silenceTimer = setTimeout(() => {
      log.warn('feed silent for too long; reconnecting');
      this.call?.cancel();
      this.disconnected('silence');
    }, this.opts.silenceTimeoutMs ?? 35_000);
    this.silenceTimer.unref();
  }

  private disconnected(detail: string): void {
    this.call = undefined;
    this.incoming = undefined;
    clearTimeout(this.silenceTimer);
    if (this.stopped) return;
    if (this.connected || this.backoffMs <= 200) {
      log.warn({ detail, target: this.opts.target }, 'feed disconnected; keeping the dataplane as it is');
    }
    this.connected = false;
    this.handlers.onConnectionState?.('disconnected', detail);
    if (this.stopped) return;
    const delay = this.backoffMs * (0.8 + Math.random() * 0.4);
    this.backoffMs = Math.min(this.backoffMs * 2, this.opts.maxBackoffMs ?? 10_000);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  private onMessage(m: ServerMessage): void {
    const p = m.payload;
    switch (p.case) {
      case 'hello':
        this.connected = true;
        this.backoffMs = 200;
        log.info({ cluster: p.value.cluster, syncer: p.value.syncerId }, 'feed connected');
        this.handlers.onConnectionState?.('connected');
        this.handlers.onHello(p.value);
        return;
      case 'updates':
        if (this.incoming) {
          for (const u of p.value.updates) {
            if (u.deleted) this.incoming.delete(key(u));
            else this.incoming.set(key(u), u);
          }
        } else {
          this.applyDeltas(p.value.updates);
        }
        return;
      case 'inSync':
        if (this.incoming) this.finishResync(this.incoming);
        return;
      case 'remoteStatus':
        this.handlers.onRemoteStatus?.(p.value);
        return;
      case 'heartbeat':
        return;
      default:
        log.warn('unknown feed message; skipped');
    }
  }

  private applyDeltas(updates: Update[]): void {
    for (const u of updates) {
      if (u.deleted) this.state.delete(key(u));
      else this.state.set(key(u), u);
    }
    this.handlers.onUpdates(updates);
  }

  /** The new snapshot is complete: pass on only what differs from the state already applied. */
  private finishResync(snapshot: Map<string, Update>): void {
    this.incoming = undefined;
    const diff: Update[] = [];
    for (const [k, u] of snapshot) {
      const old = this.state.get(k);
      if (!old || !equals(UpdateSchema, old, u)) diff.push(u);
    }
    for (const [k, old] of this.state) {
      if (!snapshot.has(k))
        diff.push(
          create(UpdateSchema, { key: old.key, cluster: old.cluster, kind: old.kind, deleted: true }),
        );
    }
    this.state.clear();
    for (const [k, u] of snapshot) this.state.set(k, u);
    log.info({ entries: snapshot.size, changes: diff.length, first: !this.everInSync }, 'feed in sync');
    this.everInSync = true;
    this.handlers.onUpdates(diff);
    this.handlers.onInSync();
  }
}
