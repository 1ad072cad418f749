// Recursive-descent parser for Calico's selector language.
//
//   selector   := <empty> | or
//   or         := and ('||' and)*
//   and        := term ('&&' term)*
//   term       := '!'* ( '(' or ')' | 'all' '(' ')' | 'global' '(' ')' | 'has' '(' key ')'
//                      | key op string | key ('in' | 'not' 'in') '{' [string (',' string)* [',']] '}' )
//   op         := '==' | '!=' | 'contains' | 'starts' 'with' | 'ends' 'with'
//
// As in Calico: a run of `!` collapses to one (or none), `startswith`, `endswith` and `notin` are
// accepted as single words, a set may end with a trailing comma, a word is a function name only
// when `(` follows it at once (so `has`, `all`, `in`... are usable as label keys), only spaces
// and tabs separate tokens, and a label key is any run of [A-Za-z0-9_./-] up to 512 characters.
import { ALL_NODE, boolDepth, type Node, negate, normaliseSet, type ValueOp } from './ast.ts';
import { SelectorParseError } from './errors.ts';
import { checkLabelKey } from './keys.ts';
import { Lexer, LINE_BREAK_RULE, Tok } from './lexer.ts';

export const MAX_SELECTOR_BYTES = 64 * 1024;
export const MAX_NESTING = 256;

const E_TERM = "a label key, has(), all(), global(), '!' or '('";
const E_OPERATOR = 'an operator (==, !=, in, not in, contains, starts with, ends with)';
const E_STRING = 'a quoted string';
const E_END = "'&&', '||' or end of input";
const E_GROUP_END = "'&&', '||' or ')'";

// With the u flag a surrogate pair is one code point, so this finds only unpaired surrogates.
// They are refused because UTF-8 (which the id hashes) cannot tell them apart.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** Parses selector text into an AST. Throws SelectorParseError, and nothing else. */
export function parse(src: string): Node {
  checkSize(src);
  const lone = LONE_SURROGATE.exec(src);
  if (lone) throw new SelectorParseError(src, lone.index, 'well-formed Unicode text (no unpaired surrogate)');
  const p = new Parser(src);
  return p.root();
}

function checkSize(src: string): void {
  // UTF-16 length never exceeds the UTF-8 length, so the cheap test settles most inputs.
  if (src.length > MAX_SELECTOR_BYTES || Buffer.byteLength(src, 'utf8') > MAX_SELECTOR_BYTES) {
    throw new SelectorParseError(src, 0, `a selector of at most ${MAX_SELECTOR_BYTES} bytes`);
  }
}

class Parser {
  private readonly lx: Lexer;

  constructor(private readonly src: string) {
    this.lx = new Lexer(src);
  }

  root(): Node {
    if (this.kind() === Tok.EOF) return ALL_NODE;
    const n = this.or(0);
    this.expect(Tok.EOF, E_END);
    return n;
  }

  /** A method, not a property read, so TypeScript does not keep a narrowing across `next()`. */
  private kind(): Tok {
    return this.lx.kind;
  }

  private fail(expected: string, position = this.lx.start): never {
    if (this.lx.kind === Tok.Invalid && (this.lx.value === '\n' || this.lx.value === '\r')) {
      throw new SelectorParseError(this.src, this.lx.start, LINE_BREAK_RULE);
    }
    throw new SelectorParseError(this.src, position, expected);
  }

  /** Checks the current token's kind without consuming it. */
  private expect(kind: Tok, expected: string): void {
    if (this.kind() !== kind) this.fail(expected);
  }

  /** Consumes a token of the given kind. */
  private eat(kind: Tok, expected: string): void {
    this.expect(kind, expected);
    this.lx.next();
  }

  private or(depth: number): Node {
    const start = this.lx.start;
    const first = this.and(depth);
    if (this.kind() !== Tok.Or) return first;
    const operands = [first];
    while (this.kind() === Tok.Or) {
      this.lx.next();
      operands.push(this.and(depth));
    }
    return this.boolNode('or', operands, start);
  }

  private and(depth: number): Node {
    const start = this.lx.start;
    const first = this.term(depth);
    if (this.kind() !== Tok.And) return first;
    const operands = [first];
    while (this.kind() === Tok.And) {
      this.lx.next();
      operands.push(this.term(depth));
    }
    return this.boolNode('and', operands, start);
  }

