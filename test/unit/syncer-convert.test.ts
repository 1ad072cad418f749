// syncer/convert.ts: how a cluster's resources become feed updates. Remote objects get the
// `<cluster>/` prefix on their keys and profiles, every endpoint carries `fedmesh.io/cluster`,
// namespaces and service accounts become label-only profiles, remote policies never reach the feed.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import type { Mac } from '../../model/net.ts';
import type { Resource } from '../../model/resources.ts';
import { parseYamlDocuments } from '../../model/validate.ts';
import { ResourceKind, type Update, UpdateSchema } from '../../proto/service.ts';
import {
  baseKey,
  CLUSTER_LABEL,
  type ConvertContext,
  isOverlayKind,
  toUpdate,
} from '../../syncer/convert.ts';

const LOCAL: ConvertContext = { cluster: 'a', remote: false };
const REMOTE: ConvertContext = { cluster: 'b', remote: true };

/** Validated resources from YAML (as a datastore would produce them); the YAML must be valid. */
function resources(yaml: string): Resource[] {
  const r = parseYamlDocuments(yaml, { source: 'test.yaml', baseDir: '/tmp' });
  assert.deepEqual(r.errors, [], 'fixture YAML is valid');
  return r.resources;
}

function one(yaml: string): Resource {
  const [r, ...rest] = resources(yaml);
  assert.ok(r);
  assert.equal(rest.length, 0);
  return r;
}

function convert(ctx: ConvertContext, r: Resource): Update {
  const u = toUpdate(ctx, r);
  assert.ok(u, `${r.kind}/${r.name} gives an update`);
  return u;
}

const WEP = `
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: b--node1-k8s-db--1-eth0
  namespace: shop
  labels: {app: db, projectcalico.org/namespace: shop, projectcalico.org/orchestrator: k8s}
spec:
  orchestrator: k8s
  node: b-node1
  pod: db-1
  endpoint: eth0
  interfaceName: cali7fd651e3ab8
  ipNetworks: [10.20.1.5/32]
  profiles: [kns.shop, ksa.shop.default]
  ports: [{name: pg, protocol: TCP, port: 5432}]
`;

const NAMESPACE = `
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: web}}
`;

const POLICIES = `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db-ingress, namespace: shop}
spec:
  selector: app == 'db'
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: app == 'frontend'}
    destination: {ports: [5432]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-all}
spec: {selector: all(), order: 1000, types: [Ingress]}
`;

const OVERLAY = `
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: b-pool}
spec: {cidr: 10.20.0.0/16, vxlanMode: Always, natOutgoing: true, blockSize: 26}
---
apiVersion: crd.projectcalico.org/v1
kind: IPAMBlock
metadata: {name: 10-20-1-0-26}
spec: {cidr: 10.20.1.0/26, affinity: "host:b-node1"}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: b-node1}
spec:
  bgp: {ipv4Address: 192.168.100.21/24}
  ipv4VXLANTunnelAddr: 10.20.1.0
  vxlanTunnelMACAddr: 66:bb:00:00:00:01
`;

