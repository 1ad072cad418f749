// Named ports as the item index takes them: name → the 'proto:port' values of that name.

interface NamedPort {
  name: string;
  protocol: string;
  port: number;
}

export function namedPortsOf(ports: readonly NamedPort[]): Map<string, string[]> | undefined {
  if (ports.length === 0) return undefined;
  const map = new Map<string, string[]>();
  for (const p of ports) {
    const v = `${p.protocol.toLowerCase()}:${p.port}`;
    map.get(p.name)?.push(v) ?? map.set(p.name, [v]);
  }
  return map;
}

/**
 * namedPortsOf, with the last list's map handed again while the ports are the same (endpoints of
 * one workload, one after another, in a snapshot): no map, strings or signature per endpoint.
 */
export class NamedPortsMemo {
  private last: { ports: readonly NamedPort[]; map: Map<string, string[]> } | undefined;

  of(ports: readonly NamedPort[]): ReadonlyMap<string, readonly string[]> | undefined {
    const last = this.last;
    if (last && samePorts(last.ports, ports)) return last.map;
    const map = namedPortsOf(ports);
    if (map === undefined) return undefined;
    this.last = { ports: ports.map(({ name, protocol, port }) => ({ name, protocol, port })), map };
    return map;
  }
}

function samePorts(a: readonly NamedPort[], b: readonly NamedPort[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.name !== y.name || x.protocol !== y.protocol || x.port !== y.port) return false;
  }
  return true;
}
