// The int32-keyed table behind the ipset member index's address → holders lookup, against a Map
// under random sets and deletes (removals shift entries back: runs that wrap around the end and
// keys whose home slots collide are where that can go wrong).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Int32Table } from '../../agent/calc/index-structures.ts';

describe('Int32Table', () => {
  it('agrees with a Map under random sets and deletes, through growth (property)', () => {
    // Few distinct keys (so deletes hit), from anywhere in the int32 range, addresses among them.
    const keyArb = fc.oneof(
      fc.integer({ min: -40, max: 40 }),
      fc.constantFrom(-(2 ** 31), 2 ** 31 - 1, 0x0a400001 | 0, 0xc0a80001 | 0),
      fc.integer({ min: 0, max: 7 }).map((i) => (0x0a400000 + i * 64) | 0),
    );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), keyArb, fc.nat(2 ** 30 - 1)), { maxLength: 400 }),
        (ops) => {
          const t = new Int32Table();
          const m = new Map<number, number>();
          for (const [set, key, value] of ops) {
            if (set) {
              t.set(key, value);
              m.set(key, value);
            } else assert.equal(t.delete(key), m.delete(key));
            assert.equal(t.size, m.size);
          }
          for (const [, key] of ops) assert.equal(t.get(key), m.get(key) ?? -1);
          for (const [key, value] of m) assert.equal(t.get(key), value);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('agrees with a Map while it stays small: runs wrap around its end (property)', () => {
    // At most 7 keys live: the table keeps its 16 slots, so runs of colliding keys often wrap.
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), { minLength: 7, maxLength: 7 }),
        fc.array(fc.tuple(fc.boolean(), fc.nat(6)), { maxLength: 200 }),
        (keys, ops) => {
          const t = new Int32Table();
          const m = new Map<number, number>();
          ops.forEach(([set, k], value) => {
            const key = keys[k]!;
            if (set) {
              t.set(key, value);
              m.set(key, value);
            } else assert.equal(t.delete(key), m.delete(key));
            for (const x of keys) assert.equal(t.get(x), m.get(x) ?? -1);
          });
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('holds a hundred thousand addresses, and finds each after half are removed', () => {
    const t = new Int32Table();
    const base = 0x0a400000;
    for (let i = 0; i < 100_000; i++) t.set((base + i * 3) | 0, i);
    for (let i = 0; i < 100_000; i += 2) assert.ok(t.delete((base + i * 3) | 0));
    assert.equal(t.size, 50_000);
    for (let i = 0; i < 100_000; i++) assert.equal(t.get((base + i * 3) | 0), i % 2 ? i : -1);
  });
});
