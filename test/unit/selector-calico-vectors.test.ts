// Calico's own published selector test vectors (libcalico-go/lib/selector/parser/parser_test.go:
// selectorTests, badSelectors, canonicalisationTests), transcribed as data, run through
// `fedmesh eval` as an operator would: one workload endpoint per label set in a file datastore,
// the selector evaluated, the endpoints it printed compared with Calico's expectation.
//
// A few label sets hold values that no Kubernetes or Calico resource may carry (`"` and `'`), so
// no endpoint can have them; those rows are checked against the selector engine that eval uses.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runEval } from '../../cli/eval.ts';
import { parseSelector } from '../../model/selector/index.ts';
import { LABEL_VALUE } from '../../model/validate/common.ts';

type LabelSet = Record<string, string>;

/** [selector, label sets it must match, label sets it must not match] */
const SELECTOR_TESTS: [string, LabelSet[], LabelSet[]][] = [
  [`a == "b"`, [{ a: 'b' }, { a: 'b', c: 'd' }], [{}, { a: 'c' }, { c: 'd' }]],
  [
    `a == "b" && c == "d"`,
    [{ a: 'b', c: 'd' }],
    [{}, { a: 'b', c: 'e' }, { a: 'c', c: 'd' }, { c: 'd' }, { a: 'b' }],
  ],
  [
    `a == "b" || c == "d"`,
    [{ a: 'b', c: 'd' }, { a: 'b' }, { c: 'd' }],
    [{}, { a: 'e', c: 'e' }, { c: 'e' }, { a: 'e' }],
  ],
  [`a in {"'", '"', "c"}`, [{ a: 'c' }, { a: '"' }, { a: "'" }], [{}, { a: 'e' }]],
  [`a not in {"'", '"', "c"}`, [{}, { a: 'e' }], [{ a: 'c' }, { a: '"' }, { a: "'" }]],
  [`a == 'a'`, [{ a: 'a' }], []],
  [`a == "a"`, [{ a: 'a' }], []],
  [`a != "b"`, [{ a: 'a' }], []],
  [`a != "a"`, [{}], []],
  [`a contains "a"`, [{ a: 'a' }, { a: 'bab' }, { a: 'aaa', b: 'c' }], [{}, { a: 'b' }, { b: 'aaa' }]],
  [
    `a starts with "a"`,
    [{ a: 'a' }, { a: 'abb' }, { a: 'aaa', b: 'c' }],
    [{}, { a: 'b' }, { a: 'baa' }, { b: 'aaa' }],
  ],
  [
    `a ends with "a"`,
    [{ a: 'a' }, { a: 'bba' }, { a: 'aaa', b: 'c' }],
    [{}, { a: 'b' }, { a: 'aab' }, { b: 'aaa' }],
  ],
  [`a in {"a"}`, [{ a: 'a' }], []],
  [`!a in {"a"}`, [{ a: 'b' }], []],
  [`a in {"a", "b"}`, [{ a: 'a' }], []],
  [`a in {"a", "b"}`, [{ a: 'b' }], []],
  [`a not in {"d", "e"}`, [{ a: 'a' }], []],
  [`has(a)`, [{ a: 'b' }], []],
  [`!has(a)`, [{ b: 'b' }], []],
  [``, [{}], []],
  [` `, [{}], []],
  [``, [{ a: 'b' }], []],
  [`all()`, [{}], []],
  [` all()`, [{}], []],
  [` all()`, [{ a: 'b' }], []],
  [`global()`, [{}], []],
  [` global()`, [{}], []],
  [` global()`, [{ a: 'b' }], []],
  [`a == 'a'`, [], [{ a: 'b' }]],
  [`a == 'a'`, [], [{}]],
  [`a != "a"`, [], [{ a: 'a' }]],
  [`a != 'a'`, [], [{ a: 'a' }]],
  [`a in {"a"}`, [], [{ a: 'b' }]],
  [`a not in {"a"}`, [], [{ a: 'a' }]],
  [`a in {"a", "b"}`, [], [{ a: 'c' }]],
  [`has(b)`, [], [{ a: 'b' }]],
  [`!!has(b)`, [], [{ a: 'b' }]],
  [`! has(a)`, [], [{ a: 'b' }]],
  [`!has(a)`, [], [{ a: 'b' }]],
  [`!!! has(a)`, [], [{ a: 'b' }]],
  [`!!!has(a)`, [], [{ a: 'b' }]],
  [`!! ! has(a)`, [], [{ a: 'b' }]],
  [`! !!has(a)`, [], [{ a: 'b' }]],
  [`a == 'a1' && b == 'b1'`, [{ a: 'a1', b: 'b1' }], []],
  [`a == 'a1' && b != 'b1'`, [], [{ a: 'a1', b: 'b1' }]],
  [`a != 'a1' && b == 'b1'`, [], [{ a: 'a1', b: 'b1' }]],
  [`a != 'a1' && b != 'b1'`, [], [{ a: 'a1', b: 'b1' }]],
  [`a != 'a1' && !b == 'b1'`, [], [{ a: 'a1', b: 'b1' }]],
  [`!a == 'a1' && b == 'b1'`, [], [{ a: 'a1', b: 'b1' }]],
  [`has(a) && !has(b)`, [{ a: 'a' }], []],
  [`!has(b) && has(a)`, [{ a: 'a' }], []],
  [`!(!has(a) || has(b))`, [{ a: 'a' }], []],
  [`!(has(b) || !has(a))`, [{ a: 'a' }], []],
  [`a == 'a1' || b == 'b1'`, [{ a: 'a1', b: 'b1' }], []],
  [`a == 'a1' || b != 'b1'`, [{ a: 'a1', b: 'b1' }], []],
  [`a != 'a1' || b == 'b1'`, [{ a: 'a1', b: 'b1' }], []],
  [`a != 'a1' || b != 'b1'`, [], [{ a: 'a1', b: 'b1' }]],
  [`! a == 'a1' || ! b == 'b1'`, [], [{ a: 'a1', b: 'b1' }]],
];

