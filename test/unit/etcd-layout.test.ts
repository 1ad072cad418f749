// Calico's etcd key layout both ways (no etcd needed): keys parsed, values decoded through the
// model's validation with key-named refusals, and YAML documents encoded as Calico stores them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  BLOCK_PREFIX,
  blockKey,
  decodeKv,
  encodeDocument,
  parseKey,
  RESOURCE_PREFIX,
  resourceKey,
} from '../../syncer/datastore/etcd-layout.ts';

test('keys: namespaced and global kinds, blocks; other Calico keys are ignored, malformed ones named', () => {
  assert.deepEqual(parseKey(`${RESOURCE_PREFIX}workloadendpoints/shop/w1`), {
    type: 'resource',
    kind: 'WorkloadEndpoint',
    namespace: 'shop',
    name: 'w1',
  });
  assert.deepEqual(parseKey(`${RESOURCE_PREFIX}globalnetworkpolicies/gnp`), {
    type: 'resource',
    kind: 'GlobalNetworkPolicy',
    name: 'gnp',
  });
  assert.deepEqual(parseKey(`${BLOCK_PREFIX}10.20.1.0-26`), {
    type: 'block',
    cidr: '10.20.1.0/26',
    name: '10-20-1-0-26',
  });
  assert.equal(parseKey(`${RESOURCE_PREFIX}felixconfigurations/default`), undefined);
  assert.equal(parseKey('/calico/ipam/v2/handle/k8s-pod-network.abc'), undefined);
  assert.match(String(parseKey(`${RESOURCE_PREFIX}workloadendpoints/w1`)), /<namespace>\/<name>/);
  assert.match(String(parseKey(`${BLOCK_PREFIX}10.20.1.0`)), /<a.b.c.d>-<prefix length>/);
  assert.equal(resourceKey('NetworkPolicy', 'p', 'shop'), `${RESOURCE_PREFIX}networkpolicies/shop/p`);
  assert.equal(resourceKey('Namespace', 'shop'), undefined, 'no Namespace objects in etcd mode');
  assert.equal(blockKey('10.20.1.0/26'), `${BLOCK_PREFIX}10.20.1.0-26`);
});

test('every kind the file datastore reads survives encode → decode unchanged (but its origin)', () => {
  const docs = [
    {
      apiVersion: 'projectcalico.org/v3',
      kind: 'IPPool',
      metadata: { name: 'p' },
      spec: { cidr: '10.20.0.0/16', natOutgoing: true },
    },
    {
      apiVersion: 'crd.projectcalico.org/v1',
      kind: 'IPPool',
      metadata: { name: 'q' },
      spec: { cidr: '10.30.0.0/16' },
    },
    {
      apiVersion: 'projectcalico.org/v3',
      kind: 'Node',
      metadata: { name: 'n1' },
      spec: { bgp: { ipv4Address: '192.168.1.1/24' } },
    },
    {
      apiVersion: 'projectcalico.org/v3',
      kind: 'NetworkPolicy',
      metadata: { name: 'np', namespace: 'shop' },
      spec: {
        selector: "app == 'db'",
        ingress: [{ action: 'Allow', protocol: 'TCP', destination: { ports: [5432] } }],
      },
    },
    {
      apiVersion: 'projectcalico.org/v3',
      kind: 'HostEndpoint',
      metadata: { name: 'h', labels: { role: 'node' } },
      spec: { node: 'n1', interfaceName: 'eth0' },
    },
  ];
  for (const doc of docs) {
    const enc = encodeDocument(doc, '/tmp');
    assert.ok('key' in enc, doc.kind);
    const dec = decodeKv(enc.key, enc.value);
    assert.ok(dec && 'resource' in dec, `${doc.kind}: ${JSON.stringify(dec)}`);
    assert.equal(dec.resource.kind, doc.kind);
    assert.equal(dec.resource.name, doc.metadata.name);
    assert.equal(dec.resource.origin.source, enc.key);
  }
});

