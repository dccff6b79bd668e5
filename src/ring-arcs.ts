// Which backend serves each stretch of the hash circle, for drawing the ring (the status page's
// GET /ring/arcs). Exact runs of the routing rule (servingOwners), merged where one backend
// serves several points in a row, and downsampled to a fixed number of equal bins when there
// are too many to draw. Pure.

import { HASH_SPACE, servingOwners, type Ring } from './ring.js';

/** [start, end) as fractions 0-1 of the circle, clockwise from hash 0; backend -1 = nobody serves. */
export interface Arc {
  readonly start: number;
  readonly end: number;
  /** Index into ring.ids of the backend that serves this stretch, or -1. */
  readonly backend: number;
}

export interface RingArcs {
  /** True when `arcs` are the exact runs; false when downsampled to `bins` equal bins. */
  readonly exact: boolean;
  readonly arcs: readonly Arc[];
}

/**
 * The exact runs: point i serves (positions[i-1], positions[i]], point 0 also the stretch past
 * the last point (the wrap), so the list starts at 0 with point 0's run and ends with the wrap.
 * Consecutive runs of one backend are merged; the list covers [0, 1) without gaps.
 */
export function servedArcs(ring: Ring, eligible: ArrayLike<number>): Arc[] {
  const { positions } = ring;
  const n = positions.length;
  if (n === 0) return [{ start: 0, end: 1, backend: -1 }];
  const serving = servingOwners(ring, eligible);
  const arcs: Arc[] = [];
  const add = (from: number, to: number, backend: number): void => {
    if (to <= from) return; // equal positions: the later point owns nothing
    const last = arcs[arcs.length - 1];
    if (last && last.backend === backend) arcs[arcs.length - 1] = { start: last.start, end: to / HASH_SPACE, backend };
    else arcs.push({ start: from / HASH_SPACE, end: to / HASH_SPACE, backend });
  };
  // Keys are integers; point 0 serves [0, positions[0]] inclusive, i.e. up to positions[0] + 1.
  add(0, positions[0]! + 1, serving[0]!);
  for (let i = 1; i < n; i++) add(positions[i - 1]! + 1, positions[i]! + 1, serving[i]!);
  add(positions[n - 1]! + 1, HASH_SPACE, serving[0]!);
  return arcs;
}

/**
 * `arcs` (covering [0, 1) in order) drawn on `bins` equal bins: each bin goes to the backend
 * that serves most of it (ties to the lower index, nobody = -1 counts as a backend), then
 * adjacent bins of one backend are merged. A backend whose share is well below 1/bins may get
 * no bin: its arcs are too short to see at this resolution anyway.
 */
export function downsampleArcs(arcs: readonly Arc[], bins: number): Arc[] {
  const result: Arc[] = [];
  let k = 0;
  for (let b = 0; b < bins; b++) {
    const lo = b / bins;
    const hi = (b + 1) / bins;
    const covered = new Map<number, number>();
    // Two-pointer sweep: arcs are in order, so each is visited in the bins it overlaps only.
    while (k < arcs.length) {
      const arc = arcs[k]!;
      const overlap = Math.min(arc.end, hi) - Math.max(arc.start, lo);
      if (overlap > 0) covered.set(arc.backend, (covered.get(arc.backend) ?? 0) + overlap);
      if (arc.end > hi) break;
      k++;
    }
    let best = -1;
    let most = -1;
    for (const [backend, length] of covered) {
      if (length > most || (length === most && backend < best)) {
        best = backend;
        most = length;
      }
    }
    const last = result[result.length - 1];
    if (last && last.backend === best) result[result.length - 1] = { start: last.start, end: hi, backend: best };
    else result.push({ start: lo, end: hi, backend: best });
  }
  return result;
}

/** The arcs to draw: exact when there are at most `maxArcs` runs, else `maxArcs` bins. */
export function ringArcs(ring: Ring, eligible: ArrayLike<number>, maxArcs: number): RingArcs {
  const exact = servedArcs(ring, eligible);
  if (exact.length <= maxArcs) return { exact: true, arcs: exact };
  return { exact: false, arcs: downsampleArcs(exact, maxArcs) };
}
