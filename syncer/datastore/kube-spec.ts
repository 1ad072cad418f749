// `--datastore kubernetes[:KUBECONFIG]` and its flags → a KubernetesConnection. Which way in, first
// match wins: a kubeconfig path in the spec; --k8s-api-endpoint (with token, client certificate and
// CA from files); $KUBECONFIG; the in-cluster service account. Files are read here, once, so the
// connection carries contents (connection.ts); an unreadable file is an error naming the flag.
import { readFileSync } from 'node:fs';
import type { KubernetesConnection, TlsMaterial } from './connection.ts';

/** The flags (FEDMESH_K8S_* variables stand in for absent flags, see cli/main.ts). */
export const KUBE_FLAGS = [
  'k8s-api-endpoint',
  'k8s-token-file',
  'k8s-ca-file',
  'k8s-cert-file',
  'k8s-key-file',
  'k8s-insecure-skip-tls-verify',
] as const;

function readFlagFile(flag: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`--${flag} ${path}: ${(e as Error).message}`);
  }
}

function truthy(flag: string, v: string | undefined): boolean {
  if (v === undefined || v === '' || v === 'false' || v === '0') return false;
  if (v === 'true' || v === '1') return true;
  throw new Error(`--${flag} ${v}: expected true or false`);
}

export function parseKubernetesSpec(
  spec: string,
  flags: { [flag: string]: string | undefined },
  env: NodeJS.ProcessEnv = process.env,
): KubernetesConnection {
  const path = spec.slice('kubernetes'.length).replace(/^:/, '');
  const endpoint = flags['k8s-api-endpoint'];
  if (path && endpoint) {
    throw new Error(
      `--datastore ${spec} and --k8s-api-endpoint both say how to reach the API server; give one`,
    );
  }
  const kubeconfigAt = (p: string, from: string): KubernetesConnection => {
    try {
      return { type: 'kubernetes', source: { kind: 'kubeconfig', text: readFileSync(p, 'utf8') } };
    } catch (e) {
      throw new Error(`${from} ${p}: cannot read the kubeconfig: ${(e as Error).message}`);
    }
  };
  if (path) return kubeconfigAt(path, `--datastore kubernetes:`);
  if (endpoint) {
    if (!/^https?:\/\/[^/\s]+/.test(endpoint))
      throw new Error(
        `--k8s-api-endpoint ${endpoint}: expected an http(s) URL such as https://10.0.0.1:6443`,
      );
    const file = (flag: string) => {
      const p = flags[flag];
      return p ? readFlagFile(flag, p) : undefined;
    };
    const tls: TlsMaterial = {};
    const ca = file('k8s-ca-file');
    const cert = file('k8s-cert-file');
    const key = file('k8s-key-file');
    if (ca) tls.ca = ca;
    if (cert) tls.cert = cert;
    if (key) tls.key = key;
    if (!cert !== !key)
      throw new Error('--k8s-cert-file and --k8s-key-file go together: give both or neither');
    const token = file('k8s-token-file')?.trim();
    const insecure = truthy('k8s-insecure-skip-tls-verify', flags['k8s-insecure-skip-tls-verify']);
    return {
      type: 'kubernetes',
      source: {
        kind: 'endpoint',
        server: endpoint,
        ...(token ? { token } : {}),
        ...(Object.keys(tls).length > 0 ? { tls } : {}),
        ...(insecure ? { insecureSkipTLSVerify: true } : {}),
      },
    };
  }
  const fromEnv = env.KUBECONFIG?.split(':').find((p) => p !== '');
  if (fromEnv) return kubeconfigAt(fromEnv, 'KUBECONFIG');
  return { type: 'kubernetes', source: { kind: 'in-cluster' } };
}
