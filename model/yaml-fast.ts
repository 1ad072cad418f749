// A fast path for plain YAML: js-yaml decodes an ordinary manifest several times faster than the
// `yaml` package (and makes far less garbage), which is what lets a 100,000-endpoint file load
// without stalling the syncer. It must decode exactly as validate.ts's careful path does, so it
// only answers when it is sure:
// - its schema is the `yaml` package's YAML 1.2 core schema, redone (no timestamps, no merge
//   keys, no `0b` integers, no `1_000`);
// - anything unusual is left to the careful path, which gives the one clear error: a YAML error
//   of any kind (duplicate keys, deep nesting, unknown tags), a `%` directive (may switch the YAML
//   version), an alias of a collection (an alias bomb shares objects), scalars that add up to
//   much more text than was read (an alias bomb of strings), a key `null` (the careful path reads
//   `~:` as the key "", js-yaml as "null"), a collection as a key, an empty sequence entry.
// undefined means "use the careful path"; it never means "refused".
import jsyaml from 'js-yaml';

const intTag = 'tag:yaml.org,2002:int';
const floatTag = 'tag:yaml.org,2002:float';

const CORE_SCHEMA = jsyaml.FAILSAFE_SCHEMA.extend({
  implicit: [
    new jsyaml.Type('tag:yaml.org,2002:null', {
      kind: 'scalar',
      resolve: (s: string | null) => s === null || /^(?:~|[Nn]ull|NULL)?$/.test(s),
      construct: () => null,
    }),
    new jsyaml.Type('tag:yaml.org,2002:bool', {
      kind: 'scalar',
      resolve: (s: string | null) => s !== null && /^(?:[Tt]rue|TRUE|[Ff]alse|FALSE)$/.test(s),
      construct: (s: string) => s[0] === 't' || s[0] === 'T',
    }),
    new jsyaml.Type(intTag, {
      kind: 'scalar',
      resolve: (s: string | null) => s !== null && /^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$/.test(s),
      construct: (s: string) =>
        s.startsWith('0o')
          ? parseInt(s.slice(2), 8)
          : s.startsWith('0x')
            ? parseInt(s.slice(2), 16)
            : parseInt(s, 10),
    }),
    new jsyaml.Type(floatTag, {
      kind: 'scalar',
      resolve: (s: string | null) =>
        s !== null &&
        (/^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$/.test(s) ||
          /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$/.test(s)),
      construct: (s: string) => {
        if (/nan$/i.test(s)) return Number.NaN;
        if (/inf$/i.test(s)) return s[0] === '-' ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
        return parseFloat(s);
      },
    }),
  ],
});

const MAY_RESOLVE = '~nNtTfF+-.0123456789';
const IMPLICIT = (CORE_SCHEMA as unknown as { compiledImplicit: jsyaml.Type[] }).compiledImplicit;

/** A plain scalar as this schema reads it (null, boolean, number, or the string itself). */
export function resolvePlainScalar(s: string): unknown {
  // Every implicit type above starts with one of `~nNtTfF+-.` or a digit (or is empty): a scalar
  // starting otherwise is a string, without trying four patterns on it.
  if (s !== '' && !MAY_RESOLVE.includes(s[0] as string)) return s;
  for (const type of IMPLICIT) {
    if (type.resolve(s)) return type.construct(s);
  }
  return s;
}

/**
 * Constructs the two libraries read differently, found by the property test: a collection as a
 * key (`[a, b]: x`, an explicit `? ` key; the careful path writes it as YAML "[ a, b ]", js-yaml
 * joins it "a,b"), a `-` ending a line (js-yaml merges empty entries of nested sequences), and tags
 * (`!` alone: "" against null; a `!=` in a plain selector only takes the careful path), and a
 * comment glued to a flow collection or a quoted scalar (`[a]#c`, refused by the careful path).
 * A false alarm (inside a quoted string, say) only costs speed. js-yaml still accepts a few other
 * malformed texts the careful path refuses (a quoted scalar continued below its key's indentation):
 * it reads them as their author meant; what a truncated file looks like (an open quote or bracket,
 * a half line) it refuses.
 */
const UNUSUAL =
  /[\]}][ \t]*:(?:[ \t\r\n]|$)|(?:^|[\s[{,])\?(?:[ \t\r\n]|$)|(?:^|[ \t])-[ \t]*\r?$|(?:^|[\s[{,])!|["'\]}]#/m;

/** Nesting the fast path takes; deeper is the careful path's to judge (and refuse clearly). */
const MAX_DEPTH = 64;

/** The documents of a YAML text as plain values, or undefined: use the careful parser. */
export function loadPlainDocuments(text: string): unknown[] | undefined {
  if (text.startsWith('%') || text.includes('\n%') || UNUSUAL.test(text)) return undefined;
  let docs: unknown[];
  try {
    docs = jsyaml.loadAll(text, null, { schema: CORE_SCHEMA, maxDepth: MAX_DEPTH } as jsyaml.LoadOptions);
  } catch {
    return undefined;
  }
  const seen = new Set<object>();
  // Scalars may add up to a little more than the text (escapes are shorter than what they make,
  // keys are counted once per mapping); far more means aliases multiplied them.
  let budget = text.length + 1024;
  const plain = (v: unknown): boolean => {
    if (typeof v === 'string') {
      budget -= v.length;
      return budget >= 0;
    }
    if (v === null || typeof v !== 'object') return true;
    if (seen.has(v)) return false; // an alias of a collection
    seen.add(v);
    if (Array.isArray(v)) return v.every(plain);
    for (const k of Object.keys(v)) {
      budget -= k.length;
      if (k === 'null' || budget < 0) return false;
      if (!plain((v as Record<string, unknown>)[k])) return false;
    }
    return true;
  };
  return docs.every(plain) ? docs : undefined;
}
