// Kubernetes kinds: Namespace, ServiceAccount, Pod (as a WorkloadEndpoint) and NetworkPolicy
// (networking.k8s.io/v1, as a Calico NetworkPolicy), plus the kinds recognised but not handled yet.
import { BlockList, isIPv6 as isIPv6Address } from 'node:net';
import { z } from 'zod';
import {
  type IpBlock,
  type K8sNetworkPolicySpec,
  K8sPolicyConversionError,
  k8sNetworkPolicyToCalico,
  type LabelSelector,
  type Peer,
  type PolicyPort,
  type PolicyRule,
} from '../k8s-networkpolicy.ts';
import { type Cidr, cidrContainsIp, intToIp4, NetParseError, parseCidrParts } from '../net.ts';
import { ANN_POD_IP, ANN_POD_IPS, podToWorkloadEndpoint } from '../pod.ts';
import type { NamedPort, Namespace, ResourceError, Secret, ServiceAccount } from '../resources.ts';
import {
  checkBool,
  checked,
  checkInt,
  checkName,
  describe,
  enumSchema,
  FieldError,
  formatPath,
  labelsSchema,
  requireString,
} from './common.ts';
import { checkIpNetwork, checkPortName, checkProtocol, isIPv6 } from './fields.ts';
import { defineKind, type KindContext, type KindHandler, type ValidateResult } from './kind.ts';
import { kubeNode } from './kube-node.ts';

const str = checked(requireString);
const optStr = str.optional();

const namespace = defineKind({
  namespaced: false,
  strict: false,
  nameRule: 'label',
  body: z.object({}),
  build: (meta): Namespace => ({
    kind: 'Namespace',
    ...meta,
    // The API server sets this label on every namespace; namespaceSelectors rely on it.
    labels: { ...meta.labels, 'kubernetes.io/metadata.name': meta.name },
  }),
});

const serviceAccount = defineKind({
  namespaced: true,
  strict: false,
  nameRule: 'subdomain',
  body: z.object({}),
  build: (meta): ServiceAccount => ({ kind: 'ServiceAccount', ...meta, namespace: meta.namespace as string }),
});

// ---------------------------------------------------------------------------------------------
// Pod

/** A pod address: IPv4 → /32; IPv6 → null (dropped: fedmesh is IPv4 only). */
function podIp(v: unknown): Cidr | null {
  const s = requireString(v);
  return isIPv6(s) ? null : checkIpNetwork(s.includes('/') ? s : `${s}/32`);
}

const containerPort = z.object({
  name: optStr,
  containerPort: checked((v) => checkInt(v, 1, 65535)),
  protocol: checked(checkProtocol).default('tcp'),
});

const podBody = z.object({
  metadata: z.object({ deletionTimestamp: z.unknown().optional() }).prefault({}),
  spec: z
    .object({
      nodeName: checked((v) => checkName('subdomain', v)).optional(),
      hostNetwork: checked(checkBool).default(false),
      serviceAccountName: optStr,
      // Deprecated alias of serviceAccountName, still filled in by the API server.
      serviceAccount: optStr,
      containers: z.array(z.object({ ports: z.array(containerPort).default([]) })).default([]),
    })
    .prefault({}),
  status: z
    .object({
      phase: optStr,
      podIP: checked(podIp).optional(),
      podIPs: z.array(z.object({ ip: checked(podIp) })).default([]),
    })
    .prefault({}),
});

/**
 * Calico's order: its CNI plugin's annotations (written before the kubelet reports status), then
 * status.podIPs, then status.podIP. Only the first source present counts.
 */
function podIps(
  annotations: Readonly<Record<string, string>>,
  status: z.output<typeof podBody>['status'],
  ctx: KindContext,
): { ips: Cidr[] } | { errors: ResourceError[] } {
  const isCidr = (c: Cidr | null | undefined): c is Cidr => c !== null && c !== undefined;
  for (const key of [ANN_POD_IPS, ANN_POD_IP]) {
    const value = annotations[key];
    if (value === undefined || value === '') continue;
    try {
      return {
        ips: value
          .split(',')
          .map((s) => podIp(s.trim()))
          .filter(isCidr),
      };
    } catch (e) {
      const field = formatPath(['metadata', 'annotations', key]);
      return { errors: [{ origin: ctx.origin, resource: ctx.id, field, message: (e as Error).message }] };
    }
  }
  const all = status.podIPs.length > 0 ? status.podIPs.map((p) => p.ip) : [status.podIP];
  return { ips: all.filter(isCidr) };
}

