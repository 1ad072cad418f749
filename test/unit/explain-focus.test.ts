// explain's single-load path against the path it replaced, on random input (issue 10):
// - a flow's verdict from the focused view (cli/explain-focus.ts: only the items at the flow's
//   addresses and the policies that can select its ends) is exactly the verdict, reason and trace
//   from the whole cluster's view, for random valid policies and packets;
// - the merged view built from one read of each datastore, replayed (syncer/datastore/snapshots.ts),
//   is the merged view the live drivers gave, update for update.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { equals } from '@bufbuild/protobuf';
import fc from 'fast-check';
import {
  ClusterView,
  type DirectionInput,
  evaluateDirection,
  protocolNumber,
} from '../../agent/calc/flow-evaluator.ts';
import { focusedView } from '../../cli/explain-focus.ts';
import type { Ip4 } from '../../model/net.ts';
import { type Update, UpdateSchema } from '../../proto/service.ts';
import { FileDatastore } from '../../syncer/datastore/file.ts';
import { buildMergedView, mergedViewOf } from '../../syncer/merged-view.ts';
import { wep, wepKey } from '../helpers/feed-builders.ts';
import {
  ADDRESSES,
  LOCAL_ENDPOINTS,
  NODE,
  policyUpdate,
  universeUpdates,
  validPolicyDoc,
} from '../helpers/policy-gen.ts';

const RUNS = 60;

const packet = fc.record({
  src: fc.constantFrom(...ADDRESSES),
  dst: fc.constantFrom(...ADDRESSES),
  proto: fc.constantFrom('tcp', 'udp', 'sctp', 'icmp'),
  sport: fc.option(fc.constantFrom(53, 80, 5432, 40000), { nil: undefined }),
  dport: fc.constantFrom(53, 80, 443, 5432, 8080),
  icmpType: fc.constantFrom(0, 8, 11),
});

/** Endpoints at no address a packet uses: the focused view leaves them out. */
const bystanders: Update[] = Array.from({ length: 20 }, (_, i) =>
  wep({
    node: NODE,
    namespace: i % 2 ? 'shop' : 'prod',
    pod: `bystander-${i}`,
    ips: [`10.0.2.${i + 1}`],
    labels: { app: ['web', 'api', 'db'][i % 3]!, tier: 'back' },
  }),
);

test('the focused view gives the whole view’s verdict, reason and trace', () => {
  let compared = 0;
  fc.assert(
    fc.property(
      fc.array(validPolicyDoc, { minLength: 1, maxLength: 6 }),
      fc.array(packet, { minLength: 10, maxLength: 10 }),
      (docs, packets) => {
        const updates = [...universeUpdates(), ...bystanders];
        for (const [i, d] of docs.entries()) {
          const u = policyUpdate(d, `p${i}`).update;
          if (u) updates.push(u);
        }
        const whole = new ClusterView('a', updates);
        for (const p of packets) {
          for (const ep of LOCAL_ENDPOINTS) {
            const key = wepKey({ node: NODE, namespace: ep.namespace, pod: ep.pod });
            for (const direction of ['ingress', 'egress'] as const) {
              if ((direction === 'ingress' ? p.dst : p.src) !== ep.ip) continue;
              const focused = focusedView('a', updates, {
                ips: [p.src as Ip4, p.dst as Ip4],
                selves: [key],
              });
              const decide = (view: ClusterView) => {
                const input: DirectionInput = {
                  direction,
                  endpointLabels: view.labels(key)!,
                  policies: view.policies,
                  index: view.index,
                  flow: {
                    src: view.peer(p.src as Ip4),
                    dst: view.peer(p.dst as Ip4),
                    protocol: protocolNumber(p.proto)!,
                    ...(p.proto === 'icmp'
                      ? { icmp: { type: p.icmpType, code: 0 } }
                      : { dstPort: p.dport, ...(p.sport !== undefined ? { srcPort: p.sport } : {}) }),
                  },
                  tierOrders: view.tierOrders,
                  passTiers: view.passTiers,
                  profiles: view.profilesOf(key),
                };
                return evaluateDirection(input);
              };
              assert.deepEqual(focused.labels(key), whole.labels(key));
              assert.deepEqual(focused.refused, whole.refused);
              assert.deepEqual(
                decide(focused),
                decide(whole),
                `${direction} of ${ep.pod}: ${JSON.stringify(p)}`,
              );
              assert.ok(focused.items.size < whole.items.size, 'the focused view is smaller');
              compared++;
            }
          }
        }
      },
    ),
    { numRuns: RUNS },
  );
  assert.ok(compared > RUNS * 3, `${compared} decisions compared`);
});

/** The merged view's updates by feed key, as comparable text. */
function byKey(updates: readonly Update[]): Map<string, Update> {
  return new Map(updates.map((u) => [`${u.kind}|${u.key}`, u]));
}

function assertSameUpdates(got: readonly Update[], want: readonly Update[]): void {
  const g = byKey(got);
  const w = byKey(want);
  assert.deepEqual([...g.keys()].sort(), [...w.keys()].sort());
  for (const [k, u] of w) assert.ok(equals(UpdateSchema, g.get(k)!, u), k);
}

test('the merged view from one read of each datastore is the one the live drivers gave', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fedmesh-explain-focus-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const root = new URL('../..', import.meta.url).pathname;
  cpSync(join(root, 'examples/two-cluster/a'), join(dir, 'a'), { recursive: true });
  cpSync(join(root, 'examples/two-cluster/b'), join(dir, 'b'), { recursive: true });
  // A remote endpoint inside a's pool (refused), one refused document, a policy that does not
  // compile (refused by the merger): the refusals must be the same too.
  writeFileSync(
    join(dir, 'b', 'extra.yaml'),
    `apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: b--node1-k8s-squat-eth0, namespace: shop, labels: {app: x}}
spec: {orchestrator: k8s, node: b-node1, pod: squat, endpoint: eth0, interfaceName: cali0123456789a, ipNetworks: [10.10.1.99/32], profiles: [kns.shop]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: bad, namespace: shop}
spec: {node: 5}
`,
  );
  writeFileSync(
    join(dir, 'a', 'extra.yaml'),
    `apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: bad-global, namespace: shop}
spec: {selector: global(), types: [Ingress]}
`,
  );
  for (const cluster of ['a', 'b']) {
    const live = await buildMergedView({
      cluster,
      local: new FileDatastore(join(dir, cluster)),
      fileRoot: dir,
    });
    const replayed = await mergedViewOf(
      cluster,
      { type: 'file', dir: join(dir, cluster) },
      { fileRoot: dir },
    );
    assert.ok(live.updates.length > 10);
    assertSameUpdates(replayed.updates, live.updates);
    assert.deepEqual(
      replayed.remotes.map((r) => [r.cluster, r.state, r.endpoints, r.conflicts, r.detail]),
      live.remotes.map((r) => [r.cluster, r.state, r.endpoints, r.conflicts, r.detail]),
    );
    const messages = (v: typeof live) => v.errors.map((e) => `${e.resource} ${e.field} ${e.message}`).sort();
    assert.deepEqual(messages(replayed), messages(live));
    if (cluster === 'a') {
      assert.ok(messages(live).length >= 2, messages(live).join('\n'));
      assert.ok(live.remotes.some((r) => r.conflicts > 0));
    }
  }
});
