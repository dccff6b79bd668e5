// The fleet: per-backend runtime state (health, open connections) kept by backend id, and the
// routing table built from the config in force. The table is one immutable snapshot, swapped
// whole whenever the config or any backend's health changes; the proxy reads it once per
// connection, so a connection never sees half of a change.

import type { Logger } from 'pino';
import type { BackendConfig, Config } from './config.js';
import { configHash, routingHash } from './config.js';
import { formatHostPort, parseIp } from './address.js';
import { HealthChecker } from './health.js';
import type { Metrics } from './metrics.js';
import { hostHeaderOf } from './probe-ws.js';
import { encodeProxyLocal } from './proxy-protocol.js';
import { buildBalancer, type AnyBalancer } from './balancer.js';
import type { Ring } from './ring.js';
import { eligibility, type Eligibility, type LoadBound } from './routing.js';
import { SourcePool, addressesFor } from './source-pool.js';

/** One backend as the data path sees it. */
export interface Upstream {
  /** Replaced in place by a reload that keeps the backend, so open connections see one object. */
  config: BackendConfig;
  up: boolean;
  /** Client connections open now. */
  active: number;
  /** Replaced when the address or the check settings change. */
  checker: HealthChecker | null;
  /** True once a reload removed this backend (until its id is added back). */
  retired: boolean;
  /** Local addresses its connections bind to; null = the kernel chooses. */
  sources: SourcePool | null;
}

export interface RoutingTable {
  readonly config: Config;
  readonly hash: string;
  /** routingHash(config): what routing depends on, and nothing else. */
  readonly routingHash: string;
  /** The table that orders backends for a key: ring, rendezvous or Maglev. */
  readonly balancer: AnyBalancer;
  /** The ring when the algorithm is `ring` (its points, for drawing arcs); else null. */
  readonly ring: Ring | null;
  /** Indexed like ring.ids. */
  readonly upstreams: readonly Upstream[];
  readonly eligible: Eligibility;
  /** Exact share of the hash space each upstream serves now (given health and drain). */
  readonly shares: Float64Array;
}

/** Whether `host` is an address to connect to (not a name still waiting for DNS). */
const isAddress = (host: string): boolean => parseIp(host) !== null;

/** Up, not draining, and at an address: a host name that has not resolved cannot serve. */
const mayServe = (u: Upstream): boolean => u.up && !u.config.drain && isAddress(u.config.host);

/** The state of a backend for /ring and `check`. */
export function backendState(up: Upstream): 'up' | 'down' | 'draining' {
  if (up.config.drain) return 'draining';
  return up.up && isAddress(up.config.host) ? 'up' : 'down';
}

/** What a config change did to the fleet, by backend id. */
export interface FleetChange {
  readonly added: string[];
  readonly removed: Upstream[];
  /** Kept ids whose address, weight or drain changed. */
  readonly changed: string[];
}

/**
 * Where health verdicts come from: this process's own checks (`local`), or another process
 * that runs them and reports through `setHealth` (`remote`: a worker under a primary).
 */
export type HealthSource = 'local' | 'remote';

export class Fleet {
  table!: RoutingTable;
  private readonly upstreams = new Map<string, Upstream>();
  /** Removed backends whose connections are still open: revived if their id comes back. */
  private readonly retired = new Map<string, Upstream>();

  constructor(
    config: Config,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    private readonly health: HealthSource = 'local',
    /** Told of every verdict change of a local check (a primary passes it on to its workers). */
    private readonly onHealth: (id: string, up: boolean) => void = () => {},
    backends: readonly BackendConfig[] = config.backends,
  ) {
    this.apply(config, backends);
  }

  /** The up/down state of every backend in force, by id. */
  healthStates(): Record<string, boolean> {
    const states: Record<string, boolean> = {};
    for (const [id, u] of this.upstreams) states[id] = u.up;
    return states;
  }

  /** Told of every up/down transition of a backend in force, after the table reflects it. */
  onTransition: (upstream: Upstream, up: boolean) => void = () => {};

  /** Take verdicts from elsewhere (remote health); unknown ids are ignored. */
  setHealth(states: Record<string, boolean>): void {
    const changed: Upstream[] = [];
    for (const [id, up] of Object.entries(states)) {
      const u = this.upstreams.get(id);
      if (!u || u.up === up) continue;
      u.up = up;
      changed.push(u);
    }
    if (changed.length === 0) return;
    this.publish(this.table);
    for (const u of changed) this.onTransition(u, u.up);
  }

