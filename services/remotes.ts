// From a RemoteClusterConfiguration to a way of reading the remote's Services and Endpoints. The
// services controller needs the Kubernetes API (or a file datastore): a remote it can reach only
// through etcd has no Services to read and is skipped, with a warning and a status entry.
//
// `rccConnection` is the one place that turns an RCC into a ConnectionConfig here; once the
// syncer's full resolution (syncer/remote-config.ts: kubeconfig files, inline, Secrets) is in,
// it replaces this function and `servicesAccess` stays as it is.
import type { RemoteClusterConfiguration } from '../model/resources.ts';
import type { ConnectionConfig } from '../syncer/datastore/connection.ts';

export type RemoteAccess = { config: ConnectionConfig } | { skip: string } | { error: string };

/** What this build can resolve by itself: file RCCs. */
export function rccConnection(rcc: RemoteClusterConfiguration): ConnectionConfig | { error: string } {
  switch (rcc.spec.datastoreType) {
    case 'file':
      return rcc.spec.fileDatastorePath
        ? { type: 'file', dir: rcc.spec.fileDatastorePath }
        : { error: 'spec.fileDatastorePath is required for datastoreType file' };
    case 'etcdv3':
      return { type: 'etcdv3', endpoints: rcc.spec.etcdEndpoints ?? [] };
    case 'kubernetes':
      return { error: 'datastoreType kubernetes: RCC credential resolution is not in this build yet' };
  }
}

/** Can the services controller read Services through this connection? */
export function servicesAccess(resolved: ConnectionConfig | { error: string }): RemoteAccess {
  if ('error' in resolved) return resolved;
  if (resolved.type === 'etcdv3')
    return {
      skip: 'the RCC gives etcd access only: Services and Endpoints live in the Kubernetes API, which it gives no way to read',
    };
  return { config: resolved };
}

export type RemoteResolver = (rcc: RemoteClusterConfiguration) => RemoteAccess;

export const resolveRemote: RemoteResolver = (rcc) => servicesAccess(rccConnection(rcc));
