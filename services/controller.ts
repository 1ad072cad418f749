// The services controller process: watches the local datastore and, through each
// RemoteClusterConfiguration, every remote's; recomputes the desired owned objects on every change
// (services/federation.ts, pure) and hands them to a writer. Nothing is written before the view is
// in sync (local in sync, and every remote known at start in sync or failed, bounded by a timeout,
// as the syncer does). A remote that fails has its endpoints withdrawn after a grace period (not
// fail-static: traffic should move to the clusters that answer); a deleted RCC withdraws at once.
// Failed writes are retried with backoff.
import { logger } from '../lib/log.ts';
import type { RemoteClusterConfiguration, Secret } from '../model/resources.ts';
import type { ConnectionConfig } from '../syncer/datastore/connection.ts';
import { describeConnection } from '../syncer/datastore/connection.ts';
import { openRemoteConnection } from '../syncer/datastore/open.ts';
import type { Datastore } from '../syncer/datastore/types.ts';
import type { SecretLookup } from '../syncer/remote-config.ts';
import { ClusterState } from './cluster-state.ts';
import { desiredState } from './federation.ts';
import type { RemoteAccess, RemoteResolver } from './remotes.ts';
import type { ClusterView, DesiredState } from './types.ts';
import { clusterView } from './view.ts';
import type { OwnedWriter } from './writer.ts';

const log = logger('services-controller');

export interface ControllerOptions {
  cluster: string;
  local: Datastore;
  /** The local datastore has no endpoints controller (file): derive endpoints of selector Services. */
  localDerive: boolean;
  writer: OwnedWriter;
  resolveRemote: RemoteResolver;
  openRemote?: (config: ConnectionConfig) => Datastore;
  /** How long the first write waits for remotes known at start. */
  remoteSyncTimeoutMs: number;
  /** How long a failed remote's endpoints stay before they are withdrawn (Calico: 0). */
  remoteEndpointsGraceMs: number;
  /** Changes arriving within this long are computed together. */
  debounceMs?: number;
  /** First retry delay after a failed write; doubles up to maxRetryMs. */
  retryMs?: number;
  maxRetryMs?: number;
}

export type RemoteStatusName =
  | 'Connecting'
  | 'ResyncInProgress'
  | 'InSync'
  | 'ConnectionFailed'
  | 'Skipped'
  | 'ConfigIncomplete';

export interface RemoteStatus {
  cluster: string;
  status: RemoteStatusName;
  detail: string;
  /** Its endpoints are in the federated Services (false while failed beyond the grace period). */
  contributing: boolean;
}

interface Remote {
  name: string;
  /** The resolved connection as text (RCC and Secret): a change means a new connection. */
  rccKey: string;
  access: RemoteAccess;
  datastore?: Datastore;
  state: ClusterState;
  derive: boolean;
  withdrawn: boolean;
  graceTimer?: NodeJS.Timeout;
}

export class ServicesController {
  private readonly local = new ClusterState();
  private readonly remotes = new Map<string, Remote>();
  private startRemotes?: Set<string>;
  private syncTimer?: NodeJS.Timeout;
  private debounceTimer?: NodeJS.Timeout;
  private retryTimer?: NodeJS.Timeout;
  private readyToWrite = false;
  private writing?: Promise<void>;
  private pending?: DesiredState;
  private retryDelay: number;
  private stopped = false;
  private loggedProblems = new Map<string, string>();
  /** The last computed desired state, and the last one written. */
  last?: DesiredState;
  written?: DesiredState;
  writeFailures = 0;
  lastWriteError?: string;
  writes = 0;

  constructor(private readonly opts: ControllerOptions) {
    this.retryDelay = opts.retryMs ?? 200;
  }

