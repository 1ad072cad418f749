// IptablesDriver against the real kernel on both backends, each in its own fresh namespace; every
// check reads the kernel back with the backend's own iptables-save.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type IptablesBackend,
  IptablesDriver,
  type IptChain,
  type TableState,
} from '../../native/iptables.ts';
import { inNetns } from '../../native/netns.ts';
import { hasTool, isRoot, netnsScope, sh } from '../harness/netns.ts';

const FOREIGN = '-s 192.0.2.1/32 -m comment --comment foreign -j ACCEPT';

function filterState(extra: IptChain[] = []): TableState {
  return {
    chains: [
      {
        name: 'cali-FORWARD',
        rules: [
          { match: '-m conntrack --ctstate INVALID', action: '-j DROP', comment: 'drop invalid' },
          { match: '-m conntrack --ctstate RELATED,ESTABLISHED', action: '-j ACCEPT' },
          { match: '-o cali+', action: '-j cali-to-wl-dispatch' },
        ],
      },
      {
        name: 'cali-to-wl-dispatch',
        rules: [{ match: '-o cali+', action: '-j DROP', comment: 'unknown interface' }],
      },
      {
        name: 'cali-INPUT',
        rules: [{ match: '-p udp --dport 4789', action: '-j ACCEPT', comment: 'vxlan' }],
      },
      ...extra,
    ],
    hooks: [
      { chain: 'FORWARD', rule: { match: '', action: '-j cali-FORWARD' } },
      { chain: 'INPUT', rule: { match: '', action: '-j cali-INPUT' } },
    ],
  };
}

/** `-A CHAIN` lines of one built-in chain, in order. */
function rulesOf(save: string, chain: string): string[] {
  return save.split('\n').filter((l) => l.startsWith(`-A ${chain} `));
}

function chainsIn(save: string): string[] {
  return save
    .split('\n')
    .filter((l) => l.startsWith(':'))
    .map((l) => l.slice(1).split(' ')[0] ?? '');
}

const legacyMissing = !(await hasTool('iptables-legacy'));

