// The syncer's heart: the local cluster's datastore plus one datastore per RemoteClusterConfiguration,
// merged into one feed. Remote data is renamed (convert.ts), checked against the local cluster and
// the other remotes, and refused loudly on conflict (local wins; among remotes, the first by name).
// An RCC or the Secret it names is resolved into a connection (remote-config.ts); a change to
// either reconnects only that remote, in place; an incomplete configuration withdraws its data
// (ConfigIncomplete) until fixed; deleting the RCC withdraws its data; a remote that fails keeps
// its last data (fail-static) for a retention time.
import { create } from '@bufbuild/protobuf';
import { logger } from '../lib/log.ts';
import { type ParsedCidr, parseCidrParts } from '../model/net.ts';
import {
  type RemoteClusterConfiguration,
  type Resource,
  type ResourceError,
  resourceId,
  type Secret,
} from '../model/resources.ts';
import { compilePolicy, PolicyError } from '../policy/compiler.ts';
import {
  type Policy,
  RemoteClusterState,
  RemoteClusterStatusSchema,
  ResourceKind,
  type Update,
} from '../proto/service.ts';
import { type ConvertContext, isOverlayKind, toUpdate } from './convert.ts';
import { type ConnectionConfig, describeConnection, sameConnection } from './datastore/connection.ts';
import { openRemoteConnection } from './datastore/open.ts';
import type { Datastore, DatastoreEvent, DatastoreStatus } from './datastore/types.ts';
import { cacheKey, type FeedCache } from './feed-cache.ts';
import { Refusals } from './refusals.ts';
import { type RemoteConfig, resolveRemoteConfig, type SecretLookup, secretRefOf } from './remote-config.ts';

const log = logger('merger');

export interface MergerOptions {
  cluster: string;
  local: Datastore;
  cache: FeedCache;
  /** RCC (+ the local cluster's Secrets) → how to connect, or why not. Default: remote-config.ts. */
  resolveRemote?: (rcc: RemoteClusterConfiguration, secrets: SecretLookup) => RemoteConfig;
  /** A driver for a resolved connection (not started). Default: datastore/open.ts. */
  openRemote?: (c: ConnectionConfig) => Datastore;
  /** Namespace of a clusterAccessSecret that names none (the syncer's own). */
  defaultSecretNamespace?: string;
  /** Where file RCCs may point (see ResolveOptions.fileRoot); undefined: not checked. */
  fileRoot?: string | false;
  /** How often RCCs are resolved again, so a changed file they name (TLS, kubeconfig) reconnects. */
  reresolveMs?: number;
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
  /** Not conflicts, but worth an operator's attention (a disabled pool no longer needed). */
  notes: Map<string, string>;
  /** The address ranges of its wanted pools, blocks and endpoint nets, for remote-vs-remote checks. */
  ranges: Map<string, Range[]>;
  /** The same, indexed: host addresses (/32) → resourceIds, and the wider ranges. */
  hosts: Map<number, Set<string>>;
  wide: Map<string, Range[]>;
}

interface LocalPool {
  name: string;
  cidr: string;
  disabled: boolean;
  range: ParsedCidr;
}

/** An address range a resource claims, and what it is, for conflict messages. */
interface Range {
  what: string;
  cidr: ParsedCidr;
}

