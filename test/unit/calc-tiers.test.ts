// Tier order: Tier resources order tiers (lower first; default is 1,000,000 unless a Tier says
// otherwise; a tier without an order, or without a Tier resource, comes after every ordered one).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CalculationGraph } from '../../agent/calc/graph.ts';
import type { DataplaneMessage, LocalEndpoint } from '../../agent/calc/messages.ts';
import { deletion, policy, tier, wep, wepKey } from '../helpers/feed-builders.ts';

function setup() {
  const eps = new Map<string, LocalEndpoint>();
  const sink = {
    send: (m: DataplaneMessage) => m.kind === 'EndpointUpdate' && eps.set(m.endpoint.key, m.endpoint),
  };
  const g = new CalculationGraph({ nodeName: 'a-node1', localCluster: 'a' }, sink);
  const ep = { node: 'a-node1', namespace: 'shop', pod: 'p1', labels: { app: 'x' }, ips: ['10.10.0.5'] };
  g.onUpdate(wep(ep));
  const tiersOf = () => eps.get(wepKey(ep))?.ingress.map((t) => t.tier);
  return { g, tiersOf };
}

const allow = [{ action: 'Allow' as const }];

test('tiers apply in their Tier order, default at 1,000,000, unordered last', () => {
  const { g, tiersOf } = setup();
  for (const t of ['default', 'security', 'platform', 'unordered']) {
    g.onUpdate(policy({ name: `p-${t}`, tier: t, selector: 'all()', ingress: allow }));
  }
  g.onUpdate(tier('security', 100));
  g.onUpdate(tier('platform', 2_000_000));
  assert.deepEqual(tiersOf(), ['security', 'default', 'platform', 'unordered']);

  // An order change re-sorts without touching the policies.
  g.onUpdate(tier('platform', 50));
  assert.deepEqual(tiersOf(), ['platform', 'security', 'default', 'unordered']);

  // The default tier can be moved by its own Tier resource.
  g.onUpdate(tier('default', 10));
  assert.deepEqual(tiersOf(), ['default', 'platform', 'security', 'unordered']);

  // Deleting a Tier puts its policies after the ordered tiers (ties by name).
  g.onUpdate(deletion(tier('security', 100)));
  g.onUpdate(deletion(tier('default', 10)));
  assert.deepEqual(tiersOf(), ['platform', 'default', 'security', 'unordered']);
});

test('a remote Tier is refused: tiers, like policies, are never federated', () => {
  const { g } = setup();
  const remote = tier('security', 1);
  remote.cluster = 'b';
  remote.key = `b/${remote.key}`;
  g.onUpdate(remote);
  assert.equal(g.refused.length, 1);
  assert.match(g.refused[0]!.reason, /never federated/);
});
