// Hostile and careless input (issue 8): unknown fields refused with their path, Kubernetes size
// limits on labels and annotations, `__proto__` keys, deep nesting, and refusals that never echo
// a huge or control-laden value whole.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ResourceError } from '../../model/resources.ts';
import { parseYamlDocuments } from '../../model/validate.ts';

const parse = (text: string) => parseYamlDocuments(text, { source: 'x.yaml', baseDir: '/tmp' });

function refusal(text: string): ResourceError[] {
  const r = parse(text);
  assert.equal(r.resources.length, 0, 'expected the document to be refused');
  assert.ok(r.errors.length > 0);
  return r.errors;
}

const gnp = (rule: string, extra = '') => `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: db}
spec:
  selector: app == 'db'
${extra}  ingress:
  - action: Allow
    protocol: TCP
${rule}    destination: {ports: [5432]}
`;

describe('strict decoding', () => {
  test('a typo in a rule is refused, naming the field, instead of allowing from anywhere', () => {
    const errors = refusal(gnp("    source: {selectr: app == 'web'}\n"));
    assert.deepEqual(
      errors.map((e) => [e.resource, e.field]),
      [['GlobalNetworkPolicy/db', 'spec.ingress[0].source.selectr']],
    );
    assert.match(errors[0]!.message, /unknown field \(did you mean "selector"\?\)/);
  });

  test('a typo of the policy selector is refused, instead of selecting everything', () => {
    const text = gnp('', "  selecter: app == 'db'\n").replace("  selector: app == 'db'\n", '');
    const errors = refusal(text);
    assert.deepEqual(
      errors.map((e) => e.field),
      ['spec.selecter'],
    );
  });

  test('every strict level: top level, metadata, spec, nested objects', () => {
    const cases: [string, string][] = [
      [
        'apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspek: {cidr: 10.0.0.0/16}',
        'spek',
      ],
      [
        'apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p, lables: {a: b}}\nspec: {cidr: 10.0.0.0/16}',
        'metadata.lables',
      ],
      [
        'apiVersion: crd.projectcalico.org/v1\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, natOutgoin: true}',
        'spec.natOutgoin',
      ],
      [
        'apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n}\nspec: {bgp: {ipv4Adress: 10.0.0.1/24}}',
        'spec.bgp.ipv4Adress',
      ],
      [
        'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n}\nspek: {podSelector: {}}',
        'spek',
      ],
      [
        'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n}\nspec: {podSelector: {}, ingress: [{form: [{podSelector: {}}]}]}',
        'spec.ingress[0].form',
      ],
      [
        'apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: n}\nspec: {egress: [{action: Allow, destination: {serviceAccounts: {nmes: [x]}}}]}',
        'spec.egress[0].destination.serviceAccounts.nmes',
      ],
    ];
    for (const [text, field] of cases) {
      const errors = refusal(text);
      assert.ok(
        errors.some((e) => e.field === field && /unknown field/.test(e.message)),
        `${field}: ${JSON.stringify(errors)}`,
      );
    }
  });

  test("Calico's own fields and status are accepted; Pods and Namespaces stay tolerant", () => {
    const r = parse(`apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: n, uid: u, resourceVersion: "1", creationTimestamp: null}
spec:
  bgp: {ipv4Address: 10.0.0.1/24, asNumber: 64512}
  orchRefs: [{nodeName: n, orchestrator: k8s}]
status: {podCIDRs: [10.1.0.0/24]}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns, somethingNew: 1}
spec: {nodeName: n, containers: [{name: c, image: busybox, ports: [{containerPort: 80, hostIP: 1.2.3.4}]}], tolerations: []}
status: {phase: Running, podIP: 10.1.0.5, conditions: []}
---
apiVersion: v1
kind: Namespace
metadata: {name: ns}
spec: {finalizers: [kubernetes]}
`);
    assert.deepEqual(r.errors, []);
    assert.deepEqual(
      r.resources.map((x) => x.kind),
      ['Node', 'WorkloadEndpoint', 'Namespace'],
    );
  });

  test('doNotTrack and preDNAT policies are refused, not silently enforced as ordinary ones', () => {
    const errors = refusal(gnp('', '  doNotTrack: true\n'));
    assert.equal(errors[0]?.field, 'spec.doNotTrack');
    assert.equal(parse(gnp('', '  doNotTrack: false\n  applyOnForward: true\n')).errors.length, 0);
  });
});

describe('Kubernetes size limits', () => {
  const set = (meta: string) =>
    `apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: s, ${meta}}\nspec: {nets: [10.0.0.0/8]}`;

  test('annotations: 256 KiB in total, keys and values together', () => {
    const half = 'x'.repeat(130 * 1024);
    const errors = refusal(set(`annotations: {a: ${half}, b: ${half}}`));
    assert.equal(errors[0]?.field, 'metadata.annotations');
    assert.match(errors[0]!.message, /266242 bytes in total; Kubernetes allows at most 262144/);
    assert.equal(parse(set(`annotations: {a: ${'x'.repeat(200 * 1024)}}`)).errors.length, 0);
  });

  test('a 50 MB annotation is refused, and its value is never echoed whole', () => {
    const errors = refusal(set(`annotations: {a: ${'y'.repeat(50 * 1024 * 1024)}}`));
    assert.ok(JSON.stringify(errors).length < 2000);
  });

  test('label keys: prefix a DNS subdomain of at most 253, name at most 63; values at most 63', () => {
    const label = (k: string, v = 'v') => parse(set(`labels: {"${k}": "${v}"}`)).errors;
    assert.deepEqual(label(`${'a'.repeat(253)}/${'b'.repeat(63)}`), []);
    assert.match(label(`${'a'.repeat(254)}/b`)[0]!.message, /invalid prefix/);
    assert.match(label('b'.repeat(64))[0]!.message, /at most 63/);
    assert.match(label('Foo_Bar/x')[0]!.message, /invalid prefix/);
    assert.deepEqual(label('k', 'v'.repeat(63)), []);
    const big = label('k', 'v'.repeat(1024 * 1024))[0]!;
    assert.equal(big.field, 'metadata.labels.k');
    assert.ok(big.message.length < 400, 'a 1 MB value is not echoed whole');
    assert.match(label('k', '-bad')[0]!.message, /value "-bad" is invalid/);
  });

  test('a __proto__ label key is refused, not dropped', () => {
    const errors = refusal(set('labels: {__proto__: evil, a: b}'));
    assert.equal(errors[0]?.field, 'metadata.labels.__proto__');
    assert.match(errors[0]!.message, /key "__proto__" is invalid/);
  });

  test('control characters in a refused value are escaped', () => {
    const errors = refusal(set('labels: {k: "\\e[31mred"}'));
    assert.ok(!errors[0]!.message.includes('\u001b'));
    assert.match(errors[0]!.message, /\\u001b\[31mred/);
  });
});

describe('YAML nesting', () => {
  test('too deep: one clear error for the document, the others still served', () => {
    const good = 'apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: ok}\n';
    for (const deep of [`a: ${'['.repeat(100_000)}`, `a: ${'['.repeat(50_000)}${']'.repeat(50_000)}`]) {
      const r = parse(`${deep}\n---\n${good}`);
      assert.equal(r.errors.length, 1, JSON.stringify(r.errors).slice(0, 500));
      assert.match(r.errors[0]!.message, /^YAML nesting too deep \(at line 1, column \d+\): refused$/);
      assert.deepEqual(
        r.resources.map((x) => x.name),
        ['ok'],
      );
    }
  });
});
