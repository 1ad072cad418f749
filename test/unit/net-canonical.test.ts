// model/net.ts parseCidr answers a network already in canonical form without parsing it into
// numbers and writing it out again (isCanonicalCidr), and parseCidrParts reads a strictly written
// one by hand. On random near-CIDR strings (leading zeros,
// octets past 255, lengths past 32, host bits, stray characters), it gives what the parse and
// format give, and refuses what they refuse.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  intToIp4,
  ip4ToInt,
  isCanonicalCidr,
  NetParseError,
  parseCidr,
  parseCidrParts,
  parseIp4,
} from '../../model/net.ts';
import { requireString } from '../../model/validate/common.ts';
import { checkIpNetwork } from '../../model/validate/fields.ts';

const octet = fc.oneof(
  fc.nat(255).map(String),
  fc.constantFrom('0', '00', '01', '255', '256', '999', '1000', '', 'a', ' 1'),
);
const length = fc.oneof(fc.nat(32).map(String), fc.constantFrom('', '0', '00', '08', '33', '100', '3a'));
const cidrLike = fc
  .tuple(fc.array(octet, { minLength: 3, maxLength: 5 }), fc.option(length), fc.constantFrom('', ' ', '/'))
  .map(([octets, len, tail]) => `${octets.join('.')}${len === null ? '' : `/${len}`}${tail}`);
const anyNet = fc.oneof(cidrLike, fc.string({ maxLength: 20 }));

/** parseCidrParts as it was before its shortcut: split, matched, and summed. */
function slowParts(s: string, allowHostBits: boolean): { base: number; len: number } {
  const [addr, lenStr, extra] = s.trim().split('/');
  if (extra !== undefined || addr === undefined) throw new NetParseError(`"${s}" is not a CIDR`);
  const len = lenStr === undefined ? 32 : /^(0|[1-9][0-9]?)$/.test(lenStr) ? Number(lenStr) : Number.NaN;
  if (!(len >= 0 && len <= 32)) throw new NetParseError(`"${s}" has an invalid prefix length`);
  const ip = ip4ToInt(addr);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  const base = (ip & mask) >>> 0;
  if (base !== ip && !allowHostBits) {
    throw new NetParseError(`"${s}" has host bits set (did you mean ${intToIp4(base)}/${len}?)`);
  }
  return { base, len };
}

/** What parseCidr gave before the shortcut: parsed into numbers, written out again. */
function slowParse(s: string, allowHostBits: boolean): string {
  const { base, len } = slowParts(s, allowHostBits);
  return `${intToIp4(base)}/${len}`;
}

/** checkIpNetwork before the shortcut. */
function slowIpNetwork(s: string): string {
  const t = requireString(s).trim();
  const exact = slowParse(t, true);
  const [addr] = t.split('/');
  return exact.split('/')[0] === addr ? exact : `${parseIp4(addr ?? '')}/32`;
}

function outcome(f: () => string): string {
  try {
    return `ok ${f()}`;
  } catch (e) {
    return `error ${(e as Error).message}`;
  }
}

test('parseCidr, parseCidrParts and checkIpNetwork give what they gave before their shortcuts, on near-CIDR strings', () => {
  fc.assert(
    fc.property(anyNet, fc.boolean(), (s, allowHostBits) => {
      assert.equal(
        outcome(() => parseCidr(s, allowHostBits)),
        outcome(() => slowParse(s, allowHostBits)),
      );
      assert.equal(
        outcome(() => JSON.stringify(parseCidrParts(s, allowHostBits))),
        outcome(() => JSON.stringify(slowParts(s, allowHostBits))),
      );
      if (!s.includes(':'))
        assert.equal(
          outcome(() => checkIpNetwork(s)),
          outcome(() => slowIpNetwork(s)),
        );
    }),
    { numRuns: 20_000 },
  );
});

test('a canonical network is recognised as one; the rest is not', () => {
  for (const s of ['10.0.0.5/32', '0.0.0.0/0', '192.168.0.0/16', '255.255.255.255/32'])
    assert.ok(isCanonicalCidr(s), s);
  for (const s of [
    '10.0.0.5',
    '10.0.0.5/24',
    '010.0.0.5/32',
    '10.0.0.5/032',
    '10.0.0.256/32',
    ' 10.0.0.5/32',
  ])
    assert.ok(!isCanonicalCidr(s), s);
});

test('parseIp4 gives what the parse and format give (its canonical shortcut included), and refuses the rest', () => {
  const addressLike = fc
    .tuple(fc.array(octet, { minLength: 3, maxLength: 5 }), fc.constantFrom('', ' ', '/', '/32'))
    .map(([octets, tail]) => `${octets.join('.')}${tail}`);
  fc.assert(
    fc.property(fc.oneof(addressLike, fc.string({ maxLength: 16 })), (s) => {
      assert.equal(
        outcome(() => parseIp4(s)),
        outcome(() => intToIp4(ip4ToInt(s))),
      );
    }),
    { numRuns: 20_000 },
  );
});
