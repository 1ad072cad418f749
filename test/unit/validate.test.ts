// Validation of YAML documents into Resources: every kind with its defaults, Pod conversion, and
// refusals that name the file, document, resource and field while the good documents survive.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { podInterfaceName, workloadEndpointName } from '../../model/pod.ts';
import type { Resource, ResourceError, ResourceKind } from '../../model/resources.ts';
import { parseYamlDocuments, validateResource } from '../../model/validate.ts';

const here = dirname(fileURLToPath(import.meta.url));
const BASE = '/clusters/a';
const SOURCE = '/clusters/a/test.yaml';

function parse(text: string) {
  return parseYamlDocuments(text, { source: SOURCE, baseDir: BASE });
}

/** Parse a text that must be accepted whole; return its resources. */
function accept(text: string): Resource[] {
  const r = parse(text);
  assert.deepEqual(r.errors, [], 'no errors expected');
  return r.resources;
}

function one<K extends ResourceKind>(text: string, kind: K): Extract<Resource, { kind: K }> {
  const rs = accept(text);
  assert.equal(rs.length, 1);
  assert.equal(rs[0]?.kind, kind);
  return rs[0] as Extract<Resource, { kind: K }>;
}

function find<K extends ResourceKind>(rs: Resource[], kind: K, name: string): Extract<Resource, { kind: K }> {
  const r = rs.find((x) => x.kind === kind && x.name === name);
  assert.ok(r, `${kind}/${name} accepted`);
  return r as Extract<Resource, { kind: K }>;
}

const emptyEntity = { nets: [], notNets: [], ports: [], notPorts: [] };

describe('the DESIGN.md examples', () => {
  const text = readFileSync(join(here, '../fixtures/validate/design-example.yaml'), 'utf8');
  const rs = accept(text);

  test('every document is accepted, with its origin', () => {
    assert.deepEqual(
      rs.map((r) => [r.kind, r.origin.source, r.origin.document]),
      [
        ['Node', SOURCE, 0],
        ['IPPool', SOURCE, 1],
        ['IPAMBlock', SOURCE, 2],
        ['Namespace', SOURCE, 3],
        ['WorkloadEndpoint', SOURCE, 4],
        ['RemoteClusterConfiguration', SOURCE, 5],
        ['NetworkPolicy', SOURCE, 6],
      ],
    );
  });

  test('Node: address and prefix split, VXLAN tunnel address and MAC', () => {
    const n = find(rs, 'Node', 'a-node1');
    assert.deepEqual(n.spec, {
      ipv4Address: '192.168.100.11',
      ipv4PrefixLen: 24,
      vxlanTunnelAddress: '10.10.0.0',
      vxlanTunnelMac: '66:aa:00:00:00:01',
    });
    assert.deepEqual(n.labels, {});
    assert.deepEqual(n.annotations, {});
  });

  test('IPPool: given fields kept, the rest defaulted', () => {
    assert.deepEqual(find(rs, 'IPPool', 'a-pool').spec, {
      cidr: '10.10.0.0/16',
      vxlanMode: 'Always',
      ipipMode: 'Never',
      natOutgoing: true,
      disabled: false,
      blockSize: 26,
    });
  });

  test('IPAMBlock: host affinity becomes affinityNode', () => {
    assert.deepEqual(find(rs, 'IPAMBlock', '10-10-0-0-26').spec, {
      cidr: '10.10.0.0/26',
      affinityNode: 'a-node1',
    });
  });

  test('Namespace: labels kept, plus the label the API server adds', () => {
    assert.deepEqual(find(rs, 'Namespace', 'shop').labels, {
      team: 'web',
      'kubernetes.io/metadata.name': 'shop',
    });
  });

  test('WorkloadEndpoint: as written, defaults filled in', () => {
    const w = find(rs, 'WorkloadEndpoint', 'a--node1-k8s-frontend--1-eth0');
    assert.equal(w.namespace, 'shop');
    assert.deepEqual(w.labels, {
      app: 'frontend',
      'projectcalico.org/namespace': 'shop',
      'projectcalico.org/orchestrator': 'k8s',
    });
    assert.deepEqual(w.spec, {
      orchestrator: 'k8s',
      node: 'a-node1',
      pod: 'frontend-1',
      endpoint: 'eth0',
      interfaceName: 'cali1a2b3c4d5e6',
      ipNetworks: ['10.10.0.5/32'],
      profiles: ['kns.shop', 'ksa.shop.default'],
      ports: [],
    });
  });

  test('RemoteClusterConfiguration: path resolved against the file directory, overlay routing', () => {
    assert.deepEqual(find(rs, 'RemoteClusterConfiguration', 'b').spec, {
      datastoreType: 'file',
      fileDatastorePath: '/clusters/cluster-b',
      overlayRouting: true,
    });
  });

  test('NetworkPolicy: tier, protocol and ports normalised, empty entity rules filled in', () => {
    assert.deepEqual(find(rs, 'NetworkPolicy', 'frontend-to-remote-db').spec, {
      tier: 'default',
      selector: "app == 'frontend'",
      types: { ingress: false, egress: true },
      ingress: [],
      egress: [
        {
          action: 'Allow',
          protocol: 'tcp',
          source: emptyEntity,
          destination: {
            ...emptyEntity,
            selector: "app == 'db'",
            ports: [{ kind: 'num', first: 5432, last: 5432 }],
          },
        },
      ],
    });
  });
});

