import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { KUBE_RESOURCES } from '../../syncer/datastore/kube-resources.ts';
import { makeCa, makeLeaf } from '../helpers/certs.ts';

export interface ResourceType {
  /** '' for the core group. */
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
}

/**
 * What a real cluster with Calico (KDD) and the MCS API serves: everything the driver reads
 * (syncer/datastore/kube-resources.ts), ConfigMaps for kubectl tests, and the MCS kinds the
 * services controller writes; `types` replaces it.
 */
export const DEFAULT_TYPES: ResourceType[] = [
  ...KUBE_RESOURCES.map(({ group, version, plural, kind, namespaced }) => ({
    group,
    version,
    plural,
    kind,
    namespaced,
  })),
  { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true },
  ...(['ServiceExport', 'ServiceImport'] as const).map((kind) => ({
    group: 'multicluster.x-k8s.io',
    version: 'v1alpha1',
    plural: `${kind.toLowerCase()}s`,
    kind,
    namespaced: true,
  })),
];

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects are free-form JSON.
export type KubeObject = Record<string, any>;

export interface KubeApiDoubleOptions {
  /** Bearer token required on every request; none: no authentication. */
  token?: string;
  /** Serve HTTPS with this key and certificate (PEM). */
  tls?: { key: string; cert: string };
  /** How often a watch with allowWatchBookmarks gets a BOOKMARK (the real server: about a minute). */
  bookmarkIntervalMs?: number;
  /** Events kept for watches from an older resourceVersion (older ones: 410 Gone). */
  historyLimit?: number;
  types?: ResourceType[];
  port?: number;
}

interface HistoryEvent {
  rv: number;
  typeKey: string;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: KubeObject;
}

interface Watcher {
  typeKey: string;
  namespace?: string;
  matches(o: KubeObject): boolean;
  send(type: string, object: KubeObject): void;
  bookmarks: boolean;
}

const typeKeyOf = (t: Pick<ResourceType, 'group' | 'version' | 'plural'>) =>
  `${t.group}/${t.version}/${t.plural}`;
const apiVersionOf = (t: ResourceType) => (t.group ? `${t.group}/${t.version}` : t.version);
const objKey = (namespace: string | undefined, name: string) => `${namespace ?? ''}/${name}`;
const clone = (o: KubeObject): KubeObject => structuredClone(o);

class HttpError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

function isPlainObject(v: unknown): v is KubeObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** RFC 7386 JSON merge patch; keys starting with `$` (strategic merge directives) are ignored. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return patch;
  const out: KubeObject = isPlainObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith('$')) continue;
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** `a=b,c!=d,e,!f` (equality-based selectors; set-based `in (...)` is not supported). */
function labelMatcher(selector: string | null): (o: KubeObject) => boolean {
  if (!selector) return () => true;
  const terms = selector.split(',').map((t) => t.trim());
  return (o) => {
    const labels: Record<string, string> = o.metadata?.labels ?? {};
    return terms.every((t) => {
      let m = /^([^!=]+)!=(.*)$/.exec(t);
      if (m) return labels[m[1]!.trim()] !== m[2]!.trim();
      m = /^([^!=]+)==?(.*)$/.exec(t);
      if (m) return labels[m[1]!.trim()] === m[2]!.trim();
      if (t.startsWith('!')) return !(t.slice(1) in labels);
      return t in labels;
    });
  };
}

function fieldMatcher(selector: string | null): (o: KubeObject) => boolean {
  if (!selector) return () => true;
  const terms = selector.split(',').map((t) => {
    const m = /^([^!=]+)(!=|==|=)(.*)$/.exec(t.trim());
    if (!m) throw new HttpError(400, 'BadRequest', `invalid field selector "${t}"`);
    const [, field, op, value] = m;
    if (field !== 'metadata.name' && field !== 'metadata.namespace')
      throw new HttpError(400, 'BadRequest', `field label not supported: ${field}`);
    return { field: field === 'metadata.name' ? 'name' : 'namespace', neg: op === '!=', value };
  });
  return (o) => terms.every((t) => (o.metadata?.[t.field] === t.value) !== t.neg);
}

export class KubeApiDouble {
  private readonly types = new Map<string, ResourceType>();
  /** typeKey → objKey → object (with metadata.resourceVersion). */
  private readonly store = new Map<string, Map<string, KubeObject>>();
  private history: HistoryEvent[] = [];
  /** Events at or below this revision are gone: a watch from before it gets 410. */
  private compactedRv = 0;
  private rv = 1;
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private readonly watchers = new Set<Watcher>();
  private bookmarkTimer?: NodeJS.Timeout;
  private boundPort: number;
  /** Requests seen, for tests: method and path with query. */
  readonly requests: string[] = [];

