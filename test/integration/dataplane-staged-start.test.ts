// A cold start whose ipset write is big enough to stream (a node joining a large mesh) loads its
// filter chains while the sets fill: the sets are created empty first, the new chains go in
// unlinked (no hook, no existing chain jumps to them), and only once the fill is done does the
// write that links them in land. So no packet ever meets a rule whose set is still half filled.
// These tests hold the fill back until the staged chains are in the kernel, look at the kernel in
// that window, and compare the end state with an unstaged start of the same state; and check the
// ipset driver's side: the sets exist, empty, when it says they do.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { CalculationGraph } from '../../agent/calc/graph.ts';
import { Sequencer } from '../../agent/calc/sequencer.ts';
import { Dataplane } from '../../agent/dataplane/dataplane.ts';
import type { IpSetWriter } from '../../agent/dataplane/ipsets.ts';
import { intToIp4 } from '../../model/net.ts';
import { IpRouteDriver } from '../../native/iproute.ts';
import { IpSetDriver, type IpSetSpec, parseIpSetList, parseIpSetSave } from '../../native/ipset.ts';
import { IptablesDriver } from '../../native/iptables.ts';
import type { Update } from '../../proto/service.ts';
import { iptablesBackendSkip, netnsScope, sh } from '../harness/netns.ts';
import { policy, profile, wep } from '../helpers/feed-builders.ts';

const NODE = 'stage-node';
/** Members of the remote app's set: more lines than the ipset driver writes unstreamed (20,000). */
const REMOTES = 21_000;

function resources(opts: { broken: boolean }): Update[] {
  const out: Update[] = [
    profile('kns.shop', {}),
    profile('kns.shop', {}, { cluster: 'b' }),
    policy({
      name: 'web-from-api',
      namespace: 'shop',
      order: 10,
      selector: "app == 'web'",
      ingress: [
        {
          action: 'Allow',
          protocol: 'TCP',
          source: { selector: "app == 'api'" },
          destination: { ports: [8080] },
        },
      ],
      egress: [{ action: 'Allow', destination: { selector: "app == 'api'" } }],
    }),
    policy({
      name: 'deny-rest',
      namespace: 'shop',
      order: 20,
      selector: "app == 'web'",
      ingress: [{ action: 'Deny', source: { selector: "app == 'batch'" } }],
    }),
  ];
  if (opts.broken)
    out.push(
      policy({
        name: 'broken',
        namespace: 'shop',
        order: 5,
        selector: "app == 'web'",
        ingress: [{ action: 'Allow', source: { selector: "app == 'batch'" } }],
      }),
    );
  for (let i = 0; i < 3; i++)
    out.push(
      wep({
        node: NODE,
        namespace: 'shop',
        pod: `web-${i}`,
        ips: [`10.0.0.${i + 2}`],
        labels: { app: 'web' },
        profiles: ['kns.shop'],
        interfaceName: `calistg${i}`,
      }),
    );
  for (let i = 0; i < REMOTES; i++)
    out.push(
      wep({
        cluster: 'b',
        node: `b-node${i % 100}`,
        namespace: 'shop',
        pod: `api-${i}`,
        ips: [intToIp4(0x0a400000 + i + 2)],
        labels: { app: i % 50 === 0 ? 'batch' : 'api' },
        profiles: ['kns.shop'],
        interfaceName: 'x',
      }),
    );
  return out;
}

/** What the kernel held while the fill was held back, right after the staged chains landed. */
interface Window {
  /** Our filter chains then. */
  chains: string[];
  /** Rules of ours in the built-in chains then (the hooks that would link the chains in). */
  hooks: string[];
  /** Members of our sets then, by set. */
  members: Map<string, number>;
}

/**
 * The real ipset driver, with its fill held back: the sets are created empty, the dataplane is
 * told so (onCreated), and the members go in only once the staged chains are in the kernel and
 * the window has been recorded, or after 20 s if they never come.
 */
function heldBackFill(ns: string, seen: (w: Window | undefined) => void): IpSetWriter {
  const real = new IpSetDriver({ netns: ns });
  return {
    apply: async (desired, opts = {}) => {
      const { onCreated, ...rest } = opts;
      if (onCreated === undefined) return real.apply(desired, rest);
      const empty = new Map<string, IpSetSpec>(
        [...desired].map(([k, v]) => [k, { ...v, members: new Set<string>() }]),
      );
      await real.apply(empty, {});
      onCreated();
      seen(await stagedWindow(ns));
      return real.apply(desired, rest);
    },
    destroyStale: (keep, o) => real.destroyStale(keep, o),
    membersOnly: (desired) => real.membersOnly(desired),
    close: () => real.close(),
  };
}

