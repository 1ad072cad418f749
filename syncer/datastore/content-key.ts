// The content identity of a resource, shared by the datastores that compare what they read with
// what they emitted (an edit elsewhere in a file, a relist, is no change).
import type { Resource } from '../../model/resources.ts';

/** Content identity of a resource, key order and origin aside: an edit elsewhere in a file is no change. */
export function contentKey(r: Resource): string {
  const { origin: _origin, ...rest } = r;
  return stable(rest);
}

/** JSON with the keys of every object sorted (a replacer re-building each object is 3x slower). */
function stable(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(stable).join(',')}]`;
  const parts: string[] = [];
  for (const k of Object.keys(v).sort()) {
    const x = (v as Record<string, unknown>)[k];
    if (x !== undefined && typeof x !== 'function') parts.push(`${JSON.stringify(k)}:${stable(x)}`);
  }
  return `{${parts.join(',')}}`;
}
