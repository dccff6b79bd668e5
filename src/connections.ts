// The connection registry: the one owner of every client connection, from accept to close.
// A connection is first being set up (PROXY header, admission, backend connect: a Setup), then
// a spliced pair (a Pair). The registry keeps the counts the limits need (all connections, and
// per client address when a per-address limit is on) and the per-backend counts, and answers
// the daemon's queries; nothing else keeps sockets.

import type { Socket } from 'node:net';
import type { Upstream } from './fleet.js';
import type { CloseCause } from './metrics.js';
import { Splice } from './splice.js';

/** Per-address count key (admission.ts perIpKey); null while not counted. */
export type IpKey = number | string | null;

/** A client accepted and not yet spliced. */
export class Setup {
  /** The client's address (from the PROXY header on a proxied listener), once known. */
  address = '';
  /** Ring position of the client's key. */
  hash = 0;
  ipKey: IpKey = null;
  /** Backends this client failed on, in failover order. */
  tried: Upstream[] | null = null;
  /** The home that bounded loads passed over for the backend being tried (a spill). */
  spilledFrom: Upstream | null = null;
  /** The client's port: the one a PROXY header named, else the socket's (read only when needed). */
  proxiedPort: number | null = null;

  constructor(readonly client: Socket) {}
}

/** A spliced pair is its own record, so an open connection costs no extra object. */
export class Pair extends Splice {
  constructor(
    setup: Setup,
    backend: Socket,
    idleMs: number,
    onEnd: (pair: Pair, cause: CloseCause) => void,
    readonly upstream: Upstream,
  ) {
    super(setup.client, backend, idleMs, onEnd as (splice: Splice, cause: CloseCause) => void);
    this.address = setup.address;
    this.hash = setup.hash;
    this.ipKey = setup.ipKey;
  }

  readonly address: string;
  readonly hash: number;
  ipKey: IpKey;
  /** For the connection log (log.connections), set only while it is on. */
  logged: LoggedStart | null = null;
}

/** What the connection log needs of a connection's start: who, where, and when. */
export interface LoggedStart {
  /** The client (PROXY-decoded where there was a header) as host:port. */
  readonly client: string;
  /** The ringlb address it reached. */
  readonly listen: string;
  readonly at: number;
}

export class ConnectionRegistry {
  private readonly setups = new Set<Setup>();
  private readonly open = new Set<Pair>();
  /** Connections by per-address key; kept only while `countingByIp`. */
  private readonly byIp = new Map<number | string, number>();
  private countingByIp = false;

  /** Client connections held now: being set up and spliced. */
  get size(): number {
    return this.setups.size + this.open.size;
  }

  /** Connections from the address with per-address key `key`. */
  fromIp(key: number | string): number {
    return this.byIp.get(key) ?? 0;
  }

  /** Whether per-address counts are kept (a per-address limit is on). */
  get countsByIp(): boolean {
    return this.countingByIp;
  }

  /**
   * Keep per-address counts or stop. Turned on (a reload set a per-address limit), the counts
   * are rebuilt from the connections open now, keyed by `keyOf(address)`.
   */
  countByIp(on: boolean, keyOf: (address: string) => number | string | null): void {
    if (on === this.countingByIp) return;
    this.countingByIp = on;
    this.byIp.clear();
    for (const c of [...this.setups, ...this.open]) {
      c.ipKey = on && c.address !== '' ? keyOf(c.address) : null;
      this.count(c.ipKey, 1);
    }
  }

  accepted(client: Socket): Setup {
    const setup = new Setup(client);
    this.setups.add(setup);
    return setup;
  }

  /** `setup` passed admission from the address with key `key` (null when not counted). */
  admitted(setup: Setup, key: IpKey): void {
    setup.ipKey = key;
    this.count(key, 1);
  }

  /** A setup that ends without a pair (refused, no backend, the client left). */
  released(setup: Setup): void {
    if (!this.setups.delete(setup)) return;
    this.count(setup.ipKey, -1);
  }

  /** `setup` became `pair`. */
  spliced(setup: Setup, pair: Pair): void {
    this.setups.delete(setup);
    this.open.add(pair);
    pair.upstream.active++;
  }

  /** `pair` ended. */
  ended(pair: Pair): void {
    this.open.delete(pair);
    pair.upstream.active--;
    this.count(pair.ipKey, -1);
  }

  /** The spliced pairs open now (a copy). */
  pairs(): Pair[] {
    return [...this.open];
  }

  /** Iterate the pairs without copying (callers must not close pairs while iterating). */
  forEachPair(fn: (pair: Pair) => void): void {
    for (const p of this.open) fn(p);
  }

  /** Close the pairs of `upstream` now, for `cause`; returns how many. */
  closeUpstream(upstream: Upstream, cause: CloseCause): number {
    const closing = [...this.open].filter((p) => p.upstream === upstream);
    for (const p of closing) p.destroy(cause);
    return closing.length;
  }

  /** Close everything now: clients being set up, and pairs (for `cause`). */
  closeAll(cause: CloseCause): void {
    for (const s of this.setups) s.client.destroy();
    for (const p of [...this.open]) p.destroy(cause);
  }

  private count(key: IpKey, delta: number): void {
    if (key === null || !this.countingByIp) return;
    const n = (this.byIp.get(key) ?? 0) + delta;
    if (n > 0) this.byIp.set(key, n);
    else this.byIp.delete(key);
  }
}
