// At most `limit` items of work per turn of the event loop; the rest wait, in order, for the
// turns after (issue 13). During a reconnect storm libuv accepts every pending client in one
// go and calls the connection listener for each; doing all their work at once would starve
// the established connections for that long. Pure: the caller gives the scheduler (setImmediate,
// whose callbacks run after the turn's I/O and leave the next turn's I/O before them).

export type Schedule = (fn: () => void) => void;

export class TurnBatch<T> {
  /** Items run in the current turn. */
  private used = 0;
  private queue: (T | undefined)[] = [];
  private head = 0;
  private scheduled = false;

  constructor(
    private readonly limit: number,
    private readonly run: (item: T) => void,
    private readonly schedule: Schedule,
  ) {}

  /** Items waiting for a later turn. */
  get waiting(): number {
    return this.queue.length - this.head;
  }

  /** Run `item` now if this turn has room and nothing waits, else after those that wait. */
  push(item: T): void {
    this.arm();
    if (this.used < this.limit && this.waiting === 0) {
      this.used++;
      this.run(item);
    } else this.queue.push(item);
  }

  /** A new turn (called through `schedule`) must reset the count, so one is always armed while items run. */
  private arm(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.schedule(this.turn);
  }

  private readonly turn = (): void => {
    this.scheduled = false;
    this.used = 0;
    while (this.waiting > 0 && this.used < this.limit) {
      const item = this.queue[this.head]!;
      this.queue[this.head++] = undefined; // not kept alive by the queue once run
      this.used++;
      this.run(item);
    }
    if (this.waiting === 0) {
      this.queue = [];
      this.head = 0;
    }
    if (this.used > 0) this.arm();
  };
}
