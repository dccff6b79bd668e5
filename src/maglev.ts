// Maglev hashing: an immutable lookup table of a prime number M of entries, each naming a
// backend. Pure.
//
// Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load Balancer" (NSDI 2016),
// §3.4 and Pseudocode 1: backend i has a permutation of the entries, offset + j * skip (mod M);
// backends take turns claiming the next entry of their permutation that is still empty, until
// the table is full. Every backend's permutation visits every entry (M prime, skip in
// [1, M-1]), so a turn always claims one. Weights: interleaved weighted turns (as Envoy's
// maglev does it) rather than w consecutive turns per round, which would let a few heavy
// backends listed first fill a table whose total weight exceeds M. A key hash h is served by
// entry h mod M. Spec, bit for bit: docs/algorithm.md §11.

import type { Balancer, BalancerChange } from './balancer.js';
import { murmur3 } from './hash.js';
import type { RingMember } from './ring.js';
import { OwnerWalk } from './walk.js';

export const DEFAULT_TABLE_SIZE = 65537;
/** Seeds of murmur3(utf8(id)) for a backend's permutation. */
export const OFFSET_SEED = 1;
export const SKIP_SEED = 2;

const encoder = new TextEncoder();
const HASH_SPACE = 2 ** 32;

export interface Maglev extends Balancer {
  readonly algorithm: 'maglev';
  readonly weights: Uint32Array;
  /** The lookup table: backend index of each entry; -1 only when no backend has weight > 0. */
  readonly entries: Int32Array;
}

/** Build the table. Preconditions: ids unique, weights integers 0-10,000, tableSize a prime. */
export function buildMaglev(members: readonly RingMember[], tableSize = DEFAULT_TABLE_SIZE): Maglev {
  const { sorted, weights, entries } = prepare(members, tableSize);
  const steps = fill(sorted, weights, entries, tableSize);
  while (!steps.next().done);
  return freeze(sorted, weights, entries);
}

/**
 * The same table, built in slices of `slice` entries with `await yieldFn()` between them (the
 * daemon passes `() => new Promise(setImmediate)`), for tables too large to build in one go
 * without holding up connections: see docs/algorithm.md §11 for the times.
 */
export async function buildMaglevAsync(
  members: readonly RingMember[],
  tableSize: number,
  yieldFn: () => Promise<void>,
  slice = 16_384,
): Promise<Maglev> {
  const { sorted, weights, entries } = prepare(members, tableSize);
  const steps = fill(sorted, weights, entries, slice);
  while (!steps.next().done) await yieldFn();
  return freeze(sorted, weights, entries);
}

