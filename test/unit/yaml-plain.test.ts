// The hand-written reader of plain YAML (model/yaml-plain.ts) must decode exactly as the careful
// path (the `yaml` package) and js-yaml's fast path, or step aside: random texts in the shapes it
// reads (and the shapes it must not), random damage to them, compared with both.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseAllDocuments } from 'yaml';
import { loadPlainDocuments } from '../../model/yaml-fast.ts';
import { parsePlainDocument } from '../../model/yaml-plain.ts';
import { endpointDoc } from '../helpers/big-cluster.ts';
import { TRICKY } from '../helpers/yaml-tricky.ts';

/** The careful path's one document, or why it does not count. */
function careful(text: string): { value: unknown } | 'error' | 'not one document' {
  const docs = parseAllDocuments(text);
  if (!Array.isArray(docs) || docs.length !== 1) return 'not one document';
  const [doc] = docs;
  if (!doc || doc.errors.length > 0) return 'error';
  return { value: doc.toJS({ maxAliasCount: 100 }) };
}

/** When the reader answers, all three agree; true when it answered. */
function agrees(t: string): boolean {
  const plain = parsePlainDocument(t);
  if (plain === undefined) return false;
  const c = careful(t);
  assert.ok(
    typeof c === 'object',
    `answered ${JSON.stringify(plain)} where the careful path says ${c}: ${JSON.stringify(t)}`,
  );
  assert.deepStrictEqual(plain, c.value, JSON.stringify(t));
  const fast = loadPlainDocuments(t);
  if (fast !== undefined) assert.deepStrictEqual([plain], fast, JSON.stringify(t));
  return true;
}

const scalar = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...TRICKY) },
  {
    weight: 3,
    arbitrary: fc.constantFrom('web', 'v1', '10.0.0.1/32', 'kns.shop', 'a b', "app == 'x'", 'x#y', 'a #c'),
  },
  { weight: 1, arbitrary: fc.constantFrom("'it''s'", '"q: x"', "'#'", '"a\\"b"', "'a' #c", '"x"#c', '""') },
  {
    weight: 1,
    arbitrary: fc.string({
      maxLength: 6,
      unit: fc.constantFrom('a', '1', ' ', ':', '-', '#', "'", '"', ',', '.', '[', '{'),
    }),
  },
  { weight: 1, arbitrary: fc.integer().map(String) },
  { weight: 1, arbitrary: fc.double().map(String) },
);
const key = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom('a', 'b', 'app', 'spec', 'projectcalico.org/namespace', 'x-y', 'x_1'),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      'true',
      'True',
      '1',
      '~',
      'null',
      'Null',
      '__proto__',
      '<<',
      'x y',
      '"q"',
      '-a',
      '.5',
    ),
  },
);
const indent = fc.oneof(
  { weight: 4, arbitrary: fc.constant('') },
  { weight: 1, arbitrary: fc.constantFrom('  ', '    ', ' ') },
);
const flowItems = fc.array(scalar, { maxLength: 3 }).map((vs) => `[${vs.join(', ')}]`);

/** Lines of a block document, each at a random indentation (so nesting, and broken nesting). */
const line = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(indent, key, scalar).map(([i, k, v]) => `${i}${k}: ${v}`) },
  { weight: 2, arbitrary: fc.tuple(indent, key).map(([i, k]) => `${i}${k}:`) },
  { weight: 2, arbitrary: fc.tuple(indent, scalar).map(([i, v]) => `${i}- ${v}`) },
  { weight: 2, arbitrary: fc.tuple(indent, key, scalar).map(([i, k, v]) => `${i}- ${k}: ${v}`) },
  { weight: 1, arbitrary: fc.tuple(indent, key, flowItems).map(([i, k, v]) => `${i}${k}: ${v}`) },
  { weight: 1, arbitrary: fc.tuple(indent, key).map(([i, k]) => `${i}${k}: {}`) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('# comment', '', '   ', '  # c', '---', '...', '-', '- - a', '%YAML 1.2'),
  },
);
const lines = fc.array(line, { minLength: 1, maxLength: 10 }).map((ls) => `${ls.join('\n')}\n`);

