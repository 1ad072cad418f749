// From a resolved ConnectionConfig to a running driver, and from the `--datastore` flag to a
// ConnectionConfig. The one place that knows every driver: syncer, eval, explain and the
// services controller all open datastores here, so they read clusters the same way.
import { type ConnectionConfig, describeConnection } from './connection.ts';
import { FileDatastore } from './file.ts';
import { parseKubernetesSpec } from './kube-spec.ts';
import { KubernetesDatastore } from './kubernetes.ts';
import type { Datastore } from './types.ts';

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
  if (spec === 'kubernetes' || spec.startsWith('kubernetes:')) return parseKubernetesSpec(spec, flags);
  if (spec.startsWith('etcdv3') || spec.startsWith('kubernetes')) {
    throw new Error(`--datastore ${spec}: this build supports file:DIR only so far`);
  }
  throw new Error(`--datastore ${spec}: expected file:DIR, etcdv3:URL[,URL] or kubernetes[:KUBECONFIG]`);
}

/** A driver for the connection (not started); `remote`: a peer cluster's, read for federation only. */
export function openConnection(config: ConnectionConfig, opts: { remote?: boolean } = {}): Datastore {
  switch (config.type) {
    case 'file':
      return new FileDatastore(config.dir);
    case 'kubernetes':
      return new KubernetesDatastore(config, { remote: opts.remote === true });
    default:
      throw new Error(`${describeConnection(config)}: this build supports file datastores only so far`);
  }
}
