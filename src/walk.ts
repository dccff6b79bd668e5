// The failover walk over a circular array of owners, shared by the ring (its points in order)
// and Maglev (its lookup table): from a start slot, each eligible owner the first time it is
// met. Pure.

import type { Candidates } from './balancer.js';

/**
 * Distinct eligible owners of `owners[start]`, `owners[start + 1]`, ... (wrapping), then -1.
 * Bounded: one lap at most, over all next() calls together. The first candidate allocates
 * nothing; the bitmap of those already returned is made only when a second one is asked for
 * (a failover), sized by `members`.
 */
export class OwnerWalk implements Candidates {
  private steps = 0;
  private first = -1;
  private seen: Uint8Array | null = null;

  constructor(
    private readonly owners: ArrayLike<number>,
    private slot: number,
    private readonly eligible: ArrayLike<number>,
    private readonly members: number,
  ) {}

  next(): number {
    const { owners, eligible } = this;
    const n = owners.length;
    while (this.steps < n) {
      const b = owners[this.slot]!;
      this.slot = this.slot + 1 === n ? 0 : this.slot + 1;
      this.steps++;
      if (b < 0 || !eligible[b]) continue;
      if (this.first < 0) {
        this.first = b;
        return b;
      }
      if (this.seen === null) {
        this.seen = new Uint8Array(this.members);
        this.seen[this.first] = 1;
      }
      if (this.seen[b]) continue;
      this.seen[b] = 1;
      return b;
    }
    return -1;
  }
}
