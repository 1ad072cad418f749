// The one error the selector module throws.

/** Longest source text quoted in an error message; `input` always holds all of it. */
const MAX_QUOTED = 200;

export class SelectorParseError extends Error {
  /** 0-based offset (UTF-16 code units) into `input` where parsing stopped. */
  readonly position: number;
  /** What the parser wanted there, e.g. `a quoted string`. */
  readonly expected: string;
  /** The selector text as given. */
  readonly input: string;

  constructor(input: string, position: number, expected: string) {
    const shown = input.length > MAX_QUOTED ? `${input.slice(0, MAX_QUOTED)}…` : input;
    super(`selector ${JSON.stringify(shown)} at position ${position}: expected ${expected}`);
    this.name = 'SelectorParseError';
    this.input = input;
    this.position = position;
    this.expected = expected;
  }
}
