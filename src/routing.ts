// The routing decision, as one pure function of the table (ring, rendezvous or Maglev: see
// balancer.ts), the key and which backends may serve. The daemon recomputes an Eligibility
// when health or drain state changes. Bounded loads wrap the walk (a backend at capacity is
// passed over) rather than living inside any table.

import { clientKey } from './address.js';
import { keyHash } from './hash.js';
import type { AnyBalancer } from './balancer.js';
import { findPoint } from './ring.js';

/** Ring position of a client address (bytes from parseIp): normalised, masked, hashed. */
export function clientHash(ip: Uint8Array, hashing: { ipv4Prefix: number; ipv6Prefix: number }): number {
  return keyHash(clientKey(ip, hashing.ipv4Prefix, hashing.ipv6Prefix));
}

/** Which backends (by ring index) may take new connections, how many may, and their total weight. */
export interface Eligibility {
  readonly flags: Uint8Array;
  readonly count: number;
  readonly weight: number;
}

/**
 * Eligibility for `ring`: a backend may serve when it has weight > 0 (so it has points to be
 * found by the walk) and `mayServe(index)` says so (the daemon: up and not draining).
 */
export function eligibility(
  table: { readonly ids: readonly string[]; readonly weights: ArrayLike<number> },
  mayServe: (index: number) => boolean,
): Eligibility {
  const flags = new Uint8Array(table.ids.length);
  let count = 0;
  let weight = 0;
  for (let b = 0; b < flags.length; b++) {
    if (table.weights[b]! > 0 && mayServe(b)) {
      flags[b] = 1;
      count++;
      weight += table.weights[b]!;
    }
  }
  return { flags, count, weight };
}

/**
 * Bounded loads (Mirrokni, Thorup, Zadimoghaddam, arXiv:1608.01350): with `open` connections on
 * the eligible backends and the new one counted, a backend of weight w among eligible backends
 * of total weight W may hold at most ceil(factor x (open + 1) x w / W) connections.
 */
export interface LoadBound {
  readonly factor: number;
  /** Connections open on eligible backends, not counting the one being placed. */
  readonly open: number;
  /** Connections open on backend `b` (by ring index), same rule. */
  load(b: number): number;
}

/** The most connections a backend of `weight` may hold under `bound` (see LoadBound). */
export function capacity(bound: LoadBound, weight: number, totalWeight: number): number {
  return Math.ceil((bound.factor * (bound.open + 1) * weight) / totalWeight);
}

/**
 * The backend for a key at ring position `hash`: walk clockwise from the first point at or after
 * `hash` and return the first eligible backend not in `tried` (those this connection already
 * failed on, in failover order) and, with a `bound`, below its capacity. Returns -1 when there
 * is none.
 *
 * Bounded: it returns at once when no candidate is left, and otherwise visits each point at most
 * once; a candidate has weight > 0 and so at least one point, so the walk finds it. With a bound
 * some eligible backend is always below capacity (the capacities add up to at least
 * factor x (open + 1) > open), so a bound never makes an eligible fleet refuse.
 */
export function pickBackend(
  balancer: AnyBalancer,
  hash: number,
  allowed: Eligibility,
  tried: readonly number[] = [],
  bound: LoadBound | null = null,
): number {
  const { flags } = allowed;
  let left = allowed.count;
  tried.forEach((b, i) => {
    if (flags[b] && tried.indexOf(b) === i) left--; // each distinct backend once
  });
  if (left <= 0) return -1;
  if (balancer.algorithm === 'ring') {
    // The ring's own walk, point by point: no allocation on the per-connection path.
    const { ring } = balancer;
    const { owners } = ring;
    const n = owners.length;
    for (let step = 0, i = findPoint(ring, hash); step < n; step++, i = i + 1 === n ? 0 : i + 1) {
      const b = owners[i]!;
      if (flags[b] && fits(b, tried, bound, balancer.weights, allowed.weight)) return b;
    }
    return -1; // not reached while `allowed` was made for this ring; the walk stays bounded anyway
  }
  const walk = balancer.candidates(hash, flags);
  for (let b = walk.next(); b >= 0; b = walk.next()) if (fits(b, tried, bound, balancer.weights, allowed.weight)) return b;
  return -1;
}

/** Not tried yet, and below its capacity when loads are bounded. */
function fits(b: number, tried: readonly number[], bound: LoadBound | null, weights: ArrayLike<number>, totalWeight: number): boolean {
  if (tried.length > 0 && tried.includes(b)) return false;
  return bound === null || bound.load(b) < capacity(bound, weights[b]!, totalWeight);
}

const NONE: readonly number[] = [];

/**
 * The home of a connection open on backend `on`: the backend the routing decision would pick
 * for its client now (health, drain and, with a bound, capacity), its own connection not
 * counted, as if it arrived again. A connection not on its home is misplaced.
 */
export function homeOf(balancer: AnyBalancer, hash: number, allowed: Eligibility, bound: LoadBound | null, on: number): number {
  if (bound === null) return pickBackend(balancer, hash, allowed);
  const own = allowed.flags[on] ? 1 : 0;
  const without: LoadBound = {
    factor: bound.factor,
    open: bound.open - own,
    load: (b) => bound.load(b) - (b === on ? own : 0),
  };
  return pickBackend(balancer, hash, allowed, NONE, without);
}
