// The js-yaml fast path (model/yaml-fast.ts) must decode exactly as the `yaml` package's careful
// path, or step aside: random documents with tricky plain scalars and keys, compared with `yaml`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseAllDocuments } from 'yaml';
import { loadPlainDocuments } from '../../model/yaml-fast.ts';
import { TRICKY } from '../helpers/yaml-tricky.ts';

function careful(text: string): unknown[] {
  const docs = parseAllDocuments(text);
  return (Array.isArray(docs) ? docs : []).map((d) => (d.errors.length > 0 ? 'ERR' : d.toJS()));
}

/**
 * The documents with content, by index (document numbers name them in errors): js-yaml reads a
 * comment-only text as one null document, `yaml` as none, which makes no outcome either way.
 */
const content = (docs: unknown[]) => docs.flatMap((d, i) => (d === null || d === undefined ? [] : [[i, d]]));

const scalar = fc.oneof(
  fc.constantFrom(...TRICKY),
  fc.string({ maxLength: 6 }),
  fc.integer().map(String),
  fc.double().map(String),
);
const key = fc.oneof(fc.constantFrom('a', 'b', 'true', '1', '~', 'null', '__proto__', '<<', 'x y'), scalar);

/** A YAML text written by hand (plain scalars, block and flow style), not by a dumper. */
const text: fc.Arbitrary<string> = fc
  .array(
    fc.oneof(
      fc.tuple(key, scalar).map(([k, v]) => `${k}: ${v}\n`),
      fc
        .tuple(key, fc.array(scalar, { maxLength: 3 }))
        .map(([k, vs]) => `${k}:\n${vs.map((v) => `  - ${v}\n`).join('')}`),
      fc.tuple(key, key, scalar).map(([k, k2, v]) => `${k}:\n  ${k2}: ${v}\n`),
      fc.tuple(key, scalar, scalar).map(([k, v, w]) => `${k}: [${v}, ${w}]\n`),
      fc.constantFrom('---\n', '...\n', '# comment\n', '\n'),
    ),
    { maxLength: 8 },
  )
  .map((lines) => lines.join(''));

test('when the fast path answers a valid text, it decodes exactly as the yaml package', () => {
  let answered = 0;
  fc.assert(
    fc.property(text, (t) => {
      const fast = loadPlainDocuments(t);
      // js-yaml reads a few malformed texts the careful path refuses (model/yaml-fast.ts says which).
      if (fast === undefined || careful(t).includes('ERR')) return;
      answered += 1;
      assert.deepEqual(content(fast), content(careful(t)), t);
    }),
    { numRuns: Number(process.env.FC_RUNS ?? 2000) },
  );
  assert.ok(answered > 400, `the fast path answered only ${answered} of 2000`);
});

test('document indexes agree when a text holds several documents', () => {
  for (const t of [
    'a: 1\n---\nb: 2\n',
    '# c\n---\na: 1\n---\n',
    'a: 1\n...\n---\nb: 2\n',
    '---\n---\na: 1\n',
  ]) {
    assert.deepEqual(loadPlainDocuments(t), careful(t), t);
  }
});

test('the fast path steps aside for what the careful path must judge', () => {
  const aside = {
    'duplicate keys': 'a: 1\na: 2\n',
    'an alias of a collection': 'a: &x [1]\nb: *x\n',
    'an alias bomb of strings': `a: &a ${'x'.repeat(2000)}\nb: [${Array(50).fill('*a').join(', ')}]\n`,
    'deep nesting': `${'['.repeat(100)}${']'.repeat(100)}\n`,
    'a YAML 1.1 directive': '%YAML 1.1\n---\na: yes\n',
    'an unknown tag': 'a: !foo x\n',
    'a syntax error': 'a: [1, 2\n',
    'a null key': '~: x\n',
    'a timestamp tag': 'a: !!timestamp 2024-01-01\n',
  };
  for (const [what, t] of Object.entries(aside)) assert.equal(loadPlainDocuments(t), undefined, what);
});

test('a __proto__ key stays an own property (for the validators to refuse)', () => {
  const [doc] = loadPlainDocuments('labels:\n  __proto__: x\n') as [{ labels: object }];
  assert.deepEqual(Object.keys(doc.labels), ['__proto__']);
  assert.equal(Object.getPrototypeOf(doc.labels), Object.prototype);
});
