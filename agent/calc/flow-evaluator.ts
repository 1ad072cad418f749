// Why one flow is allowed or denied: Calico's policy semantics evaluated for a single packet's
// worth of facts (addresses, protocol, ports), in one cluster's view, over compiled policies and a
// LabelIndex. Pure: no I/O, no timers, nothing kept between calls, so `fedmesh explain`, tests and
// (later) the agent can share it.
//
// It follows what the dataplane does (agent/rules, Felix's endpoint chain): VXLAN (UDP 4789) and
// IP-in-IP leaving a workload are dropped before any policy; then in each tier, in order (tiersOf:
// by the Tier resources' orders, `default` at 1,000,000, unordered tiers last), each policy that
// selects the endpoint runs its rules for the direction; Allow and Deny decide, Pass leaves the
// tier (on to the next one), Log carries on; the end of a tier in which a policy selected the
// endpoint drops, unless the Tier's defaultAction is Pass. Past the tiers (none applied, or all
// passed) the endpoint's profiles run in order: the first Allow decides, a Deny drops, a Pass
// leaves that profile; when no profile allows, the packet is dropped ("Drop if no profiles
// matched"). A namespace's kns.<ns> profile allows everything: Kubernetes' default-open.
//
// A rule's `src` is always the packet's source and `dst` its destination. For an ingress rule
// that makes `src` the peer and `dst` the endpoint itself; for egress the reverse. An ipset
// matches an address when an item the matcher selects holds that address (ipsets are sets of
// addresses), so a peer is given as its address plus every label-index item holding it (the
// endpoint itself, network sets whose nets contain it); a bare address with no item matches only
// net and port conditions.
import { type Cidr, cidrContainsIp, type Ip4, NetParseError, parseCidr } from '../../model/net.ts';
import { protocolName, protocolNumber } from '../../model/protocols.ts';
import type { Labels } from '../../model/resources.ts';
import {
  type CompiledPolicy,
  type CompiledProfile,
  compilePolicy,
  compileProfile,
  PolicyError,
} from '../../policy/compiler.ts';
import type { Update } from '../../proto/service.ts';
import { VXLAN_PORT } from '../rules/names.ts';
import { FAILSAFE_INBOUND, FAILSAFE_OUTBOUND, type FailsafePort } from '../rules/render-tables.ts';
import { LabelIndex, type MatcherSpec } from './label-index.ts';
import type {
  CompiledEntity,
  CompiledRule,
  PolicyKey,
  PortRange,
  ProfileId,
  RuleAction,
} from './messages.ts';
import { namedPortsOf } from './named-ports.ts';
import { tiersOf } from './policy-resolver.ts';

// ---------------------------------------------------------------------------------------------
// The flow

export { PROTOCOL_NUMBERS, protocolName, protocolNumber } from '../../model/protocols.ts';

/** A label-index item (endpoint, network set) at an address; named ports as the index keeps them. */
export interface FlowItem {
  key: string;
  /** Named port → `proto:port` list (protocol lower-case), as given to LabelIndex.upsertItem. */
  namedPorts?: ReadonlyMap<string, readonly string[]>;
}

/** One end of a flow: its address and every item holding that address in the cluster's view. */
export interface FlowPeer {
  ip: Ip4;
  items: readonly FlowItem[];
}

export interface Flow {
  src: FlowPeer;
  dst: FlowPeer;
  /** IANA protocol number (tcp 6, udp 17, icmp 1, sctp 132). */
  protocol: number;
  /** For port protocols. */
  dstPort?: number;
  /** Usually unknown (ephemeral): rules that test it are then taken as not matching, with a note. */
  srcPort?: number;
  /** For ICMP: the message type and code. */
  icmp?: { type: number; code?: number };
}

export type Direction = 'ingress' | 'egress';

// ---------------------------------------------------------------------------------------------
// One rule

export interface RuleMatch {
  matched: boolean;
  /** Why it did not match: the first condition that failed, in words. */
  why?: string;
  /** Set when the answer rests on something the flow does not say (the source port): taken as no match. */
  uncertain?: string;
}

type Side = 'src' | 'dst';
const SIDE_WORD: Record<Side, string> = { src: 'source', dst: 'destination' };

function portsText(ranges: readonly PortRange[]): string {
  return ranges.map((r) => (r.first === r.last ? String(r.first) : `${r.first}:${r.last}`)).join(',');
}

