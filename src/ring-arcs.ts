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

/** Runs in columns: [start[k], end[k]) served by backend[k] (fractions; -1 = nobody). */
interface Runs {
  readonly length: number;
  readonly start: Float64Array;
  readonly end: Float64Array;
  readonly backend: Int32Array;
}

/**
 * The exact runs: point i serves (positions[i-1], positions[i]], point 0 also the stretch past
 * the last point (the wrap), so the list starts at 0 with point 0's run and ends with the wrap.
 * Consecutive runs of one backend are merged; the runs cover [0, 1) without gaps. Typed arrays,
 * no object per point: with 300 backends the ring has ~100,000 points and this runs on the
 * daemon's event loop.
 */
function servedRuns(ring: Ring, eligible: ArrayLike<number>): Runs {
  const { positions } = ring;
  const n = positions.length;
  const start = new Float64Array(n + 1);
  const end = new Float64Array(n + 1);
  const backend = new Int32Array(n + 1);
  if (n === 0) {
    end[0] = 1;
    backend[0] = -1;
    return { length: 1, start, end, backend };
  }
  const serving = servingOwners(ring, eligible);
  let length = 0;
  const add = (from: number, to: number, b: number): void => {
    if (to <= from) return; // equal positions: the later point owns nothing
    if (length > 0 && backend[length - 1] === b) {
      end[length - 1] = to / HASH_SPACE;
      return;
    }
    start[length] = from / HASH_SPACE;
    end[length] = to / HASH_SPACE;
    backend[length] = b;
    length++;
  };
  // Keys are integers; point 0 serves [0, positions[0]] inclusive, i.e. up to positions[0] + 1.
  add(0, positions[0]! + 1, serving[0]!);
  for (let i = 1; i < n; i++) add(positions[i - 1]! + 1, positions[i]! + 1, serving[i]!);
  add(positions[n - 1]! + 1, HASH_SPACE, serving[0]!);
  return { length, start, end, backend };
}

function toArcs(runs: Runs): Arc[] {
  return Array.from({ length: runs.length }, (_, k) => ({ start: runs.start[k]!, end: runs.end[k]!, backend: runs.backend[k]! }));
}

function toRuns(arcs: readonly Arc[]): Runs {
  return {
    length: arcs.length,
    start: Float64Array.from(arcs, (a) => a.start),
    end: Float64Array.from(arcs, (a) => a.end),
    backend: Int32Array.from(arcs, (a) => a.backend),
  };
}

/** See servedRuns. */
export function servedArcs(ring: Ring, eligible: ArrayLike<number>): Arc[] {
  return toArcs(servedRuns(ring, eligible));
}

/**
 * `runs` (covering [0, 1) in order) drawn on `bins` equal bins: each bin goes to the backend
 * that serves most of it (ties to the lower index, nobody = -1 counts as a backend), then
 * adjacent bins of one backend are merged. A backend whose share is well below 1/bins may get
 * no bin: its arcs are too short to see at this resolution anyway.
 */
function binRuns(runs: Runs, bins: number): Arc[] {
  let top = -1;
  for (let k = 0; k < runs.length; k++) top = Math.max(top, runs.backend[k]!);
  // covered[b + 1]: how much of the current bin backend b serves; `touched` lists whom to reset.
  const covered = new Float64Array(top + 2);
  const touched: number[] = [];
  const result: Arc[] = [];
  let k = 0;
  for (let bin = 0; bin < bins; bin++) {
    const lo = bin / bins;
    const hi = (bin + 1) / bins;
    // Two-pointer sweep: runs are in order, so each is visited in the bins it overlaps only.
    while (k < runs.length) {
      const overlap = Math.min(runs.end[k]!, hi) - Math.max(runs.start[k]!, lo);
      if (overlap > 0) {
        const slot = runs.backend[k]! + 1;
        if (covered[slot] === 0) touched.push(slot);
        covered[slot]! += overlap;
      }
      if (runs.end[k]! > hi) break;
      k++;
    }
    let best = -1;
    let most = -1;
    for (const slot of touched) {
      const b = slot - 1;
      if (covered[slot]! > most || (covered[slot] === most && b < best)) {
        best = b;
        most = covered[slot]!;
      }
      covered[slot] = 0;
    }
    touched.length = 0;
    const last = result[result.length - 1];
    if (last && last.backend === best) result[result.length - 1] = { start: last.start, end: hi, backend: best };
    else result.push({ start: lo, end: hi, backend: best });
  }
  return result;
}

/** See binRuns. */
export function downsampleArcs(arcs: readonly Arc[], bins: number): Arc[] {
  return binRuns(toRuns(arcs), bins);
}

/** The arcs to draw: exact when there are at most `maxArcs` runs, else `maxArcs` bins. */
export function ringArcs(ring: Ring, eligible: ArrayLike<number>, maxArcs: number): RingArcs {
  const runs = servedRuns(ring, eligible);
  if (runs.length <= maxArcs) return { exact: true, arcs: toArcs(runs) };
  return { exact: false, arcs: binRuns(runs, maxArcs) };
}
