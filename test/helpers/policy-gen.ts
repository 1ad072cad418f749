// Policy generators shared by the fuzz test and the property tests. Two kinds: mutations of a
// valid seed (junk at random paths: mostly refused, which the fuzz test wants), and valid policies
// built from the grammar (what the kernel and differential property tests want), over a small
// universe of labels, addresses and ports so rules actually match the endpoints and packets.
import fc from 'fast-check';
import { validateResource } from '../../model/validate.ts';
import type { Update } from '../../proto/service.ts';
import { toUpdate } from '../../syncer/convert.ts';
import { namespace, networkSet, wep } from './feed-builders.ts';

// --- mutations of a valid seed ----------------------------------------------------------------

export const VALID_SEED = {
  apiVersion: 'projectcalico.org/v3',
  kind: 'NetworkPolicy',
  metadata: { name: 'p', namespace: 'shop' },
  spec: {
    tier: 'default',
    order: 10,
    selector: "app == 'frontend'",
    types: ['Ingress', 'Egress'],
    ingress: [
      {
        action: 'Allow',
        protocol: 'TCP',
        source: { selector: "app == 'web'", namespaceSelector: "team == 'x'", nets: ['10.0.0.0/8'] },
        destination: { ports: [80, '8000:8080', 'http'], notPorts: [81] },
      },
      { action: 'Deny', protocol: 'ICMP', icmp: { type: 8, code: 0 } },
    ],
    egress: [
      {
        action: 'Pass',
        destination: { notSelector: 'has(x)', notNets: ['192.168.0.0/16', '172.16.0.0/12'] },
      },
      {
        action: 'Log',
        notProtocol: 'UDP',
        source: { serviceAccounts: { names: ['sa1'], selector: "k == 'v'" } },
      },
    ],
  },
};

/** Leaf values that exercise the validators: wrong types, edge numbers, odd strings. */
export const junk = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 65536, 1.5, Number.NaN, '', ' ', 'TCP', 'tcp', 'Allow', 'nope'),
  fc.constantFrom(
    '10.0.0.0/8',
    '10.0.0.1/8',
    '300.0.0.0/8',
    '::1/128',
    'app ==',
    "app == 'x'",
    'all()',
    '80:70',
    'http',
  ),
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.array(fc.oneof(fc.integer({ min: -5, max: 70000 }), fc.string({ maxLength: 6 })), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }),
);

export type Json = unknown;

/** Every path (as a key list) inside a JSON value. */
export function paths(v: Json, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix];
  if (Array.isArray(v)) for (const [i, x] of v.entries()) out.push(...paths(x, [...prefix, i]));
  else if (v && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...prefix, k]));
  return out;
}

export function setAt(v: Json, path: (string | number)[], value: Json): Json {
  if (path.length === 0) return value;
  const [head, ...rest] = path;
  // An earlier mutation may have replaced a parent with a scalar: rebuild the container.
  const base = v !== null && typeof v === 'object' ? v : typeof head === 'number' ? [] : {};
  const copy = (Array.isArray(base) ? [...base] : { ...base }) as Record<string | number, Json>;
  copy[head!] = setAt((base as Record<string | number, Json>)[head!], rest, value);
  return copy;
}

/** The seed with 1–4 junk values at random paths. */
export const mutatedPolicy = fc
  .array(fc.tuple(fc.constantFrom(...paths(VALID_SEED)), junk), { minLength: 1, maxLength: 4 })
  .map((mutations) => mutations.reduce<Json>((doc, [p, v]) => setAt(doc, p, v), VALID_SEED));

// --- the universe valid policies are written against ------------------------------------------

export const NODE = 'n1';
export const NAMESPACES = { shop: { team: 'web' }, prod: { team: 'db' } } as const;

export interface UniverseEndpoint {
  namespace: keyof typeof NAMESPACES;
  pod: string;
  ip: string;
  labels: Record<string, string>;
  ports: { name: string; protocol: string; port: number }[];
  serviceAccount: string;
}