function inRanges(port: number, ranges: readonly PortRange[]): boolean {
  return ranges.some((r) => port >= r.first && port <= r.last);
}

function peerText(side: Side, peer: FlowPeer): string {
  return `${SIDE_WORD[side]} ${peer.ip}`;
}

/** Does the ipset of a (hash:net) matcher hold the peer's address? */
function setHolds(spec: MatcherSpec, peer: FlowPeer, index: LabelIndex): boolean {
  if (spec.staticMembers) return spec.staticMembers.some((n) => netHolds(n, peer.ip));
  return peer.items.some((it) => index.itemMatches(spec, it.key));
}

function netHolds(net: string, ip: Ip4): boolean {
  try {
    return cidrContainsIp(parseCidr(net, true), ip);
  } catch (e) {
    if (e instanceof NetParseError) return false;
    throw e;
  }
}

/** Does the (hash:ip,port) set of a named-port matcher hold (address, protocol, port)? */
function namedPortHolds(
  spec: MatcherSpec,
  peer: FlowPeer,
  protocol: number,
  port: number,
  index: LabelIndex,
): boolean {
  const np = spec.namedPort;
  if (!np || protocolNumber(np.protocol) !== protocol) return false;
  const member = `${np.protocol}:${port}`;
  return peer.items.some(
    (it) => index.itemMatches(spec, it.key) && (it.namedPorts?.get(np.name) ?? []).includes(member),
  );
}

function entityMatch(
  e: CompiledEntity,
  side: Side,
  peer: FlowPeer,
  port: number | undefined,
  flow: Flow,
  matchers: ReadonlyMap<string, MatcherSpec>,
  index: LabelIndex,
): RuleMatch {
  const who = peerText(side, peer);
  if (e.matchesNothing) return { matched: false, why: `the ${SIDE_WORD[side]} condition can never match` };
  if (e.net && !netHolds(e.net, peer.ip)) return { matched: false, why: `${who} is not in ${e.net}` };
  if (e.notNet && netHolds(e.notNet, peer.ip))
    return { matched: false, why: `${who} is in notNets ${e.notNet}` };
  for (const id of e.ipSets) {
    const spec = matchers.get(id);
    if (!spec) return { matched: false, why: `unknown matcher ${id}` };
    if (!setHolds(spec, peer, index)) {
      const what = spec.staticMembers ? 'in' : 'selected by';
      return { matched: false, why: `${who} is not ${what} ${describeMatcher(spec)}` };
    }
  }
  for (const id of e.notIpSets) {
    const spec = matchers.get(id);
    if (spec && setHolds(spec, peer, index))
      return { matched: false, why: `${who} is excluded by not ${describeMatcher(spec)}` };
  }
  const portWord = `${SIDE_WORD[side]} port`;
  if (e.notPorts.length > 0) {
    if (port === undefined) {
      if (side === 'src')
        return { matched: false, uncertain: `it tests the source port (notPorts ${portsText(e.notPorts)})` };
    } else if (inRanges(port, e.notPorts)) {
      return { matched: false, why: `${portWord} ${port} is in notPorts ${portsText(e.notPorts)}` };
    }
  }
  if (port !== undefined) {
    for (const id of e.notNamedPortIpSets ?? []) {
      const spec = matchers.get(id);
      if (spec?.namedPort && namedPortHolds(spec, peer, flow.protocol, port, index)) {
        return {
          matched: false,
          why: `${portWord} ${port} is ${who}'s named port "${spec.namedPort.name}", in notPorts`,
        };
      }
    }
  }
  if (e.ports.length > 0 || e.namedPortIpSets.length > 0) {
    const wanted = portAlternativesText(e, matchers);
    if (port === undefined) {
      return side === 'src'
        ? { matched: false, uncertain: `it tests the source port (${wanted})` }
        : { matched: false, why: `the flow has no destination port (rule wants ${wanted})` };
    }
    if (inRanges(port, e.ports)) return { matched: true };
    for (const id of e.namedPortIpSets) {
      const spec = matchers.get(id);
      if (spec && namedPortHolds(spec, peer, flow.protocol, port, index)) return { matched: true };
    }
    return { matched: false, why: `${portWord} ${port} is not ${wanted} (of ${who})` };
  }
  return { matched: true };
}