function namedPorts(spec: z.output<typeof podBody>['spec']): NamedPort[] {
  return spec.containers.flatMap((c) =>
    c.ports.flatMap((p) => (p.name ? [{ name: p.name, protocol: p.protocol, port: p.containerPort }] : [])),
  );
}

const pod = defineKind({
  namespaced: true,
  strict: false,
  nameRule: 'subdomain',
  body: podBody,
  build(meta, { metadata, spec, status }, ctx): ValidateResult {
    const found = podIps(meta.annotations, status, ctx);
    if ('errors' in found) return found;
    const sa = spec.serviceAccountName ?? spec.serviceAccount;
    const result = podToWorkloadEndpoint({
      name: meta.name,
      namespace: meta.namespace as string,
      labels: meta.labels,
      annotations: meta.annotations,
      origin: meta.origin,
      ...(spec.nodeName ? { nodeName: spec.nodeName } : {}),
      hostNetwork: spec.hostNetwork,
      ...(status.phase ? { phase: status.phase } : {}),
      ...(metadata.deletionTimestamp ? { deleting: true } : {}),
      ...(sa ? { serviceAccountName: sa } : {}),
      ips: found.ips,
      ports: namedPorts(spec),
    });
    return 'kind' in result ? { resource: result } : result;
  },
});

// ---------------------------------------------------------------------------------------------
// Secret: read only for RemoteClusterConfigurations' clusterAccessSecret. Its values never appear
// in an error message (keys and positions do).

const SECRET_KEY = /^[-._a-zA-Z0-9]+$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function secretMap(what: string, decode: boolean) {
  return checked((v) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v))
      throw new FieldError(`expected a mapping of key to ${what}`);
    const out: Record<string, string> = {};
    for (const [k, x] of Object.entries(v)) {
      if (!SECRET_KEY.test(k) || k.length > 253)
        throw new FieldError(`key "${k}" is invalid: letters, digits, '-', '_' or '.'`);
      if (typeof x !== 'string') throw new FieldError(`the value of key "${k}" must be a string`);
      const text = x.replace(/\s+/g, '');
      if (decode && (text.length % 4 !== 0 || !BASE64.test(text)))
        throw new FieldError(
          `the value of key "${k}" is not base64 (data holds base64; use stringData for text)`,
        );
      out[k] = decode ? Buffer.from(text, 'base64').toString('utf8') : x;
    }
    return out;
  });
}

const secret = defineKind({
  namespaced: true,
  nameRule: 'subdomain',
  body: z
    .object({
      apiVersion: z.unknown(),
      kind: z.unknown(),
      metadata: z.unknown(),
      type: optStr,
      immutable: checked(checkBool).optional(),
      data: secretMap('base64 text', true).optional(),
      stringData: secretMap('text', false).optional(),
    })
    .catchall(
      checked((): never => {
        throw new FieldError('unknown field in a Secret (known: type, immutable, data, stringData)');
      }),
    ),
  build: (meta, body): Secret => ({
    kind: 'Secret',
    ...meta,
    namespace: meta.namespace as string,
    // The API server merges stringData into data, stringData winning.
    data: { ...(body.data ?? {}), ...(body.stringData ?? {}) },
  }),
});

export const coreV1: Record<string, KindHandler> = {
  Namespace: namespace,
  ServiceAccount: serviceAccount,
  Pod: pod,
  Secret: secret,
  Node: kubeNode,
};

// ---------------------------------------------------------------------------------------------
// NetworkPolicy (networking.k8s.io/v1): validated as the API server does, then converted as
// Calico does (model/k8s-networkpolicy.ts).

/**
 * A mapping that refuses fields it does not know. Elsewhere unknown fields are ignored, but in a
 * rule, peer or selector a misspelt field would be dropped and widen what the policy allows
 * (`form:` for `from:` would allow every source).
 */
export function exactObject<S extends z.ZodRawShape>(shape: S, what: string) {
  const known = Object.keys(shape).join(', ');
  return z.object(shape).catchall(
    checked((): never => {
      throw new FieldError(`unknown field in ${what} (known: ${known})`);
    }),
  );
}

/** The first problem labelsSchema finds with one label, if any. */
function labelProblem(key: string, value: string): string | undefined {
  const r = labelsSchema.safeParse({ [key]: value });
  return r.success ? undefined : (r.error.issues[0]?.message ?? 'invalid');
}

function checkLabelKey(v: unknown): string {
  const key = requireString(v);
  const problem = labelProblem(key, '');
  if (problem) throw new FieldError(problem);
  return key;
}

