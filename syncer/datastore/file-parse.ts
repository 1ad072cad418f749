// Parsing a datastore file without stalling the syncer. A new version of a file is compared with
// the last one, as bytes, by common prefix and suffix: only the documents around the changed region
// are decoded and cut out again, and a document there whose raw text is unchanged (it moved) is
// not parsed again. An edit of one endpoint in a 27 MB file decodes and parses one document. Text
// is decoded in chunks cut at document boundaries (a 27 MB string is never made: decoding it is
// one long block, and it would sit in the heap). Work is done in slices with a yield to the event
// loop between them, so a big file never holds the process (liveness, the feed's heartbeats) for
// more than a slice.
import type { DocumentOutcome } from '../../model/validate.ts';
import { parseDocuments } from '../../model/validate.ts';

/** Longest stretch of synchronous work before yielding to the event loop. */
export const SLICE_MS = 4;

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

/** One raw document of a file (or a blank piece: a preamble of comments, a trailing `---`). */
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
export function isBlank(text: string): boolean {
  // Fast answer for the usual document: its first line after the marker is content.
  const body = text.startsWith('---') ? text.slice(text.indexOf('\n') + 1 || text.length) : text;
  const first = /\S/.exec(body.slice(0, 200));
  if (first && first[0] !== '#' && first[0] !== '-' && first[0] !== '.') return false;
  return /^(?:\s*(?:#[^\n]*)?(?:\n|$))*$/.test(text.replace(/^(?:---|\.\.\.)[ \t]*/gm, ''));
}

/** What one raw piece of a file gave, last time it was parsed. */
interface DocState {
  /** Its length in bytes and its newlines: positions and line numbers are sums over the pieces before. */
  length: number;
  lines: number;
  /** Index among the file's non-blank documents; undefined for a blank piece. */
  document?: number;
  outcomes: DocumentOutcome[];
}

/** What a file's last version parsed to, piece by piece: the next version is compared with it. */
export interface FileParseState {
  bytes: Buffer;
  docs: DocState[];
}

export interface ParsedFile {
  outcomes: DocumentOutcome[];
  /** Outcomes whose document text is new (parsed now, not taken from the last version). */
  fresh: Set<DocumentOutcome>;
  state: FileParseState;
  /** Some document is not YAML (a syntax or nesting error): the file may be half-written. */
  syntaxError: boolean;
  documents: number;
  /**
   * Set when only a region of the file changed and every document outside it kept its number:
   * the outcomes of the region's documents before and after. Everything else is as it was.
   */
  delta?: { removed: DocumentOutcome[]; added: DocumentOutcome[] };
}

/** Bytes compared at once when looking for the changed region (a memcmp each). */
const COMPARE_CHUNK = 1 << 20;
/** Bytes decoded at once (a few milliseconds). */
const DECODE_CHUNK = 1 << 20;

/** Length of the common prefix of a and b. */
async function commonPrefix(a: Buffer, b: Buffer, y: Yielder): Promise<number> {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n) {
    const end = Math.min(n, i + COMPARE_CHUNK);
    if (a.compare(b, i, end, i, end) !== 0) break;
    i = end;
    await y.maybeYield();
  }
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** Length of the common suffix of a and b, at most `max`. */
async function commonSuffix(a: Buffer, b: Buffer, max: number, y: Yielder): Promise<number> {
  let i = 0;
  while (i < max) {
    const len = Math.min(max - i, COMPARE_CHUNK);
    if (a.compare(b, b.length - i - len, b.length - i, a.length - i - len, a.length - i) !== 0) break;
    i += len;
    await y.maybeYield();
  }
  while (i < max && a[a.length - 1 - i] === b[b.length - 1 - i]) i++;
  return i;
}

/** Index of the piece that holds byte `pos` (the last piece for pos past the end). */
function pieceAt(starts: number[], pos: number): number {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((starts[mid] as number) <= pos) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

const DASHES = Buffer.from('\n---');

/** The first `---` marker line at or after `pos` (before `to`), or `to`: a cut point of the split. */
function nextMarker(bytes: Buffer, pos: number, to: number): number {
  for (let i = bytes.indexOf(DASHES, pos - 1); i >= 0 && i + 1 < to; i = bytes.indexOf(DASHES, i + 1)) {
    const after = bytes[i + 4];
    if (
      after === undefined ||
      i + 4 >= to ||
      after === 0x20 ||
      after === 0x09 ||
      after === 0x0d ||
      after === 0x0a
    )
      return i + 1;
  }
  return to;
}

/** A piece of the text with its length in bytes. */
interface Piece extends RawDocument {
  bytes: number;
}

/** Where bytes come from, a block at a time (a file handle's read). */
export type ReadBlock = (into: Buffer) => Promise<number>;

/**
 * The raw documents of a file read and decoded a chunk at a time, as they come (a chunk's at once): the pieces
 * splitDocuments gives for the whole text (chunks end at `---` marker lines, as splitBytes's do),
 * without the whole text, or all its bytes, ever in memory at once.
 */
export async function* readDocuments(read: ReadBlock): AsyncGenerator<RawDocument[]> {
  // One window, reused: what is left after a cut moves to its front (fresh blocks for every read
  // were garbage the GC only freed with the old generation, 40 MB of it over a 34 MB file).
  let window = Buffer.allocUnsafe(3 * DECODE_CHUNK);
  let length = 0;
  let eof = false;
  let line = 0;
  let from = DECODE_CHUNK;
  for (;;) {
    // A cut: a marker line after the first chunk's worth, whole (its next byte read), or the end.
    let cut = -1;
    while (cut < 0) {
      const bytes = window.subarray(0, length);
      const at = length > DECODE_CHUNK ? nextMarker(bytes, from, length) : length;
      if (eof) cut = at;
      else if (at + 3 < length) cut = at;
      else {
        // Look again from the last partial line only: what is before it was searched already.
        from = Math.max(DECODE_CHUNK, length - 4);
        if (length + DECODE_CHUNK > window.length) {
          const bigger = Buffer.allocUnsafe(window.length * 2); // one document longer than the window
          window.copy(bigger, 0, 0, length);
          window = bigger;
        }
        const n = await read(window.subarray(length, length + DECODE_CHUNK));
        if (n === 0) eof = true;
        length += n;
      }
    }
    if (cut === 0) return;
    const text = window.toString('utf8', 0, cut);
    window.copyWithin(0, cut, length);
    length -= cut;
    from = DECODE_CHUNK;
    // A chunk's documents at once: one turn of the event loop per megabyte, not per document.
    const pieces = await splitDocuments(text, NEVER_YIELD);
    // The pieces cover the chunk: its lines are the last piece's offset and its own.
    const last = pieces[pieces.length - 1];
    const lines = last ? last.lineOffset + countNewlines(last.text) : 0;
    for (const piece of pieces) piece.lineOffset += line;
    line += lines;
    yield pieces;
  }
}

/** For a read the caller does in one go (a CLI command): nothing else waits on the event loop. */
const NEVER_YIELD = new Yielder(Number.POSITIVE_INFINITY);

/**
 * The raw documents of bytes [from, to), decoded a chunk at a time. Chunks end at `---` marker
 * lines, where the whole text's split cuts too, so the pieces are the same.
 */
async function splitBytes(bytes: Buffer, from: number, to: number, y: Yielder): Promise<Piece[]> {
  const out: Piece[] = [];
  let line = 0;
  for (let pos = from; pos < to; ) {
    const cut = pos + DECODE_CHUNK >= to ? to : nextMarker(bytes, pos + DECODE_CHUNK, to);
    const text = bytes.toString('utf8', pos, cut);
    for (const piece of await splitDocuments(text, y)) {
      out.push({ ...piece, lineOffset: line + piece.lineOffset, bytes: Buffer.byteLength(piece.text) });
    }
    line += countNewlines(text);
    pos = cut;
    await y.maybeYield();
  }
  return out;
}

/**
 * Parse a file's bytes. With the state of its last version, only the pieces around the region
 * that changed are decoded and looked at again; of those, a document whose raw text is unchanged
 * keeps its outcomes (renumbered when it moved; parsed again if it has errors, so their line
 * numbers stay right).
 */
export async function parseFileIncremental(
  bytes: Buffer,
  origin: { source: string; baseDir: string },
  previous: FileParseState | undefined,
  y: Yielder,
): Promise<ParsedFile> {
  const old = previous?.docs ?? [];
  // The pieces [first, last] of the old version are replaced by the pieces cut from the new bytes
  // between `from` and `to`; the pieces outside stay as they are.
  let first = 0;
  let last = old.length - 1;
  let from = 0;
  let to = bytes.length;
  let lineOffset = 0;
  if (previous && old.length > 0) {
    const before = previous.bytes;
    const prefix = await commonPrefix(before, bytes, y);
    const suffix = await commonSuffix(before, bytes, Math.min(before.length, bytes.length) - prefix, y);
    const starts: number[] = [];
    let pos = 0;
    for (const d of old) {
      starts.push(pos);
      pos += d.length;
    }
    // Whether a line starts a document depends on the characters around it: a margin of a few
    // bytes and one whole piece on each side keep the cut points outside the region stable.
    first = Math.max(0, pieceAt(starts, Math.max(0, prefix - 8)) - 1);
    last = Math.min(old.length - 1, pieceAt(starts, before.length - suffix + 8) + 1);
    from = starts[first] as number;
    to = bytes.length - (before.length - ((starts[last] as number) + (old[last] as DocState).length));
    for (let i = 0; i < first; i++) lineOffset += (old[i] as DocState).lines;
  }
  const region = await splitBytes(bytes, from, to, y);

  // Old documents of the region by raw text: one that only moved is not parsed again.
  const oldByText = new Map<string, DocState>();
  let document = countDocuments(old, 0, first);
  let oldLines = 0;
  let oldDocuments = 0;
  const removed: DocumentOutcome[] = [];
  if (previous) {
    let pos = from;
    for (let i = first; i <= last; i++) {
      const d = old[i] as DocState;
      if (d.document !== undefined) {
        oldByText.set(previous.bytes.toString('utf8', pos, pos + d.length), d);
        oldDocuments += 1;
      }
      removed.push(...d.outcomes);
      oldLines += d.lines;
      pos += d.length;
      await y.maybeYield();
    }
  }
  const fresh = new Set<DocumentOutcome>();
  const regionDocs: DocState[] = [];
  const added: DocumentOutcome[] = [];
  let newLines = 0;
  for (const raw of region) {
    await y.maybeYield();
    const lines = countNewlines(raw.text);
    newLines += lines;
    if (isBlank(raw.text)) {
      regionDocs.push({ length: raw.bytes, lines, outcomes: [] });
      continue;
    }
    const at = { document, lineOffset: lineOffset + raw.lineOffset };
    const outcomes = reuse(oldByText.get(raw.text), at) ?? parseDocument(raw.text, origin, at, fresh);
    regionDocs.push({ length: raw.bytes, lines, document, outcomes });
    added.push(...outcomes);
    document += 1;
  }

  // The pieces after the region: renumbered when the region's count of documents changed, parsed
  // again when they have errors and their lines moved.
  const shift = document - (countDocuments(old, 0, first) + oldDocuments);
  const lineShift = newLines - oldLines;
  let afterLine = lineOffset + oldLines;
  let afterPos = to;
  const after: DocState[] = [];
  for (let i = last + 1; i < old.length; i++) {
    const d = old[i] as DocState;
    if (d.document === undefined || (shift === 0 && (lineShift === 0 || !hasErrors(d.outcomes))))
      after.push(d);
    else {
      const at = { document: d.document + shift, lineOffset: afterLine + lineShift };
      const outcomes =
        reuse(d, at) ??
        parseDocument(bytes.toString('utf8', afterPos, afterPos + d.length), origin, at, fresh);
      after.push({ ...d, document: at.document, outcomes });
    }
    afterLine += d.lines;
    afterPos += d.length;
    await y.maybeYield();
  }

  // One pass over every piece of a 100,000-document file: it yields like the others (an edit must
  // not hold the event loop for tens of milliseconds here).
  const docs: DocState[] = [];
  const outcomes: DocumentOutcome[] = [];
  let documents = 0;
  let syntaxError = false;
  const take = (d: DocState) => {
    docs.push(d);
    if (d.document !== undefined) documents += 1;
    for (const o of d.outcomes) {
      outcomes.push(o);
      if ('errors' in o.result && o.result.errors.some((e) => SYNTAX_ERROR.test(e.message)))
        syntaxError = true;
    }
  };
  for (let i = 0; i < first; i++) {
    take(old[i] as DocState);
    if ((i & 1023) === 0) await y.maybeYield();
  }
  for (const d of regionDocs) take(d);
  let unchangedOutside = previous !== undefined && shift === 0;
  for (let j = 0; j < after.length; j++) {
    const d = after[j] as DocState;
    take(d);
    if (d !== old[last + 1 + j]) unchangedOutside = false;
    if ((j & 1023) === 0) await y.maybeYield();
  }
  return {
    outcomes,
    fresh,
    state: { bytes, docs },
    documents,
    syntaxError,
    ...(unchangedOutside ? { delta: { removed, added } } : {}),
  };
}

/** The messages of a document that is not YAML at all (as opposed to a refused resource). */
export const SYNTAX_ERROR = /^YAML (syntax error|nesting)/;

function countDocuments(docs: readonly DocState[], from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) if (docs[i]?.document !== undefined) n += 1;
  return n;
}

/**
 * A document's last outcomes, when they can stand at `at` (renumbered if it moved). One with
 * errors is parsed again: its messages carry line numbers, which may have moved.
 */
function reuse(d: DocState | undefined, at: { document: number }): DocumentOutcome[] | undefined {
  if (!d || hasErrors(d.outcomes)) return undefined;
  return d.document === at.document ? d.outcomes : d.outcomes.map((o) => renumber(o, at.document));
}

function parseDocument(
  text: string,
  origin: { source: string; baseDir: string },
  at: { document: number; lineOffset: number },
  fresh: Set<DocumentOutcome>,
): DocumentOutcome[] {
  const outcomes = parseDocuments(text, { ...origin, firstDocument: at.document, lineOffset: at.lineOffset });
  for (const o of outcomes) fresh.add(o);
  return outcomes;
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