function icmpText(i: { type?: number; code?: number }): string {
  if (i.type === undefined) return 'any type';
  return i.code === undefined ? `type ${i.type}` : `type ${i.type} code ${i.code}`;
}

/** Does an icmp condition (type, and code if given) hold for the flow? undefined: cannot tell. */
function icmpHolds(i: { type?: number; code?: number }, flow: Flow): boolean | undefined {
  if (flow.protocol !== 1 && flow.protocol !== 58) return false;
  if (i.type === undefined) return true;
  if (!flow.icmp) return undefined;
  if (flow.icmp.type !== i.type) return false;
  if (i.code === undefined) return true;
  return flow.icmp.code === undefined ? undefined : flow.icmp.code === i.code;
}

/** Evaluate one compiled rule against the flow. `matchers`: the rule's policy's, by id. */
export function matchRule(
  rule: CompiledRule,
  matchers: ReadonlyMap<string, MatcherSpec>,
  index: LabelIndex,
  flow: Flow,
): RuleMatch {
  if (rule.matchesNothing) return { matched: false, why: 'the rule can never match (IPv6 only)' };
  const flowProto = protocolName(flow.protocol);
  if (rule.protocol && protocolNumber(rule.protocol) !== flow.protocol)
    return { matched: false, why: `protocol is ${flowProto}, rule wants ${rule.protocol}` };
  if (rule.notProtocol && protocolNumber(rule.notProtocol) === flow.protocol)
    return { matched: false, why: `protocol ${flowProto} is excluded (notProtocol ${rule.notProtocol})` };
  const src = entityMatch(rule.src, 'src', flow.src, flow.srcPort, flow, matchers, index);
  const dst = entityMatch(rule.dst, 'dst', flow.dst, flow.dstPort, flow, matchers, index);
  // A definite "no" on either side wins over an "I cannot tell" on the other.
  for (const m of [src, dst]) if (!m.matched && !m.uncertain) return m;
  for (const m of [src, dst]) if (!m.matched) return m;
  if (rule.icmp) {
    const ok = icmpHolds(rule.icmp, flow);
    if (ok === undefined) return { matched: false, uncertain: `it tests ICMP ${icmpText(rule.icmp)}` };
    if (!ok) return { matched: false, why: `not ICMP ${icmpText(rule.icmp)}` };
  }
  if (rule.notIcmp) {
    const hit = icmpHolds(rule.notIcmp, flow);
    if (hit === undefined) return { matched: false, uncertain: `it tests ICMP ${icmpText(rule.notIcmp)}` };
    if (hit) return { matched: false, why: `ICMP ${icmpText(rule.notIcmp)} is excluded (notICMP)` };
  }
  return { matched: true };
}

// ---------------------------------------------------------------------------------------------
// Rendering a rule's match for people

/** A matcher in words: `selector app == "db" in namespace shop`, `nets 10.0.0.0/8, ...`. */
export function describeMatcher(m: MatcherSpec, withNamedPort = true): string {
  if (m.staticMembers) return `nets ${m.staticMembers.join(', ')}`;
  const parts: string[] = [];
  if (m.selector) parts.push(`selector ${m.selector.canonical}`);
  if (m.notSelector) parts.push(`notSelector ${m.notSelector.canonical}`);
  if (m.namespaceSelector) parts.push(`namespaceSelector ${m.namespaceSelector.canonical}`);
  if (m.serviceAccountNames?.length) parts.push(`serviceAccounts ${m.serviceAccountNames.join(', ')}`);
  if (m.serviceAccountSelector) parts.push(`serviceAccount selector ${m.serviceAccountSelector.canonical}`);
  if (m.namespace !== undefined) parts.push(`in namespace ${m.namespace}`);
  if (withNamedPort && m.namedPort) parts.push(`with port "${m.namedPort.name}" (${m.namedPort.protocol})`);
  return parts.length > 0 ? parts.join(' ') : 'any endpoint';
}

function portAlternativesText(e: CompiledEntity, matchers: ReadonlyMap<string, MatcherSpec>): string {
  const alts: string[] = [];
  if (e.ports.length > 0) alts.push(portsText(e.ports));
  const names = new Set<string>();
  for (const id of e.namedPortIpSets) {
    const np = matchers.get(id)?.namedPort;
    if (np) names.add(`"${np.name}"`);
  }
  if (names.size > 0) alts.push([...names].join(','));
  return `port ${alts.join(' or ')}`;
}

