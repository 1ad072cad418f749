// Echoing input back to people safely: in logs, /status and CLI output, a value from a file or a
// client is clipped (a 3 MB name must not become a 3 MB line) and control characters are escaped
// (raw ESC bytes must not reach a terminal). Pure, no dependencies: model, syncer and cli use it.

/** Longest echo of one input value, in characters, unless a caller asks otherwise. */
export const ECHO_MAX = 120;

// C0 and C1 controls, DEL, and the characters that break lines or reorder text (bidi overrides).
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** Control and bidi characters as visible escapes: `\n`, `\u001b`. Backslashes are left as they are. */
export function escapeControl(s: string): string {
  return s.replace(UNSAFE, (c) => NAMED[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * One input value for a message: at most `max` characters (then "…(+N chars)"), control
 * characters escaped. Clipped before escaping, so a huge value costs nothing more than its head.
 */
export function clip(s: string, max = ECHO_MAX): string {
  if (s.length <= max) return escapeControl(s);
  return `${escapeControl(s.slice(0, max))}…(+${s.length - max} chars)`;
}

/** `"value"`, clipped and escaped: how a refused value is quoted in an error message. */
export function quote(s: string, max = ECHO_MAX): string {
  return `"${clip(s, max)}"`;
}

/**
 * Every string in a JSON-able value clipped and escaped (object keys too), depth-limited: for
 * /status bodies and log fields built from input.
 */
export function clipDeep(v: unknown, max = 1000, depth = 8): unknown {
  if (typeof v === 'string') return clip(v, max);
  if (v === null || typeof v !== 'object') return v;
  if (depth <= 0) return '…';
  if (Array.isArray(v)) {
    const items = v.slice(0, 1000).map((x) => clipDeep(x, max, depth - 1));
    return v.length > 1000 ? [...items, `…(+${v.length - 1000} items)`] : items;
  }
  if (v instanceof Error) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[clip(k, 200)] = clipDeep(x, max, depth - 1);
  return out;
}

/** JSON for a terminal: JSON.stringify leaves DEL, C1 controls and U+2028/9 raw; escape them too. */
export function terminalJson(v: unknown, indent?: number): string {
  return JSON.stringify(v, null, indent).replace(
    /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
