// The file datastore: a directory of YAML files (`*.yaml`, `*.yml`, not recursive), watched.
// fs.watch gives quick notice, a poll on stat() catches what it misses (network filesystems,
// editors that replace files by rename, ConfigMap symlink swaps). Only a changed file is
// re-parsed, and only resources whose content changed are emitted.
//
// Rules that protect operators from losing data through a typo:
// - a document refused after an edit keeps its last good version (when its identity can still
//   be read), and the error is reported;
// - the same resource in two files: the definition in effect stays, the other is refused, naming
//   both files (at start, the first file in name order wins);
// - a file that just became empty (an editor truncating before writing) is only believed once it
//   stays empty for a poll interval;
// - a missing or unreadable directory is ConnectionFailed, retried every poll, with the last data
//   kept; when it is back, a full resync.
import { createHash } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { logger } from '../../lib/log.ts';
import { type Resource, type ResourceError, resourceId } from '../../model/resources.ts';
import { duplicateInFile, parseDocuments, type SkippedResource } from '../../model/validate.ts';
import {
  type Datastore,
  type DatastoreEvent,
  type DatastoreHandlers,
  type DatastoreSnapshot,
  type DatastoreStatus,
  deleteEvent,
} from './types.ts';

const log = logger('file-datastore');

/** How long fs.watch events are gathered before a scan: editors write in bursts. */
const WATCH_DEBOUNCE_MS = 20;

export function isYamlFileName(name: string): boolean {
  return /\.ya?ml$/.test(name) && !name.startsWith('.');
}

// ---------------------------------------------------------------------------------------------
// The resources of a set of files

interface FileEntry {
  /** stat() signature when last read: a change means "read it again". */
  sig: string;
  /** SHA-1 of the content last parsed: an unchanged content is not parsed again. */
  hash: string;
  /** resourceId → resource, including last good versions kept for refused documents. */
  resources: Map<string, Resource>;
  /** A document's identity as written (`Pod/ns/name`) → the resourceIds it produced. */
  bySource: Map<string, string[]>;
  /** When the file was first seen empty while it still had resources. */
  emptySince?: number;
}

interface UpdateReport {
  changed: Set<string>;
  errors: ResourceError[];
  skipped: SkippedResource[];
}

function duplicateAcrossFiles(dup: Resource, inEffect: Resource): ResourceError {
  const where = (r: Resource) => `${r.origin.source} (document ${r.origin.document ?? 0})`;
  return {
    origin: dup.origin,
    resource: resourceId(dup),
    message: `already defined in ${where(inEffect)}; this definition in ${where(dup)} is ignored`,
  };
}

/** Parsed files and, for each resource, which file's definition is in effect. */
export class FileSet {
  private readonly files = new Map<string, FileEntry>();
  /** resourceId → name of the file whose definition is in effect. */
  private readonly owner = new Map<string, string>();

  constructor(readonly dir: string) {}

  /** File names, in the order that decides which duplicate wins. */
  names(): string[] {
    return [...this.files.keys()].sort();
  }

  entry(name: string): FileEntry | undefined {
    return this.files.get(name);
  }

  effective(id: string): Resource | undefined {
    const file = this.owner.get(id);
    return file === undefined ? undefined : this.files.get(file)?.resources.get(id);
  }

  /** Every resource in effect, by file name order then document order. */
  allEffective(): Map<string, Resource> {
    const out = new Map<string, Resource>();
    for (const name of this.names()) {
      for (const [id, r] of this.files.get(name)?.resources ?? []) {
        if (this.owner.get(id) === name) out.set(id, r);
      }
    }
    return out;
  }

  /** (Re)parse one file's text; returns the resourceIds whose effective definition may have changed. */
  update(name: string, text: string, sig: string, hash: string): UpdateReport {
    const old = this.files.get(name);
    const entry: FileEntry = { sig, hash, resources: new Map(), bySource: new Map() };
    const report: UpdateReport = { changed: new Set(), errors: [], skipped: [] };
    for (const outcome of parseDocuments(text, { source: join(this.dir, name), baseDir: this.dir })) {
      const r = outcome.result;
      if ('resource' in r) this.add(entry, outcome.sourceId, r.resource, report.errors);
      else if ('errors' in r) report.errors.push(...keepLastGood(entry, old, outcome.sourceId, r.errors));
      else if ('skipped' in r) report.skipped.push(r.skipped);
    }
    this.files.set(name, entry);
    report.changed = this.reassign(name, old, entry, report.errors);
    return report;
  }