describe('convert: workload endpoints', () => {
  test('a remote endpoint gets a <cluster>/ key, <cluster>/ profiles and the cluster label', () => {
    const u = convert(REMOTE, one(WEP));
    assert.equal(u.key, 'b/b-node1/k8s/shop/db-1/eth0');
    assert.equal(u.cluster, 'b');
    assert.equal(u.kind, ResourceKind.WORKLOAD_ENDPOINT);
    assert.equal(u.deleted, false);
    assert.equal(u.body.case, 'workloadEndpoint');
    const w = u.body.value;
    assert.deepEqual(w.profiles, ['b/kns.shop', 'b/ksa.shop.default']);
    assert.deepEqual(w.labels, {
      app: 'db',
      'projectcalico.org/namespace': 'shop',
      'projectcalico.org/orchestrator': 'k8s',
      [CLUSTER_LABEL]: 'b',
    });
    // Its node is the remote node's prefixed name, as Calico renames remote hosts.
    assert.equal(w.node, 'b/b-node1');
    assert.equal(w.namespace, 'shop');
    assert.equal(w.pod, 'db-1');
    assert.equal(w.endpoint, 'eth0');
    assert.equal(w.interfaceName, 'cali7fd651e3ab8');
    assert.deepEqual(w.ipv4Nets, ['10.20.1.5/32']);
    assert.deepEqual(
      w.ports.map((p) => [p.name, p.protocol, p.port]),
      [['pg', 'tcp', 5432]],
    );
  });

  test('a local endpoint keeps its key and profiles and gets its own cluster label', () => {
    const u = convert(LOCAL, one(WEP));
    assert.equal(u.key, 'b-node1/k8s/shop/db-1/eth0');
    assert.equal(u.cluster, 'a');
    assert.equal(u.body.case, 'workloadEndpoint');
    assert.deepEqual(u.body.value.profiles, ['kns.shop', 'ksa.shop.default']);
    assert.equal(u.body.value.labels[CLUSTER_LABEL], 'a');
  });

  test('the cluster label cannot be spoofed by an endpoint that sets it itself', () => {
    const spoofed = WEP.replace('labels: {app: db,', `labels: {app: db, ${CLUSTER_LABEL}: a,`);
    const u = convert(REMOTE, one(spoofed));
    assert.equal(u.body.case, 'workloadEndpoint');
    assert.equal(u.body.value.labels[CLUSTER_LABEL], 'b');
  });

  test('a Kubernetes Pod converts like a WorkloadEndpoint, service account profile included', () => {
    const pod = one(`
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web}}
spec: {nodeName: b-node2, serviceAccountName: api}
status: {podIP: 10.20.2.7}
`);
    const u = convert(REMOTE, pod);
    assert.equal(u.key, 'b/b-node2/k8s/shop/web-1/eth0');
    assert.equal(u.body.case, 'workloadEndpoint');
    assert.deepEqual(u.body.value.profiles, ['b/kns.shop', 'b/ksa.shop.api']);
    assert.equal(u.body.value.labels[CLUSTER_LABEL], 'b');
    assert.equal(u.body.value.labels['projectcalico.org/serviceaccount'], 'api');
    assert.deepEqual(u.body.value.ipv4Nets, ['10.20.2.7/32']);
  });

  test('a remote host endpoint is prefixed and labelled too', () => {
    const hep = one(`
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: b-node1-eth0, labels: {role: host}}
spec: {node: b-node1, interfaceName: eth0, expectedIPs: [192.168.100.21], profiles: [host-profile]}
`);
    const u = convert(REMOTE, hep);
    assert.equal(u.key, 'b/hostendpoint/b-node1-eth0');
    assert.equal(u.kind, ResourceKind.HOST_ENDPOINT);
    assert.equal(u.body.case, 'hostEndpoint');
    assert.deepEqual(u.body.value.profiles, ['b/host-profile']);
    assert.deepEqual(u.body.value.labels, { role: 'host', [CLUSTER_LABEL]: 'b' });
    assert.equal(convert(LOCAL, hep).key, 'hostendpoint/b-node1-eth0');
  });
});

