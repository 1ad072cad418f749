// The table renderer: endpoint chains, dispatch, the filter and nat tables. Checked by shape (what
// an operator reads in iptables-save) and by walking packets through the rendered rules with a
// small iptables interpreter (what the kernel would do with them).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type {
  ActivePolicy,
  ActiveProfile,
  CompiledEntity,
  CompiledRule,
  IpSetId,
  LocalEndpoint,
  LocalHostEndpoint,
  PolicyKey,
  ProfileId,
  TierPolicies,
} from '../../agent/calc/messages.ts';
import {
  chains,
  fromWorkloadChain,
  ipsetName,
  MAX_CHAIN_NAME,
  policyChain,
  profileChain,
  toWorkloadChain,
} from '../../agent/rules/names.ts';
import {
  renderDispatch,
  renderEndpointChains,
  renderFilterTable,
  renderNatTable,
  renderPolicyChains,
} from '../../agent/rules/render-tables.ts';
import type { Chain, Table } from '../../agent/rules/types.ts';
import type { Cidr } from '../../model/net.ts';
import { caliInterfaceName } from '../helpers/feed-builders.ts';

import { Interp, type IpSets, ifaceMatches, type Packet, walk } from '../helpers/iptables-interp.ts';

const forward = (table: Table, p: Packet, sets: IpSets) =>
  walk(table, 'FORWARD', p, sets).verdict ?? 'ACCEPT';

// --- inputs ---------------------------------------------------------------------------------

const entity = (e: Partial<CompiledEntity> = {}): CompiledEntity => ({
  ipSets: [],
  notIpSets: [],
  ports: [],
  notPorts: [],
  namedPortIpSets: [],
  ...e,
});
const rule = (r: Partial<CompiledRule> & Pick<CompiledRule, 'action'>): CompiledRule => ({
  src: entity(),
  dst: entity(),
  ...r,
});
const pk = (s: string) => s as PolicyKey;
const ap = (key: string, inbound: CompiledRule[], outbound: CompiledRule[] = []): ActivePolicy => ({
  key: pk(key),
  displayName: key.split('/').slice(1).join('/'),
  inbound,
  outbound,
});
const tiers = (...ts: [string, string[]][]): TierPolicies[] =>
  ts.map(([tier, ps]) => ({ tier, policies: ps.map(pk) }));
const ep = (
  iface: string,
  ip: string,
  ingress: TierPolicies[] = [],
  egress: TierPolicies[] = [],
  profiles: string[] = ['kns.shop'],
): LocalEndpoint =>
  ({
    key: `a-node1/k8s/shop/${iface}/eth0`,
    interfaceName: iface,
    ipv4Nets: [`${ip}/32`],
    ingress,
    egress,
    profiles,
  }) as LocalEndpoint;
/** The namespace's profile as Calico's kube-controllers writes it: allow all, both ways. */
const KNS: ActiveProfile = {
  id: 'kns.shop' as ProfileId,
  inbound: [rule({ action: 'allow' })],
  outbound: [rule({ action: 'allow' })],
};

const PASS_GUARD = '-m mark --mark 0x0/0x20000';

// --- endpoint chains ------------------------------------------------------------------------