function checkLabelValue(v: unknown): string {
  if (typeof v !== 'string') throw new FieldError(`expected a string, got ${describe(v)} (quote it)`);
  const problem = labelProblem('k', v);
  if (problem) throw new FieldError(problem);
  return v;
}

const selectorRequirement = exactObject(
  {
    key: checked(checkLabelKey),
    operator: enumSchema(['In', 'NotIn', 'Exists', 'DoesNotExist'] as const),
    values: z.array(checked(checkLabelValue)).optional(),
  },
  'a matchExpressions entry',
)
  .superRefine((e, ctx) => {
    const n = e.values?.length ?? 0;
    if ((e.operator === 'In' || e.operator === 'NotIn') && n === 0) {
      ctx.addIssue({
        code: 'custom',
        message: `operator ${e.operator} needs at least one value`,
        path: ['values'],
      });
    }
    if ((e.operator === 'Exists' || e.operator === 'DoesNotExist') && n > 0) {
      ctx.addIssue({ code: 'custom', message: `operator ${e.operator} takes no values`, path: ['values'] });
    }
  })
  .transform((e) => ({ key: e.key, operator: e.operator, values: e.values ?? [] }));

const labelSelector = exactObject(
  { matchLabels: labelsSchema, matchExpressions: z.array(selectorRequirement).default([]) },
  'a label selector',
).transform((s): LabelSelector => ({ matchLabels: s.matchLabels, matchExpressions: s.matchExpressions }));

type BlockNet = { v6: false; base: number; len: number } | { v6: true; addr: string; len: number };

/**
 * An ipBlock CIDR. Host bits are masked off, as the API server accepts them and Calico masks them
 * (`192.168.1.1/24` is 192.168.1.0/24). IPv6 is checked, then left to match nothing.
 */
function parseBlockNet(v: unknown): BlockNet {
  const s = requireString(v).trim();
  const slash = s.indexOf('/');
  if (slash < 0) throw new FieldError(`"${s}" is not a CIDR: expected address/prefix-length`);
  const addr = s.slice(0, slash);
  const lenText = s.slice(slash + 1);
  if (addr.includes(':')) {
    const len = /^(0|[1-9][0-9]{0,2})$/.test(lenText) ? Number(lenText) : Number.NaN;
    if (!isIPv6Address(addr) || !(len >= 0 && len <= 128)) throw new FieldError(`"${s}" is not a CIDR`);
    return { v6: true, addr, len };
  }
  try {
    return { v6: false, ...parseCidrParts(s, true) };
  } catch (e) {
    if (e instanceof NetParseError) throw new FieldError(e.message);
    throw e;
  }
}

/** Is `inner` a strict subset of `outer` (same family, longer prefix, inside)? */
function strictSubset(inner: BlockNet, outer: BlockNet): boolean {
  if (inner.len <= outer.len) return false;
  if (!inner.v6 && !outer.v6) return cidrContainsIp(outer, inner.base);
  if (inner.v6 && outer.v6) {
    const list = new BlockList();
    list.addSubnet(outer.addr, outer.len, 'ipv6');
    return list.check(inner.addr, 'ipv6');
  }
  return false;
}

function blockText(n: BlockNet): string {
  return n.v6 ? `${n.addr}/${n.len}` : `${intToIp4(n.base)}/${n.len}`;
}

const ipBlock = exactObject(
  { cidr: checked(parseBlockNet), except: z.array(checked(parseBlockNet)).default([]) },
  'an ipBlock',
).transform((b, ctx): IpBlock => {
  b.except.forEach((e, i) => {
    if (!strictSubset(e, b.cidr)) {
      ctx.addIssue({
        code: 'custom',
        message: `${blockText(e)} is not inside cidr ${blockText(b.cidr)} (except must be a strict subset of cidr)`,
        path: ['except', i],
      });
    }
  });
  if (b.cidr.v6) return { ipv6: true };
  return {
    ipv6: false,
    cidr: blockText(b.cidr) as Cidr,
    except: b.except.map((e) => blockText(e) as Cidr),
  };
});

