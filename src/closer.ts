// Executes close plans (planner.ts): one timer per plan, stepping through its times, so a plan of
// 100,000 connections costs one pending timer. Each connection is checked again when its turn
// comes: one already gone is skipped, and `spare` can let one off (a connection whose home
// changed back before its turn, a backend that came back up before its connections were closed).

import type { Pair } from './connections.js';
import type { CloseCause } from './metrics.js';
import type { ClosePlan } from './planner.js';

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): { unref(): unknown };
  clearTimeout(timer: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout),
};

/** A plan being carried out. */
export interface Closing {
  /** Stop: nothing more of this plan is closed. */
  cancel(): void;
  /** Close what is left of this plan now (a second shutdown signal). */
  finishNow(): void;
  /** Closes still to come. */
  readonly pending: number;
}

/**
 * Carry out `plan`: close each pair at its time for `cause`, unless it is gone or `spare(pair)`
 * says to leave it; `done` is called when the plan is finished or cancelled.
 */
export function executePlan(
  plan: ClosePlan<Pair>,
  cause: CloseCause,
  clock: Clock,
  spare: (pair: Pair) => boolean = () => false,
  done: () => void = () => {},
): Closing {
  let next = 0;
  let timer: unknown = null;
  let finished = false;
  const finish = (): void => {
    if (finished) return;
    finished = true;
    if (timer !== null) clock.clearTimeout(timer);
    timer = null;
    done();
  };
  const closeOne = (pair: Pair): void => {
    if (!pair.closing && !spare(pair)) pair.destroy(cause);
  };
  const step = (): void => {
    timer = null;
    const now = clock.now();
    while (next < plan.items.length && plan.at[next]! <= now) closeOne(plan.items[next++]!);
    if (next >= plan.items.length) {
      finish();
      return;
    }
    const t = clock.setTimeout(step, plan.at[next]! - now);
    t.unref();
    timer = t;
  };
  step();
  return {
    cancel: finish,
    finishNow: () => {
      while (next < plan.items.length) closeOne(plan.items[next++]!);
      finish();
    },
    get pending() {
      return finished ? 0 : plan.items.length - next;
    },
  };
}
