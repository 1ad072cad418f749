// The services controller's pure calculation against Calico's federated services semantics
// (../shared/reference/calico-fidelity.md) and KEP-1645 for the MCS API. Inputs are YAML as a user
// writes it, validated by the model, so the kinds' validation is exercised too.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Endpoints, Resource } from '../../model/resources.ts';
import { parseYamlDocuments } from '../../model/validate.ts';
import { desiredState } from '../../services/federation.ts';
import type { FederationInput } from '../../services/types.ts';
import { clusterView } from '../../services/view.ts';

function resources(yaml: string): Resource[] {
  const r = parseYamlDocuments(yaml, { source: 'test.yaml', baseDir: '/' });
  assert.deepEqual(r.errors, [], JSON.stringify(r.errors));
  return r.resources;
}

function input(local: string, remotes: Record<string, string> = {}, derive = false): FederationInput {
  const l = clusterView('a', false, resources(local), { derive });
  return {
    local: l.view,
    remotes: Object.entries(remotes).map(([c, y]) => clusterView(c, true, resources(y), { derive }).view),
    localEndpoints: l.local.endpoints,
    localImports: l.local.imports,
  };
}

const FEDERATED = `apiVersion: v1
kind: Service
metadata: {name: fed, namespace: shop, annotations: {federation.tigera.io/serviceSelector: "app == 'db'"}}
spec:
  ports: [{name: pg, port: 1, protocol: TCP}, {name: metrics, port: 2, protocol: UDP}]
`;

const backing = (name: string, labels: string, ports: string, subsets: string) => `---
apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: shop, labels: ${labels}}
spec: {ports: ${ports}}
---
apiVersion: v1
kind: Endpoints
metadata: {name: ${name}, namespace: shop}
subsets: ${subsets}
`;

