// RemoteClusterConfiguration, every field valid and invalid, checked as Calico's validator checks
// it (libcalico-go validator + tigera/api types), and the v1 Secret a clusterAccessSecret names.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RemoteClusterConfiguration, Secret } from '../../model/resources.ts';
import { validateResource } from '../../model/validate.ts';

const FILE = { source: '/clusters/a/remotes.yaml' };
const ETCD = { source: '/calico/resources/v3/projectcalico.org/remoteclusterconfigurations/b' };

/** `baseDir` null: read from etcd or the Kubernetes API, no directory. */
function rcc(spec: Record<string, unknown>, baseDir: string | null = '/clusters/a') {
  return validateResource(
    { apiVersion: 'projectcalico.org/v3', kind: 'RemoteClusterConfiguration', metadata: { name: 'b' }, spec },
    baseDir === null ? ETCD : FILE,
    baseDir ?? undefined,
  );
}

function accepted(
  spec: Record<string, unknown>,
  baseDir?: string | null,
): RemoteClusterConfiguration['spec'] {
  const r = rcc(spec, baseDir);
  assert.ok('resource' in r, `accepted: ${JSON.stringify(r)}`);
  assert.equal(r.resource.kind, 'RemoteClusterConfiguration');
  return (r.resource as RemoteClusterConfiguration).spec;
}

function refused(
  spec: Record<string, unknown>,
  field: string,
  message: RegExp,
  baseDir?: string | null,
): string {
  const r = rcc(spec, baseDir);
  assert.ok('errors' in r, `refused: ${JSON.stringify(spec)}`);
  const e = r.errors.find((x) => x.field === field);
  assert.ok(e, `an error at ${field}, got ${JSON.stringify(r.errors)}`);
  assert.match(e.message, message);
  assert.equal(e.resource, 'RemoteClusterConfiguration/b');
  return r.errors.map((x) => x.message).join('\n');
}

