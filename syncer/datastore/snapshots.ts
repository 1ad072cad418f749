// Each datastore read once, for the CLI commands that look at clusters once (eval, explain): a
// read is kept by connection and replayed, as a Datastore, to every merged view that needs it
// (cluster a's view reads a and its remote b; b's view reads b and a: two reads, not four), and
// to explain's name lookup. No watch, no settling, no content keys: a replay is one listing, then
// InSync. A datastore that cannot be read replays as ConnectionFailed with its reason.
// A file datastore replayed once (eval) is streamed: each resource goes to the merger as its
// document is parsed, so the whole listing never lives in memory beside the merged view.
import type { Resource } from '../../model/resources.ts';
import { type ConnectionConfig, describeConnection, type FileConnection } from './connection.ts';
import { loadFiles, type StreamOutcome, streamFiles } from './file-stream.ts';
import { openConnection } from './open.ts';
import { readOnce } from './read-once.ts';
import type { Datastore, DatastoreEvent, DatastoreHandlers, DatastoreSnapshot } from './types.ts';

/** Events handed over per batch in a replay (the merger's work per call stays small). */
const REPLAY_BATCH = 1000;
/**
 * Per batch when the local cluster's file is streamed: a resource waiting in a batch outlives the
 * young generation's next scavenge and is copied out of it (at 1,000 a batch, 100,000 endpoints
 * spent a third more CPU in GC, and 60 MB more memory). Not for a remote's stream: each of its
 * batches that changes its address ranges makes the merger recheck the remotes after it.
 */
const LOCAL_STREAM_BATCH = 100;

/** A read, or why it failed; `description` is the driver's (a kubeconfig's server, say). */
export type SnapshotRead = { description: string } & ({ snapshot: DatastoreSnapshot } | { error: string });

export interface SnapshotOptions {
  /**
   * Drop a read once it has been replayed (eval: each datastore is replayed once), so its
   * resources go as the merger converts them instead of living beside the merged view.
   */
  once?: boolean;
}

/** Takes each resource a stream hands on (explain keeps the few it looks names up in). */
export type StreamTap = (resource: Resource) => void;

export class Snapshots {
  private readonly reads = new Map<string, Promise<SnapshotRead>>();
  /** File datastores to stream to the next view that reads them, with a tap: by read key. */
  private readonly taps = new Map<string, { tap: StreamTap; done: (o: StreamOutcome | undefined) => void }>();

  constructor(private readonly opts: SnapshotOptions = {}) {}

  /**
   * Stream a file datastore, once, to the next view that reads it as its local datastore, each
   * accepted resource handed to `tap` too: its read is neither kept nor replayed. The promise is
   * the stream's refusals and skipped resources, or undefined when it could not be read (the view
   * says why).
   */
  streamTo(connection: FileConnection, tap: StreamTap): Promise<StreamOutcome | undefined> {
    return new Promise((done) => this.taps.set(readKey(connection, false), { tap, done }));
  }

  /** The datastore behind a connection, read once; `remote`: as a peer cluster reads it. */
  read(connection: ConnectionConfig, remote = false): Promise<SnapshotRead> {
    const key = readKey(connection, remote);
    let p = this.reads.get(key);
    if (!p) {
      p = readConnection(connection, remote);
      this.reads.set(key, p);
    }
    return p;
  }

  /** A Datastore that replays the read of a connection: its listing, its refusals, then InSync. */
  datastore(connection: ConnectionConfig, remote = false): Datastore {
    let stopped = false;
    let description = describeConnection(connection);
    return {
      get description() {
        return description;
      },
      start: async (h: DatastoreHandlers) => {
        h.onStatus('Connecting');
        const key = readKey(connection, remote);
        const tapped = remote ? undefined : this.taps.get(key);
        if (connection.type === 'file' && (tapped || (this.opts.once && !this.reads.has(key)))) {
          this.taps.delete(key);
          const got = await streamReplay(
            connection,
            h,
            () => stopped,
            remote ? REPLAY_BATCH : LOCAL_STREAM_BATCH,
            tapped?.tap,
          );
          tapped?.done(got);
          return;
        }
        const got = await this.read(connection, remote);
        description = got.description;
        if (this.opts.once) this.reads.delete(key);
        if (stopped) return;
        if ('error' in got) {
          h.onStatus('ConnectionFailed', got.error);
          return;
        }
        h.onStatus('ResyncInProgress');
        replay(got.snapshot, h, this.opts.once === true);
        h.onRefusals?.(got.snapshot.errors);
        h.onStatus('InSync');
      },
      stop: async () => {
        stopped = true;
      },
    };
  }
}

