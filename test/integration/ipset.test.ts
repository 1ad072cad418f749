// IpSetDriver against the real kernel, in a fresh namespace; every check reads the kernel back
// with `ipset` itself, the tool an operator would use.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { observeExec } from '../../native/exec.ts';
import {
  IpSetDriver,
  type IpSetSpec,
  type IpSetType,
  MAXELEM,
  parseIpSetList,
  parseIpSetSave,
  sameSet,
} from '../../native/ipset.ts';
import { isRoot, netnsScope, sh } from '../harness/netns.ts';

function spec(name: string, type: IpSetType, members: Iterable<string>): IpSetSpec {
  return { name, type, members: new Set(members) };
}

function sets(...s: IpSetSpec[]): Map<string, IpSetSpec> {
  return new Map(s.map((x) => [x.name, x]));
}

/** Members of a set as `ipset list` shows them, sorted. */
async function members(ns: string, name: string): Promise<string[]> {
  const out = await sh(ns, 'ipset', 'list', name);
  return out.split('Members:\n')[1]?.split('\n').filter(Boolean).sort() ?? [];
}

function addMember(s: Map<string, IpSetSpec>, name: string, member: string): void {
  const set = s.get(name);
  assert.ok(set);
  s.set(name, { ...set, members: new Set([...set.members, member]) });
}

async function header(ns: string, name: string): Promise<string> {
  return sh(ns, 'ipset', 'list', '-t', name);
}

/** What `fn` gives, and the tools it ran meanwhile ("file args"). */
async function withRuns<T>(fn: () => Promise<T>): Promise<{ result: T; runs: string[] }> {
  const runs: string[] = [];
  const unobserve = observeExec((r) => runs.push(`${r.file} ${r.args.join(' ')}`));
  try {
    return { result: await fn(), runs };
  } finally {
    unobserve();
  }
}

async function setNames(ns: string): Promise<string[]> {
  return (await sh(ns, 'ipset', 'list', '-n')).split('\n').filter(Boolean).sort();
}

