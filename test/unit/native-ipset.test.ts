import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  diffIpSets,
  type IpSetSpec,
  type IpSetType,
  isOwnedIpSet,
  type KernelIpSet,
  MAXELEM,
  type MemberDelta,
  normaliseMember,
  parseIpSetList,
  parseIpSetSave,
} from '../../native/ipset.ts';
import { mulberry32 } from '../helpers/rng.ts';

function spec(name: string, type: IpSetType, members: string[]): IpSetSpec {
  return { name, type, members: new Set(members) };
}

function sets(...s: IpSetSpec[]): Map<string, IpSetSpec> {
  return new Map(s.map((x) => [x.name, x]));
}

function lines(script: string): string[] {
  return script.split('\n').filter((l) => l !== '' && l !== 'COMMIT');
}

// Verbatim `ipset save` output from this kernel (hash:net prints /32 bare, ports get tcp:).
const SAVE = `create cali40x hash:net family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval 0xc4b62400
add cali40x 10.1.0.0/24
add cali40x 10.0.0.5
create cali40p hash:ip,port family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval 0xc990b440
add cali40p 10.0.0.7,udp:53
add cali40p 10.0.0.6,tcp:80
create foo hash:ip family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x695f8883
add foo 1.2.3.4
create cali4t0 hash:ip family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x1
create cali40small hash:ip family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x2
add cali40small 10.9.9.9
`;

describe('parseIpSetSave', () => {
  it('keeps owned sets with type, family, maxelem and members; skips foreign sets', () => {
    const got = parseIpSetSave(SAVE);
    assert.deepEqual([...got.keys()], ['cali40x', 'cali40p', 'cali4t0', 'cali40small']);
    const x = got.get('cali40x');
    assert.equal(x?.type, 'hash:net');
    assert.equal(x?.family, 'inet');
    assert.equal(x?.maxelem, MAXELEM);
    assert.deepEqual([...(x?.members ?? [])], ['10.1.0.0/24', '10.0.0.5']);
    assert.equal(got.get('cali40small')?.maxelem, 65536);
    assert.equal(got.has('foo'), false);
  });

  it('ownership is by prefix only', () => {
    for (const n of ['cali40a', 'cali60a', 'cali4t3', 'cali6t0']) assert.equal(isOwnedIpSet(n), true, n);
    for (const n of ['foo', 'cali-x', 'KUBE-X', 'cali41a', 'xcali40a'])
      assert.equal(isOwnedIpSet(n), false, n);
  });
});

describe('parseIpSetList of a terse listing', () => {
  it('reads names, types and reference counts', () => {
    const text =
      'Name: cali40x\nType: hash:net\nRevision: 7\nHeader: family inet\nReferences: 2\nNumber of entries: 2\n\n' +
      'Name: foo\nType: hash:ip\nReferences: 0\n';
    const got = parseIpSetList(text).headers;
    assert.deepEqual(got.get('cali40x'), { type: 'hash:net', references: 2, entries: 2 });
    assert.deepEqual(got.get('foo'), { type: 'hash:ip', references: 0, entries: 0 });
  });
});

