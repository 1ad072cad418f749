// The sequencer: coalescing (at most one message per key, the net effect of the churn) and the
// order of a flush (what the dataplane needs first comes first).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type {
  ActivePolicy,
  DataplaneMessage,
  EndpointKey,
  IpSetId,
  LocalEndpoint,
  MessageKind,
  PolicyKey,
  Vtep,
} from '../../agent/calc/messages.ts';
import { Sequencer } from '../../agent/calc/sequencer.ts';
import type { Cidr, Ip4, Mac } from '../../model/net.ts';

const S1 = 's:set-one' as IpSetId;
const S2 = 's:set-two' as IpSetId;
const P1 = 'default/shop/p1' as PolicyKey;
const P2 = 'default/p2' as PolicyKey;
const E1 = 'a-node1/k8s/shop/web-1/eth0' as EndpointKey;
const E2 = 'a-node1/k8s/shop/web-2/eth0' as EndpointKey;

const activePolicy = (key: PolicyKey, sets: IpSetId[] = []): ActivePolicy => ({
  key,
  displayName: key,
  inbound: sets.map((s) => ({
    action: 'allow',
    src: { ipSets: [s], notIpSets: [], ports: [], notPorts: [], namedPortIpSets: [] },
    dst: { ipSets: [], notIpSets: [], ports: [], notPorts: [], namedPortIpSets: [] },
  })),
  outbound: [],
});
const endpoint = (key: EndpointKey, policies: PolicyKey[] = []): LocalEndpoint => ({
  key,
  interfaceName: `cali${key.length}`,
  ipv4Nets: ['10.10.0.5/32' as Cidr],
  ingress: policies.length ? [{ tier: 'default', policies }] : [],
  profiles: [],
  egress: [],
});
const vtep = (node: string): Vtep => ({
  node,
  cluster: 'b',
  nodeIp: '192.168.100.21' as Ip4,
  tunnelIp: '10.20.0.0' as Ip4,
  mac: '66:bb:00:00:00:01' as Mac,
});
const cidr = (s: string) => s as Cidr;

function run(...msgs: DataplaneMessage[]): DataplaneMessage[] {
  const s = new Sequencer();
  for (const m of msgs) s.send(m);
  return s.flush();
}

const kinds = (ms: readonly DataplaneMessage[]): MessageKind[] => ms.map((m) => m.kind);

