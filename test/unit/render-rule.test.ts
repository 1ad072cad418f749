// Kernel object names and the rendering of one policy rule into iptables rules: what an operator
// reads in `iptables-save` and `ipset list`.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { CompiledEntity, CompiledRule, IpSetId } from '../../agent/calc/messages.ts';
import {
  ALL_POOLS_SET,
  chainName,
  fromWorkloadChain,
  ipsetName,
  MASQ_POOLS_SET,
  MAX_CHAIN_NAME,
  MAX_IPSET_NAME,
  policyChain,
  toWorkloadChain,
} from '../../agent/rules/names.ts';
import { logPrefix, renderRule, ruleMatches } from '../../agent/rules/render-rule.ts';
import { renderPolicyChains } from '../../agent/rules/render-tables.ts';
import type { Rule } from '../../agent/rules/types.ts';
import type { Cidr } from '../../model/net.ts';
import { parseSelector } from '../../model/selector/index.ts';
import { compilePolicy, PolicyError } from '../../policy/compiler.ts';
import { type PolicyOpts, policy } from '../helpers/feed-builders.ts';

const ACCEPT_MARK = '-j MARK --set-xmark 0x10000/0x10000';
const ACCEPT_RETURN: Rule = { match: '-m mark --mark 0x10000/0x10000', action: '-j RETURN' };
const PASS_MARK = '-j MARK --set-xmark 0x20000/0x20000';
const PASS_RETURN: Rule = { match: '-m mark --mark 0x20000/0x20000', action: '-j RETURN' };

const entity = (e: Partial<CompiledEntity> = {}): CompiledEntity => ({
  ipSets: [],
  notIpSets: [],
  ports: [],
  notPorts: [],
  namedPortIpSets: [],
  ...e,
});
const ports = (...ps: (number | [number, number])[]) =>
  ps.map((p) => (typeof p === 'number' ? { first: p, last: p } : { first: p[0], last: p[1] }));
const rule = (r: Partial<CompiledRule> & Pick<CompiledRule, 'action'>): CompiledRule => ({
  src: entity(),
  dst: entity(),
  ...r,
});

describe('names', () => {
  it('chain names keep a short, safe id as it is', () => {
    assert.equal(toWorkloadChain('cali1a2b3c4d5e6'), 'cali-tw-cali1a2b3c4d5e6');
    assert.equal(fromWorkloadChain('cali1a2b3c4d5e6'), 'cali-fw-cali1a2b3c4d5e6');
    const fits = 'x'.repeat(MAX_CHAIN_NAME - 'cali-pi-'.length);
    assert.equal(chainName('cali-pi-', fits), `cali-pi-${fits}`);
  });

  it('chain names hash an id that is too long or unsafe, to at most 28 characters, with `_`', () => {
    const tooLong = 'x'.repeat(MAX_CHAIN_NAME - 'cali-pi-'.length + 1);
    for (const id of [tooLong, 'default/shop/frontend', 'a b', 'x!']) {
      const n = chainName('cali-pi-', id);
      assert.ok(n.length <= MAX_CHAIN_NAME, `${n} too long`);
      assert.ok(n.startsWith('cali-pi-_'), n);
      assert.match(n, /^[A-Za-z0-9._-]+$/);
    }
    // Policy keys always carry '/': their chains are always hashed, stable, and distinct.
    const a = policyChain('in', 'default/shop/frontend');
    assert.equal(a, policyChain('in', 'default/shop/frontend'));
    assert.notEqual(a, policyChain('in', 'default/shop/frontend2'));
    assert.notEqual(a, policyChain('out', 'default/shop/frontend'));
    assert.ok(a.startsWith('cali-pi-_'));
    assert.ok(policyChain('out', 'default/x').startsWith('cali-po-_'));
  });

  it('any id gives a chain name of at most 28 safe characters; distinct ids give distinct names (property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), fc.string({ maxLength: 80 }), (a, b) => {
        for (const id of [a, b]) {
          const n = chainName('cali-pi-', id);
          assert.ok(n.length <= MAX_CHAIN_NAME && n.startsWith('cali-pi-'), n);
          assert.match(n, /^[A-Za-z0-9._-]+$/);
        }
        if (a !== b) assert.notEqual(chainName('cali-pi-', a), chainName('cali-pi-', b));
      }),
      { numRuns: 300 },
    );
  });

  it('ipset names are cali40 + id, at most 31 characters', () => {
    assert.equal(ipsetName(ALL_POOLS_SET), 'cali40all-ipam-pools');
    assert.equal(ipsetName(MASQ_POOLS_SET), 'cali40masq-ipam-pools');
    const sel = parseSelector("app == 'db'");
    const n = ipsetName(sel.id);
    assert.ok(n.length <= MAX_IPSET_NAME, n);
    assert.ok(n.startsWith('cali40s:'), n);
    assert.equal(n, `cali40${sel.id}`.slice(0, MAX_IPSET_NAME));
    assert.notEqual(ipsetName(parseSelector("app == 'web'").id), n);
  });
});