const BAD_SELECTORS = [
  'b == b',
  'b contains b',
  'b starts with b',
  'b ends with b',
  "'b1' == b",
  'b',
  'a b',
  '!',
  'foo == "bar" &',
  'foo == "bar" |',
  'foo != ||',
  'foo in {"", ||',
  'foo in ""',
  '"FOO',
  `"FOO'`,
  `'FOO`,
  '(',
  '(a == "foo"',
  ')',
  '()',
  '%',
  'a == "b" && %',
  'a == "b" || %',
  'a ',
  'has(foo) &&',
];

/** [input, canonical form, Felix's selector id ('' where Calico's test gives none)] */
const CANONICAL: [string, string, string][] = [
  ['', 'all()', 's:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug'],
  [' all() ', 'all()', 's:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug'],
  [' (all() )', 'all()', 's:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug'],
  ['! (has( b)||! has(a ))', '!(has(b) || !has(a))', 's:Iss0uCleLYv1GSv_pNm7hAO58kE9jAx1NKyG3Q'],
  ['! (a == "b"&&! c != "d")', '!(a == "b" && !c != "d")', 's:lh3haoY1ikTRkd4UZu0nWSaIBknYLPJLX16d-w'],
  [`a == "'"`, `a == "'"`, ''],
  [`a == '"'`, `a == '"'`, ''],
  [`a contains '"'`, `a contains '"'`, ''],
  [`a contains "'"`, `a contains "'"`, ''],
  [`a startswith '"'`, `a starts with '"'`, ''],
  [`a endswith "'"`, `a ends with "'"`, ''],
  [`a!='"'`, `a != '"'`, ''],
  ['a in {"d"}', 'a in {"d"}', ''],
  ['a in {"a", "b"}', 'a in {"a", "b"}', ''],
  ['a in {"d", "a", "b"}', 'a in {"a", "b", "d"}', ''],
  ['a in {"z", "x", "y", "a"}', 'a in {"a", "x", "y", "z"}', ''],
  ['a in {"z", "z", "x", "y", "x", "a"}', 'a in {"a", "x", "y", "z"}', ''],
];

