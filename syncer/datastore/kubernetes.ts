// The kubernetes datastore: a cluster's API server read through @kubernetes/client-node, kept
// thin. Per resource of kube-resources.ts (and per namespace for Secrets) one reflector lists
// (with the list's resourceVersion, in pages), then watches from that resourceVersion with
// bookmarks, as client-go's reflector does:
// - a watch that ends (server timeout) is resumed from the last resourceVersion seen;
// - 410 Gone (history compacted) → relist, and only the difference to what was emitted goes out:
//   nothing unchanged is withdrawn and re-added;
// - a lost connection → ConnectionFailed, every object kept (fail-static), reconnect with
//   exponential backoff and resume the watch where it stopped (relist only if it must);
// - a resource the server does not serve (CRD not installed) or forbids (RBAC) counts as empty,
//   is logged once, re-checked every minute and never blocks the rest.
// Objects become model Resources through model/validate.ts exactly as files do; an object the
// model refuses is logged with its path and field and keeps its last good version.
import { KubeConfig, Watch } from '@kubernetes/client-node';
import fetch from 'node-fetch';
import { logger } from '../../lib/log.ts';
import { type Resource, type ResourceError, resourceId } from '../../model/resources.ts';
import { isKnownKind, validateResource } from '../../model/validate.ts';
import type { KubernetesConnection } from './connection.ts';
import { contentKey } from './content-key.ts';
import { apiVersionOf, collectionPath, KUBE_RESOURCES, type KubeResource } from './kube-resources.ts';
import type { Datastore, DatastoreEvent, DatastoreHandlers, DatastoreStatus } from './types.ts';
import { deleteEvent } from './types.ts';

const log = logger('kube-datastore');

const RCC_RESOURCE = KUBE_RESOURCES.find((r) => r.kind === 'RemoteClusterConfiguration') as KubeResource;

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects are free-form JSON.
type KubeObject = Record<string, any>;

export interface KubeDatastoreOptions {
  /** First reconnect delay, doubled up to maxBackoffMs. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** How often a resource that is not served or forbidden is asked for again. */
  unavailableRetryMs?: number;
  /** A watch is renewed after this long (jittered up to twice), as client-go does. */
  watchTimeoutSeconds?: number;
  /** List page size (`limit`). */
  pageSize?: number;
  /** Prefix of the service-account files for in-cluster configuration (tests). */
  inClusterRoot?: string;
  /**
   * A remote cluster's datastore: only what is federated is read (kube-resources.ts `remote`), as
   * the peer grants nothing more; no RCCs, no Secrets, no policies.
   */
  remote?: boolean;
}

/** A failed request: HTTP status and reason when the server answered, none when it could not be reached. */
export class KubeApiError extends Error {
  constructor(
    message: string,
    readonly statusCode?: number,
    readonly reason?: string,
  ) {
    super(message);
  }
}

const b64 = (pem: string | undefined) =>
  pem === undefined ? undefined : Buffer.from(pem).toString('base64');

/** The client configuration for one connection; throws for a configuration that cannot work. */
export function kubeConfigFor(c: KubernetesConnection, inClusterRoot = ''): KubeConfig {
  const kc = new KubeConfig();
  const s = c.source;
  if (s.kind === 'kubeconfig') {
    kc.loadFromString(s.text);
    if (s.context) kc.setCurrentContext(s.context);
  } else if (s.kind === 'in-cluster') {
    if (!process.env.KUBERNETES_SERVICE_HOST || !process.env.KUBERNETES_SERVICE_PORT) {
      throw new Error(
        'kubernetes (in-cluster): KUBERNETES_SERVICE_HOST/PORT are not set (not in a pod?); give --datastore kubernetes:KUBECONFIG, KUBECONFIG or --k8s-api-endpoint',
      );
    }
    kc.loadFromCluster(inClusterRoot);
  } else {
    kc.loadFromOptions({
      clusters: [
        {
          name: 'fedmesh',
          server: s.server,
          caData: b64(s.tls?.ca),
          skipTLSVerify: s.insecureSkipTLSVerify === true,
        },
      ],
      users: [{ name: 'fedmesh', token: s.token, certData: b64(s.tls?.cert), keyData: b64(s.tls?.key) }],
      contexts: [{ name: 'fedmesh', cluster: 'fedmesh', user: 'fedmesh' }],
      currentContext: 'fedmesh',
    });
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster?.server) throw new Error('kubernetes: the kubeconfig names no current cluster with a server');
  return kc;
}

