// file-parse.ts readDocuments: a file read a block at a time and cut into documents as it comes
// must give exactly the pieces splitDocuments gives for the whole text (the same text, the same
// line numbers), whatever the block sizes and wherever markers fall (at a block's end, split
// across blocks, `----` and `---x` that are no markers, `...` ends, CRLF, multi-byte characters).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  type RawDocument,
  readDocuments,
  splitDocuments,
  Yielder,
} from '../../syncer/datastore/file-parse.ts';
import { endpointDoc } from '../helpers/big-cluster.ts';

/**
 * A reader over `bytes` whose reads stop at the ends of blocks of the sizes given, in turn (and
 * at the end of the buffer it is given): a short read, as a pipe or a network file gives.
 */
function reader(bytes: Buffer, sizes: number[]) {
  let pos = 0;
  let blockEnd = 0;
  let i = 0;
  return async (into: Buffer): Promise<number> => {
    if (pos >= blockEnd) blockEnd = pos + (sizes[i++ % sizes.length] as number);
    const n = Math.min(into.length, blockEnd - pos, bytes.length - pos);
    bytes.copy(into, 0, pos, pos + n);
    pos += n;
    return n;
  };
}

async function streamed(bytes: Buffer, sizes: number[]): Promise<RawDocument[]> {
  const out: RawDocument[] = [];
  for await (const chunk of readDocuments(reader(bytes, sizes))) out.push(...chunk);
  return out;
}

const separator = fc.constantFrom(
  '---\n',
  '--- # c\n',
  '---\r\n',
  '...\n---\n',
  '----\n',
  '---x: 1\n',
  '\n',
  '# é ü\n',
);
const doc = fc.oneof(
  fc.nat(1_000_000).map((i) => endpointDoc(i)),
  fc.constantFrom('a: é\n', 'b: [1, 2]\n', ''),
);

test('documents read block by block are the pieces of the whole text', async () => {
  await fc.assert(
    fc.asyncProperty(
      // 3,000 to 9,000 documents: 1 to 3 MB, cut into blocks of 1 MB and more.
      fc.array(fc.tuple(separator, doc), { minLength: 3_000, maxLength: 9_000 }),
      fc.array(fc.integer({ min: 1, max: 3 << 20 }), { minLength: 1, maxLength: 5 }),
      async (parts, sizes) => {
        const text = parts.map(([sep, d]) => sep + d).join('');
        const whole = await splitDocuments(text, new Yielder(Number.POSITIVE_INFINITY));
        assert.deepStrictEqual(await streamed(Buffer.from(text), sizes), whole);
      },
    ),
    { numRuns: 15 },
  );
});

test('a text without markers, bigger than a block, is one document; an empty one none', async () => {
  const text = `a: ${'x'.repeat(3 << 20)}\n`;
  assert.deepStrictEqual(await streamed(Buffer.from(text), [4096]), [{ text, lineOffset: 0 }]);
  assert.deepStrictEqual(await streamed(Buffer.alloc(0), [4096]), []);
});

test('a block that ends inside a line starting with --- waits for the rest of the line', async () => {
  // The line below is the first after the first megabyte that starts with `---`.
  const head = `${Array.from({ length: 1_500 }, (_, i) => endpointDoc(i)).join('---\n')}---\nbig: ${'x'.repeat(600_000)}\n`;
  for (const line of ['---x: 1', '----', '--- # a marker', '---']) {
    const text = `${head}${line}\nb: 1\n---\nc: 2\n`;
    const whole = await splitDocuments(text, new Yielder(Number.POSITIVE_INFINITY));
    // Blocks ending just after `---`, and after each character around it.
    for (let shift = -2; shift <= 2; shift++) {
      const first = Buffer.byteLength(head) + 3 + shift;
      assert.deepStrictEqual(await streamed(Buffer.from(text), [first, 1 << 20]), whole, `${line} ${shift}`);
    }
  }
});
