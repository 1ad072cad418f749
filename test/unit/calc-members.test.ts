// What a rule selector's ipset holds beyond workload endpoints: host endpoints' IPs and network
// sets' nets, local and remote, as the issue asks ("members a rule selector can match").
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { CalculationGraph } from '../../agent/calc/graph.ts';
import { netKey } from '../../agent/calc/ipset-members.ts';
import { intToIp4 } from '../../model/net.ts';
import { HostEndpointSchema, ResourceKind, UpdateSchema } from '../../proto/service.ts';
import { deletion, networkSet, policy, wep } from '../helpers/feed-builders.ts';
import { ipsetCollector } from '../helpers/ipset-sink.ts';
import { mulberry32 } from '../helpers/rng.ts';

function hostEndpoint(name: string, ip: string, labels: Record<string, string>, cluster = 'a') {
  const remote = cluster !== 'a';
  return create(UpdateSchema, {
    key: `${remote ? `${cluster}/` : ''}hostendpoint/${name}`,
    cluster,
    kind: ResourceKind.HOST_ENDPOINT,
    body: {
      case: 'hostEndpoint',
      value: create(HostEndpointSchema, {
        node: `${cluster}-node9`,
        name,
        expectedIpv4s: [ip],
        labels: { ...labels, 'fedmesh.io/cluster': cluster },
      }),
    },
  });
}

function setup() {
  const { sink, sets } = ipsetCollector();
  const g = new CalculationGraph({ nodeName: 'a-node1', localCluster: 'a' }, sink);
  g.onUpdate(
    wep({ node: 'a-node1', namespace: 'shop', pod: 'fe', labels: { app: 'fe' }, ips: ['10.10.0.5'] }),
  );
  // A global policy, so its rule selector is not limited to one namespace.
  g.onUpdate(
    policy({
      name: 'to-monitoring',
      selector: "app == 'fe'",
      types: ['Egress'],
      egress: [{ action: 'Allow', destination: { selector: "role == 'monitoring'" } }],
    }),
  );
  const members = () => [...sets.values()].map((s) => [...s].sort()).find((s) => s.length > 0) ?? [];
  return { g, members };
}

test('host endpoints, local and remote, are members of the sets whose selectors match them', () => {
  const { g, members } = setup();
  g.onUpdate(hostEndpoint('mon-a', '192.168.1.10', { role: 'monitoring' }));
  g.onUpdate(hostEndpoint('mon-b', '192.168.2.10', { role: 'monitoring' }, 'b'));
  g.onUpdate(hostEndpoint('other', '192.168.1.11', { role: 'db' }));
  assert.deepEqual(members(), ['192.168.1.10/32', '192.168.2.10/32']);
  g.onUpdate(deletion(hostEndpoint('mon-b', '192.168.2.10', { role: 'monitoring' }, 'b')));
  assert.deepEqual(members(), ['192.168.1.10/32']);
});

test("network sets' nets, local and remote, are members", () => {
  const { g, members } = setup();
  g.onUpdate(networkSet({ name: 'mon-nets', nets: ['203.0.113.0/24'], labels: { role: 'monitoring' } }));
  g.onUpdate(
    networkSet({
      name: 'b-mon',
      namespace: 'ops',
      nets: ['198.51.100.0/25'],
      labels: { role: 'monitoring' },
      cluster: 'b',
    }),
  );
  assert.deepEqual(members(), ['198.51.100.0/25', '203.0.113.0/24']);
  // A label change takes the set out again.
  g.onUpdate(networkSet({ name: 'mon-nets', nets: ['203.0.113.0/24'], labels: { role: 'retired' } }));
  assert.deepEqual(members(), ['198.51.100.0/25']);
});

test('the member index keys a /32 by its address: one key per address, other nets by their text', () => {
  // Every address, high ones too (above 2^31), gets its own small-integer key.
  const rnd = mulberry32(3);
  const seen = new Map<number | string, string>();
  for (let i = 0; i < 20_000; i++) {
    const ip = i < 4 ? [0, 0x7fffffff, 0x80000000, 0xffffffff][i]! : Math.floor(rnd() * 2 ** 32);
    const net = `${intToIp4(ip)}/32`;
    const k = netKey(net);
    assert.equal(typeof k, 'number', net);
    assert.equal(k, k as number | 0, `${net}: an int32 key`);
    const other = seen.get(k);
    assert.ok(other === undefined || other === net, `${net} and ${other} share a key`);
    seen.set(k, net);
  }
  for (const net of ['10.0.0.0/24', '0.0.0.0/0', '10.0.0.1/3', 'fd00::1/128']) assert.equal(netKey(net), net);
});
