// The whole filter and nat tables fedmesh wants, from the active policies, the local endpoints and
// the pools. Pure: the same state always renders the same chains (golden-testable), and the driver
// diffs the result against the kernel.
import type { ActivePolicy, LocalEndpoint, PolicyKey, TierPolicies } from '../calc/messages.ts';
import {
  ALL_POOLS_SET,
  chainName,
  chains,
  fromWorkloadChain,
  ipsetName,
  MASQ_POOLS_SET,
  policyChain,
  toWorkloadChain,
} from './names.ts';
import { hex, MARK_ACCEPT, MARK_MASK, MARK_PASS, renderRule } from './render-rule.ts';
import type { Chain, Rule, Table } from './types.ts';

/**
 * A policy's chains by the policy object: the dataplane re-renders the whole table on each change
 * and checks each new policy renders first, and an unchanged policy is the same object (the graph
 * replaces it on change), so each is rendered once. Callers get fresh rule arrays to extend.
 */
const policyChainsMemo = new WeakMap<ActivePolicy, Chain[]>();

export function renderPolicyChains(p: ActivePolicy): Chain[] {
  let chains = policyChainsMemo.get(p);
  if (chains === undefined) {
    chains = renderPolicyChainsOnce(p);
    policyChainsMemo.set(p, chains);
  }
  return chains.map((c) => ({ ...c, rules: [...c.rules] }));
}

function renderPolicyChainsOnce(p: ActivePolicy): Chain[] {
  const dirChain = (dir: 'in' | 'out') => {
    const rules = dir === 'in' ? p.inbound : p.outbound;
    const out: Rule[] = [];
    rules.forEach((r, i) => {
      const what = `${p.displayName} ${dir === 'in' ? 'ingress' : 'egress'}[${i}] ${r.action}`;
      out.push(...renderRule(r, p.displayName, what));
    });
    return { name: policyChain(dir, p.key), rules: out };
  };
  return [dirChain('in'), dirChain('out')];
}

const clearMarks: Rule = { match: '', action: `-j MARK --set-xmark 0x0/${hex(MARK_MASK)}` };

/** Felix's per-endpoint chain: conntrack first, then each tier's policies in order, end-of-tier drop. */
function endpointChain(name: string, dir: 'in' | 'out', tiers: readonly TierPolicies[]): Chain {
  const rules: Rule[] = [
    { match: '-m conntrack --ctstate RELATED,ESTABLISHED', action: '-j ACCEPT' },
    { match: '-m conntrack --ctstate INVALID', action: '-j DROP' },
    clearMarks,
  ];
  tiers.forEach((t, i) => {
    if (i > 0)
      rules.push({
        match: '',
        action: `-j MARK --set-xmark 0x0/${hex(MARK_PASS)}`,
        comment: `Start of tier ${t.tier}`,
      });
    for (const pk of t.policies) {
      rules.push({
        match: `-m mark --mark 0x0/${hex(MARK_PASS)}`,
        action: `-j ${policyChain(dir, pk)}`,
        comment: `policy ${pk}`,
      });
      rules.push({
        match: `-m mark --mark ${hex(MARK_ACCEPT)}/${hex(MARK_ACCEPT)}`,
        action: '-j RETURN',
        comment: 'Return if policy accepted',
      });
    }
    rules.push({
      match: `-m mark --mark 0x0/${hex(MARK_PASS)}`,
      action: '-j DROP',
      comment: `Drop if no policies passed packet (tier ${t.tier})`,
    });
  });
  // No tier: no policy selects this endpoint in this direction, so it stays open (Kubernetes default).
  return { name, rules };
}

export function renderEndpointChains(ep: LocalEndpoint): Chain[] {
  return [
    endpointChain(toWorkloadChain(ep.interfaceName), 'in', ep.ingress),
    endpointChain(fromWorkloadChain(ep.interfaceName), 'out', ep.egress),
  ];
}

/** Linear dispatch is fine for a handful of endpoints; beyond this, split by interface-name prefix. */
const DISPATCH_FANOUT = 16;

/**
 * Dispatch from interface to endpoint chain as a tree keyed by interface-name prefix (Felix's
 * shape), so 1,000 endpoints cost a few short scans instead of one 1,000-rule scan.
 */
