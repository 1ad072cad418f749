// From feed updates to what the agent would load into the kernel, without the kernel: the
// calculation graph, the sequencer, then the filter-table and ipset managers with writers that
// only capture. What the kernel property tests load and the differential test interprets.
import { CalculationGraph } from '../../agent/calc/graph.ts';
import { Sequencer } from '../../agent/calc/sequencer.ts';
import { IpSetManager } from '../../agent/dataplane/ipsets.ts';
import { FilterTableManager } from '../../agent/dataplane/iptables.ts';
import type { IpSetSpec } from '../../native/ipset.ts';
import type { TableState } from '../../native/iptables.ts';
import type { Update } from '../../proto/service.ts';

export interface Rendered {
  graph: CalculationGraph;
  filter: TableState;
  /** Every ipset the agent wants, by kernel name. */
  ipsets: Map<string, IpSetSpec>;
  /** Policies rendered into the table (those that select a local endpoint). */
  activePolicies: number;
}

export async function renderFromUpdates(node: string, updates: readonly Update[]): Promise<Rendered> {
  const seq = new Sequencer();
  const graph = new CalculationGraph({ nodeName: node, localCluster: 'a' }, seq);
  for (const u of updates) graph.onUpdate(u);
  graph.inSync();
  let ipsets = new Map<string, IpSetSpec>();
  const sets = new IpSetManager({
    apply: async (desired) => {
      ipsets = new Map([...desired].map(([k, v]) => [k, { ...v, members: new Set(v.members) }]));
    },
    destroyStale: async () => {},
  });
  const filter = new FilterTableManager({ syncTable: async () => {} });
  let activePolicies = 0;
  for (const m of seq.flush()) {
    if (m.kind === 'ActivePolicyUpdate') activePolicies++;
    sets.onUpdate(m);
    filter.onUpdate(m);
  }
  await sets.apply();
  return { graph, filter: filter.render(), ipsets, activePolicies };
}
