// The demo scenario end to end, on both iptables backends: `fedmesh demo --keep` builds two
// clusters in network namespaces (unique prefix per run), runs syncers and agents, sends real
// packets across the connectivity matrix and the relabel check; then this test looks at the kernel
// as an operator would, feeds bad input, and tears everything down with `fedmesh demo down`.
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { run } from '../../native/exec.ts';
import { listNetns, uniqueTag } from '../../native/netns.ts';
import { fedmesh, tcp, waitFor } from '../helpers/demo-cli.ts';

const isRoot = process.getuid?.() === 0;

for (const backend of ['nft', 'legacy'] as const) {
  test(`two-cluster demo end to end (${backend})`, {
    skip: !isRoot && 'needs root (network namespaces)',
    timeout: 300_000,
  }, async (t) => {
    const prefix = `fme${uniqueTag(4)}`;
    const dir = mkdtempSync(join(tmpdir(), `fedmesh-e2e-${backend}-`));
    t.after(() => {
      fedmesh(['demo', 'down', '--dir', dir, '--prefix', prefix]);
    });

    const res = fedmesh(['demo', '--keep', '--iptables-backend', backend, '--dir', dir, '--prefix', prefix]);
    t.diagnostic(res.stdout);
    assert.equal(res.status, 0, `demo failed:\n${res.stdout}\n${res.stderr.slice(-3000)}`);
    assert.doesNotMatch(res.stdout, /MISMATCH/);
    assert.match(res.stdout, /^16 passed, 0 failed$/m);
    // The federated Service of a: endpoints from both clusters, each reached by a real packet from
    // a's frontend with its own source IP (10.10.1.5) kept.
    assert.match(res.stdout, /^federated Service shop\/db-federated in cluster a .*: 3 endpoints$/m);
    for (const [cluster, pod, ip] of [
      ['a', 'db-a', '10.10.1.7'],
      ['b', 'b\\/db-1', '10.20.1.5'],
      ['b', 'b\\/db-2', '10.20.2.5'],
    ] as const)
      assert.match(
        res.stdout,
        new RegExp(
          `^${cluster}\\s+${pod}\\s+${ip.replace(/\./g, '\\.')}\\s+5432/tcp\\s+allow\\s+10\\.10\\.1\\.5\\s+ok$`,
          'm',
        ),
      );

    await t.test('fedmesh services shows the federated Service with its endpoints per cluster', () => {
      const r = fedmesh([
        'services',
        '--cluster',
        'a',
        '--datastore',
        `file:${join(dir, 'a')}`,
        '--output',
        'json',
      ]);
      assert.equal(r.status, 0, r.stderr);
      const report = JSON.parse(r.stdout) as {
        services: { name: string; problems: string[]; endpoints: { cluster: string; ip: string }[] }[];
      };
      const svc = report.services.find((s) => s.name === 'db-federated');
      assert.ok(svc, r.stdout);
      assert.deepEqual(svc.problems, []);
      assert.deepEqual(svc.endpoints.map((e) => `${e.cluster} ${e.ip}`).sort(), [
        'a 10.10.1.7',
        'b 10.20.1.5',
        'b 10.20.2.5',
      ]);
      assert.match(readFileSync(join(dir, 'a', 'federated-endpoints.yaml'), 'utf8'), /name: b\/db-2/);
    });

    const node = `${prefix}-b-node1`;
    const frontendNs = `${prefix}-a-frontend-1`;
    const dbIp = '10.20.1.5';

    await t.test('the kernel holds what an operator expects', async () => {
      const save = backend === 'nft' ? 'iptables-nft-save' : 'iptables-legacy-save';
      const other = backend === 'nft' ? 'iptables-legacy-save' : 'iptables-nft-save';
      const filter = (await run(save, ['-t', 'filter'], { netns: node })).stdout;
      assert.match(filter, /^-A FORWARD .*cali:[A-Za-z0-9_-]{16}.* -j cali-FORWARD$/m);
      assert.match(filter, /^:cali-tw-cali7fd651e3ab8 /m, 'ingress chain of b/db-1');
      assert.match(
        filter,
        /^-A cali-tw-cali7fd651e3ab8 .*-j DROP$/m,
        'db-1 is selected by a policy: default deny',
      );
      for (const line of filter.split('\n').filter((l) => l.startsWith('-A cali-'))) {
        assert.match(line, /--comment "?cali:[A-Za-z0-9_-]{16}/, `every rule carries a hash: ${line}`);
      }
      const otherSave = await run(other, ['-t', 'filter'], { netns: node, allowFailure: true });
      assert.doesNotMatch(otherSave.stdout, /cali-/, `nothing written to the ${other} backend`);
      const nat = (await run(save, ['-t', 'nat'], { netns: node })).stdout;
      assert.match(
        nat,
        /--match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst .*-j MASQUERADE/,
      );

      const sets = (await run('ipset', ['list'], { netns: node })).stdout;
      assert.match(sets, /Name: cali40all-ipam-pools[\s\S]*?Members:\n(?:.*\n)*?10\.10\.0\.0\/16/);
      const ruleSet = /Name: (cali40s:\S+)\nType: hash:net[\s\S]*?Members:\n((?:\S+\n?)*)/.exec(sets);
      assert.ok(ruleSet, 'a rule-selector ipset exists');
      assert.deepEqual(
        ruleSet[2]!.trim().split('\n').sort(),
        ['10.10.1.5', '10.10.2.5'],
        'the set holds cluster a frontends',
      );

      const routes = (await run('ip', ['-n', node, 'route', 'show', 'proto', '80'])).stdout;
      for (const block of ['10.10.1.0/26', '10.10.2.0/26', '10.20.2.0/26']) {
        assert.match(
          routes,
          new RegExp(`^${block.replace(/\./g, '\\.')} via \\S+ dev vxlan.calico .*onlink`, 'm'),
        );
      }
      assert.match(routes, /^10\.20\.1\.5 dev cali7fd651e3ab8 /m, 'workload /32 route');
      const fdb = (await run('bridge', ['-n', node, 'fdb', 'show', 'dev', 'vxlan.calico'])).stdout;
      assert.equal(
        fdb.split('\n').filter((l) => / self permanent/.test(l)).length,
        3,
        'one FDB entry per other node',
      );
      const link = (await run('ip', ['-n', node, '-d', 'link', 'show', 'vxlan.calico'])).stdout;
      assert.match(link, /mtu 1450 /);
      assert.match(link, /vxlan id 4096 .*dstport 4789/);
    });

    await t.test("each agent is ready and reports in metrics on its node's loopback", async () => {
      const script =
        "const r=await fetch('http://127.0.0.1:9099/readiness');const m=await (await fetch('http://127.0.0.1:9099/metrics')).text();console.log(r.status);console.log(m)";
      const r = await run('ip', [
        'netns',
        'exec',
        node,
        process.execPath,
        '--input-type=module',
        '-e',
        script,
      ]);
      assert.match(r.stdout, /^200$/m);
      assert.match(r.stdout, /^fedmesh_agent_in_sync 1$/m);
      assert.match(r.stdout, /^fedmesh_agent_feed_connected 1$/m);
      assert.match(r.stdout, /^fedmesh_agent_apply_failures 0$/m);
    });

    await t.test(
      'a malformed YAML document is refused with file and field; everything else keeps working',
      async () => {
        const file = join(dir, 'a', 'broken.yaml');
        appendFileSync(
          file,
          'apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: bad-pool}\nspec: {cidr: 10.99.0.1/16}\n',
        );
        const log = join(dir, 'syncer-a.log');
        await waitFor('the syncer to refuse the document', () => {
          const text = readFileSync(log, 'utf8');
          return text.includes('broken.yaml') && text.includes('spec.cidr');
        });
        assert.ok(await tcp(frontendNs, dbIp), 'frontend still reaches db');
      },
    );

    await t.test(
      'a policy whose selector does not parse is refused with the position; other policies apply',
      async () => {
        appendFileSync(
          join(dir, 'a', 'bad-policy.yaml'),
          'apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: bad-selector}\nspec:\n  selector: app == \n  types: [Ingress]\n',
        );
        await waitFor('the refusal', () =>
          /bad-selector[\s\S]*position/.test(readFileSync(join(dir, 'syncer-a.log'), 'utf8')),
        );
        assert.ok(await tcp(frontendNs, dbIp), 'frontend still reaches db');
        assert.ok(!(await tcp(`${prefix}-a-web-1`, dbIp)), 'web still denied');
      },
    );

    await t.test(
      'with the syncer of cluster b gone, node b-node1 keeps enforcing, unchanged (fail-static)',
      async () => {
        const before = (
          await run(backend === 'nft' ? 'iptables-nft-save' : 'iptables-legacy-save', ['-t', 'filter'], {
            netns: node,
          })
        ).stdout;
        const hashes = (s: string) => [...s.matchAll(/cali:([A-Za-z0-9_-]{16})/g)].map((m) => m[1]).sort();
        assert.ok(hashes(before).length > 20);
        assert.ok(await tcp(frontendNs, dbIp));
        // Fail-static: with the syncer of b stopped, the dataplane keeps enforcing.
        const pids = readFileSync(join(dir, 'pids'), 'utf8');
        const syncerB = /^(\d+) syncer-b$/m.exec(pids);
        assert.ok(syncerB);
        process.kill(Number(syncerB[1]), 'SIGTERM');
        await new Promise((r) => setTimeout(r, 1500));
        assert.ok(await tcp(frontendNs, dbIp), 'still allowed with the syncer gone');
        assert.ok(!(await tcp(`${prefix}-a-web-1`, dbIp)), 'still denied with the syncer gone');
        const after = (
          await run(backend === 'nft' ? 'iptables-nft-save' : 'iptables-legacy-save', ['-t', 'filter'], {
            netns: node,
          })
        ).stdout;
        assert.deepEqual(hashes(after), hashes(before), 'no rule changed while the feed is down');
      },
    );

    const down = fedmesh(['demo', 'down', '--dir', dir, '--prefix', prefix]);
    assert.equal(down.status, 0, down.stderr);
    const left = (await listNetns()).filter((n) => n.startsWith(prefix));
    assert.deepEqual(left, [], 'demo down removed every namespace');
    assert.equal(existsSync(dir), false, 'demo down removed its files');
  });
}
