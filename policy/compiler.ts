// Turns one feed Policy into what the dataplane needs: its (namespace-scoped) selector, its ordering
// keys, and its rules with every selector replaced by an ipset id. Pure: no state, no I/O, so a bad
// policy is refused here, whole, before it can touch anything.
import { textDigest } from '../lib/hash.ts';
import { type Cidr, NetParseError, parseCidr } from '../model/net.ts';
import type { Node } from '../model/selector/ast.ts';
import { NAMESPACE_LABEL } from '../model/selector/ast.ts';
import {
  parseSelectorCached,
  type Selector,
  SelectorParseError,
  selectorAst,
} from '../model/selector/index.ts';
import {
  Action,
  type EntityRule,
  type PortRange as PbPortRange,
  type Policy,
  type Profile,
  type Rule,
} from '../proto/service.ts';
import type {
  CompiledEntity,
  CompiledRule,
  IpSetId,
  MatcherSpec,
  PolicyKey,
  PortRange,
  ProfileId,
  RuleAction,
} from './compiled.ts';

export class PolicyError extends Error {
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

export interface CompiledPolicy {
  key: PolicyKey;
  displayName: string;
  tier: string;
  /** Calico: policies without an order sort after all ordered ones. */
  order: number;
  name: string;
  /** The policy's selector, limited to its namespace for a namespaced policy. */
  selector: Selector;
  ingress: boolean;
  egress: boolean;
  /** Host endpoint policy kinds (Calico): forwarded traffic too; before DNAT; untracked. */
  applyOnForward: boolean;
  preDNAT: boolean;
  doNotTrack: boolean;
  inbound: CompiledRule[];
  outbound: CompiledRule[];
  /** Every matcher the rules use, de-duplicated by id. */
  matchers: MatcherSpec[];
}

export function policyKey(p: Pick<Policy, 'tier' | 'namespace' | 'name'>): PolicyKey {
  const tier = p.tier || 'default';
  return (p.namespace ? `${tier}/${p.namespace}/${p.name}` : `${tier}/${p.name}`) as PolicyKey;
}

function hashId(prefix: string, text: string): string {
  return prefix + textDigest('sha224', text, 'base64url');
}

/**
 * Where global() may stand, as Calico's validator (the CRDs' CEL rules and validateEntityRule)
 * allows it: anywhere it is simply true (a rule's notSelector, a service-account selector), only
 * alone in a rule's namespaceSelector (where it means "non-namespaced"), and nowhere in a policy's
 * selector or a rule's selector.
 */
type GlobalUse = 'true' | 'alone' | 'refused';

const GLOBAL_ONLY_IN_NS = 'global() can only be used in an entity rule namespaceSelector';

function sel(text: string, field: string, global: GlobalUse = 'true'): Selector {
  let s: Selector;
  try {
    s = parseSelectorCached(text);
  } catch (e) {
    if (e instanceof SelectorParseError) throw new PolicyError(field, e.message);
    throw e;
  }
  if (global !== 'true' && usesGlobal(selectorAst(s))) {
    if (global === 'refused') throw new PolicyError(field, GLOBAL_ONLY_IN_NS);
    if (selectorAst(s).kind !== 'global') {
      throw new PolicyError(field, 'a namespaceSelector with global() must be global() alone');
    }
  }
  return s;
}

function usesGlobal(n: Node): boolean {
  switch (n.kind) {
    case 'global':
      return true;
    case 'not':
      return usesGlobal(n.operand);
    case 'and':
    case 'or':
      return n.operands.some(usesGlobal);
    default:
      return false;
  }
}

function quote(v: string): string {
  return JSON.stringify(v);
}

const ACTIONS: Record<number, RuleAction> = {
  [Action.ALLOW]: 'allow',
  [Action.DENY]: 'deny',
  [Action.LOG]: 'log',
  [Action.PASS]: 'pass',
};

const PORT_PROTOCOLS = new Set(['tcp', 'udp', 'sctp', 'udplite', '6', '17', '132', '136']);

class RuleCompiler {
  readonly matchers = new Map<string, MatcherSpec>();

