// Calico's etcdv3 key layout (libcalico-go lib/backend/model), both ways, with no I/O:
//   - a key and its value → a validated Resource (or the refusal naming key and field), for the driver;
//   - a decoded YAML document → the key and value Calico would store, for `fedmesh etcd-load`.
//
// v3 resources: /calico/resources/v3/projectcalico.org/<plural>/[<namespace>/]<name>, the whole
// resource as JSON. IPAM blocks: /calico/ipam/v2/assignment/ipv4/block/<a.b.c.d-len>, an
// AllocationBlock (cidr, affinity "host:<node>", allocations...). There are no Namespace or
// ServiceAccount objects in etcd mode: calico-kube-controllers writes them as Profiles `kns.<ns>`
// and `ksa.<ns>.<sa>` whose labelsToApply carry `pcns.*` / `pcsa.*`, which is exactly what
// convert.ts makes of a Namespace or ServiceAccount, so endpoints inherit the same labels.
import { isAbsolute, resolve } from 'node:path';
import type { ResourceKind } from '../../model/resources.ts';
import { isMapping } from '../../model/validate/common.ts';
import { type ValidateResult, validateResource } from '../../model/validate.ts';

export const RESOURCE_PREFIX = '/calico/resources/v3/projectcalico.org/';
export const BLOCK_PREFIX = '/calico/ipam/v2/assignment/ipv4/block/';
/** Every prefix the driver lists and watches. */
export const WATCHED_PREFIXES = [RESOURCE_PREFIX, BLOCK_PREFIX] as const;

const CALICO_V3 = 'projectcalico.org/v3';

/** The v3 kinds fedmesh reads from etcd, by their plural in the key, and whether they are namespaced. */
const PLURALS: Record<string, { kind: ResourceKind; namespaced: boolean }> = {
  workloadendpoints: { kind: 'WorkloadEndpoint', namespaced: true },
  hostendpoints: { kind: 'HostEndpoint', namespaced: false },
  profiles: { kind: 'Profile', namespaced: false },
  networkpolicies: { kind: 'NetworkPolicy', namespaced: true },
  globalnetworkpolicies: { kind: 'GlobalNetworkPolicy', namespaced: false },
  networksets: { kind: 'NetworkSet', namespaced: true },
  globalnetworksets: { kind: 'GlobalNetworkSet', namespaced: false },
  tiers: { kind: 'Tier', namespaced: false },
  ippools: { kind: 'IPPool', namespaced: false },
  nodes: { kind: 'Node', namespaced: false },
  remoteclusterconfigurations: { kind: 'RemoteClusterConfiguration', namespaced: false },
};

const PLURAL_OF = new Map(Object.entries(PLURALS).map(([plural, { kind }]) => [kind, plural]));

export type KeyIdentity =
  | { type: 'resource'; kind: ResourceKind; name: string; namespace?: string }
  | { type: 'block'; cidr: string; name: string };

/**
 * What a key names. undefined: a key fedmesh has no use for (FelixConfiguration, BGP peers, IPAM
 * handles...), ignored without a word. A string: a malformed key of a kind fedmesh reads (why).
 */
export function parseKey(key: string): KeyIdentity | string | undefined {
  if (key.startsWith(BLOCK_PREFIX)) {
    const m = /^(\d{1,3}(?:\.\d{1,3}){3})-(\d{1,2})$/.exec(key.slice(BLOCK_PREFIX.length));
    if (!m) return 'an IPAM block key ends in <a.b.c.d>-<prefix length>';
    return { type: 'block', cidr: `${m[1]}/${m[2]}`, name: `${m[1]!.replace(/\./g, '-')}-${m[2]}` };
  }
  if (!key.startsWith(RESOURCE_PREFIX)) return undefined;
  const parts = key.slice(RESOURCE_PREFIX.length).split('/');
  const plural = PLURALS[parts[0] ?? ''];
  if (!plural) return undefined;
  const want = plural.namespaced ? 3 : 2;
  if (parts.length !== want || parts.slice(1).some((p) => p === '')) {
    return `a ${plural.kind} key is ${RESOURCE_PREFIX}${parts[0]}/${plural.namespaced ? '<namespace>/' : ''}<name>`;
  }
  return plural.namespaced
    ? { type: 'resource', kind: plural.kind, namespace: parts[1], name: parts[2]! }
    : { type: 'resource', kind: plural.kind, name: parts[1]! };
}

/** The key a resource of this kind has (undefined: fedmesh does not keep this kind in etcd). */
export function resourceKey(kind: string, name: string, namespace?: string): string | undefined {
  const plural = PLURAL_OF.get(kind as ResourceKind);
  if (!plural) return undefined;
  return PLURALS[plural]!.namespaced
    ? `${RESOURCE_PREFIX}${plural}/${namespace ?? 'default'}/${name}`
    : `${RESOURCE_PREFIX}${plural}/${name}`;
}

