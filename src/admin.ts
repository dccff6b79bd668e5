// The admin endpoint: GET /metrics (Prometheus text), /healthz, /ring. Bound to 127.0.0.1 by
// default; it reads the routing table in force and never touches the data path.

import http, { type Server } from 'node:http';
import type { Logger } from 'pino';
import { formatHostPort } from './address.js';
import { backendState, type RoutingTable } from './fleet.js';
import type { Metrics } from './metrics.js';

export interface AdminDeps {
  readonly table: () => RoutingTable;
  /** False once shutdown began: /healthz then says 503 so whatever is in front stops sending. */
  readonly accepting: () => boolean;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

/** The body of GET /ring: the ring as it routes now. */
export function describeRing(table: RoutingTable): object {
  return {
    configHash: table.hash,
    backends: table.upstreams.map((u, i) => ({
      id: u.config.id,
      address: formatHostPort(u.config.host, u.config.port),
      weight: u.config.weight,
      state: backendState(u),
      share: table.shares[i],
      active: u.active,
    })),
  };
}

export function createAdminServer({ table, accepting, metrics, logger }: AdminDeps): Server {
  return http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    switch (path) {
      case '/metrics':
        metrics.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
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
      case '/ring':
        res.writeHead(200, { 'content-type': 'application/json' }).end(`${JSON.stringify(describeRing(table()))}\n`);
        return;
      default:
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz or /ring\n');
    }
  });
}