describe('sequencer coalescing', () => {
  it('a delta after a full update merges into the full update', () => {
    const out = run(
      { kind: 'IPSetUpdate', id: S1, type: 'hash:net', members: ['10.0.0.1/32', '10.0.0.2/32'] },
      { kind: 'IPSetDelta', id: S1, added: ['10.0.0.3/32'], removed: ['10.0.0.1/32'] },
      { kind: 'IPSetDelta', id: S1, added: ['10.0.0.1/32'], removed: ['10.0.0.2/32'] },
    );
    assert.equal(out.length, 1);
    const m = out[0];
    assert.ok(m?.kind === 'IPSetUpdate');
    assert.equal(m.type, 'hash:net');
    assert.deepEqual([...m.members].sort(), ['10.0.0.1/32', '10.0.0.3/32']);
  });

  it('deltas merge into one delta holding the net change', () => {
    const out = run(
      { kind: 'IPSetDelta', id: S1, added: ['10.0.0.1/32', '10.0.0.2/32'], removed: ['10.0.0.9/32'] },
      { kind: 'IPSetDelta', id: S1, added: ['10.0.0.9/32'], removed: ['10.0.0.1/32'] },
    );
    assert.equal(out.length, 1);
    const m = out[0];
    assert.ok(m?.kind === 'IPSetDelta');
    assert.deepEqual([...m.added].sort(), ['10.0.0.2/32', '10.0.0.9/32']);
    assert.deepEqual(m.removed, ['10.0.0.1/32']);
  });

  it('an update then a remove of the same key ends as the remove, for every kind of key', () => {
    const out = run(
      { kind: 'IPSetUpdate', id: S1, type: 'hash:net', members: ['10.0.0.1/32'] },
      { kind: 'IPSetDelta', id: S1, added: ['10.0.0.2/32'], removed: [] },
      { kind: 'IPSetRemove', id: S1 },
      { kind: 'ActivePolicyUpdate', policy: activePolicy(P1) },
      { kind: 'ActivePolicyRemove', key: P1 },
      { kind: 'EndpointUpdate', endpoint: endpoint(E1) },
      { kind: 'EndpointRemove', key: E1 },
      { kind: 'VTEPUpdate', vtep: vtep('b-node1') },
      { kind: 'VTEPRemove', node: 'b-node1' },
      { kind: 'RouteUpdate', route: { dst: cidr('10.20.0.0/26'), node: 'b-node1', cluster: 'b' } },
      { kind: 'RouteRemove', dst: cidr('10.20.0.0/26') },
      {
        kind: 'PoolUpdate',
        pool: { cidr: cidr('10.20.0.0/16'), cluster: 'b', local: false, natOutgoing: false },
      },
      { kind: 'PoolRemove', cidr: cidr('10.20.0.0/16') },
    );
    assert.deepEqual(out.map((m) => m.kind).sort(), [
      'ActivePolicyRemove',
      'EndpointRemove',
      'IPSetRemove',
      'PoolRemove',
      'RouteRemove',
      'VTEPRemove',
    ]);
  });

  it('a remove then an update of the same key ends as the update (re-created)', () => {
    const out = run(
      { kind: 'IPSetRemove', id: S1 },
      { kind: 'IPSetUpdate', id: S1, type: 'hash:net', members: ['10.0.0.7/32'] },
      { kind: 'EndpointRemove', key: E1 },
      { kind: 'EndpointUpdate', endpoint: endpoint(E1) },
      { kind: 'VTEPRemove', node: 'b-node1' },
      { kind: 'VTEPUpdate', vtep: vtep('b-node1') },
    );
    assert.deepEqual(kinds(out), ['IPSetUpdate', 'EndpointUpdate', 'VTEPUpdate']);
    assert.deepEqual(out[0], { kind: 'IPSetUpdate', id: S1, type: 'hash:net', members: ['10.0.0.7/32'] });
  });

  it('repeated updates keep only the last version', () => {
    const last = endpoint(E1, [P1]);
    const out = run(
      { kind: 'EndpointUpdate', endpoint: endpoint(E1) },
      { kind: 'EndpointUpdate', endpoint: endpoint(E1, [P2]) },
      { kind: 'EndpointUpdate', endpoint: last },
      { kind: 'ActivePolicyUpdate', policy: activePolicy(P1) },
      { kind: 'ActivePolicyUpdate', policy: activePolicy(P2) },
      { kind: 'ActivePolicyUpdate', policy: activePolicy(P1, [S2]) },
      { kind: 'IPSetUpdate', id: S2, type: 'hash:net', members: [] },
    );
    assert.deepEqual(
      out.filter((m) => m.kind === 'EndpointUpdate'),
      [{ kind: 'EndpointUpdate', endpoint: last }],
    );
    assert.deepEqual(
      out
        .filter((m) => m.kind === 'ActivePolicyUpdate')
        .map((m) => m.kind === 'ActivePolicyUpdate' && m.policy),
      [activePolicy(P1, [S2]), activePolicy(P2)],
    );
  });

  it('a flush empties it; pending counts messages received since the last flush', () => {
    const s = new Sequencer();
    s.send({ kind: 'EndpointUpdate', endpoint: endpoint(E1) });
    s.send({ kind: 'EndpointUpdate', endpoint: endpoint(E1) });
    s.send({ kind: 'InSync' });
    assert.equal(s.pending, 3);
    assert.deepEqual(kinds(s.flush()), ['EndpointUpdate', 'InSync']);
    assert.equal(s.pending, 0);
    assert.deepEqual(s.flush(), []);
  });

  // A model of the dataplane's state; the sequencer must not change what the stream means.
  type State = {
    sets: Map<string, Set<string>>;
    other: Map<string, string>;
  };
  const applyTo = (st: State, m: DataplaneMessage): void => {
    switch (m.kind) {
      case 'IPSetUpdate':
        st.sets.set(m.id, new Set(m.members));
        return;
      case 'IPSetDelta': {
        const s = st.sets.get(m.id);
        assert.ok(s, `delta to a missing set ${m.id}`);
        for (const r of m.removed) s.delete(r);
        for (const a of m.added) s.add(a);
        return;
      }
      case 'IPSetRemove':
        st.sets.delete(m.id);
        return;
      case 'ActivePolicyUpdate':
        st.other.set(`policy ${m.policy.key}`, JSON.stringify(m.policy));
        return;
      case 'ActivePolicyRemove':
        st.other.delete(`policy ${m.key}`);
        return;
      case 'EndpointUpdate':
        st.other.set(`endpoint ${m.endpoint.key}`, JSON.stringify(m.endpoint));
        return;
      case 'EndpointRemove':
        st.other.delete(`endpoint ${m.key}`);
        return;
      default:
        return;
    }
  };
  const keyOf = (m: DataplaneMessage): string | undefined => {
    switch (m.kind) {
      case 'IPSetUpdate':
      case 'IPSetDelta':
      case 'IPSetRemove':
        return `ipset ${m.id}`;
      case 'ActivePolicyUpdate':
        return `policy ${m.policy.key}`;
      case 'ActivePolicyRemove':
        return `policy ${m.key}`;
      case 'EndpointUpdate':
        return `endpoint ${m.endpoint.key}`;
      case 'EndpointRemove':
        return `endpoint ${m.key}`;
      default:
        return undefined;
    }
  };

  it('at most one message per key, with the same net effect as the raw stream (property)', () => {
    const MEMBERS = ['10.0.0.1/32', '10.0.0.2/32', '10.0.0.3/32', '10.0.0.4/32'];
    const SETS = [S1, S2];
    const op = fc.oneof(
      fc.record({ t: fc.constant('set' as const), i: fc.nat(1), m: fc.subarray(MEMBERS) }),
      fc.record({
        t: fc.constant('delta' as const),
        i: fc.nat(1),
        add: fc.subarray(MEMBERS),
        rm: fc.subarray(MEMBERS),
      }),
      fc.record({ t: fc.constant('rmset' as const), i: fc.nat(1) }),
      fc.record({ t: fc.constant('pol' as const), i: fc.nat(1), v: fc.boolean() }),
      fc.record({ t: fc.constant('rmpol' as const), i: fc.nat(1) }),
      fc.record({ t: fc.constant('ep' as const), i: fc.nat(1), v: fc.boolean() }),
      fc.record({ t: fc.constant('rmep' as const), i: fc.nat(1) }),
      fc.record({ t: fc.constant('flush' as const) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const direct: State = { sets: new Map(), other: new Map() };
        const sequenced: State = { sets: new Map(), other: new Map() };
        const seq = new Sequencer();
        const flush = () => {
          const out = seq.flush();
          const keys = out.map(keyOf).filter((k) => k !== undefined);
          assert.equal(new Set(keys).size, keys.length, `one message per key: ${keys.join(', ')}`);
          for (const m of out) applyTo(sequenced, m);
        };
        for (const o of ops) {
          let m: DataplaneMessage | undefined;
          const id = SETS[o.t === 'flush' ? 0 : o.i]!;
          switch (o.t) {
            case 'set':
              m = { kind: 'IPSetUpdate', id, type: 'hash:net', members: o.m };
              break;
            case 'delta': {
              // As the graph does: only real changes, and only to a set that exists.
              const cur = direct.sets.get(id);
              if (!cur) continue;
              const added = o.add.filter((x) => !cur.has(x));
              const removed = o.rm.filter((x) => cur.has(x) && !added.includes(x));
              m = { kind: 'IPSetDelta', id, added, removed };
              break;
            }
            case 'rmset':
              if (!direct.sets.has(id)) continue;
              m = { kind: 'IPSetRemove', id };
              break;
            case 'pol':
              m = { kind: 'ActivePolicyUpdate', policy: activePolicy([P1, P2][o.i]!, o.v ? [S1] : []) };
              break;
            case 'rmpol':
              m = { kind: 'ActivePolicyRemove', key: [P1, P2][o.i]! };
              break;
            case 'ep':
              m = { kind: 'EndpointUpdate', endpoint: endpoint([E1, E2][o.i]!, o.v ? [P1] : []) };
              break;
            case 'rmep':
              m = { kind: 'EndpointRemove', key: [E1, E2][o.i]! };
              break;
            case 'flush':
              flush();
              continue;
          }
          applyTo(direct, m);
          seq.send(m);
        }
        flush();
        assert.deepEqual(sequenced, direct);
      }),
      { numRuns: 300 },
    );
  });
});