describe('federated Services (Calico semantics)', () => {
  test('ports match by (name, protocol) and take the backing number; subsets left without ports are dropped', () => {
    const d = desiredState(
      input(
        FEDERATED +
          backing(
            'db',
            '{app: db}',
            '[{name: pg, port: 5432}]',
            `[{addresses: [{ip: 10.0.0.1}], ports: [{name: pg, port: 5432, protocol: TCP}, {name: metrics, port: 9000, protocol: TCP}]},
              {addresses: [{ip: 10.0.0.2}], ports: [{name: other, port: 80, protocol: TCP}]}]`,
          ),
      ),
    );
    const ep = d.endpoints[0]!;
    assert.equal(ep.name, 'fed');
    // metrics is UDP in the federated Service: the backing TCP metrics port does not match.
    assert.deepEqual(ep.subsets, [
      {
        addresses: [{ ip: '10.0.0.1' }],
        notReadyAddresses: [],
        ports: [{ name: 'pg', port: 5432, protocol: 'TCP' }],
      },
    ]);
    assert.equal(ep.annotations['federation.tigera.io/serviceSelector'], "app == 'db'");
  });

  test('a spec.selector refuses federation, with a problem; no Endpoints are written for it', () => {
    const d = desiredState(input(FEDERATED.replace('spec:\n', 'spec:\n  selector: {app: x}\n')));
    assert.deepEqual(d.endpoints, []);
    assert.equal(d.services[0]!.active, false);
    assert.match(d.services[0]!.problems[0]!, /spec\.selector/);
  });

  test('an unparsable selector, and annotations that disagree, are refused the same way', () => {
    const bad = desiredState(input(FEDERATED.replace(`"app == 'db'"`, `"app == "`)));
    assert.deepEqual(bad.endpoints, []);
    assert.match(bad.services[0]!.problems[0]!, /does not parse/);
    const both = desiredState(
      input(
        FEDERATED.replace(
          'annotations: {',
          `annotations: {federation.fedmesh.io/serviceSelector: "app == 'x'", `,
        ),
      ),
    );
    assert.deepEqual(both.endpoints, []);
    assert.match(both.services[0]!.problems[0]!, /disagree/);
    const same = desiredState(
      input(
        FEDERATED.replace(
          'annotations: {',
          `annotations: {federation.fedmesh.io/serviceSelector: "app == 'db'", `,
        ),
      ),
    );
    assert.equal(same.endpoints.length, 1);
  });

  test('the selector cannot escape its namespace term by closing the parenthesis', () => {
    const other = `---
apiVersion: v1
kind: Service
metadata: {name: x, namespace: other, labels: {b: y}}
spec: {ports: [{name: pg, port: 1}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: x, namespace: other}
subsets: [{addresses: [{ip: 10.9.9.9}], ports: [{name: pg, port: 1}]}]
`;
    const d = desiredState(input(FEDERATED.replace(`"app == 'db'"`, `"a == 'x') || (b == 'y'"`) + other));
    assert.deepEqual(d.endpoints, []);
    assert.match(d.services[0]!.problems[0]!, /does not parse/);
  });

  test('remote backing Services: matched with remoteClusterName, targetRef.name becomes <cluster>/<pod>, namespace/node/uid kept', () => {
    const remote = backing(
      'db',
      '{app: db}',
      '[{name: pg, port: 5432}]',
      `[{addresses: [{ip: 10.20.0.5, nodeName: b-node1, targetRef: {kind: Pod, name: db-1, namespace: shop, uid: u-1}}],
         notReadyAddresses: [{ip: 10.20.0.6, targetRef: {kind: Pod, name: db-2, namespace: shop}}],
         ports: [{name: pg, port: 6543}]}]`,
    );
    const only = FEDERATED.replace(`"app == 'db'"`, `"federation.tigera.io/remoteClusterName == 'b'"`);
    const d = desiredState(
      input(
        only +
          backing(
            'db',
            '{app: db}',
            '[{name: pg, port: 1}]',
            '[{addresses: [{ip: 10.0.0.1}], ports: [{name: pg, port: 1}]}]',
          ),
        { b: remote },
      ),
    );
    assert.deepEqual(d.endpoints[0]!.subsets, [
      {
        addresses: [
          {
            ip: '10.20.0.5',
            nodeName: 'b-node1',
            targetRef: { kind: 'Pod', name: 'b/db-1', namespace: 'shop', uid: 'u-1' },
          },
        ],
        notReadyAddresses: [
          { ip: '10.20.0.6', targetRef: { kind: 'Pod', name: 'b/db-2', namespace: 'shop' } },
        ],
        ports: [{ name: 'pg', port: 6543, protocol: 'TCP' }],
      },
    ]);
    assert.deepEqual(d.services[0]!.sources, ['b/shop/db']);
  });

  test('federated Services never nest; other namespaces never match; repacking dedupes and orders', () => {
    const nested = FEDERATED.replace('name: fed,', 'name: fed2, labels: {app: db},');
    const dup = `[{addresses: [{ip: 10.0.0.10}, {ip: 10.0.0.9}], ports: [{name: pg, port: 5432}]}, {addresses: [{ip: 10.0.0.9}], ports: [{name: pg, port: 5432}]}]`;
    const d = desiredState(
      input(`${FEDERATED}---\n${nested}${backing('db', '{app: db}', '[{name: pg, port: 5432}]', dup)}`),
    );
    const fed = d.endpoints.find((e) => e.name === 'fed')!;
    assert.deepEqual(
      fed.subsets[0]!.addresses.map((a) => a.ip),
      ['10.0.0.9', '10.0.0.10'],
    );
    assert.deepEqual(d.services.find((s) => s.name === 'fed')!.sources, ['a/shop/db']);
  });

  test('ownership: Endpoints without the annotation are left alone; owned ones are rewritten to the desired content', () => {
    const foreign = `---
apiVersion: v1
kind: Endpoints
metadata: {name: fed, namespace: shop}
subsets: [{addresses: [{ip: 1.2.3.4}], ports: [{name: pg, port: 1}]}]
`;
    const d = desiredState(input(FEDERATED + foreign));
    assert.deepEqual(d.endpoints, []);
    assert.match(d.services[0]!.problems[0]!, /not ours, left alone/);
    const edited = foreign.replace(
      '{name: fed, namespace: shop}',
      `{name: fed, namespace: shop, annotations: {federation.tigera.io/serviceSelector: "app == 'db'"}}`,
    );
    const e = desiredState(input(FEDERATED + edited)).endpoints[0] as Endpoints;
    assert.deepEqual(e.subsets, []);
  });

  test('EndpointSlices: one per source cluster, labelled, with ready conditions', () => {
    const remote = backing(
      'db',
      '{app: db}',
      '[{name: pg, port: 5432}]',
      '[{addresses: [{ip: 10.20.0.5}], ports: [{name: pg, port: 5432}]}]',
    );
    const local = backing(
      'db',
      '{app: db}',
      '[{name: pg, port: 5432}]',
      '[{notReadyAddresses: [{ip: 10.0.0.5}], ports: [{name: pg, port: 5432}]}]',
    );
    const d = desiredState(input(FEDERATED + local, { b: remote }));
    const got = d.endpointSlices
      .map((s) => [
        s.labels['multicluster.kubernetes.io/source-cluster'],
        s.labels['kubernetes.io/service-name'],
        s.labels['endpointslice.kubernetes.io/managed-by'],
        s.addressType,
        s.endpoints.map((e) => [e.addresses[0], e.conditions.ready]),
        s.ports,
      ])
      .sort((x, y) => String(x[0]).localeCompare(String(y[0])));
    const pg = [{ name: 'pg', port: 5432, protocol: 'TCP' }];
    assert.deepEqual(got, [
      ['a', 'fed', 'services-controller.fedmesh.io', 'IPv4', [['10.0.0.5', false]], pg],
      ['b', 'fed', 'services-controller.fedmesh.io', 'IPv4', [['10.20.0.5', true]], pg],
    ]);
  });

  test('a backing Service with EndpointSlices and no Endpoints object (Kubernetes 1.33+) is read from its slices', () => {
    const sliced = `---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {ports: [{name: pg, port: 5432}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-x1, namespace: shop, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
endpoints:
  - {addresses: [10.0.0.3], conditions: {ready: true}, nodeName: n1}
  - {addresses: [10.0.0.4], conditions: {ready: false}}
ports: [{name: pg, port: 5432, protocol: TCP}]
`;
    const d = desiredState(input(FEDERATED + sliced));
    assert.deepEqual(d.endpoints[0]!.subsets, [
      {
        addresses: [{ ip: '10.0.0.3', nodeName: 'n1' }],
        notReadyAddresses: [{ ip: '10.0.0.4' }],
        ports: [{ name: 'pg', port: 5432, protocol: 'TCP' }],
      },
    ]);
  });

  test('owned Endpoints never back anything: a Service that lost its annotation does not feed on its old output', () => {
    const old = `---
apiVersion: v1
kind: Service
metadata: {name: was-fed, namespace: shop, labels: {app: db}}
spec: {ports: [{name: pg, port: 5432}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: was-fed, namespace: shop, annotations: {federation.tigera.io/serviceSelector: "app == 'db'"}}
subsets: [{addresses: [{ip: 10.0.0.66}], ports: [{name: pg, port: 5432}]}]
`;
    const d = desiredState(input(FEDERATED + old));
    assert.deepEqual(
      d.endpoints.map((e) => e.name),
      ['fed'],
    );
    assert.deepEqual(d.endpoints[0]!.subsets, []);
  });

  test('a file datastore Service with a selector and no Endpoints gets endpoints from matching workload endpoints', () => {
    const pods = `apiVersion: v1
kind: Pod
metadata: {name: db-1, namespace: shop, labels: {app: db}}
spec: {nodeName: n1, containers: [{ports: [{name: pg, containerPort: 6000}]}]}
status: {phase: Running, podIP: 10.0.0.7}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web}}
spec: {nodeName: n1}
status: {phase: Running, podIP: 10.0.0.8}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {selector: {app: db}, ports: [{name: pg, port: 5432, targetPort: pg}]}
---
`;
    const d = desiredState(input(pods + FEDERATED, {}, true));
    assert.deepEqual(d.endpoints[0]!.subsets, [
      {
        addresses: [
          { ip: '10.0.0.7', nodeName: 'n1', targetRef: { kind: 'Pod', name: 'db-1', namespace: 'shop' } },
        ],
        notReadyAddresses: [],
        ports: [{ name: 'pg', port: 6000, protocol: 'TCP' }],
      },
    ]);
  });
});