const peer = exactObject(
  {
    podSelector: labelSelector.optional(),
    namespaceSelector: labelSelector.optional(),
    ipBlock: ipBlock.optional(),
  },
  'a peer',
)
  .superRefine((p, ctx) => {
    if (!p.podSelector && !p.namespaceSelector && !p.ipBlock) {
      ctx.addIssue({ code: 'custom', message: 'a peer needs podSelector, namespaceSelector or ipBlock' });
    } else if (p.ipBlock && (p.podSelector || p.namespaceSelector)) {
      ctx.addIssue({
        code: 'custom',
        message:
          'ipBlock cannot be combined with podSelector or namespaceSelector in one peer (make them separate peers)',
        path: ['ipBlock'],
      });
    }
  })
  .transform(
    (p): Peer => ({
      ...(p.podSelector ? { podSelector: p.podSelector } : {}),
      ...(p.namespaceSelector ? { namespaceSelector: p.namespaceSelector } : {}),
      ...(p.ipBlock ? { ipBlock: p.ipBlock } : {}),
    }),
  );

const K8S_PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;

function checkK8sProtocol(v: unknown): PolicyPort['protocol'] {
  if (typeof v === 'string' && (K8S_PROTOCOLS as readonly string[]).includes(v))
    return v as PolicyPort['protocol'];
  throw new FieldError(`unknown protocol ${describe(v)}: a NetworkPolicy port takes TCP, UDP or SCTP`);
}

/** A port number, or the name of a container port (an IANA service name, with a letter). */
function checkK8sPort(v: unknown): number | string {
  if (typeof v === 'number') return checkInt(v, 1, 65535);
  const s = requireString(v);
  if (/^[0-9]+$/.test(s)) throw new FieldError(`"${s}" is quoted: a port number is written without quotes`);
  try {
    return checkPortName(s);
  } catch {
    throw new FieldError(
      `"${s}" is not a port name: at most 15 lower-case letters, digits and '-', with a letter`,
    );
  }
}

const policyPort = exactObject(
  {
    protocol: checked(checkK8sProtocol).default('TCP'),
    port: checked(checkK8sPort).optional(),
    endPort: checked((v) => checkInt(v, 1, 65535)).optional(),
  },
  'a port',
)
  .superRefine((p, ctx) => {
    if (p.endPort === undefined) return;
    const fail = (message: string) => ctx.addIssue({ code: 'custom', message, path: ['endPort'] });
    if (p.port === undefined) fail('endPort needs port (the first port of the range)');
    else if (typeof p.port === 'string') fail(`endPort cannot be used with a named port ("${p.port}")`);
    else if (p.endPort < p.port) fail(`endPort ${p.endPort} is less than port ${p.port}`);
  })
  .transform(
    (p): PolicyPort => ({
      protocol: p.protocol,
      ...(p.port !== undefined ? { port: p.port } : {}),
      ...(p.endPort !== undefined ? { endPort: p.endPort } : {}),
    }),
  );

const ingressRule = exactObject(
  { from: z.array(peer).default([]), ports: z.array(policyPort).default([]) },
  'an ingress rule',
).transform((r): PolicyRule => ({ peers: r.from, ports: r.ports }));

const egressRule = exactObject(
  { to: z.array(peer).default([]), ports: z.array(policyPort).default([]) },
  'an egress rule',
).transform((r): PolicyRule => ({ peers: r.to, ports: r.ports }));

const networkPolicyBody = z.object({
  spec: exactObject(
    {
      podSelector: labelSelector.prefault({}),
      policyTypes: z.array(enumSchema(['Ingress', 'Egress'] as const)).optional(),
      ingress: z.array(ingressRule).default([]),
      egress: z.array(egressRule).default([]),
    },
    'a NetworkPolicy spec',
  )
    .superRefine((s, ctx) => {
      const seen = new Set<string>();
      s.policyTypes?.forEach((t, i) => {
        if (seen.has(t))
          ctx.addIssue({ code: 'custom', message: `${t} listed twice`, path: ['policyTypes', i] });
        seen.add(t);
      });
    })
    .transform(
      (s): K8sNetworkPolicySpec => ({
        podSelector: s.podSelector,
        ...(s.policyTypes ? { policyTypes: s.policyTypes } : {}),
        ingress: s.ingress,
        egress: s.egress,
      }),
    )
    .prefault({}),
});

const networkPolicy = defineKind({
  namespaced: true,
  nameRule: 'subdomain',
  body: networkPolicyBody,
  build(meta, { spec }, ctx): ValidateResult {
    try {
      const resource = k8sNetworkPolicyToCalico({ ...meta, namespace: meta.namespace as string }, spec);
      return { resource };
    } catch (e) {
      if (!(e instanceof K8sPolicyConversionError)) throw e;
      return { errors: [{ origin: ctx.origin, resource: ctx.id, field: e.field, message: e.reason }] };
    }
  },
});

export const networkingV1: Record<string, KindHandler> = {
  NetworkPolicy: networkPolicy,
};