const keyOf = (l: LabelSet) => JSON.stringify(Object.entries(l).sort());
const representable = (l: LabelSet) => Object.values(l).every((v) => v === '' || LABEL_VALUE.test(v));

// Every distinct label set an endpoint can carry, one workload endpoint each.
const sets = new Map<string, { labels: LabelSet; name: string }>();
for (const [, yes, no] of SELECTOR_TESTS) {
  for (const l of [...yes, ...no]) {
    if (representable(l) && !sets.has(keyOf(l))) sets.set(keyOf(l), { labels: l, name: `ep-${sets.size}` });
  }
}

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'fedmesh-vectors-'));
  const docs = [...sets.values()].map(
    ({ labels, name }, i) => `apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: n1-k8s-${name}-eth0, namespace: v, labels: ${JSON.stringify(labels)}}
spec: {orchestrator: k8s, node: n1, pod: ${name}, endpoint: eth0, interfaceName: cali${String(i).padStart(11, '0')}, ipNetworks: [10.0.${i >> 8}.${i & 255}/32]}`,
  );
  writeFileSync(join(dir, 'endpoints.yaml'), docs.join('\n---\n'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** `fedmesh eval SELECTOR --output json` in this process: exit code, stdout and stderr. */
async function evalInProcess(selector: string): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runEval(
    { selector, cluster: 'v', datastore: `file:${dir}`, output: 'json' },
    { out: (t) => (out += t), err: (t) => (err += t) },
  );
  return { code, out, err };
}

describe("Calico's selector vectors through fedmesh eval", () => {
  SELECTOR_TESTS.forEach(([sel, yes, no], i) => {
    it(`#${i} ${JSON.stringify(sel)}`, async () => {
      const r = await evalInProcess(sel);
      assert.equal(r.code, 0, r.err);
      const printed = new Set(
        (JSON.parse(r.out) as { matches: { endpoint: string }[] }).matches.map((m) => m.endpoint),
      );
      const engine = parseSelector(sel);
      for (const [labels, want] of [
        ...yes.map((l) => [l, true] as const),
        ...no.map((l) => [l, false] as const),
      ]) {
        const ep = sets.get(keyOf(labels));
        if (ep)
          assert.equal(printed.has(`v/n1-k8s-${ep.name}-eth0`), want, `${sel} on ${JSON.stringify(labels)}`);
        else assert.equal(engine.evaluate(labels), want, `${sel} on ${JSON.stringify(labels)} (engine)`);
      }
    });
  });

  for (const bad of BAD_SELECTORS) {
    it(`refuses ${JSON.stringify(bad)} with its position`, async () => {
      const r = await evalInProcess(bad);
      assert.equal(r.code, 2);
      assert.match(r.err, /invalid selector: .*position \d+/);
      assert.equal(r.out, '');
    });
  }

  for (const [input, canonical, id] of CANONICAL) {
    it(`canonicalises ${JSON.stringify(input)} as ${canonical}${id ? ` with id ${id}` : ''}`, async () => {
      const r = await evalInProcess(input);
      assert.equal(r.code, 0, r.err);
      assert.equal((JSON.parse(r.out) as { selector: string }).selector, canonical);
      const sel = parseSelector(input);
      assert.equal(parseSelector(sel.canonical).canonical, canonical, 'round trip');
      if (id) assert.equal(sel.id, id);
      assert.equal(parseSelector(canonical).id, sel.id);
    });
  }
});
