// Building blocks shared by the per-kind schemas: scalar checks with operator-friendly messages,
// Kubernetes names and labels, CIDRs, and the conversion of zod issues into ResourceErrors.
import { z } from 'zod';
import { clip, quote } from '../../lib/text.ts';
import type { Labels, Origin, ResourceError } from '../resources.ts';

/** Thrown by scalar checks; its message becomes the field's error. */
export class FieldError extends Error {}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** What a value is, in words, for "expected X, got Y". */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return quote(v, 40);
  return `${typeof v} ${clip(String(v), 40)}`;
}

/**
 * A schema for a value checked by a plain function that throws FieldError: the message becomes
 * the issue at this field. Keeps custom messages out of zod unions ("Invalid input" helps nobody).
 * A missing value reaches `fn` as undefined unless the schema is wrapped in .optional()/.default().
 */
export function checked<T>(fn: (v: unknown) => T) {
  return z.unknown().transform((v, ctx): T => {
    try {
      return fn(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: messageOf(e), input: v });
      return z.NEVER;
    }
  });
}

export function requireString(v: unknown): string {
  if (v === undefined) throw new FieldError('required');
  if (typeof v !== 'string') throw new FieldError(`expected a string, got ${describe(v)}`);
  if (v === '') throw new FieldError('must not be empty');
  return v;
}

const LABEL_FMT = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const DNS1123_LABEL = new RegExp(`^${LABEL_FMT}$`);
const DNS1123_SUBDOMAIN = new RegExp(`^${LABEL_FMT}(\\.${LABEL_FMT})*$`);
// Calico: a policy name is a label, optionally prefixed by its tier (`tier.name`), or a
// converted Kubernetes policy (`knp.default.<subdomain>`).
const POLICY_NAME = new RegExp(
  `^((${LABEL_FMT})(\\.${LABEL_FMT})?|((knp|ossg)\\.default\\.${LABEL_FMT}(\\.${LABEL_FMT})*))$`,
);

export type NameRule = 'label' | 'subdomain' | 'policy';

const NAME_RULES: Record<NameRule, string> = {
  label: "lower-case letters, digits and '-', starting and ending with a letter or digit",
  subdomain: "lower-case letters, digits, '-' and '.', each part starting and ending with a letter or digit",
  policy: "lower-case letters, digits and '-', optionally after a tier name and '.' (tier.name)",
};

export function checkName(rule: NameRule, v: unknown): string {
  const s = requireString(v);
  const max = rule === 'subdomain' ? 253 : 63;
  if (s.length > max) throw new FieldError(`${quote(s, 64)} is longer than ${max} characters`);
  const re = rule === 'label' ? DNS1123_LABEL : rule === 'subdomain' ? DNS1123_SUBDOMAIN : POLICY_NAME;
  if (!re.test(s)) throw new FieldError(`${quote(s)} is not a valid name: ${NAME_RULES[rule]}`);
  return s;
}

export const nameSchema = (rule: NameRule) => checked((v) => checkName(rule, v));

const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
export const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/**
 * A Kubernetes label or annotation key: `[prefix/]name`, prefix a DNS subdomain of at most 253
 * characters, name at most 63 (the API server's IsQualifiedName).
 */
function keyProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))) {
    return `key ${quote(key)} has an invalid prefix: a DNS subdomain of at most 253 characters`;
  }
  if (name.length > 63 || !QUALIFIED_NAME.test(name)) {
    return `key ${quote(key)} is invalid: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit (after an optional DNS-subdomain prefix and '/')`;
  }
  return undefined;
}

/** The API server's limit on all of an object's annotations together (keys and values, bytes). */
export const ANNOTATIONS_MAX_BYTES = 256 * 1024;

/**
 * A string-to-string mapping (labels, annotations) read key by key; each problem goes to
 * `problem` (the schema's issues, or the fast path's "not sure: let the schema say").
 */
function readStringMap(
  m: Record<string, unknown>,
  valueCheck: ((v: string) => string | undefined) | undefined,
  maxTotalBytes: number | undefined,
  problem: (message: string, key: string | undefined, input: unknown) => void,
): Labels {
  const out: Record<string, string> = {};
  let bytes = 0;
  // Object.keys, not a record schema: a `__proto__` key (an own property, as YAML decodes it)
  // must reach the key check and be refused, not vanish into the prototype.
  for (const k of Object.keys(m)) {
    const v = m[k];
    const bad =
      keyProblem(k) ??
      (typeof v !== 'string' ? `expected a string, got ${describe(v)} (quote it)` : valueCheck?.(v));
    if (bad) problem(bad, k, v);
    else {
      out[k] = v as string;
      if (maxTotalBytes !== undefined) bytes += Buffer.byteLength(k) + Buffer.byteLength(v as string);
    }
  }
  if (maxTotalBytes !== undefined && bytes > maxTotalBytes) {
    problem(`${bytes} bytes in total; Kubernetes allows at most ${maxTotalBytes} (256 KiB)`, undefined, m);
  }
  return out;
}