describe('RemoteClusterConfiguration fields', () => {
  test('datastoreType: etcdv3, kubernetes, file; anything else or nothing refused', () => {
    assert.equal(accepted({ datastoreType: 'etcdv3' }).datastoreType, 'etcdv3');
    assert.equal(accepted({ datastoreType: 'kubernetes' }).datastoreType, 'kubernetes');
    assert.equal(accepted({ datastoreType: 'file', fileDatastorePath: '/b' }).datastoreType, 'file');
    refused({ datastoreType: 'consul' }, 'spec.datastoreType', /must be one of etcdv3, kubernetes, file/);
    refused({}, 'spec.datastoreType', /required .* unless clusterAccessSecret/);
  });

  test('etcdEndpoints: a comma-separated string of http(s)://host:port (a list too)', () => {
    assert.deepEqual(
      accepted({ datastoreType: 'etcdv3', etcdEndpoints: 'http://123.123.123.123:2379,https://1.1.1.1:123' })
        .etcdEndpoints,
      ['http://123.123.123.123:2379', 'https://1.1.1.1:123'],
    );
    assert.deepEqual(
      accepted({ datastoreType: 'etcdv3', etcdEndpoints: ['https://e1:2379'] }).etcdEndpoints,
      ['https://e1:2379'],
    );
    refused({ datastoreType: 'etcdv3', etcdEndpoints: 'httpp:/1:500' }, 'spec.etcdEndpoints', /not an http/);
    refused({ datastoreType: 'etcdv3', etcdEndpoints: 'https://e1' }, 'spec.etcdEndpoints', /host:port/);
    refused({ datastoreType: 'etcdv3', etcdEndpoints: 5 }, 'spec.etcdEndpoints', /comma-separated/);
    refused(
      { datastoreType: 'kubernetes', etcdEndpoints: 'https://127.0.0.1:2379' },
      'spec.etcdEndpoints',
      /not allowed with datastoreType kubernetes/,
    );
  });

  test('etcdUsername, etcdPassword; the password is refused with kubernetes and never echoed', () => {
    const s = accepted({ datastoreType: 'etcdv3', etcdUsername: 'user', etcdPassword: 'abc123' });
    assert.equal(s.etcdUsername, 'user');
    assert.equal(s.etcdPassword, 'abc123');
    assert.equal(accepted({ datastoreType: 'kubernetes', etcdUsername: 'user' }).etcdUsername, 'user');
    const msgs = refused(
      { datastoreType: 'kubernetes', etcdPassword: 'hunter2-secret' },
      'spec.etcdPassword',
      /not allowed/,
    );
    assert.doesNotMatch(msgs, /hunter2/);
    const bad = refused(
      { datastoreType: 'etcdv3', etcdPassword: 42 },
      'spec.etcdPassword',
      /expected a string/,
    );
    assert.doesNotMatch(bad, /42/);
    refused({ datastoreType: 'etcdv3', etcdUsername: '' }, 'spec.etcdUsername', /must not be empty/);
  });

  test('etcdKeyFile, etcdCertFile, etcdCACertFile: paths (relative to the file), refused with kubernetes', () => {
    const s = accepted({
      datastoreType: 'etcdv3',
      etcdKeyFile: 'tls/b.key',
      etcdCertFile: '/etc/b/b.crt',
      etcdCACertFile: '../ca.crt',
    });
    assert.equal(s.etcdKeyFile, '/clusters/a/tls/b.key');
    assert.equal(s.etcdCertFile, '/etc/b/b.crt');
    assert.equal(s.etcdCACertFile, '/clusters/ca.crt');
    for (const f of ['etcdKeyFile', 'etcdCertFile', 'etcdCACertFile']) {
      refused(
        { datastoreType: 'kubernetes', [f]: '/x' },
        `spec.${f}`,
        /not allowed with datastoreType kubernetes/,
      );
      refused({ datastoreType: 'etcdv3', [f]: '/a/secret/\0null/' }, `spec.${f}`, /NUL/);
    }
  });

  test('kubeconfig (path) and kubeconfigInline (text); allowed with etcdv3 as Calico allows it', () => {
    const s = accepted({ datastoreType: 'kubernetes', kubeconfig: 'b.kubeconfig' });
    assert.equal(s.kubeconfig, '/clusters/a/b.kubeconfig');
    assert.equal(
      accepted({ datastoreType: 'etcdv3', kubeconfig: '/a/b/c/kubeconfig' }).kubeconfig,
      '/a/b/c/kubeconfig',
    );
    const inline = 'apiVersion: v1\nkind: Config\n';
    assert.equal(
      accepted({ datastoreType: 'kubernetes', kubeconfigInline: inline }).kubeconfigInline,
      inline,
    );
    refused(
      { datastoreType: 'kubernetes', kubeconfigInline: ['x'] },
      'spec.kubeconfigInline',
      /expected a string/,
    );
    refused({ datastoreType: 'kubernetes', kubeconfig: '' }, 'spec.kubeconfig', /must not be empty/);
  });

  test('k8sAPIEndpoint, k8sKeyFile, k8sCertFile, k8sCAFile, k8sAPIToken, k8sInsecureSkipTLSVerify', () => {
    const s = accepted({
      datastoreType: 'kubernetes',
      k8sAPIEndpoint: 'https://justatest:123',
      k8sKeyFile: '/etc/made/up/file.key',
      k8sCertFile: 'file.cert',
      k8sCAFile: '/etc/made/up/file.ca',
      k8sAPIToken: 'abcdef123',
      k8sInsecureSkipTLSVerify: false,
    });
    assert.deepEqual(s, {
      datastoreType: 'kubernetes',
      k8sAPIEndpoint: 'https://justatest:123',
      k8sKeyFile: '/etc/made/up/file.key',
      k8sCertFile: '/clusters/a/file.cert',
      k8sCAFile: '/etc/made/up/file.ca',
      k8sAPIToken: 'abcdef123',
      k8sInsecureSkipTLSVerify: false,
      overlayRouting: false,
    });
    refused(
      { datastoreType: 'kubernetes', k8sAPIEndpoint: 'htps://127.0.0.1:880' },
      'spec.k8sAPIEndpoint',
      /not an http/,
    );
    refused({ datastoreType: 'kubernetes', k8sKeyFile: '/a/secret/\0null/' }, 'spec.k8sKeyFile', /NUL/);
    const msgs = refused(
      { datastoreType: 'kubernetes', k8sAPIToken: '' },
      'spec.k8sAPIToken',
      /must not be empty/,
    );
    assert.ok(msgs);
    refused(
      { datastoreType: 'kubernetes', k8sInsecureSkipTLSVerify: 'yes' },
      'spec.k8sInsecureSkipTLSVerify',
      /expected true or false/,
    );
  });

  test('syncOptions.overlayRoutingMode: Enabled / Disabled, default Disabled (the CRD default)', () => {
    assert.equal(accepted({ datastoreType: 'etcdv3' }).overlayRouting, false);
    assert.equal(
      accepted({ datastoreType: 'etcdv3', syncOptions: { overlayRoutingMode: 'Enabled' } }).overlayRouting,
      true,
    );
    assert.equal(accepted({ datastoreType: 'etcdv3', syncOptions: {} }).overlayRouting, false);
    refused(
      { datastoreType: 'etcdv3', syncOptions: { overlayRoutingMode: 'On' } },
      'spec.syncOptions.overlayRoutingMode',
      /must be one of Enabled, Disabled/,
    );
    refused(
      { datastoreType: 'etcdv3', syncOptions: { overlayRouting: 'Enabled' } },
      'spec.syncOptions.overlayRouting',
      /unknown field in spec.syncOptions/,
    );
  });

  test('clusterAccessSecret: an ObjectReference to a Secret; every other connection field must be empty', () => {
    const s = accepted({
      clusterAccessSecret: { name: 'remote-b', namespace: 'fedmesh-system', kind: 'Secret' },
      syncOptions: { overlayRoutingMode: 'Enabled' },
    });
    assert.deepEqual(s, {
      clusterAccessSecret: { name: 'remote-b', namespace: 'fedmesh-system' },
      overlayRouting: true,
    });
    const others: Record<string, unknown> = {
      datastoreType: 'kubernetes',
      fileDatastorePath: '/b',
      etcdEndpoints: 'https://e:2379',
      etcdUsername: 'u',
      etcdPassword: 'p',
      etcdKeyFile: '/k',
      etcdCertFile: '/c',
      etcdCACertFile: '/ca',
      kubeconfig: '/kc',
      kubeconfigInline: 'x',
      k8sAPIEndpoint: 'https://k:6443',
      k8sKeyFile: '/k',
      k8sCertFile: '/c',
      k8sCAFile: '/ca',
      k8sAPIToken: 't',
      k8sInsecureSkipTLSVerify: true,
    };
    for (const [f, v] of Object.entries(others)) {
      refused(
        { clusterAccessSecret: { name: 'remote-b' }, [f]: v },
        `spec.${f}`,
        /must be empty when clusterAccessSecret/,
      );
    }
    refused({ clusterAccessSecret: { namespace: 'x' } }, 'spec.clusterAccessSecret.name', /required/);
    refused(
      { clusterAccessSecret: { name: 'b', kind: 'ConfigMap' } },
      'spec.clusterAccessSecret.kind',
      /must be Secret/,
    );
    refused(
      { clusterAccessSecret: { name: 'b', nmespace: 'x' } },
      'spec.clusterAccessSecret.nmespace',
      /unknown field/,
    );
  });

  test('fileDatastorePath (fedmesh): relative to the file; only with file; relative refused without a directory', () => {
    assert.equal(
      accepted({ datastoreType: 'file', fileDatastorePath: '../b' }).fileDatastorePath,
      '/clusters/b',
    );
    refused({ datastoreType: 'file' }, 'spec.fileDatastorePath', /required when datastoreType is file/);
    refused(
      { datastoreType: 'etcdv3', fileDatastorePath: '/b' },
      'spec.fileDatastorePath',
      /only for datastoreType file/,
    );
    // From etcd (or the Kubernetes API) there is no directory: absolute accepted, relative refused.
    assert.equal(
      accepted({ datastoreType: 'file', fileDatastorePath: '/data/b' }, null).fileDatastorePath,
      '/data/b',
    );
    const r = rcc({ datastoreType: 'file', fileDatastorePath: '../b' }, null);
    assert.ok('errors' in r);
    assert.equal(r.errors[0]?.field, 'spec.fileDatastorePath');
    assert.match(r.errors[0]?.message ?? '', /relative path.*not read from a file.*absolute path/);
  });

  test('unknown fields are refused, naming the field', () => {
    refused(
      { datastoreType: 'etcdv3', etcdEndpoint: 'https://e:2379' },
      'spec.etcdEndpoint',
      /unknown field in spec/,
    );
    refused(
      { datastoreType: 'file', fileDatastorPath: '/x' },
      'spec.fileDatastorPath',
      /unknown field in spec/,
    );
  });
});

