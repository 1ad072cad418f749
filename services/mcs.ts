// The Kubernetes multi-cluster services API (KEP-1645), pure: a Service with a ServiceExport in
// any cluster the local cluster can see (itself, or a remote it has an RCC to) is imported here as
// a ServiceImport plus one EndpointSlice per exporting cluster. Conflicting exports are resolved
// as the KEP says — the oldest export wins (creationTimestamp, then cluster name) — and reported
// on the local cluster's ServiceExports as conditions.
import type { EndpointPort, Service, ServiceExport, ServiceImport } from '../model/resources.ts';
import { cmp, portId, renameRemote, repack, rows, selectPorts, slicesFor } from './endpoints.ts';
import { CONTROLLER_ORIGIN, IMPORT_MANAGED_BY, MANAGED_BY_VALUE, MCS_SERVICE_NAME } from './names.ts';
import {
  type ClusterView,
  type DesiredState,
  type ExportCondition,
  type FederationInput,
  key,
  type ServiceReport,
} from './types.ts';

interface Exported {
  view: ClusterView;
  exp: ServiceExport;
  svc: Service;
}

function importType(svc: Service): ServiceImport['spec']['type'] {
  return svc.spec.clusterIP === 'None' ? 'Headless' : 'ClusterSetIP';
}

function describePort(p: EndpointPort): string {
  return `${p.port}/${p.protocol}`;
}

/** KEP-1645's resolution: the oldest export first; a tie (or no timestamps) by cluster name. */
function oldestFirst(a: Exported, b: Exported): number {
  const ta = a.exp.createdAt ?? '\uffff';
  const tb = b.exp.createdAt ?? '\uffff';
  return cmp(ta, tb) || cmp(a.view.cluster, b.view.cluster);
}

export function importServices(
  clusters: readonly ClusterView[],
  input: FederationInput,
  out: DesiredState,
): void {
  const local = input.local;
  const groups = new Map<string, Exported[]>();
  const localInvalid = new Map<string, ExportCondition>();
  for (const view of clusters) {
    const services = new Map(view.services.map((s) => [key(s), s]));
    for (const exp of view.exports) {
      const svc = services.get(key(exp));
      if (!svc) {
        if (view === local)
          localInvalid.set(key(exp), {
            type: 'Valid',
            status: 'False',
            reason: 'NoService',
            message: `Service ${key(exp)} does not exist`,
          });
        continue;
      }
      if (svc.spec.type === 'ExternalName') {
        if (view === local)
          localInvalid.set(key(exp), {
            type: 'Valid',
            status: 'False',
            reason: 'InvalidServiceType',
            message: 'ExternalName Services cannot be exported',
          });
        continue;
      }
      const k = key(exp);
      groups.set(k, [...(groups.get(k) ?? []), { view, exp, svc }]);
    }
  }
  for (const [k, cond] of localInvalid) {
    const [namespace, name] = k.split('/') as [string, string];
    out.exportStatus.push({ namespace, name, conditions: [cond, noConflict()] });
  }
  for (const [k, group] of [...groups].sort(([a], [b]) => cmp(a, b)))
    importOne(k, group.sort(oldestFirst), input, out);
}

function noConflict(): ExportCondition {
  return { type: 'Conflict', status: 'False', reason: 'NoConflicts', message: '' };
}

function importOne(k: string, group: Exported[], input: FederationInput, out: DesiredState): void {
  const [namespace, name] = k.split('/') as [string, string];
  const winner = group[0]!;
  const type = importType(winner.svc);
  const claimed = new Map<string, { port: EndpointPort; cluster: string }>();
  const conflicts = new Map<Exported, string[]>();
  for (const e of group) {
    const problems: string[] = [];
    if (importType(e.svc) !== type)
      problems.push(`type ${importType(e.svc)} differs from ${type} in cluster ${winner.view.cluster}`);
    for (const sp of e.svc.spec.ports) {
      const p: EndpointPort = { name: sp.name, port: sp.port, protocol: sp.protocol };
      const first = claimed.get(p.name);
      if (!first) claimed.set(p.name, { port: p, cluster: e.view.cluster });
      else if (first.port.port !== p.port || first.port.protocol !== p.protocol)
        problems.push(
          `port ${JSON.stringify(p.name)} is ${describePort(p)} here but ${describePort(first.port)} in cluster ${first.cluster}, exported earlier`,
        );
    }
    if (problems.length > 0) conflicts.set(e, problems);
  }
  const ports = [...claimed.values()].map((c) => c.port).sort((a, b) => cmp(a.name, b.name));
  const wanted = new Set(ports.map(portId));
  const report: ServiceReport = {
    namespace,
    name,
    kind: 'imported',
    active: true,
    sources: group.map((e) => e.view.cluster).sort(cmp),
    endpoints: [],
    problems: [...conflicts].flatMap(([e, ps]) =>
      ps.map((p) => `export conflict in cluster ${e.view.cluster}: ${p}`),
    ),
  };
  out.services.push(report);

  const existing = input.localImports.get(k);
  if (existing && existing.labels[IMPORT_MANAGED_BY] !== MANAGED_BY_VALUE) {
    report.active = false;
    report.problems.push(`ServiceImport ${k} exists and is not managed by fedmesh: left alone`);
  } else {
    out.serviceImports.push({
      kind: 'ServiceImport',
      name,
      namespace,
      labels: { [IMPORT_MANAGED_BY]: MANAGED_BY_VALUE },
      annotations: {},
      origin: CONTROLLER_ORIGIN,
      spec: { type, ports, ips: [] },
      clusters: report.sources,
    });
    for (const e of group) {
      const selected = selectPorts(e.view.endpoints.get(k) ?? [], wanted);
      const subsets = repack(e.view.remote ? renameRemote(selected, e.view.cluster) : selected);
      report.endpoints.push(...rows(e.view.cluster, subsets));
      out.endpointSlices.push(
        ...slicesFor({
          namespace,
          service: name,
          cluster: e.view.cluster,
          purpose: 'imported',
          labels: { [MCS_SERVICE_NAME]: name },
          subsets,
        }),
      );
    }
  }

  const mine = group.find((e) => e.view === input.local);
  if (mine) {
    const problems = conflicts.get(mine);
    out.exportStatus.push({
      namespace,
      name,
      conditions: [
        { type: 'Valid', status: 'True', reason: 'ServiceExported', message: '' },
        problems
          ? {
              type: 'Conflict',
              status: 'True',
              reason: problems.some((p) => p.startsWith('type')) ? 'TypeConflict' : 'PortConflict',
              message: problems.join('; '),
            }
          : noConflict(),
      ],
    });
  }
}