interface Remote {
  rcc: RemoteClusterConfiguration;
  rccText: string;
  source: Source;
  datastore?: Datastore;
  /** The connection the datastore was opened with. */
  connection?: ConnectionConfig;
  /** Why the configuration cannot be used (ConfigIncomplete), if so. */
  incomplete?: string;
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
  /** The local cluster's Secrets, `namespace/name` → Secret (only RCCs' clusterAccessSecrets matter). */
  private readonly secrets = new Map<string, Secret>();
  private startRemotes: Set<string> | undefined;
  private syncTimer?: NodeJS.Timeout;
  private reresolveTimer?: NodeJS.Timeout;
  /** The local pools with their parsed ranges: conflict checks run per remote resource. */
  private poolCache?: LocalPool[];
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
    const every = this.opts.reresolveMs ?? 5_000;
    this.reresolveTimer = setInterval(() => {
      for (const r of this.remotes.values()) this.applyConfig(r, false);
    }, every);
    this.reresolveTimer.unref();
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
    clearInterval(this.reresolveTimer);
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
    if (st === 'ResyncInProgress' || st === 'Connecting') {
      // A resync from nothing withdraws nothing at its end: no record of what it saw is needed
      // (a first sync of 100,000 endpoints kept a set of their ids and checked every one again).
      const empty = this.local.wanted.size === 0 && this.rccs.size === 0 && this.secrets.size === 0;
      this.local.seen = empty ? undefined : new Set();
    }
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
    let rangesChanged = false;
    // RCCs and Secrets are applied after the batch: an RCC listed before its Secret is not
    // reported incomplete for the moment in between.
    const rccChanged = new Set<string>();
    const secretChanged = new Set<string>();
    for (const ev of events) {
      if (ev.type === 'upsert') {
        const r = ev.resource;
        const id = resourceId(r);
        src.seen?.add(id);
        this.refusals.resolved(src.name, id);
        if (r.kind === 'RemoteClusterConfiguration' || r.kind === 'Secret') {
          if (src.ctx.remote) continue; // a remote's RCCs and Secrets are its own business
          if (r.kind === 'Secret') this.setSecret(r, secretChanged);
          else {
            this.rccs.set(r.name, r);
            rccChanged.add(r.name);
          }
          continue;
        }
        if (src.ctx.remote && isOverlayKind(r.kind) && !src.overlay) continue;
        const u = toUpdate(src.ctx, r);
        if (!u) continue;
        if (u.body.case === 'policy' && !this.policyCompiles(src, r, u.body.value)) continue;
        rangesChanged = this.setWanted(src, id, u) || rangesChanged;
        this.reconcile(src, id);
        if (r.kind === 'Node' || (!src.ctx.remote && r.kind === 'IPPool')) topologyChanged = true;
      } else {
        const id = resourceId({ kind: ev.kind, name: ev.name, namespace: ev.namespace });
        this.refusals.resolved(src.name, id);
        this.refusals.set(src.name, `policy:${id}`, []);
        if (ev.kind === 'RemoteClusterConfiguration' || ev.kind === 'Secret') {
          if (src.ctx.remote) continue;
          if (ev.kind === 'Secret') this.deleteSecret(`${ev.namespace}/${ev.name}`, secretChanged);
          else {
            rccChanged.delete(ev.name);
            this.deleteRcc(ev.name);
          }
          continue;
        }
        rangesChanged = src.ranges.has(id) || rangesChanged;
        this.withdraw(src, id);
        if (ev.kind === 'Node' || (!src.ctx.remote && ev.kind === 'IPPool')) topologyChanged = true;
      }
    }
    this.applyRccChanges(rccChanged, secretChanged);
    // Local wins: a local pool or node change can make remote data conflict (or stop conflicting);
    // a node appearing or going in one remote can do the same for another remote's node names.
    if (topologyChanged) for (const r of this.remotesAfter('')) this.recheckAll(r.source);
    // Among remotes the first by name wins: a change in one can settle the later ones.
    else if (rangesChanged && src.ctx.remote)
      for (const r of this.remotesAfter(src.name)) this.recheckAll(r.source);
    if (src.ctx.remote) this.publishStatus(src);
  }

  /** Remotes named after `name`, in name order (the order in which their conflicts settle). */
  private remotesAfter(name: string): Remote[] {
    return [...this.remotes.values()]
      .filter((r) => r.source.name > name)
      .sort((a, b) => (a.source.name < b.source.name ? -1 : 1));
  }

  private setSecret(secret: Secret, changed: Set<string>): void {
    const key = `${secret.namespace}/${secret.name}`;
    const old = this.secrets.get(key);
    this.secrets.set(key, secret);
    if (!old || JSON.stringify(old.data) !== JSON.stringify(secret.data)) changed.add(key);
  }

  private deleteSecret(key: string, changed: Set<string>): void {
    if (this.secrets.delete(key)) changed.add(key);
  }

  private applyRccChanges(rccChanged: Set<string>, secretChanged: Set<string>): void {
    for (const name of rccChanged) {
      const rcc = this.rccs.get(name);
      if (rcc) this.upsertRcc(rcc);
    }
    if (secretChanged.size === 0) return;
    for (const remote of this.remotes.values()) {
      if (rccChanged.has(remote.rcc.name)) continue;
      const ref = secretRefOf(remote.rcc, this.secretNamespace);
      if (ref && secretChanged.has(`${ref.namespace}/${ref.name}`)) {
        log.info(
          { remote: remote.rcc.name, secret: `${ref.namespace}/${ref.name}` },
          'clusterAccessSecret changed',
        );
        this.applyConfig(remote, false);
      }
    }
  }

  private get secretNamespace(): string {
    return this.opts.defaultSecretNamespace ?? 'fedmesh-system';
  }

  /** Record what a source wants; true when its address ranges changed. */
  private setWanted(src: Source, id: string, u: Update): boolean {
    src.wanted.set(id, u);
    if (src === this.local && u.kind === ResourceKind.IP_POOL) this.poolCache = undefined;
    if (!src.ctx.remote) return false;
    const ranges = rangesOf(u);
    const old = src.ranges.get(id);
    indexRanges(src, id, ranges);
    return !sameRanges(old ?? [], ranges);
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
    if (src === this.local && u.kind === ResourceKind.IP_POOL) this.poolCache = undefined;
    indexRanges(src, id, []);
    src.conflicts.delete(id);
    src.notes.delete(id);
    const ck = cacheKey(u.kind, u.key);
    if (this.owner.get(ck) === src.name) {
      this.owner.delete(ck);
      this.opts.cache.delete(u.kind, u.key);
    }
  }

  /** Put a source's wanted update into the feed, unless it conflicts with the local cluster. */
  private reconcile(src: Source, id: string): void {
    const u = src.wanted.get(id);
    if (!u) return;
    const ck = cacheKey(u.kind, u.key);
    const conflict = src.ctx.remote ? this.conflictOf(src, u, src.ranges.get(id) ?? []) : undefined;
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
    if (src.ctx.remote) this.noteUnneededPools(src, id, u);
    if (owner !== undefined && owner !== src.name) {
      src.conflicts.set(id, `key ${u.key} already served by ${owner}`);
      log.warn(
        { cluster: src.name, resource: id, owner },
        'refused resource: its key is already in the feed',
      );
      return;
    }
    this.owner.set(ck, src.name);
    this.opts.cache.set(u, ck);
  }

  private recheckAll(src: Source): void {
    for (const id of src.wanted.keys()) this.reconcile(src, id);
    this.publishStatus(src);
  }

  /** Local pools with their ranges; disabled ones are NAT-exemption pools and never conflict. */
  private localPools(enabled: boolean): LocalPool[] {
    if (!this.poolCache) {
      this.poolCache = [];
      for (const u of this.local.wanted.values()) {
        if (u.body.case !== 'ipPool') continue;
        const p = u.body.value;
        this.poolCache.push({
          name: p.name,
          cidr: p.cidr,
          disabled: p.disabled,
          range: parseCidrParts(p.cidr),
        });
      }
    }
    return this.poolCache.filter((p) => p.disabled !== enabled);
  }

  private conflictOf(src: Source, u: Update, ranges: readonly Range[]): string | undefined {
    const b = u.body;
    if (b.case === 'workloadEndpoint') {
      // Calico: a remote endpoint's nets must be host routes; a wider one would claim a range.
      const wide = ranges.find((r) => r.cidr.len !== 32);
      if (wide) return `${wide.what} is wider than a host route (/32)`;
    }
    if (ranges.length) {
      const pools = this.localPools(true);
      for (const r of ranges) {
        const clash = pools.find((p) => overlaps(p.range, r.cidr));
        if (clash) return `${r.what} overlaps enabled local pool ${clash.name} (${clash.cidr})`;
      }
      // Between remotes, the first by name wins, whatever order their data arrived in.
      for (const other of this.remotes.values()) {
        const o = other.source;
        if (o === src || o.name > src.name) continue;
        for (const r of ranges) {
          const hit = findOverlap(o, r.cidr);
          if (hit) return `${r.what} overlaps ${hit.what} of remote cluster ${o.name} (first by name wins)`;
        }
      }
    }
    if (b.case === 'node') {
      const name = b.value.name;
      for (const other of [this.local, ...[...this.remotes.values()].map((r) => r.source)]) {
        if (other === src) continue;
        for (const ou of other.wanted.values()) {
          if (ou.body.case === 'node' && ou.body.value.name === name) {
            const ownedByOther = this.owner.get(cacheKey(ou.kind, ou.key)) === other.name;
            if (other === this.local || ownedByOther)
              return `node name ${name} is already used by cluster ${other.name}`;
          }
        }
      }
    }
    return undefined;
  }

  /**
   * With overlay routing a remote's pools come through and are exempt from NAT by themselves:
   * a disabled local pool covering one is no longer needed (Calico's documents say to delete it).
   * It does no harm, so this is a note, not a conflict.
   */
  private noteUnneededPools(src: Source, id: string, u: Update): void {
    if (u.body.case !== 'ipPool') return;
    const range = parseCidrParts(u.body.value.cidr);
    const covering = this.localPools(false).filter((p) => overlaps(p.range, range));
    const note = covering.length
      ? `disabled local pool ${covering.map((p) => `${p.name} (${p.cidr})`).join(', ')} covers remote pool ${u.body.value.cidr}: with overlay routing it is no longer needed and can be deleted`
      : undefined;
    if (note && src.notes.get(id) !== note) log.warn({ cluster: src.name, resource: id }, note);
    if (note) src.notes.set(id, note);
    else src.notes.delete(id);
  }

  private upsertRcc(rcc: RemoteClusterConfiguration): void {
    if (rcc.name === this.opts.cluster) {
      log.warn({ rcc: rcc.name }, 'a RemoteClusterConfiguration names the local cluster; ignored');
      return;
    }
    const text = JSON.stringify({ ...rcc, origin: undefined, labels: undefined, annotations: undefined });
    const existing = this.remotes.get(rcc.name);
    if (existing && existing.rccText === text) return;
    if (!existing) {
      const remote: Remote = {
        rcc,
        rccText: text,
        source: newSource(rcc.name, true, rcc.spec.overlayRouting),
      };
      this.remotes.set(rcc.name, remote);
      this.applyConfig(remote, true);
      return;
    }
    existing.rcc = rcc;
    existing.rccText = text;
    const overlayChanged = existing.source.overlay !== rcc.spec.overlayRouting;
    existing.source.overlay = rcc.spec.overlayRouting;
    // Overlay resources may no longer be wanted: drop them now; a resync restores the rest.
    if (overlayChanged && !rcc.spec.overlayRouting) {
      for (const [id, u] of [...existing.source.wanted]) {
        if (
          u.kind === ResourceKind.IP_POOL ||
          u.kind === ResourceKind.IPAM_BLOCK ||
          u.kind === ResourceKind.NODE
        )
          this.withdraw(existing.source, id);
      }
      this.publishStatus(existing.source);
    }
    // Overlay resources were skipped as they arrived: turning overlay on needs a fresh listing.
    this.applyConfig(existing, overlayChanged && rcc.spec.overlayRouting);
  }

  /**
   * Resolve the remote's configuration and act on it: keep the connection when it is the same,
   * reconnect in place when it changed, withdraw everything when it became incomplete.
   */
  private applyConfig(remote: Remote, force: boolean): void {
    if (this.stopped || this.remotes.get(remote.rcc.name) !== remote) return;
    const resolve =
      this.opts.resolveRemote ??
      ((rcc, secrets) =>
        resolveRemoteConfig(rcc, secrets, {
          defaultSecretNamespace: this.secretNamespace,
          ...(this.opts.fileRoot !== undefined ? { fileRoot: this.opts.fileRoot } : {}),
        }));
    let cfg = resolve(remote.rcc, (ns, name) => this.secrets.get(`${ns}/${name}`));
    let ds: Datastore | undefined;
    if ('connection' in cfg) {
      if (
        !force &&
        remote.datastore &&
        remote.connection &&
        sameConnection(remote.connection, cfg.connection)
      )
        return;
      try {
        ds = (this.opts.openRemote ?? openRemoteConnection)(cfg.connection);
      } catch (e) {
        cfg = { incomplete: (e as Error).message };
      }
    }
    if ('incomplete' in cfg) {
      this.configIncomplete(remote, cfg.incomplete);
      return;
    }
    if (!ds) return;
    const old = remote.datastore;
    if (old)
      log.info(
        { remote: remote.rcc.name, datastore: describeConnection(cfg.connection) },
        'remote cluster configuration changed; reconnecting in place',
      );
    remote.datastore = undefined;
    void old?.stop();
    remote.connection = cfg.connection;
    remote.incomplete = undefined;
    this.connectRemote(remote, ds);
  }

  /** Calico: a configuration that became unusable stops that remote and deletes its data. */
  private configIncomplete(remote: Remote, reason: string): void {
    const src = remote.source;
    if (remote.incomplete !== reason)
      log.warn(
        { remote: remote.rcc.name, reason },
        'remote cluster configuration incomplete; its data is withdrawn until it is fixed',
      );
    remote.incomplete = reason;
    const ds = remote.datastore;
    remote.datastore = undefined;
    remote.connection = undefined;
    void ds?.stop();
    clearTimeout(remote.retentionTimer);
    remote.retentionTimer = undefined;
    const hadRanges = src.ranges.size > 0;
    for (const id of [...src.wanted.keys()]) this.withdraw(src, id);
    src.status = 'ConfigIncomplete';
    src.detail = reason;
    src.seen = undefined;
    if (hadRanges) for (const r of this.remotesAfter(src.name)) this.recheckAll(r.source);
    this.publishStatus(src);
    this.checkInSync();
  }

  private connectRemote(remote: Remote, ds: Datastore): void {
    const src = remote.source;
    remote.datastore = ds;
    src.status = 'Connecting';
    src.detail = '';
    src.seen = new Set();
    this.publishStatus(src);
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
      .catch((e: Error) => {
        if (remote.datastore === ds) this.onRemoteStatus(remote, 'ConnectionFailed', e.message);
      });
  }

  private onRemoteStatus(remote: Remote, st: DatastoreStatus, detail?: string): void {
    const src = remote.source;
    if (st === 'InSync' && src.status !== 'InSync')
      // Typha's "Sending in-sync update" for a remote: one line each time it comes into sync.
      log.info(
        {
          remote: src.name,
          datastore: remote.datastore?.description,
          resources: src.wanted.size + (src.seen?.size ?? 0),
        },
        'remote cluster in sync: sending in-sync update',
      );
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
      const gone = new Set<string>();
      for (const [key, sec] of [...this.secrets]) {
        if (!seen.has(resourceId(sec))) this.deleteSecret(key, gone);
      }
      this.applyRccChanges(new Set(), gone);
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
    for (const r of this.remotesAfter(name)) this.recheckAll(r.source);
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
        detail: [src.detail, ...conflicts.slice(0, 5), ...src.notes.values()].filter(Boolean).join('; '),
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
    notes: new Map(),
    ranges: new Map(),
    hosts: new Map(),
    wide: new Map(),
  };
}

