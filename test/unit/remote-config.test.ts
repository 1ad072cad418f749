// syncer/remote-config.ts: an RCC (its own fields, or the Secret it names) → the ConnectionConfig a
// driver takes, or ConfigIncomplete with a reason that names fields, keys and files, never values.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { RemoteClusterConfiguration, Secret } from '../../model/resources.ts';
import { validateResource } from '../../model/validate.ts';
import { sameConnection } from '../../syncer/datastore/connection.ts';
import { resolveRemoteConfig } from '../../syncer/remote-config.ts';

const CA = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n';
const KUBECONFIG = 'apiVersion: v1\nkind: Config\nclusters: []\n';

const dir = mkdtempSync(join(tmpdir(), 'fedmesh-rcc-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'ca.crt'), CA);
writeFileSync(join(dir, 'client.crt'), CA);
writeFileSync(join(dir, 'client.key'), KEY);
writeFileSync(join(dir, 'kubeconfig'), KUBECONFIG);

function rcc(spec: Record<string, unknown>): RemoteClusterConfiguration {
  const r = validateResource(
    { apiVersion: 'projectcalico.org/v3', kind: 'RemoteClusterConfiguration', metadata: { name: 'b' }, spec },
    { source: join(dir, 'rcc.yaml') },
    dir,
  );
  assert.ok('resource' in r, JSON.stringify(r));
  return r.resource as RemoteClusterConfiguration;
}

function secretOf(data: Record<string, string>): Secret {
  const r = validateResource(
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'remote-b', namespace: 'ns1' }, stringData: data },
    { source: 'x' },
    dir,
  );
  assert.ok('resource' in r);
  return r.resource as Secret;
}

const none = () => undefined;
const opts = { defaultSecretNamespace: 'fedmesh-system' };
const resolve = (
  spec: Record<string, unknown>,
  secrets = none as (ns: string, n: string) => Secret | undefined,
) => resolveRemoteConfig(rcc(spec), secrets, opts);

describe('RCC fields → connection', () => {
  test('file', () => {
    assert.deepEqual(resolve({ datastoreType: 'file', fileDatastorePath: '../b' }), {
      connection: { type: 'file', dir: join(dir, '..', 'b') },
    });
  });

  test('etcdv3: endpoints, credentials, TLS files read into PEM text', () => {
    assert.deepEqual(
      resolve({
        datastoreType: 'etcdv3',
        etcdEndpoints: 'https://e1:2379,https://e2:2379',
        etcdUsername: 'u',
        etcdPassword: 'p',
        etcdCACertFile: 'ca.crt',
        etcdCertFile: 'client.crt',
        etcdKeyFile: 'client.key',
      }),
      {
        connection: {
          type: 'etcdv3',
          endpoints: ['https://e1:2379', 'https://e2:2379'],
          username: 'u',
          password: 'p',
          tls: { ca: CA, cert: CA, key: KEY },
        },
      },
    );
    assert.deepEqual(resolve({ datastoreType: 'etcdv3' }), {
      incomplete: 'spec.etcdEndpoints is required for datastoreType etcdv3',
    });
    const missing = resolve({
      datastoreType: 'etcdv3',
      etcdEndpoints: 'https://e1:2379',
      etcdCACertFile: 'nope.crt',
    });
    assert.ok('incomplete' in missing);
    assert.match(missing.incomplete, /spec\.etcdCACertFile: cannot read .*nope\.crt \(ENOENT\)/);
    const half = resolve({
      datastoreType: 'etcdv3',
      etcdEndpoints: 'https://e1:2379',
      etcdCertFile: 'client.crt',
    });
    assert.ok('incomplete' in half);
    assert.match(half.incomplete, /certificate and its key go together/);
    const notPem = resolve({
      datastoreType: 'etcdv3',
      etcdEndpoints: 'https://e1:2379',
      etcdCACertFile: 'kubeconfig',
    });
    assert.ok('incomplete' in notPem);
    assert.match(notPem.incomplete, /spec\.etcdCACertFile is not a PEM certificate/);
  });

  test('kubernetes: kubeconfig file, kubeconfigInline, or endpoint + token + TLS + insecure', () => {
    assert.deepEqual(resolve({ datastoreType: 'kubernetes', kubeconfig: 'kubeconfig' }), {
      connection: { type: 'kubernetes', source: { kind: 'kubeconfig', text: KUBECONFIG } },
    });
    assert.deepEqual(resolve({ datastoreType: 'kubernetes', kubeconfigInline: 'inline' }), {
      connection: { type: 'kubernetes', source: { kind: 'kubeconfig', text: 'inline' } },
    });
    assert.deepEqual(
      resolve({
        datastoreType: 'kubernetes',
        k8sAPIEndpoint: 'https://k:6443',
        k8sAPIToken: 'tok',
        k8sCAFile: 'ca.crt',
        k8sCertFile: 'client.crt',
        k8sKeyFile: 'client.key',
        k8sInsecureSkipTLSVerify: true,
      }),
      {
        connection: {
          type: 'kubernetes',
          source: {
            kind: 'endpoint',
            server: 'https://k:6443',
            token: 'tok',
            tls: { ca: CA, cert: CA, key: KEY },
            insecureSkipTLSVerify: true,
          },
        },
      },
    );
    const nothing = resolve({ datastoreType: 'kubernetes' });
    assert.ok('incomplete' in nothing);
    assert.match(nothing.incomplete, /kubeconfig, spec\.kubeconfigInline or spec\.k8sAPIEndpoint/);
    const mixed = resolve({ datastoreType: 'kubernetes', kubeconfig: 'kubeconfig', k8sAPIToken: 'tok' });
    assert.ok('incomplete' in mixed);
    assert.match(mixed.incomplete, /spec\.k8sAPIToken: fedmesh does not merge/);
    assert.doesNotMatch(mixed.incomplete, /tok\b/);
  });

  test('a changed file is a changed connection (sameConnection tells the merger to reconnect)', () => {
    const spec = { datastoreType: 'etcdv3', etcdEndpoints: 'https://e1:2379', etcdCACertFile: 'ca2.crt' };
    writeFileSync(join(dir, 'ca2.crt'), CA);
    const a = resolve(spec);
    writeFileSync(join(dir, 'ca2.crt'), CA.replace('MIIB', 'MIIC'));
    const b = resolve(spec);
    assert.ok('connection' in a && 'connection' in b);
    assert.equal(sameConnection(a.connection, b.connection), false);
    const c = resolve({ ...spec, etcdCACertFile: 'ca.crt' });
    assert.ok('connection' in c);
    assert.equal(sameConnection(a.connection, c.connection), true, 'same content, same connection');
  });
});

