// Parsing a datastore file without stalling the syncer: the text is cut into YAML documents, each
// document's raw text is hashed, and only documents whose text changed are parsed again. Work is
// done in slices with a yield to the event loop between them, so a 27 MB file never holds the
// process (liveness, the feed's heartbeats) for more than a slice.
import { hash } from 'node:crypto';
import type { DocumentOutcome } from '../../model/validate.ts';
import { parseDocuments } from '../../model/validate.ts';

/** Longest stretch of synchronous work before yielding to the event loop. */
export const SLICE_MS = 8;

/** Cooperative scheduling: call `maybeYield()` in loops; it yields once a slice is used up. */
export class Yielder {
  private sliceStart = performance.now();

  constructor(private readonly sliceMs = SLICE_MS) {}

  async maybeYield(): Promise<void> {
    if (performance.now() - this.sliceStart < this.sliceMs) return;
    await new Promise<void>((r) => setImmediate(r));
    this.sliceStart = performance.now();
  }
}

export interface RawDocument {
  text: string;
  /** Lines of the file before this document (for error line numbers). */
  lineOffset: number;
}

// A document starts at a `---` line and ends after a `...` line (YAML forbids both at the start
// of a line inside any scalar, so cutting there never splits a document).
const MARKER = /^(?:---|\.\.\.)(?=[ \t\r]|$)/gm;

/** The raw documents of a multi-document YAML text, in order; nothing is lost between them. */
export async function splitDocuments(text: string, y: Yielder): Promise<RawDocument[]> {
  const out: RawDocument[] = [];
  let start = 0;
  let line = 0;
  const push = (end: number) => {
    if (end <= start) return;
    const piece = text.slice(start, end);
    out.push({ text: piece, lineOffset: line });
    line += countNewlines(piece);
    start = end;
  };
  MARKER.lastIndex = 0;
  for (let m = MARKER.exec(text); m !== null; m = MARKER.exec(text)) {
    if (m[0] === '---') push(m.index);
    else {
      // `...` closes the document it ends: cut after its line.
      const eol = text.indexOf('\n', m.index);
      push(eol < 0 ? text.length : eol + 1);
    }
    await y.maybeYield();
  }
  push(text.length);
  return out;
}

function countNewlines(s: string): number {
  let n = 0;
  for (let i = s.indexOf('\n'); i >= 0; i = s.indexOf('\n', i + 1)) n++;
  return n;
}

/** Only whitespace and comments: not a document (a file's preamble, a trailing `---`). */
function isBlank(text: string): boolean {
  // Fast answer for the usual document: its first line after the marker is content.
  const body = text.startsWith('---') ? text.slice(text.indexOf('\n') + 1 || text.length) : text;
  const first = /\S/.exec(body.slice(0, 200));
  if (first && first[0] !== '#' && first[0] !== '-' && first[0] !== '.') return false;
  return /^(?:\s*(?:#[^\n]*)?(?:\n|$))*$/.test(text.replace(/^(?:---|\.\.\.)[ \t]*/gm, ''));
}

/** What one document's raw text gave, last time it was parsed. */
interface CachedDocument {
  outcomes: DocumentOutcome[];
  document: number;
  lineOffset: number;
}

/** Per file: document hash → what it parsed to. */
export type DocumentCache = Map<string, CachedDocument>;

export interface ParsedFile {
  outcomes: DocumentOutcome[];
  /** Outcomes whose document text is new (parsed now, not taken from the cache). */
  fresh: Set<DocumentOutcome>;
  cache: DocumentCache;
  documents: number;
}

/**
 * Parse a file's text, reusing the outcomes of documents whose raw text is unchanged. A reused
 * document that moved (a document inserted before it) gets its new index; one with errors is
 * parsed again when it moved, so its line numbers stay right.
 */
export async function parseFileIncremental(
  text: string,
  origin: { source: string; baseDir: string },
  previous: DocumentCache | undefined,
  y: Yielder,
): Promise<ParsedFile> {
  const raw = await splitDocuments(text, y);
  const cache: DocumentCache = new Map();
  const outcomes: DocumentOutcome[] = [];
  const fresh = new Set<DocumentOutcome>();
  let document = 0;
  for (const doc of raw) {
    await y.maybeYield();
    if (isBlank(doc.text)) continue;
    const key = hash('sha1', doc.text);
    const old = previous?.get(key) ?? cache.get(key);
    let got: DocumentOutcome[];
    if (old && (old.document === document || !hasErrors(old.outcomes))) {
      got = old.document === document ? old.outcomes : old.outcomes.map((o) => renumber(o, document));
    } else {
      got = parseDocuments(doc.text, {
        ...origin,
        firstDocument: document,
        lineOffset: doc.lineOffset,
      });
      for (const o of got) fresh.add(o);
    }
    if (!cache.has(key)) cache.set(key, { outcomes: got, document, lineOffset: doc.lineOffset });
    outcomes.push(...got);
    document += 1;
  }
  return { outcomes, fresh, cache, documents: document };
}

function hasErrors(outcomes: DocumentOutcome[]): boolean {
  return outcomes.some((o) => 'errors' in o.result);
}

function renumber(o: DocumentOutcome, document: number): DocumentOutcome {
  const r = o.result;
  const result =
    'resource' in r ? { resource: { ...r.resource, origin: { ...r.resource.origin, document } } } : r;
  return { ...o, document, result };
}
