// The routing decision, as one pure function of the ring, the key and which backends may serve.
// The daemon recomputes an Eligibility when health or drain state changes; later policies such
// as bounded loads narrow it before the walk rather than living inside the ring.

import { clientKey } from './address.js';
import { keyHash } from './hash.js';
import { findPoint, type Ring } from './ring.js';

/** Ring position of a client address (bytes from parseIp): normalised, masked, hashed. */
export function clientHash(ip: Uint8Array, hashing: { ipv4Prefix: number; ipv6Prefix: number }): number {
  return keyHash(clientKey(ip, hashing.ipv4Prefix, hashing.ipv6Prefix));
}

/** Which backends (by ring index) may take new connections, and how many may. */
export interface Eligibility {
  readonly flags: Uint8Array;
  readonly count: number;
}

/**
 * Eligibility for `ring`: a backend may serve when it has weight > 0 (so it has points to be
 * found by the walk) and `mayServe(index)` says so (the daemon: up and not draining).
 */
export function eligibility(ring: Ring, mayServe: (index: number) => boolean): Eligibility {
  const flags = new Uint8Array(ring.ids.length);
  let count = 0;
  for (let b = 0; b < flags.length; b++) {
    if (ring.weights[b]! > 0 && mayServe(b)) {
      flags[b] = 1;
      count++;
    }
  }
  return { flags, count };
}

/**
 * The backend for a key at ring position `hash`: walk clockwise from the first point at or after
 * `hash` and return the first eligible backend not in `tried` (those this connection already
 * failed on, in failover order). Returns -1 when there is none.
 *
 * Bounded: it returns at once when no candidate is left, and otherwise visits each point at most
 * once; a candidate has weight > 0 and so at least one point, so the walk finds it.
 */
export function pickBackend(
  ring: Ring,
  hash: number,
  allowed: Eligibility,
  tried: readonly number[] = [],
): number {
  const { flags } = allowed;
  let left = allowed.count;
  tried.forEach((b, i) => {
    if (flags[b] && tried.indexOf(b) === i) left--; // each distinct backend once
  });
  if (left <= 0) return -1;
  const { owners } = ring;
  const n = owners.length;
  for (let step = 0, i = findPoint(ring, hash); step < n; step++, i = i + 1 === n ? 0 : i + 1) {
    const b = owners[i]!;
    if (flags[b] && (tried.length === 0 || !tried.includes(b))) return b;
  }
  return -1; // not reached while `allowed` was made for this ring; the walk stays bounded anyway
}
