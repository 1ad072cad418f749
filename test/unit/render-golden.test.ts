// Golden test of the filter table: a varied set of feed resources (tiers, orders, actions, ports,
// named ports, nets, namespaced and global policies, local and remote endpoints) goes through the
// calculation graph and renderFilterTable, and the result, in iptables-save form with the ipsets it
// uses, must equal test/golden/filter-table.txt.
//
//   UPDATE_GOLDEN=1 node --import tsx --test test/unit/render-golden.test.ts   # (re)write the file
//
// Read the diff before accepting it: this file is what an operator will see in iptables-save.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CalculationGraph } from '../../agent/calc/graph.ts';
import type {
  ActivePolicy,
  ActiveProfile,
  DataplaneMessage,
  IpSetType,
  LocalEndpoint,
} from '../../agent/calc/messages.ts';
import { Sequencer } from '../../agent/calc/sequencer.ts';
import { ALL_VXLAN_NET_SET, ipsetName } from '../../agent/rules/names.ts';
import { renderFilterTable } from '../../agent/rules/render-tables.ts';
import type { Rule, Table } from '../../agent/rules/types.ts';
import type { Update } from '../../proto/service.ts';
import { namespace, networkSet, policy, serviceAccount, tier, wep } from '../helpers/feed-builders.ts';

const GOLDEN = fileURLToPath(new URL('../golden/filter-table.txt', import.meta.url));
const NODE = 'a-node1';

function resources(): Update[] {
  const b = { cluster: 'b' };
  return [
    namespace('shop', { team: 'web' }),
    namespace('data', { team: 'data' }),
    namespace('shop', { team: 'web' }, b),
    namespace('data', { team: 'data' }, b),
    serviceAccount('ops', 'monitor', { role: 'monitoring' }),
    // This node's endpoints.
    wep({ node: NODE, namespace: 'shop', pod: 'web-1', ips: ['10.10.0.5'], labels: { app: 'web' } }),
    wep({ node: NODE, namespace: 'shop', pod: 'api-1', ips: ['10.10.0.6'], labels: { app: 'api' } }),
    wep({
      node: NODE,
      namespace: 'data',
      pod: 'db-1',
      ips: ['10.10.0.7'],
      labels: { app: 'db' },
      ports: [{ name: 'metrics', port: 9090 }],
    }),
    // Elsewhere in cluster a, and in cluster b.
    wep({ node: 'a-node2', namespace: 'shop', pod: 'web-2', ips: ['10.10.1.5'], labels: { app: 'web' } }),
    wep({
      node: 'a-node2',
      namespace: 'ops',
      pod: 'prom-1',
      ips: ['10.10.1.9'],
      serviceAccount: 'monitor',
      labels: { app: 'prom' },
    }),
    wep({
      cluster: 'b',
      node: 'b-node1',
      namespace: 'shop',
      pod: 'web-3',
      ips: ['10.20.0.5'],
      labels: { app: 'web' },
    }),
    wep({
      cluster: 'b',
      node: 'b-node1',
      namespace: 'data',
      pod: 'db-2',
      ips: ['10.20.0.7'],
      labels: { app: 'db' },
      ports: [{ name: 'metrics', port: 9100 }],
    }),
    networkSet({
      name: 'partners',
      namespace: 'shop',
      nets: ['203.0.113.0/24', '198.51.100.0/24'],
      labels: { kind: 'partner' },
    }),

    // security tier (order 100, before default's 1,000,000), global: block bad nets, pass the rest on.
    tier('security', 100),
    // platform tier (order 50), Pass by default: its end hands on to the next tier. Its rule with
    // only a notSelector matches sources outside every cluster too (a negated set, as Felix).
    tier('platform', 50, 'Pass'),
    policy({
      name: 'quarantine',
      tier: 'platform',
      selector: "app == 'web'",
      types: ['Ingress'],
      ingress: [
        {
          action: 'Deny',
          source: { notSelector: 'has(app)' },
          protocol: 'TCP',
          destination: { ports: [23] },
        },
      ],
    }),
    policy({
      name: 'block-bad-nets',
      tier: 'security',
      order: 1,
      selector: 'all()',
      types: ['Ingress', 'Egress'],
      ingress: [{ action: 'Deny', source: { nets: ['10.66.0.0/16', '10.67.0.0/16'] } }, { action: 'Pass' }],
      egress: [{ action: 'Deny', destination: { nets: ['10.66.0.0/16'] } }, { action: 'Pass' }],
    }),
    // default tier, namespaced, ordered.
    policy({
      name: 'web-egress',
      namespace: 'shop',
      order: 100,
      selector: "app == 'web'",
      types: ['Egress'],
      egress: [
        { action: 'Allow', protocol: 'UDP', destination: { nets: ['10.96.0.10/32'], ports: [53] } },
        {
          action: 'Allow',
          protocol: 'TCP',
          destination: {
            namespaceSelector: "team == 'data'",
            selector: "app == 'db'",
            ports: [5432, [8000, 8100]],
          },
        },
        { action: 'Allow', protocol: 'TCP', destination: { selector: "kind == 'partner'", ports: [443] } },
        { action: 'Log', protocol: 'TCP' },
        { action: 'Deny' },
      ],
    }),
    policy({
      name: 'db-ingress',
      namespace: 'data',
      order: 10,
      selector: "app == 'db'",
      ingress: [
        {
          action: 'Allow',
          protocol: 'TCP',
          source: { namespaceSelector: 'all()', selector: "app == 'prom'" },
          destination: { ports: ['metrics'] },
        },
        {
          action: 'Allow',
          protocol: 'TCP',
          source: { namespaceSelector: "team == 'web'", selector: "app in {'web', 'api'}" },
          destination: { ports: [5432] },
        },
      ],
    }),
    policy({
      name: 'api-ports',
      namespace: 'shop',
      order: 20,
      selector: "app == 'api'",
      ingress: [
        {
          action: 'Allow',
          protocol: 'TCP',
          source: { selector: 'has(app)', notSelector: "app == 'db'" },
          destination: {
            ports: [80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, [1000, 1999], 8080, 8443],
          },
        },
        {
          action: 'Deny',
          protocol: 'TCP',
          source: { notNets: ['10.0.0.0/8'] },
          destination: { notPorts: [22] },
        },
      ],
    }),
    // default tier, global, no order: last.
    policy({
      name: 'allow-icmp-and-monitoring',
      selector: 'all()',
      ingress: [
        { action: 'Allow', protocol: 'ICMP', icmp: { type: 8, code: 0 } },
        { action: 'Allow', protocol: 'ICMP', notIcmp: { type: 5 } },
        { action: 'Allow', source: { serviceAccounts: { names: ['monitor'] } } },
      ],
    }),
    // shop's default deny (Kubernetes style): no rules, both directions.
    policy({ name: 'default-deny', namespace: 'shop', selector: 'all()', types: ['Ingress', 'Egress'] }),
    // Selects no endpoint of this node: inactive, not rendered.
    policy({ name: 'ghost', selector: "app == 'ghost'", ingress: [{ action: 'Deny' }] }),
  ];
}

