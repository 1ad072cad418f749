// Endpoint subsets as the services controller handles them: port selection by (name, protocol),
// remote renaming, Kubernetes' canonical repacking, and EndpointSlices built from subsets. Pure.
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import type {
  EndpointAddress,
  EndpointPort,
  EndpointSlice,
  EndpointSubset,
  Labels,
  SliceEndpoint,
} from '../model/resources.ts';
import { CONTROLLER_ORIGIN, MANAGED_BY, MANAGED_BY_VALUE, SOURCE_CLUSTER } from './names.ts';
import type { EndpointRow } from './types.ts';

/** `name/PROTOCOL`: the identity of a port for matching; numbers are the backing Service's. */
export function portId(p: Pick<EndpointPort, 'name' | 'protocol'>): string {
  return `${p.name}/${p.protocol}`;
}

/**
 * Keep the ports whose (name, protocol) is wanted, with their own numbers; subsets left without
 * ports are dropped (Calico's federated services controller).
 */
export function selectPorts(
  subsets: readonly EndpointSubset[],
  wanted: ReadonlySet<string>,
): EndpointSubset[] {
  const out: EndpointSubset[] = [];
  for (const s of subsets) {
    const ports = s.ports.filter((p) => wanted.has(portId(p)));
    if (ports.length > 0) out.push({ ...s, ports });
  }
  return out;
}

/** A remote pod is `<cluster>/<pod>` in the local cluster; its namespace, node and uid are kept. */
export function renameRemote(subsets: readonly EndpointSubset[], cluster: string): EndpointSubset[] {
  const rename = (a: EndpointAddress): EndpointAddress =>
    a.targetRef?.name ? { ...a, targetRef: { ...a.targetRef, name: `${cluster}/${a.targetRef.name}` } } : a;
  return subsets.map((s) => ({
    addresses: s.addresses.map(rename),
    notReadyAddresses: s.notReadyAddresses.map(rename),
    ports: s.ports,
  }));
}

function addressKey(a: EndpointAddress): string {
  const r = a.targetRef;
  return JSON.stringify([
    ipSortKey(a.ip),
    a.hostname ?? '',
    a.nodeName ?? '',
    r?.kind ?? '',
    r?.namespace ?? '',
    r?.name ?? '',
    r?.uid ?? '',
  ]);
}

/** Sorts IPv4 numerically (10.0.0.9 before 10.0.0.10), IPv6 after. */
function ipSortKey(ip: string): string {
  if (isIP(ip) === 4)
    return `4:${ip
      .split('.')
      .map((o) => o.padStart(3, '0'))
      .join('.')}`;
  return `6:${ip}`;
}

function portKey(p: EndpointPort): string {
  return `${p.name}/${p.protocol}/${String(p.port).padStart(5, '0')}`;
}

interface Expanded {
  address: EndpointAddress;
  ports: Map<string, EndpointPort>;
}

function expand(
  into: Map<string, Expanded>,
  addresses: readonly EndpointAddress[],
  ports: readonly EndpointPort[],
) {
  for (const a of addresses) {
    const k = addressKey(a);
    let e = into.get(k);
    if (!e) {
      e = { address: a, ports: new Map() };
      into.set(k, e);
    }
    for (const p of ports) e.ports.set(portKey(p), p);
  }
}

/**
 * Kubernetes' RepackSubsets: expand to (address, port) pairs, drop duplicates (an address both
 * ready and not ready for a port counts as ready), then group addresses with the same ports into
 * one subset. Addresses and subsets are ordered, so equal content always prints the same.
 */
