// nets / notNets from selector to kernel syntax: iptables takes one -s and one -d per rule,
// negated or not, so an ipBlock with except (a net plus notNets on one side) must put the
// exceptions into a set — the issue-6 policy rendered `-d 0.0.0.0/4 ! -d 10.88.2.11/32`, which
// both iptables backends refuse.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ruleMatches } from '../../agent/rules/render-rule.ts';
import { compilePolicy } from '../../policy/compiler.ts';
import { policy } from '../helpers/feed-builders.ts';

function compiledRule(destination: { nets?: string[]; notNets?: string[] }) {
  const u = policy({ name: 'p', egress: [{ action: 'Allow', destination }], types: ['Egress'] });
  assert.equal(u.body.case, 'policy');
  const c = compilePolicy(u.body.value);
  return { rule: c.outbound[0]!, matchers: new Map(c.matchers.map((m) => [m.id, m])) };
}

const flags = (match: string, flag: string) => match.split(' ').filter((t) => t === flag).length;

describe('nets and notNets render to rules iptables accepts', () => {
  it('an ipBlock with one except: the block inline, the exception a set', () => {
    const { rule, matchers } = compiledRule({ nets: ['0.0.0.0/4'], notNets: ['10.88.2.11/32'] });
    const [match, ...more] = ruleMatches(rule);
    assert.equal(more.length, 0);
    assert.equal(flags(match!, '-d'), 1, match);
    assert.match(match!, /^-d 0\.0\.0\.0\/4 -m set ! --match-set cali40n:\S+ dst$/);
    const set = matchers.get(rule.dst.notIpSets[0]!);
    assert.deepEqual(set?.staticMembers, ['10.88.2.11/32']);
  });

  it('every combination of counts keeps at most one -s/-d per rule', () => {
    const lists = [[], ['10.0.0.0/8'], ['10.0.0.0/8', '192.168.0.0/16']];
    const excepts = [[], ['10.1.0.0/16'], ['10.1.0.0/16', '10.2.0.0/16']];
    for (const nets of lists)
      for (const notNets of excepts) {
        const { rule } = compiledRule({ nets, notNets });
        for (const m of ruleMatches(rule)) assert.ok(flags(m, '-d') <= 1, `${nets}/${notNets}: ${m}`);
      }
  });

  it('a catch-all: in nets it admits everything (no set: hash:net refuses /0); in notNets nothing', () => {
    const any = compiledRule({ nets: ['0.0.0.0/0', '10.0.0.0/8'] });
    assert.deepEqual(ruleMatches(any.rule), ['']);
    const none = compiledRule({ nets: ['10.0.0.0/8'], notNets: ['0.0.0.0/0'] });
    assert.deepEqual(ruleMatches(none.rule), []);
  });

  it('protocol with notProtocol: one -p (iptables refuses two); the same protocol matches nothing', () => {
    const compiled = (notProtocol: string) => {
      const u = policy({ name: 'p', ingress: [{ action: 'Allow', protocol: 'UDP', notProtocol }] });
      assert.equal(u.body.case, 'policy');
      return compilePolicy(u.body.value).inbound[0]!;
    };
    assert.deepEqual(ruleMatches(compiled('ICMP')), ['-p udp']);
    assert.deepEqual(ruleMatches(compiled('17')), []);
  });
});