/** A thin client: JSON GETs and watches, authenticated as the KubeConfig says. */
class KubeClient {
  private readonly watcher: Watch;
  readonly server: string;

  constructor(private readonly kc: KubeConfig) {
    this.watcher = new Watch(kc);
    this.server = kc.getCurrentCluster()?.server.replace(/\/+$/, '') ?? '';
  }

  async get(
    path: string,
    params: Record<string, string | undefined>,
    signal: AbortSignal,
  ): Promise<KubeObject> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(params)) if (v !== undefined) url.searchParams.set(k, v);
    const init = await this.kc.applyToFetchOptions({});
    let res: Awaited<ReturnType<typeof fetch>>;
    let text: string;
    try {
      // biome-ignore lint/suspicious/noExplicitAny: node-fetch's and the DOM's AbortSignal types differ.
      res = await fetch(url.toString(), { ...init, method: 'GET', signal: signal as any, timeout: 60_000 });
      text = await res.text();
    } catch (e) {
      throw new KubeApiError(`${url.host}: ${(e as Error).message}`);
    }
    if (!res.ok) {
      let status: KubeObject | undefined;
      try {
        status = JSON.parse(text);
      } catch {}
      throw new KubeApiError(
        `${res.status} ${status?.reason ?? res.statusText}: ${status?.message ?? text.slice(0, 200)}`,
        res.status,
        status?.reason,
      );
    }
    return JSON.parse(text);
  }

  /** Resolves with an abort function once the server accepted the watch. */
  watch(
    path: string,
    params: Record<string, string | number | boolean | undefined>,
    onEvent: (type: string, object: KubeObject) => void,
    onDone: (err?: unknown) => void,
  ): Promise<AbortController> {
    return this.watcher.watch(path, params, onEvent, (err) => onDone(err ?? undefined));
  }
}

function httpStatusOf(e: unknown): number | undefined {
  const code = (e as { statusCode?: unknown }).statusCode;
  return typeof code === 'number' ? code : undefined;
}

/** One collection (in one namespace, or across all), listed then watched. */
class Reflector {
  /** The resourceVersion to watch from; undefined: list first. */
  private rv?: string;
  private abort = new AbortController();
  private loop?: Promise<void>;
  private listedOnce = false;
  private loggedUnavailable = false;
  /** Resolves after the first listing succeeded, or the first attempt failed. */
  readonly firstAttempt: Promise<void>;
  private settleFirst!: () => void;
  relists = 0;

  constructor(
    private readonly ds: KubernetesDatastore,
    readonly resource: KubeResource,
    readonly namespace: string | undefined,
  ) {
    this.firstAttempt = new Promise((resolve) => {
      this.settleFirst = resolve;
    });
  }

  /** Prefix of the keys of every object this reflector owns. */
  get prefix(): string {
    return `${this.resource.plural}.${this.resource.group}|${this.namespace ?? '*'}|`;
  }