describe('parseIpSetList', () => {
  it('reads what a line-by-line reading of the same listing reads (property)', () => {
    // The plain reading, line by line: what the in-place reader must match on any listing.
    const reference = (text: string) => {
      const headers = new Map<string, { type: string; references: number; entries: number }>();
      const sets = new Map<
        string,
        { type: string; family: string; maxelem: number | undefined; members: string[] }
      >();
      let name = '';
      let head = { type: '', references: 0, entries: 0 };
      let header = '';
      let members: string[] | undefined;
      for (const line of text.split('\n')) {
        if (members !== undefined) {
          if (!line.startsWith('Name: ')) {
            if (line !== '' && !members.includes(line)) members.push(line);
            continue;
          }
          members = undefined;
        }
        if (line.startsWith('Name: ')) {
          name = line.slice(6).trim();
          head = { type: '', references: 0, entries: 0 };
          headers.set(name, head);
          header = '';
        } else if (line.startsWith('Type: ')) head.type = line.slice(6).trim();
        else if (line.startsWith('Header: ')) header = line.slice(8);
        else if (line.startsWith('References: ')) head.references = Number(line.slice(12));
        else if (line.startsWith('Number of entries: ')) head.entries = Number(line.slice(19));
        else if (line === 'Members:' && isOwnedIpSet(name)) {
          const tok = header.split(/\s+/);
          const max = tok.indexOf('maxelem');
          members = [];
          sets.set(name, {
            type: head.type,
            family: tok[tok.indexOf('family') + 1] === 'inet6' ? 'inet6' : 'inet',
            maxelem: max >= 0 ? Number(tok[max + 1]) : undefined,
            members,
          });
        }
      }
      return { headers, sets };
    };
    const rnd = mulberry32(5);
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)]!;
    for (let round = 0; round < 200; round++) {
      const lines: string[] = [];
      for (let k = 0; k < 1 + Math.floor(rnd() * 8); k++) {
        const name = pick(['cali40a', 'cali40b', 'cali60c', 'foo', 'kube-x', ' cali40d ']);
        lines.push(`Name: ${name}`, `Type: ${pick(['hash:net', 'hash:ip', 'hash:ip,port'])}`, 'Revision: 7');
        if (rnd() < 0.8)
          lines.push(
            `Header: family ${pick(['inet', 'inet6'])} hashsize 1024 maxelem ${pick(['65536', '1048576'])}`,
          );
        lines.push('Size in memory: 552', `References: ${pick(['0', '2', '12', ' 3', 'x', ''])}`);
        lines.push(`Number of entries: ${pick(['0', '2', '1234567', '99999999999999999', ' 7 ', 'NaN'])}`);
        if (rnd() < 0.2) lines.push(pick(['Members:x', 'Members', 'Memberz:']));
        if (rnd() < 0.6) {
          lines.push('Members:');
          for (let m = Math.floor(rnd() * 5); m > 0; m--)
            lines.push(pick(['10.0.0.1', '10.0.0.0/16', 'fd00::1,tcp:80', '', 'Members:', 'Nam', 'Name:x']));
        }
        if (rnd() < 0.5) lines.push('');
      }
      const text = lines.join('\n') + pick(['', '\n', '\n\n']);
      const got = parseIpSetList(text);
      const want = reference(text);
      assert.deepEqual(Object.fromEntries(got.headers), Object.fromEntries(want.headers), text);
      assert.deepEqual(
        Object.fromEntries(
          [...got.sets].map(([n, x]) => [
            n,
            { type: x.type, family: x.family, maxelem: x.maxelem, members: [...x.members] },
          ]),
        ),
        Object.fromEntries(want.sets),
        text,
      );
    }
  });

  it("reads every set's member count, and the members of the sets listed in full", () => {
    const text =
      'Name: cali40x\nType: hash:net\nRevision: 7\nHeader: family inet hashsize 1024 maxelem 1048576 bucketsize 12\n' +
      'Size in memory: 552\nReferences: 2\nNumber of entries: 2\nMembers:\n10.0.0.0/16\n10.1.2.3\n' +
      'Name: cali40y\nType: hash:ip,port\nRevision: 6\nHeader: family inet6 hashsize 1024 maxelem 65536\n' +
      'Size in memory: 200\nReferences: 0\nNumber of entries: 1\nMembers:\nfd00::1,tcp:80\n\n' +
      'Name: foo\nType: hash:ip\nHeader: family inet\nReferences: 0\nNumber of entries: 1\nMembers:\n10.9.9.9\n' +
      // The terse listing that follows: counts, no members.
      'Name: cali40x\nType: hash:net\nReferences: 2\nNumber of entries: 2\n\n' +
      'Name: cali40z\nType: hash:net\nHeader: family inet\nReferences: 0\nNumber of entries: 0\n\n';
    const { headers, sets } = parseIpSetList(text);
    assert.deepEqual(
      [...headers].map(([name, h]) => [name, h.entries]),
      [
        ['cali40x', 2],
        ['cali40y', 1],
        ['foo', 1],
        ['cali40z', 0],
      ],
    );
    assert.deepEqual(
      [...sets.keys()],
      ['cali40x', 'cali40y'],
      'foreign and terse-only sets carry no members',
    );
    const x = sets.get('cali40x');
    assert.equal(x?.type, 'hash:net');
    assert.equal(x?.family, 'inet');
    assert.equal(x?.maxelem, 1_048_576);
    assert.deepEqual([...(x?.members ?? [])], ['10.0.0.0/16', '10.1.2.3']);
    const y = sets.get('cali40y');
    assert.equal(y?.family, 'inet6');
    assert.equal(y?.maxelem, 65_536);
    assert.deepEqual([...(y?.members ?? [])], ['fd00::1,tcp:80']);
  });
});

