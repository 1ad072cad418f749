// `fedmesh services --cluster NAME --datastore …`: every federated or imported Service with its
// endpoints (cluster, pod, IP, port) and problems, computed by the controller's own code from the
// same datastores, so what it prints is what the controller writes.

import { type RemoteStatus, ServicesController } from '../services/controller.ts';
import { resolverFor } from '../services/remotes.ts';
import type { ExportStatus, ServiceReport } from '../services/types.ts';
import { type DatastoreFlags, openConnection, parseDatastoreSpec } from '../syncer/datastore/open.ts';

export interface ServicesReport {
  cluster: string;
  services: ServiceReport[];
  exports: ExportStatus[];
  remotes: RemoteStatus[];
}

export async function collectServices(opts: {
  cluster: string;
  datastore: string;
  datastoreFlags?: DatastoreFlags;
  timeoutMs?: number;
}): Promise<ServicesReport> {
  const config = parseDatastoreSpec(opts.datastore, opts.datastoreFlags);
  const controller = new ServicesController({
    cluster: opts.cluster,
    local: openConnection(config),
    localDerive: config.type === 'file',
    writer: { description: 'none (fedmesh services only reads)', write: async () => {} },
    resolveRemote: resolverFor(opts.datastore),
    remoteSyncTimeoutMs: opts.timeoutMs ?? 5000,
    remoteEndpointsGraceMs: 0,
    debounceMs: 0,
  });
  await controller.start();
  try {
    const deadline = Date.now() + (opts.timeoutMs ?? 5000) + 2000;
    while (!controller.written && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (!controller.inSync) throw new Error(`${opts.datastore}: not in sync in time`);
    const d = controller.compute();
    return {
      cluster: opts.cluster,
      services: d.services,
      exports: d.exportStatus,
      remotes: controller.remoteStatuses(),
    };
  } finally {
    await controller.stop();
  }
}

function table(head: string[], body: string[][]): string[] {
  const all = [head, ...body];
  const w = head.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  return all.map(
    (r) =>
      `  ${r
        .map((c, i) => c.padEnd(w[i]!))
        .join('  ')
        .trimEnd()}`,
  );
}

export function formatServices(r: ServicesReport): string {
  const lines: string[] = [];
  if (r.services.length === 0) lines.push(`No federated or imported Services in cluster ${r.cluster}.`);
  for (const s of r.services) {
    const what =
      s.kind === 'federated'
        ? `Federated Service ${s.namespace}/${s.name} (selector: ${s.selector})`
        : `Imported Service ${s.namespace}/${s.name} (ServiceImport)`;
    lines.push(what);
    lines.push(
      `  ${s.kind === 'federated' ? 'backing Services' : 'exported from'}: ${s.sources.join(', ') || 'none'}`,
    );
    if (s.endpoints.length > 0)
      lines.push(
        ...table(
          ['CLUSTER', 'POD', 'IP', 'PORT', 'READY'],
          s.endpoints.map((e) => [
            e.cluster,
            e.pod ?? '-',
            e.ip,
            `${e.portName ? `${e.portName} ` : ''}${e.port}/${e.protocol}`,
            e.ready ? 'yes' : 'no',
          ]),
        ),
      );
    else if (s.active) lines.push('  no endpoints');
    for (const p of s.problems) lines.push(`  problem: ${p}`);
    lines.push('');
  }
  for (const e of r.exports)
    for (const c of e.conditions.filter((c) =>
      c.status === 'True' ? c.type === 'Conflict' : c.type === 'Valid',
    ))
      lines.push(
        `ServiceExport ${e.namespace}/${e.name}: ${c.type}=${c.status} ${c.reason}${c.message ? `: ${c.message}` : ''}`,
      );
  for (const rc of r.remotes)
    lines.push(
      `remote ${rc.cluster}: ${rc.status}${rc.detail ? ` (${rc.detail})` : ''}${rc.contributing ? '' : ' — no endpoints from it'}`,
    );
  return lines.join('\n').trimEnd();
}

export async function runServices(opts: {
  cluster: string;
  datastore: string;
  datastoreFlags?: DatastoreFlags;
  output: string;
}): Promise<number> {
  if (opts.output !== 'text' && opts.output !== 'json')
    throw new Error(`--output ${opts.output}: expected text or json`);
  const r = await collectServices(opts);
  process.stdout.write(opts.output === 'json' ? `${JSON.stringify(r, null, 2)}\n` : `${formatServices(r)}\n`);
  return 0;
}
