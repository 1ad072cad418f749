// One meaning, checked twice: a node programmed change by change (incremental writes: only the
// chains that changed, ipset add/del lines, no read-back) must hold exactly what a node programmed
// from scratch with the final state holds. Random label and policy changes go through the real
// calculation graph into a dataplane in one namespace; then a fresh graph and dataplane load the
// final resources into a second namespace, and our chains, hooks and ipsets are compared after
// normalising what the kernel prints (counters, chain listing order, ipset header sizes).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CalculationGraph } from '../../agent/calc/graph.ts';
import { Sequencer } from '../../agent/calc/sequencer.ts';
import { Dataplane } from '../../agent/dataplane/dataplane.ts';
import { IpRouteDriver } from '../../native/iproute.ts';
import { IpSetDriver, parseIpSetSave } from '../../native/ipset.ts';
import { type IptablesBackend, IptablesDriver } from '../../native/iptables.ts';
import { Action, ResourceKind, type Update } from '../../proto/service.ts';
import { iptablesBackendSkip, netnsScope, sh } from '../harness/netns.ts';
import { deletion, update } from '../helpers/feed-builders.ts';
import { mulberry32 } from '../helpers/rng.ts';

const NODE = 'inc-node';
const APPS = ['a', 'b', 'c', 'd'];

function endpoint(i: number, app: string, remote: boolean): Update {
  const node = remote ? 'b-node1' : NODE;
  const cluster = remote ? 'b' : 'a';
  return update(
    ResourceKind.WORKLOAD_ENDPOINT,
    `${node}/k8s/shop/p${i}/eth0`,
    { cluster },
    {
      case: 'workloadEndpoint',
      value: {
        node,
        namespace: 'shop',
        pod: `p${i}`,
        endpoint: 'eth0',
        interfaceName: remote ? 'x' : `caliinc${String(i).padStart(4, '0')}`,
        ipv4Nets: [`10.${remote ? 64 : 0}.0.${i + 2}/32`],
        profiles: [remote ? 'b/kns.shop' : 'kns.shop'],
        labels: { app, 'projectcalico.org/namespace': 'shop' },
      },
    },
  );
}

function policy(p: number, r: () => number, selector?: string): Update {
  const pick = () => APPS[Math.floor(r() * APPS.length)] as string;
  const port = 8000 + Math.floor(r() * 3);
  return update(ResourceKind.POLICY, `policy/shop/pol${p}`, undefined, {
    case: 'policy',
    value: {
      name: `pol${p}`,
      namespace: 'shop',
      tier: 'default',
      hasOrder: true,
      order: p,
      selector: selector ?? `app == '${pick()}'`,
      ingress: true,
      egress: true,
      ingressRules: [
        {
          action: r() < 0.8 ? Action.ALLOW : Action.DENY,
          protocol: 'tcp',
          source: { selector: `app in {'${pick()}', '${pick()}'}` },
          destination: { ports: [{ first: port, last: port + Math.floor(r() * 2) }] },
        },
      ],
      egressRules: [{ action: Action.ALLOW, destination: { selector: `app == '${pick()}'` } }],
    },
  });
}

/** Our chains (grouped per chain, sorted by name: the listing order differs) and hooks, no counters. */
function ourTables(save: string): string {
  const chains = new Map<string, string[]>();
  const hooks: string[] = [];
  for (const line of save.split('\n')) {
    const m = /^-A (\S+) (.*)$/.exec(line);
    if (m === null) {
      const name = line.startsWith(':cali-') ? line.slice(1).split(' ')[0] : undefined;
      if (name !== undefined && !chains.has(name)) chains.set(name, []);
      continue;
    }
    const [, chain = '', spec = ''] = m;
    if (chain.startsWith('cali-')) chains.set(chain, [...(chains.get(chain) ?? []), spec]);
    else if (spec.includes('cali:')) hooks.push(`${chain} ${spec}`);
  }
  const body = [...chains]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([c, rules]) => [c, ...rules].join('\n  '));
  return [...hooks, ...body].join('\n');
}

async function ourSets(ns: string): Promise<string> {
  const sets = parseIpSetSave(await sh(ns, 'ipset', 'save'));
  return [...sets.values()]
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .map((s) => `${s.name} ${s.type}: ${[...s.members].sort().join(' ')}`)
    .join('\n');
}