interface State {
  policies: Map<string, ActivePolicy>;
  profiles: Map<string, ActiveProfile>;
  endpoints: Map<string, LocalEndpoint>;
  ipsets: Map<string, { type: IpSetType; members: Set<string> }>;
}

function compute(): State {
  const seq = new Sequencer();
  const g = new CalculationGraph({ nodeName: NODE, localCluster: 'a' }, seq);
  for (const u of resources()) g.onUpdate(u);
  assert.deepEqual(g.refused, []);
  const st: State = { policies: new Map(), profiles: new Map(), endpoints: new Map(), ipsets: new Map() };
  const apply = (m: DataplaneMessage) => {
    switch (m.kind) {
      case 'IPSetUpdate':
        st.ipsets.set(m.id, { type: m.type, members: new Set(m.members) });
        break;
      case 'IPSetDelta': {
        const s = st.ipsets.get(m.id);
        assert.ok(s);
        for (const x of m.added) s.members.add(x);
        for (const x of m.removed) s.members.delete(x);
        break;
      }
      case 'IPSetRemove':
        st.ipsets.delete(m.id);
        break;
      case 'ActivePolicyUpdate':
        st.policies.set(m.policy.key, m.policy);
        break;
      case 'ActivePolicyRemove':
        st.policies.delete(m.key);
        break;
      case 'ActiveProfileUpdate':
        st.profiles.set(m.profile.id, m.profile);
        break;
      case 'ActiveProfileRemove':
        st.profiles.delete(m.id);
        break;
      case 'EndpointUpdate':
        st.endpoints.set(m.endpoint.key, m.endpoint);
        break;
      case 'EndpointRemove':
        st.endpoints.delete(m.key);
        break;
      default:
        break;
    }
  };
  for (const m of seq.flush()) apply(m);
  return st;
}