  remove(name: string): Set<string> {
    const old = this.files.get(name);
    const changed = new Set<string>();
    if (!old) return changed;
    this.files.delete(name);
    for (const id of old.resources.keys()) {
      if (this.owner.get(id) !== name) continue;
      this.handOver(id);
      changed.add(id);
    }
    return changed;
  }

  private add(entry: FileEntry, sourceId: string | undefined, res: Resource, errors: ResourceError[]): void {
    const id = resourceId(res);
    const first = entry.resources.get(id);
    if (first) {
      errors.push(duplicateInFile(res, first));
      return;
    }
    entry.resources.set(id, res);
    if (sourceId) entry.bySource.set(sourceId, [...(entry.bySource.get(sourceId) ?? []), id]);
  }

  /** Decide ownership of the resources this file had or has; report duplicates it brings. */
  private reassign(name: string, old: FileEntry | undefined, entry: FileEntry, errors: ResourceError[]) {
    const changed = new Set<string>();
    for (const id of new Set([...(old?.resources.keys() ?? []), ...entry.resources.keys()])) {
      const owner = this.owner.get(id);
      const mine = entry.resources.get(id);
      if (owner === undefined || owner === name) {
        if (mine) this.owner.set(id, name);
        else this.handOver(id);
        changed.add(id);
      } else if (mine) {
        const inEffect = this.effective(id);
        if (inEffect) errors.push(duplicateAcrossFiles(mine, inEffect));
      }
    }
    return changed;
  }

  /** The file in effect dropped `id`: the next file (by name) that defines it takes over. */
  private handOver(id: string): void {
    const previous = this.owner.get(id);
    const next = this.names().find((n) => n !== previous && this.files.get(n)?.resources.has(id));
    if (next === undefined) {
      this.owner.delete(id);
      return;
    }
    this.owner.set(id, next);
    log.info(
      { resource: id, file: join(this.dir, next) },
      'resource now taken from another file that defines it',
    );
  }
}

/** A document refused after an edit keeps its last good version, when we can tell which it was. */
function keepLastGood(
  entry: FileEntry,
  old: FileEntry | undefined,
  sourceId: string | undefined,
  errors: ResourceError[],
): ResourceError[] {
  const kept: string[] = [];
  for (const id of (sourceId && old?.bySource.get(sourceId)) || []) {
    const res = old?.resources.get(id);
    if (res && !entry.resources.has(id)) {
      entry.resources.set(id, res);
      kept.push(id);
    }
  }
  if (!sourceId || kept.length === 0) return errors;
  entry.bySource.set(sourceId, kept);
  return errors.map((e) => ({
    ...e,
    message: `${e.message} (keeping the last good version of ${kept.join(', ')})`,
  }));
}

