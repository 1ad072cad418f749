// `fedmesh demo --etcd` end to end: cluster b's Calico data lives in a real etcd the demo starts
// (Calico's key layout), b's syncer reads it with --datastore etcdv3, a's RCC for b names a
// clusterAccessSecret (a/remote-b-secret.yaml) that holds b's etcd endpoint.
// Real packets: the connectivity matrix and a relabel written to etcd (inside the demo); then this
// test kills etcd (traffic keeps flowing as it was: fail-static, b reported CONNECTION_FAILED),
// restarts it (b back IN_SYNC) and writes a relabel that must cut, then restore, access; then it
// deletes the Secret (b CONFIG_INCOMPLETE, its data withdrawn, access cut) and restores it (b back
// IN_SYNC, access restored), all without restarting a process.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  DEMO_SECRET,
  demoEtcdEndpoint,
  demoSecretFile,
  setEtcdLabel,
  startDemoEtcd,
} from '../../cli/demo/etcd.ts';
import { alive } from '../../cli/demo/processes.ts';
import { listNetns, uniqueTag } from '../../native/netns.ts';
import { hasEtcd } from '../harness/etcd.ts';
import { fedmesh, tcp, waitFor } from '../helpers/demo-cli.ts';

const isRoot = process.getuid?.() === 0;