export function blockKey(cidr: string): string {
  return `${BLOCK_PREFIX}${cidr.replace('/', '-')}`;
}

function keyName(id: KeyIdentity): string {
  if (id.type === 'block') return `IPAMBlock/${id.name}`;
  return id.namespace ? `${id.kind}/${id.namespace}/${id.name}` : `${id.kind}/${id.name}`;
}

// ---------------------------------------------------------------------------------------------
// etcd → Resource

/**
 * Decode one key's value. The key is the truth about identity (as in libcalico-go): a value whose
 * kind, name or namespace disagrees with its key is refused; missing ones are taken from the key.
 * undefined: a key fedmesh ignores.
 */
export function decodeKv(key: string, value: string): ValidateResult | undefined {
  const id = parseKey(key);
  if (id === undefined) return undefined;
  const origin = { source: key };
  const fail = (field: string | undefined, message: string, resource?: string): ValidateResult => ({
    errors: [{ origin, ...(resource ? { resource } : {}), ...(field ? { field } : {}), message }],
  });
  if (typeof id === 'string') return fail(undefined, `malformed key: ${id}`);
  const resource = keyName(id);
  let obj: unknown;
  try {
    obj = JSON.parse(value);
  } catch (e) {
    return fail(undefined, `invalid JSON: ${(e as Error).message}`, resource);
  }
  if (!isMapping(obj)) return fail(undefined, 'expected a JSON object', resource);
  return id.type === 'block' ? decodeBlock(id, obj, key) : decodeResource(id, obj, key, resource);
}

function decodeResource(
  id: Extract<KeyIdentity, { type: 'resource' }>,
  obj: Record<string, unknown>,
  key: string,
  resource: string,
): ValidateResult {
  const fail = (field: string, message: string): ValidateResult => ({
    errors: [{ origin: { source: key }, resource, field, message }],
  });
  if (obj.apiVersion !== undefined && obj.apiVersion !== CALICO_V3)
    return fail(
      'apiVersion',
      `expected ${CALICO_V3} under ${RESOURCE_PREFIX}, got ${String(obj.apiVersion)}`,
    );
  if (obj.kind !== undefined && obj.kind !== id.kind)
    return fail('kind', `the key holds a ${id.kind}, the value says ${String(obj.kind)}`);
  const md = obj.metadata === undefined ? {} : obj.metadata;
  if (!isMapping(md)) return fail('metadata', 'expected a mapping');
  if (md.name !== undefined && md.name !== id.name)
    return fail('metadata.name', `"${String(md.name)}" differs from the name in the key ("${id.name}")`);
  if (id.namespace !== undefined && md.namespace !== undefined && md.namespace !== id.namespace)
    return fail(
      'metadata.namespace',
      `"${String(md.namespace)}" differs from the namespace in the key ("${id.namespace}")`,
    );
  if (id.kind === 'RemoteClusterConfiguration' && isMapping(obj.spec)) {
    const p = obj.spec.fileDatastorePath;
    if (typeof p === 'string' && p !== '' && !isAbsolute(p))
      return fail(
        'spec.fileDatastorePath',
        `"${p}" is relative, and a resource in etcd has no directory to resolve it against: give an absolute path`,
      );
  }
  const full = {
    ...obj,
    apiVersion: CALICO_V3,
    kind: id.kind,
    metadata: { ...md, name: id.name, ...(id.namespace !== undefined ? { namespace: id.namespace } : {}) },
  };
  return validateResource(full, { source: key }, '/');
}

/** An AllocationBlock becomes the model's IPAMBlock (crd.projectcalico.org/v1 shape). */
function decodeBlock(
  id: Extract<KeyIdentity, { type: 'block' }>,
  block: Record<string, unknown>,
  key: string,
): ValidateResult {
  const origin = { source: key };
  const resource = keyName(id);
  // Calico marks a block deleted before it removes it: it no longer routes anything.
  if (block.deleted === true) return { ignored: 'block marked deleted' };
  if (block.cidr !== undefined && block.cidr !== id.cidr) {
    return {
      errors: [
        {
          origin,
          resource,
          field: 'cidr',
          message: `"${String(block.cidr)}" differs from the block in the key (${id.cidr})`,
        },
      ],
    };
  }
  const crd = {
    apiVersion: 'crd.projectcalico.org/v1',
    kind: 'IPAMBlock',
    metadata: { name: id.name },
    spec: { cidr: id.cidr, ...(block.affinity !== undefined ? { affinity: block.affinity } : {}) },
  };
  const result = validateResource(crd, origin, '/');
  if (!('errors' in result)) return result;
  // Name the fields as they are in the AllocationBlock, not in the CRD shape built here.
  return {
    errors: result.errors.map((e) => ({
      ...e,
      ...(e.field ? { field: e.field.replace(/^spec\./, '') } : {}),
    })),
  };
}

