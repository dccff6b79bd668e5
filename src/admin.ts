// The admin endpoint: GET /metrics (Prometheus text), /healthz, /ring. Bound to 127.0.0.1 by
// default; it reads the routing table in force and never touches the data path.

import http, { type Server } from 'node:http';
import type { Logger } from 'pino';
import { formatHostPort } from './address.js';
import { backendState, type RoutingTable } from './fleet.js';
import { Registry } from 'prom-client';

const PROMETHEUS_TEXT = Registry.PROMETHEUS_CONTENT_TYPE;

/** What the admin endpoint reports; a primary answers for all its workers. */
export interface AdminSource {
  readonly table: () => RoutingTable;
  /** False once shutdown began: /healthz then says 503 so whatever is in front stops sending. */
  readonly accepting: () => boolean;
  /** The Prometheus text of every metric (rejects when it cannot be collected). */
  readonly scrape: () => Promise<string>;
  /** Open connections by backend id. */
  readonly active: () => Promise<ReadonlyMap<string, number>>;
  /** Open connections whose home is another backend, by the backend id they are on. */
  readonly misplaced?: () => Promise<ReadonlyMap<string, number>>;
  /** Extra headers of /metrics and /ring answers (a cluster primary: how many workers are in them). */
  readonly headers?: () => Record<string, string>;
}

export interface AdminDeps extends AdminSource {
  readonly logger: Logger;
}

/** Open connections by backend id, from this process's own upstreams. */
export function localActive(table: RoutingTable): Map<string, number> {
  return new Map(table.upstreams.map((u) => [u.config.id, u.active]));
}

const NONE = new Map<string, number>();

/** The body of GET /ring: the ring as it routes now. */
export function describeRing(
  table: RoutingTable,
  active: ReadonlyMap<string, number> = localActive(table),
  misplaced: ReadonlyMap<string, number> = NONE,
): object {
  return {
    configHash: table.hash,
    routingHash: table.routingHash,
    backends: table.upstreams.map((u, i) => ({
      id: u.config.id,
      address: formatHostPort(u.config.host, u.config.port),
      weight: u.config.weight,
      state: backendState(u),
      share: table.shares[i],
      active: active.get(u.config.id) ?? 0,
      misplaced: misplaced.get(u.config.id) ?? 0,
    })),
  };
}

export function createAdminServer(deps: AdminDeps): Server {
  const { table, accepting, scrape, active, headers = () => ({}), logger } = deps;
  const misplaced = deps.misplaced ?? (async () => NONE);
  return http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    switch (path) {
      case '/metrics':
        scrape().then(
          (text) => res.writeHead(200, { ...headers(), 'content-type': PROMETHEUS_TEXT }).end(text),
          (err: Error) => {
            logger.error({ err }, 'metrics collection failed');
            res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics collection failed\n');
          },
        );
        return;
      case '/healthz': {
        const [status, text] = !accepting()
          ? [503, 'shutting down\n']
          : table().eligible.count > 0
            ? [200, 'ok\n']
            : [503, 'no backend up\n'];
        res.writeHead(status, { 'content-type': 'text/plain' }).end(text);
        return;
      }
      case '/ring': {
        const now = table();
        Promise.all([active(), misplaced()]).then(
          ([counts, away]) =>
            res
              .writeHead(200, { ...headers(), 'content-type': 'application/json' })
              .end(`${JSON.stringify(describeRing(now, counts, away))}\n`),
          (err: Error) => {
            logger.error({ err }, 'collecting open connections failed');
            res.writeHead(500, { 'content-type': 'text/plain' }).end('collecting open connections failed\n');
          },
        );
        return;
      }
      default:
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz or /ring\n');
    }
  });
}