describe('MCS API (KEP-1645)', () => {
  const exported = (port: number, ts: string) => `apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec: {selector: {app: api}, ports: [{name: http, port: ${port}}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: api, namespace: shop}
subsets: [{addresses: [{ip: 10.${port % 200}.0.1, targetRef: {kind: Pod, name: api-1, namespace: shop}}], ports: [{name: http, port: 8080}]}]
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: api, namespace: shop, creationTimestamp: "${ts}"}
`;

  test('an export in a remote is imported: ServiceImport plus EndpointSlices labelled service-name and source-cluster', () => {
    const d = desiredState(input('', { b: exported(80, '2026-01-01T00:00:00Z') }));
    assert.deepEqual(
      d.serviceImports.map((i) => [i.namespace, i.name, i.spec.type, i.spec.ports, i.clusters]),
      [['shop', 'api', 'ClusterSetIP', [{ name: 'http', port: 80, protocol: 'TCP' }], ['b']]],
    );
    const s = d.endpointSlices[0]!;
    assert.equal(s.labels['multicluster.kubernetes.io/service-name'], 'api');
    assert.equal(s.labels['multicluster.kubernetes.io/source-cluster'], 'b');
    assert.equal(s.labels['kubernetes.io/service-name'], undefined);
    assert.deepEqual(s.endpoints[0]!.targetRef, { kind: 'Pod', name: 'b/api-1', namespace: 'shop' });
    assert.deepEqual(s.ports, [{ name: 'http', port: 8080, protocol: 'TCP' }]);
  });

  test('a port conflict: the oldest export wins, the newer one gets Conflict=True (PortConflict)', () => {
    const d = desiredState(
      input(exported(81, '2026-02-01T00:00:00Z'), { b: exported(80, '2026-01-01T00:00:00Z') }),
    );
    assert.deepEqual(d.serviceImports[0]!.spec.ports, [{ name: 'http', port: 80, protocol: 'TCP' }]);
    assert.deepEqual(d.serviceImports[0]!.clusters, ['a', 'b']);
    const mine = d.exportStatus.find((e) => e.name === 'api')!;
    const conflict = mine.conditions.find((c) => c.type === 'Conflict')!;
    assert.equal(conflict.status, 'True');
    assert.equal(conflict.reason, 'PortConflict');
    assert.match(conflict.message, /"http" is 81\/TCP here but 80\/TCP in cluster b/);
    // Reversed ages: the local export is the oldest, so it has no conflict.
    const r = desiredState(
      input(exported(81, '2025-01-01T00:00:00Z'), { b: exported(80, '2026-01-01T00:00:00Z') }),
    );
    assert.equal(r.exportStatus[0]!.conditions.find((c) => c.type === 'Conflict')!.status, 'False');
    assert.deepEqual(r.serviceImports[0]!.spec.ports, [{ name: 'http', port: 81, protocol: 'TCP' }]);
  });

  test('an export without its Service is invalid (NoService) and imports nothing', () => {
    const d = desiredState(
      input(
        'apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: nope, namespace: shop}\n',
      ),
    );
    assert.deepEqual(d.serviceImports, []);
    assert.deepEqual(d.exportStatus[0]!.conditions[0], {
      type: 'Valid',
      status: 'False',
      reason: 'NoService',
      message: 'Service shop/nope does not exist',
    });
  });
});