async function stagedWindow(ns: string): Promise<Window | undefined> {
  const until = Date.now() + 20_000;
  while (Date.now() < until) {
    const save = await sh(ns, 'iptables-nft-save', '-t', 'filter');
    if (/^:cali-pi-/m.test(save)) {
      const chains = [...save.matchAll(/^:(cali-\S+)/gm)].map((m) => m[1] as string);
      const hooks = save
        .split('\n')
        .filter((l) => /^-A (INPUT|FORWARD|OUTPUT) /.test(l) && l.includes('cali:'));
      const members = new Map(
        [...parseIpSetList(await sh(ns, 'ipset', 'list', '-t')).headers].map(([n, h]) => [n, h.entries]),
      );
      return { chains, hooks, members };
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return undefined;
}

function startNode(ns: string, ipsets: IpSetWriter, faults?: { unloadablePolicies: ReadonlySet<string> }) {
  const seq = new Sequencer();
  const graph = new CalculationGraph({ nodeName: NODE, localCluster: 'a', deferUntilInSync: true }, seq);
  const iptables = new IptablesDriver({ backend: 'nft', netns: ns, watch: null });
  /** Chains each stage of the filter table wrote (0: refused, or nothing new). */
  const stages: number[] = [];
  const stageTable = iptables.stageTable.bind(iptables);
  iptables.stageTable = async (table, desired, opts) => {
    const n = await stageTable(table, desired, opts);
    if (table === 'filter') stages.push(n);
    return n;
  };
  const dp = new Dataplane(
    { ipsets, iptables, links: new IpRouteDriver({ netns: ns }) },
    { resyncIntervalMs: 3_600_000, driftCheckIntervalMs: 0, faults },
  );
  return { graph, seq, dp, stages };
}

async function coldStart(node: ReturnType<typeof startNode>, updates: readonly Update[]): Promise<void> {
  for (const x of updates) node.graph.onUpdate(x);
  node.graph.inSync();
  const applied = node.dp.whenApplied();
  node.dp.onMessages(node.seq.flush());
  await applied;
}

/** Our chains (sorted, per chain) and hooks, without counters: what the two nodes must share. */
function ours(save: string): string {
  const chains = new Map<string, string[]>();
  const hooks: string[] = [];
  for (const line of save.split('\n')) {
    const decl = /^:(cali-\S+)/.exec(line);
    if (decl) chains.set(decl[1] as string, chains.get(decl[1] as string) ?? []);
    const m = /^-A (\S+) (.*)$/.exec(line);
    if (m === null) continue;
    const [, chain = '', spec = ''] = m;
    if (chain.startsWith('cali-')) chains.set(chain, [...(chains.get(chain) ?? []), spec]);
    else if (spec.includes('cali:')) hooks.push(`${chain} ${spec}`);
  }
  return [
    ...hooks,
    ...[...chains].sort(([a], [b]) => (a < b ? -1 : 1)).map(([c, r]) => [c, ...r].join('\n  ')),
  ].join('\n');
}

async function kernel(ns: string): Promise<{ tables: string; sets: string }> {
  const sets = parseIpSetSave(await sh(ns, 'ipset', 'save'));
  return {
    tables: ours(await sh(ns, 'iptables-nft-save', '-t', 'filter')),
    sets: [...sets.values()]
      .sort((a, b) => (a.name < b.name ? -1 : 1))
      .map((s) => `${s.name} ${s.type} ${s.members.size}: ${[...s.members].sort().join(' ')}`)
      .join('\n'),
  };
}

/** The real driver, told nothing of staging: the unstaged start to compare with. */
function unstaged(ns: string): IpSetWriter {
  const real = new IpSetDriver({ netns: ns });
  return {
    apply: (desired, opts = {}) => real.apply(desired, { ...opts, onCreated: undefined }),
    destroyStale: (keep, o) => real.destroyStale(keep, o),
    membersOnly: (desired) => real.membersOnly(desired),
    close: () => real.close(),
  };
}

test('a big cold start loads its chains unlinked while the sets fill, and ends as an unstaged start (nft)', {
  skip: await iptablesBackendSkip('nft'),
  timeout: 120_000,
}, async (t) => {
  const scope = netnsScope(t);
  const [stagedNs, plainNs] = await Promise.all([scope.add('stg'), scope.add('plain')]);
  const updates = resources({ broken: false });
  let window: Window | undefined;
  const staged = startNode(
    stagedNs,
    heldBackFill(stagedNs, (w) => (window = w)),
  );
  const plain = startNode(plainNs, unstaged(plainNs));
  t.after(() => {
    staged.dp.stop();
    plain.dp.stop();
  });
  await coldStart(staged, updates);
  await coldStart(plain, updates);

  assert.ok(window !== undefined, 'the chains were staged while the fill was held back');
  assert.equal(staged.stages.length, 1);
  assert.ok((staged.stages[0] ?? 0) > 10, `chains staged: ${staged.stages}`);
  assert.deepEqual(plain.stages, [], 'the unstaged node was never told the sets exist');
  assert.ok(
    window.chains.some((c) => c.startsWith('cali-tw-')),
    `endpoint chains staged: ${window.chains.join(' ')}`,
  );
  assert.deepEqual(window.hooks, [], 'no hook linked the staged chains in while the sets were filling');
  assert.ok(window.members.size > 0, 'our sets existed when the chains were staged');
  for (const [name, n] of window.members) assert.equal(n, 0, `set ${name} was still empty in the window`);

  const [got, want] = await Promise.all([kernel(stagedNs), kernel(plainNs)]);
  assert.ok(
    want.sets.includes(` ${REMOTES - REMOTES / 50}: `),
    'the remote app set is full on both (the test streams)',
  );
  assert.equal(got.sets, want.sets, 'ipsets');
  assert.equal(got.tables, want.tables, 'our chains and hooks');
  assert.ok(
    /-A FORWARD .*cali:/.test(await sh(stagedNs, 'iptables-nft-save', '-t', 'filter')),
    'linked in at the end',
  );
});

test('a staged start with a policy the kernel refuses still loads everything else (nft)', {
  skip: await iptablesBackendSkip('nft'),
  timeout: 120_000,
}, async (t) => {
  const scope = netnsScope(t);
  const ns = await scope.add('stgbad');
  // The real driver: it creates the sets ahead of the fill itself, and says so.
  const node = startNode(ns, new IpSetDriver({ netns: ns }), {
    unloadablePolicies: new Set(['shop/broken', 'policy/shop/broken']),
  });
  t.after(() => node.dp.stop());
  await coldStart(node, resources({ broken: true }));
  // The stage holds a chain no kernel loads: refused whole, nothing staged; the write after the
  // fill then refuses that policy alone.
  assert.deepEqual(node.stages, [0], 'one stage, refused');
  const refused = node.dp.stats.refused.map((r) => r.policy);
  assert.ok(
    refused.includes('shop/broken'),
    `the broken policy is refused: ${JSON.stringify(node.dp.stats.refused)}`,
  );
  const save = await sh(ns, 'iptables-nft-save', '-t', 'filter');
  assert.ok(/^-A cali-pi-.*tcp.*8080/m.test(save), 'the other policies loaded');
  assert.ok(/-A FORWARD .*cali:/.test(save), 'the hooks are in');
});

test('the ipset driver says the sets exist only once each is created, empty, before its fill', async (t) => {
  const scope = netnsScope(t);
  const ns = await scope.add('mk');
  const driver = new IpSetDriver({ netns: ns });
  t.after(() => driver.close());
  const members = (base: number, n: number) =>
    new Set(Array.from({ length: n }, (_, i) => intToIp4(base + i)));
  const desired = new Map<string, IpSetSpec>([
    ['cali40big', { name: 'cali40big', type: 'hash:net', members: members(0x0a400000, REMOTES) }],
    ['cali40small', { name: 'cali40small', type: 'hash:ip', members: members(0x0a500000, 10) }],
  ]);
  let atCreated: Map<string, number> | undefined;
  await driver.apply(desired, {
    onCreated: () => {
      // Synchronously, before the driver goes on: what the kernel holds at the moment it says so.
      const out = execFileSync('ip', ['netns', 'exec', ns, 'ipset', 'list', '-t'], { encoding: 'utf8' });
      atCreated = new Map([...parseIpSetList(out).headers].map(([n, h]) => [n, h.entries]));
    },
  });
  assert.deepEqual(
    atCreated,
    new Map([
      ['cali40big', 0],
      ['cali40small', 0],
    ]),
  );
  const after = parseIpSetList(await sh(ns, 'ipset', 'list', '-t')).headers;
  assert.equal(after.get('cali40big')?.entries, REMOTES);
  assert.equal(after.get('cali40small')?.entries, 10);

  // A write too small to stream is not split up, and says nothing.
  let told = false;
  const small = new Map([
    ['cali40other', { name: 'cali40other', type: 'hash:ip' as const, members: members(0x0a600000, 5) }],
  ]);
  await driver.apply(small, { onCreated: () => (told = true) });
  assert.equal(told, false);
});
