// `fedmesh eval SELECTOR` as an operator runs it: a file datastore (cluster a) with an RCC to
// cluster b; local endpoints print as `<namespace>/<name>`, remote ones as `<cluster>/<namespace>/<name>`,
// host endpoints without a namespace; labels inherited from profiles and namespaces count; a
// selector that does not parse is refused with its position and exit code 2.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

const BIN = new URL('../../bin/fedmesh.js', import.meta.url).pathname;
let dir = '';

const wep = (
  node: string,
  ns: string,
  pod: string,
  ip: string,
  labels: string,
  profiles = `[kns.${ns}]`,
) => `apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: ${node.replace(/-/g, '--')}-k8s-${pod.replace(/-/g, '--')}-eth0, namespace: ${ns}, labels: ${labels}}
spec: {orchestrator: k8s, node: ${node}, pod: ${pod}, endpoint: eth0, interfaceName: cali${pod.replace(/-/g, '').padEnd(11, '0').slice(0, 11)}, ipNetworks: [${ip}/32], profiles: ${profiles}}`;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'fedmesh-eval-'));
  mkdirSync(join(dir, 'a'));
  mkdirSync(join(dir, 'b'));
  writeFileSync(
    join(dir, 'a', 'all.yaml'),
    [
      'apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: web}}',
      'apiVersion: v1\nkind: Namespace\nmetadata: {name: ops, labels: {team: infra}}',
      'apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: gold}\nspec: {labelsToApply: {sla: gold}}',
      wep('a-node1', 'shop', 'frontend-1', '10.10.0.5', '{app: frontend, version: v2}'),
      wep('a-node1', 'shop', 'web-1', '10.10.0.6', '{app: web}', '[kns.shop, gold]'),
      wep('a-node2', 'ops', 'prom-1', '10.10.0.7', '{app: prometheus}'),
      'apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: a-node1-eth0, labels: {role: node}}\nspec: {node: a-node1, interfaceName: eth0, expectedIPs: [192.168.0.11]}',
      'apiVersion: projectcalico.org/v3\nkind: RemoteClusterConfiguration\nmetadata: {name: b}\nspec: {datastoreType: file, fileDatastorePath: ../b}',
    ].join('\n---\n'),
  );
  writeFileSync(
    join(dir, 'b', 'all.yaml'),
    [
      'apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: data}}',
      wep('b-node1', 'shop', 'db-1', '10.20.0.5', '{app: db, version: v2}'),
      wep('b-node1', 'shop', 'frontend-9', '10.20.0.6', '{app: frontend}'),
    ].join('\n---\n'),
  );
});
after(() => rmSync(dir, { recursive: true, force: true }));

function evalSel(selector: string, output?: string) {
  const args = [BIN, 'eval', selector, '--cluster', 'a', '--datastore', `file:${join(dir, 'a')}`];
  if (output) args.push('--output', output);
  return spawnSync(process.execPath, args, {
    encoding: 'utf8',
    env: { ...process.env, FEDMESH_LOG_LEVEL: 'warn' },
  });
}

function matches(selector: string): string[] {
  const r = evalSel(selector, 'json');
  assert.equal(r.status, 0, r.stderr);
  return (JSON.parse(r.stdout) as { matches: { endpoint: string }[] }).matches.map((m) => m.endpoint).sort();
}

const FE1 = 'shop/a--node1-k8s-frontend--1-eth0';
const WEB1 = 'shop/a--node1-k8s-web--1-eth0';
const PROM = 'ops/a--node2-k8s-prom--1-eth0';
const DB = 'b/shop/b--node1-k8s-db--1-eth0';
const FE9 = 'b/shop/b--node1-k8s-frontend--9-eth0';
const HEP = 'a-node1-eth0';

const cases: [string, string[]][] = [
  ["app == 'frontend'", [FE1, FE9]],
  ['app == "frontend" && fedmesh.io/cluster == "a"', [FE1]],
  ["app != 'frontend'", [DB, HEP, PROM, WEB1]], // absent label counts as "not equal"
  ["app in {'db', 'web'}", [DB, WEB1]],
  ["app not in {'db', 'web'}", [FE1, FE9, HEP, PROM]],
  ['has(version)', [DB, FE1]],
  ['!has(app)', [HEP]],
  ["version == 'v2' || app == 'prometheus'", [DB, FE1, PROM]],
  ["!(app == 'frontend')", [DB, HEP, PROM, WEB1]],
  ["app starts with 'fr'", [FE1, FE9]],
  ["app ends with 'eus'", [PROM]],
  ["app contains 'on'", [FE1, FE9]],
  ["sla == 'gold'", [WEB1]], // inherited from the Profile the endpoint names
  ["pcns.team == 'web'", [FE1, WEB1]], // namespace labels arrive through kns.<ns>
  ["projectcalico.org/namespace == 'shop'", [DB, FE1, FE9, WEB1]],
  ["fedmesh.io/cluster == 'b'", [DB, FE9]],
  ['global()', [DB, FE1, FE9, HEP, PROM, WEB1]], // Calico's GlobalNode: true outside a namespaceSelector
  ['all()', [DB, FE1, FE9, HEP, PROM, WEB1]],
  ['', [DB, FE1, FE9, HEP, PROM, WEB1]],
  ["role == 'node'", [HEP]],
];

for (const [sel, want] of cases) {
  test(`eval ${JSON.stringify(sel)}`, () => assert.deepEqual(matches(sel), want.sort()));
}

test('text output lists local and remote endpoints as <ns>/<name> and <cluster>/<ns>/<name>', () => {
  const r = evalSel("app == 'frontend'");
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^Endpoints matching selector app == "frontend":$/m);
  assert.match(r.stdout, new RegExp(`^  ${FE1}$`, 'm'));
  assert.match(r.stdout, new RegExp(`^  ${FE9}$`, 'm'));
});

for (const bad of ['app ==', "app = 'x'", 'has(', "a in {'x'", "'x' == a", ')(', 'bad key! == "x"']) {
  test(`eval refuses ${JSON.stringify(bad)} with the position`, () => {
    const r = evalSel(bad);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /invalid selector: .*position \d+/);
    assert.equal(r.stdout, '');
  });
}
