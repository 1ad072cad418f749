// The etcdv3 datastore: Calico's key layout (etcd-layout.ts) read through the `etcd3` client.
//
// List both prefixes at one revision (paged), then watch from the next revision, as Calico's
// watchersyncer does. Only what changed is emitted: a key whose value is byte-for-byte the same is
// no event. When etcd cannot be reached the last data stays (fail-static), the status is
// ConnectionFailed, and the driver reconnects with backoff: it resumes the watch from the last
// revision it saw, and when etcd has compacted that revision away it lists again and emits only
// the difference (what changed, appeared or vanished meanwhile), never a withdraw and re-add.
//
// The library's own watch reconnection and circuit breaker are kept out of the way: its
// reconnects reuse a cached auth token that a restarted etcd no longer knows, and its breaker
// holds calls back for seconds after etcd is back. Here a failed watch is cancelled and the whole
// connection is re-established by one loop: a unary probe (which renews the token), then the watch.
import { noop } from 'cockatiel';
import { Etcd3, type IOptions, type IWatchResponse, Range, type Watcher } from 'etcd3';
import { logger } from '../../lib/log.ts';
import type { Resource, ResourceError } from '../../model/resources.ts';
import type { SkippedResource } from '../../model/validate.ts';
import type { EtcdConnection } from './connection.ts';
import { decodeKv, RESOURCE_PREFIX, WATCHED_PREFIXES } from './etcd-layout.ts';
import {
  type Datastore,
  type DatastoreEvent,
  type DatastoreHandlers,
  type DatastoreSnapshot,
  type DatastoreStatus,
  deleteEvent,
} from './types.ts';

const log = logger('etcd-datastore');

export interface EtcdDatastoreOptions {
  /** First reconnect delay; doubles per failure up to retryMaxMs. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Keys per range request while listing. */
  pageSize?: number;
  /** Deadline of every unary request and of establishing the watch. */
  requestTimeoutMs?: number;
}

interface Entry {
  /** The value last seen under the key. */
  value: string;
  /** What the handlers were told exists for it: the last good version (a bad value keeps it). */
  resource?: Resource;
}

type WatchOutcome = 'connected' | { lost: string } | { canceled: string };

export class EtcdDatastore implements Datastore {
  readonly description: string;
  private readonly client: Etcd3;
  private readonly opts: Required<EtcdDatastoreOptions>;
  private handlers?: DatastoreHandlers;
  private readonly entries = new Map<string, Entry>();
  private status?: { status: DatastoreStatus; detail?: string };
  /** The revision everything emitted so far reflects; the watch resumes after it. */
  private revision = 0;
  private listed = false;
  private needRelist = true;
  private watchers: Watcher[] = [];
  private readonly canceledByEtcd = new Set<Watcher>();
  /** Bumped on every (re)connect: callbacks of older watchers are ignored. */
  private generation = 0;
  private retryMs: number;
  private retryTimer?: NodeJS.Timeout;
  private connecting?: Promise<void>;
  private again = false;
  private stopped = false;
  private readonly loggedSkips = new Set<string>();

  constructor(conn: EtcdConnection, options: EtcdDatastoreOptions = {}) {
    if (conn.endpoints.length === 0) throw new Error('etcdv3: at least one endpoint is needed');
    this.description = `etcdv3:${conn.endpoints.join(',')}`;
    this.opts = {
      retryMinMs: options.retryMinMs ?? 500,
      retryMaxMs: options.retryMaxMs ?? 10_000,
      pageSize: options.pageSize ?? 1000,
      requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
    };
    this.retryMs = this.opts.retryMinMs;
    this.client = etcdClient(conn, this.opts.requestTimeoutMs);
  }

  async start(handlers: DatastoreHandlers): Promise<void> {
    if (this.handlers) throw new Error(`${this.description}: already started`);
    this.handlers = handlers;
    this.setStatus('Connecting');
    await this.connect();
  }

  async stop(): Promise<void> {
    // An attempt still under way finds itself stale at its next step, and every handler call
    // checks `stopped`: nothing reaches the handlers after this, without waiting for etcd.
    this.stopped = true;
    this.generation++;
    clearTimeout(this.retryTimer);
    await this.cancelWatchers();
    this.client.close();
  }