for (const backend of ['nft', 'legacy'] as IptablesBackend[]) {
  const skip = !isRoot()
    ? 'needs root (network namespaces)'
    : backend === 'legacy' && legacyMissing
      ? 'iptables-legacy is not installed (apt-get install -y iptables): legacy backend not tested'
      : false;

  test(`IptablesDriver (${backend})`, { skip }, async (t) => {
    const ns = await netnsScope(t).add(`ipt${backend.slice(0, 3)}`);
    const ipt = `iptables-${backend}`;
    const save = (table = 'filter') => sh(ns, `${ipt}-save`, '-t', table);
    const driver = new IptablesDriver({ backend, netns: ns });

    await t.test('detectBackend: the iptables on PATH while no agent state exists', async () => {
      const version = await sh(ns, 'iptables', '--version');
      assert.equal(await IptablesDriver.detectBackend(ns), /legacy/.test(version) ? 'legacy' : 'nft');
    });

    // Someone else's rule and chain: both must survive every sync.
    await sh(ns, ipt, '-w', '-A', 'FORWARD', ...FOREIGN.split(' '));
    await sh(ns, ipt, '-w', '-N', 'KUBE-FORWARD');
    await sh(ns, ipt, '-w', '-A', 'FORWARD', '-j', 'KUBE-FORWARD');
    const foreignIntact = async () => {
      const s = await save();
      assert.ok(s.includes('-A FORWARD -s 192.0.2.1/32 -m comment --comment foreign -j ACCEPT'), s);
      assert.ok(s.includes('-A FORWARD -j KUBE-FORWARD'), s);
      assert.ok(chainsIn(s).includes('KUBE-FORWARD'));
    };

    await t.test('detectBackend: the backend already holding KUBE- chains', async () => {
      assert.equal(await IptablesDriver.detectBackend(ns), backend);
    });

    await t.test('first sync: chains, rules and hooks in one restore, hooks on top', async () => {
      const st = await driver.syncTable('filter', filterState());
      assert.equal(st.commands, 1);
      assert.equal(st.chainsCreated, 3);
      assert.equal(st.hooksInserted, 2);
      const s = await save();
      for (const c of ['cali-FORWARD', 'cali-to-wl-dispatch', 'cali-INPUT'])
        assert.ok(chainsIn(s).includes(c), c);
      const fwd = rulesOf(s, 'FORWARD');
      assert.match(fwd[0] ?? '', /--comment "?cali:[A-Za-z0-9_-]{16}"? -j cali-FORWARD$/);
      assert.equal(fwd.length, 3);
      assert.match(rulesOf(s, 'INPUT')[0] ?? '', /cali:.* -j cali-INPUT$/);
      const calFwd = rulesOf(s, 'cali-FORWARD');
      assert.equal(calFwd.length, 3);
      assert.ok(
        calFwd.every((l) => /--comment "?cali:[A-Za-z0-9_-]{16}/.test(l)),
        'every rule tagged',
      );
      assert.match(calFwd[0] ?? '', /drop invalid/);
      await foreignIntact();
    });

    await t.test('second sync with the same state writes nothing', async () => {
      const st = await driver.syncTable('filter', filterState());
      assert.equal(st.commands, 0);
      assert.equal(st.lines, 0);
    });

    await t.test('detectBackend now picks the backend holding our chains', async () => {
      assert.equal(await IptablesDriver.detectBackend(ns), backend);
    });

    await t.test('a changed rule is replaced in place; the rules before it keep their counters', async () => {
      // Give rule 1 of cali-FORWARD a packet counter (same text, so still ours and unchanged)...
      const rule1 = rulesOf(await save(), 'cali-FORWARD')[0]?.replace('-A cali-FORWARD ', '') ?? '';
      const setCounter = `*filter\n[7:700] -R cali-FORWARD 1 ${rule1}\nCOMMIT\n`;
      await inNetns(ns, `${ipt}-restore`, ['--noflush', '--counters'], { input: setCounter });
      // ...then change only rule 2.
      const state = filterState();
      const fwd = state.chains[0];
      assert.ok(fwd);
      fwd.rules[1] = {
        match: '-m conntrack --ctstate RELATED,ESTABLISHED',
        action: '-j ACCEPT',
        comment: 'est',
      };
      const st = await driver.syncTable('filter', state);
      assert.equal(st.chainsUpdated, 1);
      assert.equal(st.rulesWritten, 2, 'rule 2 and (chained hash) rule 3');
      const withCounters = (await sh(ns, `${ipt}-save`, '-c', '-t', 'filter')).split('\n');
      const calFwd = withCounters.filter((l) => l.includes('-A cali-FORWARD '));
      assert.match(calFwd[0] ?? '', /^\[7:700\] /, 'rule 1 was not rewritten');
      assert.match(calFwd[1] ?? '', /--comment est/);
      assert.equal((await driver.syncTable('filter', state)).commands, 0);
    });

    await t.test(
      'a hook deleted by hand is restored at the top; a rule inserted above ours is left',
      async () => {
        await sh(ns, ipt, '-w', '-D', 'FORWARD', '1');
        await sh(ns, ipt, '-w', '-I', 'FORWARD', '1', '-s', '198.51.100.7/32', '-j', 'DROP');
        const state = filterState();
        state.chains[0]?.rules.splice(1, 1, {
          match: '-m conntrack --ctstate RELATED,ESTABLISHED',
          action: '-j ACCEPT',
          comment: 'est',
        });
        const st = await driver.syncTable('filter', state);
        assert.equal(st.hooksInserted, 1);
        const fwd = rulesOf(await save(), 'FORWARD');
        assert.match(fwd[0] ?? '', /cali:.* -j cali-FORWARD$/);
        assert.equal(fwd[1], '-A FORWARD -s 198.51.100.7/32 -j DROP');
        await foreignIntact();
      },
    );

    await t.test('most of a long chain changed: flushed and appended, exactly as desired', async () => {
      const long = (variant: number): IptChain => ({
        name: 'cali-tw-long',
        rules: Array.from({ length: 60 }, (_, r) => ({
          match: `-s 10.7.${r < 2 ? 0 : variant}.${r}/32`,
          action: '-j ACCEPT',
        })),
      });
      await driver.syncTable('filter', filterState([long(1)]));
      // A foreign rule in our chain goes too (the chain is ours in full).
      await sh(ns, ipt, '-w', '-A', 'cali-tw-long', '-s', '198.51.100.9/32', '-j', 'DROP');
      const st = await driver.syncTable('filter', filterState([long(2)]));
      assert.equal(st.rulesWritten, 60);
      const rules = rulesOf(await save(), 'cali-tw-long');
      assert.equal(rules.length, 60);
      for (const [i, r] of rules.entries()) assert.ok(r.includes(`-s 10.7.${i < 2 ? 0 : 2}.${i}/32`), r);
      assert.equal(
        (await driver.syncTable('filter', filterState([long(2)]), { reuseLastWrite: true })).commands,
        0,
      );
      await driver.syncTable('filter', filterState());
      await foreignIntact();
    });

    await t.test('a stale cali- chain is removed with the rules that jumped to it', async () => {
      const withExtra = filterState([{ name: 'cali-pi-stale', rules: [{ match: '', action: '-j RETURN' }] }]);
      withExtra.chains[2]?.rules.push({ match: '-i cali+', action: '-j cali-pi-stale' });
      await driver.syncTable('filter', withExtra);
      assert.ok(chainsIn(await save()).includes('cali-pi-stale'));
      const st = await driver.syncTable('filter', filterState());
      assert.equal(st.chainsDeleted, 1);
      const s = await save();
      assert.ok(!chainsIn(s).includes('cali-pi-stale'), s);
      assert.ok(!s.includes('cali-pi-stale'));
      await foreignIntact();
    });

    await t.test('a stale chain a foreign rule jumps to is kept (and reported), not an error', async () => {
      await driver.syncTable('filter', filterState([{ name: 'cali-shared', rules: [] }]));
      await sh(ns, ipt, '-w', '-A', 'KUBE-FORWARD', '-j', 'cali-shared');
      const st = await driver.syncTable('filter', filterState());
      assert.deepEqual(st.chainsKept, ['cali-shared']);
      assert.ok(chainsIn(await save()).includes('cali-shared'));
      await sh(ns, ipt, '-w', '-F', 'KUBE-FORWARD');
      assert.equal((await driver.syncTable('filter', filterState())).chainsDeleted, 1);
    });

    await t.test('nat table: MASQUERADE chain hooked into POSTROUTING', async () => {
      const nat: TableState = {
        chains: [
          { name: 'cali-POSTROUTING', rules: [{ match: '', action: '-j cali-nat-outgoing' }] },
          {
            name: 'cali-nat-outgoing',
            rules: [{ match: '-s 10.244.0.0/16 ! -d 10.244.0.0/16', action: '-j MASQUERADE' }],
          },
        ],
        hooks: [{ chain: 'POSTROUTING', rule: { match: '', action: '-j cali-POSTROUTING' } }],
      };
      assert.equal((await driver.syncTable('nat', nat)).commands, 1);
      const s = await save('nat');
      assert.match(rulesOf(s, 'cali-nat-outgoing')[0] ?? '', /MASQUERADE/);
      assert.match(rulesOf(s, 'POSTROUTING')[0] ?? '', /-j cali-POSTROUTING$/);
      assert.equal((await driver.syncTable('nat', nat)).commands, 0);
      assert.equal((await driver.syncTable('nat', { chains: [], hooks: [] })).chainsDeleted, 2);
      assert.ok(!(await save('nat')).includes('cali'));
    });

    await t.test('emptying the table state removes everything of ours and nothing else', async () => {
      await driver.syncTable('filter', { chains: [], hooks: [] });
      const s = await save();
      assert.ok(!s.includes('cali'), s);
      await foreignIntact();
    });

    await t.test('timing: 1000 chains x 10 rules, no-op resync, one chain changed', async () => {
      const big = (variant: string): TableState => ({
        chains: Array.from({ length: 1000 }, (_, c) => ({
          name: `cali-pi-${c}`,
          rules: Array.from({ length: 10 }, (_, r) => ({
            match: `-s 10.${c >> 8}.${c & 255}.${r}/32 -p tcp --dport ${1000 + r}`,
            action: c === 500 ? `-j ${variant}` : '-j ACCEPT',
          })),
        })),
        hooks: [{ chain: 'FORWARD', rule: { match: '', action: '-j cali-pi-0' } }],
      });
      const full = await driver.syncTable('filter', big('ACCEPT'));
      const t1 = performance.now();
      const noop = await driver.syncTable('filter', big('ACCEPT'));
      const noopMs = performance.now() - t1;
      const one = await driver.syncTable('filter', big('DROP'));
      assert.equal(noop.commands, 0);
      assert.equal(one.rulesWritten, 10);
      t.diagnostic(
        `iptables ${backend}: 10k rules/1000 chains restore ${full.ms.toFixed(0)} ms; ` +
          `no-op resync (save+parse+diff) ${noopMs.toFixed(0)} ms; one 10-rule chain changed: restore ${one.ms.toFixed(0)} ms`,
      );
      await driver.syncTable('filter', { chains: [], hooks: [] });
      assert.ok(!(await save()).includes('cali'));
    });
  });
}