  constructor(private readonly policy: Policy) {}

  compileRule(rule: Rule, field: string): CompiledRule {
    const action = ACTIONS[rule.action];
    if (!action) throw new PolicyError(`${field}.action`, `unknown action ${rule.action}`);
    const protocol = rule.protocol ? rule.protocol.toLowerCase() : undefined;
    const notProtocol = rule.notProtocol ? rule.notProtocol.toLowerCase() : undefined;
    const out: CompiledRule = {
      action,
      protocol,
      notProtocol,
      src: this.entity(rule.source, `${field}.source`, protocol, false),
      dst: this.entity(rule.destination, `${field}.destination`, protocol, true),
    };
    if (rule.icmp) out.icmp = icmpOf(rule.icmp);
    if (rule.notIcmp) out.notIcmp = icmpOf(rule.notIcmp);
    if (rule.ipVersion === 6) out.matchesNothing = true; // IPv4-only dataplane for now
    return out;
  }

  private entity(
    e: EntityRule | undefined,
    field: string,
    protocol: string | undefined,
    isDst: boolean,
  ): CompiledEntity {
    const out: CompiledEntity = { ipSets: [], notIpSets: [], ports: [], notPorts: [], namedPortIpSets: [] };
    if (!e) return out;
    const base = this.baseMatcher(e, field);
    const numericPorts = hasNumericPort(e.ports) || hasNumericPort(e.notPorts);
    if (numericPorts && !(protocol && PORT_PROTOCOLS.has(protocol))) {
      throw new PolicyError(`${field}.ports`, 'numeric ports need protocol TCP, UDP, SCTP or UDPLite');
    }
    const namedNot = e.notPorts.filter((p) => p.name);
    if (namedNot.length > 0 && !isDst) {
      // Refused rather than ignored: dropping it would make the rule match the excluded port too.
      throw new PolicyError(`${field}.notPorts`, 'named ports in a source notPorts are not supported');
    }
    out.ports = numericRanges(e.ports, `${field}.ports`);
    out.notPorts = numericRanges(e.notPorts, `${field}.notPorts`);
    const named = e.ports.filter((p) => p.name);
    if (named.length > 0 && !isDst) {
      out.matchesNothing = true; // source-side named ports: not supported, so the rule matches nothing
    } else {
      // The selection applies to every port alternative, numeric and named alike (a named-port set
      // already holds only selected endpoints, so alone it needs no separate selection set).
      if (base && (named.length === 0 || out.ports.length > 0))
        out.ipSets.push(this.add({ ...base, type: 'hash:net' }));
      // A named port is an (address, port) set: the endpoints the rule selects, each with its own
      // number for that name. Without a protocol, TCP and UDP both count.
      const protocols = protocol ? [protocol] : ['tcp', 'udp'];
      // A named port in notPorts: the destination's own number for that name is excluded.
      for (const p of namedNot) {
        for (const proto of protocols) {
          out.notNamedPortIpSets ??= [];
          out.notNamedPortIpSets.push(
            this.add({
              ...(base ?? { id: '' as IpSetId }),
              type: 'hash:ip,port',
              namedPort: { name: p.name, protocol: proto },
            }),
          );
        }
      }
      for (const p of named) {
        for (const proto of protocols) {
          out.namedPortIpSets.push(
            this.add({
              ...(base ?? { id: '' as IpSetId }),
              type: 'hash:ip,port',
              namedPort: { name: p.name, protocol: proto },
            }),
          );
        }
      }
    }
    const notSelected = this.notSelectorSet(e, field);
    if (notSelected) out.notIpSets.push(notSelected);
    this.netMatches(out, parseNets(e.nets, `${field}.nets`), parseNets(e.notNets, `${field}.notNets`));
    return out;
  }

