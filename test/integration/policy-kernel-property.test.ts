// Property (issue 6): every valid policy renders to tables and ipsets the kernel accepts. Random
// valid policies (test/helpers/policy-gen.ts, through the validator and the syncer's conversion)
// go through the calculation graph and the managers, and are really loaded — `ipset restore`, then
// `iptables-restore --noflush` — into a scratch namespace, on nft and on legacy, many policies per
// load. A single refusal fails the test and names the policy.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { policyChain } from '../../agent/rules/names.ts';
import { IpSetDriver } from '../../native/ipset.ts';
import { type IptablesBackend, IptablesDriver } from '../../native/iptables.ts';
import { iptablesBackendSkip, netnsScope, sh } from '../harness/netns.ts';
import { NODE, policyUpdate, universeUpdates, validPolicyDoc } from '../helpers/policy-gen.ts';
import { renderFromUpdates } from '../helpers/render-pipeline.ts';

const BATCHES = 10;
const PER_BATCH = 40;

for (const backend of ['nft', 'legacy'] as IptablesBackend[]) {
  const skip = await iptablesBackendSkip(backend);

  test(`random valid policies load into the kernel with zero refusals (${backend})`, { skip }, async (t) => {
    const ns = await netnsScope(t).add(`pk${backend.slice(0, 3)}`);
    const ipt = new IptablesDriver({ backend, netns: ns });
    const sets = new IpSetDriver({ netns: ns });
    const tally = { policies: 0, active: 0, rules: 0, sets: 0, compilerRefused: 0, loads: 0 };
    let batchNo = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(validPolicyDoc, { minLength: PER_BATCH, maxLength: PER_BATCH }),
        async (docs) => {
          const b = batchNo++;
          const updates = universeUpdates();
          const byKey = new Map<string, unknown>();
          for (const [i, doc] of docs.entries()) {
            const { update, errors } = policyUpdate(doc, `p${b}-${i}`);
            assert.ok(
              update,
              `the generator made a policy the validator refuses: ${errors}\n${JSON.stringify(doc)}`,
            );
            updates.push(update);
            const pv = update.body.case === 'policy' ? update.body.value : undefined;
            if (pv) byKey.set(`${pv.tier}/${pv.namespace ? `${pv.namespace}/` : ''}${pv.name}`, doc);
          }
          const r = await renderFromUpdates(NODE, updates);
          tally.policies += docs.length;
          tally.active += r.activePolicies;
          tally.compilerRefused += r.graph.refused.length;
          tally.rules += r.filter.chains.reduce((n, c) => n + c.rules.length, 0);
          tally.sets += r.ipsets.size;
          const ss = await sets.apply(r.ipsets);
          assert.deepEqual(ss.refused, [], 'ipset restore refused a set');
          const st = await ipt.syncTable('filter', r.filter);
          tally.loads += 2;
          const culprits = st.refused.map((x) => {
            const key = [...byKey.keys()].find((k) =>
              [policyChain('in', k), policyChain('out', k)].some((c) => c === x.chain),
            );
            return `${x.chain}: ${x.reason}\n  policy: ${key ? JSON.stringify(byKey.get(key)) : '(not a policy chain)'}`;
          });
          assert.deepEqual(culprits, [], 'iptables-restore refused chains');
          // Everything rendered is in the kernel.
          const saved = await sh(ns, `iptables-${backend}-save`, '-t', 'filter');
          for (const c of r.filter.chains) assert.ok(saved.includes(`:${c.name} `), `${c.name} loaded`);
          await sets.destroyStale(new Set(r.ipsets.keys()));
        },
      ),
      { numRuns: BATCHES, endOnFailure: true, includeErrorInReport: true },
    );
    process.stdout.write(
      `# kernel property (${backend}): ${tally.policies} random valid policies in ${BATCHES} batches (${tally.active} active on the node, ${tally.rules} iptables rules, ${tally.sets} ipsets in all), ${tally.loads} loads, 0 refusals; compiler refused ${tally.compilerRefused}\n`,
    );
    assert.equal(tally.compilerRefused, 0, 'the compiler refused policies the validator accepted');
    assert.ok(
      tally.active > tally.policies / 4,
      'most policies select a local endpoint, or this tests little',
    );
  });
}