function entityText(e: CompiledEntity, matchers: ReadonlyMap<string, MatcherSpec>): string {
  if (e.matchesNothing) return 'nothing';
  const parts: string[] = [];
  if (e.net) parts.push(`net ${e.net}`);
  if (e.notNet) parts.push(`not net ${e.notNet}`);
  for (const id of e.ipSets) parts.push(matchers.get(id) ? describeMatcher(matchers.get(id)!) : id);
  for (const id of e.notIpSets)
    parts.push(`not ${matchers.get(id) ? describeMatcher(matchers.get(id)!) : id}`);
  // A named-port set carries the rule's selection when there is no separate selection set.
  if (e.ipSets.length === 0) {
    const first = e.namedPortIpSets.map((id) => matchers.get(id)).find((m) => m !== undefined);
    const base = first ? describeMatcher(first, false) : 'any endpoint';
    if (first && base !== 'any endpoint') parts.push(base);
  }
  if (e.ports.length > 0 || e.namedPortIpSets.length > 0) parts.push(portAlternativesText(e, matchers));
  if (e.notPorts.length > 0) parts.push(`not port ${portsText(e.notPorts)}`);
  return parts.join(', ');
}

/** A short rendering of a rule: `allow tcp from selector ... to port 5432`. */
export function describeRule(rule: CompiledRule, matchers: ReadonlyMap<string, MatcherSpec>): string {
  const parts: string[] = [rule.action];
  if (rule.protocol) parts.push(rule.protocol);
  if (rule.notProtocol) parts.push(`not ${rule.notProtocol}`);
  if (rule.icmp) parts.push(`icmp ${icmpText(rule.icmp)}`);
  if (rule.notIcmp) parts.push(`not icmp ${icmpText(rule.notIcmp)}`);
  const src = entityText(rule.src, matchers);
  const dst = entityText(rule.dst, matchers);
  if (src) parts.push(`from ${src}`);
  if (dst) parts.push(`to ${dst}`);
  if (rule.matchesNothing) parts.push('(IPv6 only: matches nothing here)');
  if (parts.length === 1) parts.push('all');
  return parts.join(' ');
}

// ---------------------------------------------------------------------------------------------
// One direction: tiers, policies, rules

export interface RuleTrace {
  index: number;
  action: RuleAction;
  match: string;
  matched: boolean;
  why?: string;
  uncertain?: string;
}

export type PolicyOutcome = 'allow' | 'deny' | 'pass' | 'no-match';

export interface PolicyTrace {
  key: PolicyKey;
  /** `namespace/name` or `name`. */
  policy: string;
  /** Absent: no order (sorts last). */
  order?: number;
  /** The rules evaluated, up to and including the one that decided. */
  rules: RuleTrace[];
  outcome: PolicyOutcome;
}

export interface TierTrace {
  tier: string;
  policies: PolicyTrace[];
  /** end-of-tier: no policy decided or passed, the tier drops; end-of-tier-pass: its defaultAction passes. */
  outcome: 'allow' | 'deny' | 'pass' | 'end-of-tier' | 'end-of-tier-pass';
}

export interface ProfileTrace {
  profile: ProfileId;
  rules: RuleTrace[];
  outcome: PolicyOutcome;
}

export interface DecidingRule {
  tier: string;
  policy: string;
  key: PolicyKey;
  index: number;
  action: RuleAction;
  match: string;
}

export interface DirectionResult {
  direction: Direction;
  decision: 'allow' | 'deny';
  /**
   * rule: a policy rule decided; end-of-tier: a tier dropped; profile: a profile rule decided
   * (after the tiers); no-profile: no profile allowed; encap-guard: encapsulated traffic leaving a
   * workload.
   */
  by: 'rule' | 'end-of-tier' | 'profile' | 'no-profile' | 'encap-guard' | 'failsafe';
  reason: string;
  /** The rule that decided (allow or deny), or that passed the last tier. */
  rule?: DecidingRule;
  tiers: TierTrace[];
  /** The profiles evaluated after the tiers, up to the one that decided. */
  profiles?: ProfileTrace[];
  /** Assumptions made (rules taken as not matching for want of a fact). */
  notes: string[];
}