test('IpSetDriver', { skip: !isRoot() && 'needs root (network namespaces)' }, async (t) => {
  const ns = await netnsScope(t).add('ipset');
  const driver = new IpSetDriver({ netns: ns });
  t.after(() => driver.close());
  // Someone else's set, with a member: it must survive everything below.
  await sh(ns, 'ipset', 'create', 'foo', 'hash:ip');
  await sh(ns, 'ipset', 'add', 'foo', '192.0.2.1');
  const fooIntact = async () => assert.deepEqual(await members(ns, 'foo'), ['192.0.2.1']);

  const base = () =>
    sets(
      spec('cali40a', 'hash:ip', ['10.0.0.1', '10.0.0.2']),
      spec('cali40n', 'hash:net', ['10.1.0.0/24', '10.2.0.5/32']),
      spec('cali40p', 'hash:ip,port', ['10.0.0.5,tcp:80', '10.0.0.6,udp:53']),
    );

  await t.test('creates sets with their members in one restore', async () => {
    const st = await driver.apply(base());
    assert.equal(st.commands, 1);
    assert.equal(st.created, 3);
    assert.deepEqual(await members(ns, 'cali40a'), ['10.0.0.1', '10.0.0.2']);
    assert.deepEqual(await members(ns, 'cali40n'), ['10.1.0.0/24', '10.2.0.5']);
    assert.deepEqual(await members(ns, 'cali40p'), ['10.0.0.5,tcp:80', '10.0.0.6,udp:53']);
    const h = await header(ns, 'cali40a');
    assert.match(h, /Type: hash:ip\n/);
    assert.match(h, new RegExp(`family inet .*maxelem ${MAXELEM}`));
    await fooIntact();
  });

  await t.test('a big new set is created at its grown hash size and holds every member', async () => {
    const big = Array.from({ length: 5000 }, (_, i) => `10.9.${i >> 8}.${i & 255}`);
    const st = await driver.apply(sets(...base().values(), spec('cali40big', 'hash:ip', big)));
    assert.equal(st.commands, 1);
    assert.match(await header(ns, 'cali40big'), /hashsize 4096 /);
    assert.equal((await members(ns, 'cali40big')).length, 5000);
    // Back to the base: the big set is not desired any more.
    await driver.destroyStale(new Set(base().keys()));
    assert.ok(!(await setNames(ns)).includes('cali40big'));
  });

  await t.test(
    'a small set starts at the smallest hash size and the kernel grows it as it fills; no drift is seen',
    async () => {
      const grown = Array.from({ length: 3000 }, (_, i) => `10.8.${i >> 8}.${i & 255}`);
      const small = sets(...base().values(), spec('cali40grow', 'hash:ip', grown.slice(0, 10)));
      await driver.apply(small);
      assert.match(await header(ns, 'cali40grow'), /hashsize 64 /);
      // Grown by later writes (deltas to the set the last write left), as a policy's set grows.
      const st = await driver.apply(sets(...base().values(), spec('cali40grow', 'hash:ip', grown)), {
        reuseLastWrite: true,
      });
      assert.equal(st.added, 2990);
      const size = Number(/hashsize (\d+) /.exec(await header(ns, 'cali40grow'))?.[1]);
      assert.ok(size > 64, `the kernel rehashed it (hashsize ${size})`);
      assert.equal((await members(ns, 'cali40grow')).length, 3000);
      // The hash size the kernel chose is not ours to undo: nothing drifted, nothing to write.
      assert.deepEqual(await driver.driftedSets({ sweepShare: 1 }), []);
      const again = await driver.apply(sets(...base().values(), spec('cali40grow', 'hash:ip', grown)));
      assert.equal(again.commands, 0);
      await driver.destroyStale(new Set(base().keys()));
    },
  );

  await t.test('a second apply writes nothing (/32 normalisation included)', async () => {
    const st = await driver.apply(base());
    assert.equal(st.commands, 0);
    assert.equal(st.lines, 0);
  });

  await t.test('membersOnly: true only for member changes of sets the last write left', async () => {
    const changed = sets(spec('cali40a', 'hash:ip', ['10.0.0.1', '10.0.0.3']));
    assert.equal(driver.membersOnly(changed), true);
    assert.equal(driver.membersOnly(sets(spec('cali40new', 'hash:ip', ['10.0.0.1']))), false, 'a new set');
    assert.equal(driver.membersOnly(sets(spec('cali40a', 'hash:net', ['10.0.0.1']))), false, 'a type change');
    // Someone else's copy is unknown until read: no shortcut.
    assert.equal(new IpSetDriver({ netns: ns }).membersOnly(changed), false);
  });

  await t.test(
    'a streamed restore the tool gives up on early: the bad set refused, the rest applied',
    async () => {
      // 30,000 members stream in pieces; the refused set comes first, so the tool exits while most
      // of the script is still unsent, and its writer must see that and stop.
      const big = Array.from({ length: 30_000 }, (_, i) => `10.20.${i >> 8}.${i & 255}`);
      const want = sets(
        spec('cali40bad', 'hash:ip', ['10.0.0.1', 'not-an-address']),
        spec('cali40stream', 'hash:ip', big),
      );
      const st = await driver.apply(want);
      assert.deepEqual(
        st.refused.map((r) => r.set),
        ['cali40bad'],
      );
      assert.equal((await members(ns, 'cali40stream')).length, 30_000);
      assert.ok(!(await setNames(ns)).includes('cali40bad'), 'a refused new set is not left half-made');
      await driver.destroyStale(new Set(base().keys()));
    },
  );

  await t.test('a big script of new sets is shared among two restores side by side', async () => {
    const runs: string[] = [];
    const nices: (number | undefined)[] = [];
    const unobserve = observeExec((r) => {
      runs.push(`${r.file} ${r.args.join(' ')}`);
      if (r.file === 'ipset' && r.args[0] === 'restore') nices.push(r.nice);
    });
    try {
      const want = sets(
        ...[1, 2, 3].map((k) =>
          spec(
            `cali40split${k}`,
            'hash:ip',
            Array.from({ length: 10_000 }, (_, i) => `10.${30 + k}.${i >> 8}.${i & 255}`),
          ),
        ),
      );
      // As on a cold start with the tables loading beside the fill: the two restores a little below
      // the agent's priority; the write after it at the agent's own.
      driver.lowerBulkPriority(true);
      const st = await driver.apply(want);
      driver.lowerBulkPriority(false);
      assert.equal(st.added, 30_000);
      assert.equal(runs.filter((r) => r === 'ipset restore').length, 2, runs.join(', '));
      assert.deepEqual(nices, [3, 3]);
      for (const name of want.keys()) assert.equal((await members(ns, name)).length, 10_000, name);
      // What it remembers as written is what the kernel holds: the next apply writes nothing.
      assert.equal((await driver.apply(want, { reuseLastWrite: true })).commands, 0);
      assert.equal((await driver.apply(want)).commands, 0);
    } finally {
      unobserve();
    }
    await driver.destroyStale(new Set(base().keys()));
  });

  await t.test(
    "a cold start's fill of many sets: restores of at most 256 sets each, in two lines side by side",
    async () => {
      // 600 new sets of 40 members: past the streaming threshold, created ahead of their fill (as
      // on a cold start), then 300 sets a line, 256 and 44 a run.
      const want = sets(
        ...Array.from({ length: 600 }, (_, k) =>
          spec(
            `cali40many${k}`,
            'hash:ip',
            Array.from({ length: 40 }, (_, i) => `10.${100 + (k >> 8)}.${k & 255}.${i}`),
          ),
        ),
      );
      let created = false;
      const { result: st, runs } = await withRuns(() =>
        driver.apply(want, { onCreated: () => (created = true) }),
      );
      assert.equal(st.added, 24_000);
      assert.ok(created, 'the sets were created ahead of their fill');
      assert.equal(runs.filter((r) => r === 'ipset restore').length, 1 + 4, runs.join(', '));
      const names = await setNames(ns);
      for (const name of want.keys()) assert.ok(names.includes(name), name);
      for (const name of ['cali40many0', 'cali40many255', 'cali40many256', 'cali40many599'])
        assert.equal((await members(ns, name)).length, 40, name);
      const listing = parseIpSetList(await sh(ns, 'ipset', 'list', '-t'));
      for (const name of want.keys()) assert.equal(listing.headers.get(name)?.entries, 40, name);
      await driver.destroyStale(new Set(base().keys()));
    },
  );

  await t.test(
    'a refused member in a big write is named in the run that read it, and every other set lands',
    async () => {
      // The bad set is the biggest, so the first of its side-by-side line, which stops at once;
      // the next round writes that line's other sets (about 600: 24,000 lines, in runs of 256
      // sets) and the bad set, last in order, fails in the third run: its line number counts from
      // that run's start.
      const bad = 'cali40refusedlast';
      const want = sets(
        ...Array.from({ length: 1200 }, (_, k) =>
          spec(
            `cali40big${k}`,
            'hash:ip',
            Array.from({ length: 40 }, (_, i) => `10.${120 + (k >> 8)}.${k & 255}.${i}`),
          ),
        ),
        spec(bad, 'hash:ip', ['not-an-address', ...Array.from({ length: 99 }, (_, i) => `10.99.0.${i}`)]),
      );
      const { result: st, runs } = await withRuns(() => driver.apply(want));
      assert.deepEqual(
        st.refused.map((r) => r.set),
        [bad],
      );
      assert.ok(runs.filter((r) => r === 'ipset restore').length > 5, 'the second round ran in runs');
      const listing = parseIpSetList(await sh(ns, 'ipset', 'list', '-t'));
      for (const name of want.keys())
        if (name !== bad) assert.equal(listing.headers.get(name)?.entries, 40, name);
      assert.equal(listing.headers.has(bad), false, 'the refused new set is not left half made');
      await driver.destroyStale(new Set(base().keys()));
    },
  );

  await t.test(
    'members-only writes go through the kept restore; a refused one is written again the usual way',
    async () => {
      const runs: string[] = [];
      const unobserve = observeExec((r) => runs.push(r.file));
      try {
        await driver.apply(base());
        const changed = base();
        addMember(changed, 'cali40a', '10.0.0.9');
        const st = await driver.apply(changed, { reuseLastWrite: true });
        assert.equal(st.added, 1);
        assert.ok(runs.includes('ipset (kept)'), `kept session used: ${runs.join(', ')}`);
        assert.ok((await members(ns, 'cali40a')).includes('10.0.0.9'));
        // A member the kernel refuses beside one it takes: the kept tool exits on it, the block is
        // written again the usual way, which names the set; the other set's change lands.
        const bad = base();
        addMember(bad, 'cali40a', 'not-an-address');
        addMember(bad, 'cali40n', '10.3.0.0/24');
        const st2 = await driver.apply(bad, { reuseLastWrite: true });
        assert.deepEqual(
          st2.refused.map((r) => r.set),
          ['cali40a'],
        );
        assert.ok((await members(ns, 'cali40n')).includes('10.3.0.0/24'), 'the other set written');
        assert.ok((await members(ns, 'cali40a')).includes('10.0.0.9'), 'the refused set as it was');
        // And the next members-only write starts a new session.
        runs.length = 0;
        const st3 = await driver.apply(base(), { reuseLastWrite: true });
        assert.equal(st3.refused.length, 0);
        assert.deepEqual(await members(ns, 'cali40a'), ['10.0.0.1', '10.0.0.2']);
      } finally {
        unobserve();
      }
    },
  );

  await t.test('list() returns owned sets only', async () => {
    const got = await driver.list();
    assert.deepEqual([...got.keys()].sort(), ['cali40a', 'cali40n', 'cali40p']);
  });

  await t.test('updates members in place', async () => {
    const d = base();
    d.set('cali40a', spec('cali40a', 'hash:ip', ['10.0.0.2', '10.0.0.3']));
    const st = await driver.apply(d);
    assert.equal(st.commands, 1);
    assert.deepEqual([st.added, st.deleted], [1, 1]);
    assert.deepEqual(await members(ns, 'cali40a'), ['10.0.0.2', '10.0.0.3']);
    await fooIntact();
  });

  await t.test('type change of an unreferenced set: re-created with the new type', async () => {
    const d = base();
    d.set('cali40a', spec('cali40a', 'hash:net', ['10.0.0.0/30']));
    const st = await driver.apply(d);
    assert.equal(st.recreated, 1);
    assert.match(await header(ns, 'cali40a'), /Type: hash:net\n/);
    assert.deepEqual(await members(ns, 'cali40a'), ['10.0.0.0/30']);
  });

  await t.test('type change of a set iptables uses: blocked and reported, set untouched', async () => {
    await sh(
      ns,
      'iptables',
      '-w',
      '-A',
      'INPUT',
      '-m',
      'set',
      '--match-set',
      'cali40n',
      'src',
      '-j',
      'ACCEPT',
    );
    const d = base();
    d.set('cali40n', spec('cali40n', 'hash:ip', ['10.3.0.1']));
    const st = await driver.apply(d);
    assert.deepEqual(st.blocked, ['cali40n']);
    assert.match(await header(ns, 'cali40n'), /Type: hash:net\n/);
    // once the reference is gone, the same apply goes through
    await sh(
      ns,
      'iptables',
      '-w',
      '-D',
      'INPUT',
      '-m',
      'set',
      '--match-set',
      'cali40n',
      'src',
      '-j',
      'ACCEPT',
    );
    const st2 = await driver.apply(d);
    assert.deepEqual(st2.blocked, []);
    assert.equal(st2.recreated, 1);
    assert.match(await header(ns, 'cali40n'), /Type: hash:ip\n/);
    assert.deepEqual(await members(ns, 'cali40n'), ['10.3.0.1']);
  });

  await t.test('header change (maxelem) of a referenced set: temp set + swap, reference kept', async () => {
    await sh(ns, 'ipset', 'create', 'cali40m', 'hash:ip', 'maxelem', '1024');
    await sh(ns, 'ipset', 'add', 'cali40m', '10.9.0.1');
    await sh(
      ns,
      'iptables',
      '-w',
      '-A',
      'INPUT',
      '-m',
      'set',
      '--match-set',
      'cali40m',
      'src',
      '-j',
      'ACCEPT',
    );
    const d = sets(spec('cali40m', 'hash:ip', ['10.9.0.1', '10.9.0.2']));
    const st = await driver.apply(d);
    assert.equal(st.swapped, 1);
    const h = await header(ns, 'cali40m');
    assert.match(h, new RegExp(`maxelem ${MAXELEM}`));
    assert.match(h, /References: 1\n/);
    assert.deepEqual(await members(ns, 'cali40m'), ['10.9.0.1', '10.9.0.2']);
    assert.ok(!(await setNames(ns)).some((n) => n.startsWith('cali4t')), 'temp set destroyed');
    assert.match(await sh(ns, 'iptables-save', '-t', 'filter'), /--match-set cali40m src/);
    assert.equal((await driver.apply(d)).commands, 0);
  });

  await t.test(
    'destroyStale: destroys unkept owned sets, leaves referenced ones for later, never foo',
    async () => {
      const st = await driver.destroyStale(new Set(['cali40a']));
      assert.deepEqual(st.inUse, ['cali40m']);
      assert.deepEqual(st.destroyed.sort(), ['cali40n', 'cali40p']);
      assert.deepEqual(await setNames(ns), ['cali40a', 'cali40m', 'foo']);
      await sh(ns, 'iptables', '-w', '-F', 'INPUT');
      const st2 = await driver.destroyStale(new Set(['cali40a']));
      assert.deepEqual(st2.destroyed, ['cali40m']);
      assert.deepEqual(await setNames(ns), ['cali40a', 'foo']);
      assert.equal((await driver.destroyStale(new Set(['cali40a']))).commands, 0);
      await fooIntact();
    },
  );

  await t.test('timing: one restore of 100k members, then a no-op and a 1% change', async () => {
    const n = 100_000;
    const big = (shift: number) =>
      sets(
        spec(
          'cali40big',
          'hash:ip',
          Array.from({ length: n }, (_, i) => {
            const v = i + shift;
            return `10.${(v >> 16) & 255}.${(v >> 8) & 255}.${v & 255}`;
          }),
        ),
      );
    const t0 = performance.now();
    const st = await driver.apply(big(0));
    const full = performance.now() - t0;
    assert.equal(st.added, n);
    const t1 = performance.now();
    assert.equal((await driver.apply(big(0))).commands, 0);
    const noop = performance.now() - t1;
    const t2 = performance.now();
    const st3 = await driver.apply(big(n / 100));
    const delta = performance.now() - t2;
    assert.deepEqual([st3.added, st3.deleted], [n / 100, n / 100]);
    t.diagnostic(
      `ipset ${n} members: first apply ${full.toFixed(0)} ms (restore ${st.ms.toFixed(0)} ms), ` +
        `no-op ${noop.toFixed(0)} ms, 1% change ${delta.toFixed(0)} ms (restore ${st3.ms.toFixed(0)} ms)`,
    );
    await driver.destroyStale(new Set());
  });
});

