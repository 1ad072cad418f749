// The content identity of a resource, shared by the datastores that compare what they read with
// what they emitted (an edit elsewhere in a file, a relist, is no change).
import type { Resource } from '../../model/resources.ts';

/** Content identity of a resource, key order and origin aside: an edit elsewhere in a file is no change. */
export function contentKey(r: Resource): string {
  const { origin: _origin, ...rest } = r;
  return JSON.stringify(rest, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}