describe('other kinds and their defaults', () => {
  test('HostEndpoint', () => {
    const h = one(
      `apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: a-node1-eth0, labels: {role: gateway}}
spec:
  node: a-node1
  interfaceName: eth0
  expectedIPs: [192.168.100.11, "fd00::1"]
  ports: [{name: ssh, port: 22}]`,
      'HostEndpoint',
    );
    assert.deepEqual(h.spec, {
      node: 'a-node1',
      interfaceName: 'eth0',
      expectedIPs: ['192.168.100.11'], // IPv6 dropped: IPv4 dataplane
      profiles: [],
      ports: [{ name: 'ssh', protocol: 'tcp', port: 22 }],
    });
    assert.deepEqual(h.labels, { role: 'gateway' });
  });

  test('Profile keeps labelsToApply and its rules (Felix applies them after the tiers)', () => {
    const p = one(
      `apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.shop}
spec:
  labelsToApply: {pcns.team: web}
  ingress: [{action: Allow}]`,
      'Profile',
    );
    assert.deepEqual(p.spec.labelsToApply, { 'pcns.team': 'web' });
    assert.deepEqual(
      p.spec.ingress?.map((r) => r.action),
      ['Allow'],
    );
    assert.deepEqual(p.spec.egress, []);
    const bare = one('{apiVersion: projectcalico.org/v3, kind: Profile, metadata: {name: empty}}', 'Profile');
    assert.deepEqual(bare.spec, { labelsToApply: {}, ingress: [], egress: [] });
  });

  test('GlobalNetworkPolicy with every rule field', () => {
    const g = one(
      `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.block}
spec:
  tier: security
  order: 10.5
  selector: all()
  ingress:
  - action: Deny
    protocol: udplite
    notProtocol: 17
    ipVersion: 4
    source:
      nets: [10.0.0.0/8, 192.168.1.7]
      notNets: [10.1.0.0/16]
      namespaceSelector: team == 'web'
      serviceAccounts: {names: [api], selector: tier == 'x'}
      ports: ["8000:8080", http, "53"]
      notPorts: [9090]
  - action: Allow
    protocol: ICMP
    icmp: {type: 8, code: 0}
  - action: Pass
    destination: {ports: [metrics]}
  egress:
  - action: Log`,
      'GlobalNetworkPolicy',
    );
    assert.equal(g.spec.tier, 'security');
    assert.equal(g.spec.order, 10.5);
    assert.deepEqual(g.spec.types, { ingress: true, egress: true });
    assert.deepEqual(g.spec.ingress[0], {
      action: 'Deny',
      protocol: 'udplite',
      notProtocol: '17',
      ipVersion: 4,
      source: {
        nets: ['10.0.0.0/8', '192.168.1.7/32'],
        notNets: ['10.1.0.0/16'],
        namespaceSelector: "team == 'web'",
        serviceAccounts: { names: ['api'], selector: "tier == 'x'" },
        ports: [
          { kind: 'num', first: 8000, last: 8080 },
          { kind: 'name', name: 'http' },
          { kind: 'num', first: 53, last: 53 },
        ],
        notPorts: [{ kind: 'num', first: 9090, last: 9090 }],
      },
      destination: emptyEntity,
    });
    assert.deepEqual(g.spec.ingress[1], {
      action: 'Allow',
      protocol: 'icmp',
      icmp: { type: 8, code: 0 },
      source: emptyEntity,
      destination: emptyEntity,
    });
    // A named port needs no protocol (Calico's rule: it carries its own).
    assert.deepEqual(g.spec.ingress[2]?.destination.ports, [{ kind: 'name', name: 'metrics' }]);
    assert.deepEqual(g.spec.egress, [{ action: 'Log', source: emptyEntity, destination: emptyEntity }]);
  });

  test("policy types default as Calico's", () => {
    const typesOf = (rules: string) =>
      one(
        `{apiVersion: projectcalico.org/v3, kind: NetworkPolicy, metadata: {name: p, namespace: ns}, spec: {${rules}}}`,
        'NetworkPolicy',
      ).spec.types;
    assert.deepEqual(typesOf(''), { ingress: true, egress: false });
    assert.deepEqual(typesOf('ingress: [{action: Allow}]'), { ingress: true, egress: false });
    assert.deepEqual(typesOf('egress: [{action: Allow}]'), { ingress: false, egress: true });
    assert.deepEqual(typesOf('ingress: [{action: Allow}], egress: [{action: Allow}]'), {
      ingress: true,
      egress: true,
    });
    assert.deepEqual(typesOf('types: [Egress]'), { ingress: false, egress: true });
    assert.deepEqual(typesOf('types: [], egress: [{action: Deny}]'), { ingress: false, egress: true });
  });

  test('a namespaced resource without a namespace is in "default"; policy selector defaults to all()', () => {
    const p = one(
      '{apiVersion: projectcalico.org/v3, kind: NetworkPolicy, metadata: {name: p}}',
      'NetworkPolicy',
    );
    assert.equal(p.namespace, 'default');
    assert.equal(p.spec.selector, 'all()');
    assert.equal(p.spec.order, undefined);
  });

  test('NetworkSet and GlobalNetworkSet', () => {
    const rs = accept(`apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: partners, namespace: shop, labels: {kind: partner}}
spec: {nets: [198.51.100.0/24, 203.0.113.9]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: blocklist}
spec: {nets: [192.0.2.0/24, "2001:db8::/32"]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: empty}`);
    assert.deepEqual(find(rs, 'NetworkSet', 'partners').spec, {
      nets: ['198.51.100.0/24', '203.0.113.9/32'],
    });
    assert.equal(find(rs, 'NetworkSet', 'partners').namespace, 'shop');
    assert.deepEqual(find(rs, 'GlobalNetworkSet', 'blocklist').spec, { nets: ['192.0.2.0/24'] });
    assert.deepEqual(find(rs, 'GlobalNetworkSet', 'empty').spec, { nets: [] });
  });

  test('IPPool: every default, and the crd.projectcalico.org/v1 form', () => {
    const rs =
      accept(`{apiVersion: projectcalico.org/v3, kind: IPPool, metadata: {name: p1}, spec: {cidr: 10.20.0.0/16}}
---
{apiVersion: crd.projectcalico.org/v1, kind: IPPool, metadata: {name: p2}, spec: {cidr: 10.30.0.0/16, blockSize: 28, ipipMode: CrossSubnet}}
---
{apiVersion: crd.projectcalico.org/v1, kind: IPAMBlock, metadata: {name: b1}, spec: {cidr: 10.30.0.0/28}}`);
    assert.deepEqual(find(rs, 'IPPool', 'p1').spec, {
      cidr: '10.20.0.0/16',
      vxlanMode: 'Never',
      ipipMode: 'Never',
      natOutgoing: false,
      disabled: false,
      blockSize: 26,
    });
    assert.equal(find(rs, 'IPPool', 'p2').spec.blockSize, 28);
    assert.equal(find(rs, 'IPPool', 'p2').spec.ipipMode, 'CrossSubnet');
    assert.deepEqual(find(rs, 'IPAMBlock', 'b1').spec, { cidr: '10.30.0.0/28' });
  });

  test('IPv6 pools are skipped, not refused', () => {
    const r = parse(
      '{apiVersion: projectcalico.org/v3, kind: IPPool, metadata: {name: v6}, spec: {cidr: "fd00::/48"}}',
    );
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.resources, []);
    assert.equal(r.skipped[0]?.name, 'v6');
  });

  test('Node with an empty spec, and a bare address', () => {
    const rs = accept(`{apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: n1}}
---
{apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: n2}, spec: {bgp: {ipv4Address: 10.0.0.2}}}`);
    assert.deepEqual(find(rs, 'Node', 'n1').spec, {});
    assert.deepEqual(find(rs, 'Node', 'n2').spec, { ipv4Address: '10.0.0.2' });
  });

  test('RemoteClusterConfiguration: etcdv3, kubernetes, overlay default Disabled, absolute paths kept', () => {
    const rs = accept(`apiVersion: projectcalico.org/v3
kind: RemoteClusterConfiguration
metadata: {name: c}
spec: {datastoreType: etcdv3, etcdEndpoints: "https://10.0.0.1:2379, https://10.0.0.2:2379"}
---
apiVersion: projectcalico.org/v3
kind: RemoteClusterConfiguration
metadata: {name: d}
spec: {datastoreType: kubernetes, kubeconfig: /etc/d/kubeconfig, syncOptions: {overlayRoutingMode: Disabled}}
---
apiVersion: projectcalico.org/v3
kind: RemoteClusterConfiguration
metadata: {name: e}
spec: {clusterAccessSecret: {name: e-secret, namespace: calico-system}}
---
apiVersion: projectcalico.org/v3
kind: RemoteClusterConfiguration
metadata: {name: f}
spec: {datastoreType: file, fileDatastorePath: /data/f}`);
    assert.deepEqual(find(rs, 'RemoteClusterConfiguration', 'c').spec, {
      datastoreType: 'etcdv3',
      etcdEndpoints: ['https://10.0.0.1:2379', 'https://10.0.0.2:2379'],
      overlayRouting: false,
    });
    assert.deepEqual(find(rs, 'RemoteClusterConfiguration', 'd').spec, {
      datastoreType: 'kubernetes',
      kubeconfig: '/etc/d/kubeconfig',
      overlayRouting: false,
    });
    // With a clusterAccessSecret the Secret's datastoreType key decides (Calico): none here.
    assert.deepEqual(find(rs, 'RemoteClusterConfiguration', 'e').spec, {
      clusterAccessSecret: { name: 'e-secret', namespace: 'calico-system' },
      overlayRouting: false,
    });
    assert.equal(find(rs, 'RemoteClusterConfiguration', 'f').spec.fileDatastorePath, '/data/f');
  });

  test('WorkloadEndpoint gains the implicit labels it lacks, keeps those it has; host bits keep the address', () => {
    const w = one(
      `apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: n1-k8s-db-eth0, namespace: data, labels: {app: db, projectcalico.org/orchestrator: custom}}
spec:
  node: n1
  pod: db
  interfaceName: calid0
  serviceAccountName: db-sa
  ipNetworks: [10.10.1.5, 10.10.1.6/24, "fd00::5/128"]
  mac: "AA:BB:CC:00:11:22"
  ports: [{name: pg, protocol: TCP, port: 5432}]`,
      'WorkloadEndpoint',
    );
    assert.deepEqual(w.labels, {
      app: 'db',
      'projectcalico.org/orchestrator': 'custom',
      'projectcalico.org/namespace': 'data',
      'projectcalico.org/serviceaccount': 'db-sa',
    });
    assert.deepEqual(w.spec.ipNetworks, ['10.10.1.5/32', '10.10.1.6/32']);
    assert.equal(w.spec.mac, 'aa:bb:cc:00:11:22');
    assert.equal(w.spec.endpoint, 'eth0');
    assert.equal(w.spec.serviceAccountName, 'db-sa');
    assert.deepEqual(w.spec.ports, [{ name: 'pg', protocol: 'tcp', port: 5432 }]);
  });

  test('ServiceAccount', () => {
    const s = one(
      '{apiVersion: v1, kind: ServiceAccount, metadata: {name: api, namespace: shop}}',
      'ServiceAccount',
    );
    assert.equal(s.namespace, 'shop');
    assert.deepEqual(s.labels, {});
  });

  test('a List (kubectl get -o yaml) is expanded', () => {
    const rs = accept(`apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: one}}
- {apiVersion: v1, kind: Namespace, metadata: {name: two}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSetList
items:
- {metadata: {name: gns}, spec: {nets: [10.0.0.0/8]}}`);
    assert.deepEqual(
      rs.map((r) => `${r.kind}/${r.name}`),
      ['Namespace/one', 'Namespace/two', 'GlobalNetworkSet/gns'],
    );
  });

  test('Kubernetes Service and Endpoints are read (the services controller uses them); NetworkPolicy is converted', () => {
    const r =
      parse(`{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: np, namespace: shop}, spec: {podSelector: {}}}
---
{apiVersion: v1, kind: Service, metadata: {name: web, namespace: shop}}
---
{apiVersion: v1, kind: Endpoints, metadata: {name: web, namespace: shop}}`);
    assert.deepEqual(r.errors, []);
    assert.deepEqual(
      r.resources.map((x) => [x.kind, x.namespace, x.name]),
      [
        ['NetworkPolicy', 'shop', 'knp.default.np'],
        ['Service', 'shop', 'web'],
        ['Endpoints', 'shop', 'web'],
      ],
    );
    assert.deepEqual(r.skipped, []);
  });

  test("Calico's fields that fedmesh does not use are accepted, nulls are unset", () => {
    const p = one(
      `{apiVersion: projectcalico.org/v3, kind: IPPool, metadata: {name: p, labels: null, uid: x}, spec: {cidr: 10.0.0.0/16, nodeSelector: all(), blockSize: null}}`,
      'IPPool',
    );
    assert.deepEqual(p.labels, {});
    assert.equal(p.spec.blockSize, 26);
  });
});

