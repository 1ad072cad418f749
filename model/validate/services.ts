// Services and their endpoints: v1 Service and Endpoints, discovery.k8s.io/v1 EndpointSlice, and
// the multi-cluster services API (multicluster.x-k8s.io/v1alpha1 ServiceExport, ServiceImport).
// Strict (unknown fields refused) wherever the services controller interprets the content — ports,
// subsets, addresses, target references — since a misspelt `notReadyAdresses` silently dropped
// would publish a not-ready pod as ready, or no pod at all.
import { isIP } from 'node:net';
import { z } from 'zod';
import type {
  EndpointAddress,
  EndpointPort,
  EndpointSlice,
  Endpoints,
  ObjectRef,
  Service,
  ServiceExport,
  ServiceImport,
  ServicePort,
  ServiceProtocol,
  SliceEndpoint,
} from '../resources.ts';
import {
  checkBool,
  checked,
  checkInt,
  checkName,
  enumSchema,
  FieldError,
  labelsSchema,
  requireString,
} from './common.ts';
import { checkPortName } from './fields.ts';
import { defineKind, type KindHandler } from './kind.ts';
import { exactObject } from './kube.ts';

const str = checked(requireString);
const optStr = str.optional();
const optBool = checked(checkBool).optional();
const protocol = enumSchema<ServiceProtocol>(['TCP', 'UDP', 'SCTP']).default('TCP');
const portNumber = checked((v) => checkInt(v, 1, 65535));

function checkAddress(v: unknown): string {
  const s = requireString(v);
  if (isIP(s) === 0) throw new FieldError(`"${s}" is not an IP address`);
  return s;
}

/** A Service or endpoint port name: an IANA service name (lower case, digits, '-'; a letter). */
function checkServicePortName(v: unknown): string {
  const s = requireString(v);
  try {
    return checkPortName(s);
  } catch {
    throw new FieldError(
      `"${s}" is not a port name: at most 15 lower-case letters, digits and '-', with a letter`,
    );
  }
}

const portName = checked(checkServicePortName).optional();

/** Two ports of one object with the same name, or two unnamed ones, are refused (as the API server does). */
function uniqueNames(ports: readonly { name: string }[], ctx: z.RefinementCtx, path: string): void {
  const seen = new Set<string>();
  ports.forEach((p, i) => {
    if (seen.has(p.name))
      ctx.addIssue({
        code: 'custom',
        message: p.name ? `port name "${p.name}" is used twice` : 'more than one port without a name',
        path: [path, i, 'name'],
      });
    seen.add(p.name);
  });
}

const objectRef = exactObject(
  {
    kind: optStr,
    name: optStr,
    namespace: optStr,
    uid: optStr,
    apiVersion: optStr,
    resourceVersion: optStr,
    fieldPath: optStr,
  },
  'a targetRef',
).transform(
  (r): ObjectRef => ({
    ...(r.kind ? { kind: r.kind } : {}),
    ...(r.name ? { name: r.name } : {}),
    ...(r.namespace ? { namespace: r.namespace } : {}),
    ...(r.uid ? { uid: r.uid } : {}),
  }),
);

// ---------------------------------------------------------------------------------------------
// Service

const servicePort = exactObject(
  {
    name: portName,
    protocol,
    port: portNumber,
    targetPort: checked((v): number | string =>
      typeof v === 'number' ? checkInt(v, 1, 65535) : checkServicePortName(v),
    ).optional(),
    nodePort: checked((v) => checkInt(v, 1, 65535)).optional(),
    appProtocol: optStr,
  },
  'a Service port',
).transform(
  (p): ServicePort => ({
    name: p.name ?? '',
    protocol: p.protocol,
    port: p.port,
    ...(p.targetPort !== undefined ? { targetPort: p.targetPort } : {}),
  }),
);

const serviceBody = z.object({
  spec: z
    .object({
      selector: labelsSchema.optional(),
      ports: z.array(servicePort).default([]),
      type: optStr,
      clusterIP: optStr,
    })
    .superRefine((s, ctx) => {
      if (s.ports.length > 1)
        s.ports.forEach((p, i) => {
          if (!p.name)
            ctx.addIssue({
              code: 'custom',
              message: 'required when a Service has several ports',
              path: ['ports', i, 'name'],
            });
        });
      uniqueNames(s.ports, ctx, 'ports');
    })
    .prefault({}),
});

export const service = defineKind({
  namespaced: true,
  nameRule: 'label',
  body: serviceBody,
  build: (meta, { spec }): Service => ({
    kind: 'Service',
    ...meta,
    namespace: meta.namespace as string,
    spec: {
      ...(spec.selector && Object.keys(spec.selector).length > 0 ? { selector: spec.selector } : {}),
      ports: spec.ports,
      ...(spec.type ? { type: spec.type } : {}),
      ...(spec.clusterIP ? { clusterIP: spec.clusterIP } : {}),
    },
  }),
});

// ---------------------------------------------------------------------------------------------
// Endpoints

const endpointAddress = exactObject(
  { ip: checked(checkAddress), hostname: optStr, nodeName: optStr, targetRef: objectRef.optional() },
  'an endpoint address',
).transform(
  (a): EndpointAddress => ({
    ip: a.ip,
    ...(a.hostname ? { hostname: a.hostname } : {}),
    ...(a.nodeName ? { nodeName: a.nodeName } : {}),
    ...(a.targetRef && Object.keys(a.targetRef).length > 0 ? { targetRef: a.targetRef } : {}),
  }),
);

