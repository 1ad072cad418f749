// `fedmesh services-controller` as a process on the two-cluster example (copied): readiness once it
// has written, metrics as Prometheus sees them (federated Services, endpoints per source cluster,
// write failures), /status with each remote and each Service's problems, and the owned file.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const BIN = new URL('../../bin/fedmesh.js', import.meta.url).pathname;
const EXAMPLE = new URL('../../examples/two-cluster', import.meta.url).pathname;

async function get(url: string): Promise<{ status: number; body: string } | undefined> {
  try {
    const r = await fetch(url);
    return { status: r.status, body: await r.text() };
  } catch {
    return undefined;
  }
}

test('services controller: readiness, metrics, status, and the owned file', {
  timeout: 60_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fedmesh-svc-metrics-'));
  cpSync(EXAMPLE, dir, { recursive: true });
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const child = spawn(
    process.execPath,
    [
      BIN,
      'services-controller',
      '--cluster',
      'a',
      '--datastore',
      `file:${join(dir, 'a')}`,
      '--health-listen',
      `127.0.0.1:${port}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, FEDMESH_LOG_LEVEL: 'warn' } },
  );
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  t.after(() => {
    child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  });
  const base = `http://127.0.0.1:${port}`;
  const end = Date.now() + 20_000;
  while ((await get(`${base}/readiness`))?.status !== 200) {
    assert.ok(Date.now() < end, `never ready; stderr:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const metrics = (await get(`${base}/metrics`))!.body;
  assert.match(metrics, /^fedmesh_services_in_sync 1$/m);
  assert.match(metrics, /^fedmesh_services_federated 1$/m);
  assert.match(metrics, /^fedmesh_services_endpoints\{cluster="a"\} 1$/m);
  assert.match(metrics, /^fedmesh_services_endpoints\{cluster="b"\} 2$/m);
  assert.match(metrics, /^fedmesh_services_write_failures_total 0$/m);
  assert.match(metrics, /^fedmesh_services_remote_state\{cluster="b",state="InSync"\} 1$/m);
  const status = JSON.parse((await get(`${base}/status`))!.body) as {
    remotes: { cluster: string; status: string }[];
    services: { name: string; problems: string[] }[];
  };
  assert.deepEqual(
    status.remotes.map((r) => `${r.cluster}:${r.status}`),
    ['b:InSync'],
  );
  assert.deepEqual(
    status.services.map((s) => [s.name, s.problems]),
    [['db-federated', []]],
  );
  const file = readFileSync(join(dir, 'a', 'federated-endpoints.yaml'), 'utf8');
  assert.match(file, /^kind: Endpoints$/m);
  assert.match(file, /name: b\/db-1/);
});