describe('endpoint chains', () => {
  it('conntrack first, then per tier: policy jumps guarded by the pass mark, accept returns, a closing DROP', () => {
    const [tw, fw] = renderEndpointChains(
      ep(
        'cali1234567890a',
        '10.10.0.5',
        tiers(['security', ['security/sec']], ['default', ['default/shop/a', 'default/b']]),
      ),
    );
    assert.equal(tw!.name, 'cali-tw-cali1234567890a');
    assert.equal(fw!.name, 'cali-fw-cali1234567890a');
    const rs = tw!.rules;
    assert.deepEqual(rs.slice(0, 2), [
      { match: '-m conntrack --ctstate RELATED,ESTABLISHED', action: '-j ACCEPT' },
      { match: '-m conntrack --ctstate INVALID', action: '-j DROP' },
    ]);
    assert.deepEqual(rs[2], { match: '', action: '-j MARK --set-xmark 0x0/0x30000' });
    const jumps = rs.filter((r) => r.action.startsWith('-j cali-pi-'));
    assert.deepEqual(
      jumps.map((r) => r.action),
      ['security/sec', 'default/shop/a', 'default/b'].map((k) => `-j ${policyChain('in', k)}`),
    );
    for (const j of jumps) {
      assert.equal(j.match, PASS_GUARD, 'a policy is skipped once a Pass happened in its tier');
      const next = rs[rs.indexOf(j) + 1];
      assert.deepEqual(
        [next?.match, next?.action],
        ['-m mark --mark 0x10000/0x10000', '-j RETURN'],
        'an accept returns at once',
      );
    }
    const drops = rs.filter((r) => r.action === '-j DROP' && r.match === PASS_GUARD);
    assert.equal(drops.length, 2, 'one closing DROP per tier');
    assert.ok(
      rs.indexOf(drops[0]!) < rs.indexOf(jumps[1]!),
      'the security tier closes before the default tier starts',
    );
    assert.deepEqual(drops[1]!.comment, 'End of tier default. DROP if no policies passed packet');
    // After the tiers, the profiles; then the final drop.
    assert.deepEqual(rs.slice(-3), [
      { match: '', action: `-j ${profileChain('in', 'kns.shop')}`, comment: 'profile kns.shop' },
      { match: '-m mark --mark 0x10000/0x10000', action: '-j RETURN', comment: 'Return if profile accepted' },
      { match: '', action: '-j DROP', comment: 'DROP if no profiles matched' },
    ]);
    // Each tier starts by clearing the pass mark.
    for (const t of ['security', 'default'])
      assert.ok(
        rs.some((r) => r.action === '-j MARK --set-xmark 0x0/0x20000' && r.comment === `Start of tier ${t}`),
      );
    // Egress has no policy: straight to the profiles, after the encapsulation guards.
    assert.deepEqual(
      fw!.rules.filter((r) => r.action === '-j DROP').map((r) => r.comment ?? r.match),
      [
        '-m conntrack --ctstate INVALID',
        'DROP VXLAN encapped packets originating in workloads',
        'DROP IPinIP encapped packets originating in workloads',
        'DROP if no profiles matched',
      ],
    );
    assert.ok(!fw!.rules.some((r) => r.action.startsWith('-j cali-po-')));
  });

  it('an endpoint no policy selects goes to its profiles; with none, it is dropped (Felix)', () => {
    for (const c of renderEndpointChains(ep('cali0000000000a', '10.10.0.9', [], [], []))) {
      assert.deepEqual(c.rules.at(-1), {
        match: '',
        action: '-j DROP',
        comment: 'DROP if no profiles matched',
      });
      assert.ok(!c.rules.some((r) => r.action.startsWith('-j cali-p')), c.name);
    }
  });

  it("a Pass tier's end passes on instead of dropping", () => {
    const [tw] = renderEndpointChains(
      ep('cali1234567890a', '10.10.0.5', [
        { tier: 'platform', policies: [pk('platform/p')], defaultAction: 'pass' },
        { tier: 'default', policies: [pk('default/q')] },
      ]),
    );
    assert.deepEqual(
      tw!.rules.filter((r) => r.comment?.startsWith('End of tier')).map((r) => r.comment),
      ['End of tier default. DROP if no policies passed packet'],
    );
  });
});