describe('validation of the service kinds', () => {
  test('a misspelt field in an Endpoints subset is refused, naming the field', () => {
    const r = parseYamlDocuments(
      'apiVersion: v1\nkind: Endpoints\nmetadata: {name: e, namespace: shop}\nsubsets: [{notReadyAdresses: [{ip: 10.0.0.1}]}]\n',
      { source: 'x.yaml', baseDir: '/' },
    );
    assert.equal(r.resources.length, 0);
    assert.equal(r.errors[0]!.field, 'subsets[0].notReadyAdresses');
  });

  test('Service ports: names required with several ports, unique; bad addresses refused', () => {
    const r = parseYamlDocuments(
      `apiVersion: v1
kind: Service
metadata: {name: s, namespace: shop}
spec: {ports: [{port: 1}, {name: a, port: 2}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: s, namespace: shop}
subsets: [{addresses: [{ip: 10.0.0.300}], ports: [{port: 1}]}]
`,
      { source: 'x.yaml', baseDir: '/' },
    );
    assert.deepEqual(
      r.errors.map((e) => [e.field, e.message]),
      [
        ['spec.ports[0].name', 'required when a Service has several ports'],
        ['subsets[0].addresses[0].ip', '"10.0.0.300" is not an IP address'],
      ],
    );
  });
});
