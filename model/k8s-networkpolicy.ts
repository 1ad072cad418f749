// A Kubernetes NetworkPolicy (networking.k8s.io/v1) as the projectcalico.org/v3 NetworkPolicy
// Calico's own converter makes of it (libcalico-go, K8sNetworkPolicyToCalico), so that a
// cluster run by fedmesh and one run by Calico enforce the same thing:
//
//   - name `knp.default.<name>`, tier default, order 1000;
//   - selector `projectcalico.org/orchestrator == 'k8s'` && the podSelector (the compiler limits
//     a namespaced policy to its own namespace);
//   - types from policyTypes, defaulted as the API server does (Ingress, plus Egress when there
//     are egress rules);
//   - one Allow rule per (protocol, peer): peers are OR-ed, a rule has one protocol; every peer
//     of a rule is combined with all of the rule's ports of that protocol.
//
// Input is the validated shape from model/validate/kube.ts. Pure: no I/O.
import type { Cidr } from './net.ts';
import type { EntityRule, Labels, NetworkPolicy, Origin, PortSpec, Rule } from './resources.ts';
import { parseSelector, SelectorParseError } from './selector/index.ts';

export const K8S_POLICY_PREFIX = 'knp.default.';
export const K8S_POLICY_ORDER = 1000;
const ORCHESTRATOR_SELECTOR = "projectcalico.org/orchestrator == 'k8s'";

export type LabelSelectorOperator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';

export interface LabelSelectorRequirement {
  key: string;
  operator: LabelSelectorOperator;
  /** Empty for Exists and DoesNotExist. */
  values: string[];
}

export interface LabelSelector {
  matchLabels: Labels;
  matchExpressions: LabelSelectorRequirement[];
}

/**
 * An ipBlock. fedmesh's dataplane is IPv4 only: an IPv6 block can match no IPv4 packet, so it is
 * kept only as `ipv6: true` (validated, but producing no rule).
 */
export type IpBlock = { ipv6: false; cidr: Cidr; except: Cidr[] } | { ipv6: true };

export interface Peer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: IpBlock;
}

export type K8sProtocol = 'TCP' | 'UDP' | 'SCTP';

export interface PolicyPort {
  protocol: K8sProtocol;
  /** A number, or the name of a container port. Absent: every port of the protocol. */
  port?: number | string;
  /** Last port of a range starting at `port` (numeric `port` only). */
  endPort?: number;
}

export interface PolicyRule {
  /** `from` (ingress) or `to` (egress); empty: any peer. */
  peers: Peer[];
  /** Empty: any port, any protocol. */
  ports: PolicyPort[];
}

export interface K8sNetworkPolicySpec {
  podSelector: LabelSelector;
  policyTypes?: ('Ingress' | 'Egress')[];
  ingress: PolicyRule[];
  egress: PolicyRule[];
}

export interface K8sNetworkPolicyMeta {
  name: string;
  namespace: string;
  labels: Labels;
  annotations: Labels;
  origin: Origin;
}