/**
 * A file datastore's read, handed to the handlers as it goes (in batches), then its
 * refusals and InSync; the same statuses as a replay (ResyncInProgress only once it is readable).
 */
async function streamReplay(
  c: FileConnection,
  h: DatastoreHandlers,
  stopped: () => boolean,
  batchSize: number,
  tap?: StreamTap,
): Promise<StreamOutcome | undefined> {
  let batch: DatastoreEvent[] = [];
  let revision = 0;
  const flush = () => {
    if (revision === 0) h.onStatus('ResyncInProgress');
    h.onEvents(batch, ++revision);
    batch = [];
  };
  let got: Awaited<ReturnType<typeof streamFiles>>;
  try {
    got = await streamFiles(c.dir, fileRoot(c), (resource) => {
      if (stopped()) return;
      tap?.(resource);
      batch.push({ type: 'upsert', resource });
      if (batch.length >= batchSize) flush();
    });
  } catch (e) {
    if (!stopped()) h.onStatus('ConnectionFailed', readFailure(describeConnection(c), e));
    return undefined;
  }
  if (stopped()) return got;
  if (batch.length > 0 || revision === 0) flush();
  h.onRefusals?.(got.errors);
  h.onStatus('InSync');
  return got;
}

function replay(snapshot: DatastoreSnapshot, h: DatastoreHandlers, consume: boolean): void {
  const all: (Resource | undefined)[] = snapshot.resources;
  // Consumed: nothing else holds the resources, so each goes once the merger has converted it.
  if (consume) snapshot.resources = [];
  let revision = 0;
  for (let i = 0; i < all.length; i += REPLAY_BATCH) {
    const batch: DatastoreEvent[] = [];
    const end = Math.min(all.length, i + REPLAY_BATCH);
    for (let j = i; j < end; j++) {
      batch.push({ type: 'upsert', resource: all[j]! });
      if (consume) all[j] = undefined;
    }
    h.onEvents(batch, ++revision);
  }
  if (revision === 0) h.onEvents([], 1);
}

/** kubernetes reads fewer kinds for a peer (its fedmesh-remote-cluster role); other stores do not care. */
function readKey(connection: ConnectionConfig, remote: boolean): string {
  return `${connection.type === 'kubernetes' && remote ? 'remote ' : ''}${JSON.stringify(connection)}`;
}

async function readConnection(connection: ConnectionConfig, remote: boolean): Promise<SnapshotRead> {
  // A file datastore's one-shot load, with the root its RCC allows (the driver's list() checks
  // symlinks against the directory's parent instead).
  const ds =
    connection.type === 'file'
      ? {
          description: describeConnection(connection),
          list: () => loadFiles(connection.dir, fileRoot(connection)),
        }
      : openConnection(connection, { remote });
  try {
    return { description: ds.description, snapshot: await (ds.list ? ds.list() : readOnce(ds as Datastore)) };
  } catch (e) {
    return { description: ds.description, error: readFailure(ds.description, e) };
  }
}

/** Why a read failed, without the datastore's name: the drivers say which; the merged view says it again. */
function readFailure(description: string, e: unknown): string {
  const message = (e as Error).message;
  const own = `${description}: `;
  return message.startsWith(own) ? message.slice(own.length) : message;
}

function fileRoot(c: FileConnection): { root?: string } {
  return c.root ? { root: c.root } : {};
}
