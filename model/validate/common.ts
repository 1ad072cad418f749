// Building blocks shared by the per-kind schemas: scalar checks with operator-friendly messages,
// Kubernetes names and labels, CIDRs, and the conversion of zod issues into ResourceErrors.
import { z } from 'zod';
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
  if (typeof v === 'string') return `"${v.length > 40 ? `${v.slice(0, 40)}…` : v}"`;
  return `${typeof v} ${String(v)}`;
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
  if (s.length > max) throw new FieldError(`"${s}" is longer than ${max} characters`);
  const re = rule === 'label' ? DNS1123_LABEL : rule === 'subdomain' ? DNS1123_SUBDOMAIN : POLICY_NAME;
  if (!re.test(s)) throw new FieldError(`"${s}" is not a valid name: ${NAME_RULES[rule]}`);
  return s;
}

export const nameSchema = (rule: NameRule) => checked((v) => checkName(rule, v));

const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
export const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** A Kubernetes label or annotation key: `[prefix/]name`, prefix a DNS subdomain. */
function keyProblem(key: string): string | undefined {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))) {
    return `key "${key}" has an invalid prefix (must be a DNS subdomain)`;
  }
  if (name.length > 63 || !QUALIFIED_NAME.test(name)) {
    return `key "${key}" is invalid: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit`;
  }
  return undefined;
}

function stringMap(valueCheck?: (v: string) => string | undefined) {
  return z
    .record(z.string(), z.unknown())
    .default({})
    .transform((m, ctx): Labels => {
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(m)) {
        const problem =
          keyProblem(k) ??
          (typeof v !== 'string' ? `expected a string, got ${describe(v)} (quote it)` : valueCheck?.(v));
        if (problem) ctx.addIssue({ code: 'custom', message: problem, path: [k], input: v });
        else out[k] = v as string;
      }
      return out;
    });
}

export const labelsSchema = stringMap((v) =>
  v.length > 63 || !LABEL_VALUE.test(v)
    ? `value "${v}" is invalid: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit`
    : undefined,
);
export const annotationsSchema = stringMap();

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
    else if (typeof p === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(p)) out += out ? `.${p}` : p;
    else out += `[${JSON.stringify(String(p))}]`;
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

/** Drop nulls from mappings, recursively: in Kubernetes, `field: null` (or `field:`) means unset. */
export function dropNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(dropNulls);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== null) out[k] = dropNulls(x);
    return out;
  }
  return v;
}

export function isMapping(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