// The drift check reads members from the plain listing (`ipset list`, as `ipset restore` prints it),
// the resync from `ipset save`: two parsers of the same kernel state, compared on random sets.
test('the plain listing and the save of the same sets parse alike (random sets)', {
  skip: !isRoot() && 'needs root (network namespaces)',
}, async (t) => {
  const ns = await netnsScope(t).add('ipsetlist');
  const seed = Number(process.env.FEDMESH_SEED ?? Date.now() % 100_000);
  let state = seed;
  const rnd = (n: number) => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
    return state % n;
  };
  const ip4 = () => `10.${rnd(256)}.${rnd(256)}.${rnd(256)}`;
  const ip6 = () => `fd00::${rnd(65_536).toString(16)}:${rnd(65_536).toString(16)}`;
  const lines: string[] = [];
  for (let i = 0; i < 12; i++) {
    const v6 = rnd(4) === 0;
    const type = (['hash:net', 'hash:ip', 'hash:ip,port'] as const)[rnd(3)];
    const name = `${v6 ? 'cali60' : 'cali40'}r${i}`;
    lines.push(`create ${name} ${type} family ${v6 ? 'inet6' : 'inet'} maxelem ${[65_536, MAXELEM][rnd(2)]}`);
    for (let j = rnd(200); j > 0; j--) {
      const ip = v6 ? ip6() : ip4();
      const member =
        type === 'hash:net'
          ? `${ip}/${v6 ? 64 + rnd(65) : 8 + rnd(25)}`
          : type === 'hash:ip,port'
            ? `${ip},${['tcp', 'udp', 'sctp'][rnd(3)]}:${1 + rnd(65_535)}`
            : ip;
      lines.push(`add ${name} ${member} -exist`);
    }
  }
  lines.push('create foreign hash:ip', 'add foreign 192.0.2.1');
  await sh(ns, 'sh', '-c', `ipset restore <<'END'\n${lines.join('\n')}\nEND`);
  const names = lines.filter((l) => l.startsWith('create cali')).map((l) => l.split(' ')[1] as string);
  const listed = parseIpSetList(
    await sh(
      ns,
      'sh',
      '-c',
      `printf '${names.map((n) => `list ${n}\\n`).join('')}list -t\\n' | ipset restore`,
    ),
  );
  const saved = parseIpSetSave(await sh(ns, 'ipset', 'save'));
  assert.deepEqual([...listed.sets.keys()].sort(), [...saved.keys()].sort(), `seed ${seed}`);
  for (const [name, set] of saved) {
    const got = listed.sets.get(name);
    assert.ok(got && sameSet(got, set) && sameSet(set, got), `${name} differs (seed ${seed})`);
    assert.equal(listed.headers.get(name)?.entries, set.members.size, `${name}'s count (seed ${seed})`);
  }
  assert.equal(listed.headers.get('foreign')?.entries, 1);
});
