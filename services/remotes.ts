// From a RemoteClusterConfiguration to a way of reading the remote's Services and Endpoints. The
// services controller needs the Kubernetes API (or a file datastore): a remote it can reach only
// through etcd has no Services to read and is skipped, with a warning and a status entry.
//
// The RCC (and its clusterAccessSecret) is resolved exactly as the syncer resolves it
// (syncer/remote-config.ts); only what the controller can read differs.
import type { RemoteClusterConfiguration } from '../model/resources.ts';
import type { ConnectionConfig } from '../syncer/datastore/connection.ts';
import { defaultFileRoot } from '../syncer/datastore/paths.ts';
import { resolveRemoteConfig, type SecretLookup } from '../syncer/remote-config.ts';

export type RemoteAccess = { config: ConnectionConfig } | { skip: string } | { error: string };

/** Can the services controller read Services through this connection? */
export function servicesAccess(resolved: ConnectionConfig | { error: string }): RemoteAccess {
  if ('error' in resolved) return resolved;
  if (resolved.type === 'etcdv3')
    return {
      skip: 'the RCC gives etcd access only: Services and Endpoints live in the Kubernetes API, which it gives no way to read',
    };
  return { config: resolved };
}

export type RemoteResolver = (rcc: RemoteClusterConfiguration, secrets: SecretLookup) => RemoteAccess;

/** Resolves as the syncer does; a Secret named without a namespace is in `defaultSecretNamespace`. */
export function remoteResolver(defaultSecretNamespace: string, fileRoot?: string | false): RemoteResolver {
  return (rcc, secrets) => {
    const r = resolveRemoteConfig(rcc, secrets, {
      defaultSecretNamespace,
      ...(fileRoot !== undefined ? { fileRoot } : {}),
    });
    return servicesAccess('connection' in r ? r.connection : { error: r.incomplete });
  };
}

const OWN_NAMESPACE = process.env.FEDMESH_NAMESPACE ?? process.env.POD_NAMESPACE ?? 'fedmesh-system';

/** For a controller on `--datastore`: file RCCs must lie under that directory's parent. */
export function resolverFor(datastore: string): RemoteResolver {
  return remoteResolver(OWN_NAMESPACE, defaultFileRoot(datastore) ?? false);
}

export const resolveRemote: RemoteResolver = remoteResolver(OWN_NAMESPACE);