// ---------------------------------------------------------------------------------------------
// YAML document → etcd (what `fedmesh etcd-load` writes)

export type Encoded = { key: string; value: string } | { skip: string };

const meta = (o: Record<string, unknown>): Record<string, unknown> =>
  isMapping(o.metadata) ? o.metadata : {};

function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (isMapping(v)) for (const [k, x] of Object.entries(v)) if (typeof x === 'string') out[k] = x;
  return out;
}

function prefixed(labels: Record<string, string>, pre: string): Record<string, string> {
  return Object.fromEntries(Object.entries(labels).map(([k, v]) => [pre + k, v]));
}

/** A Profile as calico-kube-controllers writes it for a namespace or service account. */
function kubeProfile(name: string, labelsToApply: Record<string, string>): Encoded {
  const profile = {
    apiVersion: CALICO_V3,
    kind: 'Profile',
    metadata: { name },
    spec: { ingress: [{ action: 'Allow' }], egress: [{ action: 'Allow' }], labelsToApply },
  };
  return { key: resourceKey('Profile', name) as string, value: JSON.stringify(profile) };
}

/** A block as Calico's IPAM writes it: every address unallocated (fedmesh reads cidr and affinity). */
function allocationBlock(cidr: string, affinity: unknown): string {
  const len = Number(cidr.split('/')[1]);
  const size = len >= 20 && len <= 32 ? 2 ** (32 - len) : 0;
  return JSON.stringify({
    cidr,
    ...(typeof affinity === 'string' ? { affinity } : {}),
    strictAffinity: false,
    allocations: new Array(size).fill(null),
    unallocated: Array.from({ length: size }, (_, i) => i),
    attributes: [],
    deleted: false,
  });
}

/**
 * Where Calico keeps this document in etcd mode, and what it stores. `baseDir` is the directory of
 * the file it came from: a relative RCC fileDatastorePath is made absolute, as nothing in etcd
 * could resolve it later. The value is not validated here; the reader validates what it reads.
 */
export function encodeDocument(doc: unknown, baseDir: string): Encoded {
  if (!isMapping(doc)) return { skip: 'not a mapping' };
  const { apiVersion, kind } = doc;
  const md = meta(doc);
  const name = typeof md.name === 'string' ? md.name : '';
  const namespace = typeof md.namespace === 'string' && md.namespace !== '' ? md.namespace : 'default';
  if (!name) return { skip: 'no metadata.name' };
  if (apiVersion === 'v1' && kind === 'Namespace') {
    // The API server labels every namespace with its name, and kube-controllers copies it.
    const labels = { ...stringMap(md.labels), 'kubernetes.io/metadata.name': name };
    return kubeProfile(`kns.${name}`, {
      ...prefixed(labels, 'pcns.'),
      'pcns.projectcalico.org/name': name,
    });
  }
  if (apiVersion === 'v1' && kind === 'ServiceAccount') {
    return kubeProfile(`ksa.${namespace}.${name}`, {
      ...prefixed(stringMap(md.labels), 'pcsa.'),
      'pcsa.projectcalico.org/name': name,
    });
  }
  if (apiVersion === 'crd.projectcalico.org/v1' && kind === 'IPAMBlock') {
    const spec = isMapping(doc.spec) ? doc.spec : {};
    if (typeof spec.cidr !== 'string') return { skip: 'IPAMBlock without spec.cidr' };
    return { key: blockKey(spec.cidr), value: allocationBlock(spec.cidr, spec.affinity) };
  }
  const v3 = apiVersion === CALICO_V3 || (apiVersion === 'crd.projectcalico.org/v1' && kind === 'IPPool');
  const key = v3 && typeof kind === 'string' ? resourceKey(kind, name, namespace) : undefined;
  if (!key) {
    return {
      skip: `${String(apiVersion)} ${String(kind)} has no place in Calico's etcd layout (in etcd mode, write WorkloadEndpoints and projectcalico.org/v3 policies)`,
    };
  }
  const out: Record<string, unknown> = { ...doc, apiVersion: CALICO_V3 };
  const namespaced = PLURALS[PLURAL_OF.get(kind as ResourceKind) ?? '']?.namespaced;
  out.metadata = { ...md, name, ...(namespaced ? { namespace } : {}) };
  if (kind === 'RemoteClusterConfiguration' && isMapping(doc.spec)) {
    const p = doc.spec.fileDatastorePath;
    if (typeof p === 'string' && p !== '' && !isAbsolute(p))
      out.spec = { ...doc.spec, fileDatastorePath: resolve(baseDir, p) };
  }
  return { key, value: JSON.stringify(out) };
}
