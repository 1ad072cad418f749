// Writes a cluster directory (the file datastore's YAML) into etcd in Calico's layout: what
// `fedmesh etcd-load`, the etcd tests, the etcd benchmark and `fedmesh demo --etcd` use to put a
// cluster into a real etcd. Namespaces and ServiceAccounts become the kns./ksa. Profiles
// calico-kube-controllers would write; kinds with no place in etcd mode are reported, not written.
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Etcd3 } from 'etcd3';
import { parseAllDocuments } from 'yaml';
import { isMapping } from '../../model/validate/common.ts';
import { encodeDocument } from './etcd-layout.ts';
import { isYamlFileName } from './file.ts';

export interface LoadReport {
  /** Keys written. */
  written: string[];
  /** Documents not written, with where and why. */
  skipped: { source: string; reason: string }[];
}

/** Keys per transaction: etcd's default --max-txn-ops is 128. */
const PER_TXN = 100;

/** Key → value for every document of the directory's YAML files (List documents expanded). */
export async function encodeDirectory(
  dir: string,
): Promise<{ kvs: Map<string, string>; skipped: LoadReport['skipped'] }> {
  const abs = resolve(dir);
  const names = (await readdir(abs)).filter(isYamlFileName).sort();
  const kvs = new Map<string, string>();
  const skipped: LoadReport['skipped'] = [];
  for (const name of names) {
    const source = join(abs, name);
    const docs = parseAllDocuments(await readFile(source, 'utf8'));
    (Array.isArray(docs) ? docs : []).forEach((doc, i) => {
      const where = `${source} (document ${i})`;
      if (doc.errors.length > 0) {
        skipped.push({
          source: where,
          reason: `YAML syntax error: ${doc.errors[0]?.message.split('\n')[0]}`,
        });
        return;
      }
      const js: unknown = doc.toJS();
      if (js === null || js === undefined) return;
      const items =
        isMapping(js) && Array.isArray(js.items) && String(js.kind).endsWith('List') ? js.items : [js];
      for (const item of items) {
        const enc = encodeDocument(item, abs);
        if ('skip' in enc) skipped.push({ source: where, reason: enc.skip });
        else kvs.set(enc.key, enc.value);
      }
    });
  }
  return { kvs, skipped };
}

/** Put key/values, PER_TXN to a transaction (one fsync each rather than one per key). */
export async function putAll(client: Etcd3, kvs: Iterable<[string, string]>): Promise<void> {
  const all = [...kvs];
  for (let i = 0; i < all.length; i += PER_TXN) {
    const success = all.slice(i, i + PER_TXN).map(([key, value]) => ({
      request_put: { key: Buffer.from(key), value: Buffer.from(value) },
    }));
    await client.kv.txn({ success });
  }
}

/** Write the directory's cluster into etcd. */
export async function loadDirectory(client: Etcd3, dir: string): Promise<LoadReport> {
  const { kvs, skipped } = await encodeDirectory(dir);
  await putAll(client, kvs);
  return { written: [...kvs.keys()], skipped };
}
