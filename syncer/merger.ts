// The syncer's heart: the local cluster's datastore plus one datastore per RemoteClusterConfiguration,
// merged into one feed. Remote data is renamed (convert.ts), checked against the local cluster, and
// refused loudly on conflict (local wins). An RCC's change restarts only that remote; deleting it
// withdraws its data; a remote that fails keeps its last data (fail-static) for a retention time.
import { create } from '@bufbuild/protobuf';
import { compilePolicy, PolicyError } from '../agent/calc/policy-compiler.ts';
import { logger } from '../lib/log.ts';
import { type Cidr, cidrContainsIp, cidrsOverlap, parseCidrParts } from '../model/net.ts';
import {
  type RemoteClusterConfiguration,
  type Resource,
  type ResourceError,
  resourceId,
} from '../model/resources.ts';
import {
  type Policy,
  RemoteClusterState,
  RemoteClusterStatusSchema,
  ResourceKind,
  type Update,
} from '../proto/service.ts';
import { type ConvertContext, isOverlayKind, toUpdate } from './convert.ts';
import type { Datastore, DatastoreEvent, DatastoreStatus } from './datastore/types.ts';
import type { FeedCache } from './feed-cache.ts';
import { Refusals } from './refusals.ts';

const log = logger('merger');

export type DatastoreFactory = (rcc: RemoteClusterConfiguration) => Datastore | { error: string };

export interface MergerOptions {
  cluster: string;
  local: Datastore;
  cache: FeedCache;
  makeRemote: DatastoreFactory;
  /** How long the syncer's first in-sync waits for remotes known at start. */
  remoteSyncTimeoutMs: number;
  /** How long a failed remote's last data is kept before it is withdrawn. */
  remoteRetentionMs: number;
}

interface Source {
  name: string;
  ctx: ConvertContext;
  overlay: boolean;
  /** resourceId → the update this source wants in the feed (before conflict checks). */
  wanted: Map<string, Update>;
  /** resourceIds seen since the current (re)sync started; the rest are withdrawn at InSync. */
  seen?: Set<string>;
  status: DatastoreStatus | 'ConfigIncomplete';
  detail: string;
  conflicts: Map<string, string>;
}

interface Remote {
  rcc: RemoteClusterConfiguration;
  rccText: string;
  source: Source;
  datastore?: Datastore;
  retentionTimer?: NodeJS.Timeout;
}

const STATE: Record<Source['status'], RemoteClusterState> = {
  Connecting: RemoteClusterState.CONNECTING,
  ConnectionFailed: RemoteClusterState.CONNECTION_FAILED,
  ResyncInProgress: RemoteClusterState.RESYNC_IN_PROGRESS,
  InSync: RemoteClusterState.IN_SYNC,
  ConfigIncomplete: RemoteClusterState.CONFIG_INCOMPLETE,
};

export class Merger {
  private readonly local: Source;
  private readonly remotes = new Map<string, Remote>();
  /** Feed cache key → owning source name, so a delete only withdraws what that source put there. */
  private readonly owner = new Map<string, string>();
  private readonly rccs = new Map<string, RemoteClusterConfiguration>();
  private startRemotes: Set<string> | undefined;
  private syncTimer?: NodeJS.Timeout;
  private stopped = false;
  /** The refusals in force now (metrics, /status): they go when the input is fixed. */
  readonly refusals = new Refusals();

  /** The refusals in force now. */
  get errors(): ResourceError[] {
    return this.refusals.current();
  }

  constructor(private readonly opts: MergerOptions) {
    this.local = newSource(opts.cluster, false, true);
  }