describe('convert: profiles', () => {
  test('a local Namespace becomes profile kns.<ns> with pcns.-prefixed labels', () => {
    const u = convert(LOCAL, one(NAMESPACE));
    assert.equal(u.key, 'kns.shop');
    assert.equal(u.cluster, 'a');
    assert.equal(u.kind, ResourceKind.PROFILE);
    assert.equal(u.body.case, 'profile');
    assert.deepEqual(u.body.value.labels, {
      'pcns.team': 'web',
      'pcns.kubernetes.io/metadata.name': 'shop',
      'pcns.projectcalico.org/name': 'shop',
    });
  });

  test('a remote Namespace becomes profile <cluster>/kns.<ns>, matching its endpoints’ profile names', () => {
    const [ns, wep] = resources(`${NAMESPACE}\n---\n${WEP}`);
    assert.ok(ns && wep);
    const p = convert(REMOTE, ns);
    const e = convert(REMOTE, wep);
    assert.equal(p.key, 'b/kns.shop');
    assert.equal(p.body.case, 'profile');
    assert.equal(p.body.value.labels['pcns.team'], 'web');
    assert.equal(e.body.case, 'workloadEndpoint');
    assert.ok(
      e.body.value.profiles.includes(p.key),
      'the endpoint names the namespace profile by its feed key',
    );
  });

  test('a ServiceAccount becomes profile ksa.<ns>.<sa> with pcsa.-prefixed labels', () => {
    const sa = one(`
apiVersion: v1
kind: ServiceAccount
metadata: {name: api, namespace: shop, labels: {role: api}}
`);
    const local = convert(LOCAL, sa);
    assert.equal(local.key, 'ksa.shop.api');
    assert.equal(local.body.case, 'profile');
    assert.deepEqual(local.body.value.labels, { 'pcsa.role': 'api', 'pcsa.projectcalico.org/name': 'api' });
    assert.equal(convert(REMOTE, sa).key, 'b/ksa.shop.api');
  });

  test('a remote Profile carries its labels only', () => {
    const prof = one(`
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: host-profile}
spec: {labelsToApply: {tier: infra}}
`);
    const u = convert(REMOTE, prof);
    assert.equal(u.key, 'b/host-profile');
    assert.equal(u.body.case, 'profile');
    assert.deepEqual(u.body.value.labels, { tier: 'infra' });
  });
});

describe('convert: policies are never federated', () => {
  test('remote NetworkPolicy and GlobalNetworkPolicy give no update', () => {
    const rs = resources(POLICIES);
    assert.equal(rs.length, 2);
    for (const r of rs) assert.equal(toUpdate(REMOTE, r), undefined, `${r.kind}/${r.name}`);
  });

  test('local policies do reach the feed, unprefixed', () => {
    const [np, gnp] = resources(POLICIES);
    assert.ok(np && gnp);
    const u = convert(LOCAL, np);
    assert.equal(u.key, 'policy/shop/db-ingress');
    assert.equal(u.kind, ResourceKind.POLICY);
    assert.equal(u.body.case, 'policy');
    assert.equal(u.body.value.namespace, 'shop');
    assert.equal(u.body.value.selector, "app == 'db'");
    assert.equal(u.body.value.ingress, true);
    assert.equal(u.body.value.ingressRules.length, 1);
    const g = convert(LOCAL, gnp);
    assert.equal(g.key, 'globalpolicy/deny-all');
    assert.equal(g.body.case, 'policy');
    assert.equal(g.body.value.namespace, '');
    assert.equal(g.body.value.hasOrder, true);
    assert.equal(g.body.value.order, 1000);
  });

  test('a RemoteClusterConfiguration never reaches the feed (local or remote)', () => {
    const rcc = one(`
apiVersion: projectcalico.org/v3
kind: RemoteClusterConfiguration
metadata: {name: c}
spec: {datastoreType: file, fileDatastorePath: /tmp/c}
`);
    assert.equal(toUpdate(LOCAL, rcc), undefined);
    assert.equal(toUpdate(REMOTE, rcc), undefined);
  });
});

