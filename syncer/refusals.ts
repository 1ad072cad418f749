// The refusals in force now, per source (the local cluster, each remote), for the
// `fedmesh_syncer_refused_documents` metric and /status. A refusal counts while the input that
// caused it is still there, and goes when it is fixed: a datastore that reports its complete set
// (onRefusals) replaces it; for one that only reports refusals as they happen (onErrors), a
// refusal about a resource ends when that resource arrives valid or is deleted.
import type { ResourceError } from '../model/resources.ts';

/** How many refusals of one source are kept (the count stays exact). */
const KEEP_PER_SOURCE = 1000;

interface SourceRefusals {
  /** From onRefusals: the datastore's complete current set. */
  complete?: ResourceError[];
  /** From onErrors or the syncer's own checks, by what ends them (`res:<id>`, `policy:<id>`, ...). */
  scoped: Map<string, ResourceError[]>;
}

export class Refusals {
  private readonly sources = new Map<string, SourceRefusals>();

  private of(source: string): SourceRefusals {
    let s = this.sources.get(source);
    if (!s) {
      s = { scoped: new Map() };
      this.sources.set(source, s);
    }
    return s;
  }

  /** A datastore's complete set of refusals in force: replaces what it said before. */
  replace(source: string, errors: readonly ResourceError[]): void {
    const s = this.of(source);
    s.complete = [...errors];
    // The complete set includes what was reported as it happened.
    for (const scope of [...s.scoped.keys()]) if (/^(res|at):/.test(scope)) s.scoped.delete(scope);
  }

  /**
   * Refusals reported as they happen. Ignored once the source reports complete sets (those
   * already contain them).
   */
  reported(source: string, errors: readonly ResourceError[]): void {
    const s = this.of(source);
    if (s.complete) return;
    for (const e of errors) {
      const scope = e.resource ? `res:${e.resource}` : `at:${e.origin.source}#${e.origin.document ?? 0}`;
      s.scoped.set(scope, [...(s.scoped.get(scope) ?? []), e].slice(-10));
    }
  }

  /** Set (or with [] clear) the refusals of one scope, e.g. `policy:<id>`. */
  set(source: string, scope: string, errors: readonly ResourceError[]): void {
    const s = this.of(source);
    if (errors.length > 0) s.scoped.set(scope, [...errors]);
    else s.scoped.delete(scope);
  }

  /** A resource arrived valid, or was deleted: refusals reported about it as they happened end. */
  resolved(source: string, resourceId: string): void {
    this.sources.get(source)?.scoped.delete(`res:${resourceId}`);
  }

  /** A source went away (its RCC deleted). */
  clearSource(source: string): void {
    this.sources.delete(source);
  }

  /** How many refusals are in force, over all sources. */
  get count(): number {
    let n = 0;
    for (const s of this.sources.values()) {
      n += s.complete?.length ?? 0;
      for (const errs of s.scoped.values()) n += errs.length;
    }
    return n;
  }

  /** The refusals in force, each source's capped at KEEP_PER_SOURCE. */
  current(): ResourceError[] {
    const out: ResourceError[] = [];
    for (const s of this.sources.values()) {
      const mine = [...(s.complete ?? []), ...[...s.scoped.values()].flat()];
      out.push(...mine.slice(0, KEEP_PER_SOURCE));
    }
    return out;
  }
}