describe('clusterAccessSecret → connection', () => {
  const ref = { clusterAccessSecret: { name: 'remote-b', namespace: 'ns1' } };
  const lookup = (s: Secret) => (ns: string, n: string) => (ns === 'ns1' && n === 'remote-b' ? s : undefined);

  test('etcdv3 keys with inline PEM; kubernetes with kubeconfig content', () => {
    const etcd = secretOf({
      datastoreType: 'etcdv3',
      etcdEndpoints: 'https://e1:2379',
      etcdUsername: 'u',
      etcdPassword: 'p',
      etcdCACert: CA,
      etcdCert: CA,
      etcdKey: KEY,
    });
    assert.deepEqual(resolve(ref, lookup(etcd)), {
      connection: {
        type: 'etcdv3',
        endpoints: ['https://e1:2379'],
        username: 'u',
        password: 'p',
        tls: { ca: CA, cert: CA, key: KEY },
      },
    });
    const k8s = secretOf({ datastoreType: 'kubernetes', kubeconfig: KUBECONFIG });
    assert.deepEqual(resolve(ref, lookup(k8s)), {
      connection: { type: 'kubernetes', source: { kind: 'kubeconfig', text: KUBECONFIG } },
    });
  });

  test('the namespace defaults to the syncer’s own', () => {
    let asked = '';
    resolveRemoteConfig(
      rcc({ clusterAccessSecret: { name: 'remote-b' } }),
      (ns, n) => {
        asked = `${ns}/${n}`;
        return undefined;
      },
      opts,
    );
    assert.equal(asked, 'fedmesh-system/remote-b');
  });

  test('incomplete: missing Secret, no type, bad type, missing keys, mixed keys, unknown keys', () => {
    const cases: [Record<string, string> | undefined, RegExp][] = [
      [undefined, /clusterAccessSecret ns1\/remote-b does not exist/],
      [{ kubeconfig: KUBECONFIG }, /key datastoreType is required/],
      [{ datastoreType: 'consul' }, /key datastoreType must be etcdv3 or kubernetes/],
      [{ datastoreType: 'etcdv3' }, /key etcdEndpoints is required/],
      [{ datastoreType: 'etcdv3', etcdEndpoints: 'e1:2379' }, /"e1:2379" is not an http/],
      [{ datastoreType: 'kubernetes' }, /key kubeconfig is required/],
      [
        { datastoreType: 'kubernetes', kubeconfig: KUBECONFIG, etcdPassword: 'pw-value' },
        /key etcdPassword is not used/,
      ],
      [
        { datastoreType: 'etcdv3', etcdEndpoints: 'https://e:2379', etcdKey: 'pw-value', etcdCert: CA },
        /key etcdKey is not a PEM private key/,
      ],
      [{ datastoreType: 'etcdv3', etcdEndpoints: 'https://e:2379', token: 'pw-value' }, /unknown key token/],
    ];
    for (const [data, re] of cases) {
      const r = resolve(ref, data ? lookup(secretOf(data)) : none);
      assert.ok('incomplete' in r, JSON.stringify(data));
      assert.match(r.incomplete, re);
      assert.doesNotMatch(r.incomplete, /pw-value/);
    }
  });
});
