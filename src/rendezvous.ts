// Weighted rendezvous (highest-random-weight) hashing: an immutable table of backend ids,
// weights and per-id seeds. Pure.
//
// Rendezvous hashing: Thaler & Ravishankar, "Using name-based mappings to increase hit rates"
// (IEEE/ACM ToN, 1998). Weights by the logarithmic method of Schindelhauer & Schomaker,
// "Weighted distributed hash tables" (SPAA 2005): backend b scores w_b / -ln(h_b(key)) with
// h_b(key) uniform in (0,1), and the highest score wins. -ln(h) is Exp(1), so the winner is the
// first to finish an exponential race with rates w_b: backend b wins with probability exactly
// w_b / W, and a change of one backend moves only keys to or from that backend.
// Spec, bit for bit: docs/algorithm.md §10.

import type { Balancer, BalancerChange, Candidates } from './balancer.js';
import { fmix, mixH, mixK, murmur3 } from './hash.js';
import type { RingMember } from './ring.js';

const encoder = new TextEncoder();
const TWO_32 = 2 ** 32;
/** Relative margin of the 1 - h bound: float64 rounding of the score is ~1e-16. */
const SKIP_MARGIN = 1 + 1e-9;

export interface Rendezvous extends Balancer {
  readonly algorithm: 'rendezvous';
  readonly weights: Uint32Array;
  /** murmur3(utf8(id), seed 0) of each backend, indexed like ids. */
  readonly seeds: Uint32Array;
}