export interface DirectionInput {
  direction: Direction;
  /** The effective labels of the endpoint whose policies apply (local to the cluster). */
  endpointLabels: Labels;
  /** Every policy of the endpoint's cluster (those that do not select it are skipped). */
  policies: readonly CompiledPolicy[];
  index: LabelIndex;
  flow: Flow;
  /** Tier orders from the cluster's Tier resources (as tiersOf takes them). */
  tierOrders?: ReadonlyMap<string, number>;
  /** Tiers whose defaultAction is Pass. */
  passTiers?: ReadonlySet<string>;
  /** The endpoint's profiles, in its order (a profile the cluster does not define: no rules). */
  profiles: readonly CompiledProfile[];
  /**
   * The endpoint is a host endpoint (traffic to or from the host through its interface): Felix's
   * failsafe ports come first, then untracked (raw) and, inbound, pre-DNAT (mangle) policies, whose
   * allow or deny decides at once; there is no encapsulation guard. Forwarded traffic
   * (applyOnForward) is not modelled here.
   */
  host?: boolean;
}

/**
 * A host endpoint's raw (untracked) and, inbound, mangle (pre-DNAT) policies, before the filter
 * table: an allow or deny decides; the end of their tiers drops nothing (the filter table follows).
 */
function hostStages(
  input: DirectionInput,
  traces: TierTrace[],
  notes: string[],
): DirectionResult | undefined {
  const { direction, endpointLabels, index, flow } = input;
  const dirWord = direction === 'ingress' ? 'ingress' : 'egress';
  const stages = [
    { what: 'untracked (raw table)', pick: (p: CompiledPolicy) => p.doNotTrack },
    ...(direction === 'ingress'
      ? [{ what: 'pre-DNAT (mangle table)', pick: (p: CompiledPolicy) => p.preDNAT }]
      : []),
  ];
  for (const stage of stages) {
    const applies = input.policies.filter(
      (p) =>
        stage.pick(p) &&
        (direction === 'ingress' ? p.ingress : p.egress) &&
        p.selector.evaluate(endpointLabels),
    );
    const byKey = new Map(applies.map((p) => [p.key, p]));
    for (const t of tiersOf(applies, input.tierOrders, input.passTiers)) {
      const tier: TierTrace = { tier: t.tier, policies: [], outcome: 'end-of-tier-pass' };
      traces.push(tier);
      for (const key of t.policies) {
        const p = byKey.get(key)!;
        const matchers = new Map<string, MatcherSpec>(p.matchers.map((m) => [m.id, m]));
        const run = runRules(
          direction === 'ingress' ? p.inbound : p.outbound,
          matchers,
          index,
          flow,
          (i, m, u) =>
            notes.push(
              `${p.displayName} ${dirWord} rule ${i} (${m}) taken as not matching: ${u}, which the flow does not say`,
            ),
        );
        const trace: PolicyTrace = {
          key: p.key,
          policy: p.displayName,
          rules: run.traces,
          outcome: run.decided?.action ?? 'no-match',
        };
        tier.policies.push(trace);
        const action = run.decided?.action;
        if (action === 'pass') break;
        if (action !== 'allow' && action !== 'deny') continue;
        tier.outcome = action;
        return {
          direction,
          decision: action,
          by: 'rule',
          reason: `${action === 'allow' ? 'allowed' : 'denied'} by ${p.displayName} ${dirWord} rule ${run.decided!.index} (${stage.what}, tier ${t.tier})`,
          rule: { tier: t.tier, policy: p.displayName, key: p.key, ...run.decided! },
          tiers: traces,
          notes,
        };
      }
    }
  }
  return undefined;
}

/** Is the flow to one of Felix's failsafe ports for this direction of a host endpoint? */
function failsafe(flow: Flow, direction: Direction): FailsafePort | undefined {
  const list = direction === 'ingress' ? FAILSAFE_INBOUND : FAILSAFE_OUTBOUND;
  return list.find((f) => protocolNumber(f.protocol) === flow.protocol && f.port === flow.dstPort);
}