  /** One-shot read (eval, explain): every resource now in etcd and what was refused; no watch. */
  async list(): Promise<DatastoreSnapshot> {
    try {
      const { kvs } = await this.listAll();
      const snapshot: DatastoreSnapshot = { resources: [], errors: [], skipped: [] };
      for (const [key, value] of kvs) {
        const r = decodeKv(key, value);
        if (!r) continue;
        if ('resource' in r) snapshot.resources.push(r.resource);
        else if ('errors' in r) snapshot.errors.push(...r.errors);
        else if ('skipped' in r) snapshot.skipped.push(r.skipped);
      }
      return snapshot;
    } catch (e) {
      throw new Error(`${this.description}: ${errorText(e)}`);
    } finally {
      if (!this.handlers) this.client.close();
    }
  }

  // -------------------------------------------------------------------------------------------
  // Connecting

  /** Run a connection attempt now, or once more after the one in progress. */
  private connect(): Promise<void> {
    if (this.connecting) {
      this.again = true;
      return this.connecting;
    }
    this.connecting = (async () => {
      do {
        this.again = false;
        await this.attempt();
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /** One attempt: probe, list if needed, watch. Failure: ConnectionFailed and a retry later. */
  private async attempt(): Promise<void> {
    const gen = ++this.generation;
    await this.cancelWatchers();
    try {
      for (;;) {
        if (this.needRelist) {
          const { kvs, revision } = await this.listAll();
          if (this.isStale(gen)) return;
          this.applyListing(kvs, revision);
        } else {
          // A unary call at the revision the watch resumes from: fails fast while etcd is down,
          // tells whether that revision was compacted away meanwhile, and renews an auth token a
          // restarted etcd has forgotten (the watch stream would keep presenting the old one).
          const compacted = await this.client
            .get(RESOURCE_PREFIX)
            .revision(this.revision)
            .exec()
            .then(
              () => false,
              (e: unknown) => {
                if (/compacted/.test(errorText(e))) return true;
                throw e;
              },
            );
          if (this.isStale(gen)) return;
          if (compacted) {
            log.info(
              { datastore: this.description, revision: this.revision },
              'revision compacted; listing again',
            );
            this.needRelist = true;
            continue;
          }
        }
        const outcome = await this.watchFrom(this.revision + 1, gen);
        if (this.isStale(gen)) return;
        if (outcome === 'connected') break;
        if ('lost' in outcome) throw new Error(outcome.lost);
        // Canceled by etcd: the revision was compacted away (or similar): list again.
        log.info({ datastore: this.description, reason: outcome.canceled }, 'watch canceled; listing again');
        this.needRelist = true;
        await this.cancelWatchers();
      }
    } catch (e) {
      if (this.isStale(gen)) return;
      await this.cancelWatchers();
      this.fail(errorText(e));
      return;
    }
    if (this.status?.status === 'ConnectionFailed')
      log.info({ datastore: this.description, revision: this.revision }, 'etcd reachable again; resumed');
    this.retryMs = this.opts.retryMinMs;
    this.setStatus('InSync');
  }

  private isStale(gen: number): boolean {
    return this.stopped || gen !== this.generation;
  }

  private fail(detail: string): void {
    if (this.status?.status !== 'ConnectionFailed') {
      log.warn(
        { datastore: this.description, detail },
        'etcd cannot be read; keeping the last data (fail-static) and retrying',
      );
    }
    this.setStatus('ConnectionFailed', detail);
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    const delay = this.retryMs * (0.8 + 0.4 * Math.random());
    this.retryMs = Math.min(this.retryMs * 2, this.opts.retryMaxMs);
    this.retryTimer = setTimeout(() => void this.connect(), delay);
  }

  /** Every key under the watched prefixes, at one revision, page by page. */
  private async listAll(): Promise<{ kvs: Map<string, string>; revision: number }> {
    const kvs = new Map<string, string>();
    let revision: string | undefined;
    for (const prefix of WATCHED_PREFIXES) {
      const end = Range.prefix(prefix).end;
      let start: Buffer = Buffer.from(prefix);
      for (;;) {
        let req = this.client.getAll().inRange({ start, end }).limit(this.opts.pageSize);
        if (revision !== undefined) req = req.revision(revision);
        const res = await req.exec();
        revision ??= res.header.revision;
        for (const kv of res.kvs) kvs.set(kv.key.toString(), kv.value.toString());
        const last = res.kvs.at(-1);
        if (!res.more || !last) break;
        start = Buffer.concat([last.key, Buffer.from([0])]);
      }
    }
    return { kvs, revision: Number(revision ?? 0) };
  }

  /** Watch both prefixes from `startRevision`; resolves once both are established, or not. */
  private watchFrom(startRevision: number, gen: number): Promise<WatchOutcome> {
    return new Promise<WatchOutcome>((resolvePromise) => {
      let settled = false;
      let connected = 0;
      const settle = (o: WatchOutcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolvePromise(o);
      };
      const timer = setTimeout(
        () => settle({ lost: `watch not established within ${this.opts.requestTimeoutMs} ms` }),
        this.opts.requestTimeoutMs,
      );
      timer.unref();
      for (const prefix of WATCHED_PREFIXES) {
        const w = this.client.watch().prefix(prefix).startRevision(String(startRevision)).watcher();
        this.watchers.push(w);
        w.on('connected', () => {
          if (++connected === WATCHED_PREFIXES.length) settle('connected');
        });
        w.on('data', (res) => {
          if (!this.isStale(gen)) this.onWatchData(res);
        });
        w.on('disconnected', (err) => {
          const detail = errorText(err);
          if (!settled) settle({ lost: detail });
          else if (!this.isStale(gen)) void this.onLost(detail);
        });
        w.on('error', (err) => {
          // etcd canceled it and the library has let go of it: no cancel request for it later.
          this.canceledByEtcd.add(w);
          const detail = errorText(err);
          if (!settled) settle({ canceled: detail });
          else if (!this.isStale(gen)) void this.onCanceled(detail);
        });
      }
    });
  }

  /** The watch stream broke (etcd stopped, network): keep the data, reconnect with backoff. */
  private async onLost(detail: string): Promise<void> {
    this.generation++;
    await this.cancelWatchers();
    if (!this.stopped) this.fail(detail);
  }

  /** etcd canceled a running watch: list again and emit the difference. */
  private async onCanceled(detail: string): Promise<void> {
    log.info({ datastore: this.description, reason: detail }, 'watch canceled; listing again');
    this.generation++;
    this.needRelist = true;
    await this.cancelWatchers();
    if (!this.stopped) void this.connect();
  }

  private async cancelWatchers(): Promise<void> {
    const ws = this.watchers.splice(0);
    // A cancel waits for etcd's answer; with etcd gone that may never come.
    await Promise.all(
      ws
        .filter((w) => !this.canceledByEtcd.has(w))
        .map((w) =>
          Promise.race([w.cancel().catch(() => undefined), new Promise((r) => setTimeout(r, 1000).unref())]),
        ),
    );
    for (const w of ws) this.canceledByEtcd.delete(w);
    for (const w of ws) w.removeAllListeners().on('error', () => undefined);
  }

  // -------------------------------------------------------------------------------------------
  // Keys → events

  private onWatchData(res: IWatchResponse): void {
    const revision = Number(res.header.revision);
    if (res.events.length === 0) {
      // Progress notification: nothing happened up to here.
      this.revision = Math.max(this.revision, revision);
      return;
    }
    const events: DatastoreEvent[] = [];
    const errors: ResourceError[] = [];
    for (const ev of res.events) {
      const key = ev.kv.key.toString();
      this.applyKv(key, ev.type === 'Delete' ? undefined : ev.kv.value.toString(), events, errors);
    }
    this.revision = Math.max(this.revision, revision);
    this.report(errors);
    if (events.length > 0) this.emit(events);
  }

  /** A complete listing: the first one is emitted whole, later ones as their difference. */
  private applyListing(kvs: Map<string, string>, revision: number): void {
    const first = !this.listed;
    if (first) this.setStatus('ResyncInProgress');
    const events: DatastoreEvent[] = [];
    const errors: ResourceError[] = [];
    for (const key of [...this.entries.keys()])
      if (!kvs.has(key)) this.applyKv(key, undefined, events, errors);
    for (const [key, value] of kvs) this.applyKv(key, value, events, errors);
    this.revision = Math.max(this.revision, revision);
    this.listed = true;
    this.needRelist = false;
    this.report(errors);
    if (!first) log.info({ datastore: this.description, changes: events.length, revision }, 'listed again');
    if (first || events.length > 0) this.emit(events);
  }

  private applyKv(key: string, value: string | undefined, events: DatastoreEvent[], errors: ResourceError[]) {
    const prev = this.entries.get(key);
    if (value === undefined) {
      this.entries.delete(key);
      if (prev?.resource) events.push(deleteEvent(prev.resource));
      return;
    }
    if (prev?.value === value) return;
    const result = decodeKv(key, value);
    if (!result) return;
    if ('resource' in result) {
      this.entries.set(key, { value, resource: result.resource });
      events.push({ type: 'upsert', resource: result.resource });
      return;
    }
    if ('errors' in result) {
      // As in the file datastore: a refused edit keeps the last good version in effect.
      const kept = prev?.resource;
      this.entries.set(key, { value, ...(kept ? { resource: kept } : {}) });
      errors.push(
        ...result.errors.map((e) =>
          kept ? { ...e, message: `${e.message} (keeping the last good version)` } : e,
        ),
      );
      return;
    }
    if ('skipped' in result) this.logSkip(result.skipped);
    // Skipped or ignored (an IPv6 pool, a block marked deleted): nothing of it is in effect.
    this.entries.set(key, { value });
    if (prev?.resource) events.push(deleteEvent(prev.resource));
  }

  private report(errors: ResourceError[]): void {
    if (errors.length === 0 || this.stopped) return;
    for (const e of errors) {
      log.warn(
        { key: e.origin.source, resource: e.resource, field: e.field },
        `refused: ${e.field ? `${e.field}: ` : ''}${e.message}`,
      );
    }
    this.handlers?.onErrors?.(errors);
  }

  private logSkip(s: SkippedResource): void {
    if (this.loggedSkips.has(s.origin.source)) return;
    this.loggedSkips.add(s.origin.source);
    log.info({ key: s.origin.source, kind: s.kind, name: s.name }, `skipped: ${s.reason}`);
  }

  private emit(events: DatastoreEvent[]): void {
    if (this.stopped) return;
    this.handlers?.onEvents(events, this.revision);
  }

  private setStatus(status: DatastoreStatus, detail?: string): void {
    if (this.stopped) return;
    if (this.status?.status === status && this.status.detail === detail) return;
    this.status = { status, ...(detail !== undefined ? { detail } : {}) };
    log.debug({ datastore: this.description, status, detail }, 'status');
    this.handlers?.onStatus(status, detail);
  }
}

/** A client for one connection, with fedmesh's deadlines, keepalives and no hidden retries. */
export function etcdClient(conn: EtcdConnection, timeoutMs = 10_000): Etcd3 {
  return new Etcd3(clientOptions(conn, timeoutMs));
}

function clientOptions(conn: EtcdConnection, timeoutMs: number): IOptions {
  const tls = conn.tls;
  return {
    hosts: conn.endpoints,
    ...(tls && (tls.ca || tls.cert || tls.key)
      ? {
          credentials: {
            // Without a CA, the system's roots verify the server (grpc's default for undefined).
            rootCertificate: (tls.ca ? Buffer.from(tls.ca) : undefined) as Buffer,
            ...(tls.key ? { privateKey: Buffer.from(tls.key) } : {}),
            ...(tls.cert ? { certChain: Buffer.from(tls.cert) } : {}),
          },
        }
      : {}),
    ...(conn.username !== undefined
      ? { auth: { username: conn.username, password: conn.password ?? '' } }
      : {}),
    dialTimeout: timeoutMs,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeoutMs }),
    faultHandling: { host: () => noop, global: noop },
    grpcOptions: {
      'grpc.max_receive_message_length': 64 << 20,
      // A silently vanished etcd (a dead host, a dropped route) is noticed within ~15 s.
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
    },
  };
}

function errorText(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.replace(/ Please report this error at \S+$/, '');
}