/** Local endpoints on NODE: policies select among them, rules match them and each other. */
export const LOCAL_ENDPOINTS: readonly UniverseEndpoint[] = [
  {
    namespace: 'shop',
    pod: 'web-1',
    ip: '10.0.0.5',
    labels: { app: 'web', tier: 'front' },
    ports: [{ name: 'http', protocol: 'TCP', port: 80 }],
    serviceAccount: 'default',
  },
  {
    namespace: 'shop',
    pod: 'api-1',
    ip: '10.0.0.6',
    labels: { app: 'api', tier: 'back' },
    ports: [
      { name: 'http', protocol: 'TCP', port: 8080 },
      { name: 'dns', protocol: 'UDP', port: 53 },
    ],
    serviceAccount: 'api',
  },
  {
    namespace: 'prod',
    pod: 'db-1',
    ip: '10.0.1.7',
    labels: { app: 'db', tier: 'back' },
    ports: [{ name: 'pg', protocol: 'TCP', port: 5432 }],
    serviceAccount: 'default',
  },
  {
    namespace: 'prod',
    pod: 'web-2',
    ip: '10.0.1.8',
    labels: { app: 'web', env: 'x' },
    ports: [{ name: 'http', protocol: 'SCTP', port: 80 }],
    serviceAccount: 'api',
  },
];

/** Elsewhere: a remote cluster's pod and a network set. */
export const REMOTE_IP = '10.9.0.5';
export const NETSET_NET = '192.168.5.0/24';
/** Addresses packets come from or go to: the endpoints, the remote pod, the network set, outside. */
export const ADDRESSES = [
  ...LOCAL_ENDPOINTS.map((e) => e.ip),
  REMOTE_IP,
  '192.168.5.9',
  '8.8.8.8',
  '10.0.0.200',
] as const;

/** The feed updates of the universe, as the syncer of cluster `a` (with remote `b`) sends them. */
export function universeUpdates(): Update[] {
  return [
    ...Object.entries(NAMESPACES).map(([n, l]) => namespace(n, l)),
    ...LOCAL_ENDPOINTS.map((e) =>
      wep({
        node: NODE,
        namespace: e.namespace,
        pod: e.pod,
        ips: [e.ip],
        labels: e.labels,
        ports: e.ports,
        serviceAccount: e.serviceAccount,
      }),
    ),
    wep({
      node: 'b-node',
      namespace: 'shop',
      pod: 'web-9',
      ips: [REMOTE_IP],
      labels: { app: 'web' },
      cluster: 'b',
    }),
    networkSet({ name: 'outside', namespace: 'shop', nets: [NETSET_NET], labels: { role: 'partner' } }),
  ];
}

// --- valid policies ---------------------------------------------------------------------------

const labelValue = fc.constantFrom('web', 'api', 'db', 'front', 'back', 'x', 'partner');
const labelKey = fc.constantFrom('app', 'tier', 'env', 'role');

/** Valid selector text over the universe's labels. */
export const selector: fc.Arbitrary<string> = fc.letrec<{ s: string }>((tie) => ({
  s: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.tuple(labelKey, labelValue).map(([k, v]) => `${k} == '${v}'`),
    fc.tuple(labelKey, labelValue).map(([k, v]) => `${k} != '${v}'`),
    labelKey.map((k) => `has(${k})`),
    labelKey.map((k) => `!has(${k})`),
    fc.tuple(labelKey, labelValue, labelValue).map(([k, a, b]) => `${k} in {'${a}', '${b}'}`),
    fc.tuple(labelKey, labelValue).map(([k, v]) => `${k} not in {'${v}'}`),
    fc.constant('all()'),
    fc.tuple(tie('s'), tie('s')).map(([a, b]) => `(${a}) && (${b})`),
    fc.tuple(tie('s'), tie('s')).map(([a, b]) => `(${a}) || (${b})`),
  ),
})).s;

const nsSelector = fc.oneof(
  fc.constantFrom("team == 'web'", "team == 'db'", 'has(team)', 'all()', "projectcalico.org/name == 'prod'"),
);

/** A CIDR around the universe's addresses, any prefix length (host bits zeroed), /0 included. */
export const cidr: fc.Arbitrary<string> = fc
  .tuple(fc.constantFrom(...ADDRESSES), fc.integer({ min: 0, max: 32 }))
  .map(([ip, len]) => {
    const n = ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
    const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
    const b = (n & mask) >>> 0;
    return `${b >>> 24}.${(b >>> 16) & 255}.${(b >>> 8) & 255}.${b & 255}/${len}`;
  });

const port = fc.oneof(
  fc.constantFrom(53, 80, 443, 5432, 8080),
  fc.integer({ min: 1, max: 65535 }),
  fc
    .tuple(fc.integer({ min: 1, max: 9000 }), fc.integer({ min: 0, max: 100 }))
    .map(([a, d]) => `${a}:${a + d}`),
  fc.constantFrom('http', 'dns', 'pg'),
);

const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined, freq: 2 });
const list = <T>(a: fc.Arbitrary<T>, max = 3) => fc.array(a, { maxLength: max });

const numericPort = port.filter((p) => typeof p === 'number' || /:/.test(p));