  get listed(): boolean {
    return this.listedOnce;
  }

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    const o = this.ds.opts;
    let backoff = o.minBackoffMs;
    while (!this.abort.signal.aborted) {
      try {
        // Healthy only once the server has answered (a listing here, or the watch accepted in
        // watchOnce): before the first request of a retry nothing is known, and saying healthy then
        // flipped a down cluster to InSync for a moment on every retry.
        if (this.rv === undefined) {
          await this.relist();
          this.ds.reflectorHealthy(this);
        }
        await this.watchOnce();
        backoff = o.minBackoffMs;
      } catch (e) {
        if (this.abort.signal.aborted) return;
        const code = httpStatusOf(e);
        if (code === 410) {
          // Too old to resume or to continue a paged list: start over from a fresh listing.
          this.rv = undefined;
          continue;
        }
        if (code === 403 || code === 404) {
          this.unavailable(code, e as Error);
          await this.sleep(o.unavailableRetryMs);
          continue;
        }
        this.ds.reflectorFailed(this, (e as Error).message);
        this.settleFirst();
        await this.sleep(backoff);
        backoff = Math.min(backoff * 2, o.maxBackoffMs);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const signal = this.abort.signal;
      const done = () => {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, ms);
      signal.addEventListener('abort', done);
    });
  }

  private unavailable(code: number, e: Error): void {
    if (!this.loggedUnavailable) {
      const what = `${apiVersionOf(this.resource)} ${this.resource.plural}${this.namespace ? ` in namespace ${this.namespace}` : ''}`;
      log.warn(
        { server: this.ds.client.server, resource: this.resource.plural, namespace: this.namespace },
        code === 403
          ? `cannot read ${what}: forbidden (grant get/list/watch to the syncer's service account); treated as empty, asked again every ${this.ds.opts.unavailableRetryMs / 1000}s`
          : `${what} is not served by this API server (CRD not installed?); treated as empty, asked again every ${this.ds.opts.unavailableRetryMs / 1000}s`,
      );
      log.debug({ err: e.message }, 'unavailable resource');
      this.loggedUnavailable = true;
    }
    // Never listed: it holds nothing back. Listed before: what it had stays (fail-static).
    if (!this.listedOnce) {
      this.listedOnce = true;
      this.ds.replaceAll(this, []);
    }
    this.ds.reflectorHealthy(this);
    this.settleFirst();
  }

  private async relist(): Promise<void> {
    const path = collectionPath(this.resource, this.namespace);
    const items: KubeObject[] = [];
    let cont: string | undefined;
    let rv = '';
    do {
      const page = await this.ds.client.get(
        path,
        { limit: String(this.ds.opts.pageSize), continue: cont },
        this.abort.signal,
      );
      items.push(...(page.items ?? []));
      rv = page.metadata?.resourceVersion ?? '';
      cont = page.metadata?.continue || undefined;
    } while (cont);
    if (this.abort.signal.aborted) return;
    if (this.listedOnce) this.relists += 1;
    this.listedOnce = true;
    this.loggedUnavailable = false;
    this.ds.replaceAll(this, items);
    this.rv = rv;
    this.settleFirst();
  }

  /**
   * One watch, from this.rv. Resolves when it ends, however it ends once established (a dropped
   * connection is found out by the next request, which decides ConnectionFailed); rejects when it
   * cannot be established, and on an ERROR event (410 included).
   */
  private watchOnce(): Promise<void> {
    const timeout = this.ds.opts.watchTimeoutSeconds;
    const params = {
      resourceVersion: this.rv,
      allowWatchBookmarks: true,
      timeoutSeconds: Math.floor(timeout * (1 + Math.random())),
    };
    return new Promise((resolve, reject) => {
      let ended = false;
      let controller: AbortController | undefined;
      const finish = (err?: unknown) => {
        if (ended) return;
        ended = true;
        this.abort.signal.removeEventListener('abort', onAbort);
        controller?.abort();
        if (err) reject(err);
        else resolve();
      };
      const onAbort = () => finish();
      this.abort.signal.addEventListener('abort', onAbort);
      const onEvent = (type: string, obj: KubeObject) => {
        if (ended) return;
        if (type === 'ERROR') {
          const code = typeof obj?.code === 'number' ? obj.code : undefined;
          finish(new KubeApiError(`watch: ${obj?.message ?? 'error event'}`, code, obj?.reason));
          return;
        }
        const rv = obj?.metadata?.resourceVersion;
        if (typeof rv === 'string' && rv !== '') this.rv = rv;
        if (type === 'BOOKMARK') return;
        if (type === 'ADDED' || type === 'MODIFIED') this.ds.apply(this, obj);
        else if (type === 'DELETED') this.ds.apply(this, obj, true);
      };
      this.ds.client
        .watch(collectionPath(this.resource, this.namespace), params, onEvent, (err) => {
          if (!err) return finish();
          if (controller) {
            log.debug({ resource: this.resource.plural, err: String(err) }, 'watch ended');
            return finish();
          }
          finish(new KubeApiError(`watch: ${(err as Error).message ?? err}`, httpStatusOf(err)));
        })
        .then(
          (c) => {
            controller = c;
            if (ended) c.abort();
            else this.ds.reflectorHealthy(this);
          },
          (e) => finish(e),
        );
    });
  }
}

