// Real packets through a node the agent's whole pipeline programs (calculation graph → sequencer
// → Dataplane → ipset/iptables/route drivers), in network namespaces, on both iptables backends
// (issue 6): an ipBlock with except, ingress and egress; a policy update racing a slow table
// write; a refused write (a renderer fault) that leaves every other update flowing.
//
//   outside ns  eth0 192.168.9.2, .3, .4/24  ── veth ──  node ns eth0 192.168.9.1/24
//                                                         caliA → pod A 10.0.0.5
//                                                         caliB → pod B 10.0.0.6
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CalculationGraph } from '../../agent/calc/graph.ts';
import { Sequencer } from '../../agent/calc/sequencer.ts';
import { Dataplane } from '../../agent/dataplane/dataplane.ts';
import { IpRouteDriver } from '../../native/iproute.ts';
import { IpSetDriver } from '../../native/ipset.ts';
import { type IptablesBackend, IptablesDriver, type Table, type TableState } from '../../native/iptables.ts';
import { inNetns } from '../../native/netns.ts';
import type { Update } from '../../proto/service.ts';
import { iptablesBackendSkip, netnsScope, ping, podBehind, sh, veth } from '../harness/netns.ts';
import { namespace, wep } from '../helpers/feed-builders.ts';
import { policyUpdate } from '../helpers/policy-gen.ts';

const NODE = 'n1';
const A = { pod: 'a', ip: '10.0.0.5', iface: 'caliA' };
const B = { pod: 'b', ip: '10.0.0.6', iface: 'caliB' };
const [OUT_OK, OUT_EXCEPT, OUT_OTHER] = ['192.168.9.2', '192.168.9.3', '192.168.9.4'];

/** A Kubernetes NetworkPolicy with one ipBlock peer, as a user writes it. */
function ipBlockPolicy(name: string, pod: string, dir: 'ingress' | 'egress', except: string[]): Update {
  const peer = { ipBlock: { cidr: '192.168.9.0/24', except } };
  const doc = {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name, namespace: 'shop' },
    spec: {
      podSelector: { matchLabels: { pod } },
      policyTypes: [dir === 'ingress' ? 'Ingress' : 'Egress'],
      [dir]: [dir === 'ingress' ? { from: [peer] } : { to: [peer] }],
    },
  };
  const { update, errors } = policyUpdate(doc, name);
  assert.ok(update, String(errors));
  return update;
}

/** Allows everything into a pod: a policy the renderer fault makes unloadable in one test. */
function allowAll(name: string, pod: string): Update {
  const doc = {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name, namespace: 'shop' },
    spec: { podSelector: { matchLabels: { pod } }, policyTypes: ['Ingress'], ingress: [{}] },
  };
  const { update, errors } = policyUpdate(doc, name);
  assert.ok(update, String(errors));
  return update;
}

/** An iptables writer whose writes can be held (the slow write of the race test). */
class HoldableIptables {
  private hold?: Promise<void>;
  private release?: () => void;
  private entered?: () => void;
  writes = 0;

  constructor(private readonly real: IptablesDriver) {}

  /** The next filter write waits until the returned `release()`; `started` resolves when it does. */
  holdNext(): { started: Promise<void>; release: () => void } {
    this.hold = new Promise((r) => {
      this.release = r;
    });
    const started = new Promise<void>((r) => {
      this.entered = r;
    });
    return { started, release: () => this.release?.() };
  }

  async syncTable(table: Table, desired: TableState) {
    if (table === 'filter') {
      this.writes++;
      const hold = this.hold;
      if (hold) {
        this.hold = undefined;
        this.entered?.();
        await hold;
      }
    }
    return this.real.syncTable(table, desired);
  }
}

