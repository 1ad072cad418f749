// Where a file datastore may read: under a root the operator names. An RCC is data, and data
// must not be able to point the syncer at `/etc` (`fileDatastorePath: ../../../../etc`) or slip
// a symlink `x.yaml -> /etc/passwd` into a cluster directory whose lines then show up in logs and
// /status. Every check is on real paths (symlinks resolved), so `..` and links cannot leave.
import { constants, realpathSync } from 'node:fs';
import { type FileHandle, open, realpath } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { clip } from '../../lib/text.ts';

/**
 * The root file datastores may read under, when the operator gave none: for a local `file:DIR`
 * datastore, DIR's parent (sibling cluster directories, as in the demo); for etcd or Kubernetes
 * none (a file RCC then needs `--file-datastore-root`).
 */
export function defaultFileRoot(localDatastore: string): string | undefined {
  if (!localDatastore.startsWith('file:')) return undefined;
  return dirname(resolve(localDatastore.slice('file:'.length)));
}

/** `path` is `root` or inside it (both already real, absolute paths). */
export function isInside(path: string, root: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/** The real path of `p`, or of its nearest existing ancestor joined with the rest (p may not exist yet). */
function realOrLexical(p: string): string {
  const abs = resolve(p);
  let head = abs;
  let tail = '';
  for (;;) {
    try {
      const real = realpathSync(head);
      return tail ? resolve(real, tail) : real;
    } catch {
      const up = dirname(head);
      if (up === head) return abs;
      tail = tail ? `${head.slice(up.length + 1)}${sep}${tail}` : head.slice(up.length + 1);
      head = up;
    }
  }
}

/**
 * An RCC's `fileDatastorePath` (already absolute): accepted only under `root`. The one check to
 * call wherever an RCC's file path is opened (syncer, eval, explain, RCC resolution).
 */
export function checkFileDatastorePath(
  path: string,
  root: string | undefined,
): { dir: string } | { error: string } {
  if (root === undefined) {
    return {
      error: `spec.fileDatastorePath ${clip(path)}: a file datastore in an RCC needs --file-datastore-root (FEDMESH_FILE_DATASTORE_ROOT) when the local datastore is not file:DIR`,
    };
  }
  const realRoot = realOrLexical(root);
  const real = realOrLexical(path);
  if (!isInside(real, realRoot)) {
    return {
      error: `spec.fileDatastorePath ${clip(path)} is outside the file datastore root ${clip(realRoot)} (set --file-datastore-root to allow it)`,
    };
  }
  return { dir: path };
}

/** Why a directory entry is not read as a file. */
export type Unreadable = { skip: string };

/**
 * Open a file of a datastore directory for reading, safely: a symlink must resolve inside `root`;
 * FIFOs, devices and sockets are not opened for reading (a FIFO would block a thread forever).
 * O_NONBLOCK makes even a FIFO swapped in after the check return at once; the type is checked
 * again on the open descriptor.
 */
export async function openDatastoreFile(path: string, root: string): Promise<FileHandle | Unreadable> {
  const real = await realpath(path);
  if (!isInside(real, realOrLexical(root))) {
    return { skip: `a symlink to ${clip(real)}, outside the file datastore root ${clip(root)}` };
  }
  const fh = await open(real, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  const st = await fh.stat();
  if (!st.isFile()) {
    await fh.close();
    return { skip: `not a regular file (${fileType(st)})` };
  }
  return fh;
}

export function fileType(st: {
  isFIFO(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
  isSocket(): boolean;
  isDirectory(): boolean;
}): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isDirectory()) return 'a directory';
  return 'not a regular file';
}
