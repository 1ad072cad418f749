// From a RemoteClusterConfiguration (and the Secret its clusterAccessSecret names, read from the
// local datastore) to how to reach that cluster: a ConnectionConfig, or the reason it cannot be
// built (ConfigIncomplete). Pure apart from reading the files an RCC names (TLS material,
// kubeconfig), which are read here, so a changed file is a changed ConnectionConfig.
//
// Nothing here puts a secret value into a reason: reasons name fields, keys and files.
import { readFileSync } from 'node:fs';
import type { RemoteClusterConfiguration, Secret } from '../model/resources.ts';
import type { ConnectionConfig, TlsMaterial } from './datastore/connection.ts';
import { checkFileDatastorePath } from './datastore/paths.ts';

export type RemoteConfig = { connection: ConnectionConfig } | { incomplete: string };

/** The local cluster's Secrets by namespace and name. */
export type SecretLookup = (namespace: string, name: string) => Secret | undefined;

export interface ResolveOptions {
  /** Namespace of a clusterAccessSecret that names none: the syncer's own. */
  defaultSecretNamespace: string;
  /** Reads a file named by the RCC (injectable for tests). */
  readFile?: (path: string) => string;
  /**
   * Where a `datastoreType: file` RCC's fileDatastorePath must lie (--file-datastore-root): a
   * directory, or false when there is none (a local etcd or Kubernetes datastore without the flag:
   * file RCCs are refused). Undefined: not checked (tests of the resolution alone).
   */
  fileRoot?: string | false;
}

/** The Secret keys Calico reads for cluster access (PEM contents, kubeconfig file contents). */
export const SECRET_KEYS = [
  'datastoreType',
  'etcdEndpoints',
  'etcdUsername',
  'etcdPassword',
  'etcdKey',
  'etcdCert',
  'etcdCACert',
  'kubeconfig',
] as const;

const ETCD_SECRET_KEYS = SECRET_KEYS.filter((k) => k.startsWith('etcd'));
const URL_RE = /^https?:\/\/[^:/\s]+:\d+\/?$/;

class Incomplete extends Error {}

const readText = (path: string) => readFileSync(path, 'utf8');

/** The namespace/name of the Secret an RCC names, if any. */
export function secretRefOf(
  rcc: RemoteClusterConfiguration,
  defaultNamespace: string,
): { namespace: string; name: string } | undefined {
  const ref = rcc.spec.clusterAccessSecret;
  return ref ? { namespace: ref.namespace ?? defaultNamespace, name: ref.name } : undefined;
}

export function resolveRemoteConfig(
  rcc: RemoteClusterConfiguration,
  secrets: SecretLookup,
  opts: ResolveOptions,
): RemoteConfig {
  try {
    const ref = secretRefOf(rcc, opts.defaultSecretNamespace);
    if (ref) {
      const secret = secrets(ref.namespace, ref.name);
      if (!secret) throw new Incomplete(`clusterAccessSecret ${ref.namespace}/${ref.name} does not exist`);
      return { connection: fromSecret(secret) };
    }
    return { connection: fromFields(rcc, opts.readFile ?? readText, opts.fileRoot) };
  } catch (e) {
    if (e instanceof Incomplete) return { incomplete: e.message };
    throw e;
  }
}

function pem(what: string, text: string | undefined, kind: 'CERTIFICATE' | 'KEY'): string | undefined {
  if (text === undefined) return undefined;
  const re = kind === 'KEY' ? /-----BEGIN [A-Z ]*PRIVATE KEY-----/ : /-----BEGIN CERTIFICATE-----/;
  if (!re.test(text))
    throw new Incomplete(`${what} is not a PEM ${kind === 'KEY' ? 'private key' : 'certificate'}`);
  return text;
}

function tls(ca?: string, cert?: string, key?: string): TlsMaterial | undefined {
  if ((cert === undefined) !== (key === undefined))
    throw new Incomplete('a client certificate and its key go together: give both or neither');
  if (ca === undefined && cert === undefined) return undefined;
  return { ...(ca !== undefined ? { ca } : {}), ...(cert !== undefined ? { cert, key } : {}) };
}

function endpoints(what: string, s: string): string[] {
  const urls = s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  if (urls.length === 0) throw new Incomplete(`${what} is empty`);
  for (const u of urls)
    if (!URL_RE.test(u)) throw new Incomplete(`${what}: "${u}" is not an http(s)://host:port URL`);
  return urls;
}

