// The hand-written fast path of the hot kinds (model/validate/kind.ts `fast`, calico.ts
// fastWorkloadEndpoint) must make of every object exactly what the zod schemas make of it: the same
// resource for what they accept, and (by stepping aside) the same errors for what they refuse.
// Random endpoints, valid and not, and random mutations of valid ones, through both paths.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { WEP_FAST_PATH_COMPLETE } from '../../model/validate/calico.ts';
import { type ValidateResult, validateResource } from '../../model/validate.ts';

const origin = { source: '/data/a/endpoints.yaml', document: 3 };

/** Both paths over one object: equal, and which way it went. */
function same(obj: unknown): 'accepted' | 'refused' {
  const fast = validateResource(obj, origin, '/data/a');
  const schema = validateResource(obj, origin, '/data/a', { bySchema: true });
  assert.deepStrictEqual(fast, schema, JSON.stringify(obj));
  // Key order too: what is written out (feeds, JSON output) must not change.
  assert.equal(JSON.stringify(fast), JSON.stringify(schema));
  return outcome(fast);
}

function outcome(r: ValidateResult): 'accepted' | 'refused' {
  return 'resource' in r ? 'accepted' : 'refused';
}

// Pools of values: good ones, and ways to be wrong.
const names = ['node1-k8s-pod--1-eth0', 'a.b-c', 'x'];
const badNames = ['A-bad', '-bad', '', 'a'.repeat(254), 'a..b'];
const labelKeys = ['app', 'version', 'projectcalico.org/namespace', 'x.y/z', 'a'];
const badLabelKeys = ['a/b/c', 'Bad Key', '_x', 'a'.repeat(64)];
const labelValues = ['web', 'v1', '', 'x.y_z'];
const badLabelValues = ['has space', 'a'.repeat(64), '-x'];
const nets = ['10.0.0.1/32', '10.0.0.5', '10.0.0.5/24', '10.1.0.0/16', ' 10.0.0.9 ', 'fd00::1/128'];
const badNets = ['300.1.1.1', '10.0.0.1/33', '', 'fd00::/ab'];
const ifaces = ['cali0123456789a', 'eth0'];
const badIfaces = ['cali0123456789ab', 'a b', ''];
const macs = ['ee:ee:ee:ee:ee:ee', 'EE:EE:EE:EE:EE:EE'];
const badMacs = ['ee-ee', ''];
const portNames = ['http', 'metrics-1'];
const badPortNames = ['HTTP', '80', 'a--b', 'x'.repeat(16)];
const protocols = ['TCP', 'udp', 'SCTP', '6', 17];
const badProtocols = ['icmp', 300, 'bogus'];
const portNumbers = [80, 65535, '8080'];
const badPortNumbers = [0, 65536, 'http', 1.5];

const odd = fc.oneof(
  fc.constantFrom(null, undefined, 0, -1, true, '', 'x', [], {}, ['x'], { a: 1 }),
  fc.anything({ maxDepth: 2 }),
);
/** Mostly good, sometimes one of the bad ones, sometimes anything at all. */
function pick<T>(good: readonly T[], bad: readonly unknown[] = []): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(...good) },
    ...(bad.length ? [{ weight: 1, arbitrary: fc.constantFrom(...bad) }] : []),
    { weight: 1, arbitrary: odd },
  );
}
const listOf = (arb: fc.Arbitrary<unknown>) =>
  fc.oneof({ weight: 12, arbitrary: fc.array(arb, { maxLength: 3 }) }, { weight: 1, arbitrary: odd });
/** Mostly absent: a typo'd or unknown field. */
const rare = (arb: fc.Arbitrary<unknown>) =>
  fc.oneof({ weight: 15, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });
/** Absent keys left out (not present as undefined). */
const record = (shape: Record<string, fc.Arbitrary<unknown>>) =>
  fc.record(shape).map((o) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)));
const optional = (arb: fc.Arbitrary<unknown>) =>
  fc.oneof({ weight: 1, arbitrary: fc.constant(undefined) }, { weight: 3, arbitrary: arb });

const labels = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.dictionary(fc.constantFrom(...labelKeys), pick(labelValues, badLabelValues), {
      maxKeys: 4,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.dictionary(pick(labelKeys, badLabelKeys) as fc.Arbitrary<string>, fc.constant('v'), {
      maxKeys: 2,
    }),
  },
  { weight: 1, arbitrary: odd },
);