interface Produced {
  resource: Resource;
  /** contentKey(resource), computed when first compared: a first listing needs none. */
  key?: string;
}

export class KubernetesDatastore implements Datastore {
  readonly description: string;
  readonly client: KubeClient;
  readonly opts: Required<Omit<KubeDatastoreOptions, 'inClusterRoot' | 'remote'>>;
  /** The collections this datastore reads. */
  private readonly resources: readonly KubeResource[];
  private handlers?: DatastoreHandlers;
  private readonly reflectors = new Map<string, Reflector>();
  /** Object key (reflector prefix + namespace/name) → the resources it produced, as last emitted. */
  private readonly produced = new Map<string, Map<string, Produced>>();
  private pending: DatastoreEvent[] = [];
  private flushScheduled = false;
  private initialDone = false;
  /** start() has created a reflector for every resource. */
  private allAdded = false;
  private revision = 0;
  private status?: DatastoreStatus;
  /** Reflectors whose last request failed, with why. */
  private readonly failing = new Map<Reflector, string>();
  private stopped = false;
  private settleStart?: () => void;
  private readonly loggedSkips = new Set<string>();
  /** Namespace for a clusterAccessSecret that names none: the client's own (in-cluster: the pod's). */
  private readonly ownNamespace: string;

  constructor(config: KubernetesConnection, opts: KubeDatastoreOptions = {}) {
    const kc = kubeConfigFor(config, opts.inClusterRoot ?? process.env.FEDMESH_K8S_IN_CLUSTER_ROOT ?? '');
    this.client = new KubeClient(kc);
    this.description = `kubernetes:${this.client.server}`;
    this.ownNamespace = kc.getContextObject(kc.getCurrentContext())?.namespace || 'default';
    this.resources = opts.remote ? KUBE_RESOURCES.filter((r) => r.remote) : KUBE_RESOURCES;
    this.opts = {
      minBackoffMs: opts.minBackoffMs ?? 500,
      maxBackoffMs: opts.maxBackoffMs ?? 30_000,
      unavailableRetryMs: opts.unavailableRetryMs ?? 60_000,
      watchTimeoutSeconds: opts.watchTimeoutSeconds ?? 300,
      pageSize: opts.pageSize ?? 500,
    };
  }

  /** How many times any collection had to be listed again (410 Gone), for tests and logs. */
  get relistCount(): number {
    let n = 0;
    for (const r of this.reflectors.values()) n += r.relists;
    return n;
  }

  async start(handlers: DatastoreHandlers): Promise<void> {
    if (this.handlers) throw new Error(`${this.description}: already started`);
    this.handlers = handlers;
    this.setStatus('Connecting');
    const started = new Promise<void>((resolve) => {
      this.settleStart = resolve;
    });
    // RemoteClusterConfigurations first: they say which namespaces' Secrets belong to the listing.
    const rcc = this.resources.find((r) => r === RCC_RESOURCE);
    if (rcc) await this.addReflector(rcc, undefined).firstAttempt;
    if (this.stopped) return;
    for (const r of this.resources) {
      if (r === rcc) continue;
      if (r.onlyInRccSecretNamespaces) for (const ns of this.secretNamespaces()) this.addReflector(r, ns);
      else this.addReflector(r, undefined);
    }
    this.allAdded = true;
    this.checkInitial();
    await started;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.settleStart?.();
    await Promise.all([...this.reflectors.values()].map((r) => r.stop()));
  }