describe('normaliseMember', () => {
  it('matches what the kernel prints back', () => {
    assert.equal(normaliseMember('hash:net', 'inet', '10.0.0.5/32'), '10.0.0.5');
    assert.equal(normaliseMember('hash:net', 'inet', '10.0.0.5/24'), '10.0.0.0/24');
    assert.equal(normaliseMember('hash:ip', 'inet', '10.0.0.5/32'), '10.0.0.5');
    assert.equal(normaliseMember('hash:ip,port', 'inet', '10.0.0.5,80'), '10.0.0.5,tcp:80');
    assert.equal(normaliseMember('hash:ip,port', 'inet', '10.0.0.5,UDP:53'), '10.0.0.5,udp:53');
    assert.equal(normaliseMember('hash:net', 'inet6', 'fd00::1/128'), 'fd00::1');
  });
});

describe('diffIpSets from deltas', () => {
  // One meaning, checked twice: a set written from the deltas since the last write gets the lines
  // a member-by-member comparison gets, and the record of what the kernel holds ends the same.
  it("writes what the whole comparison writes, on random changes to sets of the graph's nets", () => {
    const seed = Number(process.env.FEDMESH_SEED ?? Date.now() % 100_000);
    const r = mulberry32(seed);
    const pool = (n: number) =>
      `10.${(n >> 8) & 255}.${n & 255}.0/${r() < 0.2 ? 24 : 32}`.replace(/\.0\/32$/, `.${1 + (n % 250)}/32`);
    for (let trial = 0; trial < 200; trial++) {
      const universe = Array.from({ length: 60 }, (_, i) => pool(i * 7 + trial));
      const base = new Set(universe.filter(() => r() < 0.5));
      const kernel = (): KernelIpSet => ({
        name: 'cali40s',
        type: 'hash:net',
        family: 'inet',
        maxelem: MAXELEM,
        members: new Set([...base].map((m) => normaliseMember('hash:net', 'inet', m))),
      });
      // Random adds and removes, some undone, kept as the manager keeps them: on balance.
      const want = new Set(base);
      const delta = { added: new Set<string>(), removed: new Set<string>() };
      for (let k = 0; k < 1 + Math.floor(r() * 12); k++) {
        const m = universe[Math.floor(r() * universe.length)] as string;
        // As the manager keeps them: only what changed in fact counts.
        if (r() < 0.5) {
          if (want.has(m)) continue;
          want.add(m);
          if (!delta.removed.delete(m)) delta.added.add(m);
        } else {
          if (!want.delete(m)) continue;
          if (!delta.added.delete(m)) delta.removed.add(m);
        }
      }
      const desired = sets({ name: 'cali40s', type: 'hash:net', members: want });
      const whole = diffIpSets(desired, new Map([['cali40s', kernel()]]));
      const known = kernel();
      const deltas = new Map<string, MemberDelta>([['cali40s', delta]]);
      const fromDeltas = diffIpSets(desired, new Map([['cali40s', known]]), { deltas });
      assert.deepEqual(
        lines(fromDeltas.script).sort(),
        lines(whole.script).sort(),
        `trial ${trial}, seed ${seed}`,
      );
      fromDeltas.landed();
      assert.deepEqual(
        [...(fromDeltas.after.get('cali40s')?.members ?? [])].sort(),
        [...(whole.after.get('cali40s')?.members ?? [])].sort(),
        `after, trial ${trial}, seed ${seed}`,
      );
    }
  });

  it('compares a set whole when its type or header changed, deltas or not', () => {
    const have: KernelIpSet = {
      name: 'cali40s',
      type: 'hash:ip',
      family: 'inet',
      maxelem: MAXELEM,
      members: new Set(['10.0.0.1']),
    };
    const deltas = new Map<string, MemberDelta>([
      ['cali40s', { added: new Set(['10.0.0.2/32']), removed: new Set() }],
    ]);
    const diff = diffIpSets(
      sets(spec('cali40s', 'hash:net', ['10.0.0.1/32', '10.0.0.2/32'])),
      new Map([['cali40s', have]]),
      { deltas },
    );
    assert.equal(diff.stats.recreated, 1, 'a type change is still a re-create');
  });
});