function stringMap(valueCheck?: (v: string) => string | undefined, maxTotalBytes?: number) {
  const schema = z
    .unknown()
    .optional()
    .transform((m, ctx): Labels => {
      if (m === undefined) return {};
      if (!isMapping(m)) {
        ctx.addIssue({ code: 'custom', message: `expected a mapping, got ${describe(m)}`, input: m });
        return z.NEVER;
      }
      return readStringMap(m, valueCheck, maxTotalBytes, (message, key, input) =>
        ctx.addIssue({ code: 'custom', message, ...(key !== undefined ? { path: [key] } : {}), input }),
      );
    });
  /** What the schema makes of a valid value, or undefined where it would report an issue (fast paths). */
  const read = (m: unknown): Labels | undefined => {
    if (m === undefined) return {};
    if (!isMapping(m)) return undefined;
    let ok = true;
    const out = readStringMap(m, valueCheck, maxTotalBytes, () => {
      ok = false;
    });
    return ok ? out : undefined;
  };
  return Object.assign(schema, { read });
}

export const labelsSchema = stringMap((v) =>
  v.length > 63 || !LABEL_VALUE.test(v)
    ? `value ${quote(v, 64)} is invalid: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit`
    : undefined,
);
export const annotationsSchema = stringMap(undefined, ANNOTATIONS_MAX_BYTES);

// ---------------------------------------------------------------------------------------------
// Numbers

export function checkInt(v: unknown, min: number, max: number): number {
  if (v === undefined) throw new FieldError('required');
  const n = typeof v === 'string' && /^[0-9]+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n)) {
    throw new FieldError(`expected an integer, got ${describe(v)}`);
  }
  if (n < min || n > max) throw new FieldError(`${n} is out of range ${min}..${max}`);
  return n;
}

export function checkBool(v: unknown): boolean {
  if (typeof v !== 'boolean') throw new FieldError(`expected true or false, got ${describe(v)}`);
  return v;
}

export function enumSchema<T extends string>(values: readonly T[]) {
  return checked((v): T => {
    if (v === undefined) throw new FieldError('required');
    if (typeof v !== 'string' || !values.includes(v as T)) {
      throw new FieldError(`must be one of ${values.join(', ')} (got ${describe(v)})`);
    }
    return v as T;
  });
}

// ---------------------------------------------------------------------------------------------
// Paths and errors

/** `['spec','egress',0,'ports',1]` → `spec.egress[0].ports[1]`; odd keys quoted: `labels["a/b"]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else if (typeof p === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(p) && p.length <= 100)
      out += out ? `.${p}` : p;
    else out += `[${quote(String(p), 100)}]`;
  }
  return out;
}

/** Friendlier messages than zod's defaults for the structural checks zod does itself. */
export const errorMap: z.core.$ZodErrorMap = (iss) => {
  if (iss.code === 'invalid_type') {
    if (iss.input === undefined) return 'required';
    const expected = iss.expected === 'record' || iss.expected === 'object' ? 'a mapping' : iss.expected;
    return `expected ${expected === 'array' ? 'a list' : expected}, got ${describe(iss.input)}`;
  }
  if (iss.code === 'too_small' && iss.origin === 'array') return `must have at least ${iss.minimum} item(s)`;
  return undefined;
};

export function issuesToErrors(
  issues: readonly z.core.$ZodIssue[],
  origin: Origin,
  resource: string | undefined,
  prefix: readonly PropertyKey[] = [],
): ResourceError[] {
  return issues.map((iss) => ({
    origin,
    resource,
    field: formatPath([...prefix, ...iss.path]) || undefined,
    message: iss.message,
  }));
}

/** Whether a mapping somewhere inside `v` holds a null (or anything but plain data: copied as before). */
function hasNullInMapping(v: unknown): boolean {
  if (Array.isArray(v)) return v.some(hasNullInMapping);
  if (v === null || typeof v !== 'object') return false;
  if (Object.getPrototypeOf(v) !== Object.prototype) return true;
  for (const k in v) {
    const x = (v as Record<string, unknown>)[k];
    if (x === null || (typeof x === 'object' && hasNullInMapping(x))) return true;
  }
  return false;
}

/**
 * Drop nulls from mappings, recursively: in Kubernetes, `field: null` (or `field:`) means unset.
 * A document without any (nearly all of them) is returned as it is: copying every decoded
 * document cost a sixth of the validation of a big file.
 */
export function dropNulls(v: unknown): unknown {
  return hasNullInMapping(v) ? copyWithoutNulls(v) : v;
}

function copyWithoutNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(copyWithoutNulls);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (x === null) continue;
      // defineProperty: a `__proto__` key stays an own property, for the validators to refuse
      // (only there: it is slow, and this runs for every field of every resource).
      if (k === '__proto__')
        Object.defineProperty(out, k, {
          value: copyWithoutNulls(x),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      else out[k] = dropNulls(x);
    }
    return out;
  }
  return v;
}

export function isMapping(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