/** Build the table. Preconditions: ids unique, weights integers >= 0. */
export function buildRendezvous(members: readonly RingMember[]): Rendezvous {
  const sorted = [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const ids = Object.freeze(sorted.map((m) => m.id));
  const weights = Uint32Array.from(sorted, (m) => m.weight);
  const seeds = Uint32Array.from(sorted, (m) => murmur3(encoder.encode(m.id)));
  const table: Rendezvous = {
    algorithm: 'rendezvous',
    ids,
    weights,
    seeds,
    candidates: (hash, eligible) => new RendezvousCandidates(table, keyBlock(hash), eligible),
    shares: (eligible) => rendezvousShares(table, eligible),
  };
  return Object.freeze(table);
}

/**
 * murmur3's mix of the single 4-byte block le32(hash): the same for every backend, so a lookup
 * does it once. `backendHash` finishes the hash with each backend's seed.
 */
export function keyBlock(hash: number): number {
  return mixK(hash);
}

/**
 * murmur3(le32(keyHash), seed) for one backend, from keyBlock(keyHash): the rest of the pinned
 * hash of src/hash.ts for a 4-byte input, from its own steps, without the byte loop (about 2 ns
 * per backend). test/unit/rendezvous.test.ts checks it against murmur3 itself.
 */
export function backendHash(seed: number, block: number): number {
  return fmix(mixH(seed, block) ^ 4);
}

/** The score w / -ln(h) with h = (r + 0.5) / 2^32, strictly inside (0, 1), in float64. */
export function score(weight: number, r: number): number {
  return weight / -Math.log((r + 0.5) / TWO_32);
}

/**
 * Eligible backends by descending score; equal scores by ascending id (index). The first
 * next() is one pass without allocation, and mostly without logarithms: since
 * -ln(h) > 1 - h, a backend with (1 - h) * best > w (with a margin far beyond float64
 * rounding) scores below the best so far and is skipped on that bound; the bound is tight just
 * where a backend could win (h near 1), so only about ln N logarithms are taken per lookup.
 * Later calls keep all the scores and select the best one below the previous candidate: O(N)
 * each, no sort, no set.
 */
class RendezvousCandidates implements Candidates {
  private last = -1;
  private scores: Float64Array | null = null;

  constructor(
    private readonly table: Rendezvous,
    private readonly block: number,
    private readonly eligible: ArrayLike<number>,
  ) {}

  next(): number {
    if (this.last === -2) return -1;
    const b = this.last === -1 ? this.first() : this.below(this.last);
    this.last = b < 0 ? -2 : b;
    return b;
  }

  private first(): number {
    const { weights, seeds } = this.table;
    const { eligible, block } = this;
    let best = -1;
    let bestScore = 0; // every score is > 0
    for (let b = 0; b < weights.length; b++) {
      const w = weights[b]!;
      if (w === 0 || !eligible[b]) continue;
      const r = backendHash(seeds[b]!, block);
      // Scanning by ascending index, an equal score keeps the earlier (lower) id.
      if ((1 - (r + 0.5) / TWO_32) * bestScore > w * SKIP_MARGIN) continue;
      const s = score(w, r);
      if (s > bestScore) {
        best = b;
        bestScore = s;
      }
    }
    return best;
  }

  /** The best candidate strictly after `previous` in the order (score desc, index asc). */
  private below(previous: number): number {
    const scores = (this.scores ??= this.allScores());
    const ps = scores[previous]!;
    let best = -1;
    let bestScore = -1;
    for (let b = 0; b < scores.length; b++) {
      const s = scores[b]!;
      if (s < 0 || s > ps || (s === ps && b <= previous)) continue; // ineligible, or not after previous
      if (s > bestScore) [best, bestScore] = [b, s];
    }
    return best;
  }

  /** Every backend's score for this key; -1 for those that may not serve. */
  private allScores(): Float64Array {
    const { weights, seeds } = this.table;
    const scores = new Float64Array(weights.length).fill(-1);
    for (let b = 0; b < weights.length; b++) {
      const w = weights[b]!;
      if (w !== 0 && this.eligible[b]) scores[b] = score(w, backendHash(seeds[b]!, this.block));
    }
    return scores;
  }
}

/** Expected share of each backend: w / W over the eligible backends (exact in expectation). */
function rendezvousShares(table: Rendezvous, eligible: ArrayLike<number>): Float64Array {
  const result = new Float64Array(table.ids.length);
  let total = 0;
  for (let b = 0; b < result.length; b++) if (eligible[b]) total += table.weights[b]!;
  if (total === 0) return result;
  for (let b = 0; b < result.length; b++) if (eligible[b]) result[b] = table.weights[b]! / total;
  return result;
}

/**
 * The exact expected change between two tables, by id. A backend's hash of a key depends only
 * on its id and the key, so a backend in both tables draws the same Exp(1) variable X_b in both.
 * It keeps a key when X_b / a_b < X_c / a_c for every c in the old race and X_b / b_b < X_c / b_c
 * in the new one (a, b: its eligible weights before and after, 0 = absent), that is when
 * X_c > X_b * k_c with k_c = max(a_c / a_b, b_c / b_b). Integrating over X_b:
 *   stay_b = 1 / (1 + sum over c != b of k_c).
 * Sorted by rho = a / b, k_c = a_c / a_b for rho_c >= rho_b and b_c / b_b below, so one prefix
 * sum each gives every stay_b in O(N log N). With unchanged weights stay_b = w_b / W(union).
 */
export function compareRendezvous(
  before: Rendezvous,
  eligibleBefore: ArrayLike<number>,
  after: Rendezvous,
  eligibleAfter: ArrayLike<number>,
): BalancerChange {
  const a = new Map<string, number>();
  const b = new Map<string, number>();
  before.ids.forEach((id, i) => eligibleBefore[i] && before.weights[i]! > 0 && a.set(id, before.weights[i]!));
  after.ids.forEach((id, i) => eligibleAfter[i] && after.weights[i]! > 0 && b.set(id, after.weights[i]!));
  const union = [...new Set([...a.keys(), ...b.keys()])].map((id) => {
    const wa = a.get(id) ?? 0;
    const wb = b.get(id) ?? 0;
    return { id, wa, wb, rho: wb === 0 ? Infinity : wa / wb };
  });
  union.sort((x, y) => x.rho - y.rho || (x.id < y.id ? -1 : 1));
  const totalA = sumOf(a.values());
  const totalB = sumOf(b.values());
  // aFrom[i]: sum of wa over union[i..]; bBefore: running sum of wb over union[..i-1].
  const aFrom = new Float64Array(union.length + 1);
  for (let i = union.length - 1; i >= 0; i--) aFrom[i] = aFrom[i + 1]! + union[i]!.wa;
  const movedFrom = new Map<string, number>();
  const movedTo = new Map<string, number>();
  let lostTotal = 0;
  let bBefore = 0;
  union.forEach(({ id, wa, wb }, i) => {
    // 1 / (aFrom/wa + bBefore/wb) as one division of exact integers (weights <= 10,000), so
    // that an unchanged backend's stay is the same float64 as its share and it moves nothing.
    const stay = wa > 0 && wb > 0 ? (wa * wb) / (aFrom[i]! * wb + bBefore * wa) : 0;
    bBefore += wb;
    const lost = wa > 0 ? wa / totalA - stay : 0;
    const gained = wb > 0 ? wb / totalB - stay : 0;
    if (lost > 0) movedFrom.set(id, lost);
    if (gained > 0) movedTo.set(id, gained);
    if (lost > 0) lostTotal += lost;
  });
  // From nobody to somebody moves everything; otherwise what the old backends lost.
  const moved = totalA === 0 ? (totalB === 0 ? 0 : 1) : lostTotal;
  return { moved, movedFrom, movedTo, basis: 'expected' };
}

const sumOf = (values: Iterable<number>): number => {
  let total = 0;
  for (const v of values) total += v;
  return total;
};
