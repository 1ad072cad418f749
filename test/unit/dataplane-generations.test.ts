// Issue 6, bug 2: a manager that clears a dirty flag after `await write()` loses every update that
// arrived during the write. Each manager here gets a deliberately slow writer (held on a gate); an
// update sent while the write is held must be written by the next apply, never dropped.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type {
  ActivePolicy,
  DataplaneMessage,
  IpSetId,
  PolicyKey,
  RemoteBlockRoute,
  Vtep,
} from '../../agent/calc/messages.ts';
import { Dataplane } from '../../agent/dataplane/dataplane.ts';
import { IpSetManager } from '../../agent/dataplane/ipsets.ts';
import { FilterTableManager } from '../../agent/dataplane/iptables.ts';
import { type LinkWriter, RouteManager, VxlanManager } from '../../agent/dataplane/vxlan.ts';
import { policyChain } from '../../agent/rules/names.ts';
import type { Cidr, Ip4, Mac } from '../../model/net.ts';
import type { TableState } from '../../native/iptables.ts';

/** A writer's hold: the first `hold` calls wait until `open()`. */
function slow(hold = 1) {
  let release!: () => void;
  const opened = new Promise<void>((r) => {
    release = r;
  });
  let entered!: () => void;
  const started = new Promise<void>((r) => {
    entered = r;
  });
  let held = 0;
  return {
    /** Resolves once a write is in progress (held). */
    started,
    open: () => release(),
    async pause(): Promise<void> {
      if (held++ >= hold) return;
      entered();
      await opened;
    },
  };
}

const policy = (name: string): ActivePolicy => ({
  key: `default/${name}` as PolicyKey,
  displayName: name,
  inbound: [],
  outbound: [],
});
const vtep = (node: string, n: number): Vtep => ({
  node,
  cluster: 'a',
  nodeIp: `192.168.0.${n}` as Ip4,
  tunnelIp: `10.0.${n}.0` as Ip4,
  mac: `66:00:00:00:00:0${n}` as Mac,
});

describe('an update that arrives during a slow write is not lost', () => {
  it('filter table', async () => {
    const gate = slow();
    const writes: string[][] = [];
    const m = new FilterTableManager({
      syncTable: async (_t, desired: TableState) => {
        writes.push(desired.chains.map((c) => c.name));
        await gate.pause();
      },
    });
    m.onUpdate({ kind: 'ActivePolicyUpdate', policy: policy('first') });
    const writing = m.apply();
    await gate.started;
    m.onUpdate({ kind: 'ActivePolicyUpdate', policy: policy('during') });
    gate.open();
    await writing;
    assert.equal(await m.apply(), true, 'the next apply writes again');
    assert.ok(writes.at(-1)?.includes(policyChain('in', 'default/during')), 'the update is in the table');
    assert.equal(await m.apply(), false, 'and then nothing is pending');
  });

  it('ipsets: members and removals', async () => {
    const gate = slow();
    const destroyGate = slow();
    const writes: Map<string, string[]>[] = [];
    const kept: string[][] = [];
    const m = new IpSetManager({
      apply: async (desired) => {
        writes.push(new Map([...desired].map(([k, v]) => [k, [...v.members]])));
        await gate.pause();
      },
      destroyStale: async (keep) => {
        kept.push([...keep]);
        await destroyGate.pause();
      },
    });
    const id = 's:x' as IpSetId;
    const sent = ['10.0.0.1/32'];
    m.onUpdate({ kind: 'IPSetUpdate', id, type: 'hash:net', members: sent });
    const writing = m.apply();
    await gate.started;
    m.onUpdate({ kind: 'IPSetDelta', id, added: ['10.0.0.2/32'], removed: [] });
    gate.open();
    await writing;
    assert.equal(await m.apply(), true);
    assert.deepEqual(writes.at(-1)?.get('cali40s:x')?.sort(), ['10.0.0.1/32', '10.0.0.2/32']);
    // The manager keeps the message's list as it came and never changes it (the graph may still
    // hold it: a small set's list is shared with the message that announced it).
    assert.deepEqual(sent, ['10.0.0.1/32']);

    const cleaning = m.cleanup();
    await destroyGate.started;
    m.onUpdate({ kind: 'IPSetRemove', id });
    destroyGate.open();
    await cleaning;
    await m.cleanup();
    assert.equal(kept.length, 2, 'a removal during a destroy pass triggers another');
    assert.ok(!kept.at(-1)?.includes('cali40s:x'));
  });

  it('VXLAN FDB/ARP and routes', async () => {
    const gate = slow();
    const fdb: number[] = [];
    const routes: string[][] = [];
    const writer: LinkWriter = {
      findDeviceWithAddress: async () => ({ name: 'eth0', mtu: 1500 }),
      ensureVxlan: async () => {},
      syncNeighbours: async () => {},
      rewrite: async () => {},
      interfaceMtus: async () => [],
      syncFdb: async (_d, f) => {
        fdb.push(f.length);
        await gate.pause();
      },
      syncRoutes: async (r) => {
        routes.push(r.map((x) => x.dst));
        await gate.pause();
      },
    };
    const vx = new VxlanManager(writer);
    const rt = new RouteManager(writer, vx);
    const host = { node: 'n1', nodeIp: '192.168.0.1' as Ip4, tunnelIp: '10.0.1.0' as Ip4 };
    const send = (msg: DataplaneMessage) => {
      vx.onUpdate(msg);
      rt.onUpdate(msg);
    };
    send({ kind: 'HostConfigUpdate', config: host });
    send({ kind: 'VTEPUpdate', vtep: vtep('n2', 2) });
    const writing = vx.apply();
    await gate.started;
    send({ kind: 'VTEPUpdate', vtep: vtep('n3', 3) });
    const route: RemoteBlockRoute = { dst: '10.0.3.0/26' as Cidr, node: 'n3', cluster: 'a' };
    send({ kind: 'RouteUpdate', route });
    gate.open();
    await writing;
    assert.equal(vx.ready, true, 'a VTEP change does not make the device unready');
    assert.equal(await vx.apply(), true);
    assert.equal(fdb.at(-1), 2, 'both VTEPs written');
    await rt.apply();
    assert.deepEqual(routes.at(-1), ['10.0.3.0/26']);
  });

  it('the whole dataplane: a policy sent during a held filter write reaches the kernel writer', async () => {
    const gate = slow();
    const filterWrites: string[][] = [];
    const dp = new Dataplane(
      {
        ipsets: { apply: async () => {}, destroyStale: async () => {} },
        iptables: {
          syncTable: async (t, desired) => {
            if (t !== 'filter') return;
            filterWrites.push(desired.chains.map((c) => c.name));
            await gate.pause();
          },
        },
        links: {
          findDeviceWithAddress: async () => undefined,
          ensureVxlan: async () => {},
          syncNeighbours: async () => {},
          rewrite: async () => {},
          interfaceMtus: async () => [],
          syncFdb: async () => {},
          syncRoutes: async () => {},
        },
      },
      { applyDelayMs: 1, resyncIntervalMs: 3_600_000 },
    );
    dp.onMessages([{ kind: 'ActivePolicyUpdate', policy: policy('first') }, { kind: 'InSync' }]);
    await gate.started;
    const applied = dp.whenApplied();
    dp.onMessages([{ kind: 'ActivePolicyUpdate', policy: policy('during') }]);
    gate.open();
    await applied;
    assert.ok(filterWrites.at(-1)?.includes(policyChain('out', 'default/during')));
    dp.stop();
  });
});