  constructor(private readonly opts: KubeApiDoubleOptions = {}) {
    for (const t of opts.types ?? DEFAULT_TYPES) {
      this.types.set(typeKeyOf(t), t);
      this.store.set(typeKeyOf(t), new Map());
    }
    this.boundPort = opts.port ?? 0;
  }

  get url(): string {
    return `${this.opts.tls ? 'https' : 'http'}://127.0.0.1:${this.boundPort}`;
  }

  get port(): number {
    return this.boundPort;
  }

  get resourceVersion(): number {
    return this.rv;
  }

  /** Listen (again, on the same port after stop(): a restarted API server keeps its data). */
  async start(): Promise<this> {
    const handler = (req: IncomingMessage, res: ServerResponse) => void this.handle(req, res);
    const server = this.opts.tls ? createHttpsServer(this.opts.tls, handler) : createHttpServer(handler);
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.boundPort, '127.0.0.1', () => resolve());
    });
    this.boundPort = (server.address() as AddressInfo).port;
    this.server = server;
    this.bookmarkTimer = setInterval(() => this.bookmark(), this.opts.bookmarkIntervalMs ?? 1000);
    this.bookmarkTimer.unref();
    return this;
  }

  /** Stop listening and cut every connection, watches included, as a crashed API server would. */
  async stop(): Promise<void> {
    clearInterval(this.bookmarkTimer);
    this.watchers.clear();
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await closed;
  }

  /** Send a BOOKMARK with the current resourceVersion to every watch that asked for them. */
  bookmark(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      const t = this.types.get(w.typeKey);
      if (!t) continue;
      w.send('BOOKMARK', {
        kind: t.kind,
        apiVersion: apiVersionOf(t),
        metadata: { resourceVersion: String(this.rv) },
      });
    }
  }

  /** Forget the event history (etcd compaction): a watch from an older resourceVersion gets 410. */
  compact(): void {
    this.history = [];
    this.compactedRv = this.rv;
  }

  /** End every open watch cleanly (as the server's watch timeout does). */
  closeWatches(): void {
    for (const s of this.sockets) s.end();
  }

  // -------------------------------------------------------------------------------------------
  // Direct access for tests (the same paths as the HTTP verbs)

  private typeFor(apiVersion: string, kind: string): ResourceType {
    for (const t of this.types.values()) if (apiVersionOf(t) === apiVersion && t.kind === kind) return t;
    throw new Error(`kube-api-double: no resource type for ${apiVersion} ${kind}`);
  }

  /** Create or replace an object (apiVersion and kind pick the resource type). */
  put(obj: KubeObject): KubeObject {
    const t = this.typeFor(obj.apiVersion, obj.kind);
    const ns = t.namespaced ? (obj.metadata?.namespace ?? 'default') : undefined;
    const existing = this.store.get(typeKeyOf(t))?.get(objKey(ns, obj.metadata.name));
    const body = clone(obj);
    if (existing) body.metadata.resourceVersion = existing.metadata.resourceVersion;
    return existing ? this.update(t, ns, body) : this.create(t, ns, body);
  }

  remove(apiVersion: string, kind: string, name: string, namespace?: string): KubeObject {
    const t = this.typeFor(apiVersion, kind);
    return this.delete(t, t.namespaced ? (namespace ?? 'default') : undefined, name);
  }

  get(apiVersion: string, kind: string, name: string, namespace?: string): KubeObject | undefined {
    const t = this.typeFor(apiVersion, kind);
    const o = this.store
      .get(typeKeyOf(t))
      ?.get(objKey(t.namespaced ? (namespace ?? 'default') : undefined, name));
    return o ? clone(o) : undefined;
  }

  list(apiVersion: string, kind: string): KubeObject[] {
    const t = this.typeFor(apiVersion, kind);
    return [...(this.store.get(typeKeyOf(t))?.values() ?? [])].map(clone);
  }

  // -------------------------------------------------------------------------------------------
  // The store

  private record(t: ResourceType, type: HistoryEvent['type'], object: KubeObject): void {
    const typeKey = typeKeyOf(t);
    const ev = { rv: this.rv, typeKey, type, object: clone(object) };
    this.history.push(ev);
    const limit = this.opts.historyLimit ?? 10_000;
    if (this.history.length > limit) {
      const dropped = this.history.splice(0, this.history.length - limit);
      this.compactedRv = dropped[dropped.length - 1]?.rv ?? this.compactedRv;
    }
    for (const w of this.watchers) if (w.typeKey === typeKey && w.matches(object)) w.send(type, object);
  }

  private create(t: ResourceType, namespace: string | undefined, body: KubeObject): KubeObject {
    const meta = isPlainObject(body.metadata) ? body.metadata : {};
    if (!meta.name && meta.generateName) meta.name = `${meta.generateName}${randomUUID().slice(0, 5)}`;
    if (typeof meta.name !== 'string' || meta.name === '')
      throw new HttpError(422, 'Invalid', 'metadata.name: Required value: name or generateName is required');
    if (t.namespaced && meta.namespace && namespace && meta.namespace !== namespace)
      throw new HttpError(
        400,
        'BadRequest',
        'the namespace of the object does not match the namespace in the URL',
      );
    const items = this.store.get(typeKeyOf(t))!;
    const key = objKey(namespace, meta.name);
    if (items.has(key))
      throw new HttpError(409, 'AlreadyExists', `${t.plural} "${meta.name}" already exists`);
    const obj = this.stamp(t, namespace, body, {
      ...meta,
      uid: randomUUID(),
      creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    });
    items.set(key, obj);
    this.record(t, 'ADDED', obj);
    return clone(obj);
  }

  /** The object as stored: the type's apiVersion and kind, the path's namespace, a new resourceVersion. */
  private stamp(
    t: ResourceType,
    namespace: string | undefined,
    body: KubeObject,
    meta: KubeObject,
  ): KubeObject {
    this.rv += 1;
    const obj: KubeObject = {
      ...body,
      apiVersion: apiVersionOf(t),
      kind: t.kind,
      metadata: {
        ...meta,
        ...(namespace !== undefined ? { namespace } : {}),
        resourceVersion: String(this.rv),
      },
    };
    if (!t.namespaced) delete obj.metadata.namespace;
    return obj;
  }

  private current(t: ResourceType, namespace: string | undefined, name: string): KubeObject {
    const o = this.store.get(typeKeyOf(t))?.get(objKey(namespace, name));
    if (!o) throw new HttpError(404, 'NotFound', `${t.plural} "${name}" not found`);
    return o;
  }

  private update(t: ResourceType, namespace: string | undefined, body: KubeObject): KubeObject {
    const name = body.metadata?.name;
    const old = this.current(t, namespace, name);
    const wanted = body.metadata?.resourceVersion;
    if (wanted && wanted !== old.metadata.resourceVersion) {
      throw new HttpError(
        409,
        'Conflict',
        `Operation cannot be fulfilled on ${t.plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
      );
    }
    const obj = this.stamp(t, namespace, body, {
      ...body.metadata,
      uid: old.metadata.uid,
      creationTimestamp: old.metadata.creationTimestamp,
    });
    this.store.get(typeKeyOf(t))!.set(objKey(namespace, name), obj);
    this.record(t, 'MODIFIED', obj);
    return clone(obj);
  }

  private delete(t: ResourceType, namespace: string | undefined, name: string): KubeObject {
    const old = this.current(t, namespace, name);
    this.store.get(typeKeyOf(t))!.delete(objKey(namespace, name));
    this.rv += 1;
    const obj = { ...old, metadata: { ...old.metadata, resourceVersion: String(this.rv) } };
    this.record(t, 'DELETED', obj);
    return clone(obj);
  }

  // -------------------------------------------------------------------------------------------
  // HTTP

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://double');
    this.requests.push(`${req.method} ${url.pathname}${url.search}`);
    try {
      if (this.opts.token !== undefined && req.headers.authorization !== `Bearer ${this.opts.token}`)
        throw new HttpError(401, 'Unauthorized', 'Unauthorized');
      const body =
        req.method === 'POST' || req.method === 'PUT' || req.method === 'PATCH'
          ? await readJson(req)
          : undefined;
      const out = this.route(req, res, url, body);
      if (out !== undefined) sendJson(res, out.code ?? 200, out.body);
    } catch (e) {
      const err = e instanceof HttpError ? e : new HttpError(500, 'InternalError', (e as Error).message);
      sendJson(res, err.code, statusOf(err.code, err.reason, err.message));
    }
  }

  /** The response, or undefined when the handler took over the response (a watch). */
  private route(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    body: unknown,
  ): { code?: number; body: unknown } | undefined {
    const parts = url.pathname.split('/').filter(Boolean);
    if (url.pathname === '/version')
      return {
        body: { major: '1', minor: '30', gitVersion: 'v1.30.0-fedmesh-double', platform: 'linux/amd64' },
      };
    if (url.pathname === '/api')
      return { body: { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] } };
    if (url.pathname === '/apis') return { body: this.groupList() };
    let group: string;
    let version: string;
    let rest: string[];
    if (parts[0] === 'api' && parts.length >= 2) {
      group = '';
      version = parts[1]!;
      rest = parts.slice(2);
    } else if (parts[0] === 'apis' && parts.length >= 3) {
      group = parts[1]!;
      version = parts[2]!;
      rest = parts.slice(3);
    } else if (parts[0] === 'apis' && parts.length === 2) {
      const g = this.groupList().groups.find((x) => x.name === parts[1]);
      if (!g) throw new HttpError(404, 'NotFound', 'the server could not find the requested resource');
      return { body: { kind: 'APIGroup', apiVersion: 'v1', ...g } };
    } else {
      throw new HttpError(404, 'NotFound', 'the server could not find the requested resource');
    }
    if (rest.length === 0) return { body: this.resourceList(group, version) };
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const t = this.types.get(typeKeyOf({ group, version, plural: rest[0]! }));
    if (!t) throw new HttpError(404, 'NotFound', 'the server could not find the requested resource');
    if (!t.namespaced && namespace !== undefined)
      throw new HttpError(404, 'NotFound', 'the server could not find the requested resource');
    const name = rest[1];
    // A status subresource is the object itself here.
    if (rest.length > 3 || (rest.length === 3 && rest[2] !== 'status'))
      throw new HttpError(404, 'NotFound', 'the server could not find the requested resource');
    const q = url.searchParams;
    if (name === undefined) {
      if (req.method === 'GET') {
        const watch = q.get('watch');
        if (watch === '1' || watch === 'true') {
          this.watch(t, namespace, q, res);
          return undefined;
        }
        return { body: this.listBody(t, namespace, q) };
      }
      if (req.method === 'POST') {
        if (!isPlainObject(body)) throw new HttpError(400, 'BadRequest', 'expected a JSON object');
        const ns = t.namespaced ? (namespace ?? body.metadata?.namespace ?? 'default') : undefined;
        return { code: 201, body: this.create(t, ns, body) };
      }
      throw new HttpError(405, 'MethodNotAllowed', `${req.method} is not supported on a collection`);
    }
    const ns = t.namespaced ? (namespace ?? 'default') : undefined;
    switch (req.method) {
      case 'GET':
        return { body: clone(this.current(t, ns, name)) };
      case 'PUT': {
        if (!isPlainObject(body)) throw new HttpError(400, 'BadRequest', 'expected a JSON object');
        if (body.metadata?.name !== name)
          throw new HttpError(400, 'BadRequest', 'the name of the object does not match the name in the URL');
        return { body: this.update(t, ns, body) };
      }
      case 'PATCH': {
        const type = String(req.headers['content-type'] ?? '');
        if (!/merge-patch\+json|strategic-merge-patch\+json/.test(type))
          throw new HttpError(
            415,
            'UnsupportedMediaType',
            `the body of the request was in an unknown format (${type})`,
          );
        const old = this.current(t, ns, name);
        const patched = mergePatch(old, body) as KubeObject;
        patched.metadata = { ...patched.metadata, name, resourceVersion: old.metadata.resourceVersion };
        return { body: this.update(t, ns, patched) };
      }
      case 'DELETE':
        return { body: this.delete(t, ns, name) };
      default:
        throw new HttpError(405, 'MethodNotAllowed', `${req.method} is not supported`);
    }
  }

  private groupList() {
    const groups = new Map<string, Set<string>>();
    for (const t of this.types.values()) {
      if (!t.group) continue;
      groups.set(t.group, (groups.get(t.group) ?? new Set()).add(t.version));
    }
    return {
      kind: 'APIGroupList',
      apiVersion: 'v1',
      groups: [...groups].map(([name, versions]) => {
        const vs = [...versions].map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
        return { name, versions: vs, preferredVersion: vs[0] };
      }),
    };
  }

  private resourceList(group: string, version: string) {
    const resources = [...this.types.values()]
      .filter((t) => t.group === group && t.version === version)
      .map((t) => ({
        name: t.plural,
        singularName: t.kind.toLowerCase(),
        namespaced: t.namespaced,
        kind: t.kind,
        verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
      }));
    if (resources.length === 0)
      throw new HttpError(404, 'NotFound', 'the server could not find the requested resource');
    return {
      kind: 'APIResourceList',
      apiVersion: 'v1',
      groupVersion: group ? `${group}/${version}` : version,
      resources,
    };
  }

  private selected(namespace: string | undefined, q: URLSearchParams) {
    const byLabel = labelMatcher(q.get('labelSelector'));
    const byField = fieldMatcher(q.get('fieldSelector'));
    return (o: KubeObject) =>
      (namespace === undefined || o.metadata?.namespace === namespace) && byLabel(o) && byField(o);
  }

  private listBody(t: ResourceType, namespace: string | undefined, q: URLSearchParams) {
    const match = this.selected(namespace, q);
    const all = [...this.store.get(typeKeyOf(t))!.entries()]
      .filter(([, o]) => match(o))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    let listRv = this.rv;
    let start = 0;
    const token = q.get('continue');
    if (token) {
      let c: { rv: number; after: string };
      try {
        c = JSON.parse(Buffer.from(token, 'base64').toString());
      } catch {
        throw new HttpError(400, 'BadRequest', 'invalid continue token');
      }
      if (c.rv < this.compactedRv)
        throw new HttpError(
          410,
          'Expired',
          'The provided continue parameter is too old to display a consistent list result.',
        );
      listRv = c.rv;
      start = all.findIndex(([k]) => k > c.after);
      if (start < 0) start = all.length;
    }
    const limit = Number(q.get('limit') ?? 0);
    const page = limit > 0 ? all.slice(start, start + limit) : all.slice(start);
    const more = limit > 0 && start + limit < all.length;
    const last = page[page.length - 1]?.[0];
    return {
      kind: `${t.kind}List`,
      apiVersion: apiVersionOf(t),
      metadata: {
        resourceVersion: String(listRv),
        ...(more && last !== undefined
          ? { continue: Buffer.from(JSON.stringify({ rv: listRv, after: last })).toString('base64') }
          : {}),
      },
      // As the real server: list items carry neither apiVersion nor kind.
      items: page.map(([, o]) => {
        const { apiVersion: _a, kind: _k, ...rest } = clone(o);
        return rest;
      }),
    };
  }

  private watch(
    t: ResourceType,
    namespace: string | undefined,
    q: URLSearchParams,
    res: ServerResponse,
  ): void {
    const match = this.selected(namespace, q);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    const send = (type: string, object: KubeObject) => {
      if (!res.writableEnded) res.write(`${JSON.stringify({ type, object })}\n`);
    };
    const from = q.get('resourceVersion');
    const typeKey = typeKeyOf(t);
    if (from && from !== '0' && Number(from) < this.compactedRv) {
      send('ERROR', statusOf(410, 'Expired', `too old resource version: ${from} (${this.compactedRv})`));
      res.end();
      return;
    }
    if (!from || from === '0') {
      for (const o of this.store.get(typeKey)!.values()) if (match(o)) send('ADDED', o);
    } else {
      for (const ev of this.history)
        if (ev.rv > Number(from) && ev.typeKey === typeKey && match(ev.object)) send(ev.type, ev.object);
    }
    const watcher: Watcher = {
      typeKey,
      namespace,
      matches: match,
      send,
      bookmarks: q.get('allowWatchBookmarks') === 'true' || q.get('allowWatchBookmarks') === '1',
    };
    this.watchers.add(watcher);
    const timeout = Number(q.get('timeoutSeconds') ?? 0);
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    res.on('close', () => {
      clearTimeout(timer);
      this.watchers.delete(watcher);
    });
  }
}

function statusOf(code: number, reason: string, message: string) {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

function sendJson(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, 'BadRequest', 'the request body is not JSON (the double speaks JSON only)');
  }
}

/** A kubeconfig for the double (text), as kubectl and the driver read it. */
export function kubeconfigFor(
  server: string,
  opts: { token?: string; caPem?: string; insecure?: boolean; context?: string } = {},
): string {
  const ctx = opts.context ?? 'double';
  const cluster: Record<string, unknown> = { server };
  if (opts.caPem) cluster['certificate-authority-data'] = Buffer.from(opts.caPem).toString('base64');
  // @kubernetes/client-node refuses plain http unless told to skip TLS verification.
  if (opts.insecure || server.startsWith('http:')) cluster['insecure-skip-tls-verify'] = true;
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: ctx, cluster }],
    users: [{ name: ctx, user: opts.token ? { token: opts.token } : {} }],
    contexts: [{ name: ctx, context: { cluster: ctx, user: ctx } }],
    'current-context': ctx,
  });
}

/** A CA and a server certificate for 127.0.0.1 (openssl), PEM texts, for an HTTPS double. */
export function makeServerTls(dir: string): { ca: string; cert: string; key: string } {
  const ca = makeCa(dir, 'double-ca');
  const server = makeLeaf(ca, 'server', '127.0.0.1', 'serverAuth', ['IP:127.0.0.1', 'DNS:localhost']);
  const read = (f: string) => readFileSync(f, 'utf8');
  return { ca: read(ca.crt), cert: read(server.crt), key: read(server.key) };
}