  /**
   * nets (any of) and notNets (none of) for one side. iptables takes one `-s`/`-d` per rule, negated
   * or not, so at most one CIDR of a side is inline and every other list becomes a hash:net set
   * (an ipBlock with except: the block inline, the exceptions a set). A catch-all /0 cannot be a
   * hash:net member (the kernel refuses it) and needs none: among nets it admits everything; among
   * notNets it excludes everything, so the rule can never match (Felix drops such a rule too).
   */
  private netMatches(out: CompiledEntity, nets: readonly Cidr[], notNets: readonly Cidr[]): void {
    if (notNets.some(isCatchAll)) {
      out.matchesNothing = true;
      return;
    }
    const positive = nets.some(isCatchAll) ? [] : nets;
    if (positive.length === 1) out.net = positive[0];
    else if (positive.length > 1)
      out.ipSets.push(this.add({ id: '' as IpSetId, type: 'hash:net', staticMembers: [...positive] }));
    if (notNets.length === 1 && out.net === undefined) out.notNet = notNets[0];
    else if (notNets.length > 0)
      out.notIpSets.push(this.add({ id: '' as IpSetId, type: 'hash:net', staticMembers: [...notNets] }));
  }

  /**
   * The selecting part of an entity rule, or undefined if it selects by nothing but nets/ports.
   * A notSelector is not part of it: Felix renders it as its own negated set (`! --match-set`), so a
   * GlobalNetworkPolicy rule with only a notSelector also matches addresses outside every cluster.
   */
  private baseMatcher(e: EntityRule, field: string): MatcherSpec | undefined {
    const spec: MatcherSpec = { id: '' as IpSetId, type: 'hash:net' };
    let any = false;
    if (e.selector) {
      spec.selector = sel(e.selector, `${field}.selector`, 'refused');
      any = true;
    }
    if (e.namespaceSelector) {
      spec.namespaceSelector = sel(e.namespaceSelector, `${field}.namespaceSelector`, 'alone');
      any = true;
    }
    if (e.serviceAccounts && (e.serviceAccounts.names.length || e.serviceAccounts.selector)) {
      spec.serviceAccountNames = [...e.serviceAccounts.names].sort();
      if (e.serviceAccounts.selector) {
        spec.serviceAccountSelector = sel(e.serviceAccounts.selector, `${field}.serviceAccounts.selector`);
      }
      any = true;
    }
    // Calico: in a namespaced policy, a rule that selects (a notSelector counts) without a
    // namespaceSelector means "in this policy's namespace".
    if (this.policy.namespace && !spec.namespaceSelector && (any || e.notSelector))
      spec.namespace = this.policy.namespace;
    if (!any && spec.namespace === undefined) return undefined;
    return spec;
  }

  /** The notSelector's own set: `! --match-set` of everything it selects, in any namespace (Felix). */
  private notSelectorSet(e: EntityRule, field: string): IpSetId | undefined {
    if (!e.notSelector) return undefined;
    return this.add({
      id: '' as IpSetId,
      type: 'hash:net',
      selector: sel(e.notSelector, `${field}.notSelector`),
    });
  }

