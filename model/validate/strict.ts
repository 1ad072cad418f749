// Strict decoding: a field a kind's schema does not know is refused, with its path, the way
// calicoctl and the API server (fieldValidation=Strict) refuse it. Dropping it would be worse than
// an error: `source: {selectr: …}` silently becomes "from anywhere".
//
// The rule is read from the zod schemas themselves, so it holds for every kind defined with
// defineKind (and any kind added later) without a list to keep in step: every `z.object` is
// closed. A place that is deliberately open says so in its schema: `z.looseObject`, `z.unknown()`,
// a record, or a catchall of its own (which then reports unknown keys itself).
import type { z } from 'zod';
import { clip } from '../../lib/text.ts';
import { isMapping } from './common.ts';

export interface UnknownField {
  path: PropertyKey[];
  message: string;
}

// The wrappers zod puts around a schema without changing the shape of what it reads.
const WRAPPERS = new Set(['optional', 'nullable', 'default', 'prefault', 'readonly', 'catch', 'nonoptional']);

interface Def {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  element?: z.ZodType;
  valueType?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  catchall?: z.ZodType;
}

function defOf(schema: z.ZodType): Def {
  return (schema as unknown as { _zod: { def: Def } })._zod.def;
}

/** Unknown keys in `value`, read against `schema`; appended to `out`. */
export function findUnknownFields(
  schema: z.ZodType,
  value: unknown,
  path: PropertyKey[] = [],
  out: UnknownField[] = [],
): UnknownField[] {
  let def = defOf(schema);
  while (WRAPPERS.has(def.type) && def.innerType) def = defOf(def.innerType);
  if (def.type === 'pipe' && def.in) return findUnknownFields(def.in, value, path, out);
  if (def.type === 'array' && def.element && Array.isArray(value)) {
    const element = def.element;
    value.forEach((item, i) => {
      findUnknownFields(element, item, [...path, i], out);
    });
  } else if (def.type === 'record' && def.valueType && isMapping(value)) {
    for (const k of Object.keys(value)) findUnknownFields(def.valueType, value[k], [...path, k], out);
  } else if (def.type === 'object' && def.shape && isMapping(value)) {
    const shape = def.shape;
    for (const k of Object.keys(value)) {
      if (Object.hasOwn(shape, k)) findUnknownFields(shape[k] as z.ZodType, value[k], [...path, k], out);
      else if (!def.catchall)
        out.push({ path: [...path, k], message: unknownFieldMessage(k, Object.keys(shape)) });
    }
  }
  return out;
}

function unknownFieldMessage(key: string, known: string[]): string {
  const near = closest(key, known);
  return near
    ? `unknown field (did you mean "${near}"?)`
    : `unknown field (known: ${clip(known.join(', '), 300)})`;
}

/** The known name a typo most likely meant: within 2 edits, or the same ignoring case. */
function closest(key: string, known: string[]): string | undefined {
  if (key.length > 64) return undefined;
  let best: string | undefined;
  let bestDistance = 3;
  for (const k of known) {
    const d = k.toLowerCase() === key.toLowerCase() ? 0 : editDistance(key, k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(
        (prev[j] ?? 0) + 1,
        (cur[j - 1] ?? 0) + 1,
        (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}
