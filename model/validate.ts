// Validation: YAML text or decoded objects → Resources (model/resources.ts), with every default
// filled in, and ResourceErrors naming file, document, resource and field for what is refused.
// One bad document never stops the others. The per-kind rules live in model/validate/*.ts.
import { createRequire } from 'node:module';
import { clip } from '../lib/text.ts';
import type { Origin, Resource, ResourceError } from './resources.ts';
import { resourceId } from './resources.ts';
import { calicoCrdV1, calicoV3 } from './validate/calico.ts';
import { describe, dropNulls, isMapping } from './validate/common.ts';
import type { KindHandler, SkippedResource, ValidateResult } from './validate/kind.ts';
import { coreV1, networkingV1 } from './validate/kube.ts';
import { discoveryV1, multiclusterV1alpha1, servicesCoreV1 } from './validate/services.ts';
import { loadPlainDocuments } from './yaml-fast.ts';
import { parsePlainDocument } from './yaml-plain.ts';

export type { SkippedResource, ValidateResult } from './validate/kind.ts';

const API_GROUPS: Record<string, Record<string, KindHandler>> = {
  'projectcalico.org/v3': calicoV3,
  'crd.projectcalico.org/v1': calicoCrdV1,
  v1: { ...coreV1, ...servicesCoreV1 },
  'networking.k8s.io/v1': networkingV1,
  'discovery.k8s.io/v1': discoveryV1,
  'multicluster.x-k8s.io/v1alpha1': multiclusterV1alpha1,
};

/** The handler for apiVersion + kind; own properties only (a kind named "toString" is unknown). */
function lookup(apiVersion: unknown, kind: unknown): KindHandler | undefined {
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return undefined;
  const group = Object.hasOwn(API_GROUPS, apiVersion) ? API_GROUPS[apiVersion] : undefined;
  return group && Object.hasOwn(group, kind) ? group[kind] : undefined;
}

/** Whether the model reads this apiVersion + kind at all (a driver reading a whole cluster skips the rest). */
export function isKnownKind(apiVersion: string, kind: string): boolean {
  return lookup(apiVersion, kind) !== undefined;
}

/** `Kind/namespace/name` of an object as written, when readable; namespaced kinds default to "default". */
export function readIdentity(obj: unknown): string | undefined {
  if (!isMapping(obj) || typeof obj.kind !== 'string' || !isMapping(obj.metadata)) return undefined;
  const { name, namespace } = obj.metadata;
  if (typeof name !== 'string' || name === '') return undefined;
  const handler = lookup(obj.apiVersion, obj.kind);
  if (handler && !handler.namespaced) return `${obj.kind}/${name}`;
  const ns = typeof namespace === 'string' && namespace !== '' ? namespace : handler ? 'default' : undefined;
  return ns ? `${obj.kind}/${ns}/${name}` : `${obj.kind}/${name}`;
}

function unknownKind(apiVersion: string, kind: string): { field: string; message: string } {
  const servedBy = Object.entries(API_GROUPS)
    .filter(([, kinds]) => Object.hasOwn(kinds, kind))
    .map(([group]) => group);
  if (servedBy.length > 0) {
    return {
      field: 'apiVersion',
      message: `unknown kind: ${kind} is not served by apiVersion ${apiVersion} (use ${servedBy.join(' or ')})`,
    };
  }
  return { field: 'kind', message: `unknown kind "${kind}" (apiVersion ${apiVersion})` };
}

/**
 * Validate one decoded object. `baseDir` is the directory of the file it came from (relative
 * paths in a RemoteClusterConfiguration resolve against it); undefined when it was not read from
 * a file (etcd, the Kubernetes API), where a relative path is refused.
 */
export function validateResource(
  obj: unknown,
  origin: Origin,
  baseDir: string | undefined,
  /** The schemas alone, without a kind's fast path (the differential tests compare the two). */
  opts: { bySchema?: boolean } = {},
): ValidateResult {
  return validateIdentified(obj, readIdentity(obj), origin, baseDir, opts.bySchema === true);
}