describe('walking packets through the filter table', () => {
  const WEB = 'cali1111111111a';
  const DB = 'cali2222222222b';
  const OPEN = 'cali3333333333c';
  const PASSING = 'cali4444444444d';
  const NO_PROFILE = 'cali5555555555e';
  const webSet = 's:web' as IpSetId;
  const blockedSet = 'n:blocked' as IpSetId;
  const sets: IpSets = new Map([
    [ipsetName(webSet), ['10.10.0.5/32', '10.20.0.5/32']],
    [ipsetName(blockedSet), ['10.66.0.0/16', '10.67.0.0/16']],
    // Known VTEPs: a node of this cluster and one of a remote cluster.
    ['cali40all-vxlan-net', ['192.168.100.12/32', '192.168.200.11/32']],
  ]);
  const policies = [
    ap('platform/noop', [rule({ action: 'deny', src: entity({ net: '10.99.0.0/16' as Cidr }) })]),
    // security tier: deny the blocked nets, log, pass the rest on to the next tier
    ap('security/sec', [
      rule({ action: 'deny', src: entity({ ipSets: [blockedSet] }) }),
      rule({ action: 'log', protocol: 'tcp', dst: entity({ ports: [{ first: 22, last: 22 }] }) }),
      rule({ action: 'pass' }),
    ]),
    // default tier, db: allow web's set on 5432, and one /8 on 9000-9100 (ordered before a broader deny)
    ap('default/shop/db', [
      rule({
        action: 'allow',
        protocol: 'tcp',
        src: entity({ ipSets: [webSet] }),
        dst: entity({ ports: [{ first: 5432, last: 5432 }] }),
      }),
      rule({
        action: 'allow',
        protocol: 'tcp',
        src: entity({ net: '10.30.0.0/16' as Cidr }),
        dst: entity({ ports: [{ first: 9000, last: 9100 }] }),
      }),
    ]),
    ap('default/deny-9050', [
      rule({ action: 'deny', protocol: 'tcp', dst: entity({ ports: [{ first: 9050, last: 9050 }] }) }),
    ]),
    // web egress: only DNS and the db
    ap(
      'default/shop/web-egress',
      [],
      [
        rule({ action: 'allow', protocol: 'udp', dst: entity({ ports: [{ first: 53, last: 53 }] }) }),
        rule({ action: 'allow', protocol: 'tcp', dst: entity({ net: '10.10.0.6/32' as Cidr }) }),
      ],
    ),
    // a security-tier policy for web with nothing but a deny: the end of its tier drops the rest
    ap('security/web-strict', [rule({ action: 'deny', src: entity({ net: '10.40.0.0/16' as Cidr }) })]),
  ];
  const table = renderFilterTable({
    policies,
    profiles: [KNS],
    vxlan: true,
    endpoints: [
      ep(
        WEB,
        '10.10.0.5',
        tiers(['security', ['security/web-strict']]),
        tiers(['default', ['default/shop/web-egress']]),
      ),
      ep(
        DB,
        '10.10.0.6',
        tiers(['security', ['security/sec']], ['default', ['default/shop/db', 'default/deny-9050']]),
      ),
      ep(OPEN, '10.10.0.7'),
      ep(PASSING, '10.10.0.8', [
        { tier: 'platform', policies: [pk('platform/noop')], defaultAction: 'pass' },
      ]),
      ep(NO_PROFILE, '10.10.0.9', [], [], []),
    ],
  });
  const tcp = (o: Omit<Packet, 'proto'>): Packet => ({ proto: 'tcp', ...o });

  it("a Pass tier's end leaves the decision to the profiles; no profile at all drops", () => {
    assert.equal(
      forward(table, tcp({ iif: 'eth0', oif: PASSING, src: '1.1.1.1', dst: '10.10.0.8', dport: 80 }), sets),
      'ACCEPT',
    );
    assert.equal(
      forward(
        table,
        tcp({ iif: 'eth0', oif: NO_PROFILE, src: '1.1.1.1', dst: '10.10.0.9', dport: 80 }),
        sets,
      ),
      'DROP',
    );
    // The endpoint chain only marks and returns; cali-FORWARD accepts on the mark.
    const it = new Interp(table, sets);
    const p = tcp({ iif: 'eth0', oif: OPEN, src: '1.1.1.1', dst: '10.10.0.7', dport: 1 });
    assert.equal(
      it.run(toWorkloadChain(OPEN), p, { verdict: undefined, logs: [], chains: [], steps: 0 }),
      undefined,
    );
    assert.equal(it.mark & 0x10000, 0x10000);
    const fwd = table.chains.find((c) => c.name === chains.forward)!.rules.at(-1);
    assert.deepEqual([fwd?.match, fwd?.action], ['-m mark --mark 0x10000/0x10000', '-j ACCEPT']);
  });

  it('VXLAN and IP-in-IP leaving a workload are dropped, whatever its policy', () => {
    const vxlan = {
      proto: 'udp',
      iif: OPEN,
      oif: 'eth0',
      src: '10.10.0.7',
      dst: '8.8.8.8',
      dport: 4789,
    } as const;
    assert.equal(forward(table, vxlan, sets), 'DROP');
    assert.equal(forward(table, { ...vxlan, dport: 4790 }, sets), 'ACCEPT');
    assert.equal(
      forward(table, { proto: 'ipip', iif: OPEN, oif: 'eth0', src: '10.10.0.7', dst: '8.8.8.8' }, sets),
      'DROP',
    );
    // Into a workload, VXLAN is whatever its ingress policy says.
    assert.equal(
      forward(table, { ...vxlan, iif: 'eth0', oif: OPEN, src: '8.8.8.8', dst: '10.10.0.7' }, sets),
      'ACCEPT',
    );
  });

  it('cali-INPUT accepts VXLAN to this host only from known VTEPs, local or remote', () => {
    const vx = (src: string) =>
      walk(
        table,
        'INPUT',
        { proto: 'udp', iif: 'eth0', src, dst: '192.168.100.11', dport: 4789, local: true },
        sets,
      ).verdict;
    assert.equal(vx('192.168.100.12'), 'ACCEPT');
    assert.equal(vx('192.168.200.11'), 'ACCEPT', 'a remote cluster VTEP');
    assert.equal(vx('192.168.100.99'), 'DROP', 'an unknown source');
    // Other UDP to the host is not ours to judge.
    assert.equal(
      walk(
        table,
        'INPUT',
        { proto: 'udp', iif: 'eth0', src: '192.168.100.99', dst: '192.168.100.11', dport: 53, local: true },
        sets,
      ).verdict,
      undefined,
    );
    // Without VXLAN on this node, no guard.
    const plain = renderFilterTable({ policies: [], endpoints: [] });
    assert.ok(
      !plain.chains.find((c) => c.name === chains.input)!.rules.some((r) => r.match.includes('4789')),
    );
  });

  it('allows what the policies allow, in tier and policy order', () => {
    // web → db:5432: web's egress allows 10.10.0.6, db's ingress allows web's set.
    assert.equal(
      forward(table, tcp({ iif: WEB, oif: DB, src: '10.10.0.5', dst: '10.10.0.6', dport: 5432 }), sets),
      'ACCEPT',
    );
    // A remote member of the set, over the tunnel.
    assert.equal(
      forward(
        table,
        tcp({ iif: 'vxlan.calico', oif: DB, src: '10.20.0.5', dst: '10.10.0.6', dport: 5432 }),
        sets,
      ),
      'ACCEPT',
    );
    // An earlier allow wins over a later policy's deny in the same tier.
    assert.equal(
      forward(table, tcp({ iif: 'eth0', oif: DB, src: '10.30.1.1', dst: '10.10.0.6', dport: 9050 }), sets),
      'ACCEPT',
    );
  });

  it('drops what no policy of a tier allows, and what a deny matches', () => {
    // Not in the set: falls to the end of the default tier.
    assert.equal(
      forward(table, tcp({ iif: 'eth0', oif: DB, src: '10.20.0.9', dst: '10.10.0.6', dport: 5432 }), sets),
      'DROP',
    );
    // Deny in the security tier, before the default tier's allow could apply.
    assert.equal(
      forward(table, tcp({ iif: 'eth0', oif: DB, src: '10.66.1.1', dst: '10.10.0.6', dport: 5432 }), sets),
      'DROP',
    );
    // web's egress allows only DNS and the db.
    assert.equal(
      forward(table, tcp({ iif: WEB, oif: 'eth0', src: '10.10.0.5', dst: '1.1.1.1', dport: 443 }), sets),
      'DROP',
    );
    assert.equal(
      forward(
        table,
        { proto: 'udp', iif: WEB, oif: 'eth0', src: '10.10.0.5', dst: '1.1.1.1', dport: 53 },
        sets,
      ),
      'ACCEPT',
    );
    // A tier whose only policy has no allow: the end of the tier drops everything it did not deny.
    assert.equal(
      forward(table, tcp({ iif: 'eth0', oif: WEB, src: '10.50.0.1', dst: '10.10.0.5', dport: 80 }), sets),
      'DROP',
    );
  });

  it('log logs with the policy in its prefix and carries on', () => {
    const w = walk(
      table,
      'FORWARD',
      tcp({ iif: WEB, oif: DB, src: '10.10.0.5', dst: '10.10.0.6', dport: 22 }),
      sets,
    );
    assert.deepEqual(w.logs, ['calico-packet sec ']);
    assert.equal(w.verdict, 'DROP', 'logged, passed, then not allowed by the default tier');
  });

  it('established traffic is accepted before any policy; an open endpoint accepts everything', () => {
    assert.equal(
      forward(
        table,
        tcp({ iif: 'eth0', oif: DB, src: '10.66.1.1', dst: '10.10.0.6', dport: 5432, ct: 'ESTABLISHED' }),
        sets,
      ),
      'ACCEPT',
    );
    assert.equal(
      forward(table, tcp({ iif: 'eth0', oif: OPEN, src: '10.66.1.1', dst: '10.10.0.7', dport: 1 }), sets),
      'ACCEPT',
    );
    assert.equal(
      forward(table, tcp({ iif: OPEN, oif: 'eth0', src: '10.10.0.7', dst: '8.8.8.8', dport: 1 }), sets),
      'ACCEPT',
    );
    assert.equal(
      forward(
        table,
        tcp({ iif: 'eth0', oif: OPEN, src: '1.1.1.1', dst: '10.10.0.7', dport: 1, ct: 'INVALID' }),
        sets,
      ),
      'DROP',
    );
  });

  it('traffic not to or from a workload is left alone; an unknown workload interface is dropped', () => {
    assert.equal(
      walk(
        table,
        'FORWARD',
        tcp({ iif: 'eth0', oif: 'eth1', src: '1.1.1.1', dst: '2.2.2.2', dport: 1 }),
        sets,
      ).verdict,
      undefined,
    );
    assert.equal(
      forward(
        table,
        tcp({ iif: 'eth0', oif: 'cali9999999999z', src: '1.1.1.1', dst: '10.10.0.99', dport: 1 }),
        sets,
      ),
      'DROP',
    );
    assert.equal(
      forward(
        table,
        tcp({ iif: 'cali9999999999z', oif: 'eth0', src: '10.10.0.99', dst: '1.1.1.1', dport: 1 }),
        sets,
      ),
      'DROP',
    );
  });

  it('workload to host goes through egress policy (INPUT); host to workload is allowed (OUTPUT)', () => {
    assert.equal(
      walk(table, 'INPUT', tcp({ iif: WEB, src: '10.10.0.5', dst: '192.168.100.11', dport: 10250 }), sets)
        .verdict,
      'DROP',
    );
    assert.equal(
      walk(
        table,
        'INPUT',
        { proto: 'udp', iif: WEB, src: '10.10.0.5', dst: '192.168.100.11', dport: 53 },
        sets,
      ).verdict,
      'ACCEPT',
    );
    assert.equal(
      walk(table, 'OUTPUT', tcp({ oif: DB, src: '192.168.100.11', dst: '10.10.0.6', dport: 1 }), sets)
        .verdict,
      undefined,
    );
  });
});

