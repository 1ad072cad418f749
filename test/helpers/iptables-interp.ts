// A small iptables interpreter for the rules fedmesh renders: walks one packet through a rendered
// table (what the kernel would do with it), so tests can check meaning, not text. It fails loudly
// on anything it does not know rather than guess.
import assert from 'node:assert/strict';
import type { Rule, Table } from '../../agent/rules/types.ts';
import { cidrContainsIp, type Ip4, parseCidr } from '../../model/net.ts';
import { protocolNumber } from '../../model/protocols.ts';

export interface Packet {
  iif?: string;
  oif?: string;
  src: string;
  dst: string;
  /** A protocol name (`tcp`, `udp`, `icmp`, `sctp`, `ipip`) or number as text. */
  proto: string;
  /** The destination is one of this host's addresses (`-m addrtype --dst-type LOCAL`). */
  local?: boolean;
  /** The source is one of this host's addresses (`-m addrtype --src-type LOCAL`). */
  localSource?: boolean;
  sport?: number;
  dport?: number;
  icmpType?: number;
  icmpCode?: number;
  ct?: 'NEW' | 'ESTABLISHED' | 'RELATED' | 'INVALID';
}

export type Verdict = 'ACCEPT' | 'DROP' | 'MASQUERADE';

export interface Walk {
  /** The verdict, or undefined when the packet leaves our chains without one (built-in policy). */
  verdict: Verdict | undefined;
  logs: string[];
  /** Chains entered, in order. */
  chains: string[];
  /** Rules evaluated. */
  steps: number;
}

/** ipset name → members (CIDRs for hash:net, `ip,proto:port` for hash:ip,port). */
export type IpSets = ReadonlyMap<string, readonly string[]>;

export function tokens(s: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|(\S+)/g;
  for (let m = re.exec(s); m; m = re.exec(s)) out.push(m[1] ?? m[2]!);
  return out;
}