/** One side of a rule. fedmesh refuses named ports in a source notPorts, so none are made there. */
function entity(withPorts: boolean, side: 'src' | 'dst') {
  return fc
    .record({
      selector: opt(selector),
      notSelector: opt(selector),
      namespaceSelector: opt(nsSelector),
      nets: list(cidr),
      notNets: list(cidr),
      ports: withPorts ? list(port, 4) : fc.constant([]),
      notPorts: withPorts ? list(side === 'src' ? numericPort : port, 2) : fc.constant([]),
      serviceAccounts: opt(
        fc.record({
          names: list(fc.constantFrom('default', 'api'), 2),
          selector: opt(fc.constant('has(x)')),
        }),
      ),
    })
    .map((e) =>
      Object.fromEntries(
        Object.entries(e).filter(([, v]) => v !== undefined && !(Array.isArray(v) && v.length === 0)),
      ),
    );
}

const icmp = fc.option(
  fc.oneof(
    fc.record({ type: fc.constantFrom(0, 3, 8, 11) }),
    fc.record({ type: fc.constantFrom(0, 3, 8), code: fc.constantFrom(0, 1) }),
  ),
  { nil: undefined },
);

const rule = fc
  .record({
    action: fc.constantFrom('Allow', 'Deny', 'Log', 'Pass'),
    protocol: fc.constantFrom(undefined, 'TCP', 'UDP', 'ICMP', 'SCTP', 17, 6),
    notProtocol: fc.constantFrom(undefined, undefined, undefined, 'UDP', 'TCP', 'ICMP'),
    icmpA: icmp,
    notIcmpA: icmp,
    src: entity(true, 'src'),
    dst: entity(true, 'dst'),
  })
  .map(({ action, protocol, notProtocol, icmpA, notIcmpA, src, dst }) => {
    const ports = protocol !== undefined && ['TCP', 'UDP', 'SCTP', 17, 6].includes(protocol);
    const strip = (e: Record<string, unknown>) => {
      if (ports) return e;
      const { ports: _p, notPorts: _n, ...rest } = e;
      return rest;
    };
    const r: Record<string, unknown> = { action, source: strip(src), destination: strip(dst) };
    if (protocol !== undefined) r.protocol = protocol;
    if (notProtocol !== undefined && notProtocol !== protocol) r.notProtocol = notProtocol;
    if (protocol === 'ICMP') {
      if (icmpA) r.icmp = icmpA;
      if (notIcmpA) r.notICMP = notIcmpA;
    }
    return r;
  });

/** A valid (NetworkPolicy or GlobalNetworkPolicy) document; still run through the validator. */
export const validPolicyDoc = fc
  .record({
    namespaced: fc
      .constantFrom<(keyof typeof NAMESPACES)[]>('shop', 'prod')
      .chain((ns) => fc.option(fc.constant(ns), { nil: undefined })),
    order: opt(fc.integer({ min: 0, max: 1000 })),
    tier: fc.constantFrom('default', 'default', 'security'),
    // Mostly selectors that pick some of the node's endpoints, so most policies are rendered.
    selector: fc.oneof(
      fc.constantFrom('all()', "app == 'web'", 'has(tier)', "tier == 'back'", "app in {'db', 'api'}"),
      selector,
    ),
    ingress: list(rule, 4),
    egress: list(rule, 4),
    types: fc.constantFrom(['Ingress'], ['Egress'], ['Ingress', 'Egress']),
  })
  .map((p) => ({
    apiVersion: 'projectcalico.org/v3',
    kind: p.namespaced ? 'NetworkPolicy' : 'GlobalNetworkPolicy',
    metadata: { name: 'p', ...(p.namespaced ? { namespace: p.namespaced } : {}) },
    spec: {
      tier: p.tier,
      ...(p.order !== undefined ? { order: p.order } : {}),
      selector: p.selector,
      types: p.types,
      ingress: p.ingress,
      egress: p.egress,
    },
  }));

/**
 * A generated document as the syncer would send it, named `name`; undefined (with the errors) if
 * the validator refuses it, which a generator of valid policies must keep rare.
 */
export function policyUpdate(doc: Json, name: string): { update?: Update; errors?: string[] } {
  const named = setAt(doc, ['metadata', 'name'], name);
  const res = validateResource(named, { source: 'gen.yaml', document: 0 }, '/tmp');
  if ('errors' in res) return { errors: res.errors.map((e) => `${e.field ?? ''}: ${e.message}`) };
  if (!('resource' in res)) return { errors: ['skipped'] };
  const u = toUpdate({ cluster: 'a', remote: false }, res.resource);
  return u ? { update: u } : { errors: ['no update'] };
}