  async start(): Promise<void> {
    await this.opts.local.start({
      onEvents: (events) => this.onEvents(this.local, events),
      onStatus: (st, detail) => this.onLocalStatus(st, detail),
      onErrors: (errs) => this.refusals.reported(this.local.name, errs),
      onRefusals: (errs) => this.refusals.replace(this.local.name, errs),
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.syncTimer);
    await this.opts.local.stop();
    for (const r of this.remotes.values()) {
      clearTimeout(r.retentionTimer);
      await r.datastore?.stop();
    }
  }

  remoteNames(): string[] {
    return [...this.remotes.keys()];
  }

  private onLocalStatus(st: DatastoreStatus, detail?: string): void {
    this.local.status = st;
    this.local.detail = detail ?? '';
    if (st === 'InSync' && this.local.seen) this.finishResync(this.local);
    if (st === 'ResyncInProgress' || st === 'Connecting') this.local.seen = new Set();
    if (st === 'InSync' && this.startRemotes === undefined) {
      // The remotes known at start: in-sync waits for them, bounded by the timeout.
      this.startRemotes = new Set(this.rccs.keys());
      this.syncTimer = setTimeout(() => {
        const waiting = [...(this.startRemotes ?? [])].filter((r) => !this.remoteSettled(r));
        if (waiting.length)
          log.warn({ waiting }, 'remote clusters not in sync in time; serving in-sync without them');
        this.startRemotes = new Set();
        this.checkInSync();
      }, this.opts.remoteSyncTimeoutMs);
      this.syncTimer.unref();
    }
    this.checkInSync();
  }

  private remoteSettled(name: string): boolean {
    const r = this.remotes.get(name);
    if (!r) return true;
    return (
      r.source.status === 'InSync' ||
      r.source.status === 'ConnectionFailed' ||
      r.source.status === 'ConfigIncomplete'
    );
  }

  private checkInSync(): void {
    if (this.opts.cache.inSync || this.local.status !== 'InSync' || this.startRemotes === undefined) return;
    if ([...this.startRemotes].every((r) => this.remoteSettled(r))) {
      clearTimeout(this.syncTimer);
      log.info({ entries: this.opts.cache.size, remotes: this.remoteNames() }, 'in sync');
      this.opts.cache.markInSync();
    }
  }

  private onEvents(src: Source, events: DatastoreEvent[]): void {
    let topologyChanged = false;
    for (const ev of events) {
      if (ev.type === 'upsert') {
        const r = ev.resource;
        const id = resourceId(r);
        src.seen?.add(id);
        this.refusals.resolved(src.name, id);
        if (r.kind === 'RemoteClusterConfiguration') {
          if (!src.ctx.remote) this.upsertRcc(r);
          continue;
        }
        if (src.ctx.remote && isOverlayKind(r.kind) && !src.overlay) continue;
        const u = toUpdate(src.ctx, r);
        if (!u) continue;
        if (u.body.case === 'policy' && !this.policyCompiles(src, r, u.body.value)) continue;
        src.wanted.set(id, u);
        this.reconcile(src, id);
        if (r.kind === 'Node' || (!src.ctx.remote && r.kind === 'IPPool')) topologyChanged = true;
      } else {
        const id = resourceId({ kind: ev.kind, name: ev.name, namespace: ev.namespace });
        this.refusals.resolved(src.name, id);
        this.refusals.set(src.name, `policy:${id}`, []);
        if (ev.kind === 'RemoteClusterConfiguration') {
          if (!src.ctx.remote) this.deleteRcc(ev.name);
          continue;
        }
        this.withdraw(src, id);
        if (ev.kind === 'Node' || (!src.ctx.remote && ev.kind === 'IPPool')) topologyChanged = true;
      }
    }
    // Local wins: a local pool or node change can make remote data conflict (or stop conflicting);
    // a node appearing or going in one remote can do the same for another remote's node names.
    if (topologyChanged) for (const r of this.remotes.values()) this.recheckAll(r.source);
    if (src.ctx.remote) this.publishStatus(src);
  }

  /**
   * Refuse a policy the agents could not use (an unparsable selector, say) here, loudly, with the
   * file it came from; its last good version stays in the feed.
   */
  private policyCompiles(src: Source, r: Resource, p: Policy): boolean {
    try {
      compilePolicy(p);
      this.refusals.set(src.name, `policy:${resourceId(r)}`, []);
      return true;
    } catch (e) {
      if (!(e instanceof PolicyError)) throw e;
      const err: ResourceError = {
        origin: r.origin,
        resource: resourceId(r),
        field: e.field,
        message: e.reason,
      };
      log.warn(
        {
          file: r.origin.source,
          document: r.origin.document,
          resource: err.resource,
          field: e.field,
          reason: e.reason,
        },
        'refused policy; its last good version (if any) stays',
      );
      this.refusals.set(src.name, `policy:${resourceId(r)}`, [err]);
      return false;
    }
  }

  private withdraw(src: Source, id: string): void {
    const u = src.wanted.get(id);
    if (!u) return;
    src.wanted.delete(id);
    src.conflicts.delete(id);
    const ck = `${u.kind}|${u.key}`;
    if (this.owner.get(ck) === src.name) {
      this.owner.delete(ck);
      this.opts.cache.delete(u.kind, u.key);
    }
  }

  /** Put a source's wanted update into the feed, unless it conflicts with the local cluster. */
  private reconcile(src: Source, id: string): void {
    const u = src.wanted.get(id);
    if (!u) return;
    const ck = `${u.kind}|${u.key}`;
    const conflict = src.ctx.remote ? this.conflictOf(src, u) : undefined;
    const owner = this.owner.get(ck);
    if (conflict) {
      if (src.conflicts.get(id) !== conflict) {
        log.warn(
          { cluster: src.name, resource: id, reason: conflict },
          'refused remote resource: conflicts with the local cluster',
        );
      }
      src.conflicts.set(id, conflict);
      if (owner === src.name) {
        this.owner.delete(ck);
        this.opts.cache.delete(u.kind, u.key);
      }
      return;
    }
    src.conflicts.delete(id);
    if (owner !== undefined && owner !== src.name) {
      src.conflicts.set(id, `key ${u.key} already served by ${owner}`);
      log.warn(
        { cluster: src.name, resource: id, owner },
        'refused resource: its key is already in the feed',
      );
      return;
    }
    this.owner.set(ck, src.name);
    this.opts.cache.set(u);
  }

  private recheckAll(src: Source): void {
    for (const id of src.wanted.keys()) this.reconcile(src, id);
    this.publishStatus(src);
  }

  private localPools(): Cidr[] {
    const out: Cidr[] = [];
    for (const u of this.local.wanted.values())
      if (u.body.case === 'ipPool') out.push(u.body.value.cidr as Cidr);
    return out;
  }

  private conflictOf(src: Source, u: Update): string | undefined {
    const b = u.body;
    if (b.case === 'ipPool') {
      const clash = this.localPools().find((p) => cidrsOverlap(p, b.value.cidr as Cidr));
      return clash ? `pool ${b.value.cidr} overlaps local pool ${clash}` : undefined;
    }
    if (b.case === 'ipamBlock') {
      const clash = this.localPools().find((p) => cidrsOverlap(p, b.value.cidr as Cidr));
      return clash ? `block ${b.value.cidr} overlaps local pool ${clash}` : undefined;
    }
    if (b.case === 'workloadEndpoint') {
      for (const net of b.value.ipv4Nets) {
        const ip = parseCidrParts(net, true).base;
        const clash = this.localPools().find((p) => cidrContainsIp(p, ip));
        if (clash) return `endpoint address ${net} is inside local pool ${clash}`;
      }
      return undefined;
    }
    if (b.case === 'node') {
      const name = b.value.name;
      for (const other of [this.local, ...[...this.remotes.values()].map((r) => r.source)]) {
        if (other === src) continue;
        for (const ou of other.wanted.values()) {
          if (ou.body.case === 'node' && ou.body.value.name === name) {
            const ownedByOther = this.owner.get(`${ou.kind}|${ou.key}`) === other.name;
            if (other === this.local || ownedByOther)
              return `node name ${name} is already used by cluster ${other.name}`;
          }
        }
      }
    }
    return undefined;
  }

  private upsertRcc(rcc: RemoteClusterConfiguration): void {
    this.rccs.set(rcc.name, rcc);
    if (rcc.name === this.opts.cluster) {
      log.warn({ rcc: rcc.name }, 'a RemoteClusterConfiguration names the local cluster; ignored');
      return;
    }
    const text = JSON.stringify({ ...rcc, origin: undefined, labels: undefined, annotations: undefined });
    const existing = this.remotes.get(rcc.name);
    if (existing && existing.rccText === text) return;
    if (existing) {
      log.info({ remote: rcc.name }, 'remote cluster configuration changed; reconnecting');
      void existing.datastore?.stop();
      existing.datastore = undefined;
      existing.rcc = rcc;
      existing.rccText = text;
      existing.source.overlay = rcc.spec.overlayRouting;
      // Overlay resources may no longer be wanted: drop them now; the resync restores the rest.
      if (!rcc.spec.overlayRouting) {
        for (const [id, u] of [...existing.source.wanted]) {
          if (
            u.kind === ResourceKind.IP_POOL ||
            u.kind === ResourceKind.IPAM_BLOCK ||
            u.kind === ResourceKind.NODE
          ) {
            this.withdraw(existing.source, id);
          }
        }
      }
      this.connectRemote(existing);
      return;
    }
    const remote: Remote = { rcc, rccText: text, source: newSource(rcc.name, true, rcc.spec.overlayRouting) };
    this.remotes.set(rcc.name, remote);
    this.connectRemote(remote);
  }

  private connectRemote(remote: Remote): void {
    if (this.stopped) return;
    const made = this.opts.makeRemote(remote.rcc);
    const src = remote.source;
    if ('error' in made) {
      src.status = 'ConfigIncomplete';
      src.detail = made.error;
      log.warn({ remote: remote.rcc.name, reason: made.error }, 'remote cluster configuration incomplete');
      this.publishStatus(src);
      this.checkInSync();
      return;
    }
    remote.datastore = made;
    src.seen = new Set();
    const ds = made;
    void ds
      .start({
        onEvents: (events) => {
          if (remote.datastore === ds) this.onEvents(src, events);
        },
        onStatus: (st, detail) => {
          if (remote.datastore === ds) this.onRemoteStatus(remote, st, detail);
        },
        onErrors: (errs) => {
          if (remote.datastore === ds) this.refusals.reported(src.name, errs);
        },
        onRefusals: (errs) => {
          if (remote.datastore === ds) this.refusals.replace(src.name, errs);
        },
      })
      .catch((e: Error) => this.onRemoteStatus(remote, 'ConnectionFailed', e.message));
  }

  private onRemoteStatus(remote: Remote, st: DatastoreStatus, detail?: string): void {
    const src = remote.source;
    src.status = st;
    src.detail = detail ?? '';
    if (st === 'ResyncInProgress' || st === 'Connecting') {
      // A new listing is coming: it alone decides what stays (an aborted earlier one does not count),
      // and the remote is back, so its data is no longer on the retention clock.
      src.seen = new Set();
      clearTimeout(remote.retentionTimer);
      remote.retentionTimer = undefined;
    }
    if (st === 'InSync') {
      clearTimeout(remote.retentionTimer);
      remote.retentionTimer = undefined;
      this.finishResync(src);
    }
    if (st === 'ConnectionFailed') {
      log.warn(
        { remote: src.name, detail },
        'remote cluster connection failed; keeping its last data (fail-static)',
      );
      if (!remote.retentionTimer) {
        remote.retentionTimer = setTimeout(() => {
          log.warn(
            { remote: src.name, retentionMs: this.opts.remoteRetentionMs },
            'remote cluster down too long; withdrawing its data',
          );
          for (const id of [...src.wanted.keys()]) this.withdraw(src, id);
          this.publishStatus(src);
        }, this.opts.remoteRetentionMs);
        remote.retentionTimer.unref();
      }
    }
    this.publishStatus(src);
    this.checkInSync();
  }

  /** After a (re)sync, anything the source no longer has is withdrawn. */
  private finishResync(src: Source): void {
    const seen = src.seen;
    src.seen = undefined;
    if (!seen) return;
    for (const id of [...src.wanted.keys()]) if (!seen.has(id)) this.withdraw(src, id);
    if (src === this.local) {
      for (const name of [...this.rccs.keys()]) {
        if (!seen.has(resourceId({ kind: 'RemoteClusterConfiguration', name }))) this.deleteRcc(name);
      }
    }
  }

  private deleteRcc(name: string): void {
    this.rccs.delete(name);
    const remote = this.remotes.get(name);
    if (!remote) return;
    log.info({ remote: name }, 'remote cluster configuration deleted; withdrawing its data');
    this.remotes.delete(name);
    clearTimeout(remote.retentionTimer);
    const ds = remote.datastore;
    remote.datastore = undefined; // detach first: nothing it says from now on is applied
    void ds?.stop();
    for (const id of [...remote.source.wanted.keys()]) this.withdraw(remote.source, id);
    this.opts.cache.removeRemoteStatus(name);
    this.refusals.clearSource(name);
    this.startRemotes?.delete(name);
    this.checkInSync();
  }

  private publishStatus(src: Source): void {
    if (!src.ctx.remote || !this.remotes.has(src.name)) return;
    const counts = { endpoints: 0, profiles: 0, pools: 0, blocks: 0, nodes: 0 };
    for (const [id, u] of src.wanted) {
      if (src.conflicts.has(id)) continue;
      if (u.kind === ResourceKind.WORKLOAD_ENDPOINT) counts.endpoints++;
      else if (u.kind === ResourceKind.PROFILE) counts.profiles++;
      else if (u.kind === ResourceKind.IP_POOL) counts.pools++;
      else if (u.kind === ResourceKind.IPAM_BLOCK) counts.blocks++;
      else if (u.kind === ResourceKind.NODE) counts.nodes++;
    }
    const conflicts = [...src.conflicts.values()];
    this.opts.cache.setRemoteStatus(
      create(RemoteClusterStatusSchema, {
        cluster: src.name,
        state: STATE[src.status],
        detail: [src.detail, ...conflicts.slice(0, 5)].filter(Boolean).join('; '),
        ...counts,
        conflicts: conflicts.length,
      }),
    );
  }
}

function newSource(name: string, remote: boolean, overlay: boolean): Source {
  return {
    name,
    ctx: { cluster: name, remote },
    overlay,
    wanted: new Map(),
    seen: new Set(),
    status: 'Connecting',
    detail: '',
    conflicts: new Map(),
  };
}

export type { Resource };