  private add(spec: MatcherSpec): IpSetId {
    const id = matcherId(spec);
    const full = { ...spec, id };
    if (!this.matchers.has(id)) this.matchers.set(id, full);
    return id;
  }
}

/** A stable id from a matcher's meaning: a plain selector keeps the selector's own id. */
export function matcherId(spec: MatcherSpec): IpSetId {
  if (spec.staticMembers) return hashId('n:', [...spec.staticMembers].sort().join(',')) as IpSetId;
  const plain =
    spec.type === 'hash:net' &&
    spec.selector &&
    !spec.notSelector &&
    !spec.namespaceSelector &&
    spec.namespace === undefined &&
    !spec.serviceAccountNames?.length &&
    !spec.serviceAccountSelector;
  if (plain && spec.selector) return spec.selector.id as IpSetId;
  const parts = [
    `sel=${spec.selector?.canonical ?? ''}`,
    `not=${spec.notSelector?.canonical ?? ''}`,
    `ns=${spec.namespaceSelector?.canonical ?? ''}`,
    `scope=${spec.namespace ?? ''}`,
    `sa=${(spec.serviceAccountNames ?? []).join(',')}`,
    `sasel=${spec.serviceAccountSelector?.canonical ?? ''}`,
    `np=${spec.namedPort ? `${spec.namedPort.protocol}:${spec.namedPort.name}` : ''}`,
  ];
  return hashId(spec.type === 'hash:net' ? 's:' : 'p:', parts.join(';')) as IpSetId;
}

const isCatchAll = (c: Cidr) => c.endsWith('/0');

function hasNumericPort(list: readonly PbPortRange[]): boolean {
  for (const p of list) if (!p.name) return true;
  return false;
}

/** The numeric port ranges of a list (named ones left out), each checked. */
function numericRanges(list: readonly PbPortRange[], field: string): PortRange[] {
  const ranges: PortRange[] = [];
  for (const [i, p] of list.entries()) {
    if (p.name) continue;
    if (p.first < 1 || p.last > 65535 || p.first > p.last) {
      throw new PolicyError(`${field}[${i}]`, `invalid port range ${p.first}:${p.last}`);
    }
    ranges.push({ first: p.first, last: p.last });
  }
  return ranges;
}

function parseNets(nets: readonly string[], field: string) {
  return nets.map((n, i) => {
    try {
      return parseCidr(n.includes('/') ? n : `${n}/32`);
    } catch (e) {
      if (e instanceof NetParseError) throw new PolicyError(`${field}[${i}]`, e.message);
      throw e;
    }
  });
}

function icmpOf(i: { hasType: boolean; type: number; hasCode: boolean; code: number }) {
  return { type: i.hasType ? i.type : undefined, code: i.hasCode ? i.code : undefined };
}

/** A profile's rules, compiled as a global policy's would be (Felix: profile rules are not namespaced). */
export interface CompiledProfile {
  id: ProfileId;
  inbound: CompiledRule[];
  outbound: CompiledRule[];
  matchers: MatcherSpec[];
}

export function compileProfile(
  id: string,
  p: Pick<Profile, 'inboundRules' | 'outboundRules'>,
): CompiledProfile {
  const rc = new RuleCompiler({ name: id, namespace: '' } as Policy);
  return {
    id: id as ProfileId,
    inbound: p.inboundRules.map((r, i) => rc.compileRule(r, `spec.ingress[${i}]`)),
    outbound: p.outboundRules.map((r, i) => rc.compileRule(r, `spec.egress[${i}]`)),
    matchers: [...rc.matchers.values()],
  };
}

export function compilePolicy(p: Policy): CompiledPolicy {
  if (!p.name) throw new PolicyError('metadata.name', 'missing');
  const rc = new RuleCompiler(p);
  const base = sel(p.selector || 'all()', 'spec.selector', 'refused');
  const selector = p.namespace
    ? sel(`(${base.canonical}) && ${NAMESPACE_LABEL} == ${quote(p.namespace)}`, 'spec.selector')
    : base;
  const inbound = p.ingressRules.map((r, i) => rc.compileRule(r, `spec.ingress[${i}]`));
  const outbound = p.egressRules.map((r, i) => rc.compileRule(r, `spec.egress[${i}]`));
  return {
    key: policyKey(p),
    displayName: p.namespace ? `${p.namespace}/${p.name}` : p.name,
    tier: p.tier || 'default',
    order: p.hasOrder ? p.order : Number.POSITIVE_INFINITY,
    name: p.name,
    selector,
    ingress: p.ingress,
    egress: p.egress,
    applyOnForward: p.applyOnForward || p.preDnat || p.doNotTrack,
    preDNAT: p.preDnat,
    doNotTrack: p.doNotTrack,
    inbound,
    outbound,
    matchers: [...rc.matchers.values()],
  };
}

/** Calico's ordering inside a tier: order ascending (none = last), then name. */
export function comparePolicies(a: CompiledPolicy, b: CompiledPolicy): number {
  if (a.order !== b.order) return a.order < b.order ? -1 : 1;
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}
