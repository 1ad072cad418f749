// The plainest YAML, read by hand: one document of block mappings and block sequences whose
// leaves are plain scalars, simply quoted strings or one-line flow lists of plain scalars — what
// generated manifests (and a 100,000-endpoint file) are made of. It is several times faster than
// js-yaml on such text and makes far less garbage.
//
// It answers only when it is sure to decode exactly as the careful path (the `yaml` package, YAML
// 1.2 core schema) and js-yaml's fast path (yaml-fast.ts) do: plain scalars resolve through
// yaml-fast.ts's own core-schema types. Anything else is left to them — undefined means "ask
// yaml-fast.ts", never "refused": non-ASCII or control characters, tabs, CR, directives, more
// than one document, anchors, aliases, tags, block scalars, multi-line scalars, flow mappings,
// escapes in double quotes, keys that are not plain names (or resolve to null, a boolean or a
// number, or are `__proto__`), duplicate keys, a `#` that is not a comment, odd indentation.
import { resolvePlainScalar } from './yaml-fast.ts';

/** Printable ASCII and newlines only: everything else (tabs, CR, Unicode, controls) is js-yaml's. */
const NOT_PLAIN_TEXT = /[^\x20-\x7E\n]/;
/** Keys that would resolve to something else, or are not plain properties. */
const SPECIAL_KEY = /^(?:[Tt]rue|TRUE|[Ff]alse|FALSE|[Nn]ull|NULL|__proto__)$/;

/**
 * A plain name that cannot resolve to anything but itself: `[A-Za-z_][A-Za-z0-9_./-]*`, at most
 * 1024 characters (YAML's limit on an implicit key), not a special key. By hand: two regular
 * expressions on every key of every document were a fifth of the reading.
 */
