// Which changes a manager has written. A flag cleared after `await write()` loses every change
// that arrived during the write (issue 6: a policy ignored until the next resync); a counter does
// not: a write covers the generation it started from, and anything newer stays pending.

export class Generations {
  private changed = 1;
  private written = 0;

  /** Something changed (or must be re-read from the kernel). */
  bump(): void {
    this.changed++;
  }

  get pending(): boolean {
    return this.written < this.changed;
  }

  /** Call before reading the state to write: the generation the write will cover. */
  begin(): number {
    return this.changed;
  }

  /** The write that began at `gen` landed; later changes stay pending. */
  done(gen: number): void {
    if (gen > this.written) this.written = gen;
  }
}