/** Nested values written by a dumper, so that most texts are valid and the reader must answer. */
const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(...TRICKY, 'web', '10.0.0.1/32', '', 'a b', 1, 0, -5, 1.5, true, false, null),
    fc.array(tie('v'), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom('a', 'b', 'app', 'x.y/z', 'name'), tie('v'), { maxKeys: 3 }),
  ),
})).v;
const { stringify } = await import('yaml');
const dumped = fc
  .tuple(
    fc.dictionary(fc.constantFrom('a', 'b', 'spec', 'metadata'), value, { minKeys: 1, maxKeys: 3 }),
    fc.boolean(),
  )
  .map(([v, marker]) => `${marker ? '---\n' : ''}${stringify(v, { flowCollectionPadding: false })}`);

/** A text hurt in one place: a character put in or taken out. */
const damaged = fc
  .tuple(
    fc.oneof(dumped, fc.constant(endpointDoc(7))),
    fc.nat(),
    fc.constantFrom(
      ' ',
      ':',
      '-',
      '#',
      '\n',
      '"',
      "'",
      '[',
      ']',
      '{',
      '}',
      ',',
      'a',
      '1',
      '&',
      '*',
      '!',
      '|',
      '\t',
      '',
      'é',
    ),
  )
  .map(([t, at, c]) => {
    const i = at % (t.length + 1);
    return c === '' ? t.slice(0, i) + t.slice(i + 1) : t.slice(0, i) + c + t.slice(i);
  });

const RUNS = Number(process.env.FC_RUNS ?? 3000);

/** Texts from `arb` through agrees(); how many the reader answered. */
function answeredOf(arb: fc.Arbitrary<string>): number {
  let answered = 0;
  fc.assert(
    fc.property(arb, (t) => {
      if (agrees(t)) answered += 1;
    }),
    { numRuns: RUNS },
  );
  return answered;
}

test('hand-written block texts: the reader agrees with both other paths or steps aside', () => {
  const answered = answeredOf(lines);
  // Most random sets of lines are not valid YAML; enough are.
  assert.ok(answered > RUNS / 10, `answered only ${answered} of ${RUNS}`);
});

test('dumped documents: the reader agrees with both other paths or steps aside', () => {
  const answered = answeredOf(dumped);
  assert.ok(answered > RUNS / 3, `answered only ${answered} of ${RUNS}`);
});

test('damaged documents: never a different value, never a value the careful path refuses', () => {
  answeredOf(damaged);
});

test('an endpoint as the big cluster writes it is read by hand, as the other paths read it', () => {
  const t = `---\n${endpointDoc(12)}`;
  assert.ok(agrees(t));
  assert.deepStrictEqual((parsePlainDocument(t) as { spec: unknown }).spec, {
    orchestrator: 'k8s',
    node: 'node12',
    pod: 'pod-12',
    endpoint: 'eth0',
    interfaceName: 'cali0000000000c',
    ipNetworks: ['10.0.0.12/32'],
    profiles: ['kns.shop', 'ksa.shop.default'],
  });
});

test('the reader steps aside for what it does not read', () => {
  for (const t of [
    'a: 1\na: 2\n', // duplicate keys
    'a: &x 1\nb: *x\n',
    'a: !foo x\n',
    'a: |\n  text\n',
    'a: "x\\ty"\n',
    'a: {b: 1}\n',
    'a: b\n  c\n', // a multi-line scalar
    'a: 1\n---\nb: 2\n',
    '~: x\n',
    '__proto__: x\n',
    'a:\tb\n',
    'a: é\n',
    'a: b\r\n',
    '%YAML 1.2\n---\na: 1\n',
  ]) {
    assert.equal(parsePlainDocument(t), undefined, JSON.stringify(t));
  }
});
