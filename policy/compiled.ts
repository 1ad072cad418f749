// What a policy compiles to, shared by everything that compiles one: the agent's calculation
// graph (which programs it), the syncer (which refuses a policy no agent could compile) and the CLI
// (eval, explain). A layer below all three, so their dependencies point one way.
import type { Cidr } from '../model/net.ts';
import type { Selector } from '../model/selector/index.ts';

declare const brand: unique symbol;
/** A selector/ipset identity: 's:<hash>' for rule selectors, 'n:<hash>' for net lists, or a fixed name. */
export type IpSetId = string & { readonly [brand]: 'IpSetId' };
/** A policy's identity in the dataplane: `<tier>/<namespace>/<name>` or `<tier>/<name>`. */
export type PolicyKey = string & { readonly [brand]: 'PolicyKey' };

export type IpSetType = 'hash:net' | 'hash:ip,port';

export interface PortRange {
  first: number;
  last: number;
}

export interface CompiledEntity {
  /** Each must match (AND). */
  ipSets: IpSetId[];
  /** None may match. */
  notIpSets: IpSetId[];
  /** A single net is rendered inline; lists become ipsets (ipSets/notIpSets). */
  net?: Cidr;
  notNet?: Cidr;
  ports: PortRange[];
  notPorts: PortRange[];
  /** Named ports resolve to hash:ip,port sets: the address and port must be in one of them. */
  namedPortIpSets: IpSetId[];
  /** Named ports in notPorts: the address and port must be in none of these sets. */
  notNamedPortIpSets?: IpSetId[];
  /** A condition nothing can satisfy (a named port on the source side, say). */
  matchesNothing?: boolean;
}

export type RuleAction = 'allow' | 'deny' | 'log' | 'pass';

export interface CompiledRule {
  action: RuleAction;
  protocol?: string;
  notProtocol?: string;
  icmp?: { type?: number; code?: number };
  notIcmp?: { type?: number; code?: number };
  src: CompiledEntity;
  dst: CompiledEntity;
  /** This rule can never match (e.g. it names a port nobody has): rendered as nothing. */
  matchesNothing?: boolean;
}

/** A profile's id as the local cluster names it (`kns.shop`, `ksa.shop.default`, a Profile's name). */
export type ProfileId = string & { readonly [brand]: 'ProfileId' };

/** A rule-side condition on items; everything given must hold. */
export interface MatcherSpec {
  id: IpSetId;
  type: IpSetType;
  selector?: Selector;
  notSelector?: Selector;
  /** Calico namespaceSelector semantics: all() → any namespaced item, global() → non-namespaced. */
  namespaceSelector?: Selector;
  /** Limit to one namespace (rule selectors of a namespaced policy without a namespaceSelector). */
  namespace?: string;
  serviceAccountNames?: readonly string[];
  serviceAccountSelector?: Selector;
  /** For hash:ip,port sets: the named port (and protocol) whose number each item contributes. */
  namedPort?: { name: string; protocol: string };
  /** Static members (net lists): no item matching at all. */
  staticMembers?: readonly string[];
}
