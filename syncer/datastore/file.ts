// The file datastore: a directory of YAML files (`*.yaml`, `*.yml`, not recursive), watched.
//
// Idle is idle: fs.watch (inotify) events say which file to look at; nothing polls every file.
// A slow safety rescan (stat of each file, every rescanIntervalMs) catches what a watch can miss;
// where fs.watch is unavailable the directory is polled instead.
//
// No stall: a new version of a file is compared with the last by common prefix and suffix, and only
// the documents in the changed region are decoded and parsed again (file-parse.ts); such an edit
// updates only that region's resources (FileSet.applyDelta). All work yields to the event loop in
// slices, big files are read into a kept buffer (no new external memory per edit, which would set
// off a full GC), and big batches of changes go out in parts, so liveness and the feed keep
// answering during a 100,000-endpoint load.
//
// Atomic views, and rules that protect operators from losing data through a typo or a race:
// - a file is read only once it has settled (unchanged for settleMs), and read again if it
//   changes while being read;
// - a file that looks incomplete never withdraws what its last good version held: with a YAML
//   syntax error or a refused last document, until it parses completely; empty, or cut off
//   mid-line (no final newline), until it has stayed so for confirmMs;
// - a document refused after an edit keeps its last good version (when its identity can still
//   be read), and the error is reported;
// - the same resource in two files: the definition in effect stays, the other is refused, naming
//   both files (at start, the first file in name order wins);
// - a symlink that leaves the root is refused, special files (FIFOs, devices) are skipped, each
//   with a warning;
// - a missing or unreadable directory is ConnectionFailed, retried every pollIntervalMs, with the
//   last data kept; when it is back, a full resync.
import { type FSWatcher, type Stats, watch } from 'node:fs';
import { type FileHandle, lstat, readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { logger } from '../../lib/log.ts';
import { clip } from '../../lib/text.ts';
import { type Origin, type Resource, type ResourceError, resourceId } from '../../model/resources.ts';
import { type DocumentOutcome, duplicateInFile, type SkippedResource } from '../../model/validate.ts';
import { contentKey } from './content-key.ts';
import { type FileParseState, type ParsedFile, parseFileIncremental, Yielder } from './file-parse.ts';
import { fileType, openDatastoreFile } from './paths.ts';
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
/** Most events handed over in one batch: the merger's work per batch stays within a slice or two. */
const EMIT_BATCH = 100;
/** Largest region (documents before and after) taken as a delta; a bigger change is a full update. */
const MAX_DELTA = 2000;
/** Files stat()ed at once in a sweep. */
const STAT_PARALLEL = 64;

export function isYamlFileName(name: string): boolean {
  return /\.ya?ml$/.test(name) && !name.startsWith('.');
}

/**
 * A one-shot read's directory listing: its YAML files by name (the first by name wins a
 * duplicate) and the root its files must stay under (default: the directory's parent).
 */
export async function listYamlFiles(
  dir: string,
  rootOpt?: string,
): Promise<{ abs: string; root: string; names: string[] }> {
  const abs = resolve(dir);
  const root = resolve(rootOpt ?? dirname(abs));
  try {
    return { abs, root, names: (await readdir(abs)).filter(isYamlFileName).sort() };
  } catch (e) {
    throw new Error(`file datastore ${abs}: ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// The resources of a set of files

interface FileEntry {
  /** stat() signature when last read: a change means "read it again". */
  sig: string;
  /** What each document of the version read parsed to: an unchanged document is not parsed again. */
  state: FileParseState;
  /** resourceId → resource, including last good versions kept for refused documents. */
  resources: Map<string, Resource>;
  /** A document's identity as written (`Pod/ns/name`) → the resourceIds it produced. */
  bySource: Map<string, string[]>;
  /** Refusals in force for this file's current text (cross-file duplicates are computed apart). */
  errors: ResourceError[];
  /** A big file's buffer no version refers to any more (file-parse.ts keeps the current one). */
  spare?: Buffer;
  /** The version read looked incomplete for now (empty, unterminated): read it again at `recheckAt`. */
  recheckAt?: number;
}

interface UpdateReport {
  changed: Set<string>;
  errors: ResourceError[];
  skipped: SkippedResource[];
}

/** The refusal of a resource another file already defines (the first file by name wins). */
export function duplicateAcrossFiles(dup: Origin, id: string, inEffect: Origin): ResourceError {
  const where = (o: Origin) => `${o.source} (document ${o.document ?? 0})`;
  return {
    origin: dup,
    resource: id,
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

  /** Every resource in effect, by file name order then document order (yielding: 100,000 are many). */
  async allEffective(y: Yielder): Promise<Map<string, Resource>> {
    const out = new Map<string, Resource>();
    for (const name of this.names()) {
      for (const [id, r] of this.files.get(name)?.resources ?? []) {
        await y.maybeYield();
        if (this.owner.get(id) === name) out.set(id, r);
      }
    }
    return out;
  }

  /** The refusals in force now: each file's, and every definition another file's overrides. */
  refusals(): ResourceError[] {
    const out: ResourceError[] = [];
    // Every definition in effect unless some id is defined in two files: then the resources are
    // looked through (not after every edit of a 100,000-resource file).
    let defined = 0;
    for (const entry of this.files.values()) defined += entry.resources.size;
    const contested = defined > this.owner.size;
    for (const name of this.names()) {
      const entry = this.files.get(name);
      if (!entry) continue;
      out.push(...entry.errors);
      if (!contested) continue;
      for (const [id, r] of entry.resources) {
        const owner = this.owner.get(id);
        const inEffect = owner !== undefined && owner !== name ? this.effective(id) : undefined;
        if (inEffect) out.push(duplicateAcrossFiles(r.origin, resourceId(r), inEffect.origin));
      }
    }
    return out;
  }

  /**
   * Take a file's newly parsed version; returns the resourceIds whose effective definition may
   * have changed. `holdMissing`: the version looks incomplete, so resources it lacks are kept.
   */
  async update(
    name: string,
    parsed: ParsedFile,
    sig: string,
    holdMissing: boolean,
    y: Yielder,
  ): Promise<UpdateReport & { held: number }> {
    const old = this.files.get(name);
    if (
      old &&
      parsed.delta &&
      parsed.delta.added.length + parsed.delta.removed.length <= MAX_DELTA &&
      !holdMissing &&
      old.errors.length === 0 &&
      old.recheckAt === undefined
    ) {
      const report = await this.applyDelta(name, old, parsed, sig, y);
      if (report) return { ...report, held: 0 };
    }
    const entry: FileEntry = {
      sig,
      state: parsed.state,
      resources: new Map(),
      bySource: new Map(),
      errors: [],
    };
    const report = {
      changed: new Set<string>(),
      errors: [] as ResourceError[],
      skipped: [] as SkippedResource[],
    };
    const fresh = new Set<string>();
    for (const outcome of parsed.outcomes) {
      await y.maybeYield();
      const r = outcome.result;
      if ('resource' in r) {
        if (this.add(entry, outcome.sourceId, r.resource, report.errors) && parsed.fresh.has(outcome))
          fresh.add(resourceId(r.resource));
      } else if ('errors' in r) report.errors.push(...keepLastGood(entry, old, outcome.sourceId, r.errors));
      else if ('skipped' in r) report.skipped.push(r.skipped);
    }
    let held = 0;
    if (holdMissing) {
      for (const [id, res] of old?.resources ?? []) {
        if (entry.resources.has(id)) continue;
        entry.resources.set(id, res);
        held += 1;
      }
      // Held resources keep their document identity, so a later refused edit keeps them too.
      for (const [source, ids] of old?.bySource ?? []) {
        if (!entry.bySource.has(source)) entry.bySource.set(source, ids);
      }
    }
    entry.errors = report.errors.filter((e) => !/^already defined in /.test(e.message));
    this.files.set(name, entry);
    report.changed = await this.reassign(name, old, entry, fresh, report.errors, y);
    return { ...report, held };
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

  /** false when the file already defines `res` (the duplicate is refused). */
  private add(
    entry: FileEntry,
    sourceId: string | undefined,
    res: Resource,
    errors: ResourceError[],
  ): boolean {
    const id = resourceId(res);
    const first = entry.resources.get(id);
    if (first) {
      errors.push(duplicateInFile(res, first));
      return false;
    }
    entry.resources.set(id, res);
    if (sourceId) {
      const ids = entry.bySource.get(sourceId);
      if (ids) ids.push(id);
      else entry.bySource.set(sourceId, [id]);
    }
    return true;
  }

  /**
   * Decide ownership of the resources this file had or has; report duplicates it brings. A
   * resource from an unchanged document (not `fresh`) that keeps its owner is no change.
   */
  private async reassign(
    name: string,
    old: FileEntry | undefined,
    entry: FileEntry,
    fresh: Set<string>,
    errors: ResourceError[],
    y: Yielder,
  ): Promise<Set<string>> {
    const changed = new Set<string>();
    // Walked in place, not copied into arrays first (100,000 ids in one go held the event loop).
    for (const id of entry.resources.keys()) {
      await y.maybeYield();
      this.settle(name, id, entry, fresh.has(id) || !old?.resources.has(id), changed, errors);
    }
    for (const id of old?.resources.keys() ?? []) {
      await y.maybeYield();
      if (!entry.resources.has(id)) this.settle(name, id, entry, true, changed, errors);
    }
    return changed;
  }

  /** Ownership of one resource this file had or has; `isNew`: its definition here is new. */
  private settle(
    name: string,
    id: string,
    entry: FileEntry,
    isNew: boolean,
    changed: Set<string>,
    errors: ResourceError[],
  ): void {
    const owner = this.owner.get(id);
    const mine = entry.resources.get(id);
    if (owner === undefined || owner === name) {
      if (mine) {
        this.owner.set(id, name);
        if (owner === undefined || isNew) changed.add(id);
      } else {
        this.handOver(id);
        changed.add(id);
      }
    } else if (mine) {
      const inEffect = this.effective(id);
      if (inEffect) errors.push(duplicateAcrossFiles(mine.origin, resourceId(mine), inEffect.origin));
    }
  }

  /**
   * An edit of a region of a file whose other documents are untouched (an endpoint edited in a
   * 100,000-endpoint file): only the region's resources are looked at. undefined when the region
   * holds anything but plain resources (errors, skipped kinds, a duplicate): the full update
   * decides those.
   */
  private async applyDelta(
    name: string,
    entry: FileEntry,
    parsed: ParsedFile,
    sig: string,
    y: Yielder,
  ): Promise<UpdateReport | undefined> {
    const { removed, added } = parsed.delta as NonNullable<ParsedFile['delta']>;
    const removedIds = new Map<string, string | undefined>();
    for (const o of removed) {
      await y.maybeYield();
      if (!('resource' in o.result)) return undefined;
      const id = resourceId(o.result.resource);
      if (entry.resources.get(id) !== o.result.resource) return undefined;
      removedIds.set(id, o.sourceId);
    }
    const addedIds = new Set<string>();
    for (const o of added) {
      await y.maybeYield();
      if (!('resource' in o.result)) return undefined;
      const id = resourceId(o.result.resource);
      if (addedIds.has(id) || (entry.resources.has(id) && !removedIds.has(id))) return undefined;
      addedIds.add(id);
    }
    // Checked; from here on the entry changes (no other scan runs meanwhile: scans are serial).
    for (const [id, sourceId] of removedIds) {
      await y.maybeYield();
      entry.resources.delete(id);
      if (sourceId) entry.bySource.delete(sourceId);
    }
    const fresh = new Set<string>();
    for (const o of added) {
      await y.maybeYield();
      if (!('resource' in o.result)) continue;
      const id = resourceId(o.result.resource);
      entry.resources.set(id, o.result.resource);
      if (o.sourceId) entry.bySource.set(o.sourceId, [id]);
      if (parsed.fresh.has(o)) fresh.add(id);
    }
    entry.sig = sig;
    entry.state = parsed.state;
    const report: UpdateReport = { changed: new Set(), errors: [], skipped: [] };
    for (const id of new Set([...removedIds.keys(), ...addedIds])) {
      await y.maybeYield();
      this.settle(name, id, entry, fresh.has(id) || !removedIds.has(id), report.changed, report.errors);
    }
    return report;
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

/** The ids of several sets, one after another (an id in two of them is diffed twice, harmlessly). */
function* concat(sets: readonly Set<string>[]): Iterable<string> {
  for (const set of sets) yield* set;
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

/** What changes when a file is rewritten: its inode (rename), size and times. */
function signature(st: Stats): string {
  return `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

/** Why a parsed version cannot be trusted to be the whole file (yet). */
function incompleteness(bytes: Buffer, parsed: ParsedFile): { lasting?: string; fleeting?: string } {
  const out: { lasting?: string; fleeting?: string } = {};
  if (parsed.syntaxError) out.lasting = 'it has a YAML syntax error';
  else if (parsed.outcomes.length > 0 && 'errors' in (parsed.outcomes.at(-1) as DocumentOutcome).result)
    out.lasting = 'its last document is refused (cut off?)';
  if (parsed.documents === 0) out.fleeting = 'it is empty';
  else if (bytes[bytes.length - 1] !== 0x0a)
    out.fleeting = 'it does not end with a newline (still being written?)';
  return out;
}

// ---------------------------------------------------------------------------------------------
// The datastore

export interface FileDatastoreOptions {
  /** Retry interval for a missing directory, and the poll interval where fs.watch is unavailable. */
  pollIntervalMs?: number;
  /** A file is read once unchanged for this long. */
  settleMs?: number;
  /** How long an empty or unterminated file must stay so before it is believed. */
  confirmMs?: number;
  /** Safety rescan (stat of every file) although the watch is working. */
  rescanIntervalMs?: number;
  /** Symlinked files must resolve under this directory; default: the datastore directory's parent. */
  root?: string;
}

export class FileDatastore implements Datastore {
  readonly description: string;
  private readonly dir: string;
  private readonly root: string;
  private readonly pollIntervalMs: number;
  private readonly settleMs: number;
  private readonly confirmMs: number;
  private readonly rescanIntervalMs: number;
  private readonly files: FileSet;
  private handlers?: DatastoreHandlers;
  /**
   * What the handlers were last told exists: resourceId → resource. Content keys are computed only
   * when a changed definition is compared (kept for all, they were 100,000 strings for the GC).
   */
  private readonly emitted = new Map<string, Resource>();
  private revision = 0;
  private status?: { status: DatastoreStatus; detail?: string };
  private needResync = true;
  private watcher?: FSWatcher;
  private rescanTimer?: NodeJS.Timeout;
  private retryTimer?: NodeJS.Timeout;
  private debounceTimer?: NodeJS.Timeout;
  private wakeTimer?: { at: number; timer: NodeJS.Timeout };
  /** Files to look at in the next scan; `sweep`: every file. */
  private pending = new Set<string>();
  private sweep = true;
  /** A file's signature seen but not read yet, and since when it has been so. */
  private readonly observed = new Map<string, { sig: string; since: number }>();
  /** Names skipped (symlink out of root, special file), with the reason warned about. */
  private readonly skippedFiles = new Map<string, string>();
  private running?: Promise<void>;
  private again = false;
  private stopped = false;
  private readonly loggedSkips = new Set<string>();
  private watchFailureLogged = false;
  private lastRefusals = '';
  private skipsChanged = false;

  constructor(dir: string, opts: FileDatastoreOptions = {}) {
    this.dir = resolve(dir);
    this.root = resolve(opts.root ?? dirname(this.dir));
    this.description = `file:${this.dir}`;
    this.pollIntervalMs = opts.pollIntervalMs ?? 500;
    this.settleMs = opts.settleMs ?? 100;
    this.confirmMs = opts.confirmMs ?? 1000;
    this.rescanIntervalMs = opts.rescanIntervalMs ?? 30_000;
    this.files = new FileSet(this.dir);
  }

  /** One-shot read for CLI commands (no settling). Throws if the directory cannot be read. */
  static async load(
    dir: string,
    opts: { root?: string } = {},
  ): Promise<{ resources: Resource[]; errors: ResourceError[]; skipped: SkippedResource[] }> {
    const { abs, root, names } = await listYamlFiles(dir, opts.root);
    const set = new FileSet(abs);
    const errors: ResourceError[] = [];
    const skipped: SkippedResource[] = [];
    const y = new Yielder();
    for (const name of names) {
      const read = await readSafely(join(abs, name), root);
      if ('skip' in read || 'error' in read) {
        const why = 'skip' in read ? `skipped: ${read.skip}` : `cannot read: ${read.error}`;
        errors.push({ origin: { source: join(abs, name) }, message: why });
        continue;
      }
      const parsed = await parseFileIncremental(
        read.bytes,
        { source: join(abs, name), baseDir: abs },
        undefined,
        y,
      );
      const report = await set.update(name, parsed, '', false, y);
      errors.push(...report.errors);
      skipped.push(...report.skipped);
    }
    return { resources: [...(await set.allEffective(y)).values()], errors, skipped };
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
    this.rescanTimer = setInterval(() => {
      // Without a working watch, polling is all there is; with one, a slow safety net.
      if (!this.watcher || Date.now() - this.lastSweep >= this.rescanIntervalMs) this.requestSweep();
    }, this.pollIntervalMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.rescanTimer);
    clearTimeout(this.retryTimer);
    clearTimeout(this.debounceTimer);
    clearTimeout(this.wakeTimer?.timer);
    this.closeWatcher();
    await this.running;
  }

  private lastSweep = 0;

  private requestSweep(): void {
    this.sweep = true;
    void this.requestScan();
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
    const y = new Yielder();
    const sweep = this.sweep || this.needResync;
    // Take the pending names before the first await: a watch event that arrives while this scan
    // reads goes into a fresh set and is scanned next, never dropped.
    const taken = this.pending;
    this.pending = new Set();
    let names: string[];
    if (sweep) {
      const listed = await this.listDir();
      if (!listed || this.stopped) {
        for (const n of taken) this.pending.add(n);
        return;
      }
      this.sweep = false;
      this.lastSweep = Date.now();
      names = listed;
    } else {
      names = [...taken].sort();
      // A file gone may mean the directory is gone (fail-static, not deletes): check the listing.
      const stats = await Promise.all(names.map((name) => stat(join(this.dir, name)).catch(() => undefined)));
      if (stats.some((st) => st === undefined)) {
        this.sweep = true;
        return this.scan();
      }
    }
    const resync = this.needResync;
    if (resync) this.setStatus('ResyncInProgress');
    this.ensureWatcher();

    // Sets of ids, not one merged set: copying a 100,000-id set in one go held the event loop.
    const changed: Set<string>[] = [];
    const errors: ResourceError[] = [];
    const skipped: SkippedResource[] = [];
    let touched = false;
    if (sweep) {
      const listed = new Set(names);
      for (const name of [...this.skippedFiles.keys()]) {
        if (!listed.has(name) && this.skippedFiles.delete(name)) this.skipsChanged = true;
      }
      for (const name of this.files.names()) {
        if (listed.has(name)) continue;
        changed.push(this.files.remove(name));
        touched = true;
      }
    }
    // A (re)sync's listing waits for files still being written to settle (a bounded number of
    // rounds: a file written to without pause does not hold the whole cluster back).
    for (let round = 0; names.length > 0 && round < 20; round++) {
      const now = Date.now();
      for (let i = 0; i < names.length; i += STAT_PARALLEL) {
        const group = names.slice(i, i + STAT_PARALLEL);
        const stats = await Promise.all(group.map((name) => this.statFile(name)));
        // A file that vanished may mean the directory went (fail-static, not deletes).
        if (stats.some((st, j) => !st && this.files.entry(group[j] as string)) && !(await this.dirExists())) {
          this.sweep = true;
          this.again = true;
          return;
        }
        for (const [j, name] of group.entries()) {
          const report = await this.scanFile(name, stats[j], now, y);
          if (!report) continue;
          touched = true;
          changed.push(report.changed);
          errors.push(...report.errors);
          skipped.push(...report.skipped);
        }
      }
      if (!resync || this.stopped) break;
      names = [...this.observed.keys()].sort();
      const next = Math.min(...[...this.observed.values()].map((o) => o.since + this.settleMs));
      if (names.length > 0) await new Promise((r) => setTimeout(r, Math.max(5, next - Date.now() + 5)));
    }
    if (this.stopped) return;

    this.report(errors, skipped, touched);
    const events = resync ? await this.fullListing(y) : await this.diff(concat(changed), y);
    await this.emit(events, resync, y);
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
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.requestSweep(), this.pollIntervalMs);
      return undefined;
    }
  }

  private async dirExists(): Promise<boolean> {
    return stat(this.dir).then(
      (st) => st.isDirectory(),
      () => false,
    );
  }

  /** stat() following a symlink; undefined when the name is gone. */
  private async statFile(name: string): Promise<Stats | undefined> {
    const path = join(this.dir, name);
    const st = await stat(path).catch(() => undefined);
    if (st) return st;
    // A dangling symlink: say so once, like any other skipped name.
    const link = await lstat(path).catch(() => undefined);
    if (link?.isSymbolicLink()) this.warnSkipped(name, 'a symlink to nothing');
    else if (!link && this.skippedFiles.delete(name)) this.skipsChanged = true;
    return undefined;
  }

  /** Look at one file; read and parse it if it changed and has settled. undefined: nothing new. */
  private async scanFile(
    name: string,
    st: Stats | undefined,
    now: number,
    y: Yielder,
  ): Promise<UpdateReport | undefined> {
    const path = join(this.dir, name);
    const gone = (): UpdateReport | undefined => {
      this.observed.delete(name);
      if (!this.files.entry(name)) return undefined;
      return { changed: this.files.remove(name), errors: [], skipped: [] };
    };
    if (!st) return gone();
    if (!st.isFile()) {
      this.warnSkipped(name, `${fileType(st)}, not a regular file`);
      return gone();
    }
    const sig = signature(st);
    const entry = this.files.entry(name);
    if (entry && entry.sig === sig && (entry.recheckAt === undefined || now < entry.recheckAt)) {
      if (entry.recheckAt !== undefined) this.wakeAt(entry.recheckAt);
      return undefined;
    }
    let seen = this.observed.get(name);
    if (seen?.sig !== sig) {
      // Changed since last seen: settled once unchanged for settleMs (by its times, or our watch).
      seen = { sig, since: Math.min(now, Math.max(st.mtimeMs, st.ctimeMs)) };
      this.observed.set(name, seen);
    }
    if (now - seen.since < this.settleMs) {
      this.wakeAt(seen.since + this.settleMs);
      return undefined;
    }

    const previousBytes = entry?.state.bytes;
    const read = await readSafely(path, this.root, sig, entry?.spare);
    if ('skip' in read) {
      this.warnSkipped(name, read.skip);
      return gone();
    }
    if ('error' in read) {
      if (read.code === 'ENOENT') return gone();
      // Unreadable for now (permissions, I/O): keep what we have, try again later.
      log.warn({ file: path }, `cannot read: ${read.error}; keeping its last good resources`);
      return undefined;
    }
    if (read.changed) {
      // Written to while we read it: wait for it to settle again.
      this.observed.set(name, { sig: read.sig, since: Date.now() });
      this.wakeAt(Date.now() + this.settleMs);
      return undefined;
    }
    if (this.skippedFiles.delete(name)) this.skipsChanged = true;
    const parsed = await parseFileIncremental(
      read.bytes,
      { source: path, baseDir: this.dir },
      entry?.state,
      y,
    );
    const { lasting, fleeting } = incompleteness(read.bytes, parsed);
    const tentative =
      fleeting !== undefined && (entry?.resources.size ?? 0) > 0 && now - seen.since < this.confirmMs;
    const report = await this.files.update(name, parsed, sig, lasting !== undefined || tentative, y);
    const updated = this.files.entry(name) as FileEntry;
    // The last version's buffer is free now: the next version is read into it. A big file read
    // for the first time gets one at once (allocated while loading, not during its first edit).
    updated.spare = spareOf(previousBytes) ?? (entry ? undefined : spareFor(read.bytes));
    this.observed.delete(name);
    if (tentative) {
      updated.recheckAt = seen.since + this.confirmMs;
      this.wakeAt(updated.recheckAt);
      log.debug(
        { file: path, reason: fleeting },
        'file looks incomplete; keeping its last good version for now',
      );
    }
    if (lasting !== undefined && report.held > 0) {
      const held: ResourceError = {
        origin: { source: path },
        message: `file looks incomplete (${lasting}): keeping ${report.held} resource(s) of its last good version until it parses completely`,
      };
      updated.errors.push(held);
      report.errors.push(held);
    }
    return report;
  }

  /** Scan again at `at` (a file settling, or an incomplete file to believe). */
  private wakeAt(at: number): void {
    if (this.stopped || (this.wakeTimer && this.wakeTimer.at <= at)) return;
    clearTimeout(this.wakeTimer?.timer);
    const timer = setTimeout(
      () => {
        this.wakeTimer = undefined;
        for (const [name] of this.observed) this.pending.add(name);
        for (const name of this.files.names()) if (this.files.entry(name)?.recheckAt) this.pending.add(name);
        void this.requestScan();
      },
      Math.max(0, at - Date.now()) + 5,
    );
    this.wakeTimer = { at, timer };
  }

  private warnSkipped(name: string, reason: string): void {
    if (this.skippedFiles.get(name) === reason) return;
    this.skippedFiles.set(name, reason);
    this.skipsChanged = true;
    log.warn({ file: join(this.dir, clip(name)) }, `skipped: ${reason}`);
  }

  private report(errors: ResourceError[], skipped: SkippedResource[], touched: boolean): void {
    if ((touched || this.skipsChanged) && this.handlers?.onRefusals) {
      this.skipsChanged = false;
      // Skipped files are refusals too: an operator must see why a file is not served.
      const skippedFiles = [...this.skippedFiles].map(
        ([name, reason]): ResourceError => ({
          origin: { source: join(this.dir, name) },
          message: `skipped: ${reason}`,
        }),
      );
      const now = [...this.files.refusals(), ...skippedFiles];
      const key = JSON.stringify(now);
      if (key !== this.lastRefusals) {
        this.lastRefusals = key;
        this.handlers.onRefusals(now);
      }
    }
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
  private async fullListing(y: Yielder): Promise<DatastoreEvent[]> {
    const now = await this.files.allEffective(y);
    const events: DatastoreEvent[] = [];
    for (const [id, prev] of this.emitted) {
      await y.maybeYield();
      if (!now.has(id)) {
        events.push(deleteEvent(prev));
        this.emitted.delete(id);
      }
    }
    for (const [id, resource] of now) {
      await y.maybeYield();
      this.emitted.set(id, resource);
      events.push({ type: 'upsert', resource });
    }
    return events;
  }

  /** The changes among `ids` since the last batch; a resource whose content is unchanged is left out. */
  private async diff(ids: Iterable<string>, y: Yielder): Promise<DatastoreEvent[]> {
    const events: DatastoreEvent[] = [];
    for (const id of ids) {
      await y.maybeYield();
      const now = this.files.effective(id);
      const prev = this.emitted.get(id);
      if (!now) {
        if (prev) events.push(deleteEvent(prev));
        this.emitted.delete(id);
        continue;
      }
      if (prev === now) continue;
      this.emitted.set(id, now);
      if (prev && contentKey(prev) === contentKey(now)) continue;
      events.push({ type: 'upsert', resource: now });
    }
    return events;
  }

  /**
   * Hand the events over in parts of EMIT_BATCH, yielding between them. A resync's listing may
   * span several batches: it is complete at InSync (DatastoreHandlers).
   */
  private async emit(events: DatastoreEvent[], always: boolean, y: Yielder): Promise<void> {
    if (events.length === 0 && !always) return;
    for (let i = 0; i === 0 || i < events.length; i += EMIT_BATCH) {
      if (this.stopped) return;
      if (i > 0) await new Promise<void>((r) => setImmediate(r));
      this.revision += 1;
      this.handlers?.onEvents(events.slice(i, i + EMIT_BATCH), this.revision);
      await y.maybeYield();
    }
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
        this.requestSweep();
      });
    } catch (e) {
      // Retried on every sweep (an inotify limit may be lifted); said once.
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
    const name = filename ? basename(filename.toString()) : undefined;
    if (name !== undefined && isYamlFileName(name)) this.pending.add(name);
    // Unknown, a ConfigMap's `..data` swap (every file changes at once), or the directory itself
    // (removed, renamed): look at all of them.
    else if (name === undefined || name.startsWith('..') || name === basename(this.dir)) this.sweep = true;
    // Editors' temporary files (`.x.yaml.swp`, `x.yaml~`): their rename onto x.yaml is its own event.
    else return;
    clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => void this.requestScan(), WATCH_DEBOUNCE_MS);
  }
}

