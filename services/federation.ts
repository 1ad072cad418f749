// The services controller's calculation, pure: the local cluster's Services, Endpoints and
// ServiceExports plus each readable remote's → every object the controller should own in the local
// cluster (federated Endpoints and EndpointSlices, ServiceImports with their slices) and a report
// per Service for status and `fedmesh services`.
//
// Federated Services follow Calico Enterprise's federated services controller
// (../shared/reference/calico-fidelity.md): annotation, effective selector, backing Services, port
// matching by (name, protocol), remote targetRef renaming, repacking, ownership by annotation.
import type { EndpointSubset, Endpoints, Labels, Service } from '../model/resources.ts';
import { and, parseSelectorCached, SelectorParseError } from '../model/selector/index.ts';
import { cmp, portId, renameRemote, repack, rows, selectPorts, slicesFor } from './endpoints.ts';
import { importServices } from './mcs.ts';
import {
  CONTROLLER_ORIGIN,
  FEDMESH_SELECTOR,
  NAMESPACE_LABEL,
  REMOTE_CLUSTER_LABEL,
  SERVICE_NAME,
  SKIP_MIRROR,
  TIGERA_SELECTOR,
} from './names.ts';
import {
  type ClusterView,
  type DesiredState,
  type FederationInput,
  key,
  type ServiceReport,
} from './types.ts';

function isFederatedService(s: Service): boolean {
  return s.annotations[TIGERA_SELECTOR] !== undefined || s.annotations[FEDMESH_SELECTOR] !== undefined;
}

/** Owned: carries the annotation the controller writes. Anything else is never touched. */
export function ownedEndpoints(e: Endpoints): boolean {
  return e.annotations[TIGERA_SELECTOR] !== undefined;
}

type Selection = { text: string; matches: (labels: Labels) => boolean } | { problem: string };

/** The annotation(s) → the effective selector, or why the Service is not federated. */
function effectiveSelector(svc: Service): Selection {
  const tigera = svc.annotations[TIGERA_SELECTOR];
  const fedmesh = svc.annotations[FEDMESH_SELECTOR];
  if (tigera !== undefined && fedmesh !== undefined && tigera.trim() !== fedmesh.trim())
    return {
      problem: `annotations ${TIGERA_SELECTOR} (${JSON.stringify(tigera)}) and ${FEDMESH_SELECTOR} (${JSON.stringify(fedmesh)}) disagree`,
    };
  const text = (tigera ?? fedmesh) as string;
  if (svc.spec.selector)
    return {
      problem:
        'has a spec.selector: a federated Service must have none (its endpoints come from the backing Services)',
    };
  try {
    // Parsed alone first: a text like `a == 'x') || (b == 'y'` must not escape the namespace term.
    const own = parseSelectorCached(text);
    const sel = and(parseSelectorCached(`${NAMESPACE_LABEL} == ${JSON.stringify(svc.namespace)}`), own);
    return { text, matches: (labels) => sel.evaluate(labels) };
  } catch (e) {
    if (!(e instanceof SelectorParseError)) throw e;
    return { problem: `its selector ${JSON.stringify(text)} does not parse: ${e.message}` };
  }
}

interface Contribution {
  cluster: string;
  subsets: EndpointSubset[];
}

function federate(
  svc: Service,
  clusters: readonly ClusterView[],
  input: FederationInput,
  out: DesiredState,
): void {
  const sel = effectiveSelector(svc);
  const text = svc.annotations[TIGERA_SELECTOR] ?? svc.annotations[FEDMESH_SELECTOR] ?? '';
  const report: ServiceReport = {
    namespace: svc.namespace,
    name: svc.name,
    kind: 'federated',
    selector: text,
    active: false,
    sources: [],
    endpoints: [],
    problems: [],
  };
  out.services.push(report);
  if ('problem' in sel) {
    report.problems.push(`not federated: ${sel.problem}`);
    return;
  }
  const existing = input.localEndpoints.get(key(svc));
  if (existing && !ownedEndpoints(existing)) {
    report.problems.push(
      `Endpoints ${key(svc)} exist without the ${TIGERA_SELECTOR} annotation: not ours, left alone`,
    );
    return;
  }
  report.active = true;
  const wanted = new Set(svc.spec.ports.map(portId));
  const contributions: Contribution[] = [];
  for (const c of clusters) {
    const subsets: EndpointSubset[] = [];
    for (const backing of c.services) {
      if (backing.namespace !== svc.namespace || isFederatedService(backing)) continue;
      const labels: Labels = {
        ...backing.labels,
        [NAMESPACE_LABEL]: backing.namespace,
        ...(c.remote ? { [REMOTE_CLUSTER_LABEL]: c.cluster } : {}),
      };
      if (!sel.matches(labels)) continue;
      report.sources.push(`${c.cluster}/${key(backing)}`);
      const selected = selectPorts(c.endpoints.get(key(backing)) ?? [], wanted);
      subsets.push(...(c.remote ? renameRemote(selected, c.cluster) : selected));
    }
    if (subsets.length > 0) contributions.push({ cluster: c.cluster, subsets: repack(subsets) });
  }
  out.endpoints.push({
    kind: 'Endpoints',
    name: svc.name,
    namespace: svc.namespace,
    labels: { [SKIP_MIRROR]: 'true' },
    annotations: { [TIGERA_SELECTOR]: text },
    origin: CONTROLLER_ORIGIN,
    subsets: repack(contributions.flatMap((c) => c.subsets)),
  });
  for (const c of contributions) {
    report.endpoints.push(...rows(c.cluster, c.subsets));
    out.endpointSlices.push(
      ...slicesFor({
        namespace: svc.namespace,
        service: svc.name,
        cluster: c.cluster,
        purpose: 'federated',
        labels: { [SERVICE_NAME]: svc.name },
        subsets: c.subsets,
      }),
    );
  }
}

/** Everything the controller should own in the local cluster, given what it sees. */
export function desiredState(input: FederationInput): DesiredState {
  const out: DesiredState = {
    endpoints: [],
    endpointSlices: [],
    serviceImports: [],
    exportStatus: [],
    services: [],
  };
  // Local first, then remotes by name: the order only matters for reports, never for content.
  const clusters = [input.local, ...[...input.remotes].sort((a, b) => cmp(a.cluster, b.cluster))];
  const federated = input.local.services.filter(isFederatedService).sort((a, b) => cmp(key(a), key(b)));
  for (const svc of federated) federate(svc, clusters, input, out);
  importServices(clusters, input, out);
  out.endpoints.sort((a, b) => cmp(key(a), key(b)));
  out.endpointSlices.sort((a, b) => cmp(key(a), key(b)));
  out.serviceImports.sort((a, b) => cmp(key(a), key(b)));
  out.services.sort((a, b) =>
    cmp(`${a.namespace}/${a.name}/${a.kind}`, `${b.namespace}/${b.name}/${b.kind}`),
  );
  return out;
}
