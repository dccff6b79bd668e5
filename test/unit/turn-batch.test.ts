// TurnBatch: at most `limit` items per turn of the event loop, the rest in order in later turns
// (issue 13: a reconnect storm's accepts must not starve established connections).

import t from 'tap';
import { TurnBatch } from '../../src/turn-batch.js';

/** A manual scheduler: `next()` runs what the last turn scheduled, as one new turn. */
function manual() {
  let pending: (() => void)[] = [];
  return {
    schedule: (fn: () => void) => void pending.push(fn),
    get armed() {
      return pending.length;
    },
    next() {
      const now = pending;
      pending = [];
      for (const fn of now) fn();
    },
  };
}

t.test('a burst of 10 with a limit of 4 runs 4, then 4, then 2, in order, one turn each', async (t) => {
  const turns = manual();
  const ran: number[][] = [[]];
  const batch = new TurnBatch<number>(4, (n) => ran.at(-1)!.push(n), turns.schedule);
  for (let i = 1; i <= 10; i++) batch.push(i);
  t.same(ran, [[1, 2, 3, 4]], 'the first four run at once');
  t.equal(batch.waiting, 6);
  ran.push([]);
  turns.next();
  t.same(ran[1], [5, 6, 7, 8], 'the next turn runs the next four');
  ran.push([]);
  turns.next();
  t.same(ran[2], [9, 10], 'then the rest');
  t.equal(batch.waiting, 0);
  turns.next(); // the turn that finds the count at zero and nothing waiting
  t.equal(turns.armed, 0, 'an idle batch keeps nothing scheduled');
});

t.test('an item pushed while others wait queues behind them, even in a fresh turn', async (t) => {
  const turns = manual();
  const ran: string[] = [];
  const batch = new TurnBatch<string>(1, (s) => ran.push(s), turns.schedule);
  batch.push('a');
  batch.push('b');
  turns.next(); // runs b; the turn is used
  batch.push('c'); // the same turn (I/O after the check phase's batch): waits
  t.same(ran, ['a', 'b']);
  turns.next();
  t.same(ran, ['a', 'b', 'c'], 'c in the turn after');
});

t.test('below the limit every item runs synchronously, as without a batch', async (t) => {
  const turns = manual();
  const ran: number[] = [];
  const batch = new TurnBatch<number>(32, (n) => ran.push(n), turns.schedule);
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 32; i++) batch.push(round * 32 + i);
    t.equal(ran.length, (round + 1) * 32, `round ${round + 1}: all 32 ran in their turn`);
    turns.next();
  }
  t.equal(batch.waiting, 0);
});
