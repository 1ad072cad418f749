// `fedmesh eval SELECTOR`: which local and remote endpoints a selector matches, like `calicoq eval`.
// Reads the cluster through the syncer's own merged view (syncer/merged-view.ts: the local
// datastore and its RemoteClusterConfigurations, with the same refusals), then evaluates the
// selector on exactly the labels an agent would see (profiles inherited, implicit labels added).
import { ProfileLabels } from '../agent/calc/profile-labels.ts';
import { quietLogsForCli } from '../lib/log.ts';
import { clip, terminalJson } from '../lib/text.ts';
import type { Labels } from '../model/resources.ts';
import { parseSelector, type Selector, SelectorParseError } from '../model/selector/index.ts';
import { RemoteClusterState, type Update } from '../proto/service.ts';
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
  const matches = matchingEndpoints(view.updates, selector, opts.cluster);
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

/**
 * The endpoints of a merged view (of `cluster`) that a selector matches, by eval's names, sorted.
 * Each endpoint's labels are what an agent's label index gives it (agent/calc/item-index.ts: its
 * own labels over what its profiles pass on, merged in order), built by the same inheritance
 * index; the merge of a profile list is made once and shared (references are never dropped: the
 * index lives for this one pass).
 */
export function matchingEndpoints(
  updates: readonly Update[],
  selector: Selector,
  cluster: string,
): { name: string; cluster: string }[] {
  const inheritance = new ProfileLabels();
  for (const u of updates) if (u.body.case === 'profile') inheritance.set(u.key, u.body.value.labels);
  const matches: { name: string; cluster: string }[] = [];
  for (const u of updates) {
    const b = u.body;
    if (b.case !== 'workloadEndpoint' && b.case !== 'hostEndpoint') continue;
    const namespace = b.case === 'workloadEndpoint' ? b.value.namespace : undefined;
    const { inherited } = inheritance.acquire(b.value.profiles, namespace);
    const own = stringLabels(b.value.labels);
    const labels = inherited ? Object.assign({}, inherited, own) : own;
    if (!selector.evaluate(labels)) continue;
    // Host endpoints are not namespaced: `<name>`, or `<cluster>/<name>` for a remote one.
    const prefix = u.cluster !== cluster ? `${u.cluster}/` : '';
    const name =
      b.case === 'workloadEndpoint'
        ? `${prefix}${b.value.namespace}/${b.value.name}`
        : `${prefix}${b.value.name}`;
    matches.push({ name, cluster: u.cluster });
  }
  return matches.sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** An item's own labels as the label index keeps them: string values only. */
function stringLabels(labels: Labels): Labels {
  for (const k in labels)
    if (typeof labels[k] !== 'string')
      return Object.fromEntries(Object.entries(labels).filter(([, v]) => typeof v === 'string'));
  return labels;
}