export function ifaceMatches(pattern: string, name: string | undefined): boolean {
  if (name === undefined) return false;
  return pattern.endsWith('+') ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

/** `ipip` is protocol 4 (the name iptables prints for it); the rest as the flow evaluator reads them. */
function protoNumber(p: string): number | undefined {
  return p === 'ipip' ? 4 : protocolNumber(p);
}

function inCidr(c: string, ip: string): boolean {
  return cidrContainsIp(parseCidr(c.includes('/') ? c : `${c}/32`), ip as Ip4);
}

function portIn(list: string, port: number | undefined): boolean {
  if (port === undefined) return false;
  return list.split(',').some((p) => {
    const [a, b] = p.split(':').map(Number);
    return port >= a! && port <= (b ?? a!);
  });
}

export class Interp {
  mark = 0;
  readonly chains: Map<string, Rule[]>;

  constructor(
    table: Table,
    private readonly sets: IpSets,
  ) {
    this.chains = new Map(table.chains.map((c) => [c.name, c.rules]));
    assert.equal(this.chains.size, table.chains.length, 'chain names are unique');
  }

  private matches(match: string, p: Packet): boolean {
    const t = tokens(match);
    let i = 0;
    const next = () => {
      const v = t[i++];
      assert.ok(v !== undefined, `truncated match: ${match}`);
      return v;
    };
    // The kernel's own parse rule: one -s, -d, -p, -i, -o per rule, negated or not.
    const once = new Set<string>();
    while (i < t.length) {
      let neg = false;
      let tok = next();
      if (tok === '!') {
        neg = true;
        tok = next();
      }
      if (['-s', '-d', '-p', '-i', '-o'].includes(tok)) {
        assert.ok(!once.has(tok), `iptables refuses multiple ${tok} flags: ${match}`);
        once.add(tok);
      }
      let ok: boolean;
      switch (tok) {
        case '-i':
          ok = ifaceMatches(next(), p.iif);
          break;
        case '-o':
          ok = ifaceMatches(next(), p.oif);
          break;
        case '-p':
          ok = protoNumber(next()) === protoNumber(p.proto);
          break;
        case '-s':
          ok = inCidr(next(), p.src);
          break;
        case '-d':
          ok = inCidr(next(), p.dst);
          break;
        case '-m': {
          const mod = next();
          let n = false;
          let opt = next();
          if (opt === '!') {
            n = true;
            opt = next();
          }
          switch (`${mod} ${opt}`) {
            case 'set --match-set': {
              const name = next();
              const flags = next();
              const members = this.sets.get(name);
              assert.ok(members, `ipset ${name} is not defined`);
              if (flags === 'src' || flags === 'dst') {
                const ip = flags === 'src' ? p.src : p.dst;
                ok = members.some((c) => inCidr(c, ip));
              } else {
                const [side] = flags.split(',');
                const ip = side === 'src' ? p.src : p.dst;
                const port = side === 'src' ? p.sport : p.dport;
                ok = members.includes(`${ip},${p.proto.toLowerCase()}:${port}`);
              }
              break;
            }
            case 'multiport --dports':
              ok = portIn(next(), p.dport);
              break;
            case 'multiport --sports':
              ok = portIn(next(), p.sport);
              break;
            case 'mark --mark': {
              const [v, m] = next().split('/').map(Number);
              ok = (this.mark & m!) === v;
              break;
            }
            case 'addrtype --dst-type':
              assert.equal(next(), 'LOCAL');
              ok = p.local === true;
              break;
            case 'addrtype --src-type':
              assert.equal(next(), 'LOCAL');
              ok = p.localSource === true;
              break;
            case 'conntrack --ctstate':
              ok = next()
                .split(',')
                .includes(p.ct ?? 'NEW');
              break;
            case 'icmp --icmp-type': {
              const tc = next();
              const [ty, co] = tc.split('/').map(Number);
              ok =
                protoNumber(p.proto) === 1 &&
                (tc === 'any' || (p.icmpType === ty && (co === undefined || p.icmpCode === co)));
              break;
            }
            default:
              assert.fail(`the interpreter does not know "-m ${mod} ${opt}" in: ${match}`);
          }
          if (n) ok = !ok;
          break;
        }
        default:
          assert.fail(`the interpreter does not know "${tok}" in: ${match}`);
      }
      if (neg) ok = !ok;
      if (!ok) return false;
    }
    return true;
  }

  /** Runs a chain; undefined means it returned (or fell off its end). */
  run(name: string, p: Packet, w: Walk, depth = 0): Verdict | undefined {
    assert.ok(depth < 50, 'chain loop');
    const rules = this.chains.get(name);
    assert.ok(rules, `chain ${name} is not defined`);
    w.chains.push(name);
    for (const r of rules) {
      w.steps++;
      if (!this.matches(r.match, p)) continue;
      const a = tokens(r.action);
      const [kind, target] = a;
      if (kind === '-g') return this.run(target!, p, w, depth + 1);
      assert.equal(kind, '-j', r.action);
      switch (target) {
        case 'ACCEPT':
        case 'DROP':
        case 'MASQUERADE':
          return target;
        case 'RETURN':
          return undefined;
        case 'MARK': {
          assert.equal(a[2], '--set-xmark');
          const [v, m] = a[3]!.split('/').map(Number);
          this.mark = ((this.mark & ~m!) ^ v!) >>> 0;
          break;
        }
        case 'LOG':
          w.logs.push(a[a.indexOf('--log-prefix') + 1]!);
          break;
        default: {
          const v = this.run(target!, p, w, depth + 1);
          if (v) return v;
        }
      }
    }
    return undefined;
  }
}

/** Walks a packet through a table from a built-in chain's hooks (built-in policy: ACCEPT). */
export function walk(table: Table, builtin: string, p: Packet, sets: IpSets = new Map()): Walk {
  const it = new Interp(table, sets);
  const w: Walk = { verdict: undefined, logs: [], chains: [], steps: 0 };
  for (const h of table.hooks.filter((h) => h.chain === builtin)) {
    const a = tokens(h.rule.action);
    assert.equal(a[0], '-j');
    const v = it.run(a[1]!, p, w);
    if (v) {
      w.verdict = v;
      return w;
    }
  }
  return w;
}
