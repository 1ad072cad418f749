// Fuzzing the policy path end to end, without the kernel: random and mutated policy documents go
// through validation (model/validate.ts), the syncer's conversion (syncer/convert.ts) and the
// agent's compiler and renderer (agent/calc/policy-compiler.ts, agent/rules). Every input must be
// either accepted all the way (and render) or refused with a message naming a field; nothing may
// throw anything else or take long.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { compilePolicy, PolicyError } from '../../agent/calc/policy-compiler.ts';
import { renderPolicyChains } from '../../agent/rules/render-tables.ts';
import { validateResource } from '../../model/validate.ts';
import { toUpdate } from '../../syncer/convert.ts';

const VALID = {
  apiVersion: 'projectcalico.org/v3',
  kind: 'NetworkPolicy',
  metadata: { name: 'p', namespace: 'shop' },
  spec: {
    tier: 'default',
    order: 10,
    selector: "app == 'frontend'",
    types: ['Ingress', 'Egress'],
    ingress: [
      {
        action: 'Allow',
        protocol: 'TCP',
        source: { selector: "app == 'web'", namespaceSelector: "team == 'x'", nets: ['10.0.0.0/8'] },
        destination: { ports: [80, '8000:8080', 'http'], notPorts: [81] },
      },
      { action: 'Deny', protocol: 'ICMP', icmp: { type: 8, code: 0 } },
    ],
    egress: [
      {
        action: 'Pass',
        destination: { notSelector: 'has(x)', notNets: ['192.168.0.0/16', '172.16.0.0/12'] },
      },
      {
        action: 'Log',
        notProtocol: 'UDP',
        source: { serviceAccounts: { names: ['sa1'], selector: "k == 'v'" } },
      },
    ],
  },
};

/** Leaf values that exercise the validators: wrong types, edge numbers, odd strings. */
const junk = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 65536, 1.5, Number.NaN, '', ' ', 'TCP', 'tcp', 'Allow', 'nope'),
  fc.constantFrom(
    '10.0.0.0/8',
    '10.0.0.1/8',
    '300.0.0.0/8',
    '::1/128',
    'app ==',
    "app == 'x'",
    'all()',
    '80:70',
    'http',
  ),
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.array(fc.oneof(fc.integer({ min: -5, max: 70000 }), fc.string({ maxLength: 6 })), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }),
);

type Json = unknown;

/** Every path (as a key list) inside a JSON value. */
function paths(v: Json, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix];
  if (Array.isArray(v)) for (const [i, x] of v.entries()) out.push(...paths(x, [...prefix, i]));
  else if (v && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...prefix, k]));
  return out;
}

function setAt(v: Json, path: (string | number)[], value: Json): Json {
  if (path.length === 0) return value;
  const [head, ...rest] = path;
  // An earlier mutation may have replaced a parent with a scalar: rebuild the container.
  const base = v !== null && typeof v === 'object' ? v : typeof head === 'number' ? [] : {};
  const copy = (Array.isArray(base) ? [...base] : { ...base }) as Record<string | number, Json>;
  copy[head!] = setAt((base as Record<string | number, Json>)[head!], rest, value);
  return copy;
}

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
        assert.ok(performance.now() - started < 200, 'one document took too long');
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