describe('sequencer flush order', () => {
  it('releases everything in dependency order, whatever order it arrived in', () => {
    const s = new Sequencer();
    // Arrival order: the reverse of what the dataplane needs.
    const arrivals: DataplaneMessage[] = [
      { kind: 'InSync' },
      { kind: 'IPSetRemove', id: 's:old' as IpSetId },
      { kind: 'PoolRemove', cidr: cidr('10.30.0.0/16') },
      { kind: 'RouteUpdate', route: { dst: cidr('10.20.0.0/26'), node: 'b-node1', cluster: 'b' } },
      { kind: 'VTEPUpdate', vtep: vtep('b-node1') },
      { kind: 'VTEPRemove', node: 'b-node9' },
      { kind: 'RouteRemove', dst: cidr('10.20.9.0/26') },
      { kind: 'ActivePolicyRemove', key: P2 },
      { kind: 'EndpointRemove', key: E2 },
      { kind: 'EndpointUpdate', endpoint: endpoint(E1, [P1]) },
      { kind: 'ActivePolicyUpdate', policy: activePolicy(P1, [S1, S2]) },
      {
        kind: 'PoolUpdate',
        pool: { cidr: cidr('10.20.0.0/16'), cluster: 'b', local: false, natOutgoing: false },
      },
      { kind: 'IPSetDelta', id: S2, added: ['10.0.0.2/32'], removed: [] },
      { kind: 'IPSetUpdate', id: S1, type: 'hash:net', members: ['10.0.0.1/32'] },
      { kind: 'HostConfigUpdate', config: { node: 'a-node1' } },
    ];
    for (const m of arrivals) s.send(m);
    const out = s.flush();
    assert.equal(out.length, arrivals.length);
    const pos = (k: MessageKind) => {
      const i = out.findIndex((m) => m.kind === k);
      assert.ok(i >= 0, `${k} flushed`);
      return i;
    };
    const before = (a: MessageKind, b: MessageKind) =>
      assert.ok(pos(a) < pos(b), `${a} before ${b}: ${kinds(out).join(' → ')}`);
    before('HostConfigUpdate', 'IPSetUpdate');
    // ipsets before the policies that use them, policies before the endpoints that jump to them
    before('IPSetUpdate', 'ActivePolicyUpdate');
    before('IPSetDelta', 'ActivePolicyUpdate');
    before('ActivePolicyUpdate', 'EndpointUpdate');
    // removals in reverse: an endpoint stops jumping to a policy before the policy goes
    before('EndpointUpdate', 'EndpointRemove');
    before('EndpointRemove', 'ActivePolicyRemove');
    // routes: removes before VTEP removes; VTEPs before the routes that use them
    before('RouteRemove', 'VTEPRemove');
    before('VTEPRemove', 'VTEPUpdate');
    before('VTEPUpdate', 'RouteUpdate');
    // ipsets go last (the policies that used them are gone by then)
    for (const k of kinds(out).filter((k) => k !== 'IPSetRemove' && k !== 'InSync')) before(k, 'IPSetRemove');
    assert.equal(out.at(-1)?.kind, 'InSync');
  });

  it('an ipset that a policy stops using is removed only after the policy update', () => {
    const out = run(
      { kind: 'IPSetRemove', id: S1 },
      { kind: 'ActivePolicyUpdate', policy: activePolicy(P1, [S2]) },
      { kind: 'IPSetUpdate', id: S2, type: 'hash:net', members: [] },
    );
    assert.deepEqual(kinds(out), ['IPSetUpdate', 'ActivePolicyUpdate', 'IPSetRemove']);
  });

  it('an endpoint moving to a new policy sees it created before, and the old one removed after', () => {
    const out = run(
      { kind: 'ActivePolicyRemove', key: P1 },
      { kind: 'EndpointUpdate', endpoint: endpoint(E1, [P2]) },
      { kind: 'ActivePolicyUpdate', policy: activePolicy(P2) },
    );
    assert.deepEqual(kinds(out), ['ActivePolicyUpdate', 'EndpointUpdate', 'ActivePolicyRemove']);
  });
});