const metadata = record({
  name: pick(names, badNames),
  namespace: optional(pick(['shop', 'default'], ['Bad', 'a.b'])),
  labels: optional(labels),
  annotations: optional(
    fc.dictionary(fc.constantFrom(...labelKeys, 'a'.repeat(64)), pick(['x', 'y'.repeat(10)]), { maxKeys: 2 }),
  ),
  uid: optional(fc.string()),
  resourceVersion: optional(fc.constantFrom('1', '22')),
  lables: rare(labels),
});

const port = record({
  name: pick(portNames, badPortNames),
  protocol: optional(pick(protocols, badProtocols)),
  port: pick(portNumbers, badPortNumbers),
  extra: rare(fc.constant(1)),
});

const spec = record({
  orchestrator: optional(pick(['k8s', 'openstack'], [''])),
  workload: rare(pick(['w1'], [''])),
  node: pick(['node1', 'node-1.example'], ['Node_1']),
  pod: optional(pick(['pod-1'], [''])),
  endpoint: optional(pick(['eth0', 'eth1'], [''])),
  interfaceName: pick(ifaces, badIfaces),
  ipNetworks: optional(listOf(pick(nets, badNets))),
  profiles: optional(listOf(pick(['kns.shop', 'ksa.shop.default'], ['']))),
  serviceAccountName: optional(pick(['default', 'sa-1'], [''])),
  ports: optional(listOf(port)),
  mac: optional(pick(macs, badMacs)),
  containerID: rare(fc.anything({ maxDepth: 1 })),
  ipNATs: rare(fc.anything({ maxDepth: 1 })),
  qosControls: rare(fc.constant({ x: 1 })),
  ipNetwork: rare(fc.constant(['10.0.0.1/32'])),
});

const endpoint = record({
  apiVersion: fc.constant('projectcalico.org/v3'),
  kind: fc.constant('WorkloadEndpoint'),
  metadata: fc.oneof({ weight: 12, arbitrary: metadata }, { weight: 1, arbitrary: odd }),
  spec: fc.oneof({ weight: 12, arbitrary: spec }, { weight: 1, arbitrary: odd }),
  status: rare(fc.anything({ maxDepth: 1 })),
  extra: rare(fc.constant('x')),
});

/** A valid endpoint, for mutations to break in one place at a time. */
function valid(i: number): Record<string, unknown> {
  return {
    apiVersion: 'projectcalico.org/v3',
    kind: 'WorkloadEndpoint',
    metadata: {
      name: `node1-k8s-pod--${i}-eth0`,
      namespace: 'shop',
      labels: { app: 'web', version: 'v1', 'projectcalico.org/orchestrator': 'k8s' },
      annotations: { note: 'x' },
    },
    spec: {
      orchestrator: 'k8s',
      node: 'node1',
      pod: `pod-${i}`,
      endpoint: 'eth0',
      interfaceName: 'cali0123456789a',
      ipNetworks: ['10.0.0.1/32', 'fd00::1/128'],
      profiles: ['kns.shop', 'ksa.shop.default'],
      serviceAccountName: 'default',
      ports: [{ name: 'http', protocol: 'TCP', port: 80 }],
      mac: 'ee:ee:ee:ee:ee:ee',
    },
  };
}

const PATHS = [
  ['metadata'],
  ['metadata', 'name'],
  ['metadata', 'namespace'],
  ['metadata', 'labels'],
  ['metadata', 'labels', 'app'],
  ['metadata', 'labels', 'bad key'],
  ['metadata', 'annotations'],
  ['metadata', 'annotations', 'note'],
  ['metadata', 'finalizers'],
  ['metadata', 'other'],
  ['spec'],
  ['spec', 'orchestrator'],
  ['spec', 'workload'],
  ['spec', 'node'],
  ['spec', 'pod'],
  ['spec', 'endpoint'],
  ['spec', 'interfaceName'],
  ['spec', 'ipNetworks'],
  ['spec', 'ipNetworks', 0],
  ['spec', 'ipNetworks', 2],
  ['spec', 'profiles'],
  ['spec', 'profiles', 1],
  ['spec', 'serviceAccountName'],
  ['spec', 'ports'],
  ['spec', 'ports', 0],
  ['spec', 'ports', 0, 'name'],
  ['spec', 'ports', 0, 'protocol'],
  ['spec', 'ports', 0, 'port'],
  ['spec', 'ports', 0, 'extra'],
  ['spec', 'mac'],
  ['spec', 'ipNATs'],
  ['spec', 'other'],
  ['status'],
  ['other'],
  ['kind'],
  ['apiVersion'],
] as const;

