// Kubernetes label keys: `[prefix/]name`, as apimachinery's IsQualifiedName checks them.
// Calico's tokenizer takes any run of [A-Za-z0-9_./-] as a key; fedmesh refuses keys that no
// Kubernetes object could carry, so a typo fails at parse time instead of silently matching nothing.

const MAX_NAME = 63;
const MAX_PREFIX = 253;
const NAME_RE = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export const KEY_NAME_RULE =
  "a valid label key (name of 1 to 63 characters, alphanumeric at both ends, with '-', '_' or '.' inside)";
export const KEY_PREFIX_RULE =
  'a valid label key (prefix before / a lowercase DNS subdomain of at most 253 characters)';
export const KEY_SLASH_RULE = "a valid label key (at most one '/', between prefix and name)";

/** Why `key` is not a valid label key, as [offset within key, expected], or undefined if valid. */
export function checkLabelKey(key: string): [number, string] | undefined {
  const slash = key.indexOf('/');
  if (slash < 0) return checkName(key, 0);
  if (key.indexOf('/', slash + 1) >= 0) return [key.indexOf('/', slash + 1), KEY_SLASH_RULE];
  const prefix = key.slice(0, slash);
  // Lengths first: they also bound the regular expressions' work.
  if (prefix.length === 0 || prefix.length > MAX_PREFIX || !DNS_SUBDOMAIN_RE.test(prefix)) {
    return [0, KEY_PREFIX_RULE];
  }
  return checkName(key.slice(slash + 1), slash + 1);
}

function checkName(name: string, offset: number): [number, string] | undefined {
  if (name.length === 0 || name.length > MAX_NAME || !NAME_RE.test(name)) return [offset, KEY_NAME_RULE];
  return undefined;
}