/** validateResource, the object's identity (readIdentity) read already. */
function validateIdentified(
  obj: unknown,
  id: string | undefined,
  origin: Origin,
  baseDir: string | undefined,
  bySchema: boolean,
): ValidateResult {
  const fail = (field: string | undefined, message: string): ValidateResult => ({
    errors: [{ origin, ...(id ? { resource: id } : {}), ...(field ? { field } : {}), message }],
  });
  const o = dropNulls(obj);
  if (!isMapping(o)) return fail(undefined, `expected a mapping (a resource), got ${describe(o)}`);
  const { apiVersion, kind } = o;
  if (typeof apiVersion !== 'string' || apiVersion === '') return fail('apiVersion', 'required');
  if (typeof kind !== 'string' || kind === '') return fail('kind', 'required');
  const handler = lookup(apiVersion, kind);
  if (!handler) {
    const { field, message } = unknownKind(apiVersion, kind);
    return fail(field, message);
  }
  const ctx = { apiVersion, kind, origin, baseDir, id };
  return bySchema && handler.bySchema ? handler.bySchema(o, ctx) : handler.validate(o, ctx);
}

// ---------------------------------------------------------------------------------------------
// YAML

/**
 * The `yaml` package, loaded when a document first needs the careful path: loading it took 50 ms
 * of every CLI start, and the fast paths read what most files hold.
 */
let yamlPackage: typeof import('yaml') | undefined;
function carefulYaml(): typeof import('yaml') {
  yamlPackage ??= createRequire(import.meta.url)('yaml') as typeof import('yaml');
  return yamlPackage;
}

/** What became of one document (or one item of a `List` document). */
export interface DocumentOutcome {
  /** 0-based index of the document in the file. */
  document: number;
  /** Index in `items` when the document is a List. */
  item?: number;
  /** `Kind/namespace/name` as written, when readable (even from a document with a syntax error). */
  sourceId?: string;
  result: ValidateResult;
}

/** `lineOffset`: lines before the text parsed (a document cut out of a larger file). */
function yamlErrorMessage(e: { message: string }, lineOffset: number): string {
  const first = e.message.split('\n')[0] ?? e.message;
  const shifted = lineOffset
    ? first.replace(/\bat line (\d+)/, (_m, n: string) => `at line ${Number(n) + lineOffset}`)
    : first;
  return `YAML syntax error: ${clip(shifted.replace(/:$/, ''), 300)}`;
}

/**
 * The yaml package recurses once per nesting level and reports a stack overflow at every level it
 * unwinds through: one clear error for the document instead (Kubernetes objects nest ~20 deep).
 */
function nestingError(errors: readonly { message: string }[], lineOffset: number): string | undefined {
  const overflow = errors.find((e) => /Maximum call stack size exceeded/.test(e.message));
  if (!overflow) return undefined;
  const where = /at line \d+, column \d+/.exec(yamlErrorMessage(overflow, lineOffset))?.[0];
  return `YAML nesting too deep${where ? ` (${where})` : ''}: refused`;
}

/** `kubectl get -o yaml` and `calicoctl get -o yaml` write `List`/`<Kind>List` documents. */
function listItems(o: Record<string, unknown>): unknown[] | undefined {
  return typeof o.kind === 'string' && o.kind.endsWith('List') && Array.isArray(o.items)
    ? o.items
    : undefined;
}

/** Items of a typed list (`PodList`) may leave out apiVersion and kind: they are the list's. */
function withListDefaults(item: unknown, list: Record<string, unknown>): unknown {
  if (!isMapping(item) || list.kind === 'List') return item;
  return { apiVersion: list.apiVersion, kind: String(list.kind).slice(0, -'List'.length), ...item };
}

function prefixFields(result: ValidateResult, item: number): ValidateResult {
  if (!('errors' in result)) return result;
  const errors = result.errors.map((e) => ({ ...e, field: `items[${item}]${e.field ? `.${e.field}` : ''}` }));
  return { errors };
}