export function renderDispatch(
  root: string,
  flag: '-i' | '-o',
  ifaces: readonly string[],
  target: (iface: string) => string,
): Chain[] {
  const out: Chain[] = [];
  const build = (name: string, names: string[], prefixLen: number): void => {
    const rules: Rule[] = [];
    if (names.length <= DISPATCH_FANOUT) {
      for (const n of names) rules.push({ match: `${flag} ${n}`, action: `-g ${target(n)}` });
    } else {
      const groups = new Map<string, string[]>();
      for (const n of names) {
        const p = n.slice(0, prefixLen + 1);
        groups.get(p)?.push(n) ?? groups.set(p, [n]);
      }
      for (const [p, members] of [...groups].sort(([a], [b]) => (a < b ? -1 : 1))) {
        if (members.length === 1 && members[0] === p) {
          rules.push({ match: `${flag} ${p}`, action: `-g ${target(p)}` });
          continue;
        }
        const child = chainName(`${root}-`, p.slice(prefixLen > 4 ? 4 : 0));
        build(child, members, prefixLen + 1);
        // An exact-length name equal to the prefix is dispatched by the child chain too.
        rules.push({ match: `${flag} ${p}+`, action: `-g ${child}` });
      }
    }
    // Every chain of the tree ends in a drop: an unknown cali* interface must never fall through
    // to cali-FORWARD's accept.
    rules.push({ match: '', action: '-j DROP', comment: 'Unknown interface' });
    out.push({ name, rules });
  };
  const sorted = [...new Set(ifaces)].sort();
  const common = commonPrefixLength(sorted);
  build(root, sorted, common);
  return out;
}

function commonPrefixLength(names: readonly string[]): number {
  if (names.length < 2) return 0;
  const first = names[0]!;
  const last = names[names.length - 1]!;
  let i = 0;
  while (i < first.length && first[i] === last[i]) i++;
  return i;
}

export interface FilterInput {
  policies: Iterable<ActivePolicy>;
  endpoints: Iterable<LocalEndpoint>;
}

export function renderFilterTable(input: FilterInput): Table {
  const eps = [...input.endpoints].sort((a, b) => (a.interfaceName < b.interfaceName ? -1 : 1));
  const ifaces = eps.map((e) => e.interfaceName);
  const tableChains: Chain[] = [
    {
      name: chains.forward,
      rules: [
        { match: '-i cali+', action: `-j ${chains.fromWlDispatch}`, comment: 'from workload: egress policy' },
        { match: '-o cali+', action: `-j ${chains.toWlDispatch}`, comment: 'to workload: ingress policy' },
        { match: '-i cali+', action: '-j ACCEPT', comment: 'policy allowed the workload traffic' },
        { match: '-o cali+', action: '-j ACCEPT', comment: 'policy allowed the workload traffic' },
      ],
    },
    { name: chains.input, rules: [{ match: '-i cali+', action: `-g ${chains.wlToHost}` }] },
    {
      name: chains.wlToHost,
      rules: [
        { match: '', action: `-j ${chains.fromWlDispatch}`, comment: 'workload to host: egress policy' },
        { match: '', action: '-j ACCEPT', comment: 'DefaultEndpointToHostAction ACCEPT' },
      ],
    },
    {
      name: chains.output,
      rules: [{ match: '-o cali+', action: '-j RETURN', comment: 'host to local workloads is allowed' }],
    },
    ...renderDispatch(chains.toWlDispatch, '-o', ifaces, toWorkloadChain),
    ...renderDispatch(chains.fromWlDispatch, '-i', ifaces, fromWorkloadChain),
  ];
  for (const ep of eps) tableChains.push(...renderEndpointChains(ep));
  const policies = [...input.policies].sort((a, b) => (a.key < b.key ? -1 : 1));
  for (const p of policies) tableChains.push(...renderPolicyChains(p));
  return {
    chains: tableChains,
    hooks: [
      { chain: 'FORWARD', rule: { match: '', action: `-j ${chains.forward}` } },
      { chain: 'INPUT', rule: { match: '', action: `-j ${chains.input}` } },
      { chain: 'OUTPUT', rule: { match: '', action: `-j ${chains.output}` } },
    ],
  };
}

/**
 * NAT outgoing: masquerade traffic from natOutgoing pools unless it goes to any pool, local or
 * remote (remote pools are in the all-pools set only), so a remote pod sees the real source IP.
 */
export function renderNatTable(): Table {
  return {
    chains: [
      { name: chains.postrouting, rules: [{ match: '', action: `-j ${chains.natOutgoing}` }] },
      {
        name: chains.natOutgoing,
        rules: [
          {
            match: `-m set --match-set ${ipsetName(MASQ_POOLS_SET)} src -m set ! --match-set ${ipsetName(ALL_POOLS_SET)} dst`,
            action: '-j MASQUERADE',
            comment: 'natOutgoing pools, except to any pool (local or remote)',
          },
        ],
      },
    ],
    hooks: [{ chain: 'POSTROUTING', rule: { match: '', action: `-j ${chains.postrouting}` } }],
  };
}

export type { PolicyKey };
