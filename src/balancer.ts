// One small interface over the three hashing algorithms of SPEC `hashing.algorithm` (issue 11):
// the ring (src/ring.ts, through an adapter), rendezvous and Maglev. The routing walk
// (routing.ts pickBackend), failover, drain, health, bounded loads, shares and moves are
// written once against it. Pure.

import { buildMaglev, compareMaglev, DEFAULT_TABLE_SIZE, type Maglev } from './maglev.js';
import { buildRendezvous, compareRendezvous, type Rendezvous } from './rendezvous.js';
import { buildRing, compareRings, findPoint, shares, type Ring, type RingChange, type RingMember } from './ring.js';
import { OwnerWalk } from './walk.js';

export type Algorithm = 'ring' | 'rendezvous' | 'maglev';

/** Backend indexes one at a time; -1 when there is none left (and on every call after). */
export interface Candidates {
  next(): number;
}

export interface Balancer {
  readonly algorithm: Algorithm;
  /** Backend ids in ascending (byte) order; a backend's index everywhere is its index here. */
  readonly ids: readonly string[];
  readonly weights: ArrayLike<number>;
  /**
   * The backends with weight > 0 and `eligible[b] !== 0` in preference order for key hash
   * `hash` (clientHash of src/routing.ts), each once, lazily; bounded. The first candidate
   * costs O(1) on Maglev, O(N) on rendezvous, a binary search on the ring.
   */
  candidates(hash: number, eligible: ArrayLike<number>): Candidates;
  /** Fraction (0-1) of the key space each backend serves given eligibility, indexed like ids. */
  shares(eligible: ArrayLike<number>): Float64Array;
}

/** What changes between two tables, by backend id (fractions 0-1 of the key space). */
export interface BalancerChange extends RingChange {
  /**
   * `exact`: counted over the 2^32 key hashes (ring; Maglev of one table size). `expected`:
   * the exact expectation over keys (rendezvous), or, between unrelated tables (another
   * algorithm, another Maglev size), the expectation if the two choices were independent.
   */
  readonly basis: 'exact' | 'expected';
}

export interface RingBalancer extends Balancer {
  readonly algorithm: 'ring';
  readonly ring: Ring;
}

export type AnyBalancer = RingBalancer | Rendezvous | Maglev;

/** The existing ring behind the common interface: its walk is pickBackend's, point by point. */
export function ringBalancer(ring: Ring): RingBalancer {
  const members = ring.ids.length;
  return Object.freeze({
    algorithm: 'ring',
    ring,
    ids: ring.ids,
    weights: ring.weights,
    candidates: (hash: number, eligible: ArrayLike<number>) =>
      new OwnerWalk(ring.owners, Math.max(0, findPoint(ring, hash)), eligible, members),
    shares: (eligible: ArrayLike<number>) => shares(ring, eligible),
  });
}

/** The `hashing` settings the three builders read. */
export interface HashingChoice {
  readonly algorithm: Algorithm;
  readonly vnodes: number;
  readonly tableSize?: number;
}

export function buildBalancer(members: readonly RingMember[], hashing: HashingChoice): AnyBalancer {
  switch (hashing.algorithm) {
    case 'ring':
      return ringBalancer(buildRing(members, hashing.vnodes));
    case 'rendezvous':
      return buildRendezvous(members);
    case 'maglev':
      return buildMaglev(members, hashing.tableSize ?? DEFAULT_TABLE_SIZE);
  }
}

/**
 * What moves between two tables with their eligibility: exact where the algorithm allows it,
 * else the expectation (see BalancerChange.basis).
 */
export function compareBalancers(
  before: AnyBalancer,
  eligibleBefore: ArrayLike<number>,
  after: AnyBalancer,
  eligibleAfter: ArrayLike<number>,
): BalancerChange {
  if (before.algorithm === 'ring' && after.algorithm === 'ring') {
    return { ...compareRings(before.ring, eligibleBefore, after.ring, eligibleAfter), basis: 'exact' };
  }
  if (before.algorithm === 'rendezvous' && after.algorithm === 'rendezvous') {
    return compareRendezvous(before, eligibleBefore, after, eligibleAfter);
  }
  if (before.algorithm === 'maglev' && after.algorithm === 'maglev') {
    const exact = compareMaglev(before, eligibleBefore, after, eligibleAfter);
    if (exact !== null) return exact;
  }
  return independentChange(before, eligibleBefore, after, eligibleAfter);
}

/**
 * Two unrelated mappings: a key stays only if both happen to pick the same id, with
 * probability sA(id) * sB(id) if the choices are independent.
 */
function independentChange(
  before: Balancer,
  eligibleBefore: ArrayLike<number>,
  after: Balancer,
  eligibleAfter: ArrayLike<number>,
): BalancerChange {
  const sA = byId(before, before.shares(eligibleBefore));
  const sB = byId(after, after.shares(eligibleAfter));
  const movedFrom = new Map<string, number>();
  const movedTo = new Map<string, number>();
  let stayed = 0;
  for (const [id, a] of sA) {
    const b = sB.get(id) ?? 0;
    stayed += a * b;
    if (a > 0 && a - a * b > 0) movedFrom.set(id, a - a * b);
  }
  for (const [id, b] of sB) {
    const a = sA.get(id) ?? 0;
    if (b > 0 && b - a * b > 0) movedTo.set(id, b - a * b);
  }
  const anyA = movedFrom.size > 0 || stayed > 0;
  const anyB = movedTo.size > 0 || stayed > 0;
  return { moved: anyA || anyB ? 1 - stayed : 0, movedFrom, movedTo, basis: 'expected' };
}

const byId = (balancer: Balancer, values: Float64Array): Map<string, number> =>
  new Map(balancer.ids.map((id, b) => [id, values[b]!]));
