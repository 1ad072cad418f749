// The whole filter and nat tables fedmesh wants, from the active policies, the local endpoints and
// the pools. Pure: the same state always renders the same chains (golden-testable), and the driver
// diffs the result against the kernel.
import type {
  ActivePolicy,
  ActiveProfile,
  LocalEndpoint,
  LocalHostEndpoint,
  PolicyKey,
  ProfileId,
  TierPolicies,
} from '../calc/messages.ts';
import {
  ALL_POOLS_SET,
  ALL_VXLAN_NET_SET,
  chainName,
  chains,
  fromHostChain,
  fromHostForwardChain,
  fromWorkloadChain,
  ipsetName,
  MASQ_POOLS_SET,
  policyChain,
  profileChain,
  toHostChain,
  toHostForwardChain,
  toWorkloadChain,
  VXLAN_PORT,
} from './names.ts';
import { hex, MARK_ACCEPT, MARK_MASK, MARK_PASS, renderRule } from './render-rule.ts';
import type { Chain, Rule, Table } from './types.ts';

/**
 * A policy's chains by the policy object: the dataplane re-renders the whole table on each change
 * and checks each new policy renders first, and an unchanged policy is the same object (the graph
 * replaces it on change), so each is rendered once. Callers get fresh rule arrays to extend.
 */
export const renderPolicyChains = memoisedChains((p: ActivePolicy) => renderPolicyChainsOnce(p));