// --- dispatch -------------------------------------------------------------------------------

/** Follows dispatch chains for one interface; returns the endpoint chain it reaches, if any. */
function dispatchOf(byName: ReadonlyMap<string, Chain>, root: string, flag: '-i' | '-o', iface: string) {
  let chain = byName.get(root);
  let steps = 0;
  let depth = 0;
  while (chain) {
    assert.ok(++depth < 20, 'dispatch loop');
    let next: string | undefined;
    for (const r of chain.rules) {
      steps++;
      if (r.match === '') {
        if (r.action === '-j DROP') return { target: 'DROP', steps, depth };
        continue;
      }
      const [f, pattern] = r.match.split(' ');
      assert.equal(f, flag);
      if (!ifaceMatches(pattern!, iface)) continue;
      assert.match(r.action, /^-g /);
      next = r.action.slice(3);
      break;
    }
    if (next === undefined) return { target: undefined, steps, depth }; // fell off the end: RETURN
    if (!byName.has(next)) return { target: next, steps, depth };
    chain = byName.get(next);
  }
  assert.fail('unreachable');
}

describe('workload dispatch', () => {
  const ifaces = Array.from({ length: 1000 }, (_, i) => caliInterfaceName(`ns-${i % 7}`, `pod-${i}`));

  it('a handful of interfaces dispatch linearly, with a final DROP for unknown ones', () => {
    const cs = renderDispatch(chains.toWlDispatch, '-o', ['calib', 'calia'], toWorkloadChain);
    assert.deepEqual(cs, [
      {
        name: 'cali-to-wl-dispatch',
        rules: [
          { match: '-o calia', action: '-g cali-tw-calia' },
          { match: '-o calib', action: '-g cali-tw-calib' },
          { match: '', action: '-j DROP', comment: 'Unknown interface' },
        ],
      },
    ]);
  });

  for (const [root, flag, target] of [
    [chains.toWlDispatch, '-o', toWorkloadChain],
    [chains.fromWlDispatch, '-i', fromWorkloadChain],
  ] as const) {
    it(`1,000 interfaces: ${root} is a tree of short chains that dispatches each interface exactly once`, () => {
      const cs = renderDispatch(root, flag, ifaces, target);
      const byName = new Map(cs.map((c) => [c.name, c]));
      assert.equal(byName.size, cs.length, 'chain names are unique');
      for (const c of cs) {
        assert.ok(c.name.length <= MAX_CHAIN_NAME, `${c.name} too long`);
        assert.ok(c.rules.length <= 17, `${c.name} has ${c.rules.length} rules`);
      }
      // A tree: every chain but the root is jumped to from exactly one rule.
      const refs = new Map<string, number>();
      for (const c of cs)
        for (const r of c.rules)
          if (r.action.startsWith('-g ')) refs.set(r.action.slice(3), (refs.get(r.action.slice(3)) ?? 0) + 1);
      for (const c of cs) assert.equal(refs.get(c.name) ?? 0, c.name === root ? 0 : 1, c.name);
      // Every endpoint chain is the target of exactly one rule, and each interface reaches its own.
      const endpointTargets = [...refs].filter(([n]) => !byName.has(n));
      assert.equal(endpointTargets.length, ifaces.length);
      assert.ok(endpointTargets.every(([, n]) => n === 1));
      let maxSteps = 0;
      for (const i of ifaces) {
        const d = dispatchOf(byName, root, flag, i);
        assert.equal(d.target, target(i), i);
        maxSteps = Math.max(maxSteps, d.steps);
      }
      assert.ok(maxSteps <= 60, `worst case ${maxSteps} rules evaluated`);
    });
  }

  it('an unknown interface is dropped by a dispatch tree as by a linear one', () => {
    const eps = ifaces.map((i, n) => ep(i, `10.10.${n >> 8}.${n & 255}`));
    const table = renderFilterTable({ policies: [], endpoints: eps });
    // A new pod whose endpoint the agent does not know yet (or refused): same prefix as known ones.
    const unknown = `${ifaces[0]!.slice(0, 6)}fffffffff`;
    assert.ok(!ifaces.includes(unknown));
    const byName = new Map(table.chains.map((c) => [c.name, c]));
    assert.equal(dispatchOf(byName, chains.toWlDispatch, '-o', unknown).target, 'DROP');
    const p: Packet = {
      proto: 'tcp',
      iif: 'eth0',
      oif: unknown,
      src: '1.1.1.1',
      dst: '10.10.9.9',
      dport: 80,
    };
    assert.equal(forward(table, p, new Map()), 'DROP');
  });
});

