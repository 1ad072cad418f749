// textDigest answers as createHash does (it takes node:crypto's one-shot `hash` where Node has it),
// and a node's derived VTEP MAC, built from it, is Felix's: 0x66 and the first 5 bytes of SHA-1 of
// the node's name, without a remote node's `<cluster>/` prefix.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { derivedVtepMac } from '../../agent/calc/overlay-resolver.ts';
import { bytesDigest, textDigest } from '../../lib/hash.ts';

test('textDigest is createHash of the UTF-8 text, for each algorithm and encoding', () => {
  fc.assert(
    fc.property(
      fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.string({ unit: 'binary' })),
      fc.constantFrom('sha1', 'sha224', 'sha256' as const),
      fc.constantFrom('hex', 'base64url' as const),
      (text, algorithm, encoding) => {
        assert.equal(
          textDigest(algorithm, text, encoding),
          createHash(algorithm).update(text, 'utf8').digest(encoding),
        );
      },
    ),
    { numRuns: 1000 },
  );
});

test("a derived VTEP MAC is 0x66 and the first 5 bytes of SHA-1 of the node's own name", () => {
  fc.assert(
    fc.property(fc.string({ minLength: 1 }), fc.constantFrom('', 'b/', 'cluster-c/'), (name, cluster) => {
      fc.pre(!name.includes('/'));
      const sha = createHash('sha1').update(name).digest();
      const want = [0x66, ...sha.subarray(0, 5)].map((b) => b.toString(16).padStart(2, '0')).join(':');
      assert.equal(derivedVtepMac(`${cluster}${name}`), want);
    }),
  );
});

test('bytesDigest is createHash of the bytes', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 5000 }),
      fc.constantFrom('sha1', 'sha224', 'sha256' as const),
      (bytes, algorithm) => {
        assert.deepEqual(bytesDigest(algorithm, bytes), createHash(algorithm).update(bytes).digest());
      },
    ),
  );
});
