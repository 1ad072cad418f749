// IPv4 addresses and CIDRs as checked, canonical strings. Parsing is strict (no host bits, no
// leading zeros) so that a typo in a resource is refused rather than silently widened.
// Kept as small pure functions on numbers: this is on the calculation graph's hot path, where
// ip-num's bigint math would cost ~30 µs a call.

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** A dotted-quad IPv4 address, canonical form. */
export type Ip4 = Brand<string, 'Ip4'>;
/** An IPv4 network `a.b.c.d/len` with no host bits set, canonical form. */
export type Cidr = Brand<string, 'Cidr'>;
/** A MAC address, lower-case, colon separated. */
export type Mac = Brand<string, 'Mac'>;

export class NetParseError extends Error {}

export function ip4ToInt(s: string): number {
  const parts = s.split('.');
  if (parts.length !== 4) throw new NetParseError(`"${s}" is not an IPv4 address`);
  let n = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) {
      throw new NetParseError(`"${s}" is not an IPv4 address`);
    }
    n = n * 256 + Number(p);
  }
  return n;
}

export function intToIp4(n: number): Ip4 {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.') as Ip4;
}

export function parseIp4(s: string): Ip4 {
  // Already canonical (as most addresses read are): itself, without a split, a test and a join.
  if (scanCidr(s) && scannedBare) return s as Ip4;
  return intToIp4(ip4ToInt(s));
}

export interface ParsedCidr {
  base: number;
  len: number;
}

function maskOf(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

/** Parse `a.b.c.d/len` (or a bare address as /32). Host bits set is an error unless allowHostBits. */
export function parseCidrParts(s: string, allowHostBits = false): ParsedCidr {
  if (scanCidr(s)) {
    const base = (scannedIp & maskOf(scannedLen)) >>> 0;
    if (base === scannedIp || allowHostBits) return { base, len: scannedLen };
  }
  const [addr, lenStr, extra] = s.trim().split('/');
  if (extra !== undefined || addr === undefined) throw new NetParseError(`"${s}" is not a CIDR`);
  const len = lenStr === undefined ? 32 : /^(0|[1-9][0-9]?)$/.test(lenStr) ? Number(lenStr) : Number.NaN;
  if (!(len >= 0 && len <= 32)) throw new NetParseError(`"${s}" has an invalid prefix length`);
  const ip = ip4ToInt(addr);
  const base = (ip & maskOf(len)) >>> 0;
  if (base !== ip && !allowHostBits) {
    throw new NetParseError(`"${s}" has host bits set (did you mean ${intToIp4(base)}/${len}?)`);
  }
  return { base, len };
}

export function parseCidr(s: string, allowHostBits = false): Cidr {
  // Most networks read are written as parseCidr writes them: those are their own canonical form
  // (100,000 endpoints' addresses were parsed, formatted and split again, a tenth of their read).
  if (isCanonicalCidr(s)) return s as Cidr;
  const { base, len } = parseCidrParts(s, allowHostBits);
  return `${intToIp4(base)}/${len}` as Cidr;
}

/** What scanCidr read: the address, the prefix length, and whether it was a bare address. */
let scannedIp = 0;
let scannedLen = 0;
let scannedBare = false;

/**
 * Reads `a.b.c.d/len` or a bare `a.b.c.d`, written strictly (octets 0-255 and a length 0-32,
 * without leading zeros; nothing around): true, with scannedIp/scannedLen/scannedBare set; false
 * for anything else (the careful parse then says what). By hand: splits and regular expressions
 * on every address of 100,000 endpoints were a tenth of reading them.
 */
function scanCidr(s: string): boolean {
  let ip = 0;
  let i = 0;
  // Up to five decimals: four octets, each followed by `.` (`/` or the end after the fourth), then the length.
  for (let part = 0; part < 5; part++) {
    const start = i;
    let value = 0;
    for (; i < s.length && i - start < 4; i++) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      value = value * 10 + (c - 48);
    }
    const digits = i - start;
    if (digits === 0 || (digits > 1 && s.charCodeAt(start) === 48)) return false;
    if (part === 4) {
      if (digits > 2 || value > 32 || i !== s.length) return false;
      scannedIp = ip;
      scannedLen = value;
      scannedBare = false;
      return true;
    }
    if (digits > 3 || value > 255) return false;
    ip = ip * 256 + value;
    if (part === 3 && i === s.length) {
      scannedIp = ip;
      scannedLen = 32;
      scannedBare = true;
      return true;
    }
    if (s.charCodeAt(i) !== (part < 3 ? 46 /* . */ : 47) /* / */) return false;
    i += 1;
  }
  return false;
}

/**
 * `a.b.c.d/len` exactly as parseCidr writes a network (no host bits): parseCidr would give it
 * back unchanged.
 */
export function isCanonicalCidr(s: string): boolean {
  return scanCidr(s) && !scannedBare && (scannedIp & maskOf(scannedLen)) >>> 0 === scannedIp;
}

/** An endpoint address like `10.0.0.5/32` or `10.0.0.5`: the address, host bits allowed. */
export function addressOfIpNetwork(s: string): Ip4 {
  const [addr] = s.split('/');
  parseCidrParts(s, true);
  return parseIp4(addr ?? '');
}

export function cidrContainsIp(cidr: Cidr | ParsedCidr, ip: Ip4 | number): boolean {
  const c = typeof cidr === 'string' ? parseCidrParts(cidr) : cidr;
  const n = typeof ip === 'number' ? ip : ip4ToInt(ip);
  return (n & maskOf(c.len)) >>> 0 === c.base;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  const pa = parseCidrParts(a);
  const pb = parseCidrParts(b);
  const len = Math.min(pa.len, pb.len);
  return (pa.base & maskOf(len)) >>> 0 === (pb.base & maskOf(len)) >>> 0;
}

export function parseMac(s: string): Mac {
  const m = s.trim().toLowerCase();
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(m)) throw new NetParseError(`"${s}" is not a MAC address`);
  return m as Mac;
}