// --- filter table shape and nat -------------------------------------------------------------

describe('filter table', () => {
  it('hooks FORWARD, INPUT and OUTPUT, and renders each active policy in both directions', () => {
    const p = ap('default/shop/p', [rule({ action: 'deny' })]);
    const t = renderFilterTable({
      policies: [p],
      endpoints: [ep('cali1', '10.10.0.5', tiers(['default', ['default/shop/p']]))],
    });
    assert.deepEqual(
      t.hooks.map((h) => [h.chain, h.rule.action]),
      [
        ['FORWARD', '-j cali-FORWARD'],
        ['INPUT', '-j cali-INPUT'],
        ['OUTPUT', '-j cali-OUTPUT'],
      ],
    );
    const names = t.chains.map((c) => c.name);
    for (const c of renderPolicyChains(p)) assert.ok(names.includes(c.name), c.name);
    assert.ok(names.includes('cali-tw-cali1') && names.includes('cali-fw-cali1'));
    for (const n of names) assert.ok(n.startsWith('cali-') && n.length <= MAX_CHAIN_NAME, n);
  });

  it('renders the same table whatever order its inputs come in', () => {
    const ps = [ap('default/b', [rule({ action: 'deny' })]), ap('default/a', [rule({ action: 'pass' })])];
    const es = [ep('cali2', '10.10.0.2'), ep('cali1', '10.10.0.1')];
    assert.deepEqual(
      renderFilterTable({ policies: ps, endpoints: es }),
      renderFilterTable({ policies: [...ps].reverse(), endpoints: [...es].reverse() }),
    );
  });
});