  /**
   * The canonical text wraps every && / || group in parentheses, so `a || b && (c || d)` prints
   * two levels deeper than it is written. Refusing groups nested deeper than MAX_NESTING keeps
   * every canonical text parseable.
   */
  private boolNode(kind: 'and' | 'or', operands: Node[], start: number): Node {
    const n: Node = { kind, operands };
    const depth = boolDepth(n);
    if (depth > MAX_NESTING) this.fail(`at most ${MAX_NESTING} nested && / || groups`, start);
    return n;
  }

  private term(depth: number): Node {
    let negated = false;
    while (this.kind() === Tok.Not) {
      negated = !negated;
      this.lx.next();
    }
    const n = this.positiveTerm(depth);
    return negated ? negate(n) : n;
  }

  private positiveTerm(depth: number): Node {
    if (this.kind() === Tok.LParen) return this.group(depth);
    if (this.kind() !== Tok.Word) this.fail(E_TERM);
    const word = this.lx.value;
    const start = this.lx.start;
    this.lx.next();
    // As Calico's tokenizer: `has(`, `all(`, `global(` only when the `(` follows at once.
    const call = this.kind() === Tok.LParen && this.lx.start === start + word.length;
    if (call && (word === 'has' || word === 'all' || word === 'global')) {
      return this.call(word);
    }
    return this.comparison(this.key(word, start));
  }

  private group(depth: number): Node {
    if (depth >= MAX_NESTING) this.fail(`at most ${MAX_NESTING} nested parentheses`);
    this.lx.next();
    const n = this.or(depth + 1);
    this.eat(Tok.RParen, E_GROUP_END);
    return n;
  }

  /** has(key), all() or global(); the current token is the `(`. */
  private call(name: 'has' | 'all' | 'global'): Node {
    this.lx.next();
    let n: Node;
    if (name === 'has') {
      this.expect(Tok.Word, 'a label key');
      n = { kind: 'has', key: this.key(this.lx.value, this.lx.start) };
      this.lx.next();
    } else {
      n = name === 'all' ? ALL_NODE : { kind: 'global' };
    }
    this.eat(Tok.RParen, "')'");
    return n;
  }

  private key(word: string, start: number): string {
    const bad = checkLabelKey(word);
    if (bad) this.fail(bad[1], start + bad[0]);
    return word;
  }

  private comparison(key: string): Node {
    const op = this.operator();
    if (op === 'in' || op === 'notIn') return { kind: op, key, values: this.set() };
    this.expect(Tok.Str, E_STRING);
    const value = this.lx.value;
    this.lx.next();
    return { kind: op, key, value };
  }

  /** Reads an operator after a label key. */
  private operator(): ValueOp | 'in' | 'notIn' {
    const lx = this.lx;
    const kind = this.kind();
    const word = lx.value;
    if (kind !== Tok.Eq && kind !== Tok.Ne && kind !== Tok.Word) this.fail(E_OPERATOR);
    const simple = kind === Tok.Eq ? 'eq' : kind === Tok.Ne ? 'ne' : SINGLE_WORD_OPS.get(word);
    if (simple !== undefined) {
      lx.next();
      return simple;
    }
    const two = TWO_WORD_OPS.get(word);
    if (two === undefined) this.fail(E_OPERATOR);
    lx.next();
    if (this.kind() !== Tok.Word || lx.value !== two[0]) this.fail(`'${two[0]}'`);
    lx.next();
    return two[1];
  }

  /** `{ 'a', "b", }`; the current token is the one after `in`. */
  private set(): string[] {
    this.eat(Tok.LBrace, "'{'");
    const items: string[] = [];
    while (this.kind() === Tok.Str) {
      items.push(this.lx.value);
      this.lx.next();
      if (this.kind() === Tok.RBrace) break;
      this.eat(Tok.Comma, "',' or '}'");
    }
    this.eat(Tok.RBrace, "a quoted string or '}'");
    return normaliseSet(items);
  }
}

// Maps, not object literals: a label could be named `constructor`.
const SINGLE_WORD_OPS: ReadonlyMap<string, ValueOp | 'in' | 'notIn'> = new Map([
  ['contains', 'contains'],
  ['in', 'in'],
  ['notin', 'notIn'],
  ['startswith', 'startsWith'],
  ['endswith', 'endsWith'],
] as const);

/** First word → [second word, operator]. */
const TWO_WORD_OPS: ReadonlyMap<string, readonly [string, ValueOp | 'notIn']> = new Map([
  ['not', ['in', 'notIn']],
  ['starts', ['with', 'startsWith']],
  ['ends', ['with', 'endsWith']],
] as const);
