// A restore the kernel refuses must not freeze the table (issue 6): IptablesDriver finds the chains
// responsible, keeps their last good version (a chain that never loaded becomes a placeholder that
// drops, so the chains jumping to it still load), applies everything else and says what it refused.
// Real kernel, both backends, each in its own namespace.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type IptablesBackend, IptablesDriver, type TableState } from '../../native/iptables.ts';
import { iptablesBackendSkip, netnsScope, sh } from '../harness/netns.ts';

function state(o: { a: string; b: string; twExtra?: string[]; c?: string }): TableState {
  const chains: TableState['chains'] = [
    { name: 'cali-FORWARD', rules: [{ match: '-o cali+', action: '-j cali-tw-x' }] },
    {
      name: 'cali-tw-x',
      rules: [
        { match: '', action: '-j cali-pi-a' },
        { match: '', action: '-j cali-pi-b' },
        ...(o.twExtra ?? []).map((t) => ({ match: '', action: `-j ${t}` })),
      ],
    },
    { name: 'cali-pi-a', rules: [{ match: o.a, action: '-j ACCEPT' }] },
    { name: 'cali-pi-b', rules: [{ match: o.b, action: '-j ACCEPT' }] },
  ];
  if (o.c !== undefined) chains.push({ name: 'cali-pi-c', rules: [{ match: o.c, action: '-j DROP' }] });
  return { chains, hooks: [{ chain: 'FORWARD', rule: { match: '', action: '-j cali-FORWARD' } }] };
}

const UNLOADABLE = '-m set --match-set cali40no-such-set src';

for (const backend of ['nft', 'legacy'] as IptablesBackend[]) {
  const skip = await iptablesBackendSkip(backend);

  test(`a refused chain keeps its last good version; the rest of the table is applied (${backend})`, {
    skip,
  }, async (t) => {
    const ns = await netnsScope(t).add(`ref${backend.slice(0, 3)}`);
    const save = () => sh(ns, `iptables-${backend}-save`, '-t', 'filter');
    const rules = (s: string, chain: string) => s.split('\n').filter((l) => l.startsWith(`-A ${chain} `));
    const driver = new IptablesDriver({ backend, netns: ns });

    const first = await driver.syncTable('filter', state({ a: '-s 10.0.0.1/32', b: '-s 10.0.0.2/32' }));
    assert.deepEqual(first.refused, []);

    // One change the kernel takes (a), one it refuses in a chain that loaded before (b), and a new
    // chain (c) it refuses, which the endpoint chain now jumps to.
    const st = await driver.syncTable(
      'filter',
      state({ a: '-s 10.0.0.11/32', b: UNLOADABLE, c: UNLOADABLE, twExtra: ['cali-pi-c'] }),
    );
    const byChain = new Map(st.refused.map((r) => [r.chain, r.reason]));
    assert.deepEqual([...byChain.keys()].sort(), ['cali-pi-b', 'cali-pi-c']);
    assert.match(byChain.get('cali-pi-b') ?? '', /no-such-set/);
    assert.match(byChain.get('cali-pi-c') ?? '', /never loaded/);
    const s = await save();
    assert.match(rules(s, 'cali-pi-a').join('\n'), /10\.0\.0\.11/, 'the accepted change is applied');
    assert.match(
      rules(s, 'cali-pi-b').join('\n'),
      /10\.0\.0\.2\/32/,
      'the refused chain keeps its last version',
    );
    assert.match(rules(s, 'cali-pi-c').join('\n'), /never loaded.* -j DROP/, 'a never-loaded chain drops');
    assert.equal(rules(s, 'cali-tw-x').length, 3, 'the chain jumping to it is applied');

    // Mended: everything lands.
    const mended = await driver.syncTable(
      'filter',
      state({ a: '-s 10.0.0.11/32', b: '-s 10.0.0.22/32', c: '-s 10.0.0.3/32', twExtra: ['cali-pi-c'] }),
    );
    assert.deepEqual(mended.refused, []);
    const s2 = await save();
    assert.match(rules(s2, 'cali-pi-b').join('\n'), /10\.0\.0\.22/);
    assert.equal(rules(s2, 'cali-tw-x').length, 3);
  });
}