function isPlainKey(k: string): boolean {
  const n = k.length;
  if (n === 0 || n > 1024) return false;
  for (let i = 0; i < n; i++) {
    const c = k.charCodeAt(i);
    const letter = (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
    const rest = (c >= 48 && c <= 57) || c === 46 || c === 47 || c === 45;
    if (!(letter || c === 95 || (i > 0 && rest))) return false;
  }
  return !(n >= 4 && n <= 9 && SPECIAL_KEY.test(k));
}
/** Items of a one-line flow list. */
const FLOW_ITEM = /^[A-Za-z0-9_./+=][A-Za-z0-9_./+=-]*$|^-[A-Za-z0-9_./+=][A-Za-z0-9_./+=-]*$/;
/** Characters that make a plain scalar start something else (YAML's indicators). */
const INDICATOR_START = /^[-?:,[\]{}#&*!|>'"%@`]/;
/** Nesting taken; deeper is for the other paths to judge. */
const MAX_DEPTH = 64;

/**
 * Short scalars repeat across documents (namespaces, label values, profile and node names): one
 * copy of each of the first INTERN_MAX distinct ones is shared, so 100,000 endpoints do not hold
 * 100,000 copies of "shop" (a long one that repeats, apiVersion and kind, is shared through the
 * table of texts read before). A longer one (13 characters and up, what V8 cuts out as a slice
 * that keeps the whole text it was cut from alive) is copied out flat instead: a resource kept
 * must not keep its file's text in memory.
 */
const INTERN_MAX = 4096;
const INTERN_LEN = 13;
const interned = new Map<string, string>();

/** A string of its own, not a slice of the text (join makes one flat string). */
function flat(s: string): string {
  return s.length >= INTERN_LEN ? [s.slice(0, 1), s.slice(1)].join('') : s;
}

/** A scalar as it is kept: shared when short, copied out of the text when long. */
function kept(s: string): string {
  if (s.length >= INTERN_LEN) return flat(s);
  const got = interned.get(s);
  if (got !== undefined) return got;
  if (interned.size < INTERN_MAX) interned.set(s, s);
  return s;
}

/**
 * Texts read before, and what they were read as: a key, an inline plain scalar, an item of a
 * flow list (each has its own rules). A text met again (the same key or value in the next
 * document) is compared where it stands and answered from here, without cutting it out,
 * checking and resolving it again. One entry per slot, by length and a few characters.
 */
class Seen {
  private readonly texts: (string | undefined)[] = new Array(SEEN_SLOTS).fill(undefined);
  private readonly values: unknown[] = new Array(SEEN_SLOTS).fill(undefined);

  /** The slot of text [from, to) (not empty). */
  slot(t: string, from: number, to: number): number {
    const n = to - from;
    return (
      (n * 31 + t.charCodeAt(from) * 7 + t.charCodeAt(to - 1) * 3 + t.charCodeAt(from + (n >> 1))) &
      (SEEN_SLOTS - 1)
    );
  }

  /** Whether text [from, to) is the one in `slot`: then `value(slot)` is what it was read as. */
  has(slot: number, t: string, from: number, to: number): boolean {
    const known = this.texts[slot];
    return known !== undefined && known.length === to - from && t.startsWith(known, from);
  }

  value(slot: number): unknown {
    return this.values[slot];
  }

  /**
   * `text` (flat: a slot must not keep a file's text alive) was read as `value`. A long one is
   * not kept: it is unlikely to repeat, and 1,024 slots of megabyte values would stay in memory.
   */
  set(slot: number, text: string, value: unknown): void {
    if (text.length > SEEN_MAX_TEXT) return;
    this.texts[slot] = text;
    this.values[slot] = value;
  }
}
const SEEN_SLOTS = 1024;
const SEEN_MAX_TEXT = 256;
const seenKeys = new Seen();
const seenScalars = new Seen();
const seenFlowItems = new Seen();
/** Whole `key: value` lines (their content, indentation aside), as [key, value]: values are scalars. */
const seenLines = new Seen();

class NotPlain extends Error {}
const NOT_PLAIN = new NotPlain();

/** One document's value, or undefined: use yaml-fast.ts. */
export function parsePlainDocument(text: string): unknown | undefined {
  if (NOT_PLAIN_TEXT.test(text)) return undefined;
  try {
    const p = new Parser(text);
    if (p.end) return undefined; // no content: the other paths say what an empty document is
    const v = p.node(p.indent, 0);
    if (!p.end) return undefined;
    return v;
  } catch (e) {
    if (e === NOT_PLAIN) return undefined;
    throw e;
  }
}

class Parser {
  private pos = 0;
  /** The current content line: its indentation and where its content starts and ends. */
  indent = 0;
  private start = 0;
  private stop = 0;
  end = false;
  /** The last plain scalar read was one read before (its line may repeat too). */
  private repeated = false;

  constructor(private readonly text: string) {
    // A leading `---` line opens the document; nothing may follow the marker on its line.
    if (text.startsWith('---')) {
      const eol = text.indexOf('\n');
      if (eol < 0 || eol !== 3) throw NOT_PLAIN;
      this.pos = 4;
    }
    this.next();
  }

  /** Move to the next line with content (blank lines and whole-line comments skipped). */
  private next(): void {
    const t = this.text;
    while (this.pos < t.length) {
      let eol = t.indexOf('\n', this.pos);
      if (eol < 0) eol = t.length;
      const lineStart = this.pos;
      this.pos = eol + 1;
      let i = lineStart;
      while (i < eol && t.charCodeAt(i) === 32) i++;
      if (i === eol || t.charCodeAt(i) === 35 /* # */) continue;
      // A marker or directive at the start of a line: another document, or a header.
      if (i === lineStart) {
        const c = t.charCodeAt(i);
        if (c === 37 /* % */ || t.startsWith('---', i) || t.startsWith('...', i)) throw NOT_PLAIN;
      }
      let j = eol;
      while (t.charCodeAt(j - 1) === 32) j--;
      this.indent = i - lineStart;
      this.start = i;
      this.stop = j;
      return;
    }
    this.end = true;
  }

  private isEntry(): boolean {
    const t = this.text;
    return (
      t.charCodeAt(this.start) === 45 /* - */ &&
      (this.start + 1 === this.stop || t.charCodeAt(this.start + 1) === 32)
    );
  }

  /** The block node whose first line is the current one, at `indent`. */
  node(indent: number, depth: number): unknown {
    if (depth > MAX_DEPTH) throw NOT_PLAIN;
    return this.isEntry() ? this.sequence(indent, depth) : this.mapping(indent, depth);
  }

  private mapping(indent: number, depth: number): Record<string, unknown> {
    const t = this.text;
    const out: Record<string, unknown> = {};
    while (!this.end && this.indent === indent && !this.isEntry()) {
      // A whole `key: value` line read before (most of a generated manifest's lines repeat).
      const lineSlot = seenLines.slot(t, this.start, this.stop);
      if (seenLines.has(lineSlot, t, this.start, this.stop)) {
        const [key, value] = seenLines.value(lineSlot) as [string, unknown];
        if (Object.hasOwn(out, key)) throw NOT_PLAIN;
        out[key] = value;
        this.next();
        if (!this.end && this.indent > indent) throw NOT_PLAIN;
        continue;
      }
      const colon = t.indexOf(':', this.start);
      if (colon < 0 || colon >= this.stop) throw NOT_PLAIN;
      const afterColon = colon + 1;
      if (afterColon < this.stop && t.charCodeAt(afterColon) !== 32) throw NOT_PLAIN;
      const key = this.key(this.start, colon);
      if (Object.hasOwn(out, key)) throw NOT_PLAIN;
      let v = afterColon;
      while (v < this.stop && t.charCodeAt(v) === 32) v++;
      if (v === this.stop || t.charCodeAt(v) === 35 /* # */) {
        // The value is on the lines below: more indented, or a sequence at this indentation.
        this.next();
        if (!this.end && this.indent > indent) out[key] = this.node(this.indent, depth + 1);
        else if (!this.end && this.indent === indent && this.isEntry())
          out[key] = this.sequence(indent, depth + 1);
        else out[key] = null;
      } else {
        const line = [this.start, this.stop] as const;
        this.repeated = false;
        const value = this.inline(v, this.stop);
        out[key] = value;
        // Kept only when its value was met before: a line with a name of its own will not repeat.
        if (this.repeated) seenLines.set(lineSlot, flat(t.slice(line[0], line[1])), [key, value]);
        this.next();
      }
      if (!this.end && this.indent > indent) throw NOT_PLAIN; // a continuation line, or a stray one
    }
    return out;
  }

  private sequence(indent: number, depth: number): unknown[] {
    const t = this.text;
    const out: unknown[] = [];
    while (!this.end && this.indent === indent && this.isEntry()) {
      let v = this.start + 1;
      while (v < this.stop && t.charCodeAt(v) === 32) v++;
      if (v === this.stop || t.charCodeAt(v) === 35 /* # */) throw NOT_PLAIN; // an entry below: not taken
      const colon = t.indexOf(':', v);
      const isPair =
        colon >= 0 && colon < this.stop && (colon + 1 === this.stop || t.charCodeAt(colon + 1) === 32);
      if (isPair && !/^["'[{]/.test(t[v] ?? '')) {
        // A compact mapping (`- name: http`): its keys line up with the first one.
        this.indent = v - (this.start - indent);
        this.start = v;
        if (this.isEntry()) throw NOT_PLAIN;
        out.push(this.mapping(this.indent, depth + 1));
        if (!this.end && this.indent > indent) throw NOT_PLAIN;
      } else {
        out.push(this.inline(v, this.stop));
        this.next();
        if (!this.end && this.indent > indent) throw NOT_PLAIN;
      }
    }
    return out;
  }

  /** A value on its key's (or entry's) line, from `from` to the line's end. */
  private inline(from: number, to: number): unknown {
    const t = this.text;
    const c = t.charCodeAt(from);
    if (c === 34 /* " */ || c === 39 /* ' */) return kept(this.quoted(from, to, c));
    if (c === 91 /* [ */) return this.flowList(from, to);
    if (c === 123 /* { */) {
      if (t.slice(from, to) === '{}') return {};
      throw NOT_PLAIN;
    }
    // A plain scalar: up to a comment (` #`); a `#` anywhere else, or a `: `, is not taken.
    let end = to;
    for (let i = from; i < to; i++) {
      if (t.charCodeAt(i) !== 35 /* # */) continue;
      if (t.charCodeAt(i - 1) !== 32) throw NOT_PLAIN;
      end = i;
      while (t.charCodeAt(end - 1) === 32) end--;
      break;
    }
    const slot = seenScalars.slot(t, from, end);
    if (seenScalars.has(slot, t, from, end)) {
      this.repeated = true;
      return seenScalars.value(slot);
    }
    const s = t.slice(from, end);
    if (INDICATOR_START.test(s) && !/^-[^ ]/.test(s)) throw NOT_PLAIN;
    if (s.includes(': ') || s.endsWith(':') || /[[\]{}]/.test(s)) throw NOT_PLAIN;
    const v = resolvePlainScalar(s);
    const value = v === s ? kept(s) : v;
    seenScalars.set(slot, typeof value === 'string' ? value : flat(s), value);
    return value;
  }

  /** The key [from, to) of a mapping entry, if it is a plain name. */
  private key(from: number, to: number): string {
    const t = this.text;
    if (to === from) throw NOT_PLAIN;
    const slot = seenKeys.slot(t, from, to);
    if (seenKeys.has(slot, t, from, to)) return seenKeys.value(slot) as string;
    const key = t.slice(from, to);
    if (!isPlainKey(key)) throw NOT_PLAIN;
    const own = flat(key);
    seenKeys.set(slot, own, own);
    return own;
  }

  private quoted(from: number, to: number, q: number): string {
    const t = this.text;
    let out = '';
    let i = from + 1;
    for (;;) {
      const close = t.indexOf(q === 34 ? '"' : "'", i);
      if (close < 0 || close >= to) throw NOT_PLAIN; // continued on the next line
      out += t.slice(i, close);
      if (q === 39 && t.charCodeAt(close + 1) === 39) {
        out += "'";
        i = close + 2;
        continue;
      }
      i = close + 1;
      break;
    }
    if (q === 34 && out.includes('\\')) throw NOT_PLAIN;
    // Only a comment may follow, after a space.
    if (i < to && !(t.charCodeAt(i) === 32 && /^ +(?:#.*)?$/.test(t.slice(i, to)))) throw NOT_PLAIN;
    return out;
  }

  private flowList(from: number, to: number): unknown[] {
    const t = this.text;
    if (t.charCodeAt(to - 1) !== 93 /* ] */) throw NOT_PLAIN;
    let a = from + 1;
    const b = to - 1;
    while (a < b && t.charCodeAt(a) === 32) a++;
    if (a === b) return [];
    // The items between commas, each without the spaces around it.
    const out: unknown[] = [];
    for (let i = a; i <= b; ) {
      let comma = t.indexOf(',', i);
      if (comma < 0 || comma > b) comma = b;
      let x = i;
      let y = comma;
      while (x < y && t.charCodeAt(x) === 32) x++;
      while (y > x && t.charCodeAt(y - 1) === 32) y--;
      out.push(this.flowItem(x, y));
      i = comma + 1;
    }
    return out;
  }

  private flowItem(from: number, to: number): unknown {
    if (to === from) throw NOT_PLAIN;
    const t = this.text;
    const slot = seenFlowItems.slot(t, from, to);
    if (seenFlowItems.has(slot, t, from, to)) return seenFlowItems.value(slot);
    const s = t.slice(from, to);
    if (!FLOW_ITEM.test(s)) throw NOT_PLAIN;
    const v = resolvePlainScalar(s);
    const value = v === s ? kept(s) : v;
    seenFlowItems.set(slot, typeof value === 'string' ? value : flat(s), value);
    return value;
  }
}
