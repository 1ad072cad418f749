// The deltas every connected agent must be sent, encoded once and shared (Typha's "breadcrumbs").
// A singly linked list: the log holds only its newest entry; each client holds the last entry it
// has handed on. An entry is therefore reachable, and kept in memory, exactly as long as some
// client still has to send it; when the slowest client moves on or is cut off, the garbage
// collector takes what it no longer reaches. Nothing else refers to old entries.
//
// A client's queue is the list after its entry: its size in bytes is a subtraction of the running
// byte offsets (`end`), and its age is the time of the first entry in it.

export interface LogEntry {
  /** An encoded ServerMessage, sent as it is to every client. */
  readonly bytes: Uint8Array;
  /** When it was appended (ms since the epoch). */
  readonly at: number;
  /** Bytes appended up to and including this entry. */
  readonly end: number;
  next?: LogEntry;
}

export class FeedLog {
  private newest: LogEntry = { bytes: new Uint8Array(0), at: Date.now(), end: 0 };

  /** Where a client that subscribes now starts: it is sent every entry after this one. */
  get head(): LogEntry {
    return this.newest;
  }

  append(bytes: Uint8Array, now = Date.now()): LogEntry {
    const e: LogEntry = { bytes, at: now, end: this.newest.end + bytes.byteLength };
    this.newest.next = e;
    this.newest = e;
    return e;
  }

  /** Bytes queued after `from` (what a client at `from` still has to send). */
  bytesAfter(from: LogEntry): number {
    return this.newest.end - from.end;
  }
}
