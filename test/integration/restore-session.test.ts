// The kept `iptables-nft-restore` (native/restore-session.ts) against the real kernel, in a fresh
// namespace: blocks land one after another through one process; a refused block leaves the table
// as the last good block left it, ends the session, and the next write starts a new one; a tool
// killed behind the driver's back costs one failed pass, after which the dataplane converges.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ActivePolicy, DataplaneMessage, EndpointKey, PolicyKey } from '../../agent/calc/messages.ts';
import { Dataplane } from '../../agent/dataplane/dataplane.ts';
import type { Cidr } from '../../model/net.ts';
import { IpRouteDriver } from '../../native/iproute.ts';
import { IpSetDriver } from '../../native/ipset.ts';
import { IptablesDriver, type TableState } from '../../native/iptables.ts';
import { RestoreSession } from '../../native/restore-session.ts';
import { iptablesBackendSkip, netnsScope, sh } from '../harness/netns.ts';

const skip = await iptablesBackendSkip('nft');

const block = (rule: string) => `*filter\n:cali-s - [0:0]\n-A cali-s ${rule}\nCOMMIT\n`;
const rulesOf = (save: string, chain: string) => save.split('\n').filter((l) => l.startsWith(`-A ${chain} `));

test('a kept restore session: blocks land in turn; a refused one leaves the last good state', {
  skip,
}, async (t) => {
  const ns = await netnsScope(t).add('rses');
  const save = () => sh(ns, 'iptables-nft-save', '-t', 'filter');
  const session = new RestoreSession('iptables-nft-restore', ['--noflush'], ns);
  t.after(() => session.end());

  assert.deepEqual(await session.write(block('-s 10.0.0.1/32 -j ACCEPT')), { result: 'landed' });
  const pid = session.pid;
  assert.ok(pid !== undefined);
  assert.deepEqual(rulesOf(await save(), 'cali-s'), ['-A cali-s -s 10.0.0.1/32 -j ACCEPT']);
  // The next block, through the same process, replaces it (a block is read only when written).
  assert.deepEqual(await session.write(block('-s 10.0.0.2/32 -j ACCEPT')), { result: 'landed' });
  assert.equal(session.pid, pid, 'the same process');
  assert.deepEqual(rulesOf(await save(), 'cali-s'), ['-A cali-s -s 10.0.0.2/32 -j ACCEPT']);

  // A jump to a chain that does not exist: refused at COMMIT, nothing of the block lands.
  const refused = await session.write(block('-s 10.0.0.3/32 -j cali-missing'));
  assert.equal(refused.result, 'refused');
  assert.match('why' in refused ? refused.why : '', /cali-missing|line/);
  assert.deepEqual(
    rulesOf(await save(), 'cali-s'),
    ['-A cali-s -s 10.0.0.2/32 -j ACCEPT'],
    'last good state',
  );

  // The next write starts a new session.
  assert.deepEqual(await session.write(block('-s 10.0.0.4/32 -j ACCEPT')), { result: 'landed' });
  assert.ok(session.pid !== undefined && session.pid !== pid, 'a new process');
  assert.deepEqual(rulesOf(await save(), 'cali-s'), ['-A cali-s -s 10.0.0.4/32 -j ACCEPT']);
});

test('the driver writes through its session; a refused chain is still found and kept back', {
  skip,
}, async (t) => {
  const ns = await netnsScope(t).add('rsdr');
  const save = () => sh(ns, 'iptables-nft-save', '-t', 'filter');
  const driver = new IptablesDriver({ backend: 'nft', netns: ns, watch: null });
  t.after(() => driver.close());
  const state = (src: string, extra?: string): TableState => ({
    chains: [
      { name: 'cali-FORWARD', rules: [{ match: '', action: '-j cali-pi-a' }] },
      { name: 'cali-pi-a', rules: [{ match: `-s ${src}`, action: '-j ACCEPT' }] },
      ...(extra ? [{ name: 'cali-pi-b', rules: [{ match: extra, action: '-j DROP' }] }] : []),
    ],
    hooks: [{ chain: 'FORWARD', rule: { match: '', action: '-j cali-FORWARD' } }],
  });
  await driver.syncTable('filter', state('10.0.0.1/32'));
  await driver.syncTable('filter', state('10.0.0.2/32'), { reuseLastWrite: true });
  assert.match(rulesOf(await save(), 'cali-pi-a').join('\n'), /10\.0\.0\.2\/32/);
  // A chain the kernel refuses (its set does not exist) beside a change it takes.
  const st = await driver.syncTable('filter', state('10.0.0.3/32', '-m set --match-set cali40nope src'), {
    reuseLastWrite: true,
  });
  assert.deepEqual(
    st.refused.map((r) => r.chain),
    ['cali-pi-b'],
  );
  assert.match(rulesOf(await save(), 'cali-pi-a').join('\n'), /10\.0\.0\.3\/32/, 'the rest applied');
});

test('the session tool killed behind our back: the dataplane recovers and converges', { skip }, async (t) => {
  const ns = await netnsScope(t).add('rsdp');
  const iptables = new IptablesDriver({ backend: 'nft', netns: ns, watch: null });
  const dp = new Dataplane(
    { ipsets: new IpSetDriver({ netns: ns }), iptables, links: new IpRouteDriver({ netns: ns }) },
    { applyDelayMs: 1 },
  );
  t.after(() => dp.stop());
  const endpoint = (iface: string): DataplaneMessage => ({
    kind: 'EndpointUpdate',
    endpoint: {
      key: `n1/k8s/ns/${iface}/eth0` as EndpointKey,
      interfaceName: iface,
      ipv4Nets: ['10.0.1.5/32' as Cidr],
      profiles: [],
      ingress: [],
      egress: [],
    },
  });
  const policy: ActivePolicy = { key: 'default/p' as PolicyKey, displayName: 'p', inbound: [], outbound: [] };
  const first = dp.whenApplied();
  dp.onMessages([endpoint('caliaaaa'), { kind: 'ActivePolicyUpdate', policy }, { kind: 'InSync' }]);
  await first;
  const save = () => sh(ns, 'iptables-nft-save', '-t', 'filter');
  assert.match(await save(), /:cali-tw-caliaaaa/);
  // Kill the kept tool, then change something at once: the write may find it dead (refused or
  // unsure); either way the pass must end with the kernel holding the new state.
  const pid = iptables.sessionPid;
  assert.ok(pid !== undefined, 'the pass wrote through a kept session');
  process.kill(pid, 'SIGKILL');
  const second = dp.whenApplied();
  dp.onMessages([endpoint('calibbbb')]);
  await second;
  const s = await save();
  assert.match(s, /:cali-tw-calibbbb/);
  assert.match(s, /:cali-tw-caliaaaa/);
  assert.ok(dp.healthy);
});