function prepare(members: readonly RingMember[], tableSize: number) {
  const ordered = [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return {
    sorted: ordered.map((m) => m.id),
    weights: Uint32Array.from(ordered, (m) => m.weight),
    entries: new Int32Array(tableSize).fill(-1),
  };
}

function freeze(sorted: string[], weights: Uint32Array, entries: Int32Array): Maglev {
  const ids = Object.freeze(sorted);
  const table: Maglev = {
    algorithm: 'maglev',
    ids,
    weights,
    entries,
    candidates: (hash, eligible) => new OwnerWalk(entries, hash % entries.length, eligible, ids.length),
    shares: (eligible) => maglevShares(table, eligible),
  };
  return Object.freeze(table);
}

/**
 * Pseudocode 1 with weighted turns. Backend b (weight w > 0) takes its k-th turn (k = 1, 2, ...)
 * in round t_k = ceil(k * wmax / w); within a round, turns go in id order. So the heaviest
 * backends take one turn every round, as every backend does in the paper's unweighted loop, and
 * after round t backend b has taken floor(t * w / wmax) turns. The turns are drawn from a binary
 * heap keyed by (round, index): O(M log N) whatever the weights. A generator, so that the
 * asynchronous build can stop every `slice` entries; the synchronous one runs it through.
 */
function* fill(ids: readonly string[], weights: Uint32Array, entries: Int32Array, slice: number): Generator<void, void> {
  const size = entries.length;
  const n = ids.length;
  const next = new Int32Array(n); // next slot of b's permutation to try (int32: M < 2^30)
  const skip = new Int32Array(n);
  const turns = new Float64Array(n);
  let wmax = 0;
  for (let b = 0; b < n; b++) wmax = Math.max(wmax, weights[b]!);
  // The heap: parallel arrays of (round of the next turn, backend index).
  const heapRound = new Float64Array(n);
  const heapB = new Int32Array(n);
  let count = 0;
  for (let b = 0; b < n; b++) {
    const w = weights[b]!;
    if (w === 0) continue;
    const bytes = encoder.encode(ids[b]!);
    next[b] = murmur3(bytes, OFFSET_SEED) % size; // the offset: where its permutation starts
    skip[b] = (murmur3(bytes, SKIP_SEED) % (size - 1)) + 1;
    heapRound[count] = turnRound(1, w, wmax);
    heapB[count++] = b;
  }
  if (count === 0) return;
  const siftDown = (i: number, round: number, b: number): void => {
    for (;;) {
      let c = 2 * i + 1;
      if (c >= count) break;
      if (c + 1 < count && (heapRound[c + 1]! < heapRound[c]! || (heapRound[c + 1] === heapRound[c] && heapB[c + 1]! < heapB[c]!))) c++;
      if (heapRound[c]! > round || (heapRound[c] === round && heapB[c]! > b)) break;
      heapRound[i] = heapRound[c]!;
      heapB[i] = heapB[c]!;
      i = c;
    }
    heapRound[i] = round;
    heapB[i] = b;
  };
  for (let i = (count >> 1) - 1; i >= 0; i--) siftDown(i, heapRound[i]!, heapB[i]!);
  for (let filled = 0; filled < size; filled++) {
    if (filled % slice === slice - 1) yield;
    const b = heapB[0]!;
    // The next entry of b's permutation (offset + j * skip mod M) that is still empty.
    let slot = next[b]!;
    while (entries[slot] !== -1) {
      slot += skip[b]!;
      if (slot >= size) slot -= size;
    }
    entries[slot] = b;
    slot += skip[b]!;
    next[b] = slot >= size ? slot - size : slot;
    siftDown(0, turnRound(++turns[b]! + 1, weights[b]!, wmax), b);
  }
}

/** ceil(k * wmax / w) in exact integer arithmetic (k * wmax < 2^53). */
const turnRound = (k: number, w: number, wmax: number): number => Math.floor((k * wmax + w - 1) / w);

/** Hashes h in [0, 2^32) with h mod M = entry: entries below 2^32 mod M get one more. */
function entryCounts(size: number): [low: number, high: number, split: number] {
  const q = Math.floor(HASH_SPACE / size);
  return [q + 1, q, HASH_SPACE - q * size];
}

/**
 * The backend that serves each entry when only eligible backends may: the entry's own backend
 * if eligible, else the next eligible one after it (wrapping) — the walk `candidates` does.
 */
export function servingEntries(table: Maglev, eligible: ArrayLike<number>): Int32Array {
  const { entries } = table;
  const n = entries.length;
  const serving = new Int32Array(n).fill(-1);
  let next = -1;
  for (let step = 2 * n - 1; step >= 0; step--) {
    const i = step % n;
    const b = entries[i]!;
    if (b >= 0 && eligible[b]) next = b;
    serving[i] = next;
  }
  return serving;
}

/** Exact fraction (0-1) of the 2^32 key hashes each backend serves, indexed like `ids`. */
function maglevShares(table: Maglev, eligible: ArrayLike<number>): Float64Array {
  const result = new Float64Array(table.ids.length);
  const serving = servingEntries(table, eligible);
  const [low, high, split] = entryCounts(serving.length);
  for (let i = 0; i < serving.length; i++) {
    const b = serving[i]!;
    if (b >= 0) result[b]! += i < split ? low : high;
  }
  for (let b = 0; b < result.length; b++) result[b]! /= HASH_SPACE;
  return result;
}

/**
 * The exact change between two tables of the same size, entry by entry over the 2^32 key
 * hashes, by id. Tables of different sizes map a key to unrelated entries: null (the caller
 * estimates; see compareBalancers).
 */
export function compareMaglev(
  before: Maglev,
  eligibleBefore: ArrayLike<number>,
  after: Maglev,
  eligibleAfter: ArrayLike<number>,
): BalancerChange | null {
  if (before.entries.length !== after.entries.length) return null;
  const servingA = servingEntries(before, eligibleBefore);
  const servingB = servingEntries(after, eligibleAfter);
  const [low, high, split] = entryCounts(servingA.length);
  const from = new Float64Array(before.ids.length);
  const to = new Float64Array(after.ids.length);
  let moved = 0;
  for (let i = 0; i < servingA.length; i++) {
    const a = servingA[i]!;
    const b = servingB[i]!;
    const idA = a < 0 ? null : before.ids[a]!;
    const idB = b < 0 ? null : after.ids[b]!;
    if (idA === idB) continue;
    const count = i < split ? low : high;
    moved += count;
    if (a >= 0) from[a]! += count;
    if (b >= 0) to[b]! += count;
  }
  return {
    moved: moved / HASH_SPACE,
    movedFrom: byId(before.ids, from),
    movedTo: byId(after.ids, to),
    basis: 'exact',
  };
}

const byId = (ids: readonly string[], counts: Float64Array): Map<string, number> => {
  const map = new Map<string, number>();
  counts.forEach((c, b) => c > 0 && map.set(ids[b]!, c / HASH_SPACE));
  return map;
};
