// Network-shaped scalars: CIDRs, addresses, MACs, ports and protocols, as Calico accepts them.
// fedmesh's dataplane is IPv4 only: where an IPv6 entry can simply not match IPv4 traffic (an
// endpoint's addresses, a network set) it is dropped; where dropping it would widen a match (a
// rule's nets) it is refused.
import { z } from 'zod';
import { type Cidr, type Ip4, isCanonicalCidr, type Mac, parseCidr, parseIp4, parseMac } from '../net.ts';
import type { NamedPort, PortSpec } from '../resources.ts';
import { checked, checkInt, describe, FieldError, requireString } from './common.ts';

export function isIPv6(s: string): boolean {
  return s.includes(':');
}

function noIPv6(s: string): string {
  if (isIPv6(s)) throw new FieldError(`"${s}" is IPv6; fedmesh supports IPv4 only`);
  return s;
}

/** A network, strictly masked (`10.0.0.5/24` is refused: a typo must not widen a match). */
export function checkCidr(v: unknown): Cidr {
  return parseCidr(noIPv6(requireString(v)));
}

/**
 * An endpoint's own address (`ipNetworks`, pod IPs): a bare address becomes /32, and host bits
 * keep the address as a /32 — `10.0.0.5/24` is the endpoint 10.0.0.5, never the whole /24.
 */
export function checkIpNetwork(v: unknown): Cidr {
  const s = noIPv6(requireString(v)).trim();
  if (isCanonicalCidr(s)) return s as Cidr;
  const exact = parseCidr(s, true);
  const [addr] = s.split('/');
  return exact.split('/')[0] === addr ? exact : (`${parseIp4(addr ?? '')}/32` as Cidr);
}

export function checkIp4(v: unknown): Ip4 {
  return parseIp4(noIPv6(requireString(v)));
}

export function checkMac(v: unknown): Mac {
  return parseMac(requireString(v));
}

export const cidrSchema = checked(checkCidr);
export const ip4Schema = checked(checkIp4);
export const macSchema = checked(checkMac);

/**
 * A list of addresses or networks. IPv6 entries are dropped when `dropIPv6` (they cannot match
 * IPv4 traffic, and dual-stack clusters are common); otherwise they are refused.
 */
export function addressList<T>(parse: (v: unknown) => T, dropIPv6: boolean) {
  return z
    .array(z.unknown())
    .default([])
    .transform((items, ctx): T[] => {
      const out: T[] = [];
      items.forEach((item, i) => {
        try {
          if (dropIPv6 && typeof item === 'string' && isIPv6(item)) return;
          out.push(parse(item));
        } catch (e) {
          ctx.addIssue({ code: 'custom', message: (e as Error).message, path: [i], input: item });
        }
      });
      return out;
    });
}

// ---------------------------------------------------------------------------------------------
// Ports and protocols

const PROTOCOL_NAMES = ['tcp', 'udp', 'icmp', 'icmpv6', 'sctp', 'udplite'] as const;
// Protocols that carry ports, by name and by number (TCP 6, UDP 17, SCTP 132, UDPLite 136).
const PORT_PROTOCOLS = new Set(['tcp', 'udp', 'sctp', 'udplite', '6', '17', '132', '136']);
const ICMP_PROTOCOLS = new Set(['icmp', 'icmpv6', '1', '58']);

/** TCP, udp, "6", 17 → lower-case name or the number as a string. */
export function checkProtocol(v: unknown): string {
  if (typeof v === 'number') return String(checkInt(v, 1, 255));
  if (typeof v !== 'string') throw new FieldError(`expected a protocol, got ${describe(v)}`);
  const lower = v.toLowerCase();
  if ((PROTOCOL_NAMES as readonly string[]).includes(lower)) return lower;
  if (/^[0-9]+$/.test(v)) return String(checkInt(v, 1, 255));
  throw new FieldError(`unknown protocol "${v}": expected TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1..255`);
}

export function protocolHasPorts(p: string): boolean {
  return PORT_PROTOCOLS.has(p);
}
export function protocolIsIcmp(p: string): boolean {
  return ICMP_PROTOCOLS.has(p);
}

/** Kubernetes IANA_SVC_NAME: how container ports are named, so what a named rule port can match. */
export function checkPortName(s: string): string {
  if (s.length > 15 || !/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(s) || !/[a-z]/.test(s) || s.includes('--')) {
    throw new FieldError(
      `"${s}" is neither a port (1..65535), a range "first:last" nor a port name (at most 15 lower-case letters, digits and '-', with a letter)`,
    );
  }
  return s;
}

function portNumber(s: string, whole: string): number {
  const n = Number(s);
  if (n < 1 || n > 65535) throw new FieldError(`port ${s} in "${whole}" is out of range 1..65535`);
  return n;
}

/** `80`, `"80"`, `"8000:8080"` or `"http"`. */
export function checkPort(v: unknown): PortSpec {
  if (typeof v === 'number') {
    const n = checkInt(v, 1, 65535);
    return { kind: 'num', first: n, last: n };
  }
  if (typeof v !== 'string') throw new FieldError(`expected a port, range or port name, got ${describe(v)}`);
  const range = /^([0-9]+):([0-9]+)$/.exec(v);
  if (range) {
    const first = portNumber(range[1] ?? '', v);
    const last = portNumber(range[2] ?? '', v);
    if (first > last) throw new FieldError(`port range "${v}" is backwards (${first} > ${last})`);
    return { kind: 'num', first, last };
  }
  if (/^[0-9]+$/.test(v)) {
    const n = portNumber(v, v);
    return { kind: 'num', first: n, last: n };
  }
  return { kind: 'name', name: checkPortName(v) };
}

export const portListSchema = z.array(checked(checkPort)).default([]);

/** An endpoint's named port (`ports` of a WorkloadEndpoint or HostEndpoint). */
export const namedPortSchema = z
  .object({
    name: checked((v) => checkPortName(requireString(v))),
    protocol: checked((v) => checkProtocol(v)).default('tcp'),
    port: checked((v) => checkInt(v, 1, 65535)),
  })
  .superRefine((p, ctx) => {
    if (!protocolHasPorts(p.protocol)) {
      ctx.addIssue({ code: 'custom', message: `protocol ${p.protocol} has no ports`, path: ['protocol'] });
    }
  })
  .transform((p): NamedPort => ({ name: p.name, protocol: p.protocol, port: p.port }));