const DELETE = Symbol('delete');

function mutate(obj: Record<string, unknown>, path: readonly (string | number)[], value: unknown): void {
  let at: Record<string | number, unknown> = obj;
  for (const k of path.slice(0, -1)) {
    const next = at[k];
    if (next === null || typeof next !== 'object') return;
    at = next as Record<string | number, unknown>;
  }
  const last = path[path.length - 1] as string | number;
  if (value === DELETE) delete at[last];
  // A copy: the pools hand out the same objects to every run, and later mutations write into them.
  else at[last] = structuredClone(value);
}

const mutationValue = fc.oneof(
  fc.constant(DELETE),
  fc.constantFrom(
    ...names,
    ...labelValues,
    ...nets,
    ...ifaces,
    ...macs,
    ...portNames,
    ...protocols,
    ...portNumbers,
  ),
  odd,
);

test('random endpoints: the fast path and the schemas agree on every one', () => {
  const seen = { accepted: 0, refused: 0 };
  fc.assert(
    fc.property(endpoint, (obj) => {
      seen[same(obj)] += 1;
    }),
    { numRuns: 3000 },
  );
  // Both ways are exercised (the generators are not all-good or all-bad).
  assert.ok(seen.accepted > 100 && seen.refused > 100, JSON.stringify(seen));
});

test('valid endpoints broken in one to three places: the same outcome both ways', () => {
  const seen = { accepted: 0, refused: 0 };
  fc.assert(
    fc.property(
      fc.nat(1000),
      fc.array(fc.tuple(fc.constantFrom(...PATHS), mutationValue), { minLength: 1, maxLength: 3 }),
      (i, mutations) => {
        const obj = valid(i);
        for (const [path, value] of mutations) mutate(obj, path, value);
        seen[same(obj)] += 1;
      },
    ),
    { numRuns: 3000 },
  );
  assert.ok(seen.accepted > 100 && seen.refused > 100, JSON.stringify(seen));
});

test('a valid endpoint: the resource as before, defaults and implicit labels filled in', () => {
  const obj = valid(7);
  const spec = obj.spec as Record<string, unknown>;
  delete spec.orchestrator;
  delete spec.endpoint;
  delete spec.ports;
  const r = validateResource(obj, origin, '/data/a');
  assert.ok('resource' in r);
  assert.deepStrictEqual(r.resource, {
    kind: 'WorkloadEndpoint',
    name: 'node1-k8s-pod--7-eth0',
    namespace: 'shop',
    labels: {
      app: 'web',
      version: 'v1',
      'projectcalico.org/orchestrator': 'k8s',
      'projectcalico.org/namespace': 'shop',
      'projectcalico.org/serviceaccount': 'default',
    },
    annotations: { note: 'x' },
    origin,
    spec: {
      orchestrator: 'k8s',
      node: 'node1',
      pod: 'pod-7',
      endpoint: 'eth0',
      interfaceName: 'cali0123456789a',
      ipNetworks: ['10.0.0.1/32'],
      profiles: ['kns.shop', 'ksa.shop.default'],
      serviceAccountName: 'default',
      ports: [],
      mac: 'ee:ee:ee:ee:ee:ee',
    },
  });
});

test('a refused endpoint: the schema names the field, whichever path ran', () => {
  const obj = valid(1);
  (obj.spec as Record<string, unknown>).ipNetwork = ['10.0.0.9/32'];
  (obj.metadata as Record<string, unknown>).labels = { app: 'has space' };
  const r = validateResource(obj, origin, '/data/a');
  assert.ok('errors' in r);
  assert.deepStrictEqual(
    r.errors.map((e) => [e.resource, e.field]),
    [
      ['WorkloadEndpoint/shop/node1-k8s-pod--1-eth0', 'spec.ipNetwork'],
      ['WorkloadEndpoint/shop/node1-k8s-pod--1-eth0', 'metadata.labels.app'],
    ],
  );
});

test('the fast path knows every field of the schema (else it is off, and this says why)', () => {
  assert.ok(
    WEP_FAST_PATH_COMPLETE,
    'wepSpec has a field fastWorkloadEndpoint does not read: teach it the field (and the generators above)',
  );
});
