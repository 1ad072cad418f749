// Where the controller's output goes, behind one narrow interface: the whole desired set of owned
// objects each time; the writer makes the datastore match it (create, update, delete only what it
// owns) and throws when it could not, so the controller retries with backoff.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { type Owned, toManifest } from './manifest.ts';
import { OWNED_FILE } from './names.ts';
import type { ExportStatus } from './types.ts';

export interface OwnedObjects {
  objects: Owned[];
  exportStatus: ExportStatus[];
}

export interface OwnedWriter {
  readonly description: string;
  /** Make the owned objects exactly `desired`. Idempotent; throws on failure (nothing assumed written). */
  write(desired: OwnedObjects): Promise<void>;
}

/** The text of DIR/federated-endpoints.yaml for a desired set: multi-document YAML, stable order. */
export function ownedFileText(desired: OwnedObjects): string {
  const header =
    '# Written by fedmesh services-controller: federated Endpoints, EndpointSlices and ServiceImports.\n' +
    "# Every edit is overwritten. Remove a Service's annotation or ServiceExport to remove its entries.\n";
  const docs = desired.objects.map((o) => stringify(toManifest(o), { lineWidth: 0 }));
  return header + (docs.length > 0 ? docs.join('---\n') : '');
}

/**
 * file:DIR: everything owned in one file, replaced atomically (temporary file, then rename), so a
 * reader (the controller itself, a syncer, `fedmesh services`) never sees half of it. ServiceExport
 * conditions cannot be written back into the user's files: they are in status and `fedmesh services`.
 */
export class FileWriter implements OwnedWriter {
  readonly description: string;

  constructor(private readonly dir: string) {
    this.description = `file:${join(dir, OWNED_FILE)}`;
  }

  async write(desired: OwnedObjects): Promise<void> {
    const text = ownedFileText(desired);
    const path = join(this.dir, OWNED_FILE);
    // Compared with the file as it is, not as last written: a manual edit is overwritten.
    const current = await readFile(path, 'utf8').catch(() => undefined);
    if (current === text) return;
    // A cluster with nothing federated gets no file at all.
    if (current === undefined && desired.objects.length === 0) return;
    // A dot-name is not read by the file datastore, so the temporary file is never half-parsed.
    const tmp = join(this.dir, `.${OWNED_FILE}.${process.pid}.tmp`);
    await writeFile(tmp, text, { mode: 0o644 });
    await rename(tmp, path);
  }
}
