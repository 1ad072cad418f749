// `fedmesh syncer` as a process: health and metrics on --health-listen, as a kubelet and Prometheus
// see them. A remote pool that overlaps a local one is refused, and the conflict shows in metrics.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
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

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('syncer health, readiness and metrics, with a remote conflict counted', {
  timeout: 60_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fedmesh-metrics-'));
  cpSync(EXAMPLE, dir, { recursive: true });
  // Cluster b claims a pool inside cluster a's 10.10.0.0/16: a's syncer must refuse it.
  appendFileSync(
    join(dir, 'b', 'cluster.yaml'),
    '---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: squat}\nspec: {cidr: 10.10.128.0/17}\n',
  );
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const child = spawn(
    process.execPath,
    [
      BIN,
      'syncer',
      '--cluster',
      'a',
      '--datastore',
      `file:${join(dir, 'a')}`,
      '--listen',
      `unix:${join(dir, 'a.sock')}`,
      '--health-listen',
      `127.0.0.1:${port}`,
    ],
    { stdio: 'ignore' },
  );
  t.after(() => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const base = `http://127.0.0.1:${port}`;
  await until('readiness', async () => ((await get(`${base}/readiness`))?.status === 200 ? true : undefined));
  assert.equal((await get(`${base}/liveness`))?.status, 200);
  const metrics = await until('the remote status in metrics', async () => {
    const m = await get(`${base}/metrics`);
    return m?.body.includes('fedmesh_remote_cluster_conflicts{cluster="b"}') ? m.body : undefined;
  });
  assert.match(metrics, /^fedmesh_syncer_in_sync 1$/m);
  assert.match(metrics, /^fedmesh_remote_cluster_state\{cluster="b",state="IN_SYNC"\} 1$/m);
  assert.match(metrics, /^fedmesh_remote_cluster_endpoints\{cluster="b"\} 4$/m);
  assert.match(metrics, /^fedmesh_remote_cluster_conflicts\{cluster="b"\} 1$/m);
  const status = JSON.parse((await get(`${base}/status`))!.body) as { remotes: { detail: string }[] };
  assert.match(
    status.remotes[0]!.detail,
    /10\.10\.128\.0\/17 overlaps enabled local pool a-pool \(10\.10\.0\.0\/16\)/,
  );
});