describe('convert: overlay resources', () => {
  test('pools, blocks and nodes are the overlay kinds; nothing else is', () => {
    assert.equal(isOverlayKind('IPPool'), true);
    assert.equal(isOverlayKind('IPAMBlock'), true);
    assert.equal(isOverlayKind('Node'), true);
    for (const k of [
      'WorkloadEndpoint',
      'HostEndpoint',
      'Namespace',
      'ServiceAccount',
      'Profile',
      'NetworkPolicy',
      'GlobalNetworkPolicy',
      'NetworkSet',
      'GlobalNetworkSet',
      'RemoteClusterConfiguration',
    ] as const) {
      assert.equal(isOverlayKind(k), false, k);
    }
  });

  test('remote pool, block and node are prefixed and carry the overlay data', () => {
    const [pool, block, node] = resources(OVERLAY);
    assert.ok(pool && block && node);

    const p = convert(REMOTE, pool);
    assert.equal(p.key, 'b/ippool/b-pool');
    assert.equal(p.kind, ResourceKind.IP_POOL);
    assert.equal(p.body.case, 'ipPool');
    assert.equal(p.body.value.cidr, '10.20.0.0/16');
    assert.equal(p.body.value.natOutgoing, true);
    assert.equal(p.body.value.vxlanMode, 'Always');
    assert.equal(p.body.value.blockSize, 26);

    const b = convert(REMOTE, block);
    assert.equal(b.key, 'b/ipamblock/10-20-1-0-26');
    assert.equal(b.kind, ResourceKind.IPAM_BLOCK);
    assert.equal(b.body.case, 'ipamBlock');
    assert.equal(b.body.value.cidr, '10.20.1.0/26');
    assert.equal(b.body.value.affinityNode, 'b/b-node1', 'affinity host:b/b-node1, as Calico has it');

    const n = convert(REMOTE, node);
    assert.equal(n.key, 'b/node/b-node1');
    assert.equal(n.kind, ResourceKind.NODE);
    assert.equal(n.body.case, 'node');
    assert.equal(n.body.value.name, 'b/b-node1', 'two clusters may each have a node b-node1');
    assert.equal(n.body.value.ipv4Address, '192.168.100.21');
    assert.equal(n.body.value.ipv4PrefixLen, 24);
    assert.equal(n.body.value.vxlanTunnelAddress, '10.20.1.0');
    assert.equal(n.body.value.vxlanTunnelMac, '66:bb:00:00:00:01');

    assert.deepEqual(
      [pool, block, node].map((r) => convert(LOCAL, r).key),
      ['ippool/b-pool', 'ipamblock/10-20-1-0-26', 'node/b-node1'],
    );
    const lb = convert(LOCAL, block);
    const ln = convert(LOCAL, node);
    assert.ok(lb.body.case === 'ipamBlock' && ln.body.case === 'node');
    assert.equal(lb.body.value.affinityNode, 'b-node1', 'local names are not prefixed');
    assert.equal(ln.body.value.name, 'b-node1');
  });

  test('network sets: local ones labelled with their cluster; a remote never sends them (as Calico)', () => {
    const [ns, gns] = resources(`
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: partners, namespace: shop, labels: {kind: partner}}
spec: {nets: [198.51.100.0/24]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: office, labels: {kind: office}}
spec: {nets: [203.0.113.0/24]}
`);
    assert.ok(ns && gns);
    const u = convert(LOCAL, ns);
    assert.equal(u.key, 'networkset/shop/partners');
    assert.equal(u.body.case, 'networkSet');
    assert.deepEqual(u.body.value.labels, { kind: 'partner', [CLUSTER_LABEL]: 'a' });
    assert.equal(convert(LOCAL, gns).key, 'globalnetworkset/office');
    // A remote cluster must not put CIDRs into local rules: its network sets stay home.
    assert.equal(toUpdate(REMOTE, ns), undefined);
    assert.equal(toUpdate(REMOTE, gns), undefined);
    assert.equal(baseKey(gns), 'globalnetworkset/office');
  });
});

test('updates written out as literals are the messages protobuf decodes, field for field', () => {
  // Endpoints are built without create() (convert.ts says why): every field there, nothing more.
  const hep = `
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-eth0, labels: {role: node}}
spec: {node: n1, interfaceName: eth0, expectedIPs: [192.168.0.11]}
`;
  const all = resources([WEP, NAMESPACE, POLICIES, OVERLAY, hep].join('---\n'));
  const wep = all[0];
  assert.ok(wep?.kind === 'WorkloadEndpoint');
  const bare: Resource = {
    ...wep,
    spec: { ...wep.spec, ports: [], profiles: [], mac: 'ee:ee:ee:ee:ee:ee' as Mac },
  };
  for (const ctx of [LOCAL, REMOTE]) {
    for (const r of [...all, bare]) {
      const u = toUpdate(ctx, r);
      if (!u) continue;
      assert.deepStrictEqual(u, fromBinary(UpdateSchema, toBinary(UpdateSchema, u)), `${r.kind}/${r.name}`);
    }
  }
});
