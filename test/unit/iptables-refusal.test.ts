// Finding the chains a refused restore is to blame for, against a fake restore tool: by the line
// it names, or by bisection when it names none (a refusal at COMMIT).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  applyAcceptedChains,
  parseSave,
  planRestore,
  refusedLine,
  type TableState,
} from '../../native/iptables.ts';

const table = (bad: readonly string[]): TableState => ({
  chains: ['a', 'b', 'c', 'd', 'e', 'f'].map((n) => ({
    name: `cali-${n}`,
    rules: [{ match: bad.includes(`cali-${n}`) ? '-m bogus' : '', action: '-j ACCEPT' }],
  })),
  hooks: [],
});

/** A tool that refuses any script holding `-m bogus`, naming the line or not. */
function tool(namesLine: boolean) {
  const calls: string[] = [];
  const run = (kind: string) => async (script: string) => {
    calls.push(kind);
    const lines = script.split('\n');
    const at = lines.findIndex((l) => l.includes('-m bogus'));
    if (at < 0) return { exitCode: 0, stderr: '' };
    const where = namesLine ? `Error occurred at line: ${at + 1}` : `line ${lines.length - 1} failed`;
    return {
      exitCode: 2,
      stderr: `iptables-restore v1.8.9 (legacy): Couldn't load match 'bogus'\n${where}\n`,
    };
  };
  return { calls, apply: run('apply'), probe: run('probe') };
}

describe('applyAcceptedChains', () => {
  const desired = table(['cali-b', 'cali-e']);
  const actual = parseSave('*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n');
  const plan = (keep: ReadonlySet<string>) => planRestore('filter', desired, actual, { keep });
  const order = desired.chains.map((c) => c.name);

  for (const namesLine of [true, false]) {
    it(`finds both culprits ${namesLine ? 'by the named line' : 'by bisection'} and applies the rest`, async () => {
      const t = tool(namesLine);
      const res = await applyAcceptedChains(plan, t.apply, t.probe, order);
      assert.ok(!('failed' in res));
      assert.deepEqual([...res.refused.keys()].sort(), ['cali-b', 'cali-e']);
      assert.match(res.refused.get('cali-b') ?? '', /Couldn't load match 'bogus'/);
      assert.ok(!res.plan.script?.includes('bogus'), 'the applied plan holds no refused chain');
      assert.match(res.plan.script ?? '', /-A cali-f /);
      assert.equal(t.calls.filter((c) => c === 'apply').length, 3, 'two refusals, then the rest lands');
      if (namesLine) assert.equal(t.calls.filter((c) => c === 'probe').length, 0, 'no bisection needed');
    });
  }

  it('a refusal no chain can be blamed for fails the table', async () => {
    const res = await applyAcceptedChains(
      plan,
      async () => ({ exitCode: 1, stderr: 'iptables-restore: line 99 failed' }),
      async () => ({ exitCode: 1, stderr: 'Another app is currently holding the xtables lock' }),
      order,
    );
    assert.ok('failed' in res);
  });

  it('reads the line from both backends', () => {
    assert.equal(refusedLine('x\nError occurred at line: 3\nTry'), 3);
    assert.equal(refusedLine('line 8: RULE_APPEND failed (Too many links): rule in chain FORWARD'), 8);
    assert.equal(refusedLine('iptables-restore: line 9 failed'), 9);
    assert.equal(refusedLine('Another app is currently holding the xtables lock'), undefined);
  });
});
