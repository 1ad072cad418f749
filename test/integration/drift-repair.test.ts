// The cheap drift check, in a namespace, on both iptables backends: the dataplane programs an ipset,
// a workload's chains and the hooks into them; then someone flushes the ipset, deletes our jump
// from FORWARD, and inserts a foreign rule into one of our chains. The periodic full resync is off
// (an hour), so only the drift check (ipset member counts, a save diffed against our last write)
// can repair them. Timing is not asserted here (`npm run bench -- repair` measures it).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { EndpointKey, IpSetId } from '../../agent/calc/messages.ts';
import { Dataplane } from '../../agent/dataplane/dataplane.ts';
import { ipsetName } from '../../agent/rules/names.ts';
import type { Cidr } from '../../model/net.ts';
import { IpRouteDriver } from '../../native/iproute.ts';
import { IpSetDriver } from '../../native/ipset.ts';
import { type IptablesBackend, IptablesDriver, type TableState } from '../../native/iptables.ts';
import { NftMonitor } from '../../native/nft-monitor.ts';
import { isRoot, netnsScope, sh } from '../harness/netns.ts';
import { waitFor } from '../helpers/wait.ts';

const SET = 's:drifttest' as IpSetId;
const MEMBERS = ['10.30.0.1', '10.30.0.2', '10.30.0.3'];

for (const backend of ['nft', 'legacy'] as IptablesBackend[]) {
  test(`a flushed ipset, a deleted hook and a foreign rule in our chain are repaired (${backend})`, {
    skip: !isRoot(),
  }, async (t) => {
    const scope = netnsScope(t);
    const node = await scope.add('node');
    const dataplane = new Dataplane(
      {
        ipsets: new IpSetDriver({ netns: node }),
        iptables: new IptablesDriver({ backend, netns: node }),
        links: new IpRouteDriver({ netns: node }),
      },
      { resyncIntervalMs: 3_600_000, driftCheckIntervalMs: 0 },
    );
    t.after(() => dataplane.stop());
    dataplane.onMessages([
      { kind: 'IPSetUpdate', id: SET, type: 'hash:net', members: MEMBERS },
      {
        kind: 'EndpointUpdate',
        endpoint: {
          key: 'a/n1/k8s/shop/p1/eth0' as EndpointKey,
          interfaceName: 'calidrift0001',
          ipv4Nets: ['10.10.0.5/32' as Cidr],
          profiles: [],
          ingress: [],
          egress: [],
        },
      },
      {
        kind: 'PoolUpdate',
        pool: { cidr: '10.10.0.0/16' as Cidr, cluster: 'a', local: true, natOutgoing: true },
      },
      { kind: 'InSync' },
    ]);
    await dataplane.whenApplied();
    const save = backend === 'nft' ? 'iptables-nft-save' : 'iptables-legacy-save';
    const ipt = backend === 'nft' ? 'iptables-nft' : 'iptables-legacy';
    const filter = () => sh(node, save, '-t', 'filter');
    const members = async () =>
      (await sh(node, 'ipset', 'list', ipsetName(SET)))
        .split('\n')
        .filter((l) => /^10\.30\./.test(l))
        .sort();
    assert.deepEqual(await members(), MEMBERS, 'set programmed');
    assert.match(await filter(), /-A FORWARD .*cali:/, 'hook in FORWARD programmed');
    assert.deepEqual(await dataplane.checkDrift(), [], 'nothing drifted right after our own write');

    /** One drift check and the pass it schedules; returns what the check saw drifted. */
    const checkAndRepair = async () => {
      const drifted = await dataplane.checkDrift();
      await dataplane.whenApplied();
      return drifted;
    };

    await t.test('a flushed ipset', async () => {
      await sh(node, 'ipset', 'flush', ipsetName(SET));
      assert.deepEqual(await members(), []);
      assert.deepEqual(await checkAndRepair(), [`ipset ${ipsetName(SET)}`]);
      assert.deepEqual(await members(), MEMBERS);
    });

    await t.test('a member swapped for another (the count unchanged)', async () => {
      await sh(node, 'ipset', 'del', ipsetName(SET), '10.30.0.2');
      await sh(node, 'ipset', 'add', ipsetName(SET), '10.30.0.9');
      assert.deepEqual(await members(), ['10.30.0.1', '10.30.0.3', '10.30.0.9']);
      // Each check compares the members of a slice of the sets in turn (at least one set): within
      // as many checks as we own sets, the sweep reaches this one.
      const owned = (await sh(node, 'ipset', 'list', '-n')).split('\n').filter((n) => n.startsWith('cali40'));
      const seen: string[] = [];
      for (let i = 0; i < owned.length && seen.length === 0; i++) seen.push(...(await checkAndRepair()));
      assert.deepEqual(seen, [`ipset ${ipsetName(SET)}`]);
      assert.deepEqual(await members(), MEMBERS);
      assert.deepEqual(await dataplane.checkDrift(), [], 'and nothing drifted after the repair');
    });

    await t.test('a deleted hook (our jump from FORWARD)', async () => {
      const hook = (await filter())
        .split('\n')
        .find((l) => l.startsWith('-A FORWARD ') && l.includes('cali:'));
      assert.ok(hook, 'a hook of ours in FORWARD');
      await sh(node, ipt, '-D', 'FORWARD', '1');
      assert.ok(!(await filter()).includes(hook), 'hook gone');
      assert.deepEqual(await checkAndRepair(), ['filter table']);
      assert.ok((await filter()).includes(hook), `hook back: ${await filter()}`);
    });

    await t.test('a foreign rule inserted in one of our chains', async () => {
      const chain = (await filter()).match(/^:(cali-tw-\S+)/m)?.[1];
      assert.ok(chain, 'a workload chain of ours');
      await sh(node, ipt, '-I', chain, '1', '-s', '10.99.0.1', '-j', 'ACCEPT');
      assert.match(await filter(), /-A cali-tw-\S+ -s 10\.99\.0\.1/);
      assert.deepEqual(await checkAndRepair(), ['filter table']);
      assert.doesNotMatch(await filter(), /10\.99\.0\.1/, 'foreign rule removed from our chain');
      assert.deepEqual(await dataplane.checkDrift(), [], 'and nothing drifted after the repair');
    });
  });
}