/** A file's bytes, read through paths.ts's checks; `changed` when it was written to meanwhile. */
async function readSafely(
  path: string,
  root: string,
  expectedSig?: string,
  spare?: Buffer,
): Promise<
  { bytes: Buffer; sig: string; changed: boolean } | { skip: string } | { error: string; code?: string }
> {
  try {
    const fh = await openDatastoreFile(path, root);
    if ('skip' in fh) return fh;
    try {
      const st = await fh.stat();
      const before = signature(st);
      // Bytes, not text: file-parse.ts decodes only what changed, a chunk at a time.
      const bytes = st.size < BIG_FILE ? await fh.readFile() : await readInto(fh, st.size, spare);
      const after = signature(await fh.stat());
      const changed = before !== after || (expectedSig !== undefined && expectedSig !== before);
      return { bytes, sig: after, changed };
    } finally {
      await fh.close();
    }
  } catch (e) {
    const code = errnoCode(e);
    return { error: (e as Error).message, ...(code ? { code } : {}) };
  }
}

/** From this size on, a file is read into a buffer kept for its next version. */
const BIG_FILE = 1 << 20;
const READ_CHUNK = 4 << 20;

/**
 * Read a big file into `spare` (the buffer of the version before last) when it fits. A new 27 MB
 * buffer per edit is external memory, and V8 answers external memory pressure with a full
 * mark-compact of the whole heap: hundreds of milliseconds of main-thread marking per edit.
 */
async function readInto(fh: FileHandle, size: number, spare: Buffer | undefined): Promise<Buffer> {
  const buf = spare && spare.length >= size ? spare : Buffer.allocUnsafeSlow(size + (size >> 3));
  let off = 0;
  while (off < size) {
    const { bytesRead } = await fh.read(buf, off, Math.min(READ_CHUNK, size - off), off);
    if (bytesRead === 0) break;
    off += bytesRead;
  }
  return buf.subarray(0, off);
}

function spareFor(bytes: Buffer): Buffer | undefined {
  return bytes.length >= BIG_FILE ? Buffer.allocUnsafeSlow(bytes.length + (bytes.length >> 3)) : undefined;
}

/** The whole buffer behind a big file's bytes, to read the version after next into; else undefined. */
function spareOf(bytes: Buffer | undefined): Buffer | undefined {
  return bytes && bytes.length >= BIG_FILE ? Buffer.from(bytes.buffer, bytes.byteOffset) : undefined;
}