const endpointPort = exactObject(
  { name: portName, port: portNumber, protocol, appProtocol: optStr },
  'an endpoint port',
).transform((p): EndpointPort => ({ name: p.name ?? '', port: p.port, protocol: p.protocol }));

const subset = exactObject(
  {
    addresses: z.array(endpointAddress).default([]),
    notReadyAddresses: z.array(endpointAddress).default([]),
    ports: z.array(endpointPort).default([]),
  },
  'a subset',
).superRefine((s, ctx) => uniqueNames(s.ports, ctx, 'ports'));

export const endpoints = defineKind({
  namespaced: true,
  nameRule: 'label',
  body: z.object({ subsets: z.array(subset).default([]) }),
  build: (meta, { subsets }): Endpoints => ({
    kind: 'Endpoints',
    ...meta,
    namespace: meta.namespace as string,
    subsets,
  }),
});

export const servicesCoreV1: Record<string, KindHandler> = { Service: service, Endpoints: endpoints };

// ---------------------------------------------------------------------------------------------
// EndpointSlice (discovery.k8s.io/v1)

const sliceEndpoint = exactObject(
  {
    addresses: z.array(checked(checkAddress)).min(1),
    conditions: exactObject(
      { ready: optBool, serving: optBool, terminating: optBool },
      'conditions',
    ).prefault({}),
    hostname: optStr,
    nodeName: optStr,
    zone: optStr,
    targetRef: objectRef.optional(),
    hints: z.unknown().optional(),
    deprecatedTopology: z.unknown().optional(),
  },
  'an endpoint',
).transform(
  (e): SliceEndpoint => ({
    addresses: e.addresses,
    conditions: Object.fromEntries(
      Object.entries(e.conditions).filter(([, v]) => v !== undefined),
    ) as SliceEndpoint['conditions'],
    ...(e.hostname ? { hostname: e.hostname } : {}),
    ...(e.nodeName ? { nodeName: e.nodeName } : {}),
    ...(e.zone ? { zone: e.zone } : {}),
    ...(e.targetRef && Object.keys(e.targetRef).length > 0 ? { targetRef: e.targetRef } : {}),
  }),
);

const slicePort = exactObject(
  {
    name: checked((v) => (v === '' ? '' : checkServicePortName(v))).optional(),
    port: portNumber.optional(),
    protocol,
    appProtocol: optStr,
  },
  'a port',
);

const endpointSlice = defineKind({
  namespaced: true,
  nameRule: 'subdomain',
  body: z
    .object({
      addressType: enumSchema(['IPv4', 'IPv6', 'FQDN'] as const),
      endpoints: z.array(sliceEndpoint).default([]),
      ports: z.array(slicePort).default([]),
    })
    .superRefine((b, ctx) => {
      if (b.addressType === 'FQDN') return;
      const family = b.addressType === 'IPv4' ? 4 : 6;
      b.endpoints.forEach((e, i) => {
        e.addresses.forEach((a, j) => {
          if (isIP(a) !== family)
            ctx.addIssue({
              code: 'custom',
              message: `"${a}" is not an ${b.addressType} address`,
              path: ['endpoints', i, 'addresses', j],
            });
        });
      });
    }),
  build: (meta, b): EndpointSlice => ({
    kind: 'EndpointSlice',
    ...meta,
    namespace: meta.namespace as string,
    addressType: b.addressType,
    endpoints: b.endpoints,
    // A port without a number means "all ports" in a slice; nothing fedmesh reads uses that.
    ports: b.ports.flatMap((p) =>
      p.port === undefined ? [] : [{ name: p.name ?? '', port: p.port, protocol: p.protocol }],
    ),
  }),
});

export const discoveryV1: Record<string, KindHandler> = { EndpointSlice: endpointSlice };

// ---------------------------------------------------------------------------------------------
// ServiceExport, ServiceImport (multicluster.x-k8s.io/v1alpha1, KEP-1645)

const serviceExport = defineKind({
  namespaced: true,
  nameRule: 'label',
  body: z.object({ metadata: z.object({ creationTimestamp: optStr }).prefault({}) }),
  build: (meta, b): ServiceExport => ({
    kind: 'ServiceExport',
    ...meta,
    namespace: meta.namespace as string,
    ...(b.metadata.creationTimestamp ? { createdAt: b.metadata.creationTimestamp } : {}),
  }),
});

const importPort = exactObject(
  { name: portName, port: portNumber, protocol, appProtocol: optStr },
  'a ServiceImport port',
).transform((p): EndpointPort => ({ name: p.name ?? '', port: p.port, protocol: p.protocol }));

const serviceImport = defineKind({
  namespaced: true,
  nameRule: 'label',
  body: z.object({
    spec: z
      .object({
        type: enumSchema(['ClusterSetIP', 'Headless'] as const),
        ports: z.array(importPort).default([]),
        ips: z.array(checked(checkAddress)).default([]),
      })
      .superRefine((s, ctx) => uniqueNames(s.ports, ctx, 'ports')),
    status: z
      .object({ clusters: z.array(z.object({ cluster: checked((v) => checkName('label', v)) })).default([]) })
      .prefault({}),
  }),
  build: (meta, b): ServiceImport => ({
    kind: 'ServiceImport',
    ...meta,
    namespace: meta.namespace as string,
    spec: b.spec,
    clusters: b.status.clusters.map((c) => c.cluster),
  }),
});

export const multiclusterV1alpha1: Record<string, KindHandler> = {
  ServiceExport: serviceExport,
  ServiceImport: serviceImport,
};