test('two-cluster demo with cluster b in etcd (nft)', {
  skip:
    (!isRoot && 'needs root (network namespaces)') || (!hasEtcd() && 'etcd is not installed (etcd-server)'),
  timeout: 300_000,
}, async (t) => {
  const prefix = `fmx${uniqueTag(4)}`;
  const dir = mkdtempSync(join(tmpdir(), 'fedmesh-e2e-etcd-'));
  t.after(() => {
    fedmesh(['demo', 'down', '--dir', dir, '--prefix', prefix]);
  });

  const res = fedmesh([
    'demo',
    '--etcd',
    '--keep',
    '--iptables-backend',
    'nft',
    '--dir',
    dir,
    '--prefix',
    prefix,
  ]);
  t.diagnostic(res.stdout);
  assert.equal(res.status, 0, `demo failed:\n${res.stdout}\n${res.stderr.slice(-3000)}`);
  assert.doesNotMatch(res.stdout, /MISMATCH/);
  assert.match(res.stdout, /cluster b's Calico data is in etcd at http:\/\/127\.0\.0\.1:\d+/);
  assert.match(res.stdout, /a reaches b through a clusterAccessSecret \(a\/remote-b-secret\.yaml/);
  assert.match(res.stdout, /relabel b\/db-1 app=db → app=db-retired \(written to etcd\): .* ok$/m);
  assert.match(res.stdout, /^16 passed, 0 failed$/m);

  const endpoint = demoEtcdEndpoint(dir);
  assert.ok(endpoint);
  const frontend = `${prefix}-a-frontend-1`;
  const web = `${prefix}-a-web-1`;
  const dbIp = '10.20.1.5';
  const localDbIp = '10.10.1.7'; // a/db-a
  const db1 = { namespace: 'shop', name: 'b--node1-k8s-db--1-eth0' };
  const remoteB = () => {
    const r = fedmesh(['status', '--feed', `unix:${join(dir, 'a.sock')}`, '--output', 'json']);
    const st = JSON.parse(r.stdout) as {
      remotes: { cluster: string; state: string; endpoints: number; detail: string }[];
    };
    return st.remotes.find((x) => x.cluster === 'b');
  };
  assert.equal(remoteB()?.state, 'IN_SYNC');

  await t.test(
    'etcd stopped: b is CONNECTION_FAILED in a, and traffic is enforced as before (fail-static)',
    async () => {
      const pid = Number(/^(\d+) etcd-b$/m.exec(readFileSync(join(dir, 'pids'), 'utf8'))?.[1]);
      assert.ok(pid > 0 && alive(pid), 'the demo runs etcd');
      process.kill(pid, 'SIGKILL');
      await waitFor('etcd to be gone', () => !alive(pid));
      await waitFor('a to report b CONNECTION_FAILED', () => remoteB()?.state === 'CONNECTION_FAILED');
      assert.equal(remoteB()?.endpoints, 4, "b's endpoints are kept");
      assert.ok(await tcp(frontend, dbIp), 'a/frontend-1 → b/db-1 still allowed');
      assert.ok(!(await tcp(web, dbIp)), 'a/web-1 → b/db-1 still denied');
    },
  );

  await t.test(
    'etcd restarted: b back IN_SYNC; a relabel written to etcd cuts access, its undo restores it',
    async () => {
      await startDemoEtcd(dir);
      await waitFor('a to report b IN_SYNC again', () => remoteB()?.state === 'IN_SYNC', 30_000);
      assert.ok(await tcp(frontend, dbIp));
      await setEtcdLabel(endpoint, db1, 'app', 'db-retired');
      const cutMs = await waitFor('access to be cut', async () => !(await tcp(frontend, dbIp)));
      await setEtcdLabel(endpoint, db1, 'app', 'db');
      const restoredMs = await waitFor('access to be restored', () => tcp(frontend, dbIp));
      t.diagnostic(`after the restart: cut ${cutMs} ms, restored ${restoredMs} ms after the etcd write`);
    },
  );

  await t.test(
    'Secret deleted: b CONFIG_INCOMPLETE, its data withdrawn, a/frontend-1 → b/db-1 denied; restored: allowed again',
    async () => {
      const secretFile = demoSecretFile(dir);
      const secretYaml = readFileSync(secretFile, 'utf8');
      // The demo records every process it starts; none may be started (or die) from here on.
      const started = () => readFileSync(join(dir, 'pids'), 'utf8');
      const before = started();
      const running = [...before.matchAll(/^(\d+) (syncer-\S+|agent-\S+)$/gm)].map((m) => Number(m[1]));
      assert.ok(running.length >= 6, 'two syncers and four agents are recorded');
      assert.match(readFileSync(join(dir, 'a', 'remote-b.yaml'), 'utf8'), /clusterAccessSecret:/);
      assert.ok(await tcp(frontend, dbIp), 'allowed before the Secret is deleted');
      assert.ok(await tcp(frontend, localDbIp), 'a/frontend-1 → a/db-a allowed before');

      unlinkSync(secretFile);
      const incompleteMs = await waitFor(
        'a to report b CONFIG_INCOMPLETE',
        () => remoteB()?.state === 'CONFIG_INCOMPLETE',
        30_000,
      );
      const b = remoteB();
      assert.match(
        b?.detail ?? '',
        new RegExp(`clusterAccessSecret ${DEMO_SECRET.namespace}/${DEMO_SECRET.name} does not exist`),
      );
      assert.equal(b?.endpoints, 0, "b's endpoints are withdrawn");
      const deniedMs = await waitFor(
        'a/frontend-1 → b/db-1 to be denied',
        async () => !(await tcp(frontend, dbIp)),
        30_000,
      );
      assert.ok(await tcp(frontend, localDbIp), 'a/frontend-1 → a/db-a still allowed: a is untouched');

      writeFileSync(secretFile, secretYaml);
      const inSyncMs = await waitFor(
        'a to report b IN_SYNC again',
        () => remoteB()?.state === 'IN_SYNC',
        30_000,
      );
      assert.equal(remoteB()?.endpoints, 4, "b's endpoints are back");
      const allowedMs = await waitFor(
        'a/frontend-1 → b/db-1 to be allowed again',
        () => tcp(frontend, dbIp),
        30_000,
      );
      assert.ok(!(await tcp(web, dbIp)), 'a/web-1 → b/db-1 still denied');
      assert.equal(started(), before, 'no process was started');
      assert.ok(running.every(alive), 'every syncer and agent kept running');
      t.diagnostic(
        `Secret deleted: b CONFIG_INCOMPLETE after ${incompleteMs} ms, access cut after ${incompleteMs + deniedMs} ms; ` +
          `restored: b IN_SYNC after ${inSyncMs} ms, access back after ${inSyncMs + allowedMs} ms`,
      );
    },
  );

  const down = fedmesh(['demo', 'down', '--dir', dir, '--prefix', prefix]);
  assert.equal(down.status, 0, down.stderr);
  assert.deepEqual(
    (await listNetns()).filter((n) => n.startsWith(prefix)),
    [],
    'demo down removed every namespace',
  );
  assert.equal(existsSync(dir), false, 'demo down removed its files (and etcd with them)');
});
