// Kubernetes core kinds: Namespace, ServiceAccount and Pod (as a WorkloadEndpoint), plus the
// kinds recognised but not handled yet.
import { z } from 'zod';
import type { Cidr } from '../net.ts';
import { podToWorkloadEndpoint } from '../pod.ts';
import type { NamedPort, Namespace, ResourceError, ServiceAccount } from '../resources.ts';
import { checkBool, checked, checkInt, formatPath, requireString } from './common.ts';
import { checkIpNetwork, checkProtocol, isIPv6 } from './fields.ts';
import {
  defineKind,
  type KindContext,
  type KindHandler,
  notHandledYet,
  type ValidateResult,
} from './kind.ts';

const str = checked(requireString);
const optStr = str.optional();

const namespace = defineKind({
  namespaced: false,
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
  spec: z
    .object({
      nodeName: optStr,
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

const ANN_POD_IPS = 'cni.projectcalico.org/podIPs';
const ANN_POD_IP = 'cni.projectcalico.org/podIP';

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
  nameRule: 'subdomain',
  body: podBody,
  build(meta, { spec, status }, ctx): ValidateResult {
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
      ...(sa ? { serviceAccountName: sa } : {}),
      ips: found.ips,
      ports: namedPorts(spec),
    });
    return 'kind' in result ? { resource: result } : result;
  },
});

export const coreV1: Record<string, KindHandler> = {
  Namespace: namespace,
  ServiceAccount: serviceAccount,
  Pod: pod,
  Service: notHandledYet(true, 'Services are not handled yet'),
  Endpoints: notHandledYet(true, 'Endpoints are not handled yet'),
};

export const networkingV1: Record<string, KindHandler> = {
  NetworkPolicy: notHandledYet(true, 'Kubernetes NetworkPolicy is not handled yet'),
};
