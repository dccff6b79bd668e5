// A clock the test moves by hand, for timing logic (paced and spread closes): nothing happens
// until the test advances it, so a test asserts what is due, never how long something took.

import type { Clock } from '../../src/closer.js';

interface Timer {
  readonly at: number;
  readonly fn: () => void;
  cancelled: boolean;
  unref(): Timer;
}

export class ManualClock implements Clock {
  private time = 1_000_000;
  private timers: Timer[] = [];

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const timer: Timer = { at: this.time + Math.max(0, ms), fn, cancelled: false, unref: () => timer };
    this.timers.push(timer);
    return timer;
  }

  clearTimeout(timer: unknown): void {
    (timer as Timer).cancelled = true;
  }

  /** Timers waiting (not cancelled, not run). */
  get pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  /** Move time forward by `ms`, running every timer that falls due, in order. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      const due = this.timers.filter((t) => !t.cancelled && t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.timers = this.timers.filter((t) => t !== due);
      this.time = Math.max(this.time, due.at);
      due.fn();
    }
    this.time = end;
  }
}
