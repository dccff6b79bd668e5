// The consistent-hash ring: an immutable table built from backend ids and weights. Pure.
//
// Construction (ketama-style, as nginx and libketama do it): a backend of weight w gets
// `vnodes * w` points; point i sits at pointHash(id, i) on the 32-bit circle. Points are sorted
// by position, and equal positions by id, so the ring does not depend on the order backends
// are listed in. A key at position h belongs to the first point at or after h, wrapping past
// 2^32 - 1 to the first point. Membership changes build a new Ring; nothing mutates one.

import { pointHashes } from './hash.js';

export interface RingMember {
  readonly id: string;
  readonly weight: number;
}

export interface Ring {
  /** Backend ids in ascending (byte) order; a backend's index everywhere below is its index here. */
  readonly ids: readonly string[];
  readonly weights: readonly number[];
  /** Point positions, ascending. */
  readonly positions: Uint32Array;
  /** Backend index of each point. */
  readonly owners: Uint32Array;
  /**
   * Lookup index over 2^bits buckets of the hash space (bucket b: positions whose top `bits` bits
   * are b): index[b] is the first point in bucket b or after it, index[2^bits] the point count.
   * A lookup then searches only its bucket's few points. buildRing adds it; a ring without one
   * (written by hand) is searched whole.
   */
  readonly index?: Uint32Array;
}

export const HASH_SPACE = 2 ** 32;
/** Far beyond any fleet; config validation refuses more with a message that names the field. */
export const MAX_RING_MEMBERS = 2 ** 20;

/** Build the ring. Preconditions: ids unique, weights integers >= 0, vnodes >= 1. */
export function buildRing(members: readonly RingMember[], vnodes: number): Ring {
  if (members.length > MAX_RING_MEMBERS) throw new RangeError(`at most ${MAX_RING_MEMBERS} backends`);
  const sorted = [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  let total = 0;
  for (const m of sorted) total += vnodes * m.weight;
  // Points are laid out in owner order, which is id order, so a stable sort by position leaves
  // equal positions ordered by id.
  const unsorted = new Uint32Array(total);
  const unsortedOwners = new Uint32Array(total);
  let n = 0;
  for (let owner = 0; owner < sorted.length; owner++) {
    const { id, weight } = sorted[owner]!;
    const count = vnodes * weight;
    unsorted.set(pointHashes(id, count), n);
    unsortedOwners.fill(owner, n, n + count);
    n += count;
  }
  const positions = new Uint32Array(total);
  const owners = new Uint32Array(total);
  const index = sortByPosition(unsorted, unsortedOwners, positions, owners);
  return Object.freeze({
    ids: Object.freeze(sorted.map((m) => m.id)),
    weights: Object.freeze(sorted.map((m) => m.weight)),
    positions,
    owners,
    index,
  });
}

/**
 * Stable sort of the points by position into `positions`/`owners`; returns the lookup index.
 * Positions are hashes, so uniform: one counting pass distributes them into n/4 to n/2 buckets
 * by their top bits, and an insertion sort orders each bucket's few points. Linear, unlike the
 * comparison sort of packed float64 keys this replaced, and the bucket starts are the index.
 */
function sortByPosition(
  unsorted: Uint32Array,
  unsortedOwners: Uint32Array,
  positions: Uint32Array,
  owners: Uint32Array,
): Uint32Array {
  const n = unsorted.length;
  const bits = Math.max(1, 32 - Math.clz32(n) - 2);
  const shift = 32 - bits;
  const buckets = 2 ** bits;
  const index = new Uint32Array(buckets + 1);
  for (let i = 0; i < n; i++) index[(unsorted[i]! >>> shift) + 1]!++;
  for (let b = 1; b <= buckets; b++) index[b]! += index[b - 1]!;
  const next = index.slice(0, buckets);
  for (let i = 0; i < n; i++) {
    const p = unsorted[i]!;
    const at = next[p >>> shift]!++;
    positions[at] = p;
    owners[at] = unsortedOwners[i]!;
  }
  for (let b = 0; b < buckets; b++) {
    const start = index[b]!;
    const end = index[b + 1]!;
    for (let i = start + 1; i < end; i++) {
      const p = positions[i]!;
      const owner = owners[i]!;
      let j = i - 1;
      // Only strictly greater positions move up: equal ones keep their (id) order.
      for (; j >= start && positions[j]! > p; j--) {
        positions[j + 1] = positions[j]!;
        owners[j + 1] = owners[j]!;
      }
      positions[j + 1] = p;
      owners[j + 1] = owner;
    }
  }
  return index;
}

/** Index of the first point at or after `hash`, wrapping to 0; -1 for an empty ring. */
export function findPoint(ring: Ring, hash: number): number {
  const { positions, index } = ring;
  const n = positions.length;
  if (n === 0) return -1;
  let lo = 0;
  let hi = n;
  if (index !== undefined) {
    // index has 2^bits + 1 entries. Every point before index[b] is below hash's bucket b, and
    // so below hash; the point at index[b + 1], if any, is above it.
    const b = hash >>> (Math.clz32(index.length - 1) + 1);
    lo = index[b]!;
    hi = index[b + 1]!;
  }
  // find first point >= hash
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (positions[mid]! < hash) lo = mid + 1;
    else hi = mid;
  }
  return lo === n ? 0 : lo;
}

