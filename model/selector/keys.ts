// Label keys in selectors, as Calico's tokenizer takes them: any run of [A-Za-z0-9_./-] (the lexer
// only ever produces such runs) of 1 to 512 characters. Calico checks no more here: whether a key
// is a valid Kubernetes label key is the business of the resource that carries the label, so a
// selector may name a key that only a non-Kubernetes endpoint (a host endpoint, an etcd-mode
// workload) can carry. fedmesh used to refuse keys that no Kubernetes object could carry; that
// refused valid Calico policies.

export const MAX_LABEL_KEY = 512;

export const KEY_LENGTH_RULE = `a label key of at most ${MAX_LABEL_KEY} characters`;

/** Why `key` is not a valid selector label key, as [offset within key, expected], or undefined. */
export function checkLabelKey(key: string): [number, string] | undefined {
  return key.length > MAX_LABEL_KEY ? [0, KEY_LENGTH_RULE] : undefined;
}
