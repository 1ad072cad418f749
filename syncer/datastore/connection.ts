// How to reach one cluster's datastore, after every source of settings has been resolved: the
// `--datastore` flag (with its TLS/credential flags and FEDMESH_* variables) for the local
// cluster, or a RemoteClusterConfiguration (its own fields, or its clusterAccessSecret) for a
// remote one. Drivers take exactly this; they never read flags, files of RCCs or Secrets
// themselves, so a changed RCC or Secret is just a new ConnectionConfig (compare with
// `sameConnection`) and a reconnect.
//
// Secrets are carried as PEM/text contents, not paths, so that a Secret's inline values and a
// flag's file path end up in one shape; a path given by flag or RCC field is read when the
// config is resolved (and re-resolved when that file changes).

export interface FileConnection {
  type: 'file';
  /** Absolute directory. */
  dir: string;
  /** Symlinks may not lead out of it (default: the directory's parent). */
  root?: string;
}

export interface TlsMaterial {
  /** PEM text. */
  ca?: string;
  cert?: string;
  key?: string;
}

export interface EtcdConnection {
  type: 'etcdv3';
  /** e.g. `https://10.0.0.1:2379`; at least one. */
  endpoints: string[];
  username?: string;
  password?: string;
  tls?: TlsMaterial;
}

export interface KubernetesConnection {
  type: 'kubernetes';
  /**
   * Exactly one way in: a kubeconfig's text (from a file, `kubeconfigInline`, or a Secret's
   * `kubeconfig` key), the in-cluster service account, or an API endpoint with optional
   * token/client certificate/CA.
   */
  source:
    | { kind: 'kubeconfig'; text: string; context?: string }
    | { kind: 'in-cluster' }
    | {
        kind: 'endpoint';
        server: string;
        token?: string;
        tls?: TlsMaterial;
        insecureSkipTLSVerify?: boolean;
      };
}

export type ConnectionConfig = FileConnection | EtcdConnection | KubernetesConnection;

/** Same target and same credentials: no reconnect needed. */
export function sameConnection(a: ConnectionConfig, b: ConnectionConfig): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** For logs and status: never prints a secret. */
export function describeConnection(c: ConnectionConfig): string {
  switch (c.type) {
    case 'file':
      return `file:${c.dir}`;
    case 'etcdv3':
      return `etcdv3:${c.endpoints.join(',')}`;
    case 'kubernetes':
      return c.source.kind === 'endpoint' ? `kubernetes:${c.source.server}` : `kubernetes (${c.source.kind})`;
  }
}
