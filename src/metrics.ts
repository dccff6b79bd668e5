// Every metric of the product contract, declared in one place on a registry the caller owns
// (one per daemon, so tests and two daemons in one process never collide).

import { Counter, Gauge, Histogram, collectDefaultMetrics, type Registry } from 'prom-client';

export interface Metrics {
  readonly registry: Registry;
  readonly connectionsTotal: Counter<'backend'>;
  readonly connectionsActive: Gauge<'backend'>;
  readonly connectionErrorsTotal: Counter<'backend' | 'reason'>;
  readonly rejectedConnectionsTotal: Counter<'reason'>;
  readonly closedConnectionsTotal: Counter<'backend' | 'cause'>;
  readonly maxConnections: Gauge;
  readonly spilledConnectionsTotal: Counter<'backend'>;
  readonly misplacedConnections: Gauge<'backend'>;
  readonly bytesTotal: Counter<'backend' | 'direction'>;
  readonly backendUp: Gauge<'backend'>;
  readonly ringShare: Gauge<'backend'>;
  readonly connectDurationSeconds: Histogram<'backend'>;
  readonly configInfo: Gauge<'hash' | 'routing_hash'>;
  readonly configReloadsTotal: Counter<'result'>;
  readonly dnsResolutionsTotal: Counter<'result'>;
  /** Run before every scrape: open connections publish the bytes they moved since last time. */
  beforeScrape: () => void;
  /** Run before every scrape: the misplaced gauge is computed from the connections open now. */
  beforeMisplacedScrape: () => void;
}

export type RejectReason =
  | 'no_backend'
  | 'max_connections'
  | 'max_connections_per_ip'
  | 'untrusted_proxy'
  | 'bad_proxy_header'
  | 'no_file_descriptors';
const REJECT_REASONS: readonly RejectReason[] = [
  'no_backend',
  'max_connections',
  'max_connections_per_ip',
  'untrusted_proxy',
  'bad_proxy_header',
  'no_file_descriptors',
];
/** A failed backend connect; `no_source_port` is ringlb's own (no local port left), not the backend's. */
export type ConnectErrorReason = 'refused' | 'timeout' | 'unreachable' | 'reset' | 'error' | 'no_source_port';
/** Why an established connection ended (SPEC); the first cause wins. */
export type CloseCause =
  | 'client'
  | 'backend'
  | 'client_error'
  | 'backend_error'
  | 'idle_timeout'
  | 'drain_deadline'
  | 'backend_down'
  | 'rehome'
  | 'shutdown';

export function createMetrics(registry: Registry): Metrics {
  const registers = [registry];
  const metrics: Metrics = {
    registry,
    connectionsTotal: new Counter({
      name: 'ringlb_connections_total',
      help: 'Client connections served, by the backend that finally served them.',
      labelNames: ['backend'],
      registers,
    }),
    connectionsActive: new Gauge({
      name: 'ringlb_connections_active',
      help: 'Client connections open now, by backend.',
      labelNames: ['backend'],
      registers,
    }),
    connectionErrorsTotal: new Counter({
      name: 'ringlb_connection_errors_total',
      help: 'Failed backend connection attempts (refused, timeout, unreachable, error; no_source_port when ringlb had no local port) and backend resets of established connections (reset).',
      labelNames: ['backend', 'reason'],
      registers,
    }),
    rejectedConnectionsTotal: new Counter({
      name: 'ringlb_rejected_connections_total',
      help: 'Client connections closed without being served, by reason.',
      labelNames: ['reason'],
      registers,
    }),
    closedConnectionsTotal: new Counter({
      name: 'ringlb_closed_connections_total',
      help: 'Established client connections that ended, by backend and cause (who closed first, an error, or ringlb itself).',
      labelNames: ['backend', 'cause'],
      registers,
    }),
    maxConnections: new Gauge({
      name: 'ringlb_max_connections',
      help: 'The limit of client connections open at once in force (limits.maxConnections, auto resolved); 0 = unlimited.',
      registers,
    }),
    spilledConnectionsTotal: new Counter({
      name: 'ringlb_spilled_connections_total',
      help: 'Connections placed past their home backend because it was at its bounded-load capacity, by that home backend.',
      labelNames: ['backend'],
      registers,
    }),
    misplacedConnections: new Gauge({
      name: 'ringlb_misplaced_connections',
      help: 'Open connections on this backend whose home (where the routing decision would place the client now) is another backend.',
      labelNames: ['backend'],
      registers,
      collect() {
        metrics.beforeMisplacedScrape();
      },
    }),
    bytesTotal: new Counter({
      name: 'ringlb_bytes_total',
      help: 'Bytes proxied, by backend and direction (to_backend, to_client).',
      labelNames: ['backend', 'direction'],
      registers,
      collect() {
        metrics.beforeScrape();
      },
    }),
    backendUp: new Gauge({
      name: 'ringlb_backend_up',
      help: '1 when the backend passes its health checks, else 0.',
      labelNames: ['backend'],
      registers,
    }),
    ringShare: new Gauge({
      name: 'ringlb_ring_share',
      help: 'Exact fraction (0-1) of the hash space the backend serves now, given health and drain.',
      labelNames: ['backend'],
      registers,
    }),
    connectDurationSeconds: new Histogram({
      name: 'ringlb_connect_duration_seconds',
      help: 'Time to establish the backend connection that served a client.',
      labelNames: ['backend'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    configInfo: new Gauge({
      name: 'ringlb_config_info',
      help: 'Always 1; hash is the digest of the config in force, routing_hash that of what routing depends on.',
      labelNames: ['hash', 'routing_hash'],
      registers,
    }),
    configReloadsTotal: new Counter({
      name: 'ringlb_config_reloads_total',
      help: 'Config reloads (SIGHUP or file change), by result (success, failure).',
      labelNames: ['result'],
      registers,
    }),
    dnsResolutionsTotal: new Counter({
      name: 'ringlb_dns_resolutions_total',
      help: 'DNS lookups of backend host names and discovery names (dns, srv), by result (success, failure).',
      labelNames: ['result'],
      registers,
    }),
    beforeScrape: () => {},
    beforeMisplacedScrape: () => {},
  };
  // Series that alerts compute increase() over exist from the start, at 0.
  metrics.configReloadsTotal.inc({ result: 'success' }, 0);
  metrics.configReloadsTotal.inc({ result: 'failure' }, 0);
  metrics.dnsResolutionsTotal.inc({ result: 'success' }, 0);
  metrics.dnsResolutionsTotal.inc({ result: 'failure' }, 0);
  for (const reason of REJECT_REASONS) metrics.rejectedConnectionsTotal.inc({ reason }, 0);
  collectDefaultMetrics({ register: registry });
  return metrics;
}
