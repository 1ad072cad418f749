// Differential property (issue 6): the flow evaluator behind `fedmesh explain` and the iptables the
// agent renders are two implementations of one meaning; for random valid policies, endpoints and
// packets they must give the same verdict. The iptables side is the rendered filter table walked by
// the interpreter (test/helpers/iptables-interp.ts) with the agent's ipsets; the explain side is
// evaluateDirection over the same feed, as `fedmesh explain` builds it (ClusterView).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  ClusterView,
  evaluateDirection,
  type Flow,
  protocolNumber,
} from '../../agent/calc/flow-evaluator.ts';
import type { Ip4 } from '../../model/net.ts';
import { caliInterfaceName, wepKey } from '../helpers/feed-builders.ts';
import { type IpSets, type Packet, walk } from '../helpers/iptables-interp.ts';
import {
  ADDRESSES,
  LOCAL_ENDPOINTS,
  NODE,
  policyUpdate,
  universeUpdates,
  validPolicyDoc,
} from '../helpers/policy-gen.ts';
import { renderFromUpdates } from '../helpers/render-pipeline.ts';

const RUNS = 100;
const POLICIES_PER_RUN = 5;
const PACKETS_PER_RUN = 60;

const LOCAL_IPS = LOCAL_ENDPOINTS.map((e) => e.ip);
/** Mostly a local endpoint at one end (a packet between two outsiders tests nothing here). */
const address = fc.oneof(fc.constantFrom(...LOCAL_IPS), fc.constantFrom(...ADDRESSES));
const packet = fc.record({
  src: address,
  dst: address,
  proto: fc.constantFrom('tcp', 'udp', 'sctp', 'icmp'),
  sport: fc.oneof(fc.constantFrom(53, 80, 5432, 8080), fc.integer({ min: 1, max: 65535 })),
  dport: fc.oneof(fc.constantFrom(53, 80, 443, 5432, 8080), fc.integer({ min: 1, max: 65535 })),
  icmpType: fc.constantFrom(0, 3, 8, 11),
  icmpCode: fc.constantFrom(0, 1),
});
type GenPacket = typeof packet extends fc.Arbitrary<infer T> ? T : never;

test('explain and the rendered iptables agree on every verdict', async () => {
  let cases = 0;
  const verdicts = { allow: 0, deny: 0 };
  await fc.assert(
    fc.asyncProperty(
      fc.array(validPolicyDoc, { minLength: 1, maxLength: POLICIES_PER_RUN }),
      fc.array(packet, { minLength: PACKETS_PER_RUN, maxLength: PACKETS_PER_RUN }),
      async (docs, packets) => {
        const updates = universeUpdates();
        for (const [i, d] of docs.entries()) updates.push(policyUpdate(d, `p${i}`).update!);
        const rendered = await renderFromUpdates(NODE, updates);
        const sets: IpSets = new Map([...rendered.ipsets].map(([k, v]) => [k, [...v.members]]));
        const view = new ClusterView('a', updates);
        assert.deepEqual(view.refused, []);
        for (const p of packets) {
          for (const ep of LOCAL_ENDPOINTS) {
            const iface = caliInterfaceName(ep.namespace, ep.pod);
            const key = wepKey({ node: NODE, namespace: ep.namespace, pod: ep.pod });
            const labels = view.labels(key);
            assert.ok(labels);
            for (const direction of ['ingress', 'egress'] as const) {
              if ((direction === 'ingress' ? p.dst : p.src) !== ep.ip) continue;
              const explained = explain(view, key, labels, direction, p);
              const pkt: Packet = {
                src: p.src,
                dst: p.dst,
                proto: p.proto,
                ...(p.proto === 'icmp'
                  ? { icmpType: p.icmpType, icmpCode: p.icmpCode }
                  : { sport: p.sport, dport: p.dport }),
                // One direction at a time: the other end is off the node.
                ...(direction === 'ingress' ? { iif: 'eth0', oif: iface } : { iif: iface, oif: 'eth0' }),
              };
              const w = walk(rendered.filter, 'FORWARD', pkt, sets);
              const kernel = w.verdict === 'DROP' ? 'deny' : 'allow';
              cases++;
              verdicts[kernel]++;
              assert.equal(
                kernel,
                explained.decision,
                `${direction} of ${ep.namespace}/${ep.pod}, packet ${JSON.stringify(p)}:\n` +
                  `  explain: ${explained.reason}\n  iptables: ${w.verdict ?? 'no verdict (accept)'} via ${w.chains.join(' > ')}\n` +
                  `  policies: ${JSON.stringify(docs)}`,
              );
            }
          }
        }
      },
    ),
    { numRuns: RUNS, includeErrorInReport: true },
  );
  process.stdout.write(
    `# differential property: ${cases} cases (${RUNS} runs of up to ${POLICIES_PER_RUN} random policies, ${PACKETS_PER_RUN} packets each): explain == iptables; ${verdicts.allow} allowed, ${verdicts.deny} denied\n`,
  );
  assert.ok(verdicts.allow > cases / 10 && verdicts.deny > cases / 10, 'both verdicts are exercised');
});

function explain(
  view: ClusterView,
  key: string,
  labels: Record<string, string>,
  direction: 'ingress' | 'egress',
  p: GenPacket,
) {
  const flow: Flow = {
    src: view.peer(p.src as Ip4),
    dst: view.peer(p.dst as Ip4),
    protocol: protocolNumber(p.proto)!,
    ...(p.proto === 'icmp'
      ? { icmp: { type: p.icmpType, code: p.icmpCode } }
      : { srcPort: p.sport, dstPort: p.dport }),
  };
  const res = evaluateDirection({
    direction,
    endpointLabels: labels,
    policies: view.policies,
    index: view.index,
    flow,
    tierOrders: view.tierOrders,
    passTiers: view.passTiers,
    profiles: view.profilesOf(key),
  });
  assert.deepEqual(res.notes, [], 'every fact is given, so explain assumes nothing');
  return res;
}