describe('Secret (v1)', () => {
  function secret(body: Record<string, unknown>) {
    return validateResource(
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'remote-b', namespace: 'fedmesh-system' },
        ...body,
      },
      FILE,
      '/clusters/a',
    );
  }

  test('data is base64-decoded, stringData is text, stringData wins', () => {
    const r = secret({
      type: 'Opaque',
      data: {
        datastoreType: Buffer.from('etcdv3').toString('base64'),
        etcdUsername: Buffer.from('u').toString('base64'),
      },
      stringData: { etcdUsername: 'v', etcdEndpoints: 'https://e:2379' },
    });
    assert.ok('resource' in r);
    const s = r.resource as Secret;
    assert.equal(s.namespace, 'fedmesh-system');
    assert.deepEqual(s.data, { datastoreType: 'etcdv3', etcdUsername: 'v', etcdEndpoints: 'https://e:2379' });
  });

  test('bad base64, bad keys and unknown fields are refused without echoing values', () => {
    const bad = secret({ data: { etcdPassword: 'not base64 at all!!' } });
    assert.ok('errors' in bad);
    assert.equal(bad.errors[0]?.field, 'data');
    assert.match(bad.errors[0]?.message ?? '', /"etcdPassword" is not base64/);
    assert.doesNotMatch(JSON.stringify(bad.errors), /at all/);
    const key = secret({ stringData: { 'bad key': 'x' } });
    assert.ok('errors' in key);
    assert.match(key.errors[0]?.message ?? '', /key "bad key" is invalid/);
    const unknown = secret({ datas: {} });
    assert.ok('errors' in unknown);
    assert.equal(unknown.errors[0]?.field, 'datas');
  });
});