describe('Pod → WorkloadEndpoint', () => {
  const podYaml = (extra = '') => `apiVersion: v1
kind: Pod
metadata:
  name: frontend-1
  namespace: shop
  labels: {app: frontend}
  annotations: {note: hi}
spec:
  nodeName: a-node1
  serviceAccountName: web
  containers:
  - name: app
    ports:
    - {name: http, containerPort: 8080}
    - {containerPort: 9999}
    - {name: dns, containerPort: 53, protocol: UDP}
status:
  phase: Running
  podIP: 10.10.0.7
  podIPs: [{ip: 10.10.0.7}, {ip: "fd00::7"}]
${extra}`;

  test("is converted as Calico does (interface name from SHA-1 of '<namespace>.<pod>')", () => {
    const w = one(podYaml(), 'WorkloadEndpoint');
    const expectedIface = `cali${createHash('sha1').update('shop.frontend-1').digest('hex').slice(0, 11)}`;
    assert.equal(w.spec.interfaceName, expectedIface);
    assert.equal(podInterfaceName('shop', 'frontend-1'), expectedIface);
    assert.equal(w.name, 'a--node1-k8s-frontend--1-eth0');
    assert.equal(w.namespace, 'shop');
    assert.deepEqual(w.labels, {
      app: 'frontend',
      'projectcalico.org/namespace': 'shop',
      'projectcalico.org/orchestrator': 'k8s',
      'projectcalico.org/serviceaccount': 'web',
    });
    assert.deepEqual(w.annotations, { note: 'hi' });
    assert.deepEqual(w.spec, {
      orchestrator: 'k8s',
      node: 'a-node1',
      pod: 'frontend-1',
      endpoint: 'eth0',
      interfaceName: expectedIface,
      ipNetworks: ['10.10.0.7/32'],
      profiles: ['kns.shop', 'ksa.shop.web'],
      serviceAccountName: 'web',
      ports: [
        { name: 'http', protocol: 'tcp', port: 8080 },
        { name: 'dns', protocol: 'udp', port: 53 },
      ],
    });
    assert.equal(w.origin.source, SOURCE);
  });

  test('the endpoint name escapes dashes in every segment', () => {
    assert.equal(workloadEndpointName('node-a.b', 'k8s', 'my-pod', 'eth0'), 'node--a.b-k8s-my--pod-eth0');
  });

  test('a Pod without serviceAccountName uses "default"; status.podIP alone is enough', () => {
    const w = one(
      `{apiVersion: v1, kind: Pod, metadata: {name: p, namespace: ns}, spec: {nodeName: n}, status: {podIP: 10.1.2.3}}`,
      'WorkloadEndpoint',
    );
    assert.deepEqual(w.spec.profiles, ['kns.ns', 'ksa.ns.default']);
    assert.equal(w.labels['projectcalico.org/serviceaccount'], 'default');
    assert.deepEqual(w.spec.ipNetworks, ['10.1.2.3/32']);
    assert.deepEqual(w.spec.ports, []);
  });

  test("Calico's podIP annotation takes precedence over status", () => {
    const w = one(
      `{apiVersion: v1, kind: Pod, metadata: {name: p, namespace: ns, annotations: {cni.projectcalico.org/podIP: 10.9.9.9/32}}, spec: {nodeName: n}, status: {podIP: 10.1.2.3}}`,
      'WorkloadEndpoint',
    );
    assert.deepEqual(w.spec.ipNetworks, ['10.9.9.9/32']);
  });

  test('Pods that are not running, or on the host network, are skipped silently', () => {
    const r = parse(`{apiVersion: v1, kind: Pod, metadata: {name: pending}, spec: {containers: []}}
---
{apiVersion: v1, kind: Pod, metadata: {name: no-ip}, spec: {nodeName: n}}
---
{apiVersion: v1, kind: Pod, metadata: {name: host}, spec: {nodeName: n, hostNetwork: true}, status: {podIP: 192.168.1.1}}
---
{apiVersion: v1, kind: Pod, metadata: {name: done}, spec: {nodeName: n}, status: {phase: Succeeded, podIP: 10.0.0.1}}
---
{apiVersion: v1, kind: Pod, metadata: {name: v6only}, spec: {nodeName: n}, status: {podIP: "fd00::1"}}`);
    assert.deepEqual(r, { resources: [], errors: [], skipped: [] });
  });
});

