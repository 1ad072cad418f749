// The merged state the syncer serves: one entry per feed key, the deltas since the last flush,
// and the subscribers (connected agents) the deltas go to. Identical re-sets are dropped here, so a
// datastore that re-lists everything costs the agents nothing.
import { create, equals } from '@bufbuild/protobuf';
import { type RemoteClusterStatus, ResourceKind, type Update, UpdateSchema } from '../proto/service.ts';

export interface FeedSubscriber {
  onUpdates(updates: Update[]): void;
  onInSync(): void;
  onRemoteStatus(status: RemoteClusterStatus): void;
}

/** One flat string (join, not a template, which would leave a concatenation in every entry). */
export function cacheKey(kind: ResourceKind, key: string): string {
  return [kind, key].join('|');
}

export class FeedCache {
  private readonly entries = new Map<string, Update>();
  private pending: Update[] = [];
  private flushScheduled = false;
  private readonly subscribers = new Set<FeedSubscriber>();
  private readonly remoteStatus = new Map<string, RemoteClusterStatus>();
  private synced = false;

  get inSync(): boolean {
    return this.synced;
  }

  get size(): number {
    return this.entries.size;
  }

  get(kind: ResourceKind, key: string): Update | undefined {
    return this.entries.get(cacheKey(kind, key));
  }

  /** `ck`: the update's cacheKey when the caller has made it already (one string kept, not two). */
  set(u: Update, ck = cacheKey(u.kind, u.key)): void {
    const old = this.entries.get(ck);
    if (old && equals(UpdateSchema, old, u)) return;
    this.entries.set(ck, u);
    this.queue(u);
  }

  delete(kind: ResourceKind, key: string): void {
    const ck = cacheKey(kind, key);
    const old = this.entries.get(ck);
    if (!old) return;
    this.entries.delete(ck);
    this.queue(create(UpdateSchema, { key, cluster: old.cluster, kind, deleted: true }));
  }

  markInSync(): void {
    if (this.synced) return;
    this.flush();
    this.synced = true;
    for (const s of this.subscribers) s.onInSync();
  }

  setRemoteStatus(st: RemoteClusterStatus): void {
    this.remoteStatus.set(st.cluster, st);
    for (const s of this.subscribers) s.onRemoteStatus(st);
  }

  removeRemoteStatus(cluster: string): void {
    this.remoteStatus.delete(cluster);
  }

  remoteStatuses(): RemoteClusterStatus[] {
    return [...this.remoteStatus.values()];
  }

  /**
   * Subscribe: the subscriber gets the current snapshot and (if in sync) InSync synchronously,
   * then every later delta. Pending deltas are flushed first so nothing is seen twice or missed.
   */
  subscribe(s: FeedSubscriber): () => void {
    this.flush();
    s.onUpdates([...this.entries.values()]);
    for (const st of this.remoteStatus.values()) s.onRemoteStatus(st);
    if (this.synced) s.onInSync();
    this.subscribers.add(s);
    return () => this.subscribers.delete(s);
  }

  /**
   * Register for every later change only, without a snapshot (the feed server sends each client
   * its snapshot itself, lazily). Pending changes are flushed first: what follows is exactly what
   * changes after the entries as they are now.
   */
  follow(s: FeedSubscriber): () => void {
    this.flush();
    this.subscribers.add(s);
    return () => this.subscribers.delete(s);
  }

  *all(): IterableIterator<Update> {
    yield* this.entries.values();
  }

  private queue(u: Update): void {
    this.pending.push(u);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.flushScheduled = false;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    for (const s of this.subscribers) s.onUpdates(batch);
  }
}

export { ResourceKind };