async function kernelState(ns: string, backend: IptablesBackend): Promise<{ tables: string; sets: string }> {
  const save = await sh(ns, `iptables-${backend}-save`);
  return { tables: ourTables(save), sets: await ourSets(ns) };
}

function programmed(ns: string, backend: IptablesBackend) {
  const seq = new Sequencer();
  const graph = new CalculationGraph({ nodeName: NODE, localCluster: 'a' }, seq);
  const dp = new Dataplane(
    {
      ipsets: new IpSetDriver({ netns: ns }),
      iptables: new IptablesDriver({ backend, netns: ns, watch: null }),
      links: new IpRouteDriver({ netns: ns }),
    },
    { resyncIntervalMs: 3_600_000, driftCheckIntervalMs: 0 },
  );
  /** Feed updates through the graph and wait for the dataplane to have written them. */
  const apply = async (updates: readonly Update[]) => {
    for (const x of updates) graph.onUpdate(x);
    const applied = dp.whenApplied();
    dp.onMessages(seq.flush());
    await applied;
  };
  return { graph, dp, apply };
}

for (const backend of ['nft', 'legacy'] as IptablesBackend[]) {
  test(`incremental writes leave the kernel as a from-scratch load of the same state (${backend})`, {
    skip: await iptablesBackendSkip(backend),
  }, async (t) => {
    const scope = netnsScope(t);
    const [incNs, freshNs] = await Promise.all([scope.add('inc'), scope.add('fresh')]);
    const seed = Number(process.env.FEDMESH_SEED ?? Date.now() % 100_000);
    const r = mulberry32(seed);
    /** The current resources by key: what a from-scratch load starts from. */
    const state = new Map<string, Update>();
    const put = (x: Update) => {
      state.set(x.key, x);
      return x;
    };
    const profile = (cluster: string, name: string) =>
      put(update(ResourceKind.PROFILE, name, { cluster }, { case: 'profile', value: { labels: {} } }));
    const initial = [
      profile('a', 'kns.shop'),
      profile('b', 'kns.shop'),
      ...Array.from({ length: 6 }, (_, i) => put(endpoint(i, APPS[i % APPS.length] as string, false))),
      ...Array.from({ length: 8 }, (_, i) => put(endpoint(i, APPS[(i + 1) % APPS.length] as string, true))),
      ...Array.from({ length: 5 }, (_, p) => put(policy(p, r))),
    ];
    const inc = programmed(incNs, backend);
    t.after(() => inc.dp.stop());
    for (const x of initial) inc.graph.onUpdate(x);
    inc.graph.inSync();
    await inc.apply([]);

    // Rounds of random changes, each applied as one batch or change by change.
    for (let round = 0; round < 4; round++) {
      const batch: Update[] = [];
      for (let k = 0; k < 6; k++) {
        const what = r();
        if (what < 0.5) {
          const i = Math.floor(r() * 6);
          const remote = r() < 0.3;
          batch.push(put(endpoint(i, APPS[Math.floor(r() * APPS.length)] as string, remote)));
        } else if (what < 0.8) {
          batch.push(put(policy(Math.floor(r() * 7), r)));
        } else {
          const key = `policy/shop/pol${Math.floor(r() * 7)}`;
          const gone = state.get(key);
          if (gone === undefined) continue;
          state.delete(key);
          batch.push(deletion(gone));
        }
      }
      if (round % 2 === 0) await inc.apply(batch);
      else for (const x of batch) await inc.apply([x]);
    }
    // A policy the rounds never delete, selecting every endpoint: whatever the seed did, the final
    // state has policy chains to compare (the rounds alone may delete every policy).
    await inc.apply([put(policy(7, r, 'has(app)'))]);

    const fresh = programmed(freshNs, backend);
    t.after(() => fresh.dp.stop());
    for (const x of state.values()) fresh.graph.onUpdate(x);
    fresh.graph.inSync();
    await fresh.apply([]);

    const [got, want] = await Promise.all([kernelState(incNs, backend), kernelState(freshNs, backend)]);
    assert.ok(
      want.tables.includes('cali-pi-'),
      `the fresh node holds policy chains (the test has teeth; seed ${seed})`,
    );
    assert.equal(got.sets, want.sets, `ipsets differ (seed ${seed})`);
    assert.equal(got.tables, want.tables, `our chains or hooks differ (seed ${seed})`);
  });
}
