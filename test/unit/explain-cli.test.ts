// `fedmesh explain` as an operator runs it, on a copy of examples/two-cluster: endpoints named as
// `eval` prints them (or by pod name, or by address); the source's egress decided by its own
// cluster's policies and the destination's ingress by its cluster's, each in that cluster's view;
// text and JSON agree; a name that is no endpoint is refused with exit code 2.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ExplainError, type ExplainReport, explain as explainInProcess } from '../../cli/explain.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const BIN = join(ROOT, 'bin/fedmesh.js');
let dir = '';

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'fedmesh-explain-'));
  cpSync(join(ROOT, 'examples/two-cluster/a'), join(dir, 'a'), { recursive: true });
  cpSync(join(ROOT, 'examples/two-cluster/b'), join(dir, 'b'), { recursive: true });
  // A second world where cluster b cannot be read: a alone, its RCC pointing at nothing.
  cpSync(join(ROOT, 'examples/two-cluster/a'), join(dir, 'lonely', 'a'), { recursive: true });
  // A third where b also polices egress: to show policies stay in their own cluster.
  cpSync(join(ROOT, 'examples/two-cluster/a'), join(dir, 'strict', 'a'), { recursive: true });
  cpSync(join(ROOT, 'examples/two-cluster/b'), join(dir, 'strict', 'b'), { recursive: true });
  writeFileSync(
    join(dir, 'strict', 'a', 'host.yaml'),
    `apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: a-node1-eth0, labels: {role: node}}
spec: {node: a-node1, interfaceName: eth0, expectedIPs: [192.168.100.11]}
`,
  );
  writeFileSync(
    join(dir, 'strict', 'b', 'web-egress.yaml'),
    `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web-egress, namespace: shop}
spec:
  selector: app == 'web'
  types: [Egress]
  egress:
  - action: Log
  - action: Deny
    protocol: TCP
    destination: {ports: [80]}
  - action: Allow
`,
  );
});
after(() => rmSync(dir, { recursive: true, force: true }));

function fedmesh(...args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, FEDMESH_LOG_LEVEL: 'warn' },
  });
}

function explain(
  from: string,
  to: string,
  port: string,
  opts: { world?: string; cluster?: string; json?: boolean } = {},
) {
  const cluster = opts.cluster ?? 'a';
  const base = opts.world ? join(dir, opts.world) : dir;
  const args = [
    'explain',
    '--cluster',
    cluster,
    '--datastore',
    `file:${join(base, cluster)}`,
    '--from',
    from,
    '--to',
    to,
    '--port',
    port,
  ];
  if (opts.json) args.push('--output', 'json');
  // A process start costs about a second: the same command runs once.
  const key = args.join('\0');
  let r = runs.get(key);
  if (!r) {
    r = fedmesh(...args);
    runs.set(key, r);
  }
  return r;
}
const runs = new Map<string, ReturnType<typeof fedmesh>>();

function report(
  from: string,
  to: string,
  port: string,
  opts: { world?: string; cluster?: string } = {},
): ExplainReport {
  const r = explain(from, to, port, { ...opts, json: true });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as ExplainReport;
}

