// `fedmesh eval SELECTOR`: which local and remote endpoints a selector matches, like `calicoq eval`.
// Reads the cluster through the syncer's own merged view (syncer/merged-view.ts: the local
// datastore and its RemoteClusterConfigurations, with the same refusals), then evaluates the
// selector on exactly the labels an agent would see (profiles inherited, implicit labels added).
import { LabelIndex } from '../agent/calc/label-index.ts';
import { quietLogsForCli } from '../lib/log.ts';
import { clip, terminalJson } from '../lib/text.ts';
import { parseSelector, SelectorParseError } from '../model/selector/index.ts';
import { RemoteClusterState } from '../proto/service.ts';
import { type DatastoreFlags, parseDatastoreSpec } from '../syncer/datastore/open.ts';
import { defaultFileRoot } from '../syncer/datastore/paths.ts';
import { mergedViewOf } from '../syncer/merged-view.ts';
import { describeError } from './output.ts';

export interface EvalOptions {
  selector: string;
  cluster: string;
  datastore: string;
  /** TLS and credentials for --datastore (--etcd-*, --k8s-* flags). */
  datastoreFlags?: DatastoreFlags;
  output: string;
  /** RCC fileDatastorePaths must lie under it; default: the --datastore directory's parent. */
  fileDatastoreRoot?: string;
}

/** Where eval prints: the process's stdout/stderr unless a caller (a test) gives its own. */
export interface EvalOutput {
  out(text: string): void;
  err(text: string): void;
}

const PROCESS_OUTPUT: EvalOutput = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};

export async function runEval(opts: EvalOptions, io: EvalOutput = PROCESS_OUTPUT): Promise<number> {
  let selector: ReturnType<typeof parseSelector>;
  try {
    selector = parseSelector(opts.selector);
  } catch (e) {
    if (e instanceof SelectorParseError) {
      io.err(`fedmesh eval: invalid selector: ${clip(e.message, 1000)}\n`);
      return 2;
    }
    throw e;
  }
  quietLogsForCli();
  const fileRoot = opts.fileDatastoreRoot ?? defaultFileRoot(opts.datastore) ?? false;
  const view = await mergedViewOf(opts.cluster, parseDatastoreSpec(opts.datastore, opts.datastoreFlags), {
    fileRoot,
  });
  for (const e of view.errors) io.err(`warning: ${describeError(e)}\n`);
  for (const r of view.remotes) {
    if (r.state !== RemoteClusterState.IN_SYNC || r.conflicts > 0)
      io.err(
        `warning: remote cluster ${r.cluster}: ${RemoteClusterState[r.state]}${r.detail ? `: ${clip(r.detail, 1000)}` : ''}\n`,
      );
  }
  const updates = view.updates;
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
    io.out(
      `${terminalJson({ selector: selector.canonical, matches: matches.map((m) => ({ endpoint: m.name, cluster: m.cluster })) }, 2)}\n`,
    );
  } else {
    io.out(`Endpoints matching selector ${clip(selector.canonical, 1000)}:\n`);
    for (const m of matches) io.out(`  ${clip(m.name, 600)}\n`);
  }
  return 0;
}
