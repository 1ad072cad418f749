// Serves the merged feed over gRPC (TCP or a Unix socket). Each agent gets the snapshot, InSync,
// then deltas, with heartbeats. A slow agent never stalls the syncer or the other agents: its
// messages wait in its own bounded queue, and one that falls too far behind is disconnected (it
// reconnects and resyncs from a fresh snapshot).
import { randomUUID } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
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

const log = logger('feed-server');

export const VERSION = '0.1.0';

export interface FeedServerOptions {
  cluster: string;
  cache: FeedCache;
  listen: string;
  /** Updates per snapshot message. */
  batchSize?: number;
  /** Messages an agent may have queued before it is cut off. */
  maxQueue?: number;
  heartbeatMs?: number;
}

export function parseListen(listen: string): { target: string; socketPath?: string } {
  if (listen.startsWith('unix:')) {
    const path = listen.slice('unix:'.length);
    return { target: `unix:${path}`, socketPath: path };
  }
  if (!/^[^:]*:\d+$/.test(listen) && !/^\[.*\]:\d+$/.test(listen)) {
    throw new Error(`--listen ${listen}: expected HOST:PORT or unix:PATH`);
  }
  return { target: listen };
}

class ClientStream implements FeedSubscriber {
  private readonly queue: ServerMessage[] = [];
  /** grpc-js said its buffer is full: write nothing more until 'drain'. */
  private blocked = false;
  private closed = false;

  get isClosed(): boolean {
    return this.closed;
  }

  constructor(
    private readonly call: grpc.ServerWritableStream<ClientHello, ServerMessage>,
    private readonly node: string,
    private readonly batchSize: number,
    private readonly maxQueue: number,
    private readonly onClose: () => void,
  ) {
    call.on('drain', () => {
      this.blocked = false;
      this.pump();
    });
  }

  onUpdates(updates: Update[]): void {
    for (let i = 0; i < updates.length; i += this.batchSize) {
      const chunk = updates.slice(i, i + this.batchSize);
      this.push(create(ServerMessageSchema, { payload: { case: 'updates', value: { updates: chunk } } }));
    }
  }

  onInSync(): void {
    this.push(create(ServerMessageSchema, { payload: { case: 'inSync', value: {} } }));
  }

  onRemoteStatus(status: RemoteClusterStatus): void {
    this.push(create(ServerMessageSchema, { payload: { case: 'remoteStatus', value: status } }));
  }

  heartbeat(): void {
    this.push(
      create(ServerMessageSchema, {
        payload: { case: 'heartbeat', value: { unixMillis: BigInt(Date.now()) } },
      }),
    );
  }

  push(m: ServerMessage): void {
    if (this.closed) return;
    this.queue.push(m);
    if (this.queue.length > this.maxQueue) {
      log.warn(
        { node: this.node, queued: this.queue.length },
        'agent too far behind; disconnecting it (it will resync)',
      );
      this.close({
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: 'client too slow; reconnect for a fresh snapshot',
      });
      return;
    }
    this.pump();
  }

  private pump(): void {
    while (!this.blocked && !this.closed && this.queue.length > 0) {
      const m = this.queue.shift()!;
      if (!this.call.write(m)) this.blocked = true; // the rest waits in our bounded queue for 'drain'
    }
  }

  close(err?: Partial<grpc.StatusObject>): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.onClose();
    // grpc-js sends a status to the client for an 'error' event (destroy() would send none).
    if (err) this.call.emit('error', Object.assign(new Error(err.details), err));
    else this.call.end();
  }
}

export class FeedServer {
  private readonly server = new grpc.Server({ 'grpc.keepalive_permit_without_calls': 1 });
  private readonly clients = new Set<ClientStream>();
  private heartbeat?: NodeJS.Timeout;
  private readonly syncerId = randomUUID();
  private socketPath?: string;

  constructor(private readonly opts: FeedServerOptions) {
    this.server.addService(feedServiceDefinition, {
      sync: (call: grpc.ServerWritableStream<ClientHello, ServerMessage>) => this.onSync(call),
    });
  }

  get clientCount(): number {
    return this.clients.size;
  }

  async start(): Promise<string> {
    const { target, socketPath } = parseListen(this.opts.listen);
    if (socketPath) {
      try {
        unlinkSync(socketPath); // a stale socket from a previous run
      } catch {
        // none
      }
      this.socketPath = socketPath;
    }
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(target, grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    this.heartbeat = setInterval(() => {
      for (const c of this.clients) c.heartbeat();
    }, this.opts.heartbeatMs ?? 10_000);
    this.heartbeat.unref();
    log.info({ listen: this.opts.listen, port }, 'feed server listening');
    return socketPath ? target : target.replace(/:\d+$/, `:${port}`);
  }

  async stop(): Promise<void> {
    clearInterval(this.heartbeat);
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

  private onSync(call: grpc.ServerWritableStream<ClientHello, ServerMessage>): void {
    const hello = call.request;
    const node = hello.nodeName || '(unnamed)';
    log.info({ node, version: hello.version, peer: call.getPeer() }, 'agent connected');
    let unsubscribe = () => {};
    const client = new ClientStream(
      call,
      node,
      this.opts.batchSize ?? 500,
      this.opts.maxQueue ?? 20_000,
      () => {
        this.clients.delete(client);
        unsubscribe();
      },
    );
    this.clients.add(client);
    client.push(
      create(ServerMessageSchema, {
        payload: {
          case: 'hello',
          value: { cluster: this.opts.cluster, version: VERSION, syncerId: this.syncerId },
        },
      }),
    );
    unsubscribe = this.opts.cache.subscribe(client);
    // Cut off while its snapshot was being queued: it must not stay subscribed.
    if (client.isClosed) unsubscribe();
    call.on('cancelled', () => {
      log.info({ node }, 'agent disconnected');
      client.close();
    });
    call.on('error', () => client.close());
  }
}