for (const backend of ['nft', 'legacy'] as IptablesBackend[]) {
  test(`real packets through a node the agent programs (${backend})`, {
    timeout: 120_000,
    skip: await iptablesBackendSkip(backend),
  }, async (t) => {
    const scope = netnsScope(t);
    const tag = backend.slice(0, 3);
    const node = await scope.add(`n${tag}`, { router: true });
    const [outside, podA, podB] = await Promise.all([
      scope.add(`o${tag}`),
      scope.add(`a${tag}`),
      scope.add(`b${tag}`),
    ]);
    await veth(
      { ns: outside, ifname: 'eth0', addr: `${OUT_OK}/24` },
      { ns: node, ifname: 'eth0', addr: '192.168.9.1/24' },
    );
    for (const ip of [OUT_EXCEPT, OUT_OTHER])
      await inNetns(outside, 'ip', ['addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    await inNetns(outside, 'ip', ['route', 'add', '10.0.0.0/24', 'via', '192.168.9.1']);
    await podBehind(node, podA, A.iface, A.ip);
    await podBehind(node, podB, B.iface, B.ip);

    const ipt = new HoldableIptables(new IptablesDriver({ backend, netns: node }));
    const dp = new Dataplane(
      { ipsets: new IpSetDriver({ netns: node }), iptables: ipt, links: new IpRouteDriver({ netns: node }) },
      {
        applyDelayMs: 1,
        resyncIntervalMs: 3_600_000,
        faults: { unloadablePolicies: new Set(['shop/knp.default.broken']) },
      },
    );
    t.after(() => dp.stop());
    const seq = new Sequencer();
    const graph = new CalculationGraph({ nodeName: NODE, localCluster: 'a' }, seq);
    const send = (...us: Update[]) => {
      for (const u of us) graph.onUpdate(u);
      dp.onMessages(seq.flush());
    };
    const applied = () => dp.whenApplied();
    const from = (src: string, dst: string) => ping(outside, dst, { extra: ['-I', src], timeoutS: 0.5 });
    const save = () => sh(node, `iptables-${backend}-save`, '-t', 'filter');

    send(
      namespace('shop'),
      ...[A, B].map((p) =>
        wep({
          node: NODE,
          namespace: 'shop',
          pod: p.pod,
          ips: [p.ip],
          labels: { pod: p.pod },
          interfaceName: p.iface,
        }),
      ),
    );
    graph.inSync();
    const first = applied();
    dp.onMessages(seq.flush());
    await first;
    assert.ok(await from(OUT_OK, A.ip), 'no policy yet: open');

    await t.test(
      'ipBlock with except, ingress: the excepted address is denied, the rest of the block allowed',
      async () => {
        send(ipBlockPolicy('in-a', 'a', 'ingress', [`${OUT_EXCEPT}/32`]));
        await applied();
        assert.deepEqual(dp.stats.refused, []);
        assert.ok(await from(OUT_OK, A.ip), `${OUT_OK} allowed`);
        assert.ok(await from(OUT_OTHER, A.ip), `${OUT_OTHER} allowed`);
        assert.ok(!(await from(OUT_EXCEPT, A.ip)), `${OUT_EXCEPT} (the except) denied`);
        assert.match(
          await save(),
          /-m set ! --match-set cali40n:\S+ src/,
          'the exception is a set, not a second -s',
        );
      },
    );

    await t.test(
      'ipBlock with except, egress: the excepted address is denied, the rest of the block allowed',
      async () => {
        send(ipBlockPolicy('out-b', 'b', 'egress', [`${OUT_EXCEPT}/32`]));
        await applied();
        assert.ok(await ping(podB, OUT_OK, { timeoutS: 0.5 }), `to ${OUT_OK} allowed`);
        assert.ok(await ping(podB, OUT_OTHER, { timeoutS: 0.5 }), `to ${OUT_OTHER} allowed`);
        assert.ok(!(await ping(podB, OUT_EXCEPT, { timeoutS: 0.5 })), `to ${OUT_EXCEPT} (the except) denied`);
      },
    );

    await t.test('a policy update racing a slow table write is applied, not lost', async () => {
      const held = ipt.holdNext();
      // A write starts (any change will do) and is held in the middle...
      send(ipBlockPolicy('in-a', 'a', 'ingress', [`${OUT_EXCEPT}/32`, '192.168.9.200/32']));
      await held.started;
      // ...while the update that matters arrives: the except moves from .3 to .4.
      send(ipBlockPolicy('in-a', 'a', 'ingress', [`${OUT_OTHER}/32`]));
      const done = applied();
      held.release();
      await done;
      assert.ok(await from(OUT_EXCEPT, A.ip), `${OUT_EXCEPT} now allowed`);
      assert.ok(!(await from(OUT_OTHER, A.ip)), `${OUT_OTHER} now denied`);
    });

    await t.test('a refused write leaves the other updates flowing and names the policy', async () => {
      // In one pass: a policy the kernel refuses (renderer fault) and a change to another policy.
      send(allowAll('broken', 'b'), ipBlockPolicy('in-a', 'a', 'ingress', []));
      await applied();
      assert.ok(dp.healthy, 'the node stays healthy');
      const refused = dp.stats.refused.filter((r) => r.policy === 'shop/knp.default.broken');
      assert.ok(refused.length > 0, JSON.stringify(dp.stats.refused));
      assert.match(refused[0]?.reason ?? '', /cali-fault-injected/);
      assert.ok(await from(OUT_OTHER, A.ip), 'the other policy change reached the kernel');
      // A later update still flows.
      send(ipBlockPolicy('in-a', 'a', 'ingress', [`${OUT_OK}/32`]));
      await applied();
      assert.ok(!(await from(OUT_OK, A.ip)), 'and so does the next one');
      assert.ok(await from(OUT_OTHER, A.ip));
      // The broken policy never loaded: its placeholder drops (fail closed) until it is mended.
      assert.ok(!(await from(OUT_OK, B.ip)), 'traffic the refused policy would decide is dropped');
    });
  });
}
