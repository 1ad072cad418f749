// `fedmesh eval SELECTOR`: which local and remote endpoints a selector matches, like `calicoq eval`.
// Reads the local datastore and follows its RemoteClusterConfigurations, then evaluates the
// selector on exactly the labels an agent would see (profiles inherited, implicit labels added).
import { LabelIndex } from '../agent/calc/label-index.ts';
import { clip, terminalJson } from '../lib/text.ts';
import type { Resource } from '../model/resources.ts';
import { parseSelector, SelectorParseError } from '../model/selector/index.ts';
import type { Update } from '../proto/service.ts';
import { toUpdate } from '../syncer/convert.ts';
import { FileDatastore } from '../syncer/datastore/file.ts';
import { checkFileDatastorePath, defaultFileRoot } from '../syncer/datastore/paths.ts';
import { describeError } from './output.ts';

export interface EvalOptions {
  selector: string;
  cluster: string;
  datastore: string;
  output: string;
  /** RCC fileDatastorePaths must lie under it; default: the --datastore directory's parent. */
  fileDatastoreRoot?: string;
}

async function loadFile(spec: string, root: string | undefined): Promise<Resource[]> {
  if (!spec.startsWith('file:')) throw new Error(`--datastore ${clip(spec)}: eval supports file:DIR so far`);
  const { resources, errors } = await FileDatastore.load(spec.slice('file:'.length), root ? { root } : {});
  for (const e of errors) process.stderr.write(`warning: ${describeError(e)}\n`);
  return resources;
}

export async function runEval(opts: EvalOptions): Promise<number> {
  let selector: ReturnType<typeof parseSelector>;
  try {
    selector = parseSelector(opts.selector);
  } catch (e) {
    if (e instanceof SelectorParseError) {
      process.stderr.write(`fedmesh eval: invalid selector: ${clip(e.message, 1000)}\n`);
      return 2;
    }
    throw e;
  }
  const updates: Update[] = [];
  const root = opts.fileDatastoreRoot ?? defaultFileRoot(opts.datastore);
  const local = await loadFile(opts.datastore, root);
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
    const checked = checkFileDatastorePath(r.spec.fileDatastorePath, root);
    if ('error' in checked) {
      process.stderr.write(`warning: remote cluster ${r.name} skipped: ${checked.error}\n`);
      continue;
    }
    add(r.name, true, await loadFile(`file:${checked.dir}`, root));
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
  // The selector and names come from the operator's input and files: escaped for the terminal.
  if (opts.output === 'json') {
    process.stdout.write(
      `${terminalJson({ selector: selector.canonical, matches: matches.map((m) => ({ endpoint: m.name, cluster: m.cluster })) }, 2)}\n`,
    );
  } else {
    process.stdout.write(`Endpoints matching selector ${clip(selector.canonical, 1000)}:\n`);
    for (const m of matches) process.stdout.write(`  ${clip(m.name, 600)}\n`);
  }
  return 0;
}
