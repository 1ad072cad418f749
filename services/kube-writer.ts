// kubernetes: the owned objects through the API, kept thin. Each write lists what the controller
// owns (Endpoints carrying the ownership annotation, EndpointSlices and ServiceImports carrying its
// managed-by label), then creates, replaces (only on a difference, so manual edits are overwritten
// and nothing else is) and deletes. ServiceExport conditions go to the ServiceExport's status.
import { CustomObjectsApi, type KubernetesObject, KubernetesObjectApi } from '@kubernetes/client-node';
import type { Resource } from '../model/resources.ts';
import { validateResource } from '../model/validate.ts';
import type { KubernetesConnection } from '../syncer/datastore/connection.ts';
import { kubeConfigFor } from '../syncer/datastore/kubernetes.ts';
import { API_VERSION, type Owned, toManifest } from './manifest.ts';
import { IMPORT_MANAGED_BY, MANAGED_BY, MANAGED_BY_VALUE, TIGERA_SELECTOR } from './names.ts';
import { type ExportStatus, key } from './types.ts';
import type { OwnedObjects, OwnedWriter } from './writer.ts';

const OWNED_KINDS: {
  kind: Owned['kind'];
  labelSelector?: string;
  owned: (o: KubernetesObject) => boolean;
}[] = [
  { kind: 'Endpoints', owned: (o) => o.metadata?.annotations?.[TIGERA_SELECTOR] !== undefined },
  { kind: 'EndpointSlice', labelSelector: `${MANAGED_BY}=${MANAGED_BY_VALUE}`, owned: () => true },
  { kind: 'ServiceImport', labelSelector: `${IMPORT_MANAGED_BY}=${MANAGED_BY_VALUE}`, owned: () => true },
];

/** What of an object the controller decides, for comparison: the manifest of its validated form. */
function comparable(o: KubernetesObject, kind: Owned['kind']): string | undefined {
  const r = validateResource({ ...o, apiVersion: API_VERSION[kind], kind }, { source: 'api' }, '');
  if (!('resource' in r)) return undefined;
  return JSON.stringify(toManifest(r.resource as Resource as Owned));
}

export class KubeWriter implements OwnedWriter {
  readonly description: string;

  constructor(
    private readonly objects: KubernetesObjectApi,
    private readonly custom: CustomObjectsApi,
    server: string,
  ) {
    this.description = `kubernetes:${server}`;
  }

  static fromConnection(c: KubernetesConnection): KubeWriter {
    const kc = kubeConfigFor(c);
    return new KubeWriter(
      KubernetesObjectApi.makeApiClient(kc),
      kc.makeApiClient(CustomObjectsApi),
      kc.getCurrentCluster()?.server ?? '',
    );
  }

  async write(desired: OwnedObjects): Promise<void> {
    for (const { kind, labelSelector, owned } of OWNED_KINDS) {
      const want = new Map(desired.objects.filter((o) => o.kind === kind).map((o) => [key(o), o]));
      const list = await this.objects.list(
        API_VERSION[kind],
        kind,
        undefined,
        undefined,
        undefined,
        undefined,
        undefined,
        labelSelector,
      );
      const current = new Map(list.items.map((o) => [`${o.metadata?.namespace}/${o.metadata?.name}`, o]));
      for (const [k, o] of want) {
        const body = toManifest(o) as KubernetesObject;
        const cur = current.get(k);
        if (!cur) await this.objects.create(body);
        else if (owned(cur) && comparable(cur, kind) !== JSON.stringify(body))
          await this.objects.replace({
            ...body,
            metadata: { ...body.metadata, resourceVersion: cur.metadata?.resourceVersion },
          });
      }
      for (const [k, cur] of current) {
        if (!want.has(k) && owned(cur))
          await this.objects.delete({
            apiVersion: API_VERSION[kind],
            kind,
            metadata: { name: cur.metadata?.name, namespace: cur.metadata?.namespace },
          });
      }
    }
    for (const s of desired.exportStatus) await this.writeExportStatus(s);
  }

  private async writeExportStatus(s: ExportStatus): Promise<void> {
    const ref = {
      group: 'multicluster.x-k8s.io',
      version: 'v1alpha1',
      plural: 'serviceexports',
      namespace: s.namespace,
      name: s.name,
    };
    const cur = (await this.custom.getNamespacedCustomObjectStatus(ref)) as {
      metadata?: { resourceVersion?: string };
      status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[] };
    };
    const old = cur.status?.conditions ?? [];
    const now = new Date().toISOString();
    const conditions = s.conditions.map((c) => {
      const prev = old.find((o) => o.type === c.type);
      const same = prev?.status === c.status;
      return {
        ...c,
        lastTransitionTime: same
          ? ((prev as { lastTransitionTime?: string }).lastTransitionTime ?? now)
          : now,
      };
    });
    const unchanged = s.conditions.every((c) => {
      const prev = old.find((o) => o.type === c.type);
      return (
        prev && prev.status === c.status && prev.reason === c.reason && (prev.message ?? '') === c.message
      );
    });
    if (unchanged) return;
    await this.custom.replaceNamespacedCustomObjectStatus({
      ...ref,
      body: { ...cur, status: { ...cur.status, conditions } },
    });
  }
}