describe('nat table', () => {
  const nat = renderNatTable();
  const sets: IpSets = new Map([
    // What the ipsets manager holds: local natOutgoing pools in masq; every pool, remote ones too, in all-pools.
    ['cali40masq-ipam-pools', ['10.10.0.0/16']],
    ['cali40all-ipam-pools', ['10.10.0.0/16', '10.11.0.0/16', '10.20.0.0/16']],
  ]);
  const post = (src: string, dst: string) =>
    walk(nat, 'POSTROUTING', { proto: 'tcp', oif: 'eth0', src, dst, dport: 80 }, sets).verdict;

  it('masquerades the masq set except to the all-pools set', () => {
    assert.deepEqual(nat.hooks, [
      { chain: 'POSTROUTING', rule: { match: '', action: '-j cali-POSTROUTING' } },
    ]);
    const outgoing = nat.chains.find((c) => c.name === 'cali-nat-outgoing');
    assert.deepEqual(
      outgoing?.rules.map((r) => [r.match, r.action]),
      [
        [
          '-m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst',
          '-j MASQUERADE',
        ],
      ],
    );
    assert.equal(post('10.10.0.5', '8.8.8.8'), 'MASQUERADE');
    assert.equal(post('10.10.0.5', '10.20.0.7'), undefined, 'to a remote pool: source kept');
    assert.equal(post('10.10.0.5', '10.11.0.7'), undefined, 'to another local pool: source kept');
    assert.equal(post('10.11.0.5', '8.8.8.8'), undefined, 'a pool without natOutgoing');
    assert.equal(post('10.20.0.5', '8.8.8.8'), undefined, 'remote pools are never masqueraded here');
  });
});

