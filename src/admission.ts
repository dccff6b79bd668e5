// Admission: may one more client connection be opened now? Pure: the connection registry
// supplies the counts, the config the limits. A refusal names its reason, which is the
// `reason` label of ringlb_rejected_connections_total.

import { clientKey } from './address.js';

/** Limits in force for this process; 0 = unlimited. */
export interface Limits {
  readonly maxConnections: number;
  readonly maxConnectionsPerIp: number;
}

export type Refusal = 'max_connections' | 'max_connections_per_ip';

/**
 * `open`: client connections this process holds now (being set up or spliced), not counting
 * the one asking; `fromSameIp`: those of them from the asking client's address (perIpKey).
 */
export function admit(limits: Limits, open: number, fromSameIp: number): Refusal | null {
  if (limits.maxConnections > 0 && open >= limits.maxConnections) return 'max_connections';
  if (limits.maxConnectionsPerIp > 0 && fromSameIp >= limits.maxConnectionsPerIp) return 'max_connections_per_ip';
  return null;
}

/**
 * What a per-address limit counts by: an IPv4 address (IPv4-mapped IPv6 folded) as a number,
 * an IPv6 address's /64 as 16 hex digits. One IPv6 host usually owns a whole /64, so counting
 * full IPv6 addresses would let it open as many connections as it likes.
 */
export function perIpKey(ip: Uint8Array): number | string {
  const key = clientKey(ip, 32, 64);
  if (key.length === 4) return ((key[0]! << 24) | (key[1]! << 16) | (key[2]! << 8) | key[3]!) >>> 0;
  let hex = '';
  for (let i = 0; i < 8; i++) hex += key[i]!.toString(16).padStart(2, '0');
  return hex;
}

/**
 * A daemon-wide connection limit as each of `processes` workers enforces it: an even share,
 * rounded up (the kernel spreads accepted connections evenly over the workers).
 */
export function shareOfLimit(limit: number, processes: number): number {
  return limit === 0 ? 0 : Math.ceil(limit / processes);
}
