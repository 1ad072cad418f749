// global() as Calico has it: true wherever it stands (Calico's GlobalNode); "non-namespaced only"
// as a rule's namespaceSelector, where it must stand alone; refused in a policy's selector and in
// a rule's selector (the CRDs' CEL rules and validateEntityRule in Calico's validator).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { CalculationGraph } from '../../agent/calc/graph.ts';
import { compilePolicy, PolicyError } from '../../policy/compiler.ts';
import { HostEndpointSchema, ResourceKind, UpdateSchema } from '../../proto/service.ts';
import { networkSet, type PolicyOpts, policy, type RuleInit, wep } from '../helpers/feed-builders.ts';
import { ipsetCollector } from '../helpers/ipset-sink.ts';

function compile(o: PolicyOpts) {
  const u = policy(o);
  assert.equal(u.body.case, 'policy');
  if (u.body.case !== 'policy') throw new Error('unreachable');
  return compilePolicy(u.body.value);
}

function refusal(o: PolicyOpts): PolicyError {
  try {
    compile(o);
  } catch (e) {
    if (e instanceof PolicyError) return e;
    throw e;
  }
  assert.fail('compiled');
}

describe('where global() may stand', () => {
  it('refused in a policy selector', () => {
    const e = refusal({ name: 'p', selector: "global() && app == 'x'" });
    assert.equal(e.field, 'spec.selector');
    assert.match(e.reason, /global\(\) can only be used in an entity rule namespaceSelector/);
  });
  it("refused in a rule's selector, naming the field", () => {
    const e = refusal({
      name: 'p',
      namespace: 'shop',
      ingress: [{ action: 'Allow', source: { selector: '!global()' } }],
    });
    assert.equal(e.field, 'spec.ingress[0].source.selector');
    assert.match(e.reason, /only be used in an entity rule namespaceSelector/);
  });
  it('refused in a namespaceSelector unless alone', () => {
    const e = refusal({
      name: 'p',
      egress: [{ action: 'Allow', destination: { namespaceSelector: "global() || team == 'x'" } }],
    });
    assert.equal(e.field, 'spec.egress[0].destination.namespaceSelector');
    assert.match(e.reason, /global\(\) alone/);
  });
  it('accepted alone in a namespaceSelector, and where it is simply true', () => {
    compile({
      name: 'p',
      ingress: [
        { action: 'Allow', source: { namespaceSelector: 'global()', selector: "role == 'x'" } },
        { action: 'Deny', source: { notSelector: 'global()' } },
        { action: 'Allow', source: { serviceAccounts: { selector: "global() && team == 'x'" } } },
      ],
    });
  });
});

function hostEndpoint(name: string, ip: string, labels: Record<string, string>) {
  return create(UpdateSchema, {
    key: `hostendpoint/${name}`,
    cluster: 'a',
    kind: ResourceKind.HOST_ENDPOINT,
    body: {
      case: 'hostEndpoint',
      value: create(HostEndpointSchema, {
        node: 'a-node9',
        name,
        expectedIpv4s: [ip],
        labels: { ...labels, 'fedmesh.io/cluster': 'a' },
      }),
    },
  });
}

/** The members of every non-empty ipset a single-rule policy compiles to. */
function setsFor(source: RuleInit): string[][] {
  const { sink, sets } = ipsetCollector();
  const g = new CalculationGraph({ nodeName: 'a-node1', localCluster: 'a' }, sink);
  g.onUpdate(
    wep({ node: 'a-node1', namespace: 'shop', pod: 'db', labels: { app: 'db' }, ips: ['10.10.0.5'] }),
  );
  g.onUpdate(
    wep({ node: 'a-node1', namespace: 'shop', pod: 'mon', labels: { role: 'mon' }, ips: ['10.10.0.6'] }),
  );
  g.onUpdate(hostEndpoint('h1', '192.168.1.10', { role: 'mon' }));
  g.onUpdate(networkSet({ name: 'g1', nets: ['203.0.113.0/24'], labels: { role: 'mon' } }));
  g.onUpdate(policy({ name: 'p', selector: "app == 'db'", ingress: [source] }));
  return [...sets.values()].filter((s) => s.size > 0).map((m) => [...m].sort());
}

/** The members of the one ipset a single-rule policy's source entity compiles to. */
function membersFor(source: RuleInit): string[] {
  return setsFor(source)[0] ?? [];
}

describe('what global() means', () => {
  it('namespaceSelector global() selects the non-namespaced: host endpoints and global network sets', () => {
    assert.deepEqual(
      membersFor({ action: 'Allow', source: { namespaceSelector: 'global()', selector: "role == 'mon'" } }),
      ['192.168.1.10/32', '203.0.113.0/24'],
    );
  });
  it('namespaceSelector all() selects the namespaced ones only', () => {
    assert.deepEqual(
      membersFor({ action: 'Allow', source: { namespaceSelector: 'all()', selector: "role == 'mon'" } }),
      ['10.10.0.6/32'],
    );
  });
  it('a notSelector of global() excludes everything (global() is true)', () => {
    // Felix renders a notSelector as its own negated set: here one that holds every member.
    const sets = setsFor({ action: 'Allow', source: { selector: "role == 'mon'", notSelector: 'global()' } });
    assert.ok(
      sets.some((m) =>
        ['10.10.0.5/32', '10.10.0.6/32', '192.168.1.10/32', '203.0.113.0/24'].every((x) => m.includes(x)),
      ),
      JSON.stringify(sets),
    );
  });
});
