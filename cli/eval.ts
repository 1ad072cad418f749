// `fedmesh eval SELECTOR`: which local and remote endpoints a selector matches, like `calicoq eval`.
// Reads the local datastore and follows its RemoteClusterConfigurations, then evaluates the
// selector on exactly the labels an agent would see (profiles inherited, implicit labels added).
import { LabelIndex } from '../agent/calc/label-index.ts';
import type { Resource } from '../model/resources.ts';
import { parseSelector, SelectorParseError } from '../model/selector/index.ts';
import type { Update } from '../proto/service.ts';
import { toUpdate } from '../syncer/convert.ts';
import type { DatastoreFlags } from '../syncer/datastore/open.ts';
import { readDatastore } from '../syncer/datastore/read-once.ts';

export interface EvalOptions {
  selector: string;
  cluster: string;
  datastore: string;
  /** Credentials and TLS for --datastore (the --k8s-* flags). */
  datastoreFlags?: DatastoreFlags;
  output: string;
}

async function loadFile(spec: string, flags: DatastoreFlags = {}): Promise<Resource[]> {
  const { resources, errors } = await readDatastore(spec, flags);
  for (const e of errors)
    process.stderr.write(`warning: ${e.origin.source}: ${e.resource ?? ''} ${e.field ?? ''}: ${e.message}\n`);
  return resources;
}

export async function runEval(opts: EvalOptions): Promise<number> {
  let selector: ReturnType<typeof parseSelector>;
  try {
    selector = parseSelector(opts.selector);
  } catch (e) {
    if (e instanceof SelectorParseError) {
      process.stderr.write(`fedmesh eval: invalid selector: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  const updates: Update[] = [];
  const local = await loadFile(opts.datastore, opts.datastoreFlags);
  const add = (cluster: string, remote: boolean, rs: Resource[]) => {
    for (const r of rs) {
      const u = toUpdate({ cluster, remote }, r);
      if (u) updates.push(u);
    }
  };
  add(opts.cluster, false, local);
  for (const r of local) {
    if (
      r.kind !== 'RemoteClusterConfiguration' ||
      r.spec.datastoreType !== 'file' ||
      !r.spec.fileDatastorePath
    )
      continue;
    add(r.name, true, await loadFile(`file:${r.spec.fileDatastorePath}`));
  }
  const index = new LabelIndex({ send: () => {} });
  for (const u of updates) if (u.body.case === 'profile') index.setProfileLabels(u.key, u.body.value.labels);
  const endpoints: { name: string; cluster: string; key: string }[] = [];
  for (const u of updates) {
    const prefix = u.cluster !== opts.cluster ? `${u.cluster}/` : '';
    if (u.body.case === 'workloadEndpoint') {
      const w = u.body.value;
      index.upsertItem({
        key: u.key,
        ownLabels: w.labels,
        profiles: w.profiles,
        namespace: w.namespace,
        nets: w.ipv4Nets,
      });
      endpoints.push({ key: u.key, cluster: u.cluster, name: `${prefix}${w.namespace}/${w.name}` });
    } else if (u.body.case === 'hostEndpoint') {
      // Host endpoints are not namespaced: `<name>`, or `<cluster>/<name>` for a remote one.
      const h = u.body.value;
      index.upsertItem({ key: u.key, ownLabels: h.labels, profiles: h.profiles, nets: h.expectedIpv4s });
      endpoints.push({ key: u.key, cluster: u.cluster, name: `${prefix}${h.name}` });
    }
  }
  const matches = endpoints
    .filter((e) => selector.evaluate(index.getLabels(e.key) ?? {}))
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  if (opts.output === 'json') {
    process.stdout.write(
      `${JSON.stringify({ selector: selector.canonical, matches: matches.map((m) => ({ endpoint: m.name, cluster: m.cluster })) }, null, 2)}\n`,
    );
  } else {
    process.stdout.write(`Endpoints matching selector ${selector.canonical}:\n`);
    for (const m of matches) process.stdout.write(`  ${m.name}\n`);
  }
  return 0;
}
