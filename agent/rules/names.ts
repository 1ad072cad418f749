// Kernel object names, Felix's way: recognisable prefixes so a restarted agent (and an operator)
// knows what is ours, and hashing where an id would overflow the kernel's name limits.
import { createHash } from 'node:crypto';
import type { IpSetId } from '../calc/messages.ts';

/** iptables chain names are limited to 28 characters (xtables' 29 minus the terminator). */
export const MAX_CHAIN_NAME = 28;
/** ipset names are limited to 31 characters. */
export const MAX_IPSET_NAME = 31;

declare const brand: unique symbol;
export type ChainName = string & { readonly [brand]: 'ChainName' };
export type IpSetName = string & { readonly [brand]: 'IpSetName' };

function hash64(text: string): string {
  return createHash('sha256').update(text).digest('base64url');
}

/**
 * `prefix + id`, or `prefix + '_' + hash(id)` cut to the limit when that would be too long or the id
 * has characters that are unsafe in a chain name (a policy key's '/').
 */
export function chainName(prefix: string, id: string): ChainName {
  const plain = prefix + id;
  if (plain.length <= MAX_CHAIN_NAME && /^[A-Za-z0-9._-]+$/.test(id)) return plain as ChainName;
  let name = hashedNames.get(plain);
  if (name === undefined) {
    name = (prefix + '_' + hash64(id)).slice(0, MAX_CHAIN_NAME) as ChainName;
    // Bounded: a long-running agent sees policies come and go; the memo only saves hashing.
    if (hashedNames.size >= HASHED_NAMES_MAX) hashedNames.clear();
    hashedNames.set(plain, name);
  }
  return name;
}

/**
 * Hashed names by `prefix + id`: every endpoint chain names each of its policies' chains, so a
 * render of 50 endpoints under 100 policies each hashed 20,000 names (most of a one-change write).
 */
const hashedNames = new Map<string, ChainName>();
const HASHED_NAMES_MAX = 100_000;

export const IPSET_PREFIX_V4 = 'cali40';

/** `cali40` + the id with ':' kept (Felix: cali40s:<hash>), truncated to 31 characters. */
export function ipsetName(id: IpSetId | string): IpSetName {
  return (IPSET_PREFIX_V4 + id).slice(0, MAX_IPSET_NAME) as IpSetName;
}

/** Calico's VXLAN port (Felix's VXLANPort default). */
export const VXLAN_PORT = 4789;

export const ALL_POOLS_SET = 'all-ipam-pools' as IpSetId;
export const MASQ_POOLS_SET = 'masq-ipam-pools' as IpSetId;
/** Node addresses of every known VTEP, local and remote clusters': the only VXLAN sources accepted. */
export const ALL_VXLAN_NET_SET = 'all-vxlan-net' as IpSetId;

export const chains = {
  forward: 'cali-FORWARD' as ChainName,
  input: 'cali-INPUT' as ChainName,
  prerouting: 'cali-PREROUTING' as ChainName,
  output: 'cali-OUTPUT' as ChainName,
  postrouting: 'cali-POSTROUTING' as ChainName,
  natOutgoing: 'cali-nat-outgoing' as ChainName,
  wlToHost: 'cali-wl-to-host' as ChainName,
  toWlDispatch: 'cali-to-wl-dispatch' as ChainName,
  fromWlDispatch: 'cali-from-wl-dispatch' as ChainName,
  toHostEndpoint: 'cali-to-host-endpoint' as ChainName,
  fromHostEndpoint: 'cali-from-host-endpoint' as ChainName,
  toHepForward: 'cali-to-hep-forward' as ChainName,
  fromHepForward: 'cali-from-hep-forward' as ChainName,
  failsafeIn: 'cali-failsafe-in' as ChainName,
  failsafeOut: 'cali-failsafe-out' as ChainName,
};

export const policyChain = (dir: 'in' | 'out', key: string) =>
  chainName(dir === 'in' ? 'cali-pi-' : 'cali-po-', key);
/** Felix's profile chains: inbound (to the endpoint) `cali-pri-`, outbound `cali-pro-`. */
export const profileChain = (dir: 'in' | 'out', id: string) =>
  chainName(dir === 'in' ? 'cali-pri-' : 'cali-pro-', id);
/** Host endpoint chains (Felix): to/from the host, and for forwarded traffic. */
export const toHostChain = (iface: string) => chainName('cali-th-', iface);
export const fromHostChain = (iface: string) => chainName('cali-fh-', iface);
export const toHostForwardChain = (iface: string) => chainName('cali-thfw-', iface);
export const fromHostForwardChain = (iface: string) => chainName('cali-fhfw-', iface);
export const toWorkloadChain = (iface: string) => chainName('cali-tw-', iface);
export const fromWorkloadChain = (iface: string) => chainName('cali-fw-', iface);