/** Rules of a policy or profile, first to last, until one decides (Log carries on). */
function runRules(
  rules: readonly CompiledRule[],
  matchers: ReadonlyMap<string, MatcherSpec>,
  index: LabelIndex,
  flow: Flow,
  note: (i: number, match: string, uncertain: string) => void,
): { traces: RuleTrace[]; decided?: { index: number; action: Exclude<RuleAction, 'log'>; match: string } } {
  const traces: RuleTrace[] = [];
  for (const [i, r] of rules.entries()) {
    const m = matchRule(r, matchers, index, flow);
    const match = describeRule(r, matchers);
    const rt: RuleTrace = { index: i, action: r.action, match, matched: m.matched };
    if (m.why) rt.why = m.why;
    if (m.uncertain) {
      rt.uncertain = m.uncertain;
      note(i, match, m.uncertain);
    }
    traces.push(rt);
    if (m.matched && r.action !== 'log') return { traces, decided: { index: i, action: r.action, match } };
  }
  return { traces };
}

/** Felix drops VXLAN and IP-in-IP leaving a workload: encapsulation could smuggle past egress policy. */
function encapsulated(flow: Flow): string | undefined {
  if (flow.protocol === 17 && flow.dstPort === VXLAN_PORT) return 'VXLAN (UDP 4789)';
  if (flow.protocol === 4) return 'IP-in-IP';
  return undefined;
}

/** The decision of one direction (egress of the source, or ingress of the destination). */
export function evaluateDirection(input: DirectionInput): DirectionResult {
  const { direction, endpointLabels, index, flow } = input;
  const traces: TierTrace[] = [];
  const notes: string[] = [];
  const dirWord = direction === 'ingress' ? 'ingress' : 'egress';
  const safe = input.host ? failsafe(flow, direction) : undefined;
  if (safe) {
    return {
      direction,
      decision: 'allow',
      by: 'failsafe',
      reason: `${safe.protocol} port ${safe.port} is a failsafe port of host endpoints: allowed before any policy`,
      tiers: traces,
      notes,
    };
  }
  const encap = direction === 'egress' && !input.host ? encapsulated(flow) : undefined;
  if (encap) {
    return {
      direction,
      decision: 'deny',
      by: 'encap-guard',
      reason: `${encap} leaving a workload is dropped before any policy (it could carry traffic past egress policy)`,
      tiers: traces,
      notes,
    };
  }
  if (input.host) {
    const early = hostStages(input, traces, notes);
    if (early) return early;
  }
  // Pre-DNAT and untracked policies live in the mangle and raw tables (hostStages above).
  const applies = input.policies.filter(
    (p) =>
      (direction === 'ingress' ? p.ingress : p.egress) &&
      !p.preDNAT &&
      !p.doNotTrack &&
      p.selector.evaluate(endpointLabels),
  );
  const byKey = new Map(applies.map((p) => [p.key, p]));
  const tiers = tiersOf(applies, input.tierOrders, input.passTiers);
  let passed: DecidingRule | undefined;
  for (const t of tiers) {
    const tier: TierTrace = { tier: t.tier, policies: [], outcome: 'end-of-tier' };
    traces.push(tier);
    for (const key of t.policies) {
      const p = byKey.get(key);
      if (!p) continue;
      const matchers = new Map<string, MatcherSpec>(p.matchers.map((m) => [m.id, m]));
      const trace: PolicyTrace = { key: p.key, policy: p.displayName, rules: [], outcome: 'no-match' };
      if (Number.isFinite(p.order)) trace.order = p.order;
      tier.policies.push(trace);
      const rules = direction === 'ingress' ? p.inbound : p.outbound;
      const run = runRules(rules, matchers, index, flow, (i, match, uncertain) =>
        notes.push(
          `${p.displayName} ${dirWord} rule ${i} (${match}) taken as not matching: ${uncertain}, which the flow does not say`,
        ),
      );
      trace.rules = run.traces;
      if (!run.decided) continue;
      const { action } = run.decided;
      trace.outcome = action;
      const decided: DecidingRule = { tier: t.tier, policy: p.displayName, key: p.key, ...run.decided };
      if (action === 'pass') {
        passed = decided;
        break;
      }
      tier.outcome = action === 'allow' ? 'allow' : 'deny';
      const verb = action === 'allow' ? 'allowed' : 'denied';
      return {
        direction,
        decision: action === 'allow' ? 'allow' : 'deny',
        by: 'rule',
        reason: `${verb} by ${p.displayName} ${dirWord} rule ${run.decided.index} (tier ${t.tier})`,
        rule: decided,
        tiers: traces,
        notes,
      };
    }
    if (tier.policies.some((p) => p.outcome === 'pass')) {
      tier.outcome = 'pass';
      continue;
    }
    if (t.defaultAction === 'pass') {
      tier.outcome = 'end-of-tier-pass';
      continue;
    }
    return {
      direction,
      decision: 'deny',
      by: 'end-of-tier',
      reason: `end of tier ${t.tier}: denied (policies selected the endpoint, none allowed)`,
      tiers: traces,
      notes,
    };
  }
  // Past the tiers: the endpoint's profiles.
  const before =
    tiers.length === 0
      ? 'no policy selects the endpoint in this direction'
      : `passed beyond the last tier${passed ? ` (by ${passed.policy} ${dirWord} rule ${passed.index})` : ''}`;
  const profiles: ProfileTrace[] = [];
  for (const prof of input.profiles) {
    const matchers = new Map<string, MatcherSpec>(prof.matchers.map((m) => [m.id, m]));
    const rules = direction === 'ingress' ? prof.inbound : prof.outbound;
    const run = runRules(rules, matchers, index, flow, (i, match, uncertain) =>
      notes.push(
        `profile ${prof.id} ${dirWord} rule ${i} (${match}) taken as not matching: ${uncertain}, which the flow does not say`,
      ),
    );
    const trace: ProfileTrace = {
      profile: prof.id,
      rules: run.traces,
      outcome: run.decided?.action ?? 'no-match',
    };
    profiles.push(trace);
    const action = run.decided?.action;
    if (action !== 'allow' && action !== 'deny') continue; // Pass leaves this profile only
    const verb = action === 'allow' ? 'allowed' : 'denied';
    return {
      direction,
      decision: action,
      by: 'profile',
      reason: `${before}; ${verb} by profile ${prof.id} ${dirWord} rule ${run.decided!.index}`,
      ...(passed ? { rule: passed } : {}),
      tiers: traces,
      profiles,
      notes,
    };
  }
  return {
    direction,
    decision: 'deny',
    by: 'no-profile',
    reason: `${before}; no profile of the endpoint allowed it: denied`,
    ...(passed ? { rule: passed } : {}),
    tiers: traces,
    profiles,
    notes,
  };
}