/** A field of the Kubernetes object that cannot be expressed; `field` is its dotted path. */
export class K8sPolicyConversionError extends Error {
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Selectors

/**
 * A string literal of the selector language. It has no escapes: a value is quoted with the quote
 * it does not contain, and a value containing both cannot be written at all.
 */
export function selectorLiteral(value: string, field: string): string {
  if (!value.includes("'")) return `'${value}'`;
  if (!value.includes('"')) return `"${value}"`;
  throw new K8sPolicyConversionError(
    field,
    `value ${JSON.stringify(value)} contains both ' and ", which a selector cannot express`,
  );
}

/** Label keys are words of the selector language; anything else would change its meaning. */
function selectorKey(key: string, field: string): string {
  if (!/^[A-Za-z0-9_./-]+$/.test(key)) {
    throw new K8sPolicyConversionError(
      field,
      `label key ${JSON.stringify(key)} cannot be used in a selector`,
    );
  }
  return key;
}

/**
 * The terms of a Kubernetes label selector in Calico's selector language, AND-ed: matchLabels
 * (sorted by key, as Calico does) then matchExpressions in order. `field` is the selector's path.
 */
export function labelSelectorTerms(s: LabelSelector, field: string): string[] {
  const terms: string[] = [];
  for (const key of Object.keys(s.matchLabels).sort()) {
    const f = `${field}.matchLabels[${JSON.stringify(key)}]`;
    terms.push(`${selectorKey(key, f)} == ${selectorLiteral(s.matchLabels[key] ?? '', f)}`);
  }
  s.matchExpressions.forEach((e, i) => {
    const f = `${field}.matchExpressions[${i}]`;
    const key = selectorKey(e.key, `${f}.key`);
    const values = () => e.values.map((v, j) => selectorLiteral(v, `${f}.values[${j}]`)).join(', ');
    switch (e.operator) {
      case 'In':
        terms.push(`${key} in {${values()}}`);
        break;
      case 'NotIn':
        terms.push(`${key} not in {${values()}}`);
        break;
      case 'Exists':
        terms.push(`has(${key})`);
        break;
      case 'DoesNotExist':
        terms.push(`!has(${key})`);
        break;
    }
  });
  return terms;
}

/** A pod selector: only Kubernetes pods (not host endpoints or network sets) are pods. */
function podSelector(s: LabelSelector | undefined, field: string): string {
  return checkedSelector([ORCHESTRATOR_SELECTOR, ...(s ? labelSelectorTerms(s, field) : [])], field);
}

/** A namespace selector: `{}` selects every namespace. */
function namespaceSelector(s: LabelSelector, field: string): string {
  const terms = labelSelectorTerms(s, field);
  return checkedSelector(terms.length > 0 ? terms : ['all()'], field);
}

/** Join the terms and make sure the selector parses (it always should: a guard, not a check). */
function checkedSelector(terms: string[], field: string): string {
  const text = terms.join(' && ');
  try {
    parseSelector(text);
  } catch (e) {
    if (e instanceof SelectorParseError) throw new K8sPolicyConversionError(field, e.message);
    throw e;
  }
  return text;
}

// ---------------------------------------------------------------------------------------------
// Rules

const emptyEntity = (): EntityRule => ({ nets: [], notNets: [], ports: [], notPorts: [] });

/** A peer as the selecting half of an entity rule; undefined for an IPv6 ipBlock (matches nothing). */
function peerEntity(peer: Peer | undefined, field: string): EntityRule | undefined {
  const e = emptyEntity();
  if (!peer) return e; // no peers: anywhere
  if (peer.ipBlock) {
    if (peer.ipBlock.ipv6) return undefined;
    e.nets = [peer.ipBlock.cidr];
    e.notNets = [...peer.ipBlock.except];
    return e;
  }
  // Calico: a peer's pod selector always limits to Kubernetes pods, even when only a
  // namespaceSelector is given. Without a namespaceSelector, the compiler limits the selector to
  // the policy's own namespace.
  e.selector = podSelector(peer.podSelector, `${field}.podSelector`);
  if (peer.namespaceSelector) {
    e.namespaceSelector = namespaceSelector(peer.namespaceSelector, `${field}.namespaceSelector`);
  }
  return e;
}

/** Sorted, merged numeric ranges (overlapping or adjacent ones joined), then the names. */
function simplifyPorts(ports: PortSpec[]): PortSpec[] {
  const nums = ports
    .filter((p): p is Extract<PortSpec, { kind: 'num' }> => p.kind === 'num')
    .sort((a, b) => a.first - b.first || a.last - b.last);
  const merged: Extract<PortSpec, { kind: 'num' }>[] = [];
  for (const p of nums) {
    const last = merged[merged.length - 1];
    if (last && p.first <= last.last + 1) last.last = Math.max(last.last, p.last);
    else merged.push({ ...p });
  }
  const names = [...new Set(ports.flatMap((p) => (p.kind === 'name' ? [p.name] : [])))];
  return [...merged, ...names.map((name): PortSpec => ({ kind: 'name', name }))];
}

/**
 * The rule's ports grouped by protocol, protocols sorted (as Calico). An empty list means every
 * port of that protocol; no ports at all gives one group with no protocol (anything).
 */
function portsByProtocol(ports: PolicyPort[]): { protocol?: string; ports: PortSpec[] }[] {
  if (ports.length === 0) return [{ ports: [] }];
  const groups = new Map<string, PortSpec[] | 'all'>();
  for (const p of ports) {
    const proto = p.protocol.toLowerCase();
    const spec: PortSpec | undefined =
      p.port === undefined
        ? undefined
        : typeof p.port === 'string'
          ? { kind: 'name', name: p.port }
          : { kind: 'num', first: p.port, last: p.endPort ?? p.port };
    const cur = groups.get(proto);
    if (cur === 'all') continue;
    if (!spec) groups.set(proto, 'all');
    else groups.set(proto, [...(cur ?? []), spec]);
  }
  return [...groups.keys()].sort().map((protocol) => {
    const g = groups.get(protocol);
    return { protocol, ports: g === 'all' || g === undefined ? [] : simplifyPorts(g) };
  });
}

function convertRule(rule: PolicyRule, ingress: boolean, field: string): Rule[] {
  const peerField = ingress ? 'from' : 'to';
  const peers: (Peer | undefined)[] = rule.peers.length > 0 ? rule.peers : [undefined];
  const peerEntities = peers.map((p, i) => peerEntity(p, `${field}.${peerField}[${i}]`));
  const out: Rule[] = [];
  for (const { protocol, ports } of portsByProtocol(rule.ports)) {
    for (const peer of peerEntities) {
      if (!peer) continue;
      const r: Rule = ingress
        ? { action: 'Allow', source: { ...peer }, destination: { ...emptyEntity(), ports: [...ports] } }
        : { action: 'Allow', source: emptyEntity(), destination: { ...peer, ports: [...ports] } };
      if (protocol !== undefined) r.protocol = protocol;
      out.push(r);
    }
  }
  return out;
}

/**
 * The API server's default for absent policyTypes: Ingress always, Egress when there are egress
 * rules. Calico's converter sees the defaulted object; fedmesh's file datastore has no API
 * server, so the default is applied here.
 */
function policyTypes(spec: K8sNetworkPolicySpec): NetworkPolicy['spec']['types'] {
  const types = spec.policyTypes;
  if (types && types.length > 0)
    return { ingress: types.includes('Ingress'), egress: types.includes('Egress') };
  return { ingress: true, egress: spec.egress.length > 0 };
}

/** The Calico NetworkPolicy for a validated Kubernetes NetworkPolicy; throws K8sPolicyConversionError. */
export function k8sNetworkPolicyToCalico(
  meta: K8sNetworkPolicyMeta,
  spec: K8sNetworkPolicySpec,
): NetworkPolicy {
  const types = policyTypes(spec);
  const selector = podSelector(spec.podSelector, 'spec.podSelector');
  const ingress = spec.ingress.flatMap((r, i) => convertRule(r, true, `spec.ingress[${i}]`));
  const egress = spec.egress.flatMap((r, i) => convertRule(r, false, `spec.egress[${i}]`));
  return {
    kind: 'NetworkPolicy',
    name: `${K8S_POLICY_PREFIX}${meta.name}`,
    namespace: meta.namespace,
    labels: meta.labels,
    annotations: meta.annotations,
    origin: meta.origin,
    spec: {
      tier: 'default',
      order: K8S_POLICY_ORDER,
      selector,
      types,
      // Rules of a direction the policy does not apply to never take effect (Calico keeps them,
      // inert); they are dropped so that they cost no ipsets.
      ingress: types.ingress ? ingress : [],
      egress: types.egress ? egress : [],
    },
  };
}