  private addReflector(r: KubeResource, namespace: string | undefined): Reflector {
    const reflector = new Reflector(this, r, namespace);
    this.reflectors.set(reflector.prefix, reflector);
    reflector.start();
    return reflector;
  }

  // -------------------------------------------------------------------------------------------
  // Status

  reflectorHealthy(r: Reflector): void {
    if (this.failing.delete(r) && this.failing.size === 0 && this.initialDone) {
      log.info({ server: this.client.server }, 'API server reachable again; watches resumed');
      this.setStatus('InSync');
    }
    this.checkInitial();
  }

  reflectorFailed(r: Reflector, detail: string): void {
    this.failing.set(r, detail);
    if (this.status !== 'ConnectionFailed') {
      log.warn(
        { server: this.client.server, resource: r.resource.plural, detail },
        'API server unreachable or refusing requests; keeping the last data (fail-static), retrying with backoff',
      );
      this.setStatus('ConnectionFailed', detail);
    }
    this.settleStart?.();
  }

  /** The first complete listing: everything, in one batch, then InSync. */
  private checkInitial(): void {
    if (this.initialDone || this.stopped) return;
    if (!this.allAdded) return;
    for (const r of this.reflectors.values()) if (!r.listed) return;
    this.initialDone = true;
    this.pending = [];
    this.setStatus('ResyncInProgress');
    const events: DatastoreEvent[] = [];
    for (const byId of this.produced.values())
      for (const p of byId.values()) events.push({ type: 'upsert', resource: p.resource });
    this.emit(events);
    if (this.failing.size === 0) this.setStatus('InSync');
    this.settleStart?.();
  }

  private setStatus(status: DatastoreStatus, detail?: string): void {
    if (this.stopped) return;
    this.status = status;
    log.debug({ server: this.client.server, status, detail }, 'status');
    this.handlers?.onStatus(status, detail);
  }

  // -------------------------------------------------------------------------------------------
  // Objects → resources → events

  /** A reflector's complete listing: what it no longer has is deleted, what changed is upserted. */
  replaceAll(r: Reflector, items: KubeObject[]): void {
    const seen = new Set<string>();
    for (const item of items) seen.add(this.apply(r, item));
    for (const key of [...this.produced.keys()]) {
      if (key.startsWith(r.prefix) && !seen.has(key)) this.setProduced(key, new Map());
    }
  }

  /** One object added, changed or deleted; returns its key. */
  apply(r: Reflector, obj: KubeObject, deleted = false): string {
    const md = obj?.metadata ?? {};
    const key = `${r.prefix}${md.namespace ?? ''}/${md.name ?? ''}`;
    if (deleted) {
      this.setProduced(key, new Map());
      return key;
    }
    const converted = this.convert(r.resource, obj);
    // Refused: the last good version stays, as for a file.
    if (converted) this.setProduced(key, new Map(converted.map((res) => [resourceId(res), res])));
    return key;
  }

  private setProduced(key: string, now: Map<string, Resource>): void {
    const before = this.produced.get(key);
    const next = new Map<string, Produced>();
    for (const [id, resource] of now) {
      const prev = before?.get(id);
      if (prev) {
        prev.key ??= contentKey(prev.resource);
        const k = contentKey(resource);
        if (prev.key === k) {
          next.set(id, prev);
          continue;
        }
        next.set(id, { resource, key: k });
      } else next.set(id, { resource });
      this.queue({ type: 'upsert', resource });
    }
    for (const [id, prev] of before ?? []) if (!now.has(id)) this.queue(deleteEvent(prev.resource));
    if (next.size > 0) this.produced.set(key, next);
    else this.produced.delete(key);
    if (key.startsWith(this.rccPrefix)) this.updateSecretReflectors();
  }

