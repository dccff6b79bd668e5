// Rate-limited warnings: the first at once, then at most one line per window with a count.
// The timer is injected, so the windows are stepped by hand.

import { Writable } from 'node:stream';
import { pino } from 'pino';
import t from 'tap';
import { ThrottledLog } from '../../src/log-throttle.js';

function setup() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    }),
  );
  const timers: Array<() => void> = [];
  const log = new ThrottledLog(logger, 10_000, (fn) => {
    timers.push(fn);
    return { unref: () => undefined };
  });
  /** End the oldest open window. */
  const tick = (): void => timers.shift()!();
  return { lines, log, tick, timers };
}

t.test('a burst is one line now and one line with the count at the end of the window', async (t) => {
  const { lines, log, tick, timers } = setup();
  for (let i = 0; i < 1000; i++) log.warn('limit reached', { client: `10.0.0.${i % 250}` });
  t.equal(lines.length, 1, 'one line for the first');
  t.match(lines[0], { msg: 'limit reached', count: 1, level: 40, client: '10.0.0.0' });
  tick();
  t.equal(lines.length, 2);
  t.match(lines[1], { msg: 'limit reached', count: 999, windowMs: 10_000, client: '10.0.0.249' }, 'the rest, counted, with the latest fields');
  t.equal(timers.length, 1, 'a new window is open');
  tick();
  t.equal(lines.length, 2, 'a quiet window writes nothing');
  t.equal(timers.length, 0, 'and closes');
  log.warn('limit reached');
  t.equal(lines.length, 3, 'the next occurrence is logged at once again');
});

t.test('conditions are throttled independently', async (t) => {
  const { lines, log } = setup();
  log.warn('a');
  log.warn('b');
  log.warn('a');
  t.same(
    lines.map((l) => l.msg),
    ['a', 'b'],
  );
});