/** Content identity of a resource, key order and origin aside: an edit elsewhere in a file is no change. */
export function contentKey(r: Resource): string {
  const { origin: _origin, ...rest } = r;
  return JSON.stringify(rest, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

function sha1(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}

function errnoCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

function logRefusals(errors: readonly ResourceError[]): void {
  for (const e of errors) {
    log.warn(
      { file: e.origin.source, document: e.origin.document, resource: e.resource, field: e.field },
      `refused: ${e.field ? `${e.field}: ` : ''}${e.message}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// The datastore

export class FileDatastore implements Datastore {
  readonly description: string;
  private readonly dir: string;
  private readonly pollIntervalMs: number;
  private readonly files: FileSet;
  private handlers?: DatastoreHandlers;
  /** What the handlers were last told exists: resourceId → resource and its content key. */
  private readonly emitted = new Map<string, { resource: Resource; key: string }>();
  private revision = 0;
  private status?: { status: DatastoreStatus; detail?: string };
  private needResync = true;
  private watcher?: FSWatcher;
  private pollTimer?: NodeJS.Timeout;
  private debounceTimer?: NodeJS.Timeout;
  private hints = new Set<string>();
  private running?: Promise<void>;
  private again = false;
  private stopped = false;
  private readonly loggedSkips = new Set<string>();
  private watchFailureLogged = false;

  constructor(dir: string, opts: { pollIntervalMs?: number } = {}) {
    this.dir = resolve(dir);
    this.description = `file:${this.dir}`;
    this.pollIntervalMs = opts.pollIntervalMs ?? 500;
    this.files = new FileSet(this.dir);
  }

  /** One-shot read for CLI commands. Throws if the directory cannot be read. */
  static async load(
    dir: string,
  ): Promise<{ resources: Resource[]; errors: ResourceError[]; skipped: SkippedResource[] }> {
    const abs = resolve(dir);
    let names: string[];
    try {
      names = (await readdir(abs)).filter(isYamlFileName).sort();
    } catch (e) {
      throw new Error(`file datastore ${abs}: ${(e as Error).message}`);
    }
    const set = new FileSet(abs);
    const errors: ResourceError[] = [];
    const skipped: SkippedResource[] = [];
    for (const name of names) {
      const text = await readFile(join(abs, name), 'utf8').catch((e: Error) => {
        errors.push({ origin: { source: join(abs, name) }, message: `cannot read: ${e.message}` });
        return undefined;
      });
      if (text === undefined) continue;
      const report = set.update(name, text, '', '');
      errors.push(...report.errors);
      skipped.push(...report.skipped);
    }
    return { resources: [...set.allEffective().values()], errors, skipped };
  }

  list(): Promise<DatastoreSnapshot> {
    return FileDatastore.load(this.dir);
  }

  async start(handlers: DatastoreHandlers): Promise<void> {
    if (this.handlers) throw new Error(`${this.description}: already started`);
    this.handlers = handlers;
    this.setStatus('Connecting');
    await this.requestScan();
    if (this.stopped) return;
    this.pollTimer = setInterval(() => void this.requestScan(), this.pollIntervalMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.pollTimer);
    clearTimeout(this.debounceTimer);
    this.closeWatcher();
    await this.running;
  }

  /** Run a scan now, or once more after the one in progress; resolves when it is done. */
  private requestScan(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.scan().catch((e: unknown) => log.error({ err: e, dir: this.dir }, 'scan failed'));
        } while (this.again && !this.stopped);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  private async scan(): Promise<void> {
    if (this.stopped) return;
    const names = await this.listDir();
    if (!names || this.stopped) return;
    const resync = this.needResync;
    if (resync) this.setStatus('ResyncInProgress');
    this.ensureWatcher();
    const hints = this.hints;
    this.hints = new Set();

    const changed = new Set<string>();
    const errors: ResourceError[] = [];
    const skipped: SkippedResource[] = [];
    const listed = new Set(names);
    for (const name of this.files.names()) {
      if (!listed.has(name)) for (const id of this.files.remove(name)) changed.add(id);
    }
    for (const name of names) {
      const report = await this.scanFile(name, hints.has(name) || hints.has('*'));
      for (const id of report?.changed ?? []) changed.add(id);
      errors.push(...(report?.errors ?? []));
      skipped.push(...(report?.skipped ?? []));
    }
    if (this.stopped) return;

    this.report(errors, skipped);
    const events = resync ? this.fullListing() : this.diff(changed);
    if (resync || events.length > 0) this.emit(events);
    if (resync) {
      this.needResync = false;
      this.setStatus('InSync');
    }
  }

  /** The YAML files of the directory, sorted; undefined (and ConnectionFailed) if unreadable. */
  private async listDir(): Promise<string[] | undefined> {
    try {
      return (await readdir(this.dir)).filter(isYamlFileName).sort();
    } catch (e) {
      const detail =
        errnoCode(e) === 'ENOENT'
          ? `directory ${this.dir} does not exist`
          : `cannot read ${this.dir}: ${(e as Error).message}`;
      if (this.status?.status !== 'ConnectionFailed' || this.status.detail !== detail) {
        log.warn(
          { dir: this.dir },
          `${detail}; retrying every ${this.pollIntervalMs} ms (keeping the last data)`,
        );
        this.setStatus('ConnectionFailed', detail);
      }
      // When it is back, the handlers get a complete listing again.
      this.needResync = true;
      this.closeWatcher();
      return undefined;
    }
  }

  /** Re-read one file if it changed; undefined when there is nothing new. */
  private async scanFile(name: string, hinted: boolean): Promise<UpdateReport | undefined> {
    const path = join(this.dir, name);
    const gone = (): UpdateReport => ({ changed: this.files.remove(name), errors: [], skipped: [] });
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile()) return gone();
    const sig = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    const entry = this.files.entry(name);
    if (entry && entry.sig === sig && !hinted && entry.emptySince === undefined) return undefined;

    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return gone();
      // Unreadable for now (permissions, I/O): keep what we have, try again next poll.
      log.warn({ file: path }, `cannot read: ${(e as Error).message}; keeping its last good resources`);
      return undefined;
    }
    const hash = sha1(text);
    if (entry && entry.hash === hash) {
      entry.sig = sig;
      delete entry.emptySince;
      return undefined;
    }
    if (entry && entry.resources.size > 0 && text.trim() === '' && !this.emptyConfirmed(entry))
      return undefined;
    return this.files.update(name, text, sig, hash);
  }

  /** An editor may truncate a file before writing it: believe "empty" only after a poll interval. */
  private emptyConfirmed(entry: FileEntry): boolean {
    const now = Date.now();
    entry.emptySince ??= now;
    return now - entry.emptySince >= this.pollIntervalMs;
  }

  private report(errors: ResourceError[], skipped: SkippedResource[]): void {
    if (errors.length > 0) {
      logRefusals(errors);
      this.handlers?.onErrors?.(errors);
    }
    for (const s of skipped) {
      const key = `${s.origin.source}|${s.apiVersion}|${s.kind}|${s.namespace ?? ''}|${s.name}`;
      if (this.loggedSkips.has(key)) continue;
      this.loggedSkips.add(key);
      log.info(
        {
          file: s.origin.source,
          document: s.origin.document,
          kind: s.kind,
          apiVersion: s.apiVersion,
          name: s.name,
        },
        `skipped: ${s.reason}`,
      );
    }
  }

  /** After a (re)sync: an upsert for everything that exists, a delete for what vanished meanwhile. */
  private fullListing(): DatastoreEvent[] {
    const now = this.files.allEffective();
    const events: DatastoreEvent[] = [];
    for (const [id, prev] of this.emitted) {
      if (!now.has(id)) {
        events.push(deleteEvent(prev.resource));
        this.emitted.delete(id);
      }
    }
    for (const [id, resource] of now) {
      this.emitted.set(id, { resource, key: contentKey(resource) });
      events.push({ type: 'upsert', resource });
    }
    return events;
  }

  /** The changes among `ids` since the last batch; a resource whose content is unchanged is left out. */
  private diff(ids: Iterable<string>): DatastoreEvent[] {
    const events: DatastoreEvent[] = [];
    for (const id of ids) {
      const now = this.files.effective(id);
      const prev = this.emitted.get(id);
      if (!now) {
        if (prev) events.push(deleteEvent(prev.resource));
        this.emitted.delete(id);
        continue;
      }
      const key = contentKey(now);
      if (prev?.key === key) continue;
      this.emitted.set(id, { resource: now, key });
      events.push({ type: 'upsert', resource: now });
    }
    return events;
  }

  private emit(events: DatastoreEvent[]): void {
    if (this.stopped) return;
    this.revision += 1;
    this.handlers?.onEvents(events, this.revision);
  }

  private setStatus(status: DatastoreStatus, detail?: string): void {
    if (this.stopped) return;
    this.status = { status, ...(detail !== undefined ? { detail } : {}) };
    log.debug({ dir: this.dir, status, detail }, 'status');
    this.handlers?.onStatus(status, detail);
  }

  private ensureWatcher(): void {
    if (this.watcher || this.stopped) return;
    try {
      this.watcher = watch(this.dir, { persistent: false }, (_event, filename) => this.onWatch(filename));
      this.watcher.on('error', (e) => {
        log.debug({ err: e, dir: this.dir }, 'fs.watch failed; polling until it can be re-established');
        this.closeWatcher();
      });
    } catch (e) {
      // Retried on every scan (an inotify limit may be lifted); said once.
      if (!this.watchFailureLogged) log.info({ err: e, dir: this.dir }, 'fs.watch unavailable; polling only');
      this.watchFailureLogged = true;
    }
  }

  private closeWatcher(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }

  private onWatch(filename: string | Buffer | null): void {
    if (this.stopped) return;
    this.hints.add(filename ? basename(filename.toString()) : '*');
    clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => void this.requestScan(), WATCH_DEBOUNCE_MS);
  }
}
