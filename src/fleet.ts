// The fleet: per-backend runtime state (health, open connections) kept by backend id, and the
// routing table built from the config in force. The table is one immutable snapshot, swapped
// whole whenever the config or any backend's health changes; the proxy reads it once per
// connection, so a connection never sees half of a change.

import type { Logger } from 'pino';
import type { BackendConfig, Config } from './config.js';
import { configHash } from './config.js';
import { HealthChecker } from './health.js';
import type { Metrics } from './metrics.js';
import { buildRing, shares, type Ring } from './ring.js';
import { eligibility, type Eligibility } from './routing.js';

/** One backend as the data path sees it. */
export interface Upstream {
  /** Replaced in place by a reload that keeps the backend, so open connections see one object. */
  config: BackendConfig;
  up: boolean;
  /** Client connections open now. */
  active: number;
  readonly checker: HealthChecker | null;
}

export interface RoutingTable {
  readonly config: Config;
  readonly hash: string;
  readonly ring: Ring;
  /** Indexed like ring.ids. */
  readonly upstreams: readonly Upstream[];
  readonly eligible: Eligibility;
  /** Exact share of the hash space each upstream serves now (given health and drain). */
  readonly shares: Float64Array;
}

/** The state of a backend for /ring and `check`. */
export function backendState(up: Upstream): 'up' | 'down' | 'draining' {
  if (up.config.drain) return 'draining';
  return up.up ? 'up' : 'down';
}

export class Fleet {
  table!: RoutingTable;
  private readonly upstreams = new Map<string, Upstream>();

  constructor(
    config: Config,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
  ) {
    this.apply(config);
  }

  /**
   * Put `config` in force: build the new ring, keep the state of backends whose id and address
   * are unchanged, start checks for new ones and stop those of removed ones, then swap the table.
   */
  apply(config: Config): void {
    const next = new Map<string, Upstream>();
    for (const b of config.backends) {
      const old = this.upstreams.get(b.id);
      const sameAddress = old && old.config.host === b.host && old.config.port === b.port;
      if (old && sameAddress && sameChecks(this.table.config, config)) {
        old.config = b;
        next.set(b.id, old);
        continue;
      }
      old?.checker?.stop();
      next.set(b.id, this.createUpstream(b, config));
    }
    for (const [id, old] of this.upstreams) {
      if (next.has(id)) continue;
      old.checker?.stop();
      this.metrics.backendUp.remove(id);
      this.metrics.ringShare.remove(id);
    }
    this.upstreams.clear();
    for (const [id, u] of next) this.upstreams.set(id, u);
    const ring = buildRing(config.backends, config.hashing.vnodes);
    const hash = configHash(config);
    this.metrics.configInfo.reset();
    this.metrics.configInfo.set({ hash }, 1);
    this.publish(config, hash, ring);
    for (const u of this.upstreams.values()) u.checker?.start();
  }

  /** Stop every health check (shutdown). */
  stop(): void {
    for (const u of this.upstreams.values()) u.checker?.stop();
  }

  private createUpstream(b: BackendConfig, config: Config): Upstream {
    const upstream: Upstream = { config: b, up: true, active: 0, checker: null };
    const hc = config.healthCheck;
    if (hc.type === 'tcp') {
      (upstream as { checker: HealthChecker }).checker = new HealthChecker(b.host, b.port, hc, (up, reason) => {
        upstream.up = up;
        const fields = { backend: b.id, address: `${b.host}:${b.port}` };
        if (up) this.logger.info(fields, 'backend up');
        else this.logger.warn({ ...fields, reason }, 'backend down');
        // Only the current table's upstream objects matter; a stale one is already replaced.
        if (this.upstreams.get(b.id) === upstream) this.publish(this.table.config, this.table.hash, this.table.ring);
      });
    }
    return upstream;
  }

  /** Build and swap the routing table for the current upstream states; update the gauges. */
  private publish(config: Config, hash: string, ring: Ring): void {
    const upstreams = ring.ids.map((id) => this.upstreams.get(id)!);
    const eligible = eligibility(ring, (i) => upstreams[i]!.up && !upstreams[i]!.config.drain);
    const share = shares(ring, eligible.flags);
    this.table = Object.freeze({ config, hash, ring, upstreams, eligible, shares: share });
    upstreams.forEach((u, i) => {
      this.metrics.backendUp.set({ backend: u.config.id }, u.up ? 1 : 0);
      this.metrics.ringShare.set({ backend: u.config.id }, share[i]!);
    });
  }
}

function sameChecks(a: Config, b: Config): boolean {
  return JSON.stringify(a.healthCheck) === JSON.stringify(b.healthCheck);
}