function ruleLine(chain: string, r: Rule, op = '-A'): string {
  const parts = [op, chain];
  if (r.match) parts.push(r.match);
  if (r.comment !== undefined) parts.push(`-m comment --comment ${JSON.stringify(r.comment)}`);
  parts.push(r.action);
  return parts.join(' ');
}

/** iptables-save style, preceded by the ipsets the table uses, as `ipset list` would name them. */
function serialise(table: Table, st: State): string {
  const lines: string[] = ['# generated by test/unit/render-golden.test.ts (UPDATE_GOLDEN=1 to rewrite)', ''];
  const used = new Set<string>();
  for (const c of table.chains)
    for (const r of c.rules) for (const m of r.match.matchAll(/--match-set (\S+)/g)) used.add(m[1]!);
  const byName = new Map<string, { id: string; type: IpSetType; members: Set<string> }>(
    [...st.ipsets].map(([id, s]) => [ipsetName(id), { id, ...s }]),
  );
  for (const name of [...used].sort()) {
    if (name === ipsetName(ALL_VXLAN_NET_SET)) {
      lines.push(`# ipset ${name} hash:net (VTEP node addresses, filled by the dataplane)`);
      continue;
    }
    const s = byName.get(name);
    assert.ok(s, `the table uses ipset ${name}, which the graph never announced`);
    lines.push(`# ipset ${name} ${s.type} (${s.id}): ${[...s.members].sort().join(' ') || '(empty)'}`);
  }
  lines.push('', '*filter');
  for (const c of table.chains) lines.push(`:${c.name} - [0:0]`);
  for (const h of table.hooks) lines.push(ruleLine(h.chain, h.rule, '-I'));
  for (const c of table.chains) for (const r of c.rules) lines.push(ruleLine(c.name, r));
  lines.push('COMMIT', '');
  return lines.join('\n');
}

function firstDifference(a: string, b: string): string {
  const al = a.split('\n');
  const bl = b.split('\n');
  for (let i = 0; i < Math.max(al.length, bl.length); i++) {
    if (al[i] !== bl[i])
      return `line ${i + 1}:\n  golden: ${bl[i] ?? '(end of file)'}\n  actual: ${al[i] ?? '(end of output)'}`;
  }
  return '(none)';
}

describe('golden filter table', () => {
  it('renders the varied policy set exactly as test/golden/filter-table.txt', () => {
    const st = compute();
    const table = renderFilterTable({
      policies: st.policies.values(),
      profiles: st.profiles.values(),
      endpoints: st.endpoints.values(),
      vxlan: true,
    });
    const text = serialise(table, st);
    if (process.env.UPDATE_GOLDEN === '1') {
      mkdirSync(dirname(GOLDEN), { recursive: true });
      writeFileSync(GOLDEN, text);
      return;
    }
    assert.ok(
      existsSync(GOLDEN),
      `${GOLDEN} is missing: run UPDATE_GOLDEN=1 node --import tsx --test test/unit/render-golden.test.ts and review it`,
    );
    const want = readFileSync(GOLDEN, 'utf8');
    if (text !== want) {
      assert.fail(
        `the filter table differs from the golden file (first difference at ${firstDifference(text, want)})\n` +
          'If the change is intended, review it and rewrite the file with\n' +
          '  UPDATE_GOLDEN=1 node --import tsx --test test/unit/render-golden.test.ts',
      );
    }
  });

  it('the golden input exercises what it claims to', () => {
    const st = compute();
    // Inactive policies are not rendered; every active one is used by an endpoint of this node.
    assert.deepEqual([...st.policies.keys()].sort(), [
      'default/allow-icmp-and-monitoring',
      'default/data/db-ingress',
      'default/shop/api-ports',
      'default/shop/default-deny',
      'default/shop/web-egress',
      'platform/quarantine',
      'security/block-bad-nets',
    ]);
    assert.deepEqual([...st.profiles.keys()].sort(), [
      'kns.data',
      'kns.shop',
      'ksa.data.default',
      'ksa.shop.default',
    ]);
    const web = [...st.endpoints.values()].find((e) => e.key.includes('/web-1/'));
    assert.deepEqual(web?.egress, [
      { tier: 'security', policies: ['security/block-bad-nets'] },
      { tier: 'default', policies: ['default/shop/web-egress', 'default/shop/default-deny'] },
    ]);
    assert.deepEqual(web?.ingress, [
      { tier: 'platform', policies: ['platform/quarantine'], defaultAction: 'pass' },
      { tier: 'security', policies: ['security/block-bad-nets'] },
      { tier: 'default', policies: ['default/allow-icmp-and-monitoring', 'default/shop/default-deny'] },
    ]);
  });
});