for (const backend of ['nft', 'legacy'] as IptablesBackend[]) {
  test(`a sync planned on the last write (no read-back) leaves what a re-read sync would (${backend})`, {
    skip: !isRoot(),
  }, async (t) => {
    const scope = netnsScope(t);
    const node = await scope.add('node');
    const ipt = backend === 'nft' ? 'iptables-nft' : 'iptables-legacy';
    // A foreign rule already in FORWARD: our hooks go above it, and positions must still add up.
    await sh(node, ipt, '-A', 'FORWARD', '-s', '10.99.0.1', '-j', 'ACCEPT');
    const driver = new IptablesDriver({ backend, netns: node });
    t.after(() => driver.close());
    const state = (n: number): TableState => ({
      chains: [
        {
          name: 'cali-a',
          rules: Array.from({ length: n }, (_, i) => ({ match: `-s 10.1.0.${i}`, action: '-j DROP' })),
        },
        { name: `cali-b${n}`, rules: [{ match: '', action: '-j cali-a' }] },
      ],
      hooks: [{ chain: 'FORWARD', rule: { match: '', action: `-j cali-b${n}` } }],
    });
    await driver.syncTable('filter', state(3));
    for (const n of [5, 2, 4]) {
      const st = await driver.syncTable('filter', state(n), { reuseLastWrite: true });
      assert.equal(st.commands, 1, 'written without a failure');
      assert.deepEqual(
        await driver.driftedTables(['filter']),
        [],
        `after ${n}: the kernel holds what we planned`,
      );
      assert.equal(
        (await driver.syncTable('filter', state(n))).lines,
        0,
        'a re-read sync finds nothing to do',
      );
    }
    const save = await sh(node, `${ipt}-save`, '-t', 'filter');
    assert.match(save, /-A FORWARD -s 10\.99\.0\.1\/32 -j ACCEPT/, 'the foreign rule is untouched');
    assert.doesNotMatch(save, /cali-b5|cali-b3|cali-b2/, 'old chains gone');
  });
}

test('nft monitor: our own restores leave a table quiet, another process changing it does not', {
  skip: !isRoot(),
}, async (t) => {
  const scope = netnsScope(t);
  const node = await scope.add('node');
  const watch = new NftMonitor({ netns: node });
  t.after(() => watch.stop());
  const driver = new IptablesDriver({ backend: 'nft', netns: node, watch });
  const state = (n: number): TableState => ({
    chains: [
      {
        name: 'cali-m',
        rules: Array.from({ length: n }, (_, i) => ({ match: `-s 10.1.0.${i}`, action: '-j DROP' })),
      },
    ],
    hooks: [{ chain: 'FORWARD', rule: { match: '', action: '-j cali-m' } }],
  });
  await driver.syncTable('filter', state(1));
  assert.deepEqual(await driver.driftedTables(['filter']), [], 'the first check (it reads) finds our write');
  await waitFor('the watch settles', () => watch.quiet('filter'), Boolean);
  const seen = watch.lines;
  await driver.syncTable('filter', state(3), { reuseLastWrite: true });
  await waitFor(
    'the monitor prints our transaction',
    () => watch.lines,
    (n) => n > seen,
  );
  assert.ok(watch.quiet('filter'), 'our own write is not drift');
  await sh(node, 'iptables-nft', '-I', 'cali-m', '1', '-s', '10.99.0.1', '-j', 'ACCEPT');
  await waitFor(
    'the foreign rule is seen',
    () => watch.quiet('filter'),
    (q) => !q,
  );
  assert.deepEqual(await driver.driftedTables(['filter']), ['filter']);
  await driver.syncTable('filter', state(3), { reuseLastWrite: true });
  assert.doesNotMatch(await sh(node, 'iptables-nft-save', '-t', 'filter'), /10\.99\.0\.1/, 'repaired');
});
