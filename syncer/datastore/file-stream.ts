// A file datastore read once, as a stream, for the CLI commands that look at a cluster once (eval,
// explain). The driver's one-shot load (FileDatastore.load) keeps what a watch needs: every
// document's parsed form keyed by its hash, the file set with each file's resources. Here each
// file is read a chunk at a time and cut into documents as it comes (file-parse.ts readDocuments:
// neither its whole text nor all its bytes are ever in memory), each document parsed and validated
// in turn; a resource is
// handed on as soon as it is accepted, and the text and parsed form go with the file. What is kept
// is one origin per resource identity (one map for all files), to tell duplicates apart.
//
// The outcome is the driver's (a differential test holds them equal): the same files, read through
// the same path checks, the same refusals in the same order; the same resource in two files: the
// first file in name order wins, the other is refused naming both.
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { type Origin, type Resource, type ResourceError, resourceId } from '../../model/resources.ts';
import { duplicateInFile, parseDocuments, type SkippedResource } from '../../model/validate.ts';
import { duplicateAcrossFiles, listYamlFiles } from './file.ts';
import { isBlank, type RawDocument, readDocuments } from './file-parse.ts';
import { openDatastoreFile } from './paths.ts';

/** What a stream leaves once every resource has been handed on. */
export interface StreamOutcome {
  errors: ResourceError[];
  skipped: SkippedResource[];
}

/** Takes each accepted resource; may wait (the consumer's back-pressure). */
export type ResourceSink = (resource: Resource) => void | Promise<void>;

/**
 * Read the YAML files of `dir` (not recursive), handing each accepted resource to `sink` in file
 * name order, then document order. Throws if the directory cannot be listed. `root`: symlinked
 * files must resolve under it (default: the directory's parent, as the driver).
 */
export async function streamFiles(
  dir: string,
  opts: { root?: string },
  sink: ResourceSink,
): Promise<StreamOutcome> {
  const { abs, root, names } = await listYamlFiles(dir, opts.root);
  const out: StreamOutcome = { errors: [], skipped: [] };
  /** resourceId → the origin of the definition in effect (an earlier file's, or this file's). */
  const owners = new Map<string, Origin>();
  for (const name of names) {
    const path = join(abs, name);
    const fh = await openFile(path, root);
    if ('refusal' in fh) {
      out.errors.push({ origin: { source: path }, message: fh.refusal });
      continue;
    }
    try {
      const chunks = readDocuments((into) => fh.read(into, 0, into.length).then((r) => r.bytesRead));
      await streamFile(chunks, { source: path, baseDir: abs }, owners, out, sink);
    } catch (e) {
      // Read as it goes: what the file gave before the failure stands; the rest is refused.
      out.errors.push({ origin: { source: path }, message: `cannot read: ${(e as Error).message}` });
    } finally {
      await fh.close();
    }
  }
  return out;
}

/** The whole read as arrays (explain keeps it for its name lookup); nothing else beside it. */
export async function loadFiles(
  dir: string,
  opts: { root?: string } = {},
): Promise<StreamOutcome & { resources: Resource[] }> {
  const resources: Resource[] = [];
  const got = await streamFiles(dir, opts, (r) => {
    resources.push(r);
  });
  return { resources, ...got };
}

async function openFile(path: string, root: string): Promise<FileHandle | { refusal: string }> {
  try {
    const fh = await openDatastoreFile(path, root);
    return 'skip' in fh ? { refusal: `skipped: ${fh.skip}` } : fh;
  } catch (e) {
    return { refusal: `cannot read: ${(e as Error).message}` };
  }
}

/**
 * One file's documents, in order. Refusals of a definition another file already holds follow the
 * file's own refusals (the driver decides ownership once a file is parsed).
 */
async function streamFile(
  chunks: AsyncIterable<RawDocument[]>,
  origin: { source: string; baseDir: string },
  owners: Map<string, Origin>,
  out: StreamOutcome,
  sink: ResourceSink,
): Promise<void> {
  /** Definitions of ids another file holds: resourceId → the first in this file (rare; kept apart). */
  const overriddenHere = new Map<string, Origin>();
  const overridden: ResourceError[] = [];
  let document = 0;
  for await (const pieces of chunks) {
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i] as RawDocument;
      // Parsed, the document's text goes: only the pieces not yet parsed stay referenced.
      (pieces as (RawDocument | undefined)[])[i] = undefined;
      if (isBlank(piece.text)) continue;
      // Written out, not spread: a spread per document showed in the profile.
      const outcomes = parseDocuments(piece.text, {
        source: origin.source,
        baseDir: origin.baseDir,
        firstDocument: document,
        lineOffset: piece.lineOffset,
      });
      document += 1;
      for (const { result } of outcomes) {
        if ('errors' in result) out.errors.push(...result.errors);
        else if ('skipped' in result) out.skipped.push(result.skipped);
        else if ('resource' in result) {
          const res = result.resource;
          const id = resourceId(res);
          const owner = owners.get(id);
          // The first definition in this file, if any: the owner when this file holds the id.
          const first = owner?.source === origin.source ? owner : overriddenHere.get(id);
          if (first) {
            // Only the first definition's origin matters to the message.
            out.errors.push(duplicateInFile(res, { ...res, origin: first }));
            continue;
          }
          if (owner) {
            overriddenHere.set(id, res.origin);
            overridden.push(duplicateAcrossFiles(res.origin, id, owner));
            continue;
          }
          owners.set(id, res.origin);
          // Awaited only when the sink waits: a turn of the event loop per resource adds up.
          const waiting = sink(res);
          if (waiting) await waiting;
        }
      }
    }
  }
  out.errors.push(...overridden);
}