  private get rccPrefix(): string {
    return `${RCC_RESOURCE.plural}.${RCC_RESOURCE.group}|*|`;
  }

  /** The model's documents for one object: [] when there are none (skipped, ignored), undefined when refused. */
  private convert(r: KubeResource, obj: KubeObject): Resource[] | undefined {
    // Calico's CRDs hold projectcalico.org/v3 specs (that is how Calico's KDD mode stores them).
    const apiVersion = r.group === 'crd.projectcalico.org' ? 'projectcalico.org/v3' : apiVersionOf(r);
    const md = obj?.metadata ?? {};
    const where = `${md.namespace ? `${md.namespace}/` : ''}${md.name}`;
    if (!isKnownKind(apiVersion, r.kind)) {
      this.logSkipOnce(r.kind, `${apiVersion} ${r.kind} is not read by this build; skipped`);
      return [];
    }
    const origin = { source: `${this.description} ${apiVersionOf(r)} ${r.plural} ${where}` };
    const out = validateResource({ ...obj, apiVersion, kind: r.kind }, origin, process.cwd());
    if ('resource' in out) return [out.resource];
    if ('errors' in out) {
      this.refused(out.errors);
      return undefined;
    }
    if ('skipped' in out)
      this.logSkipOnce(`${r.kind}/${where}`, `${r.kind} ${where}: skipped: ${out.skipped.reason}`);
    return [];
  }

  private refused(errors: ResourceError[]): void {
    for (const e of errors) {
      log.warn(
        { object: e.origin.source, resource: e.resource, field: e.field },
        `refused: ${e.field ? `${e.field}: ` : ''}${e.message} (keeping its last good version, if any)`,
      );
    }
    if (!this.stopped) this.handlers?.onErrors?.(errors);
  }

  private logSkipOnce(key: string, message: string): void {
    if (this.loggedSkips.has(key)) return;
    this.loggedSkips.add(key);
    log.info({ server: this.client.server }, message);
  }

  private queue(ev: DatastoreEvent): void {
    // Before the first listing is complete, the listing itself is the batch (checkInitial).
    if (!this.initialDone) return;
    this.pending.push(ev);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Events of one burst (a relist, a chunk of a watch stream) go out as one batch.
    setImmediate(() => {
      this.flushScheduled = false;
      const events = this.pending;
      this.pending = [];
      if (events.length > 0) this.emit(events);
    });
  }

  private emit(events: DatastoreEvent[]): void {
    if (this.stopped) return;
    this.revision += 1;
    this.handlers?.onEvents(events, this.revision);
  }

  // -------------------------------------------------------------------------------------------
  // Secrets: only in the namespaces RemoteClusterConfigurations name

  private secretNamespaces(): Set<string> {
    const out = new Set<string>();
    for (const [key, byId] of this.produced) {
      if (!key.startsWith(this.rccPrefix)) continue;
      for (const { resource } of byId.values()) {
        if (resource.kind !== 'RemoteClusterConfiguration') continue;
        const ref = resource.spec.clusterAccessSecret;
        if (ref) out.add(ref.namespace ?? this.ownNamespace);
      }
    }
    return out;
  }

  private updateSecretReflectors(): void {
    // Before start() created the others, the initial set is decided there.
    if (this.stopped || !this.allAdded) return;
    const secrets = this.resources.find((r) => r.onlyInRccSecretNamespaces);
    if (!secrets) return;
    const wanted = this.secretNamespaces();
    for (const [prefix, reflector] of this.reflectors) {
      if (reflector.resource !== secrets || wanted.has(reflector.namespace ?? '')) continue;
      this.reflectors.delete(prefix);
      this.failing.delete(reflector);
      void reflector.stop();
      for (const key of [...this.produced.keys()])
        if (key.startsWith(prefix)) this.setProduced(key, new Map());
    }
    const have = new Set(
      [...this.reflectors.values()].filter((r) => r.resource === secrets).map((r) => r.namespace),
    );
    for (const ns of wanted) if (!have.has(ns)) this.addReflector(secrets, ns);
  }
}