/** The address ranges an update claims: a pool's or block's CIDR, an endpoint's nets. */
function rangesOf(u: Update): Range[] {
  const b = u.body;
  if (b.case === 'ipPool') return [{ what: `pool ${b.value.cidr}`, cidr: parseCidrParts(b.value.cidr) }];
  if (b.case === 'ipamBlock') return [{ what: `block ${b.value.cidr}`, cidr: parseCidrParts(b.value.cidr) }];
  if (b.case === 'workloadEndpoint')
    return b.value.ipv4Nets.map((n) => ({ what: `endpoint net ${n}`, cidr: parseCidrParts(n, true) }));
  return [];
}

function sameRanges(a: readonly Range[], b: readonly Range[]): boolean {
  return (
    a.length === b.length &&
    a.every((x, i) => x.cidr.base === b[i]?.cidr.base && x.cidr.len === b[i]?.cidr.len)
  );
}

function maskOf(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

/** Whole ranges compared: they overlap when one contains the other's network. */
function overlaps(a: ParsedCidr, b: ParsedCidr): boolean {
  const m = maskOf(Math.min(a.len, b.len));
  return (a.base & m) >>> 0 === (b.base & m) >>> 0;
}

/** A served (not refused) range of `src` that overlaps `r`; host addresses looked up directly. */
function findOverlap(src: Source, r: ParsedCidr): Range | undefined {
  if (r.len === 32) {
    for (const id of src.hosts.get(r.base) ?? []) {
      if (!src.conflicts.has(id)) return src.ranges.get(id)?.find((x) => x.cidr.base === r.base);
    }
  }
  for (const [id, ranges] of r.len === 32 ? src.wide : src.ranges) {
    if (src.conflicts.has(id)) continue;
    for (const x of ranges) if (overlaps(x.cidr, r)) return x;
  }
  return undefined;
}

/** Index a source's ranges (or drop them, with `ranges` empty). */
function indexRanges(src: Source, id: string, ranges: Range[]): void {
  for (const x of src.ranges.get(id) ?? []) {
    if (x.cidr.len !== 32) continue;
    const ids = src.hosts.get(x.cidr.base);
    if (ids?.delete(id) && ids.size === 0) src.hosts.delete(x.cidr.base);
  }
  src.ranges.delete(id);
  src.wide.delete(id);
  if (ranges.length === 0) return;
  src.ranges.set(id, ranges);
  const wide = ranges.filter((x) => x.cidr.len !== 32);
  if (wide.length) src.wide.set(id, wide);
  for (const x of ranges) {
    if (x.cidr.len !== 32) continue;
    const ids = src.hosts.get(x.cidr.base);
    if (ids) ids.add(id);
    else src.hosts.set(x.cidr.base, new Set([id]));
  }
}

export type { Resource };