/** Parse a multi-document YAML text into one outcome per document (or list item). */
export function parseDocuments(
  text: string,
  origin: {
    source: string;
    baseDir: string;
    /** Index of the first document, and lines before the text: for a document cut out of a file. */
    firstDocument?: number;
    lineOffset?: number;
  },
): DocumentOutcome[] {
  const out: DocumentOutcome[] = [];
  const plain = parsePlainDocument(text);
  const fast = plain !== undefined ? [plain] : loadPlainDocuments(text);
  if (fast) {
    fast.forEach((js, index) => {
      decoded(js, index + (origin.firstDocument ?? 0), origin, out);
    });
    return out;
  }
  const { LineCounter, parseAllDocuments } = carefulYaml();
  const docs = parseAllDocuments(text, { lineCounter: new LineCounter() });
  if (!Array.isArray(docs)) return [];
  const lineOffset = origin.lineOffset ?? 0;
  docs.forEach((doc, index) => {
    const document = index + (origin.firstDocument ?? 0);
    const docOrigin: Origin = { source: origin.source, document };
    let js: unknown;
    let thrown: Error | undefined;
    try {
      js = doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      js = undefined;
      thrown = e as Error;
    }
    const nesting = nestingError([...doc.errors, ...(thrown ? [thrown] : [])], lineOffset);
    if (nesting) {
      out.push({ document, result: { errors: [{ origin: docOrigin, message: nesting }] } });
      return;
    }
    if (thrown && doc.errors.length === 0) {
      out.push({ document, result: { errors: [{ origin: docOrigin, message: clip(thrown.message, 300) }] } });
      return;
    }
    if (doc.errors.length > 0) {
      // A syntax error refuses this document only; its identity, if it can still be read, lets
      // the datastore keep the last good version.
      const sourceId = readIdentity(js);
      const errors = doc.errors.map((e) => ({
        origin: docOrigin,
        ...(sourceId ? { resource: sourceId } : {}),
        message: yamlErrorMessage(e, lineOffset),
      }));
      out.push({ document, ...(sourceId ? { sourceId } : {}), result: { errors } });
      return;
    }
    decoded(js, document, origin, out);
  });
  return out;
}

/** The outcomes of one document decoded without YAML errors. */
function decoded(
  js: unknown,
  document: number,
  origin: { source: string; baseDir: string },
  out: DocumentOutcome[],
) {
  if (js === null || js === undefined) return; // an empty document (a trailing `---`, comments)
  const docOrigin: Origin = { source: origin.source, document };
  const items = isMapping(js) ? listItems(js) : undefined;
  if (items && isMapping(js)) {
    items.forEach((raw, item) => {
      const obj = withListDefaults(raw, js as Record<string, unknown>);
      const id = readIdentity(obj);
      const result = prefixFields(validateResource(obj, docOrigin, origin.baseDir), item);
      out.push({ document, item, ...(id ? { sourceId: id } : {}), result });
    });
    return;
  }
  const sourceId = readIdentity(js);
  out.push({
    document,
    ...(sourceId ? { sourceId } : {}),
    result: validateIdentified(js, sourceId, docOrigin, origin.baseDir, false),
  });
}

export interface ParseResult {
  resources: Resource[];
  errors: ResourceError[];
  /** Recognised kinds not handled yet (and IPv6 pools/blocks): for the caller to log once. */
  skipped: SkippedResource[];
}

/**
 * Parse a YAML text. The same resource defined twice in the text: the first wins, the second is
 * refused with an error.
 */
export function parseYamlDocuments(text: string, origin: { source: string; baseDir: string }): ParseResult {
  const result: ParseResult = { resources: [], errors: [], skipped: [] };
  const seen = new Map<string, Resource>();
  for (const outcome of parseDocuments(text, origin)) {
    const r = outcome.result;
    if ('errors' in r) result.errors.push(...r.errors);
    else if ('skipped' in r) result.skipped.push(r.skipped);
    else if ('resource' in r) {
      const id = resourceId(r.resource);
      const first = seen.get(id);
      if (first) result.errors.push(duplicateInFile(r.resource, first));
      else {
        seen.set(id, r.resource);
        result.resources.push(r.resource);
      }
    }
  }
  return result;
}

export function duplicateInFile(dup: Resource, first: Resource): ResourceError {
  return {
    origin: dup.origin,
    resource: resourceId(dup),
    message: `defined twice in ${dup.origin.source}: document ${first.origin.document} is used, this one (document ${dup.origin.document}) is ignored`,
  };
}