// ---------------------------------------------------------------------------------------------
// A cluster's view, built from feed updates (what that cluster's syncer would send its agents)

export interface ViewItem {
  key: string;
  kind: 'workloadEndpoint' | 'hostEndpoint' | 'networkSet';
  /** The cluster the item (and its labels) came from. */
  cluster: string;
  namespace?: string;
  name: string;
  pod?: string;
  nets: Cidr[];
  namedPorts?: ReadonlyMap<string, readonly string[]>;
  /** The profiles the endpoint names, in order (as the feed spells them). */
  profiles?: readonly string[];
}

/**
 * One cluster's view: its own policies (compiled), every item a rule can match (its own and its
 * remotes' endpoints and network sets) in a LabelIndex, as its calculation graph would hold them.
 * Updates are a snapshot (deletions are ignored); an update the graph would refuse is refused here.
 */
export class ClusterView {
  readonly index = new LabelIndex({ send: () => {} });
  readonly policies: CompiledPolicy[] = [];
  readonly refused: { key: string; reason: string }[] = [];
  readonly items = new Map<string, ViewItem>();
  /** Orders of the cluster's own Tier resources (tiers are never federated). */
  readonly tierOrders = new Map<string, number>();
  /** The cluster's tiers whose defaultAction is Pass. */
  readonly passTiers = new Set<string>();
  /** The cluster's own profiles' rules (remote profiles carry labels only). */
  readonly profileRules = new Map<string, CompiledProfile>();

  constructor(
    /** The view's own (local) cluster. */
    readonly cluster: string,
    updates: Iterable<Update> = [],
  ) {
    for (const u of updates) this.apply(u);
  }

  apply(u: Update): void {
    if (u.deleted) return;
    try {
      this.set(u);
    } catch (e) {
      if (e instanceof PolicyError || e instanceof NetParseError) {
        this.refused.push({ key: u.key, reason: e.message });
        return;
      }
      throw e;
    }
  }

