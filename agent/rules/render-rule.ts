// One compiled policy rule → iptables rules. Pure. The match is what Calico's rule says; the
// action uses Felix's mark protocol: Allow sets the accept mark and returns, Pass sets the pass
// mark and returns (on to the next tier), Deny drops, Log logs and carries on.
import { protocolNumber } from '../../model/protocols.ts';
import type { CompiledEntity, CompiledRule, PortRange } from '../calc/messages.ts';
import { ipsetName } from './names.ts';
import type { Rule } from './types.ts';

export const MARK_ACCEPT = 0x10000;
export const MARK_PASS = 0x20000;
export const MARK_MASK = MARK_ACCEPT | MARK_PASS;
export const hex = (n: number) => `0x${n.toString(16)}`;

/** iptables' multiport takes at most 15 ports, a range counting as two. */
const MULTIPORT_MAX = 15;

function portChunks(ranges: readonly PortRange[]): string[][] {
  const chunks: string[][] = [];
  let cur: string[] = [];
  let used = 0;
  for (const r of ranges) {
    const cost = r.first === r.last ? 1 : 2;
    if (used + cost > MULTIPORT_MAX) {
      chunks.push(cur);
      cur = [];
      used = 0;
    }
    cur.push(r.first === r.last ? String(r.first) : `${r.first}:${r.last}`);
    used += cost;
  }
  if (cur.length) chunks.push(cur);
  return chunks;
}

function entityMatches(e: CompiledEntity, side: 'src' | 'dst'): string[] {
  const flag = side === 'src' ? '-s' : '-d';
  // iptables refuses a second -s/-d in one rule ("multiple -d flags not allowed"); the compiler
  // puts every further CIDR list into a set, so both here is a bug, stopped before the kernel.
  if (e.net && e.notNet)
    throw new Error(`${side}: ${e.net} and not ${e.notNet} inline (one ${flag} per rule)`);
  const out: string[] = [];
  if (e.net) out.push(`${flag} ${e.net}`);
  if (e.notNet) out.push(`! ${flag} ${e.notNet}`);
  for (const s of e.ipSets) out.push(`-m set --match-set ${ipsetName(s)} ${side}`);
  for (const s of e.notIpSets) out.push(`-m set ! --match-set ${ipsetName(s)} ${side}`);
  return out;
}

function notPortMatches(e: CompiledEntity, side: 'src' | 'dst'): string[] {
  const opt = side === 'src' ? '--sports' : '--dports';
  const out = portChunks(e.notPorts).map((c) => `-m multiport ! ${opt} ${c.join(',')}`);
  for (const s of e.notNamedPortIpSets ?? [])
    out.push(`-m set ! --match-set ${ipsetName(s)} ${side},${side}`);
  return out;
}

/**
 * Alternatives for one entity's positive port matches: numeric port chunks and named-port sets are
 * OR-ed, so each becomes its own iptables rule.
 */
function portAlternatives(e: CompiledEntity, side: 'src' | 'dst'): string[] | undefined {
  const opt = side === 'src' ? '--sports' : '--dports';
  const alts = portChunks(e.ports).map((c) => `-m multiport ${opt} ${c.join(',')}`);
  for (const s of e.namedPortIpSets) alts.push(`-m set --match-set ${ipsetName(s)} ${side},${side}`);
  return alts.length ? alts : undefined;
}

function icmpMatch(i: { type?: number; code?: number }, negate: boolean, proto: string): string {
  const t = i.type === undefined ? 'any' : i.code === undefined ? String(i.type) : `${i.type}/${i.code}`;
  return `-m ${proto === 'icmpv6' ? 'icmp6' : 'icmp'} ${negate ? '! ' : ''}--icmp-type ${t}`;
}

/** The match strings of a rule: one per combination of OR-ed port alternatives. */
export function ruleMatches(r: CompiledRule): string[] {
  if (r.matchesNothing || r.src.matchesNothing || r.dst.matchesNothing) return [];
  const base: string[] = [];
  if (r.protocol) base.push(`-p ${r.protocol}`);
  // iptables takes one -p per rule: a protocol already excludes every other, so notProtocol only
  // matters alone, or when it names the same protocol (then nothing can match).
  if (r.protocol && r.notProtocol && protocolNumber(r.protocol) === protocolNumber(r.notProtocol)) return [];
  if (r.notProtocol && !r.protocol) base.push(`! -p ${r.notProtocol}`);
  base.push(...entityMatches(r.src, 'src'), ...entityMatches(r.dst, 'dst'));
  base.push(...notPortMatches(r.src, 'src'), ...notPortMatches(r.dst, 'dst'));
  const icmpProto = r.protocol === 'icmpv6' ? 'icmpv6' : 'icmp';
  if (r.icmp) base.push(icmpMatch(r.icmp, false, icmpProto));
  if (r.notIcmp) base.push(icmpMatch(r.notIcmp, true, icmpProto));
  const srcAlts = portAlternatives(r.src, 'src') ?? [''];
  const dstAlts = portAlternatives(r.dst, 'dst') ?? [''];
  const out: string[] = [];
  for (const s of srcAlts) for (const d of dstAlts) out.push([...base, s, d].filter(Boolean).join(' '));
  return out;
}

/** iptables --log-prefix is at most 29 characters. */
export function logPrefix(policy: string): string {
  return `calico-packet ${policy}`.slice(0, 28).replace(/"/g, '') + ' ';
}

export function renderRule(r: CompiledRule, policyName: string, comment: string): Rule[] {
  const out: Rule[] = [];
  for (const match of ruleMatches(r)) {
    switch (r.action) {
      case 'allow':
        out.push({ match, action: `-j MARK --set-xmark ${hex(MARK_ACCEPT)}/${hex(MARK_ACCEPT)}`, comment });
        out.push({ match: `-m mark --mark ${hex(MARK_ACCEPT)}/${hex(MARK_ACCEPT)}`, action: '-j RETURN' });
        break;
      case 'pass':
        out.push({ match, action: `-j MARK --set-xmark ${hex(MARK_PASS)}/${hex(MARK_PASS)}`, comment });
        out.push({ match: `-m mark --mark ${hex(MARK_PASS)}/${hex(MARK_PASS)}`, action: '-j RETURN' });
        break;
      case 'deny':
        out.push({ match, action: '-j DROP', comment });
        break;
      case 'log':
        out.push({ match, action: `-j LOG --log-prefix "${logPrefix(policyName)}" --log-level 5`, comment });
        break;
    }
  }
  return out;
}