// --- host endpoints -------------------------------------------------------------------------

describe('host endpoints', () => {
  const denyAll = ap(
    'default/deny-host',
    [rule({ action: 'deny', protocol: 'tcp' })],
    [rule({ action: 'deny', protocol: 'tcp' })],
  );
  const hep = (o: Partial<LocalHostEndpoint> = {}): LocalHostEndpoint => ({
    key: 'hostendpoint/a-node1-eth0' as LocalHostEndpoint['key'],
    interfaceName: 'eth0',
    profiles: [],
    ingress: [],
    egress: [],
    forwardIngress: [],
    forwardEgress: [],
    preDnatIngress: [],
    untrackedIngress: [],
    untrackedEgress: [],
    ...o,
  });
  const table = (h: LocalHostEndpoint) =>
    renderFilterTable({
      policies: [denyAll],
      profiles: [KNS],
      endpoints: [ep('cali1111111111a', '10.10.0.5')],
      hostEndpoints: [h],
    });
  const toHost = (dport: number, proto: Packet['proto'] = 'tcp'): Packet => ({
    proto,
    iif: 'eth0',
    src: '192.168.100.50',
    dst: '192.168.100.11',
    dport,
    local: true,
  });

  it('a host endpoint without policy or profile denies, but for the failsafe ports (SSH stays reachable)', () => {
    const t = table(hep());
    assert.equal(walk(t, 'INPUT', toHost(22)).verdict, 'ACCEPT', 'failsafe SSH');
    assert.equal(walk(t, 'INPUT', toHost(6443)).verdict, 'ACCEPT', 'failsafe kube-apiserver');
    assert.equal(walk(t, 'INPUT', toHost(8080)).verdict, 'DROP');
    assert.equal(
      walk(t, 'INPUT', { ...toHost(8080), iif: 'eth1' }).verdict,
      undefined,
      'another interface: untouched',
    );
    // Out of the host: DNS is failsafe, the rest needs policy.
    const out = (proto: Packet['proto'], dport: number): Packet => ({
      proto,
      oif: 'eth0',
      src: '192.168.100.11',
      dst: '192.168.100.50',
      dport,
    });
    assert.equal(walk(t, 'OUTPUT', out('udp', 53)).verdict, 'ACCEPT');
    assert.equal(walk(t, 'OUTPUT', out('tcp', 443)).verdict, 'DROP');
  });

  it('a deny policy on the host endpoint cannot lock out SSH; other ports follow the policy', () => {
    const t = table(
      hep({ ingress: tiers(['default', ['default/deny-host']]), profiles: ['kns.shop' as ProfileId] }),
    );
    assert.equal(walk(t, 'INPUT', toHost(22)).verdict, 'ACCEPT');
    assert.equal(walk(t, 'INPUT', toHost(80)).verdict, 'DROP');
    const names = t.chains.map((c) => c.name);
    for (const n of [
      'cali-fh-eth0',
      'cali-th-eth0',
      'cali-fhfw-eth0',
      'cali-thfw-eth0',
      'cali-from-host-endpoint',
      'cali-to-host-endpoint',
      'cali-failsafe-in',
      'cali-failsafe-out',
    ])
      assert.ok(names.includes(n), n);
  });

  it('forwarded traffic through a host endpoint is allowed unless an applyOnForward policy applies', () => {
    const fwd: Packet = {
      proto: 'tcp',
      iif: 'eth0',
      oif: 'eth1',
      src: '192.168.100.50',
      dst: '10.99.0.1',
      dport: 80,
    };
    assert.equal(walk(table(hep()), 'FORWARD', fwd).verdict, 'ACCEPT');
    const t = table(hep({ forwardIngress: tiers(['default', ['default/deny-host']]) }));
    assert.equal(walk(t, 'FORWARD', fwd).verdict, 'DROP');
    // To a workload: its own policy decides after the host endpoint's forward chain allowed it.
    assert.equal(
      walk(table(hep()), 'FORWARD', { ...fwd, oif: 'cali1111111111a', dst: '10.10.0.5' }).verdict,
      'ACCEPT',
    );
  });
});