function text(
  from: string,
  to: string,
  port: string,
  opts: { world?: string; cluster?: string } = {},
): string {
  const r = explain(from, to, port, opts);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

/** The same report without a process start, for the cases that need no exit code. */
function inProcess(
  from: string,
  to: string,
  port: string,
  opts: { world?: string; cluster?: string } = {},
): Promise<ExplainReport> {
  const cluster = opts.cluster ?? 'a';
  const base = opts.world ? join(dir, opts.world) : dir;
  return explainInProcess({
    cluster,
    datastore: `file:${join(base, cluster)}`,
    from,
    to,
    port,
    output: 'json',
  });
}

// Names exactly as `eval` prints them (checked first, below).
const FE1 = 'shop/a--node1-k8s-frontend--1-eth0';
const WEB1 = 'shop/a--node1-k8s-web--1-eth0';
const DB1 = 'b/shop/b--node1-k8s-db--1-eth0';
const WEBB = 'b/shop/b--node2-k8s-web--b-eth0';

describe('explain: endpoint names', () => {
  it('eval prints the names explain takes', () => {
    const r = fedmesh(
      'eval',
      'all()',
      '--cluster',
      'a',
      '--datastore',
      `file:${join(dir, 'a')}`,
      '--output',
      'json',
    );
    assert.equal(r.status, 0, r.stderr);
    const names = (JSON.parse(r.stdout) as { matches: { endpoint: string }[] }).matches.map(
      (m) => m.endpoint,
    );
    for (const n of [FE1, WEB1, DB1, WEBB]) assert.ok(names.includes(n), `${n} in ${names.join(', ')}`);
  });

  it('takes eval names, pod names and addresses alike', async () => {
    for (const [from, to] of [
      [FE1, DB1],
      ['shop/frontend-1', 'b/shop/db-1'],
      ['a/shop/frontend-1', 'b/shop/b--node1-k8s-db--1-eth0'],
      ['10.10.1.5', '10.20.1.5'],
    ] as const) {
      const r = await inProcess(from, to, '5432/tcp');
      assert.equal(r.source.endpoint, FE1, from);
      assert.equal(r.destination.endpoint, DB1, to);
      assert.equal(r.verdict, 'allowed');
    }
  });

  it('refuses an unknown endpoint with exit code 2', () => {
    for (const [from, to, says] of [
      ['shop/nope', DB1, 'no workload endpoint "nope" in namespace shop of cluster a'],
      [FE1, 'b/shop/nope', 'no workload endpoint "nope" in namespace shop of cluster b'],
      [FE1, 'c/shop/db-1', 'no cluster "c" (cluster a knows a, b)'],
    ] as const) {
      const r = explain(from, to, '5432/tcp');
      assert.equal(r.status, 2, `${from} -> ${to}: ${r.stdout}`);
      assert.ok(r.stderr.startsWith('fedmesh explain: '), r.stderr);
      assert.ok(r.stderr.includes(says), r.stderr);
      assert.equal(r.stdout, '');
    }
  });

  it('says what is wrong with a name', async () => {
    for (const [from, says] of [
      ['nosuchns/frontend-1', 'no endpoints in namespace nosuchns'],
      ['a/b/c/d', 'expected <namespace>/<name>'],
      ['nohost', 'no host endpoint nohost in cluster a'],
      ['b/nohost', 'no host endpoint nohost in cluster b'],
    ] as const) {
      await assert.rejects(inProcess(from, DB1, '5432/tcp'), (e: Error) => {
        assert.ok(e instanceof ExplainError, String(e));
        assert.ok(e.message.includes(says), e.message);
        return true;
      });
    }
  });

  it('refuses a bad --port with exit code 2', async () => {
    const r = explain(FE1, DB1, '5432');
    assert.equal(r.status, 2);
    assert.match(
      r.stderr,
      /--port 5432: expected N\/tcp, N\/udp, N\/sctp or icmp \(say 5432\/tcp or 5432\/udp\)/,
    );
    for (const p of ['5432/xyz', '70000/tcp', 'tcp', '0/udp']) {
      await assert.rejects(inProcess(FE1, DB1, p), /--port/, p);
    }
  });
});

describe('explain: a -> b across the mesh', () => {
  it("frontend-1 -> db-1 5432/tcp: allowed by a's egress rule and b's ingress rule", () => {
    const r = report('shop/frontend-1', 'b/shop/db-1', '5432/tcp');
    assert.equal(r.verdict, 'allowed');
    assert.equal(r.source.cluster, 'a');
    assert.equal(r.source.labels?.['fedmesh.io/cluster'], 'a');
    assert.equal(r.destination.cluster, 'b');
    assert.equal(r.destination.labels?.['fedmesh.io/cluster'], 'b');

    assert.equal(r.egress.policiesOf, 'a');
    assert.equal(r.egress.decision, 'allow');
    assert.equal(r.egress.by, 'rule');
    assert.deepEqual(
      {
        policy: r.egress.rule?.policy,
        index: r.egress.rule?.index,
        action: r.egress.rule?.action,
        tier: r.egress.rule?.tier,
      },
      { policy: 'shop/frontend-to-remote-db', index: 0, action: 'allow', tier: 'default' },
    );
    assert.match(r.egress.rule?.match ?? '', /selector app == "db".*port 5432/);
    // a sees b's db with b's identity.
    assert.equal(r.egress.peer?.seenAs, DB1);
    assert.equal(r.egress.peer?.identityFrom, 'b');

    assert.equal(r.ingress.policiesOf, 'b');
    assert.equal(r.ingress.decision, 'allow');
    assert.deepEqual(
      { policy: r.ingress.rule?.policy, index: r.ingress.rule?.index, action: r.ingress.rule?.action },
      { policy: 'shop/db-ingress-from-a-frontend', index: 0, action: 'allow' },
    );
    assert.match(r.ingress.rule?.match ?? '', /fedmesh\.io\/cluster == "a"/);
    // b sees a's frontend under b's name for it, with a's identity.
    assert.equal(r.ingress.peer?.seenAs, 'a/shop/a--node1-k8s-frontend--1-eth0');
    assert.equal(r.ingress.peer?.identityFrom, 'a');
    assert.equal(r.ingress.peer?.labels?.app, 'frontend');
  });

  it('the text says the same, as an operator reads it', () => {
    const out = text('shop/frontend-1', 'b/shop/db-1', '5432/tcp');
    const has = (s: string) => assert.ok(out.includes(s), `missing ${JSON.stringify(s)} in:\n${out}`);
    has(`Flow ${FE1} -> ${DB1}, tcp port 5432: ALLOWED`);
    has(`Source:      ${FE1} (10.10.1.5), identity from cluster a`);
    has(`Destination: ${DB1} (10.20.1.5), identity from cluster b`);
    has('Egress from the source, by the policies of cluster a: ALLOWED');
    has(`destination as cluster a sees it: ${DB1} (10.20.1.5), identity from cluster b`);
    has('policy shop/frontend-to-remote-db');
    has('=> allowed by shop/frontend-to-remote-db egress rule 0 (tier default)');
    has('Ingress to the destination, by the policies of cluster b: ALLOWED');
    has(
      'source as cluster b sees it: a/shop/a--node1-k8s-frontend--1-eth0 (10.10.1.5), identity from cluster a',
    );
    has('=> allowed by shop/db-ingress-from-a-frontend ingress rule 0 (tier default)');
    has('Verdict: ALLOWED');
  });

  it('web-1 -> db-1: no egress policy in a, denied at the end of the tier in b', () => {
    const r = report('shop/web-1', 'b/shop/db-1', '5432/tcp');
    assert.equal(r.verdict, 'denied');
    assert.equal(r.egress.decision, 'allow');
    assert.equal(r.egress.by, 'profile');
    assert.equal(
      r.egress.reason,
      'no policy selects the endpoint in this direction; allowed by profile kns.shop egress rule 0',
    );
    assert.equal(r.ingress.policiesOf, 'b');
    assert.equal(r.ingress.decision, 'deny');
    assert.equal(r.ingress.by, 'end-of-tier');
    assert.equal(
      r.ingress.reason,
      'end of tier default: denied (policies selected the endpoint, none allowed)',
    );
    assert.equal(r.ingress.tiers[0]?.policies[0]?.policy, 'shop/db-ingress-from-a-frontend');
    assert.match(r.ingress.tiers[0]?.policies[0]?.rules[0]?.why ?? '', /not selected by selector/);
    assert.match(
      text('shop/web-1', 'b/shop/db-1', '5432/tcp'),
      /end of tier default: denied \(policies selected the endpoint, none allowed\)/,
    );
  });

  it('frontend-1 -> db-1 icmp: denied in a', () => {
    const r = report('shop/frontend-1', 'b/shop/db-1', 'icmp');
    assert.equal(r.verdict, 'denied');
    assert.equal(r.flow.protocol, 'icmp');
    assert.equal(r.egress.policiesOf, 'a');
    assert.equal(r.egress.decision, 'deny');
    assert.equal(r.egress.by, 'end-of-tier');
    assert.equal(r.egress.tiers[0]?.policies[0]?.rules[0]?.why, 'protocol is icmp, rule wants tcp');
    const out = text('shop/frontend-1', 'b/shop/db-1', 'icmp');
    assert.match(out, /Egress from the source, by the policies of cluster a: DENIED/);
    assert.match(out, /icmp type 8 code 0 \(echo request\): DENIED/);
  });

  it('frontend-1 -> db-1 on another port: denied by both', async () => {
    const r = await inProcess('shop/frontend-1', 'b/shop/db-1', '5433/tcp');
    assert.equal(r.verdict, 'denied');
    assert.equal(r.egress.decision, 'deny');
    assert.equal(r.ingress.decision, 'deny');
  });

  it('text and JSON give the same verdicts', () => {
    const seen = new Set<string>();
    for (const [from, to, port] of [
      ['shop/frontend-1', 'b/shop/db-1', '5432/tcp'],
      ['shop/web-1', 'b/shop/db-1', '5432/tcp'],
      ['shop/frontend-1', 'b/shop/db-1', 'icmp'],
      ['b/shop/web-b', 'shop/frontend-1', '80/udp'],
    ] as const) {
      const r = report(from, to, port);
      seen.add(r.verdict);
      const out = text(from, to, port);
      const first = out.split('\n')[0] ?? '';
      assert.ok(first.endsWith(`: ${r.verdict.toUpperCase()}`), `${first} vs ${r.verdict}`);
      assert.ok(out.includes(`\nVerdict: ${r.verdict.toUpperCase()} (`), out);
      const word = { allow: 'ALLOWED', deny: 'DENIED', unknown: 'UNKNOWN' } as const;
      assert.match(out, new RegExp(`^Egress from the source.*: ${word[r.egress.decision]}$`, 'm'));
      assert.match(out, new RegExp(`^Ingress to the destination.*: ${word[r.ingress.decision]}$`, 'm'));
    }
    assert.deepEqual([...seen].sort(), ['allowed', 'denied']);
  });

  it('a bare external address: only the source side has policies', async () => {
    const r = await inProcess('shop/frontend-1', '8.8.8.8', '53/udp');
    assert.equal(r.destination.endpoint, null);
    assert.equal(r.ingress.by, 'not-an-endpoint');
    assert.equal(r.ingress.decision, 'allow');
    assert.equal(r.egress.peer?.seenAs, null);
    assert.equal(r.egress.decision, 'deny');
    assert.equal(r.verdict, 'denied');
  });
});

describe('explain: each decision in its own cluster', () => {
  it("b -> a: the egress is b's policies' to decide", async () => {
    const r = await inProcess('b/shop/web-b', 'shop/frontend-1', '80/tcp', { world: 'strict' });
    assert.equal(r.egress.policiesOf, 'b');
    assert.equal(r.egress.decision, 'deny');
    assert.deepEqual([r.egress.rule?.policy, r.egress.rule?.index], ['shop/web-egress', 1]);
    // The log rule matched and carried on.
    assert.deepEqual(
      r.egress.tiers[0]?.policies[0]?.rules.map((x) => [x.action, x.matched]),
      [
        ['log', true],
        ['deny', true],
      ],
    );
    assert.equal(r.ingress.policiesOf, 'a');
    assert.equal(r.ingress.by, 'profile');
    assert.equal(r.verdict, 'denied');
  });

  it("b's egress policy never applies to a's web pods", async () => {
    const r = await inProcess('shop/web-1', 'b/shop/cache-1', '80/tcp', { world: 'strict' });
    assert.equal(r.egress.policiesOf, 'a');
    assert.equal(r.egress.by, 'profile');
    assert.equal(r.verdict, 'allowed');
  });

  it("run from cluster b, the names are b's", async () => {
    const r = await inProcess('a/shop/frontend-1', 'shop/db-1', '5432/tcp', { cluster: 'b' });
    assert.equal(r.source.endpoint, 'a/shop/a--node1-k8s-frontend--1-eth0');
    assert.equal(r.destination.endpoint, 'shop/b--node1-k8s-db--1-eth0');
    assert.equal(r.egress.policiesOf, 'a');
    assert.equal(r.ingress.policiesOf, 'b');
    assert.equal(r.verdict, 'allowed');
  });

  it('a host endpoint: Felix denies what no policy or profile allows, but its failsafe ports; its identity counts on the far side', async () => {
    for (const from of ['a-node1-eth0', '192.168.100.11']) {
      const r = await inProcess(from, 'b/shop/db-1', '5432/tcp', { world: 'strict' });
      assert.equal(r.source.endpoint, 'a-node1-eth0');
      assert.equal(r.source.kind, 'host');
      assert.equal(r.egress.by, 'no-profile');
      assert.equal(r.ingress.peer?.seenAs, 'a/a-node1-eth0');
      assert.equal(r.ingress.peer?.identityFrom, 'a');
      assert.equal(r.ingress.peer?.labels?.role, 'node');
      assert.equal(r.ingress.by, 'end-of-tier');
    }
    const r = await inProcess('b/shop/web-b', 'a/a-node1-eth0', '22/tcp', { world: 'strict', cluster: 'b' });
    assert.equal(r.destination.endpoint, 'a/a-node1-eth0');
    assert.equal(r.ingress.by, 'failsafe', 'SSH stays reachable');
    assert.equal(r.egress.policiesOf, 'b');
    assert.equal(r.verdict, 'allowed');
  });

  it('the other cluster cannot be read: its decision is unknown', async () => {
    const r = await inProcess('shop/web-1', '10.20.1.5', '5432/tcp', { world: 'lonely' });
    assert.equal(r.egress.decision, 'allow');
    assert.equal(r.ingress.decision, 'unknown');
    assert.equal(r.verdict, 'unknown');
    assert.ok(
      r.notes.some((n) => n.includes("cluster b's datastore cannot be read")),
      r.notes.join('\n'),
    );
    const named = explain('shop/web-1', 'b/shop/db-1', '5432/tcp', { world: 'lonely' });
    assert.equal(named.status, 2);
    assert.match(named.stderr, /cluster b's datastore cannot be read/);
  });
});