describe('diffIpSets', () => {
  it('creates a missing set with -exist and fills it', () => {
    const { script, stats } = diffIpSets(
      sets(spec('cali40a', 'hash:ip', ['10.0.0.1', '10.0.0.2'])),
      new Map(),
    );
    assert.deepEqual(lines(script), [
      `create cali40a hash:ip family inet hashsize 64 maxelem ${MAXELEM} -exist`,
      'add cali40a 10.0.0.1 -exist',
      'add cali40a 10.0.0.2 -exist',
    ]);
    assert.equal(stats.created, 1);
    assert.equal(stats.added, 2);
  });

  it('a new set streams in pieces that make the same script, and records what the kernel will hold', () => {
    const members = Array.from({ length: 10_000 }, (_, i) => `10.3.${i >> 8}.${i & 255}/32`);
    const diff = diffIpSets(sets(spec('cali40big', 'hash:net', members)), new Map());
    const pieces = [...diff.pieces()];
    assert.ok(pieces.length > 1, 'more than one piece');
    assert.ok(
      pieces.every((p) => p.at(-1) === 0x0a),
      'whole lines only',
    );
    assert.equal(Buffer.concat(pieces).toString('utf8'), diff.script);
    assert.equal(lines(diff.script).length, 10_001);
    assert.deepEqual(lines(diff.script).slice(0, 2), [
      `create cali40big hash:net family inet hashsize 8192 maxelem ${MAXELEM} -exist`,
      'add cali40big 10.3.0.0 -exist',
    ]);
    const after = diff.after.get('cali40big')?.members;
    assert.equal(after?.size, 10_000);
    assert.ok(after?.has('10.3.0.5') && !after.has('10.3.0.5/32'), 'normalised as the kernel prints it');
  });

  it("writes a list's IPv4 nets as the kernel prints them, straight or normalised, as a set's (property)", () => {
    // A graph message's list takes the straight path for digits and dots (with or without /32);
    // anything else (a wider prefix with host bits, spaces, a hostname) is normalised first.
    const forms = [
      (a: string) => `${a}/32`,
      (a: string) => a,
      (a: string) => `${a}/24`,
      (a: string) => ` ${a}/32`,
      (a: string) => `${a}/3`,
      () => 'host.EXAMPLE',
      () => '/32',
    ];
    const rnd = mulberry32(11);
    for (let round = 0; round < 50; round++) {
      const members = Array.from({ length: 1 + Math.floor(rnd() * 400) }, () => {
        const a = `10.${Math.floor(rnd() * 3)}.${Math.floor(rnd() * 256)}.${Math.floor(rnd() * 256)}`;
        return forms[Math.floor(rnd() * forms.length)]!(a);
      });
      const fromList = diffIpSets(sets({ name: 'cali40l', type: 'hash:net', members }), new Map());
      const fromSet = diffIpSets(sets(spec('cali40l', 'hash:net', members)), new Map());
      const want = members.map((m) => `add cali40l ${normaliseMember('hash:net', 'inet', m)} -exist`);
      const listText = Buffer.concat([...fromList.pieces()]).toString('utf8');
      assert.deepEqual(lines(listText).slice(1), want);
      assert.deepEqual(
        lines(fromSet.script).slice(1),
        [...new Set(members)].map((m) => want[members.indexOf(m)]),
      );
      const held = new Set(members.map((m) => normaliseMember('hash:net', 'inet', m)));
      assert.deepEqual(fromList.after.get('cali40l')?.members, held);
      assert.deepEqual(fromSet.after.get('cali40l')?.members, held);
    }
  });

  it("a new set's record made from a list is the one a later delta changes once it lands", () => {
    const first = diffIpSets(
      sets({ name: 'cali40d', type: 'hash:net', members: ['10.0.0.1/32', '10.0.0.2/32'] }),
      new Map(),
    );
    const deltas = new Map<string, MemberDelta>([
      ['cali40d', { added: new Set(['10.0.0.3/32']), removed: new Set(['10.0.0.2/32']) }],
    ]);
    const second = diffIpSets(
      sets(spec('cali40d', 'hash:net', ['10.0.0.1/32', '10.0.0.3/32'])),
      first.after,
      {
        deltas,
      },
    );
    assert.deepEqual(lines(second.script), ['del cali40d 10.0.0.2 -exist', 'add cali40d 10.0.0.3 -exist']);
    second.landed();
    assert.deepEqual(second.after.get('cali40d')?.members, new Set(['10.0.0.1', '10.0.0.3']));
  });

  it('writes text of any characters as UTF-8, and members longer than a piece whole', () => {
    // Not members the kernel would take: the text must still be what was asked for, byte for byte.
    const odd = ['10.0.0.1', 'caf\u00e9', 'x'.repeat(300 * 1024), '10.0.0.2'];
    const diff = diffIpSets(sets(spec('cali40odd', 'hash:ip', odd)), new Map());
    const text = Buffer.concat([...diff.pieces()]).toString('utf8');
    assert.deepEqual(
      lines(text).slice(1),
      odd.map((m) => `add cali40odd ${m} -exist`),
    );
  });

  it('uses family inet6 for cali60 sets', () => {
    const { script } = diffIpSets(sets(spec('cali60a', 'hash:net', ['fd00::/64'])), new Map());
    assert.match(script, /^create cali60a hash:net family inet6 /);
  });

  it('writes nothing when the kernel matches after normalisation', () => {
    const actual = parseIpSetSave(SAVE);
    const desired = sets(
      spec('cali40x', 'hash:net', ['10.0.0.5/32', '10.1.0.0/24']),
      spec('cali40p', 'hash:ip,port', ['10.0.0.6,80', '10.0.0.7,udp:53']),
    );
    const { script, stats } = diffIpSets(desired, actual);
    assert.equal(script, '');
    assert.equal(stats.lines, 0);
  });

  it('adds and deletes only the member delta', () => {
    const actual = parseIpSetSave(SAVE);
    const { script, stats } = diffIpSets(
      sets(spec('cali40x', 'hash:net', ['10.1.0.0/24', '10.2.0.0/16'])),
      actual,
    );
    assert.deepEqual(lines(script), ['del cali40x 10.0.0.5 -exist', 'add cali40x 10.2.0.0/16 -exist']);
    assert.equal(stats.added, 1);
    assert.equal(stats.deleted, 1);
  });

  it('never mentions sets that are not desired (destroy is a separate step)', () => {
    const { script } = diffIpSets(sets(spec('cali40new', 'hash:ip', [])), parseIpSetSave(SAVE));
    assert.doesNotMatch(script, /cali40x|cali40p|foo|destroy/);
  });

  it('a header change (maxelem) fills a temp set, swaps it in and destroys the temp', () => {
    const actual = parseIpSetSave(SAVE); // cali4t0 exists already: the temp must pick another name
    const { script, stats } = diffIpSets(
      sets(spec('cali40small', 'hash:ip', ['10.9.9.9', '10.8.8.8'])),
      actual,
    );
    assert.deepEqual(lines(script), [
      `create cali4t1 hash:ip family inet hashsize 64 maxelem ${MAXELEM} -exist`,
      'add cali4t1 10.9.9.9 -exist',
      'add cali4t1 10.8.8.8 -exist',
      'swap cali4t1 cali40small',
      'destroy cali4t1',
    ]);
    assert.equal(stats.swapped, 1);
  });

  it('a type change re-creates the set when nothing references it', () => {
    const { script, stats } = diffIpSets(
      sets(spec('cali40x', 'hash:ip', ['10.0.0.5'])),
      parseIpSetSave(SAVE),
    );
    assert.deepEqual(lines(script), [
      'destroy cali40x',
      `create cali40x hash:ip family inet hashsize 64 maxelem ${MAXELEM} -exist`,
      'add cali40x 10.0.0.5 -exist',
    ]);
    assert.equal(stats.recreated, 1);
  });

  it('a type change of a referenced set is blocked, not attempted', () => {
    const { script, stats } = diffIpSets(
      sets(spec('cali40x', 'hash:ip', ['10.0.0.5'])),
      parseIpSetSave(SAVE),
      {
        inUse: new Set(['cali40x']),
      },
    );
    assert.equal(script, '');
    assert.deepEqual(stats.blocked, ['cali40x']);
  });

  it('refuses desired sets outside our namespace or too long', () => {
    assert.throws(() => diffIpSets(sets(spec('foo', 'hash:ip', [])), new Map()), /cali40/);
    assert.throws(() => diffIpSets(sets(spec('cali4t0', 'hash:ip', [])), new Map()), /cali40/);
    assert.throws(() => diffIpSets(sets(spec(`cali40${'x'.repeat(26)}`, 'hash:ip', [])), new Map()), /31/);
  });
});

