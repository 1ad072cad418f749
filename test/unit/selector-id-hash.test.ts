// Selector and matcher ids hash with node:crypto's one-shot `hash`: the same text as createHash
// gave (UTF-8, base64url without padding), on random text, non-ASCII included.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { textDigest } from '../../lib/hash.ts';
import { parseSelector } from '../../model/selector/index.ts';

test('the ids\' digest is createHash("sha224") of the UTF-8 text in base64url', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string(),
        fc.string({ unit: 'grapheme' }),
        fc.string({ unit: 'binary' }),
        fc.constantFrom('', 's:all()'),
      ),
      (text) => {
        assert.equal(
          textDigest('sha224', text, 'base64url'),
          createHash('sha224').update(text, 'utf8').digest('base64url'),
        );
      },
    ),
    { numRuns: 2000 },
  );
});

test("a selector's id is Felix's: 's:' and the hash of 's:' and its canonical text", () => {
  const sel = parseSelector("app == 'wébapp' && has(tier)");
  assert.equal(sel.id, `s:${createHash('sha224').update(`s:${sel.canonical}`, 'utf8').digest('base64url')}`);
});