/** `render` once per object (a WeakMap); each call gets fresh chain and rule arrays to extend. */
function memoisedChains<K extends object>(render: (key: K) => Chain[]): (key: K) => Chain[] {
  const memo = new WeakMap<K, Chain[]>();
  return (key) => {
    let chains = memo.get(key);
    if (chains === undefined) {
      chains = render(key);
      memo.set(key, chains);
    }
    return chains.map((c) => ({ ...c, rules: [...c.rules] }));
  };
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

export function renderProfileChains(p: ActiveProfile): Chain[] {
  const dirChain = (dir: 'in' | 'out') => {
    const rules = dir === 'in' ? p.inbound : p.outbound;
    const out: Rule[] = [];
    rules.forEach((r, i) => {
      const what = `profile ${p.id} ${dir === 'in' ? 'ingress' : 'egress'}[${i}] ${r.action}`;
      out.push(...renderRule(r, p.id, what));
    });
    return { name: profileChain(dir, p.id), rules: out };
  };
  return [dirChain('in'), dirChain('out')];
}

const clearMarks: Rule = { match: '', action: `-j MARK --set-xmark 0x0/${hex(MARK_MASK)}` };
const passClear = `-m mark --mark 0x0/${hex(MARK_PASS)}`;
const acceptSet = `-m mark --mark ${hex(MARK_ACCEPT)}/${hex(MARK_ACCEPT)}`;
const setAccept = `-j MARK --set-xmark ${hex(MARK_ACCEPT)}/${hex(MARK_ACCEPT)}`;

/** Encapsulated packets leaving a workload could carry traffic past its egress policy: dropped. */
const encapGuards: Rule[] = [
  {
    match: `-p udp -m multiport --dports ${VXLAN_PORT}`,
    action: '-j DROP',
    comment: 'DROP VXLAN encapped packets originating in workloads',
  },
  { match: '-p 4', action: '-j DROP', comment: 'DROP IPinIP encapped packets originating in workloads' },
];

/** What kind of endpoint chain: Felix's chainTypeNormal/chainTypeForward, and its extras. */
interface ChainOpts {
  /** Drop VXLAN and IP-in-IP (traffic leaving a workload). */
  encapGuard?: boolean;
  /** Jump to a failsafe chain first (host endpoints' normal chains). */
  failsafe?: string;
  /** Forward chains: no profiles; with no tier at all, forwarded traffic is allowed. */
  forward?: boolean;
  /**
   * Pre-DNAT (mangle) and untracked (raw) chains: no end-of-tier drop and no profiles, since the
   * filter table's rules still follow; untracked ones skip conntrack and NOTRACK what they allow.
   */
  stage?: 'preDnat' | 'untracked';
}

/**
 * Felix's per-endpoint chain: conntrack first, then each tier's policies in order (the end of a
 * tier drops unless the Tier's defaultAction is Pass), then the profiles; a packet that reaches
 * the end without a policy or profile accepting it is dropped. Accepting returns with the accept
 * mark set; cali-FORWARD (or cali-INPUT/OUTPUT for a host endpoint) accepts on it.
 */
function endpointChain(
  name: string,
  dir: 'in' | 'out',
  tiers: readonly TierPolicies[],
  profiles: readonly ProfileId[],
  opts: ChainOpts = {},
): Chain {
  const rules: Rule[] =
    opts.stage === 'untracked'
      ? []
      : [
          { match: '-m conntrack --ctstate RELATED,ESTABLISHED', action: '-j ACCEPT' },
          { match: '-m conntrack --ctstate INVALID', action: '-j DROP' },
        ];
  if (opts.failsafe) rules.push({ match: '', action: `-j ${opts.failsafe}` });
  rules.push(clearMarks);
  if (opts.encapGuard) rules.push(...encapGuards);
  for (const t of tiers) {
    rules.push({
      match: '',
      action: `-j MARK --set-xmark 0x0/${hex(MARK_PASS)}`,
      comment: `Start of tier ${t.tier}`,
    });
    for (const pk of t.policies) {
      rules.push({ match: passClear, action: `-j ${policyChain(dir, pk)}`, comment: `policy ${pk}` });
      // An untracked allow is "NOTRACK and allow" (Felix).
      if (opts.stage === 'untracked') rules.push({ match: acceptSet, action: '-j NOTRACK' });
      rules.push({ match: acceptSet, action: '-j RETURN', comment: 'Return if policy accepted' });
    }
    if (opts.stage) continue;
    if ((t.defaultAction ?? 'deny') === 'deny') {
      rules.push({
        match: passClear,
        action: '-j DROP',
        comment: `End of tier ${t.tier}. DROP if no policies passed packet`,
      });
    }
  }
  if (opts.stage) return { name, rules };
  if (opts.forward) {
    if (tiers.length === 0) {
      rules.push({ match: '', action: setAccept, comment: 'Allow forwarded traffic by default' });
      rules.push({ match: '', action: '-j RETURN', comment: 'Return for accepted forward traffic' });
    }
    return { name, rules };
  }
  for (const id of profiles) {
    rules.push({ match: '', action: `-j ${profileChain(dir, id)}`, comment: `profile ${id}` });
    rules.push({ match: acceptSet, action: '-j RETURN', comment: 'Return if profile accepted' });
  }
  rules.push({ match: '', action: '-j DROP', comment: 'DROP if no profiles matched' });
  return { name, rules };
}

/**
 * An endpoint's chains by the endpoint object (the graph replaces it on change): a pass re-renders
 * the whole table, and an unchanged endpoint then hands the driver the same rule objects, which it
 * compares by identity. Callers get fresh rule arrays to extend.
 */
export const renderEndpointChains = memoisedChains((ep: LocalEndpoint) => renderEndpointChainsOnce(ep));

function renderEndpointChainsOnce(ep: LocalEndpoint): Chain[] {
  return [
    endpointChain(toWorkloadChain(ep.interfaceName), 'in', ep.ingress, ep.profiles),
    endpointChain(fromWorkloadChain(ep.interfaceName), 'out', ep.egress, ep.profiles, { encapGuard: true }),
  ];
}

/**
 * A host endpoint's filter chains (Felix's HostEndpointToFilterChains): traffic to the host from
 * the interface (ingress, `cali-fh-`), from the host out of it (egress, `cali-th-`), both behind
 * the failsafe chains; and forwarded traffic through it (`cali-fhfw-`/`cali-thfw-`).
 */
export function renderHostEndpointChains(ep: LocalHostEndpoint): Chain[] {
  const i = ep.interfaceName;
  return [
    endpointChain(toHostChain(i), 'out', ep.egress, ep.profiles, { failsafe: chains.failsafeOut }),
    endpointChain(fromHostChain(i), 'in', ep.ingress, ep.profiles, { failsafe: chains.failsafeIn }),
    endpointChain(toHostForwardChain(i), 'out', ep.forwardEgress, [], { forward: true }),
    endpointChain(fromHostForwardChain(i), 'in', ep.forwardIngress, [], { forward: true }),
  ];
}

/** A protocol and port Felix keeps open on host endpoints whatever their policy. */
export interface FailsafePort {
  protocol: 'tcp' | 'udp';
  port: number;
}

/** Felix's defaults (FailsafeInboundHostPorts, config_params.go): SSH, DHCP, BGP, etcd, Typha, kube-apiserver. */
export const FAILSAFE_INBOUND: readonly FailsafePort[] = [
  { protocol: 'tcp', port: 22 },
  { protocol: 'udp', port: 68 },
  { protocol: 'tcp', port: 179 },
  { protocol: 'tcp', port: 2379 },
  { protocol: 'tcp', port: 2380 },
  { protocol: 'tcp', port: 5473 },
  { protocol: 'tcp', port: 6443 },
  { protocol: 'tcp', port: 6666 },
  { protocol: 'tcp', port: 6667 },
];
/** Felix's defaults (FailsafeOutboundHostPorts): DNS, DHCP, BGP, etcd, Typha, kube-apiserver. */
export const FAILSAFE_OUTBOUND: readonly FailsafePort[] = [
  { protocol: 'udp', port: 53 },
  { protocol: 'udp', port: 67 },
  { protocol: 'tcp', port: 179 },
  { protocol: 'tcp', port: 2379 },
  { protocol: 'tcp', port: 2380 },
  { protocol: 'tcp', port: 5473 },
  { protocol: 'tcp', port: 6443 },
  { protocol: 'tcp', port: 6666 },
  { protocol: 'tcp', port: 6667 },
];

/**
 * `responses`: in the raw table, before conntrack, the other direction's failsafe ports as source
 * ports too, so the replies of a failsafe connection are not caught by an untracked policy (Felix).
 */
function failsafeChain(
  name: string,
  ports: readonly FailsafePort[],
  responses: readonly FailsafePort[] = [],
): Chain {
  const rule = (p: FailsafePort, opt: '--dports' | '--sports'): Rule => ({
    match: `-p ${p.protocol} -m multiport ${opt} ${p.port}`,
    action: '-j ACCEPT',
  });
  return {
    name,
    rules: [...ports.map((p) => rule(p, '--dports')), ...responses.map((p) => rule(p, '--sports'))],
  };
}

/** Host endpoint dispatch: one goto per interface; other interfaces return untouched. */
function hostDispatch(
  name: string,
  flag: '-i' | '-o',
  ifaces: readonly string[],
  target: (i: string) => string,
): Chain {
  return { name, rules: ifaces.map((i) => ({ match: `${flag} ${i}`, action: `-g ${target(i)}` })) };
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
  /** Rules of the profiles endpoints name (a named profile not here renders as an empty chain). */
  profiles?: Iterable<ActiveProfile>;
  endpoints: Iterable<LocalEndpoint>;
  /** This node's host endpoints: with none, no host endpoint chain or dispatch is rendered. */
  hostEndpoints?: Iterable<LocalHostEndpoint>;
  /** This node runs VXLAN: accept it only from known VTEPs (the all-vxlan-net set). */
  vxlan?: boolean;
}

const VXLAN_MATCH = `-p udp -m multiport --dports ${VXLAN_PORT}`;
const VTEPS = ipsetName(ALL_VXLAN_NET_SET);

/** cali-INPUT's VXLAN guard (Felix): VXLAN to this host only from a known VTEP, local or remote. */
function vxlanInputRules(): Rule[] {
  return [
    {
      match: `${VXLAN_MATCH} -m set --match-set ${VTEPS} src -m addrtype --dst-type LOCAL`,
      action: '-j ACCEPT',
      comment: 'Allow IPv4 VXLAN packets from allowed hosts',
    },
    {
      match: `${VXLAN_MATCH} -m addrtype --dst-type LOCAL`,
      action: '-j DROP',
      comment: 'Drop IPv4 VXLAN packets from non-allowed hosts',
    },
  ];
}

/** Host endpoint policy at the end of cali-INPUT/OUTPUT: dispatch, then accept on the mark (Felix). */
function hostEndpointRules(dispatch: string): Rule[] {
  return [
    { match: '', action: `-j MARK --set-xmark 0x0/${hex(MARK_MASK)}` },
    { match: '', action: `-j ${dispatch}` },
    { match: acceptSet, action: '-j ACCEPT', comment: 'Host endpoint policy accepted packet.' },
  ];
}

export function renderFilterTable(input: FilterInput): Table {
  const eps = [...input.endpoints].sort((a, b) => (a.interfaceName < b.interfaceName ? -1 : 1));
  const ifaces = eps.map((e) => e.interfaceName);
  const heps = [...(input.hostEndpoints ?? [])].sort((a, b) => (a.interfaceName < b.interfaceName ? -1 : 1));
  const hepIfaces = heps.map((h) => h.interfaceName);
  const withHeps = heps.length > 0;
  // The accept bit a pre-DNAT or untracked policy set (mangle, raw) is honoured, as Felix does.
  const alreadyAccepted: Rule = { match: acceptSet, action: '-j ACCEPT' };
  const tableChains: Chain[] = [
    {
      name: chains.forward,
      rules: [
        // The accept bit is kept: it is how a pre-DNAT or untracked policy's allow reaches here.
        { match: '', action: `-j MARK --set-xmark 0x0/${hex(MARK_MASK & ~MARK_ACCEPT)}` },
        ...(withHeps
          ? [{ match: `-m mark --mark 0x0/${hex(MARK_ACCEPT)}`, action: `-j ${chains.fromHepForward}` }]
          : []),
        { match: '-i cali+', action: `-j ${chains.fromWlDispatch}`, comment: 'from workload: egress policy' },
        { match: '-o cali+', action: `-j ${chains.toWlDispatch}`, comment: 'to workload: ingress policy' },
        ...(withHeps ? [{ match: '', action: `-j ${chains.toHepForward}` }] : []),
        { match: acceptSet, action: '-j ACCEPT', comment: 'Policy explicitly accepted packet.' },
      ],
    },
    {
      name: chains.input,
      rules: [
        ...(input.vxlan ? vxlanInputRules() : []),
        { match: '-i cali+', action: `-g ${chains.wlToHost}` },
        ...(withHeps ? [alreadyAccepted, ...hostEndpointRules(chains.fromHostEndpoint)] : []),
      ],
    },
    {
      name: chains.wlToHost,
      rules: [
        { match: '', action: `-j ${chains.fromWlDispatch}`, comment: 'workload to host: egress policy' },
        { match: '', action: '-j ACCEPT', comment: 'Configured DefaultEndpointToHostAction' },
      ],
    },
    {
      name: chains.output,
      rules: [
        ...(withHeps ? [alreadyAccepted] : []),
        { match: '-o cali+', action: '-j RETURN', comment: 'host to local workloads is allowed' },
        ...(withHeps && input.vxlan
          ? [
              {
                match: `${VXLAN_MATCH} -m set --match-set ${VTEPS} dst -m addrtype --src-type LOCAL`,
                action: '-j ACCEPT',
                comment: 'Allow IPv4 VXLAN packets to other allowed hosts',
              },
            ]
          : []),
        ...(withHeps ? hostEndpointRules(chains.toHostEndpoint) : []),
      ],
    },
    ...renderDispatch(chains.toWlDispatch, '-o', ifaces, toWorkloadChain),
    ...renderDispatch(chains.fromWlDispatch, '-i', ifaces, fromWorkloadChain),
  ];
  if (withHeps) {
    tableChains.push(
      hostDispatch(chains.fromHostEndpoint, '-i', hepIfaces, fromHostChain),
      hostDispatch(chains.toHostEndpoint, '-o', hepIfaces, toHostChain),
      hostDispatch(chains.fromHepForward, '-i', hepIfaces, fromHostForwardChain),
      hostDispatch(chains.toHepForward, '-o', hepIfaces, toHostForwardChain),
      failsafeChain(chains.failsafeIn, FAILSAFE_INBOUND),
      failsafeChain(chains.failsafeOut, FAILSAFE_OUTBOUND),
    );
  }
  for (const ep of eps) tableChains.push(...renderEndpointChains(ep));
  for (const h of heps) tableChains.push(...renderHostEndpointChains(h));
  const policies = [...input.policies].sort((a, b) => (a.key < b.key ? -1 : 1));
  for (const p of policies) tableChains.push(...renderPolicyChains(p));
  // Every profile an endpoint names has a chain, known rules or not: no jump to a missing chain.
  const profiles = new Map<ProfileId, ActiveProfile>();
  for (const ep of [...eps, ...heps])
    for (const id of ep.profiles) profiles.set(id, { id, inbound: [], outbound: [] });
  for (const p of input.profiles ?? []) if (profiles.has(p.id)) profiles.set(p.id, p);
  for (const id of [...profiles.keys()].sort()) tableChains.push(...renderProfileChains(profiles.get(id)!));
  return {
    chains: tableChains,
    hooks: [
      { chain: 'FORWARD', rule: { match: '', action: `-j ${chains.forward}` } },
      { chain: 'INPUT', rule: { match: '', action: `-j ${chains.input}` } },
      { chain: 'OUTPUT', rule: { match: '', action: `-j ${chains.output}` } },
    ],
  };
}

export interface HostTablesInput {
  policies: Iterable<ActivePolicy>;
  hostEndpoints: Iterable<LocalHostEndpoint>;
}

/** The policy chains a table needs: those its endpoint chains jump to. */
function usedPolicyChains(policies: Iterable<ActivePolicy>, tierLists: TierPolicies[][]): Chain[] {
  const used = new Set<string>();
  for (const ts of tierLists) for (const t of ts) for (const p of t.policies) used.add(p);
  return [...policies]
    .filter((p) => used.has(p.key))
    .sort((a, b) => (a.key < b.key ? -1 : 1))
    .flatMap(renderPolicyChains);
}

/**
 * The mangle table: pre-DNAT policy on host endpoints (Felix's HostEndpointToMangleIngressChains),
 * at PREROUTING, before the nat table rewrites the destination. Empty without host endpoints.
 */
export function renderMangleTable(input: HostTablesInput): Table {
  const heps = [...input.hostEndpoints].sort((a, b) => (a.interfaceName < b.interfaceName ? -1 : 1));
  if (heps.length === 0) return { chains: [], hooks: [] };
  return {
    chains: [
      {
        name: chains.prerouting,
        rules: [
          { match: '-m conntrack --ctstate RELATED,ESTABLISHED', action: '-j ACCEPT' },
          { match: acceptSet, action: '-j ACCEPT' },
          { match: '', action: `-j ${chains.fromHostEndpoint}` },
          { match: acceptSet, action: '-j ACCEPT', comment: 'Host endpoint policy accepted packet.' },
        ],
      },
      hostDispatch(
        chains.fromHostEndpoint,
        '-i',
        heps.map((h) => h.interfaceName),
        fromHostChain,
      ),
      failsafeChain(chains.failsafeIn, FAILSAFE_INBOUND),
      ...heps.map((h) =>
        endpointChain(fromHostChain(h.interfaceName), 'in', h.preDnatIngress, [], {
          failsafe: chains.failsafeIn,
          stage: 'preDnat',
        }),
      ),
      ...usedPolicyChains(
        input.policies,
        heps.map((h) => h.preDnatIngress),
      ),
    ],
    hooks: [{ chain: 'PREROUTING', rule: { match: '', action: `-j ${chains.prerouting}` } }],
  };
}

/**
 * The raw table: untracked (doNotTrack) policy on host endpoints (Felix's HostEndpointToRawChains),
 * before conntrack; what it allows is NOTRACKed and accepted. Empty without host endpoints.
 */
export function renderRawTable(input: HostTablesInput): Table {
  const heps = [...input.hostEndpoints].sort((a, b) => (a.interfaceName < b.interfaceName ? -1 : 1));
  if (heps.length === 0) return { chains: [], hooks: [] };
  const ifaces = heps.map((h) => h.interfaceName);
  const clearAll: Rule = { match: '', action: `-j MARK --set-xmark 0x0/${hex(MARK_MASK)}` };
  return {
    chains: [
      {
        name: chains.prerouting,
        rules: [
          clearAll,
          // Workload traffic is never host endpoint traffic (Felix marks and skips it).
          { match: '-i cali+', action: '-j RETURN' },
          { match: '', action: `-j ${chains.fromHostEndpoint}` },
          { match: acceptSet, action: '-j ACCEPT' },
        ],
      },
      {
        name: chains.output,
        rules: [
          clearAll,
          { match: '', action: `-j ${chains.toHostEndpoint}` },
          { match: acceptSet, action: '-j ACCEPT' },
        ],
      },
      hostDispatch(chains.fromHostEndpoint, '-i', ifaces, fromHostChain),
      hostDispatch(chains.toHostEndpoint, '-o', ifaces, toHostChain),
      failsafeChain(chains.failsafeIn, FAILSAFE_INBOUND, FAILSAFE_OUTBOUND),
      failsafeChain(chains.failsafeOut, FAILSAFE_OUTBOUND, FAILSAFE_INBOUND),
      ...heps.flatMap((h) => [
        endpointChain(toHostChain(h.interfaceName), 'out', h.untrackedEgress, [], {
          failsafe: chains.failsafeOut,
          stage: 'untracked',
        }),
        endpointChain(fromHostChain(h.interfaceName), 'in', h.untrackedIngress, [], {
          failsafe: chains.failsafeIn,
          stage: 'untracked',
        }),
      ]),
      ...usedPolicyChains(
        input.policies,
        heps.flatMap((h) => [h.untrackedIngress, h.untrackedEgress]),
      ),
    ],
    hooks: [
      { chain: 'PREROUTING', rule: { match: '', action: `-j ${chains.prerouting}` } },
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