/** Length of the arc that point `i` owns: (previous point, point i]. */
function arcLength(positions: Uint32Array, i: number): number {
  return i === 0
    ? positions[0]! + HASH_SPACE - positions[positions.length - 1]!
    : positions[i]! - positions[i - 1]!;
}

/**
 * The backend that serves each point's arc when only backends with `eligible[b] !== 0` may
 * serve: the point's own owner if eligible, else the next eligible owner clockwise; -1 when no
 * backend is eligible. This is the routing rule applied to the whole ring at once.
 */
export function servingOwners(ring: Ring, eligible: ArrayLike<number>): Int32Array {
  const { owners } = ring;
  const n = owners.length;
  const serving = new Int32Array(n).fill(-1);
  // Walk counter-clockwise twice so every point sees the nearest eligible point after it,
  // including across the wrap.
  let next = -1;
  for (let step = 2 * n - 1; step >= 0; step--) {
    const i = step % n;
    if (eligible[owners[i]!]) next = owners[i]!;
    serving[i] = next;
  }
  return serving;
}

/** Exact fraction (0-1) of the hash space each backend serves, indexed like `ring.ids`. */
export function shares(ring: Ring, eligible: ArrayLike<number>): Float64Array {
  const result = new Float64Array(ring.ids.length);
  const serving = servingOwners(ring, eligible);
  for (let i = 0; i < serving.length; i++) {
    const b = serving[i]!;
    if (b >= 0) result[b]! += arcLength(ring.positions, i);
  }
  for (let b = 0; b < result.length; b++) result[b]! /= HASH_SPACE;
  return result;
}

/** What changes between two rings: the moved fraction, and from and to whom, by backend id. */
export interface RingChange {
  /** Fraction (0-1) of the hash space whose serving backend differs. */
  readonly moved: number;
  /** Fraction of the hash space each backend loses (by id). */
  readonly movedFrom: ReadonlyMap<string, number>;
  /** Fraction of the hash space each backend gains (by id). */
  readonly movedTo: ReadonlyMap<string, number>;
}

/**
 * Compare two rings exactly, arc by arc, over the whole hash space: merge both point lists
 * and compare the serving backend of every stretch between consecutive boundaries.
 */
export function compareRings(
  before: Ring,
  eligibleBefore: ArrayLike<number>,
  after: Ring,
  eligibleAfter: ArrayLike<number>,
): RingChange {
  const servingA = servingOwners(before, eligibleBefore);
  const servingB = servingOwners(after, eligibleAfter);
  const pa = before.positions;
  const pb = after.positions;
  const movedFrom = new Map<string, number>();
  const movedTo = new Map<string, number>();
  let moved = 0;
  const owner = (ring: Ring, serving: Int32Array, i: number): string | null => {
    if (serving.length === 0) return null;
    const b = serving[i === serving.length ? 0 : i]!;
    return b < 0 ? null : ring.ids[b]!;
  };
  const add = (map: Map<string, number>, id: string | null, amount: number): void => {
    if (id !== null) map.set(id, (map.get(id) ?? 0) + amount);
  };
  // Stretch (start, end]: every hash in it maps to point ia of `before` and ib of `after`.
  let ia = 0;
  let ib = 0;
  let start = -1; // exclusive; -1 so that hash 0 is included in the first stretch
  while (start < HASH_SPACE - 1) {
    const endA = ia < pa.length ? pa[ia]! : HASH_SPACE - 1;
    const endB = ib < pb.length ? pb[ib]! : HASH_SPACE - 1;
    const end = Math.min(endA, endB);
    const length = end - start;
    if (length > 0) {
      const from = owner(before, servingA, ia);
      const to = owner(after, servingB, ib);
      if (from !== to) {
        moved += length;
        add(movedFrom, from, length);
        add(movedTo, to, length);
      }
    }
    start = end;
    // Equal positions can repeat: advance past every point at this boundary.
    while (ia < pa.length && pa[ia]! <= end) ia++;
    while (ib < pb.length && pb[ib]! <= end) ib++;
  }
  const scale = (m: Map<string, number>): Map<string, number> =>
    new Map([...m].map(([id, v]) => [id, v / HASH_SPACE]));
  return { moved: moved / HASH_SPACE, movedFrom: scale(movedFrom), movedTo: scale(movedTo) };
}
