// Fuzzing the policy path end to end, without the kernel: random and mutated policy documents go
// through validation (model/validate.ts), the syncer's conversion (syncer/convert.ts) and the
// agent's compiler and renderer (agent/calc/policy-compiler.ts, agent/rules). Every input must be
// either accepted all the way (and render) or refused with a message naming a field; nothing may
// throw anything else or take long.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { renderPolicyChains } from '../../agent/rules/render-tables.ts';
import { validateResource } from '../../model/validate.ts';
import { compilePolicy, PolicyError } from '../../policy/compiler.ts';
import { toUpdate } from '../../syncer/convert.ts';
import { type Json, junk, paths, setAt, VALID_SEED } from '../helpers/policy-gen.ts';

const VALID = VALID_SEED;

function runOne(doc: Json): 'accepted' | 'refused' | 'skipped' {
  const res = validateResource(doc, { source: 'fuzz.yaml', document: 0 }, '/tmp');
  if ('errors' in res) {
    assert.ok(res.errors.length > 0);
    for (const e of res.errors) assert.ok(e.message.length > 0, 'a refusal says why');
    return 'refused';
  }
  if (!('resource' in res)) return 'skipped';
  const u = toUpdate({ cluster: 'a', remote: false }, res.resource);
  if (u?.body.case !== 'policy') return 'skipped';
  try {
    const compiled = compilePolicy(u.body.value);
    renderPolicyChains({
      key: compiled.key,
      displayName: compiled.displayName,
      inbound: compiled.inbound,
      outbound: compiled.outbound,
    });
    return 'accepted';
  } catch (e) {
    assert.ok(e instanceof PolicyError, `only PolicyError may escape the compiler: ${(e as Error).stack}`);
    assert.ok(e.field.length > 0 && e.reason.length > 0);
    return 'refused';
  }
}

test('the valid seed is accepted all the way', () => {
  assert.equal(runOne(VALID), 'accepted');
});

test('mutated policies are accepted or refused with a field, never crash or hang', () => {
  const seedPaths = paths(VALID);
  const tally = { accepted: 0, refused: 0, skipped: 0 };
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.constantFrom(...seedPaths), junk), { minLength: 1, maxLength: 4 }),
      (mutations) => {
        let doc: Json = VALID;
        for (const [p, v] of mutations) doc = setAt(doc, p, v);
        const started = performance.now();
        tally[runOne(doc)]++;
        // A guard against a pathological (super-linear) path, not a speed target: generous, so a
        // busy machine does not fail it.
        assert.ok(performance.now() - started < 2000, 'one document took too long');
      },
    ),
    { numRuns: 1500 },
  );
  // The fuzzer must exercise both outcomes, or it is not testing anything. (Strict decoding
  // refuses the random mappings the junk puts where a rule or entity was, so few are accepted.)
  assert.ok(tally.accepted > 5 && tally.refused > 20, JSON.stringify(tally));
});

test('random documents are refused (or skipped), never crash', () => {
  fc.assert(
    fc.property(fc.anything({ maxDepth: 4 }), (doc) => {
      runOne(doc);
      runOne({
        apiVersion: 'projectcalico.org/v3',
        kind: 'GlobalNetworkPolicy',
        metadata: { name: 'g' },
        spec: doc,
      });
    }),
    { numRuns: 500 },
  );
});