describe('rendering one rule', () => {
  it('allow renders the accept MARK + RETURN pair', () => {
    const out = renderRule(
      rule({ action: 'allow', protocol: 'tcp', dst: entity({ ports: ports(80) }) }),
      'shop/p',
      'shop/p ingress[0] allow',
    );
    assert.deepEqual(out, [
      { match: '-p tcp -m multiport --dports 80', action: ACCEPT_MARK, comment: 'shop/p ingress[0] allow' },
      ACCEPT_RETURN,
    ]);
  });

  it('deny renders DROP', () => {
    const out = renderRule(rule({ action: 'deny', src: entity({ net: '10.0.0.0/8' as Cidr }) }), 'p', 'c');
    assert.deepEqual(out, [{ match: '-s 10.0.0.0/8', action: '-j DROP', comment: 'c' }]);
  });

  it('pass renders the pass MARK + RETURN pair', () => {
    assert.deepEqual(renderRule(rule({ action: 'pass' }), 'p', 'c'), [
      { match: '', action: PASS_MARK, comment: 'c' },
      PASS_RETURN,
    ]);
  });

  it('log renders LOG with a prefix naming the policy, at most 29 characters', () => {
    const [r] = renderRule(rule({ action: 'log', protocol: 'udp' }), 'shop/dns', 'c');
    assert.deepEqual(r, {
      match: '-p udp',
      action: '-j LOG --log-prefix "calico-packet shop/dns " --log-level 5',
      comment: 'c',
    });
    const long = 'a-very-long-namespace/a-policy-with-a-long-name';
    const p = logPrefix(long);
    assert.ok(p.length <= 29, `${JSON.stringify(p)} is ${p.length} characters`);
    assert.ok(p.startsWith('calico-packet a-very-long'), p);
    assert.ok(!logPrefix('x"y').includes('"'), 'quotes cannot break the rule');
  });

  it('multiport takes at most 15 ports (a range counts two) per rule; more split into more rules', () => {
    const many = Array.from({ length: 20 }, (_, i) => 1000 + i);
    const out = renderRule(
      rule({ action: 'deny', protocol: 'tcp', dst: entity({ ports: ports(...many) }) }),
      'p',
      'c',
    );
    assert.deepEqual(
      out.map((r) => r.match),
      [
        `-p tcp -m multiport --dports ${many.slice(0, 15).join(',')}`,
        `-p tcp -m multiport --dports ${many.slice(15).join(',')}`,
      ],
    );
    const ranges = ruleMatches(
      rule({
        action: 'allow',
        protocol: 'udp',
        src: entity({
          ports: ports(...Array.from({ length: 8 }, (_, i): [number, number] => [i * 10 + 1, i * 10 + 5])),
        }),
      }),
    );
    assert.equal(ranges.length, 2);
    assert.equal(ranges[0], '-p udp -m multiport --sports 1:5,11:15,21:25,31:35,41:45,51:55,61:65');
    assert.equal(ranges[1], '-p udp -m multiport --sports 71:75');
    // Each alternative of an allow rule gets its own MARK + RETURN pair.
    const allow = renderRule(
      rule({ action: 'allow', protocol: 'tcp', dst: entity({ ports: ports(...many) }) }),
      'p',
      'c',
    );
    assert.deepEqual(
      allow.map((r) => r.action),
      [ACCEPT_MARK, '-j RETURN', ACCEPT_MARK, '-j RETURN'],
    );
  });

  it('negated ports are AND-ed (each chunk its own match in the same rule)', () => {
    const many = Array.from({ length: 16 }, (_, i) => 2000 + i);
    const [m] = ruleMatches(
      rule({ action: 'allow', protocol: 'tcp', dst: entity({ notPorts: ports(...many) }) }),
    );
    assert.equal(
      m,
      `-p tcp -m multiport ! --dports ${many.slice(0, 15).join(',')} -m multiport ! --dports ${many[15]}`,
    );
  });

  it('a named port renders `--match-set X dst,dst`', () => {
    const id = 'p:namedport' as IpSetId;
    const [m] = ruleMatches(
      rule({ action: 'allow', protocol: 'tcp', dst: entity({ namedPortIpSets: [id] }) }),
    );
    assert.equal(m, `-p tcp -m set --match-set ${ipsetName(id)} dst,dst`);
  });

  it('nets, selector sets and their negations render per side', () => {
    const [m] = ruleMatches(
      rule({
        action: 'deny',
        protocol: 'tcp',
        src: entity({ ipSets: ['s:a' as IpSetId], notNet: '10.1.0.0/16' as Cidr }),
        dst: entity({ net: '10.2.0.0/16' as Cidr, notIpSets: ['n:b' as IpSetId] }),
      }),
    );
    assert.equal(
      m,
      '-p tcp ! -s 10.1.0.0/16 -m set --match-set cali40s:a src -d 10.2.0.0/16 -m set ! --match-set cali40n:b dst',
    );
  });

  it('ICMP type/code and protocol negation', () => {
    assert.deepEqual(ruleMatches(rule({ action: 'allow', protocol: 'icmp', icmp: { type: 8, code: 0 } })), [
      '-p icmp -m icmp --icmp-type 8/0',
    ]);
    assert.deepEqual(ruleMatches(rule({ action: 'allow', protocol: 'icmp', notIcmp: { type: 5 } })), [
      '-p icmp -m icmp ! --icmp-type 5',
    ]);
    assert.deepEqual(ruleMatches(rule({ action: 'deny', notProtocol: 'udp' })), ['! -p udp']);
  });

  it('a rule that can never match renders nothing', () => {
    assert.deepEqual(renderRule(rule({ action: 'deny', matchesNothing: true }), 'p', 'c'), []);
    assert.deepEqual(
      renderRule(rule({ action: 'allow', src: entity({ matchesNothing: true }) }), 'p', 'c'),
      [],
    );
  });
});

