// A Kubernetes Node (v1) as the Calico Node it stands for in Kubernetes-datastore mode: Calico keeps
// the node's BGP/VXLAN settings in annotations on the Kubernetes Node, and converts them to a
// projectcalico.org/v3 Node; the same conversion here, validated by the v3 Node's rules, with
// refusals naming the annotation that was wrong.
import { calicoV3 } from './calico.ts';
import { formatPath, isMapping } from './common.ts';
import type { KindHandler } from './kind.ts';

/** Calico's annotations on a Kubernetes Node → the v3 Node field each one fills. */
const NODE_ANNOTATIONS: ReadonlyArray<readonly [annotation: string, path: readonly string[]]> = [
  ['projectcalico.org/IPv4Address', ['spec', 'bgp', 'ipv4Address']],
  ['projectcalico.org/IPv4VXLANTunnelAddr', ['spec', 'ipv4VXLANTunnelAddr']],
  ['projectcalico.org/VXLANTunnelMACAddr', ['spec', 'vxlanTunnelMACAddr']],
];

function toCalicoNode(obj: Record<string, unknown>): Record<string, unknown> {
  const metadata = isMapping(obj.metadata) ? obj.metadata : {};
  const annotations = isMapping(metadata.annotations) ? metadata.annotations : {};
  const spec: Record<string, unknown> = {};
  for (const [annotation, [, first, second]] of NODE_ANNOTATIONS) {
    const value = annotations[annotation];
    if (value === undefined || value === '') continue;
    if (second !== undefined) spec[first as string] = { [second]: value };
    else spec[first as string] = value;
  }
  return { apiVersion: 'projectcalico.org/v3', kind: 'Node', metadata, spec };
}

const calicoNode = calicoV3.Node as KindHandler;

export const kubeNode: KindHandler = {
  namespaced: false,
  validate(obj, ctx) {
    const result = calicoNode.validate(toCalicoNode(obj), ctx);
    if (!('errors' in result)) return result;
    // Point at the annotation the operator (or calico-node) wrote, not at the converted field.
    const fieldOf = new Map(
      NODE_ANNOTATIONS.map(([a, path]) => [formatPath(path), formatPath(['metadata', 'annotations', a])]),
    );
    return {
      errors: result.errors.map((e) => ({
        ...e,
        ...(e.field ? { field: fieldOf.get(e.field) ?? e.field } : {}),
      })),
    };
  },
};
