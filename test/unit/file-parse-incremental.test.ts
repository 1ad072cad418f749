// The incremental parse of a datastore file (syncer/datastore/file-parse.ts: common prefix and
// suffix, only the changed region cut and parsed again) and the file set's delta update must give
// exactly what a parse from scratch gives: random files, random edits, compared each time.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { FileSet } from '../../syncer/datastore/file.ts';
import { type FileParseState, parseFileIncremental, Yielder } from '../../syncer/datastore/file-parse.ts';
import { endpointDoc } from '../helpers/big-cluster.ts';

process.env.FEDMESH_LOG_LEVEL ??= 'warn';

const origin = { source: '/d/x.yaml', baseDir: '/d' };

/** Pieces a file is made of: endpoints, blank pieces, markers, broken and duplicate documents. */
const piece = fc.oneof(
  { weight: 6, arbitrary: fc.nat(40).map((i) => endpointDoc(i)) },
  { weight: 1, arbitrary: fc.nat(40).map((i) => endpointDoc(i, 'v2')) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '# just a comment\n',
      '...\n',
      'apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {a: b}}\n',
      'apiVersion: v1\nkind: Namespace\nmetadata: {name: shop\n', // a YAML syntax error
      'apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: x}\nspec: {bogus: 1}\n',
      'kind: [\n',
    ),
  },
);

const fileText = fc.array(piece, { maxLength: 25 }).map((ps) => ps.join('---\n'));

/** An edit: replace [at, at+del) (scaled to the text) with one of a few insertions. */
const edit = fc.record({
  at: fc.double({ min: 0, max: 1, noNaN: true }),
  del: fc.nat(300),
  ins: fc.oneof(
    fc.constant(''),
    fc.constantFrom('---\n', '\n---\n', 'x', '  version: v9\n', '...\n', '# c\n', ':', '- ', '---'),
    fc.nat(40).map((i) => `---\n${endpointDoc(i, 'v3')}`),
  ),
});

function apply(text: string, e: { at: number; del: number; ins: string }): string {
  const at = Math.floor(e.at * text.length);
  return text.slice(0, at) + e.ins + text.slice(Math.min(text.length, at + e.del));
}

test('random edits: the incremental parse equals a parse from scratch, the delta update the full one', async () => {
  let deltas = 0;
  await fc.assert(
    fc.asyncProperty(fileText, fc.array(edit, { minLength: 1, maxLength: 6 }), async (start, edits) => {
      const y = new Yielder();
      // The same history twice: through the delta update, and through the full one (a file set
      // keeps last good versions of refused documents, so both must see every version).
      const incremental = new FileSet('/d');
      const scratch = new FileSet('/d');
      let state: FileParseState | undefined;
      let text = start;
      for (const e of [undefined, ...edits]) {
        if (e) text = apply(text, e);
        const bytes = Buffer.from(text);
        const inc = await parseFileIncremental(bytes, origin, state, y);
        const full = await parseFileIncremental(Buffer.from(text), origin, undefined, y);
        assert.deepEqual(inc.outcomes, full.outcomes, text);
        assert.equal(inc.documents, full.documents);
        state = inc.state;
        if (inc.delta) deltas += 1;

        await incremental.update('x.yaml', inc, '', false, y);
        await scratch.update('x.yaml', full, '', false, y);
        assert.deepEqual(
          new Map([...(await incremental.allEffective(y))].sort()),
          new Map([...(await scratch.allEffective(y))].sort()),
        );
        assert.deepEqual(
          incremental
            .refusals()
            .map((r) => r.message)
            .sort(),
          scratch
            .refusals()
            .map((r) => r.message)
            .sort(),
        );
      }
    }),
    { numRuns: Number(process.env.FC_RUNS ?? 150) },
  );
  assert.ok(deltas > 50, `only ${deltas} edits took the delta path`);
});

test('an edit of one document in a big file parses that document only', async () => {
  const y = new Yielder();
  const docs = Array.from({ length: 2000 }, (_, i) => endpointDoc(i));
  const first = await parseFileIncremental(Buffer.from(docs.join('---\n')), origin, undefined, y);
  docs[1000] = endpointDoc(1000, 'v2');
  const second = await parseFileIncremental(Buffer.from(docs.join('---\n')), origin, first.state, y);
  assert.equal(second.fresh.size, 1, 'one document parsed');
  // The region looked at: the edited document and one neighbour on each side (not parsed again).
  assert.equal(second.delta?.removed.length, 3);
  assert.equal(second.delta?.added.length, 3);
  const [added] = second.fresh;
  assert.ok(added && 'resource' in added.result);
  assert.equal(added.document, 1000);
  assert.equal(added.result.resource.labels?.version, 'v2');
});
