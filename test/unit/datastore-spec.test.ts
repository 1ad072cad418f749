// `--datastore` and its etcd flags → a ConnectionConfig: what is accepted, and what is refused
// with a reason (before anything tries to connect).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseDatastoreSpec } from '../../syncer/datastore/open.ts';

test('etcdv3:URL[,URL] with certificate files read and credentials carried', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fedmesh-spec-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of ['ca.pem', 'cert.pem', 'key.pem']) writeFileSync(join(dir, f), `PEM of ${f}\n`);
  assert.deepEqual(parseDatastoreSpec('etcdv3:http://10.0.0.1:2379,http://10.0.0.2:2379/'), {
    type: 'etcdv3',
    endpoints: ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'],
  });
  assert.deepEqual(
    parseDatastoreSpec('etcdv3:https://etcd.example:2379', {
      'etcd-ca-file': join(dir, 'ca.pem'),
      'etcd-cert-file': join(dir, 'cert.pem'),
      'etcd-key-file': join(dir, 'key.pem'),
      'etcd-username': 'calico',
      'etcd-password': 's3cret',
    }),
    {
      type: 'etcdv3',
      endpoints: ['https://etcd.example:2379'],
      username: 'calico',
      password: 's3cret',
      tls: { ca: 'PEM of ca.pem\n', cert: 'PEM of cert.pem\n', key: 'PEM of key.pem\n' },
    },
  );
});

test('etcdv3 specs that cannot work are refused, saying why', () => {
  const cases: [string, Record<string, string>, RegExp][] = [
    ['etcdv3:', {}, /expected etcdv3:URL/],
    ['etcdv3:127.0.0.1:2379', {}, /"127.0.0.1:2379" is not an http\(s\):\/\/HOST:PORT URL/],
    ['etcdv3:http://a:2379,https://b:2379', {}, /mixes http:\/\/ and https:\/\//],
    [
      'etcdv3:https://a:2379',
      { 'etcd-ca-file': '/nonexistent/ca.pem' },
      /--etcd-ca-file \/nonexistent\/ca.pem: ENOENT/,
    ],
    ['etcdv3:http://a:2379', { 'etcd-password': 'x' }, /--etcd-password needs --etcd-username/],
  ];
  for (const [spec, flags, re] of cases) assert.throws(() => parseDatastoreSpec(spec, flags), re, spec);
});

test('TLS files with http:// endpoints, and a certificate without its key, are refused', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fedmesh-spec-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'ca.pem'), 'x');
  assert.throws(
    () => parseDatastoreSpec('etcdv3:http://a:2379', { 'etcd-ca-file': join(dir, 'ca.pem') }),
    /TLS files are given but the endpoints are http:\/\/; use https:\/\//,
  );
  assert.throws(
    () => parseDatastoreSpec('etcdv3:https://a:2379', { 'etcd-cert-file': join(dir, 'ca.pem') }),
    /--etcd-cert-file and --etcd-key-file go together/,
  );
});
