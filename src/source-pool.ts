// Source-address pools: which local address the next backend connection binds to. Each local
// address has its own range of ephemeral ports, so a pool of k addresses holds about k times as
// many connections to one backend as one address does. Pure: the clock is passed in.
//
// Round robin spreads connections evenly. An address found full (bind or connect failed for
// want of a port) is skipped for a while rather than tried by every connection: ports come free
// only as connections close.

import { parseIp } from './address.js';

/** How long an address found full is skipped. */
export const FULL_RETRY_MS = 1000;

export class SourcePool {
  private next = 0;
  /** When each address may be tried again (0 = now). */
  private readonly fullUntil: Float64Array;

  constructor(
    readonly addresses: readonly string[],
    private readonly now: () => number,
  ) {
    this.fullUntil = new Float64Array(addresses.length);
  }

  /** The address for the next connection, round robin over those not found full; null if all are. */
  pick(): string | null {
    const n = this.addresses.length;
    const now = this.now();
    for (let step = 0; step < n; step++) {
      const i = (this.next + step) % n;
      if (this.fullUntil[i]! <= now) {
        this.next = (i + 1) % n;
        return this.addresses[i]!;
      }
    }
    return null;
  }

  /** `address` had no port left: skip it for FULL_RETRY_MS. */
  full(address: string): void {
    const i = this.addresses.indexOf(address);
    if (i >= 0) this.fullUntil[i] = this.now() + FULL_RETRY_MS;
  }
}

/** The addresses of `pool` a backend at `host` can bind from: its family's, when `host` is an IP literal. */
export function addressesFor(host: string, pool: readonly string[]): string[] {
  const ip = parseIp(host);
  if (ip === null) return [...pool]; // a host name: its family is known only once resolved
  const v6 = ip.length === 16;
  return pool.filter((a) => a.includes(':') === v6);
}
