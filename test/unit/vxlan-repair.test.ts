// The repair of a lost vxlan.calico (kernel events said it was deleted, set down or changed), with a
// writer that records what it is asked to do: the device is checked and every entry written back
// without reading the entries first; a loss about a device already replaced by an earlier repair
// writes nothing; a setting fixed in place writes no entries; a failed repair falls back to the
// full check. (The kernel side of the same repairs: test/integration/kernel-repair.test.ts.)
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Vtep } from '../../agent/calc/messages.ts';
import {
  desiredKernelState,
  type LinkWriter,
  RouteManager,
  VxlanManager,
} from '../../agent/dataplane/vxlan.ts';
import type { Cidr, Ip4, Mac } from '../../model/net.ts';

function vtep(i: number): Vtep {
  return {
    node: `b/n${i}`,
    cluster: 'b',
    nodeIp: `192.168.0.${i}` as Ip4,
    tunnelIp: `10.0.${i}.0` as Ip4,
    mac: `66:bb:00:00:00:0${i}` as Mac,
  };
}

function setup(ensure: () => Promise<unknown> = async () => ({ created: true })) {
  const calls: string[] = [];
  const rewrites: { routes: number; neighbours: number; fdb: number }[] = [];
  const writer: LinkWriter = {
    findDeviceWithAddress: async () => {
      calls.push('find');
      return { name: 'eth0', mtu: 1500 };
    },
    interfaceMtus: async () => [],
    ensureVxlan: async () => {
      calls.push('ensure');
      return ensure();
    },
    syncFdb: async () => {
      calls.push('syncFdb');
    },
    syncNeighbours: async () => {
      calls.push('syncNeighbours');
    },
    syncRoutes: async () => {
      calls.push('syncRoutes');
    },
    rewrite: async (o) => {
      calls.push('rewrite');
      rewrites.push({ routes: o.routes.length, neighbours: o.neighbours.length, fdb: o.fdb.length });
    },
  };
  const vx = new VxlanManager(writer);
  const rt = new RouteManager(writer, vx);
  for (const m of [
    {
      kind: 'HostConfigUpdate',
      config: { node: 'n1', nodeIp: '192.168.0.1' as Ip4, tunnelIp: '10.0.1.0' as Ip4 },
    },
    { kind: 'VTEPUpdate', vtep: vtep(2) },
    { kind: 'VTEPUpdate', vtep: vtep(3) },
    { kind: 'RouteUpdate', route: { dst: '10.0.2.0/26' as Cidr, node: 'b/n2', cluster: 'b' } },
    { kind: 'RouteUpdate', route: { dst: '10.0.3.0/26' as Cidr, node: 'b/n3', cluster: 'b' } },
  ] as const) {
    vx.onUpdate(m);
    rt.onUpdate(m);
  }
  return { vx, rt, calls, rewrites };
}

