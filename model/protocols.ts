// IP protocols by the names Calico accepts, both ways: one table for the rule renderer, the flow
// evaluator behind `fedmesh explain` and the tests' iptables interpreter.

/** IANA protocol numbers of the names Calico accepts. */
export const PROTOCOL_NUMBERS: Readonly<Record<string, number>> = {
  icmp: 1,
  tcp: 6,
  udp: 17,
  icmpv6: 58,
  sctp: 132,
  udplite: 136,
};

/** A protocol name (any case) or number as text → its number; undefined if neither. */
export function protocolNumber(p: string): number | undefined {
  const named = PROTOCOL_NUMBERS[p.toLowerCase()];
  if (named !== undefined) return named;
  return /^\d{1,3}$/.test(p) && Number(p) <= 255 ? Number(p) : undefined;
}

/** A protocol number as people say it: `tcp`, or the number for the unnamed ones. */
export function protocolName(n: number): string {
  for (const [name, num] of Object.entries(PROTOCOL_NUMBERS)) if (num === n) return name;
  return String(n);
}