test('Namespace and ServiceAccount become kube-controllers’ kns./ksa. Profiles; a block an AllocationBlock', () => {
  const ns = encodeDocument(
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { team: 'web' } } },
    '/',
  );
  assert.ok('key' in ns);
  assert.equal(ns.key, `${RESOURCE_PREFIX}profiles/kns.shop`);
  assert.deepEqual(JSON.parse(ns.value).spec.labelsToApply, {
    'pcns.team': 'web',
    'pcns.kubernetes.io/metadata.name': 'shop',
    'pcns.projectcalico.org/name': 'shop',
  });
  const sa = encodeDocument(
    {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'api', namespace: 'shop', labels: { tier: 'x' } },
    },
    '/',
  );
  assert.ok('key' in sa);
  assert.equal(sa.key, `${RESOURCE_PREFIX}profiles/ksa.shop.api`);
  assert.deepEqual(JSON.parse(sa.value).spec.labelsToApply, {
    'pcsa.tier': 'x',
    'pcsa.projectcalico.org/name': 'api',
  });
  const block = encodeDocument(
    {
      apiVersion: 'crd.projectcalico.org/v1',
      kind: 'IPAMBlock',
      metadata: { name: '10-20-1-0-26' },
      spec: { cidr: '10.20.1.0/26', affinity: 'host:b-node1' },
    },
    '/',
  );
  assert.ok('key' in block);
  const ab = JSON.parse(block.value);
  assert.equal(ab.affinity, 'host:b-node1');
  assert.equal(ab.allocations.length, 64);
  const dec = decodeKv(block.key, block.value);
  assert.ok(dec && 'resource' in dec && dec.resource.kind === 'IPAMBlock');
  assert.equal(dec.resource.spec.affinityNode, 'b-node1');
  assert.deepEqual(decodeKv(block.key, JSON.stringify({ ...ab, deleted: true })), {
    ignored: 'block marked deleted',
  });
  const pod = encodeDocument({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' } }, '/');
  assert.ok('skip' in pod && /no place in Calico's etcd layout/.test(pod.skip));
});

test('refusals name the key and the field', () => {
  const key = `${RESOURCE_PREFIX}workloadendpoints/shop/w1`;
  const err = (k: string, v: string) => {
    const r = decodeKv(k, v);
    assert.ok(r && 'errors' in r, `${k} ${v}: ${JSON.stringify(r)}`);
    return r.errors[0]!;
  };
  const bad = err(key, '{"kind":');
  assert.equal(bad.origin.source, key);
  assert.equal(bad.resource, 'WorkloadEndpoint/shop/w1');
  assert.match(bad.message, /invalid JSON/);
  assert.equal(err(key, '{"kind":"HostEndpoint"}').field, 'kind');
  assert.equal(err(key, '{"metadata":{"name":"w2"}}').field, 'metadata.name');
  assert.equal(err(key, '{"metadata":{"namespace":"ops"}}').field, 'metadata.namespace');
  assert.equal(
    err(key, '{"spec":{"node":"n1","interfaceName":"cali1","ipNetworks":["10.0.0.300/32"]}}').field,
    'spec.ipNetworks[0]',
  );
  const rcc = `${RESOURCE_PREFIX}remoteclusterconfigurations/a`;
  const rel = err(rcc, '{"spec":{"datastoreType":"file","fileDatastorePath":"../a"}}');
  assert.equal(rel.field, 'spec.fileDatastorePath');
  assert.match(rel.message, /no directory to resolve it against/);
  assert.equal(err(blockKey('10.20.1.0/26'), '{"cidr":"10.20.2.0/26"}').field, 'cidr');
  // The loader makes a relative path absolute against the directory it loads.
  const enc = encodeDocument(
    {
      apiVersion: 'projectcalico.org/v3',
      kind: 'RemoteClusterConfiguration',
      metadata: { name: 'a' },
      spec: { datastoreType: 'file', fileDatastorePath: '../a' },
    },
    '/work/clusters/b',
  );
  assert.ok('key' in enc);
  assert.equal(JSON.parse(enc.value).spec.fileDatastorePath, '/work/clusters/a');
});
