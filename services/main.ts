// `fedmesh services-controller`: the controller wired to its datastore, its writer, metrics and
// health.
import { startHealthServer } from '../lib/health.ts';
import { logger } from '../lib/log.ts';
import { counter, gauge } from '../lib/metrics.ts';
import { describeConnection } from '../syncer/datastore/connection.ts';
import {
  type DatastoreFlags,
  loadDrivers,
  openConnection,
  parseDatastoreSpec,
} from '../syncer/datastore/open.ts';
import { ServicesController } from './controller.ts';
import { resolverFor } from './remotes.ts';
import { FileWriter, type OwnedWriter } from './writer.ts';

const log = logger('services-controller');

export interface ServicesControllerOptions {
  cluster: string;
  datastore: string;
  /** --k8s-* (and --etcd-*) flags for --datastore. */
  datastoreFlags?: DatastoreFlags;
  healthListen?: string;
  remoteSyncTimeoutMs?: number;
  remoteEndpointsGraceMs?: number;
}

export async function writerFor(spec: string, flags: DatastoreFlags = {}): Promise<OwnedWriter> {
  const config = parseDatastoreSpec(spec, flags);
  if (config.type === 'file') return new FileWriter(config.dir);
  if (config.type === 'kubernetes') {
    const { KubeWriter } = await import('./kube-writer.ts');
    return KubeWriter.fromConnection(config);
  }
  throw new Error(
    `--datastore ${describeConnection(config)}: the services controller writes to file or kubernetes datastores only`,
  );
}

export async function runServicesController(opts: ServicesControllerOptions): Promise<() => Promise<void>> {
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(opts.cluster))
    throw new Error(`--cluster ${opts.cluster}: must be a DNS label (lower-case letters, digits, '-')`);
  const config = parseDatastoreSpec(opts.datastore, opts.datastoreFlags);
  // Remotes may use any driver: loaded now, so a configuration one cannot use is refused at once.
  await loadDrivers();
  const controller = new ServicesController({
    cluster: opts.cluster,
    local: openConnection(config),
    localDerive: config.type === 'file',
    writer: await writerFor(opts.datastore, opts.datastoreFlags),
    resolveRemote: resolverFor(opts.datastore),
    remoteSyncTimeoutMs: opts.remoteSyncTimeoutMs ?? 10_000,
    remoteEndpointsGraceMs: opts.remoteEndpointsGraceMs ?? 0,
  });
  await controller.start();
  const written = () => controller.written?.services ?? [];
  gauge(
    'fedmesh_services_in_sync',
    'Whether the controller has its in-sync view and writes (1) or not yet (0).',
    [],
    (g) => g.set(controller.inSync ? 1 : 0),
  );
  gauge('fedmesh_services_federated', 'Federated Services whose endpoints the controller writes.', [], (g) =>
    g.set(written().filter((s) => s.kind === 'federated' && s.active).length),
  );
  gauge('fedmesh_services_imported', 'ServiceImports the controller writes (MCS API).', [], (g) =>
    g.set(written().filter((s) => s.kind === 'imported' && s.active).length),
  );
  gauge('fedmesh_services_refused', 'Federated or exported Services with a problem (see /status).', [], (g) =>
    g.set(written().filter((s) => s.problems.length > 0).length),
  );
  gauge('fedmesh_services_endpoints', 'Endpoint addresses written, per source cluster.', ['cluster'], (g) => {
    g.reset();
    const per = new Map<string, Set<string>>();
    for (const s of written())
      for (const e of s.endpoints) {
        const set = per.get(e.cluster) ?? new Set();
        set.add(`${s.kind}/${s.namespace}/${s.name}/${e.ip}`);
        per.set(e.cluster, set);
      }
    for (const [cluster, set] of per) g.set({ cluster }, set.size);
  });
  counter(
    'fedmesh_services_write_failures_total',
    'Writes of owned objects that failed (and were retried).',
    () => controller.writeFailures,
  );
  gauge(
    'fedmesh_services_remote_state',
    'Remote cluster state as the controller sees it: 1 for its state.',
    ['cluster', 'state'],
    (g) => {
      g.reset();
      for (const r of controller.remoteStatuses()) g.set({ cluster: r.cluster, state: r.status }, 1);
    },
  );
  const health = opts.healthListen
    ? await startHealthServer(opts.healthListen, {
        live: () => true,
        ready: () => controller.written !== undefined,
        status: () => ({
          cluster: opts.cluster,
          inSync: controller.inSync,
          writes: controller.writes,
          writeFailures: controller.writeFailures,
          lastWriteError: controller.lastWriteError,
          remotes: controller.remoteStatuses(),
          services: controller.last?.services ?? [],
          exportStatus: controller.last?.exportStatus ?? [],
        }),
      })
    : undefined;
  log.info({ cluster: opts.cluster, datastore: describeConnection(config) }, 'services controller running');
  return async () => {
    await controller.stop();
    health?.close();
  };
}
