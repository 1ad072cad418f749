// The shapes the services controller's calculation takes and gives (services/federation.ts,
// services/mcs.ts), shared by the controller, its writers and `fedmesh services`.
import type {
  EndpointSlice,
  EndpointSubset,
  Endpoints,
  Service,
  ServiceExport,
  ServiceImport,
} from '../model/resources.ts';

/** One cluster as the calculation sees it. */
export interface ClusterView {
  cluster: string;
  remote: boolean;
  services: readonly Service[];
  /** `namespace/name` → that Service's endpoints (its Endpoints object, or derived), owned ones excluded. */
  endpoints: ReadonlyMap<string, readonly EndpointSubset[]>;
  exports: readonly ServiceExport[];
}

export interface FederationInput {
  local: ClusterView;
  /** Remotes whose Services can be read and are not withdrawn, in any order. */
  remotes: readonly ClusterView[];
  /** The local cluster's Endpoints objects as they are (`namespace/name`), to tell ours from others'. */
  localEndpoints: ReadonlyMap<string, Endpoints>;
  /** The local cluster's ServiceImports as they are. */
  localImports: ReadonlyMap<string, ServiceImport>;
}

/** One endpoint of a reported Service, flattened for people: one row per (address, port). */
export interface EndpointRow {
  cluster: string;
  /** targetRef.name as written (remote: `<cluster>/<pod>`), if any. */
  pod?: string;
  ip: string;
  port: number;
  portName: string;
  protocol: string;
  ready: boolean;
}

export interface ServiceReport {
  namespace: string;
  name: string;
  kind: 'federated' | 'imported';
  /** Federated: the annotation's text; imported: undefined. */
  selector?: string;
  /** Whether the controller writes endpoints for it (false: refused, see problems). */
  active: boolean;
  /** Federated: the backing Services as `<cluster>/<namespace>/<name>`; imported: exporting clusters. */
  sources: string[];
  endpoints: EndpointRow[];
  problems: string[];
}

export interface DesiredState {
  endpoints: Endpoints[];
  endpointSlices: EndpointSlice[];
  serviceImports: ServiceImport[];
  /** Conditions for the local cluster's ServiceExports. */
  exportStatus: ExportStatus[];
  services: ServiceReport[];
}

/** `namespace/name`: how objects of one kind are told apart within a cluster. */
export function key(r: { namespace?: string; name: string }): string {
  return `${r.namespace ?? ''}/${r.name}`;
}

export interface ExportCondition {
  type: 'Valid' | 'Conflict';
  status: 'True' | 'False';
  reason: string;
  message: string;
}

export interface ExportStatus {
  namespace: string;
  name: string;
  conditions: ExportCondition[];
}