describe('IpSetDiff.split', () => {
  const spec = (name: string, n: number, base = 0) => ({
    name,
    type: 'hash:ip' as const,
    members: new Set(Array.from({ length: n }, (_, i) => `10.${base}.${i >> 8}.${i & 255}`)),
  });
  /** Lines of a script, without its COMMIT. */
  const body = (script: string) => script.split('\n').filter((l) => l !== '' && l !== 'COMMIT');

  it('cuts a script of new and changed sets into whole sets, about equal in lines', () => {
    const desired = new Map(
      [spec('cali40a', 500, 1), spec('cali40b', 300, 2), spec('cali40c', 250, 3), spec('cali40d', 40, 4)].map(
        (s) => [s.name, s],
      ),
    );
    // cali40d exists with other members: adds and deletes, not a create.
    const actual = new Map([
      ['cali40d', { ...spec('cali40d', 10, 9), family: 'inet' as const, maxelem: MAXELEM }],
    ]);
    const whole = diffIpSets(desired, actual);
    const parts = whole.split(2);
    assert.ok(parts);
    assert.equal(parts.length, 2);
    const scripts = parts.map((p) => body(p.script));
    // Making the parts' text fills in what the kernel will hold, as the whole script's would.
    assert.equal(whole.after.get('cali40a')?.members.size, 500);
    // Every line exactly once, each set's lines in one part and in their order.
    assert.deepEqual(scripts.flat().sort(), body(whole.script).sort());
    for (const name of desired.keys()) {
      const holding = scripts.filter((s) => s.some((l) => l.split(' ')[1] === name));
      assert.equal(holding.length, 1, `${name} in one part`);
      const mine = (s: string[]) => s.filter((l) => l.split(' ')[1] === name);
      assert.deepEqual(mine(holding[0] ?? []), mine(body(whole.script)));
    }
    const sizes = scripts.map((s) => s.length);
    assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 300, `balanced: ${sizes}`);
  });

  it('leaves a script with a swap whole', () => {
    const desired = new Map([['cali40a', spec('cali40a', 5)]]);
    const actual = new Map([
      ['cali40a', { ...spec('cali40a', 5), family: 'inet' as const, maxelem: 65_536 }],
    ]);
    const diff = diffIpSets(desired, actual);
    assert.equal(diff.stats.swapped, 1);
    assert.equal(diff.split(2), undefined);
    assert.deepEqual(diff.chunks(1), [diff]);
  });

  it('chunks: cuts in order into scripts of at most n sets, every line once, in its place', () => {
    const names = Array.from({ length: 7 }, (_, i) => `cali40k${i}`);
    const desired = new Map(names.map((n, i) => [n, spec(n, 3 + i, i)]));
    const whole = diffIpSets(desired, new Map());
    const chunks = whole.chunks(3);
    assert.equal(chunks.length, 3);
    const scripts = chunks.map((c) => body(c.script));
    assert.deepEqual(scripts.flat(), body(whole.script), 'the same lines in the same order');
    assert.deepEqual(
      scripts.map((s) => new Set(s.map((l) => l.split(' ')[1])).size),
      [3, 3, 1],
    );
    assert.deepEqual(
      chunks.map((c) => c.stats.lines),
      scripts.map((s) => s.length),
    );
    assert.deepEqual(whole.chunks(7), [whole], 'no more sets than the limit: itself');
  });
});
