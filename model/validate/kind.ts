// How a kind is validated: metadata by shared rules, the body by the kind's own schema, then a
// build step that fills in defaults and produces the Resource.
import { z } from 'zod';
import type { Labels, Origin, Resource, ResourceError } from '../resources.ts';
import {
  annotationsSchema,
  checked,
  checkName,
  errorMap,
  formatPath,
  isMapping,
  issuesToErrors,
  labelsSchema,
  type NameRule,
  nameSchema,
} from './common.ts';
import { findUnknownFields } from './strict.ts';

/** An understood document that fedmesh does not handle (yet): the caller logs it once. */
export interface SkippedResource {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
  origin: Origin;
  reason: string;
}

export type ValidateResult =
  | { resource: Resource }
  | { errors: ResourceError[] }
  | { skipped: SkippedResource }
  /** Valid, but nothing to do (a Pod not running yet, a hostNetwork Pod): no error, no log. */
  | { ignored: string };

export interface KindContext {
  apiVersion: string;
  kind: string;
  origin: Origin;
  /**
   * Directory of the file the document came from: relative paths in it resolve against it.
   * Undefined for documents not read from a file (etcd, the Kubernetes API): no relative paths.
   */
  baseDir: string | undefined;
  /** `Kind/namespace/name` as written, when readable, for error messages. */
  id: string | undefined;
}

export interface KindHandler {
  namespaced: boolean;
  validate(obj: Record<string, unknown>, ctx: KindContext): ValidateResult;
  /** The same by the schemas alone, where `validate` has a fast path (the differential tests). */
  bySchema?(obj: Record<string, unknown>, ctx: KindContext): ValidateResult;
}

export interface Meta {
  name: string;
  namespace?: string;
  labels: Labels;
  annotations: Labels;
  origin: Origin;
}

function metaSchema(nameRule: NameRule, namespaced: boolean) {
  return z.object({
    name: nameSchema(nameRule),
    // Kubernetes puts an object without a namespace into "default"; a cluster-scoped object's
    // namespace is ignored.
    namespace: namespaced ? checked((v) => checkName('label', v)).default('default') : z.unknown().optional(),
    labels: labelsSchema,
    annotations: annotationsSchema,
  });
}

/**
 * Kubernetes ObjectMeta, for strict kinds: every field is known (most are not read), so a typo
 * (`lables:`) is refused instead of silently dropping the labels a selector relies on.
 */
const objectMeta = z.object(
  Object.fromEntries(
    [
      'name',
      'generateName',
      'namespace',
      'selfLink',
      'uid',
      'resourceVersion',
      'generation',
      'creationTimestamp',
      'deletionTimestamp',
      'deletionGracePeriodSeconds',
      'labels',
      'annotations',
      'ownerReferences',
      'finalizers',
      'managedFields',
      'clusterName',
    ].map((k) => [k, z.unknown()]),
  ),
);

const OBJECT_META_KEYS = new Set(Object.keys(objectMeta.shape));

/**
 * What metaSchema (and, for a strict kind, the unknown-field check) makes of a valid metadata
 * mapping, without zod; undefined where either would report an issue (the schema then says what).
 */
function fastMeta(
  md: unknown,
  nameRule: NameRule,
  namespaced: boolean,
  strict: boolean,
): { name: string; namespace: unknown; labels: Labels; annotations: Labels } | undefined {
  if (!isMapping(md)) return undefined;
  if (strict) for (const k of Object.keys(md)) if (!OBJECT_META_KEYS.has(k)) return undefined;
  let name: string;
  let namespace: unknown;
  try {
    name = checkName(nameRule, md.name);
    namespace = namespaced
      ? md.namespace === undefined
        ? 'default'
        : checkName('label', md.namespace)
      : md.namespace;
  } catch {
    return undefined;
  }
  const labels = labelsSchema.read(md.labels);
  const annotations = labels && annotationsSchema.read(md.annotations);
  if (!labels || !annotations) return undefined;
  return { name, namespace, labels, annotations };
}

/** Top-level fields beside the body's: `status` is the system's report, never read as intent. */
export const ENVELOPE_KEYS: ReadonlySet<string> = new Set(['apiVersion', 'kind', 'metadata', 'status']);