  async start(): Promise<void> {
    await this.opts.local.start({
      onEvents: (events) => {
        this.local.apply(events);
        this.syncRemotes();
        this.schedule();
      },
      onStatus: (st, detail) => this.onLocalStatus(st, detail),
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of [this.syncTimer, this.debounceTimer, this.retryTimer]) clearTimeout(t);
    await this.opts.local.stop();
    for (const r of this.remotes.values()) await this.dropRemote(r);
    await this.writing;
  }

  get inSync(): boolean {
    return this.readyToWrite;
  }

  remoteStatuses(): RemoteStatus[] {
    return [...this.remotes.values()]
      .map((r): RemoteStatus => {
        if ('skip' in r.access)
          return { cluster: r.name, status: 'Skipped', detail: r.access.skip, contributing: false };
        if ('error' in r.access)
          return { cluster: r.name, status: 'ConfigIncomplete', detail: r.access.error, contributing: false };
        return {
          cluster: r.name,
          status: r.state.status,
          detail: r.state.detail,
          contributing: this.contributes(r),
        };
      })
      .sort((a, b) => (a.cluster < b.cluster ? -1 : 1));
  }

  // -------------------------------------------------------------------------------------------
  // In-sync

  private onLocalStatus(st: ClusterState['status'], detail?: string): void {
    this.local.onStatus(st, detail);
    if (st === 'InSync' && this.startRemotes === undefined) {
      this.startRemotes = new Set(this.remotes.keys());
      this.syncTimer = setTimeout(() => {
        const waiting = [...(this.startRemotes ?? [])].filter((n) => !this.settled(n));
        if (waiting.length > 0)
          log.warn({ waiting }, 'remote clusters not in sync in time; writing without them');
        this.startRemotes = new Set();
        this.checkReady();
      }, this.opts.remoteSyncTimeoutMs);
      this.syncTimer.unref();
    }
    this.checkReady();
  }

  private settled(name: string): boolean {
    const r = this.remotes.get(name);
    if (!r || !('config' in r.access)) return true;
    return r.state.status === 'InSync' || r.state.status === 'ConnectionFailed';
  }

  private checkReady(): void {
    if (this.readyToWrite || this.local.status !== 'InSync' || !this.startRemotes) return;
    if (![...this.startRemotes].every((n) => this.settled(n))) return;
    clearTimeout(this.syncTimer);
    this.readyToWrite = true;
    log.info({ remotes: [...this.remotes.keys()] }, 'in sync: writing federated endpoints');
    this.schedule();
  }

  // -------------------------------------------------------------------------------------------
  // Remotes

  private syncRemotes(): void {
    const rccs = new Map<string, RemoteClusterConfiguration>();
    const secrets = new Map<string, Secret>();
    for (const r of this.local.values()) {
      if (r.kind === 'RemoteClusterConfiguration') rccs.set(r.name, r);
      else if (r.kind === 'Secret') secrets.set(`${r.namespace}/${r.name}`, r);
    }
    const lookup: SecretLookup = (ns, name) => secrets.get(`${ns}/${name}`);
    for (const [name, remote] of this.remotes) {
      const rcc = rccs.get(name);
      if (!rcc || accessKey(this.opts.resolveRemote(rcc, lookup)) !== remote.rccKey) {
        log.info(
          { remote: name },
          rcc ? 'RCC changed: reconnecting' : 'RCC deleted: withdrawing its endpoints',
        );
        this.remotes.delete(name);
        this.startRemotes?.delete(name);
        void this.dropRemote(remote);
      }
    }
    for (const [name, rcc] of rccs) if (!this.remotes.has(name)) this.addRemote(name, rcc, lookup);
  }

  private addRemote(name: string, rcc: RemoteClusterConfiguration, secrets: SecretLookup): void {
    const access = this.opts.resolveRemote(rcc, secrets);
    const remote: Remote = {
      name,
      rccKey: accessKey(access),
      access,
      state: new ClusterState(),
      derive: 'config' in access && access.config.type === 'file',
      withdrawn: false,
    };
    this.remotes.set(name, remote);
    if ('skip' in access) {
      log.warn({ remote: name }, `remote cluster skipped: ${access.skip}`);
      return;
    }
    if ('error' in access) {
      log.warn({ remote: name }, `remote cluster not readable: ${access.error}`);
      return;
    }
    let ds: Datastore;
    try {
      ds = (this.opts.openRemote ?? openRemoteConnection)(access.config);
    } catch (e) {
      remote.access = { error: (e as Error).message };
      log.warn({ remote: name }, `remote cluster not readable: ${(e as Error).message}`);
      return;
    }
    remote.datastore = ds;
    log.info({ remote: name, datastore: describeConnection(access.config) }, 'watching remote cluster');
    void ds.start({
      onEvents: (events) => {
        if (this.remotes.get(name) !== remote) return;
        remote.state.apply(events);
        this.schedule();
      },
      onStatus: (st, detail) => {
        if (this.remotes.get(name) !== remote) return;
        this.onRemoteStatus(remote, st, detail);
      },
    });
  }

  private onRemoteStatus(remote: Remote, st: ClusterState['status'], detail?: string): void {
    const was = remote.state.status;
    remote.state.onStatus(st, detail);
    if (st === 'ConnectionFailed' && was !== 'ConnectionFailed') {
      log.warn(
        { remote: remote.name, detail, graceMs: this.opts.remoteEndpointsGraceMs },
        'remote cluster failed: its endpoints are withdrawn after the grace period',
      );
      clearTimeout(remote.graceTimer);
      remote.graceTimer = setTimeout(() => {
        remote.withdrawn = true;
        this.schedule();
      }, this.opts.remoteEndpointsGraceMs);
      remote.graceTimer.unref();
    }
    if (st === 'InSync') {
      clearTimeout(remote.graceTimer);
      if (remote.withdrawn) log.info({ remote: remote.name }, 'remote cluster back: its endpoints return');
      remote.withdrawn = false;
      this.schedule();
    }
    this.checkReady();
  }

  private async dropRemote(r: Remote): Promise<void> {
    clearTimeout(r.graceTimer);
    r.state.clear();
    this.schedule();
    await r.datastore?.stop();
  }

  private contributes(r: Remote): boolean {
    return 'config' in r.access && r.state.synced && !r.withdrawn;
  }

  // -------------------------------------------------------------------------------------------
  // Compute and write

  private schedule(): void {
    if (this.stopped || !this.readyToWrite || this.debounceTimer) return;
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      this.recompute();
    }, this.opts.debounceMs ?? 10);
  }

  /** The desired state for what the controller sees now (also used by `fedmesh services`). */
  compute(): DesiredState {
    const { view, local } = clusterView(this.opts.cluster, false, this.local.values(), {
      derive: this.opts.localDerive,
    });
    const remotes: ClusterView[] = [];
    for (const r of this.remotes.values()) {
      if (this.contributes(r))
        remotes.push(clusterView(r.name, true, r.state.values(), { derive: r.derive }).view);
    }
    return desiredState({
      local: view,
      remotes,
      localEndpoints: local.endpoints,
      localImports: local.imports,
    });
  }

  private recompute(): void {
    if (this.stopped) return;
    const desired = this.compute();
    this.last = desired;
    this.logProblems(desired);
    this.pending = desired;
    if (!this.writing && !this.retryTimer) this.writing = this.drain();
  }

  private async drain(): Promise<void> {
    try {
      while (this.pending && !this.stopped) {
        const d = this.pending;
        this.pending = undefined;
        const started = Date.now();
        try {
          await this.opts.writer.write({
            objects: [...d.endpoints, ...d.endpointSlices, ...d.serviceImports],
            exportStatus: d.exportStatus,
          });
          this.written = d;
          this.writes += 1;
          this.retryDelay = this.opts.retryMs ?? 200;
          log.debug(
            {
              objects: d.endpoints.length + d.endpointSlices.length + d.serviceImports.length,
              ms: Date.now() - started,
            },
            'owned objects written',
          );
        } catch (e) {
          this.writeFailures += 1;
          this.lastWriteError = (e as Error).message;
          // A newer desired state, if any, supersedes this one; either way, try again later.
          this.pending ??= d;
          log.warn(
            { writer: this.opts.writer.description, retryMs: this.retryDelay, err: this.lastWriteError },
            'write failed; retrying',
          );
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
            if (!this.writing) this.writing = this.drain();
          }, this.retryDelay);
          this.retryTimer.unref();
          this.retryDelay = Math.min(this.retryDelay * 2, this.opts.maxRetryMs ?? 30_000);
          return;
        }
      }
    } finally {
      this.writing = undefined;
    }
  }

  private logProblems(d: DesiredState): void {
    const now = new Map<string, string>();
    for (const s of d.services) {
      if (s.problems.length === 0) continue;
      const id = `${s.kind} ${s.namespace}/${s.name}`;
      const text = s.problems.join('; ');
      now.set(id, text);
      if (this.loggedProblems.get(id) !== text)
        log.warn({ service: `${s.namespace}/${s.name}`, kind: s.kind }, text);
    }
    this.loggedProblems = now;
  }
}

/** A resolved access as text, to tell a changed RCC or Secret from an unchanged one. */
function accessKey(a: RemoteAccess): string {
  return JSON.stringify(a);
}