describe('vxlan.calico repair on kernel events', () => {
  it('deleted: the device made again, every FDB, ARP entry and device route written, nothing read', async () => {
    const { vx, calls, rewrites } = setup();
    await vx.apply();
    calls.length = 0;
    rewrites.length = 0;
    vx.markLost('deleted', [4]);
    assert.equal(await vx.apply(), false, 'no full check: the routes need no re-read');
    assert.deepEqual(calls, ['ensure', 'rewrite']);
    assert.deepEqual(rewrites, [{ routes: 2, neighbours: 2, fdb: 2 }]);
  });

  it('a second loss report about the device already replaced writes nothing', async () => {
    const { vx, calls } = setup();
    await vx.apply();
    vx.markLost('down', [4]);
    await vx.apply();
    calls.length = 0;
    vx.markLost('deleted', [4]); // the same device's deletion, reported in a later burst
    await vx.apply();
    assert.deepEqual(calls, []);
    vx.markLost('deleted', [4, 9]); // but a device not seen before is repaired
    await vx.apply();
    assert.deepEqual(calls, ['ensure', 'rewrite']);
  });

  it('changed and fixed in place: no entries written', async () => {
    const { vx, calls } = setup(async () => ({ created: false, changed: true }));
    await vx.apply();
    calls.length = 0;
    vx.markLost('changed', [4]);
    await vx.apply();
    assert.deepEqual(calls, ['ensure']);
  });

  it('a failed repair leaves it to the full check', async () => {
    let fail = false;
    const { vx, calls } = setup(async () => {
      if (fail) throw new Error('RTNETLINK answers: no such device');
      return { created: true };
    });
    await vx.apply();
    calls.length = 0;
    fail = true;
    vx.markLost('deleted', [4]);
    await assert.rejects(vx.apply(), /no such device/);
    fail = false;
    assert.equal(await vx.apply(), 'fresh', 'a new device, written whole');
    // Tried twice, then the full check (failing once more), which finds the device made anew: the
    // routes elsewhere synced while the table holds none of the device's, then everything on it
    // written at once, nothing of it read.
    assert.deepEqual(calls, [
      'ensure',
      'ensure',
      'find',
      'ensure',
      'find',
      'ensure',
      'syncRoutes',
      'rewrite',
    ]);
  });

  it('reported down, deleted under the fix (the kernel tearing it down): once more, made anew', async () => {
    let failures = 0;
    const { vx, calls, rewrites } = setup(async () => {
      if (failures-- > 0) throw new Error('Cannot find device "vxlan.calico"');
      return { created: true };
    });
    await vx.apply();
    calls.length = 0;
    rewrites.length = 0;
    failures = 1;
    vx.markLost('down', [4]);
    assert.equal(await vx.apply(), false, 'no full check');
    assert.deepEqual(calls, ['ensure', 'ensure', 'rewrite']);
    assert.deepEqual(rewrites, [{ routes: 2, neighbours: 2, fdb: 2 }], 'made anew: the FDB too');
  });

  it('the full check on a device that exists reads its entries back', async () => {
    const { vx, calls } = setup(async () => ({ created: false, changed: false }));
    await vx.apply();
    assert.deepEqual(calls, ['find', 'ensure', 'syncFdb', 'syncNeighbours']);
  });

  it('set down: ARP entries and routes first, the FDB entries the kernel kept after them', async () => {
    const { vx, calls, rewrites } = setup(async () => ({ created: false, changed: true, ifindex: 4 }));
    await vx.apply();
    calls.length = 0;
    vx.markLost('down', [4]);
    await vx.apply();
    assert.deepEqual(calls, ['ensure', 'rewrite', 'rewrite']);
    assert.deepEqual(rewrites, [
      { routes: 2, neighbours: 2, fdb: 0 },
      { routes: 0, neighbours: 0, fdb: 2 },
    ]);
  });

  it('the device last seen, found gone and made anew by a full check: its loss reports ask for nothing', async () => {
    let next = 4;
    const { vx, calls } = setup(async () => ({ created: true, ifindex: next++ }));
    await vx.apply(); // created as index 4
    vx.markDirty(); // (events were lost) the full check: index 4 gone, made anew as 5
    await vx.apply();
    calls.length = 0;
    vx.markLost('deleted', [4]); // the deletion of 4, read after the full check
    await vx.apply();
    assert.deepEqual(calls, []);
    vx.markLost('down', [5]); // the device in place now: repaired
    await vx.apply();
    assert.deepEqual(calls, ['ensure', 'rewrite']);
  });

  it("the watch's view of what is wanted: built once, rebuilt after a change", async () => {
    const { vx, rt } = setup();
    await vx.apply();
    const a = desiredKernelState(rt, vx);
    assert.equal(desiredKernelState(rt, vx), a, 'no change: the same view');
    assert.deepEqual([...a.routes.keys()].sort(), ['10.0.2.0/26', '10.0.3.0/26']);
    rt.onUpdate({ kind: 'RouteRemove', dst: '10.0.3.0/26' as Cidr });
    vx.onUpdate({ kind: 'VTEPRemove', node: 'b/n3' });
    const b = desiredKernelState(rt, vx);
    assert.deepEqual([...b.routes.keys()], ['10.0.2.0/26']);
    assert.deepEqual([...b.fdb.keys()], ['66:bb:00:00:00:02']);
  });
});
