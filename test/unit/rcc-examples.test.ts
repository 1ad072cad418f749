// The shipped example of each way into a remote cluster (examples/remote-cluster-configurations)
// is valid as fedmesh (and Calico's validator) reads it, and resolves to the connection it says.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { RemoteClusterConfiguration, Resource, Secret } from '../../model/resources.ts';
import { parseDocuments } from '../../model/validate.ts';
import { resolveRemoteConfig } from '../../syncer/remote-config.ts';

const DIR = new URL('../../examples/remote-cluster-configurations/', import.meta.url).pathname;
const PEM = '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n';

test('one RCC of each kind (etcd, kubeconfig file, clusterAccessSecret) and its Secret are accepted', () => {
  const text = readFileSync(`${DIR}rccs.yaml`, 'utf8');
  const resources: Resource[] = [];
  for (const o of parseDocuments(text, { source: 'rccs.yaml', baseDir: DIR })) {
    assert.ok('resource' in o.result, JSON.stringify(o.result));
    resources.push(o.result.resource);
  }
  const rccs = new Map(
    resources
      .filter((r): r is RemoteClusterConfiguration => r.kind === 'RemoteClusterConfiguration')
      .map((r) => [r.name, r]),
  );
  const secrets = resources.filter((r): r is Secret => r.kind === 'Secret');
  assert.deepEqual([...rccs.keys()].sort(), ['cluster-etcd', 'cluster-kube', 'cluster-secret']);
  const lookup = (ns: string, name: string) => secrets.find((s) => s.namespace === ns && s.name === name);
  // The files the RCCs name, as the syncer would read them.
  const readFile = (p: string) =>
    p.endsWith('.key') ? KEY : p.endsWith('kubeconfig') ? 'kubeconfig text' : PEM;
  const resolve = (name: string) =>
    resolveRemoteConfig(rccs.get(name)!, lookup, { defaultSecretNamespace: 'fedmesh-system', readFile });

  const etcd = resolve('cluster-etcd');
  assert.ok('connection' in etcd && etcd.connection.type === 'etcdv3', JSON.stringify(etcd));
  assert.deepEqual(etcd.connection.endpoints, ['https://10.0.10.1:2379', 'https://10.0.10.2:2379']);
  assert.equal(etcd.connection.tls?.key, KEY);

  const kube = resolve('cluster-kube');
  assert.ok('connection' in kube && kube.connection.type === 'kubernetes', JSON.stringify(kube));
  assert.deepEqual(kube.connection.source, { kind: 'kubeconfig', text: 'kubeconfig text' });

  const viaSecret = resolve('cluster-secret');
  assert.ok(
    'connection' in viaSecret && viaSecret.connection.type === 'kubernetes',
    JSON.stringify(viaSecret),
  );
  assert.equal(viaSecret.connection.source.kind, 'kubeconfig');
  assert.match(
    (viaSecret.connection.source as { text: string }).text,
    /server: 'https:\/\/10\.0\.20\.1:6443'/,
  );

  // Without its Secret, that remote is incomplete (and its data would be withdrawn).
  const missing = resolveRemoteConfig(rccs.get('cluster-secret')!, () => undefined, {
    defaultSecretNamespace: 'fedmesh-system',
  });
  assert.ok('incomplete' in missing && /remote-cluster-secret does not exist/.test(missing.incomplete));
});