function fromSecret(secret: Secret): ConnectionConfig {
  const where = `Secret ${secret.namespace}/${secret.name}`;
  const d = secret.data;
  for (const k of Object.keys(d)) {
    if (!(SECRET_KEYS as readonly string[]).includes(k))
      throw new Incomplete(`${where}: unknown key ${k} (known: ${SECRET_KEYS.join(', ')})`);
  }
  const type = d.datastoreType?.trim();
  if (type === 'etcdv3') {
    if (d.kubeconfig !== undefined)
      throw new Incomplete(`${where}: key kubeconfig is not used with datastoreType etcdv3`);
    if (!d.etcdEndpoints) throw new Incomplete(`${where}: key etcdEndpoints is required for etcdv3`);
    return {
      type: 'etcdv3',
      endpoints: endpoints(`${where}: key etcdEndpoints`, d.etcdEndpoints),
      ...(d.etcdUsername ? { username: d.etcdUsername } : {}),
      ...(d.etcdPassword ? { password: d.etcdPassword } : {}),
      ...optTls(
        tls(
          pem(`${where}: key etcdCACert`, d.etcdCACert, 'CERTIFICATE'),
          pem(`${where}: key etcdCert`, d.etcdCert, 'CERTIFICATE'),
          pem(`${where}: key etcdKey`, d.etcdKey, 'KEY'),
        ),
      ),
    };
  }
  if (type === 'kubernetes') {
    const etcd = ETCD_SECRET_KEYS.filter((k) => d[k] !== undefined);
    if (etcd.length)
      throw new Incomplete(`${where}: key ${etcd.join(', ')} is not used with datastoreType kubernetes`);
    if (!d.kubeconfig) throw new Incomplete(`${where}: key kubeconfig is required for kubernetes`);
    return { type: 'kubernetes', source: { kind: 'kubeconfig', text: d.kubeconfig } };
  }
  if (type === undefined || type === '')
    throw new Incomplete(`${where}: key datastoreType is required (etcdv3 or kubernetes)`);
  throw new Incomplete(`${where}: key datastoreType must be etcdv3 or kubernetes`);
}

const optTls = (t: TlsMaterial | undefined) => (t ? { tls: t } : {});

function fromFields(
  rcc: RemoteClusterConfiguration,
  read: (p: string) => string,
  fileRoot: string | false | undefined,
): ConnectionConfig {
  const s = rcc.spec;
  const file = (field: string, path: string | undefined): string | undefined => {
    if (path === undefined) return undefined;
    try {
      return read(path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw new Incomplete(`spec.${field}: cannot read ${path} (${code})`);
    }
  };
  switch (s.datastoreType) {
    case 'file':
      if (!s.fileDatastorePath)
        throw new Incomplete('spec.fileDatastorePath is required for datastoreType file');
      if (fileRoot === undefined) return { type: 'file', dir: s.fileDatastorePath };
      {
        const checked = checkFileDatastorePath(
          s.fileDatastorePath,
          fileRoot === false ? undefined : fileRoot,
        );
        if ('error' in checked) throw new Incomplete(checked.error);
        return { type: 'file', dir: checked.dir, ...(fileRoot ? { root: fileRoot } : {}) };
      }
    case 'etcdv3':
      if (!s.etcdEndpoints?.length)
        throw new Incomplete('spec.etcdEndpoints is required for datastoreType etcdv3');
      return {
        type: 'etcdv3',
        endpoints: s.etcdEndpoints,
        ...(s.etcdUsername ? { username: s.etcdUsername } : {}),
        ...(s.etcdPassword ? { password: s.etcdPassword } : {}),
        ...optTls(
          tls(
            pem('spec.etcdCACertFile', file('etcdCACertFile', s.etcdCACertFile), 'CERTIFICATE'),
            pem('spec.etcdCertFile', file('etcdCertFile', s.etcdCertFile), 'CERTIFICATE'),
            pem('spec.etcdKeyFile', file('etcdKeyFile', s.etcdKeyFile), 'KEY'),
          ),
        ),
      };
    case 'kubernetes': {
      const endpointFields = [
        'k8sAPIEndpoint',
        'k8sKeyFile',
        'k8sCertFile',
        'k8sCAFile',
        'k8sAPIToken',
      ] as const;
      const kubeconfigText = s.kubeconfigInline ?? file('kubeconfig', s.kubeconfig);
      if (kubeconfigText !== undefined) {
        const mixed = endpointFields.filter((f) => s[f] !== undefined);
        if (mixed.length)
          throw new Incomplete(
            `spec.${mixed[0]}: fedmesh does not merge ${mixed.join(', ')} into a kubeconfig; put them in the kubeconfig`,
          );
        return { type: 'kubernetes', source: { kind: 'kubeconfig', text: kubeconfigText } };
      }
      if (!s.k8sAPIEndpoint)
        throw new Incomplete(
          'kubernetes needs spec.kubeconfig, spec.kubeconfigInline or spec.k8sAPIEndpoint',
        );
      const t = tls(
        pem('spec.k8sCAFile', file('k8sCAFile', s.k8sCAFile), 'CERTIFICATE'),
        pem('spec.k8sCertFile', file('k8sCertFile', s.k8sCertFile), 'CERTIFICATE'),
        pem('spec.k8sKeyFile', file('k8sKeyFile', s.k8sKeyFile), 'KEY'),
      );
      return {
        type: 'kubernetes',
        source: {
          kind: 'endpoint',
          server: s.k8sAPIEndpoint,
          ...(s.k8sAPIToken ? { token: s.k8sAPIToken } : {}),
          ...optTls(t),
          ...(s.k8sInsecureSkipTLSVerify ? { insecureSkipTLSVerify: true } : {}),
        },
      };
    }
    default:
      throw new Incomplete('spec.datastoreType is required without a clusterAccessSecret');
  }
}