describe('refusals', () => {
  // Bad documents interleaved with good ones: each bad one is refused alone, with its field.
  const cases: { name: string; doc: string; resource?: string; field?: string; message: RegExp }[] = [
    {
      name: 'bad CIDR',
      doc: '{apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: s}, spec: {nets: [10.0.0.0/8, 10.0.0.300/24]}}',
      resource: 'GlobalNetworkSet/s',
      field: 'spec.nets[1]',
      message: /not an IPv4 address/,
    },
    {
      name: 'host bits in a rule net',
      doc: `{apiVersion: projectcalico.org/v3, kind: NetworkPolicy, metadata: {name: p, namespace: shop},
        spec: {egress: [{action: Allow, destination: {nets: [10.0.0.1/24]}}]}}`,
      resource: 'NetworkPolicy/shop/p',
      field: 'spec.egress[0].destination.nets[0]',
      message: /host bits/,
    },
    {
      name: 'unknown action',
      doc: '{apiVersion: projectcalico.org/v3, kind: GlobalNetworkPolicy, metadata: {name: g}, spec: {ingress: [{action: Accept}]}}',
      resource: 'GlobalNetworkPolicy/g',
      field: 'spec.ingress[0].action',
      message: /one of Allow, Deny, Log, Pass/,
    },
    {
      name: 'backwards port range',
      doc: `{apiVersion: projectcalico.org/v3, kind: GlobalNetworkPolicy, metadata: {name: g},
        spec: {egress: [{action: Allow, protocol: TCP, destination: {ports: [80, "9000:8000"]}}]}}`,
      resource: 'GlobalNetworkPolicy/g',
      field: 'spec.egress[0].destination.ports[1]',
      message: /backwards/,
    },
    {
      name: 'ports with protocol ICMP',
      doc: `{apiVersion: projectcalico.org/v3, kind: GlobalNetworkPolicy, metadata: {name: g},
        spec: {ingress: [{action: Allow, protocol: ICMP, destination: {ports: [80]}}]}}`,
      resource: 'GlobalNetworkPolicy/g',
      field: 'spec.ingress[0].destination.ports',
      message: /ports need protocol TCP, UDP, SCTP or UDPLite/,
    },
    {
      name: 'numeric ports without a protocol',
      doc: `{apiVersion: projectcalico.org/v3, kind: GlobalNetworkPolicy, metadata: {name: g},
        spec: {ingress: [{action: Allow, source: {notPorts: [http, 443]}}]}}`,
      resource: 'GlobalNetworkPolicy/g',
      field: 'spec.ingress[0].source.notPorts[1]',
      message: /needs protocol TCP, UDP, SCTP or UDPLite/,
    },
    {
      name: 'port out of range',
      doc: `{apiVersion: projectcalico.org/v3, kind: GlobalNetworkPolicy, metadata: {name: g},
        spec: {ingress: [{action: Allow, protocol: UDP, destination: {ports: [0]}}]}}`,
      field: 'spec.ingress[0].destination.ports[0]',
      message: /out of range 1\.\.65535/,
    },
    {
      name: 'unknown protocol',
      doc: '{apiVersion: projectcalico.org/v3, kind: GlobalNetworkPolicy, metadata: {name: g}, spec: {ingress: [{action: Allow, protocol: TCPP}]}}',
      field: 'spec.ingress[0].protocol',
      message: /unknown protocol "TCPP"/,
    },
    {
      name: 'ICMP match without protocol ICMP',
      doc: '{apiVersion: projectcalico.org/v3, kind: GlobalNetworkPolicy, metadata: {name: g}, spec: {ingress: [{action: Allow, protocol: TCP, icmp: {type: 8}}]}}',
      field: 'spec.ingress[0].icmp',
      message: /ICMP/,
    },
    {
      name: 'unknown kind',
      doc: '{apiVersion: projectcalico.org/v3, kind: Gadget, metadata: {name: x}}',
      resource: 'Gadget/x',
      field: 'kind',
      message: /unknown kind "Gadget"/,
    },
    {
      name: 'known kind under the wrong apiVersion',
      doc: '{apiVersion: v1, kind: IPPool, metadata: {name: x}, spec: {cidr: 10.0.0.0/16}}',
      field: 'apiVersion',
      message: /unknown kind: IPPool is not served by apiVersion v1/,
    },
    {
      name: 'missing name',
      doc: '{apiVersion: projectcalico.org/v3, kind: IPPool, metadata: {labels: {a: b}}, spec: {cidr: 10.0.0.0/16}}',
      field: 'metadata.name',
      message: /^required$/,
    },
    {
      name: 'invalid name',
      doc: '{apiVersion: v1, kind: Namespace, metadata: {name: Shop_1}}',
      resource: 'Namespace/Shop_1',
      field: 'metadata.name',
      message: /not a valid name/,
    },
    {
      name: 'bad blockSize',
      doc: '{apiVersion: projectcalico.org/v3, kind: IPPool, metadata: {name: p}, spec: {cidr: 10.0.0.0/16, blockSize: 33}}',
      resource: 'IPPool/p',
      field: 'spec.blockSize',
      message: /out of range 20\.\.32/,
    },
    {
      name: 'pool smaller than its block size',
      doc: '{apiVersion: projectcalico.org/v3, kind: IPPool, metadata: {name: p}, spec: {cidr: 10.0.0.0/27}}',
      field: 'spec.cidr',
      message: /smaller than its blockSize/,
    },
    {
      name: 'file RCC without a path',
      doc: '{apiVersion: projectcalico.org/v3, kind: RemoteClusterConfiguration, metadata: {name: b}, spec: {datastoreType: file}}',
      resource: 'RemoteClusterConfiguration/b',
      field: 'spec.fileDatastorePath',
      message: /required when datastoreType is file/,
    },
    {
      name: 'label value that is not a string',
      doc: '{apiVersion: v1, kind: Namespace, metadata: {name: n, labels: {version: 2}}}',
      field: 'metadata.labels.version',
      message: /expected a string, got number 2/,
    },
    {
      name: 'WorkloadEndpoint without node',
      doc: '{apiVersion: projectcalico.org/v3, kind: WorkloadEndpoint, metadata: {name: w, namespace: ns}, spec: {pod: p, interfaceName: cali0}}',
      resource: 'WorkloadEndpoint/ns/w',
      field: 'spec.node',
      message: /^required$/,
    },
    {
      name: 'bad MAC on a Node',
      doc: '{apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: n}, spec: {vxlanTunnelMACAddr: "66:aa:00"}}',
      field: 'spec.vxlanTunnelMACAddr',
      message: /not a MAC address/,
    },
    {
      name: 'Pod with a bad IP',
      doc: '{apiVersion: v1, kind: Pod, metadata: {name: p, namespace: ns}, spec: {nodeName: n}, status: {podIPs: [{ip: 10.0.0.999}]}}',
      resource: 'Pod/ns/p',
      field: 'status.podIPs[0].ip',
      message: /not an IPv4 address/,
    },
    {
      name: 'service match (would widen the rule if ignored)',
      doc: `{apiVersion: projectcalico.org/v3, kind: GlobalNetworkPolicy, metadata: {name: g},
        spec: {egress: [{action: Allow, destination: {services: {name: kube-dns, namespace: kube-system}}}]}}`,
      field: 'spec.egress[0].destination.services',
      message: /not supported/,
    },
    {
      name: 'not a mapping',
      doc: '- just\n- a list',
      message: /expected a mapping/,
    },
    {
      name: 'YAML syntax error',
      doc: 'apiVersion: v1\nkind: Namespace\nmetadata: {name: broken\n  labels: [',
      message: /YAML syntax error: .*line \d+/,
    },
  ];
  const good = (i: number) => `{apiVersion: v1, kind: Namespace, metadata: {name: good-${i}}}`;
  const text = cases.map((c, i) => `${good(i)}\n---\n${c.doc}\n---\n`).join('');
  const result = parse(`${text}${good(cases.length)}\n`);

  test('the good documents in the same file are all accepted', () => {
    assert.deepEqual(
      result.resources.map((r) => r.name),
      Array.from({ length: cases.length + 1 }, (_, i) => `good-${i}`),
    );
  });

  cases.forEach((c, i) => {
    test(`refused: ${c.name}`, () => {
      const errs = result.errors.filter((e: ResourceError) => e.origin.document === 2 * i + 1);
      assert.ok(errs.length >= 1, `an error for document ${2 * i + 1}`);
      const e = errs[0] as ResourceError;
      assert.equal(e.origin.source, SOURCE);
      if (c.resource) assert.equal(e.resource, c.resource);
      assert.equal(e.field, c.field);
      assert.match(e.message, c.message);
    });
  });

  test('nothing else is refused', () => {
    const docs = new Set(result.errors.map((e) => e.origin.document));
    assert.deepEqual(
      [...docs].sort((a, b) => (a ?? 0) - (b ?? 0)),
      cases.map((_, i) => 2 * i + 1),
    );
  });

  test('the same resource twice in one file: the first wins', () => {
    const r = parse(`{apiVersion: v1, kind: Namespace, metadata: {name: twice, labels: {n: "1"}}}
---
{apiVersion: v1, kind: Namespace, metadata: {name: twice, labels: {n: "2"}}}`);
    assert.equal(r.resources.length, 1);
    assert.equal(r.resources[0]?.labels.n, '1');
    assert.equal(r.errors.length, 1);
    assert.equal(r.errors[0]?.origin.document, 1);
    assert.match(r.errors[0]?.message ?? '', /defined twice.*document 0 is used/);
  });

  test('errors in a List item name the item', () => {
    const r = parse(`apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: ok}}
- {apiVersion: v1, kind: Namespace, metadata: {name: BAD}}`);
    assert.equal(r.resources.length, 1);
    assert.equal(r.errors[0]?.field, 'items[1].metadata.name');
  });

  test('validateResource on a decoded object', () => {
    const origin = { source: 'etcd:/calico/resources/v3/projectcalico.org/ippools/p' };
    const ok = validateResource(
      {
        apiVersion: 'projectcalico.org/v3',
        kind: 'IPPool',
        metadata: { name: 'p' },
        spec: { cidr: '10.0.0.0/16' },
      },
      origin,
      '/',
    );
    assert.ok('resource' in ok && ok.resource.kind === 'IPPool');
    const bad = validateResource({ kind: 'IPPool', metadata: { name: 'p' } }, origin, '/');
    assert.ok('errors' in bad);
    assert.equal(bad.errors[0]?.field, 'apiVersion');
    assert.equal(bad.errors[0]?.resource, 'IPPool/p');
  });
});