export function repack(subsets: readonly EndpointSubset[]): EndpointSubset[] {
  const ready = new Map<string, Expanded>();
  const notReady = new Map<string, Expanded>();
  for (const s of subsets) {
    expand(ready, s.addresses, s.ports);
    expand(notReady, s.notReadyAddresses, s.ports);
  }
  for (const [k, e] of notReady) {
    for (const pk of ready.get(k)?.ports.keys() ?? []) e.ports.delete(pk);
  }
  const groups = new Map<string, EndpointSubset>();
  const add = (entries: Map<string, Expanded>, which: 'addresses' | 'notReadyAddresses') => {
    for (const e of entries.values()) {
      if (e.ports.size === 0) continue;
      const keys = [...e.ports.keys()].sort();
      const gk = keys.join(',');
      let g = groups.get(gk);
      if (!g) {
        g = { addresses: [], notReadyAddresses: [], ports: keys.map((k) => e.ports.get(k)!) };
        groups.set(gk, g);
      }
      g[which].push(e.address);
    }
  };
  add(ready, 'addresses');
  add(notReady, 'notReadyAddresses');
  const byAddress = (a: EndpointAddress, b: EndpointAddress) => cmp(addressKey(a), addressKey(b));
  return [...groups.keys()].sort(cmp).map((k) => {
    const g = groups.get(k)!;
    return {
      addresses: g.addresses.sort(byAddress),
      notReadyAddresses: g.notReadyAddresses.sort(byAddress),
      ports: g.ports,
    };
  });
}

export function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Number of (address, port) pairs: what "endpoints" counts in metrics and reports. */
export function countAddresses(subsets: readonly EndpointSubset[]): number {
  return subsets.reduce((n, s) => n + s.addresses.length + s.notReadyAddresses.length, 0);
}

/** Flattened rows of one cluster's subsets. */
export function rows(cluster: string, subsets: readonly EndpointSubset[]): EndpointRow[] {
  const out: EndpointRow[] = [];
  for (const s of subsets) {
    for (const [list, ready] of [
      [s.addresses, true],
      [s.notReadyAddresses, false],
    ] as const) {
      for (const a of list) {
        for (const p of s.ports) {
          out.push({
            cluster,
            ...(a.targetRef?.name ? { pod: a.targetRef.name } : {}),
            ip: a.ip,
            port: p.port,
            portName: p.name,
            protocol: p.protocol,
            ready,
          });
        }
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// EndpointSlices

function sliceEndpoint(a: EndpointAddress, ready: boolean): SliceEndpoint {
  return {
    addresses: [a.ip],
    conditions: { ready, serving: ready, terminating: false },
    ...(a.hostname ? { hostname: a.hostname } : {}),
    ...(a.nodeName ? { nodeName: a.nodeName } : {}),
    ...(a.targetRef ? { targetRef: a.targetRef } : {}),
  };
}

/** A slice name unique per (purpose, service, cluster, port set, family), at most 63 characters. */
export function sliceName(service: string, cluster: string, discriminator: string): string {
  const hash = createHash('sha1').update(`${service}|${cluster}|${discriminator}`).digest('hex').slice(0, 8);
  const base = `${service}-${cluster}`.slice(0, 63 - 9).replace(/[-.]+$/, '');
  return `${base}-${hash}`;
}

/**
 * The slices for one source cluster's repacked subsets: one per (port set, address family), as
 * every endpoint of a slice shares its ports. `purpose` keeps a federated Service's slices and an
 * import's apart when they share a name.
 */
export function slicesFor(opts: {
  namespace: string;
  service: string;
  cluster: string;
  purpose: string;
  labels: Labels;
  subsets: readonly EndpointSubset[];
}): EndpointSlice[] {
  const out: EndpointSlice[] = [];
  for (const s of opts.subsets) {
    for (const family of [4, 6] as const) {
      const endpoints = [
        ...s.addresses.filter((a) => isIP(a.ip) === family).map((a) => sliceEndpoint(a, true)),
        ...s.notReadyAddresses.filter((a) => isIP(a.ip) === family).map((a) => sliceEndpoint(a, false)),
      ];
      if (endpoints.length === 0) continue;
      const ports = s.ports.map(portKey).join(',');
      out.push({
        kind: 'EndpointSlice',
        name: sliceName(opts.service, opts.cluster, `${opts.purpose}|${family}|${ports}`),
        namespace: opts.namespace,
        labels: {
          ...opts.labels,
          [MANAGED_BY]: MANAGED_BY_VALUE,
          [SOURCE_CLUSTER]: opts.cluster,
        },
        annotations: {},
        origin: CONTROLLER_ORIGIN,
        addressType: family === 4 ? 'IPv4' : 'IPv6',
        endpoints,
        ports: s.ports,
      });
    }
  }
  return out.sort((a, b) => cmp(a.name, b.name));
}
