// From a resolved ConnectionConfig to a running driver, and from the `--datastore` flag to a
// ConnectionConfig. The one place that knows every driver: syncer, eval, explain and the
// services controller all open datastores here, so they read clusters the same way.
import { readFileSync } from 'node:fs';
import { type ConnectionConfig, describeConnection, type EtcdConnection } from './connection.ts';
import { FileDatastore } from './file.ts';
import { parseKubernetesSpec } from './kube-spec.ts';
import type { Datastore, DatastoreHandlers, DatastoreSnapshot } from './types.ts';

// The etcd and Kubernetes drivers load on first use: their clients (etcd3 with gRPC,
// @kubernetes/client-node) cost ~120 MB and over a second to load, which `fedmesh eval` over a
// file datastore never needs. Long-running processes load them up front (loadDrivers), so a
// driver is then built at once and a configuration it cannot use is refused at once, as before.
type EtcdModule = typeof import('./etcd.ts');
type KubeModule = typeof import('./kubernetes.ts');
let etcdModule: EtcdModule | undefined;
let kubeModule: KubeModule | undefined;

/** Load the drivers a connection type needs (all of them by default). */
export async function loadDrivers(types: readonly ConnectionConfig['type'][] = ['etcdv3', 'kubernetes']) {
  if (types.includes('etcdv3')) etcdModule ??= await import('./etcd.ts');
  if (types.includes('kubernetes')) kubeModule ??= await import('./kubernetes.ts');
}

/** A driver whose module is not loaded yet: built on first use (start or list). */
class DeferredDatastore implements Datastore {
  private driver?: Promise<Datastore>;
  private built?: Datastore;
  private stopped = false;

  /** The driver's own once it is built (a kubeconfig's server, say), a stand-in until then. */
  get description(): string {
    return this.built?.description ?? this.standIn;
  }

  constructor(
    private readonly standIn: string,
    private readonly build: () => Promise<Datastore>,
    /** Whether the driver has its own list() (etcd does; Kubernetes is read by start/stop). */
    hasList: boolean,
  ) {
    if (hasList) {
      this.list = async () => {
        const d = await this.get();
        if (!d.list) throw new Error(`${this.description}: no one-shot listing`);
        return d.list();
      };
    }
  }

  readonly list?: () => Promise<DatastoreSnapshot>;

  private get(): Promise<Datastore> {
    this.driver ??= this.build().then((d) => {
      this.built = d;
      return d;
    });
    return this.driver;
  }

  async start(handlers: DatastoreHandlers): Promise<void> {
    const d = await this.get();
    if (!this.stopped) await d.start(handlers);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.driver) await (await this.driver.catch(() => undefined))?.stop();
  }
}

/** Credentials and TLS for `--datastore` given by flags or FEDMESH_* variables. */
export interface DatastoreFlags {
  [flag: string]: string | undefined;
}

/** `file:DIR | etcdv3:URL[,URL] | kubernetes[:KUBECONFIG]` plus its flags → a ConnectionConfig. */
export function parseDatastoreSpec(spec: string, flags: DatastoreFlags = {}): ConnectionConfig {
  if (spec.startsWith('file:')) {
    const dir = spec.slice('file:'.length);
    if (!dir) throw new Error('--datastore file:DIR needs a directory');
    return { type: 'file', dir };
  }
  if (spec.startsWith('etcdv3')) return parseEtcdSpec(spec, flags);
  if (spec === 'kubernetes' || spec.startsWith('kubernetes:')) return parseKubernetesSpec(spec, flags);
  if (spec.startsWith('kubernetes')) {
    throw new Error(`--datastore ${spec}: this build supports file:DIR only so far`);
  }
  throw new Error(`--datastore ${spec}: expected file:DIR, etcdv3:URL[,URL] or kubernetes[:KUBECONFIG]`);
}

/** A driver for the connection (not started); `remote`: a peer cluster's, read for federation only. */
export function openConnection(config: ConnectionConfig, opts: { remote?: boolean } = {}): Datastore {
  switch (config.type) {
    case 'file':
      return new FileDatastore(config.dir, config.root ? { root: config.root } : {});
    case 'etcdv3': {
      if (etcdModule) return new etcdModule.EtcdDatastore(config);
      const build = async () => {
        await loadDrivers(['etcdv3']);
        return new etcdModule!.EtcdDatastore(config);
      };
      return new DeferredDatastore(describeConnection(config), build, true);
    }
    case 'kubernetes': {
      const remote = opts.remote === true;
      if (kubeModule) return new kubeModule.KubernetesDatastore(config, { remote });
      const build = async () => {
        await loadDrivers(['kubernetes']);
        return new kubeModule!.KubernetesDatastore(config, { remote });
      };
      return new DeferredDatastore(describeConnection(config), build, false);
    }
    default:
      throw new Error(`${describeConnection(config)}: this build supports file datastores only so far`);
  }
}

/** A peer cluster's datastore, read for federation only (what its fedmesh-remote-cluster role grants). */
export function openRemoteConnection(config: ConnectionConfig): Datastore {
  return openConnection(config, { remote: true });
}

/** The flags (and FEDMESH_* variables) that go with `--datastore etcdv3:...`. */
export const ETCD_FLAGS = [
  'etcd-ca-file',
  'etcd-cert-file',
  'etcd-key-file',
  'etcd-username',
  'etcd-password',
];

/** `etcdv3:URL[,URL]` with --etcd-* flags; certificate files are read here, once. */
function parseEtcdSpec(spec: string, flags: DatastoreFlags): EtcdConnection {
  const m = /^etcdv3:(.+)$/.exec(spec);
  if (!m)
    throw new Error(`--datastore ${spec}: expected etcdv3:URL[,URL] (e.g. etcdv3:https://10.0.0.1:2379)`);
  const endpoints = m[1]!.split(',').map((u) => u.trim());
  for (const u of endpoints) {
    if (!/^https?:\/\/[^/\s]+$/.test(u.replace(/\/$/, '')))
      throw new Error(`--datastore ${spec}: "${u}" is not an http(s)://HOST:PORT URL`);
  }
  const secure = endpoints.filter((u) => u.startsWith('https://')).length;
  if (secure > 0 && secure < endpoints.length)
    throw new Error(`--datastore ${spec}: mixes http:// and https:// endpoints`);
  const read = (flag: string): string | undefined => {
    const path = flags[flag];
    if (!path) return undefined;
    try {
      return readFileSync(path, 'utf8');
    } catch (e) {
      throw new Error(`--${flag} ${path}: ${(e as Error).message}`);
    }
  };
  const tls = { ca: read('etcd-ca-file'), cert: read('etcd-cert-file'), key: read('etcd-key-file') };
  if ((tls.cert === undefined) !== (tls.key === undefined))
    throw new Error('--etcd-cert-file and --etcd-key-file go together (a client certificate and its key)');
  const hasTls = tls.ca !== undefined || tls.cert !== undefined;
  if (hasTls && secure === 0)
    throw new Error(`--datastore ${spec}: TLS files are given but the endpoints are http://; use https://`);
  const username = flags['etcd-username'];
  const password = flags['etcd-password'];
  if (password !== undefined && username === undefined)
    throw new Error('--etcd-password needs --etcd-username');
  return {
    type: 'etcdv3',
    endpoints: endpoints.map((u) => u.replace(/\/$/, '')),
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(hasTls
      ? {
          tls: {
            ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
            ...(tls.cert !== undefined ? { cert: tls.cert } : {}),
            ...(tls.key !== undefined ? { key: tls.key } : {}),
          },
        }
      : {}),
  };
}
