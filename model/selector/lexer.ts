// Tokens of the selector language, produced one at a time on the parser's demand.
//
// Words are runs of the characters Calico allows in an identifier ([A-Za-z0-9_./-]); whether a
// word is a label key, a function name (has, all, global) or an operator (in, not, contains,
// starts, ends, with) depends on where it stands, so the parser decides. A character that starts
// no token becomes an `Invalid` token rather than an error here: the parser then reports what it
// expected at that position, which says more than "unexpected character".
import { SelectorParseError } from './errors.ts';

export const Tok = {
  EOF: 0,
  Word: 1,
  Str: 2,
  LParen: 3,
  RParen: 4,
  LBrace: 5,
  RBrace: 6,
  Comma: 7,
  Eq: 8,
  Ne: 9,
  Not: 10,
  And: 11,
  Or: 12,
  Invalid: 13,
} as const;
export type Tok = (typeof Tok)[keyof typeof Tok];

const SINGLE: ReadonlyMap<string, Tok> = new Map<string, Tok>([
  ['(', Tok.LParen],
  [')', Tok.RParen],
  ['{', Tok.LBrace],
  ['}', Tok.RBrace],
  [',', Tok.Comma],
]);

/**
 * Calico's tokenizer skips only spaces and tabs: a line break (easy to get from a YAML `|` block,
 * which also keeps a trailing newline) makes Calico refuse the selector, so fedmesh refuses it too,
 * saying why, rather than accept a policy that calicoctl would not.
 */
function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

export const LINE_BREAK_RULE =
  "no line break (Calico allows only spaces and tabs between tokens: write the selector on one line, or fold it in YAML with '>-')";

function isWordChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) || // a-z
    (c >= 0x41 && c <= 0x5a) || // A-Z
    (c >= 0x30 && c <= 0x39) || // 0-9
    c === 0x5f || // _
    c === 0x2e || // .
    c === 0x2f || // /
    c === 0x2d // -
  );
}

export class Lexer {
  /** Kind of the current token. */
  kind: Tok = Tok.EOF;
  /** Offset of the current token's first character (the input length at EOF). */
  start = 0;
  /** A word's text or a string's contents (without quotes); '' for other tokens. */
  value = '';
  private pos = 0;

  constructor(readonly src: string) {
    this.next();
  }

  /** Moves to the next token. Throws SelectorParseError only for an unterminated string. */
  next(): void {
    const src = this.src;
    let pos = this.pos;
    while (pos < src.length && isSpace(src.charCodeAt(pos))) pos++;
    this.start = pos;
    this.value = '';
    if (pos >= src.length) {
      this.kind = Tok.EOF;
      this.pos = pos;
      return;
    }
    const ch = src[pos]!;
    const single = SINGLE.get(ch);
    if (single !== undefined) {
      this.set(single, pos + 1);
    } else if (ch === '"' || ch === "'") {
      this.string(ch, pos);
    } else if (isWordChar(ch.charCodeAt(0))) {
      let end = pos + 1;
      while (end < src.length && isWordChar(src.charCodeAt(end))) end++;
      this.value = src.slice(pos, end);
      this.set(Tok.Word, end);
    } else {
      this.operator(ch, src[pos + 1], pos);
    }
  }

  private set(kind: Tok, end: number): void {
    this.kind = kind;
    this.pos = end;
  }

  /** A quoted string runs to the next identical quote; there are no escapes, as in Calico. */
  private string(q: string, pos: number): void {
    const end = this.src.indexOf(q, pos + 1);
    if (end < 0) throw new SelectorParseError(this.src, pos, `a closing ${q} for the string starting here`);
    this.value = this.src.slice(pos + 1, end);
    this.set(Tok.Str, end + 1);
  }

  private operator(ch: string, after: string | undefined, pos: number): void {
    if (ch === '!') {
      this.set(after === '=' ? Tok.Ne : Tok.Not, after === '=' ? pos + 2 : pos + 1);
    } else if (ch === '=' && after === '=') {
      this.set(Tok.Eq, pos + 2);
    } else if (ch === '&' && after === '&') {
      this.set(Tok.And, pos + 2);
    } else if (ch === '|' && after === '|') {
      this.set(Tok.Or, pos + 2);
    } else {
      this.value = ch;
      this.set(Tok.Invalid, pos + 1);
    }
  }
}
