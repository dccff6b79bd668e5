// Which connection closes when, for every bulk close ringlb makes itself (rehoming, a removed
// backend's drain deadline, onDown "close", the shutdown deadline). Pure: the caller passes the
// clock's reading and the random source, so tests need no sockets and no waiting.
//
// The order is random (Fisher-Yates), so no class of clients is always first; the times are
// evenly spaced, so their reconnects arrive as a steady trickle rather than a storm. With n
// closes over a window w, close i is at start + i x w / n: in any interval of length d there
// are at most ceil(n x d / w) + 1 of them.

/** A plan: `items[i]` closes at `at[i]`; times do not decrease. */
export interface ClosePlan<T> {
  readonly items: readonly T[];
  readonly at: readonly number[];
}

/**
 * Spread `items` over `[start, start + windowMs)` in random order, evenly paced; a window of 0
 * closes everything at `start`. `endAligned` puts the last close at `start + windowMs` instead
 * (the shutdown deadline: the spread ends when the deadline does).
 */
export function planCloses<T>(
  items: readonly T[],
  start: number,
  windowMs: number,
  random: () => number,
  endAligned = false,
): ClosePlan<T> {
  const order = items.slice();
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const n = order.length;
  const step = n === 0 ? 0 : windowMs / n;
  const first = endAligned ? start + step : start;
  return { items: order, at: order.map((_, i) => first + i * step) };
}