  private set(u: Update): void {
    const b = u.body;
    const cluster = u.cluster || this.cluster;
    const add = (item: ViewItem, ownLabels: Labels, profiles: readonly string[]) => {
      this.index.upsertItem({
        key: item.key,
        ownLabels,
        profiles,
        namespace: item.namespace,
        nets: item.nets,
        ...(item.namedPorts ? { namedPorts: item.namedPorts } : {}),
      });
      this.items.set(item.key, profiles.length > 0 ? { ...item, profiles } : item);
    };
    switch (b.case) {
      case 'workloadEndpoint': {
        const w = b.value;
        const item: ViewItem = {
          key: u.key,
          kind: 'workloadEndpoint',
          cluster,
          name: w.name,
          pod: w.pod,
          nets: w.ipv4Nets.map((n) => parseCidr(n, false)),
        };
        if (w.namespace) item.namespace = w.namespace;
        const np = namedPortsOf(w.ports);
        if (np) item.namedPorts = np;
        add(item, w.labels, w.profiles);
        return;
      }
      case 'hostEndpoint': {
        const h = b.value;
        const item: ViewItem = {
          key: u.key,
          kind: 'hostEndpoint',
          cluster,
          name: h.name,
          nets: h.expectedIpv4s.map((ip) => parseCidr(`${ip}/32`)),
        };
        const np = namedPortsOf(h.ports);
        if (np) item.namedPorts = np;
        add(item, h.labels, h.profiles);
        return;
      }
      case 'networkSet': {
        const s = b.value;
        const item: ViewItem = {
          key: u.key,
          kind: 'networkSet',
          cluster,
          name: s.name,
          nets: s.nets.map((n) => parseCidr(n)),
        };
        if (s.namespace) item.namespace = s.namespace;
        add(item, s.labels, []);
        return;
      }
      case 'profile':
        if (cluster === this.cluster) this.profileRules.set(u.key, compileProfile(u.key, b.value));
        this.index.setProfileLabels(u.key, b.value.labels);
        return;
      case 'tier': {
        if (cluster !== this.cluster) {
          this.refused.push({ key: u.key, reason: 'tiers are never federated from remote clusters' });
          return;
        }
        if (b.value.hasOrder) this.tierOrders.set(b.value.name, b.value.order);
        else this.tierOrders.delete(b.value.name);
        if (b.value.defaultAction === 'Pass') this.passTiers.add(b.value.name);
        else this.passTiers.delete(b.value.name);
        return;
      }
      case 'policy': {
        if (cluster !== this.cluster) {
          this.refused.push({ key: u.key, reason: 'policies are never federated from remote clusters' });
          return;
        }
        const compiled = compilePolicy(b.value);
        const i = this.policies.findIndex((p) => p.key === compiled.key);
        if (i >= 0) this.policies[i] = compiled;
        else this.policies.push(compiled);
        return;
      }
      default:
        return;
    }
  }

  labels(key: string): Labels | undefined {
    return this.index.getLabels(key);
  }

  /** An endpoint's profiles with their rules, in its order; one the cluster lacks has none. */
  profilesOf(key: string): CompiledProfile[] {
    return (this.items.get(key)?.profiles ?? []).map(
      (id) => this.profileRules.get(id) ?? { id: id as ProfileId, inbound: [], outbound: [], matchers: [] },
    );
  }

  /** Items holding the address: workload endpoints first, then host endpoints, then network sets. */
  itemsAt(ip: Ip4): ViewItem[] {
    const rank = { workloadEndpoint: 0, hostEndpoint: 1, networkSet: 2 } as const;
    return [...this.items.values()]
      .filter((it) => it.nets.some((n) => cidrContainsIp(n, ip)))
      .sort((a, b) => rank[a.kind] - rank[b.kind] || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** A flow end at this address, as this cluster sees it. */
  peer(ip: Ip4): FlowPeer {
    return {
      ip,
      items: this.itemsAt(ip).map((it) =>
        it.namedPorts ? { key: it.key, namedPorts: it.namedPorts } : { key: it.key },
      ),
    };
  }

  /** How `fedmesh eval` names an item: `<ns>/<name>` locally, `<cluster>/<ns>/<name>` for remotes. */
  displayName(item: ViewItem): string {
    const local = item.cluster === this.cluster;
    const base = item.namespace ? `${item.namespace}/${item.name}` : item.name;
    return local ? base : `${item.cluster}/${base}`;
  }
}