  /**
   * Put `config` in force with `backends` (the file's, with host names resolved, and those
   * discovered from DNS): build the new ring, keep the state of backends by id (a backend whose
   * address changed starts its health fresh), start checks for new backends and stop those of
   * removed ones, then swap the table. A backend removed and added back while its connections
   * are open is the same backend: it keeps them.
   */
  apply(config: Config, backends: readonly BackendConfig[] = config.backends): FleetChange {
    const previous = this.table?.config;
    const checksChanged = previous !== undefined && JSON.stringify(previous.healthCheck) !== JSON.stringify(config.healthCheck);
    const change: FleetChange = { added: [], removed: [], changed: [] };
    const next = new Map<string, Upstream>();
    for (const b of backends) {
      let u = this.upstreams.get(b.id);
      if (!u) {
        change.added.push(b.id);
        u = this.retired.get(b.id) ?? { config: b, up: true, active: 0, checker: null, retired: false, sources: null };
        this.retired.delete(b.id);
        // Back in the fleet: health starts fresh (up), its checks were stopped at removal.
        u.retired = false;
        u.up = true;
        u.checker = null;
      } else if (u.config.host !== b.host || u.config.port !== b.port || u.config.weight !== b.weight || u.config.drain !== b.drain) {
        change.changed.push(b.id);
      }
      const moved = u.config.host !== b.host || u.config.port !== b.port;
      const speaksChanged = u.config.proxyProtocol !== b.proxyProtocol;
      if (moved || !u.sources || u.config.sourceAddresses.join() !== b.sourceAddresses.join()) u.sources = sourcePool(b);
      u.config = b;
      if (moved || config.healthCheck.type === 'none') u.up = true;
      if (moved || checksChanged || speaksChanged || !u.checker) {
        u.checker?.stop();
        u.checker = this.createChecker(u, config);
      }
      next.set(b.id, u);
    }
    for (const [id, old] of this.upstreams) {
      if (next.has(id)) continue;
      old.checker?.stop();
      if (this.health === 'local') {
        this.metrics.backendUp.remove(id);
        this.metrics.ringShare.remove(id);
      }
      change.removed.push(old);
      old.retired = true;
      this.retired.set(id, old);
    }
    for (const [id, old] of this.retired) {
      if (old.active > 0) continue;
      this.retired.delete(id);
      this.metrics.connectionsActive.remove(id);
    }
    this.upstreams.clear();
    for (const [id, u] of next) this.upstreams.set(id, u);
    const balancer = buildBalancer(backends, config.hashing);
    const hash = configHash(config);
    const routing = routingHash({ ...config, backends });
    if (this.health === 'local') {
      this.metrics.configInfo.reset();
      this.metrics.configInfo.set({ hash, routing_hash: routing }, 1);
    }
    this.publish({ config, hash, routingHash: routing, balancer });
    // New checkers start only now, so their verdicts land on the new table.
    for (const u of this.upstreams.values()) if (u.checker && !u.checker.started) u.checker.start();
    return change;
  }

  /** Stop every health check (shutdown). */
  stop(): void {
    for (const u of this.upstreams.values()) u.checker?.stop();
  }

  private createChecker(upstream: Upstream, config: Config): HealthChecker | null {
    const hc = config.healthCheck;
    const { host, port, proxyProtocol } = upstream.config;
    // A host name not resolved yet has no address to check (nor to serve: see publish).
    if (hc.type === 'none' || this.health === 'remote' || !isAddress(host)) return null;
    const options = {
      intervalMs: hc.intervalMs,
      timeoutMs: hc.timeoutMs,
      rise: hc.rise,
      fall: hc.fall,
      // A backend that expects a PROXY header gets one on its checks too (UNKNOWN / LOCAL).
      preamble: proxyProtocol === 'off' ? null : encodeProxyLocal(proxyProtocol),
      // Host: as configured, else the backend's host name (not the address it resolved to).
      websocket:
        hc.type === 'websocket'
          ? { path: hc.path, hostHeader: hc.hostHeader ?? (upstream.config.hostName === undefined ? null : hostHeaderOf(upstream.config.hostName, port)) }
          : null,
    };
    // A restarted checker continues from the verdict in force (a down backend stays down until it rises).
    const checker = new HealthChecker(host, port, options, upstream.up, (up, reason) => {
      upstream.up = up;
      const fields = { backend: upstream.config.id, address: formatHostPort(host, port) };
      if (up) this.logger.info(fields, 'backend up');
      else this.logger.warn({ ...fields, reason }, 'backend down');
      this.onHealth(upstream.config.id, up);
      // A removed backend's last verdict changes nothing that routes.
      if (this.upstreams.get(upstream.config.id) !== upstream) return;
      this.publish(this.table);
      this.onTransition(upstream, up);
    });
    return checker;
  }
  /** Build and swap the routing table for the current upstream states; update the gauges. */
  private publish({ config, hash, routingHash, balancer }: Pick<RoutingTable, 'config' | 'hash' | 'routingHash' | 'balancer'>): void {
    const upstreams = balancer.ids.map((id) => this.upstreams.get(id)!);
    const eligible = eligibility(balancer, (i) => mayServe(upstreams[i]!));
    const share = balancer.shares(eligible.flags);
    const ring = balancer.algorithm === 'ring' ? balancer.ring : null;
    this.table = Object.freeze({ config, hash, routingHash, balancer, ring, upstreams, eligible, shares: share });
    // Gauges of the fleet's state are published once, by the process that owns the verdicts.
    if (this.health === 'remote') return;
    upstreams.forEach((u, i) => {
      // A host name not resolved yet cannot serve: not up, whatever its last check said.
      this.metrics.backendUp.set({ backend: u.config.id }, u.up && isAddress(u.config.host) ? 1 : 0);
      this.metrics.ringShare.set({ backend: u.config.id }, share[i]!);
    });
  }
}


/** The source-address pool of backend `b`; null when the kernel chooses. */
function sourcePool(b: BackendConfig): SourcePool | null {
  const addresses = addressesFor(b.host, b.sourceAddresses);
  return addresses.length === 0 ? null : new SourcePool(addresses, Date.now);
}

/**
 * The bounded-load state of `table` for placing one more connection (routing.ts LoadBound), or
 * null when bounded loads are off. Counts the open connections of the eligible backends.
 */
export function loadBound(table: RoutingTable): LoadBound | null {
  const factor = table.config.hashing.balanceFactor;
  if (factor === null) return null;
  const { upstreams } = table;
  const { flags } = table.eligible;
  let open = 0;
  for (let b = 0; b < upstreams.length; b++) if (flags[b]) open += upstreams[b]!.active;
  return { factor, open, load: (b) => upstreams[b]!.active };
}
