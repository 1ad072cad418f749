// `fedmesh services` as an operator runs it, on the two-cluster example (copied): the federated
// db Service with its endpoints per cluster in text and JSON, and a refused federated Service with
// its problem.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

const BIN = new URL('../../bin/fedmesh.js', import.meta.url).pathname;
const EXAMPLE = new URL('../../examples/two-cluster', import.meta.url).pathname;
let dir = '';

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'fedmesh-services-cli-'));
  cpSync(EXAMPLE, dir, { recursive: true });
  writeFileSync(
    join(dir, 'a', 'refused.yaml'),
    `apiVersion: v1
kind: Service
metadata: {name: cache, namespace: shop, annotations: {federation.fedmesh.io/serviceSelector: "app == 'cache'"}}
spec: {selector: {app: cache}, ports: [{name: redis, port: 6379}]}
`,
  );
});
after(() => rmSync(dir, { recursive: true, force: true }));

function services(...extra: string[]) {
  return spawnSync(
    process.execPath,
    [BIN, 'services', '--cluster', 'a', '--datastore', `file:${join(dir, 'a')}`, ...extra],
    { encoding: 'utf8', env: { ...process.env, FEDMESH_LOG_LEVEL: 'error' }, timeout: 60_000 },
  );
}

test('text: the federated Service, its backing Services and one row per endpoint with its cluster', () => {
  const r = services();
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^Federated Service shop\/db-federated \(selector: app == 'db'\)$/m);
  assert.match(r.stdout, /^ {2}backing Services: a\/shop\/db, b\/shop\/db$/m);
  assert.match(r.stdout, /^ {2}a\s+db-a\s+10\.10\.1\.7\s+postgres 5432\/TCP\s+yes$/m);
  assert.match(r.stdout, /^ {2}b\s+b\/db-1\s+10\.20\.1\.5\s+postgres 5432\/TCP\s+yes$/m);
  assert.match(r.stdout, /^ {2}b\s+b\/db-2\s+10\.20\.2\.5\s+postgres 5432\/TCP\s+yes$/m);
  assert.match(r.stdout, /^remote b: InSync$/m);
});

test('a federated Service with a spec.selector is shown with its problem and no endpoints', () => {
  const r = services();
  assert.match(
    r.stdout,
    /^Federated Service shop\/cache .*\n.*\n {2}problem: not federated: has a spec\.selector/m,
  );
});

test('json: the same, machine-readable', () => {
  const r = services('--output', 'json');
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout) as {
    services: {
      name: string;
      active: boolean;
      endpoints: { cluster: string; pod?: string; ip: string; port: number }[];
    }[];
  };
  const db = report.services.find((s) => s.name === 'db-federated');
  assert.deepEqual(
    db?.endpoints.map((e) => `${e.cluster} ${e.pod} ${e.ip}:${e.port}`),
    ['a db-a 10.10.1.7:5432', 'b b/db-1 10.20.1.5:5432', 'b b/db-2 10.20.2.5:5432'],
  );
  assert.equal(report.services.find((s) => s.name === 'cache')?.active, false);
});

test('a bad --output is refused', () => {
  const r = services('--output', 'yaml');
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /--output yaml: expected text or json/);
});