/** Unknown fields of a strict kind, as errors naming each field's path. */
function unknownFields(body: z.ZodType, obj: Record<string, unknown>, ctx: KindContext): ResourceError[] {
  const rest = Object.fromEntries(Object.entries(obj).filter(([k]) => !ENVELOPE_KEYS.has(k)));
  const found = findUnknownFields(body, rest);
  findUnknownFields(objectMeta, obj.metadata, ['metadata'], found);
  return found.map((u) => ({
    origin: ctx.origin,
    resource: ctx.id,
    field: formatPath(u.path),
    message: u.message,
  }));
}

export function defineKind<T>(def: {
  namespaced: boolean;
  nameRule: NameRule;
  /**
   * Parsed against the whole object (metadata aside). Unknown fields are refused (strict
   * decoding, model/validate/strict.ts) unless `strict: false`.
   */
  body: z.ZodType<T>;
  /**
   * A hand-written reader of the whole object (metadata aside) for the kinds a big cluster is
   * made of: exactly what `body` parses a valid object to, unknown fields included, or undefined
   * whenever `body` (or the unknown-field check) would report anything — then the schema runs and
   * says what, so errors are the schema's. A differential test holds the two equal.
   */
  fast?(obj: Record<string, unknown>): T | undefined;
  /**
   * false for kinds read only for their metadata (Pods, Namespaces, ServiceAccounts): their
   * other fields are the business of other controllers and change with every Kubernetes release.
   */
  strict?: boolean;
  /** A reason to skip the document before validating it (e.g. an IPv6 pool). */
  skip?(obj: Record<string, unknown>): string | undefined;
  build(meta: Meta, body: T, ctx: KindContext): Resource | ValidateResult;
}): KindHandler {
  const meta = metaSchema(def.nameRule, def.namespaced);
  return {
    namespaced: def.namespaced,
    validate(obj, ctx) {
      const fm = def.fast
        ? fastMeta(obj.metadata, def.nameRule, def.namespaced, def.strict !== false)
        : undefined;
      const fb = fm && !def.skip?.(obj) ? def.fast?.(obj) : undefined;
      return fm && fb !== undefined ? built(fm, fb, ctx) : bySchema(obj, ctx);
    },
    ...(def.fast ? { bySchema } : {}),
  };

  function bySchema(obj: Record<string, unknown>, ctx: KindContext): ValidateResult {
    const m = meta.safeParse(obj.metadata, { error: errorMap });
    const skipReason = m.success ? def.skip?.(obj) : undefined;
    if (m.success && skipReason) {
      const { name, namespace } = m.data;
      return {
        skipped: skippedOf(ctx, name, def.namespaced ? (namespace as string) : undefined, skipReason),
      };
    }
    const b = def.body.safeParse(obj, { error: errorMap });
    const unknown = def.strict === false ? [] : unknownFields(def.body, obj, ctx);
    if (!m.success || !b.success || unknown.length > 0) {
      const errors = [
        ...unknown,
        ...(m.success ? [] : issuesToErrors(m.error.issues, ctx.origin, ctx.id, ['metadata'])),
        ...(b.success ? [] : issuesToErrors(b.error.issues, ctx.origin, ctx.id)),
      ];
      return { errors };
    }
    return built(m.data, b.data, ctx);
  }

  function built(
    m: { name: string; namespace: unknown; labels: Labels; annotations: Labels },
    body: T,
    ctx: KindContext,
  ): ValidateResult {
    const { name, namespace, labels, annotations } = m;
    const r = def.build(
      {
        name,
        ...(def.namespaced ? { namespace: namespace as string } : {}),
        labels,
        annotations,
        origin: ctx.origin,
      },
      body,
      ctx,
    );
    return 'kind' in r ? { resource: r } : r;
  }
}

function skippedOf(
  ctx: KindContext,
  name: string,
  namespace: string | undefined,
  reason: string,
): SkippedResource {
  return {
    apiVersion: ctx.apiVersion,
    kind: ctx.kind,
    name,
    ...(namespace !== undefined ? { namespace } : {}),
    origin: ctx.origin,
    reason,
  };
}

/** A kind fedmesh recognises but does not handle yet: no resource, no error, one log line. */
export function notHandledYet(namespaced: boolean, reason: string): KindHandler {
  return {
    namespaced,
    validate(obj, ctx) {
      const md = (obj.metadata ?? {}) as Record<string, unknown>;
      const name = typeof md.name === 'string' ? md.name : '<unnamed>';
      const ns = namespaced ? (typeof md.namespace === 'string' ? md.namespace : 'default') : undefined;
      return { skipped: skippedOf(ctx, name, ns, reason) };
    },
  };
}