/** Compile a feed policy and render its chains, as the agent does. */
function rendered(o: PolicyOpts): { inbound: Rule[]; outbound: Rule[] } {
  const u = policy(o);
  assert.ok(u.body.case === 'policy');
  const p = compilePolicy(u.body.value);
  const [inChain, outChain] = renderPolicyChains({
    key: p.key,
    displayName: p.displayName,
    inbound: p.inbound,
    outbound: p.outbound,
  });
  return { inbound: inChain!.rules, outbound: outChain!.rules };
}

const marking = (rules: Rule[]) => rules.filter((r) => r.action === ACCEPT_MARK);

describe('rendering feed policies (compile + render)', () => {
  it('a destination selector with numeric ports: every rendered rule matches the selected set', () => {
    const { outbound } = rendered({
      name: 'to-db',
      namespace: 'shop',
      types: ['Egress'],
      egress: [
        { action: 'Allow', protocol: 'TCP', destination: { selector: "app == 'db'", ports: [5432, 5433] } },
      ],
    });
    assert.equal(marking(outbound).length, 1);
    assert.match(
      marking(outbound)[0]!.match,
      /^-p tcp -m set --match-set cali40s:\S+ dst -m multiport --dports 5432,5433$/,
    );
  });

  it('a named port alone renders its hash:ip,port set', () => {
    const { outbound } = rendered({
      name: 'to-metrics',
      namespace: 'shop',
      types: ['Egress'],
      egress: [
        { action: 'Allow', protocol: 'TCP', destination: { selector: "app == 'db'", ports: ['metrics'] } },
      ],
    });
    assert.equal(marking(outbound).length, 1);
    assert.match(marking(outbound)[0]!.match, /^-p tcp -m set --match-set cali40p:\S+ dst,dst$/);
  });

  it('ports without a port protocol are refused with the field', () => {
    assert.throws(
      () => rendered({ name: 'x', egress: [{ action: 'Allow', destination: { ports: [80] } }] }),
      (e) => e instanceof PolicyError && /spec\.egress\[0\]\.destination\.ports/.test(e.message),
    );
  });

  it('numeric and named ports in one rule: the numeric ports still only reach the selected endpoints', () => {
    const { outbound } = rendered({
      name: 'to-db',
      namespace: 'shop',
      types: ['Egress'],
      egress: [
        {
          action: 'Allow',
          protocol: 'TCP',
          destination: { selector: "app == 'db'", ports: [5432, 'metrics'] },
        },
      ],
    });
    // Today the 5432 alternative renders as `-p tcp -m multiport --dports 5432`: any destination.
    for (const r of marking(outbound))
      assert.match(r.match, /--match-set \S+ dst/, `allows beyond app == 'db': ${r.match}`);
  });

  it('a named port in notPorts is not silently dropped', () => {
    let out: Rule[];
    try {
      out = rendered({
        name: 'not-metrics',
        types: ['Egress'],
        egress: [{ action: 'Allow', protocol: 'TCP', destination: { notPorts: ['metrics'] } }],
      }).outbound;
    } catch (e) {
      assert.ok(e instanceof PolicyError, String(e));
      return; // refusing it is fine too
    }
    // Today it renders `-p tcp`: allow all TCP, the metrics port included.
    for (const r of marking(out)) assert.match(r.match, /! --match-set \S+ dst,dst/, r.match);
  });
});
