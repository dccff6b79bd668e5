// The admin endpoint: GET / (the status page), /metrics (Prometheus text), /healthz, /ring,
// /ring/arcs and /last-reload. Bound to 127.0.0.1 by default; it reads the routing table in
// force and never touches the data path. It is bounded so that no admin client can hold it, or
// the process, hostage (ADMIN_LIMITS): small headers, no request bodies, timeouts, a cap on
// connections.

import http, { type IncomingMessage, type Server } from 'node:http';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { formatHostPort } from './address.js';
import { backendState, type RoutingTable } from './fleet.js';
import { ringArcs } from './ring-arcs.js';
import { STATUS_PAGE_CSP, STATUS_PAGE_HTML } from './status-page.js';

const PROMETHEUS_TEXT = Registry.PROMETHEUS_CONTENT_TYPE;

/** What a successful reload changed (the fields of the daemon's ReloadReport the page shows). */
export interface ReloadMoves {
  readonly configHash: string;
  readonly routingHash: string;
  readonly unchanged: boolean;
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly changed: readonly string[];
  /** Fraction of the hash space whose backend changed. */
  readonly moved: number;
  /** Open connections whose client the ring now sends elsewhere. */
  readonly misplaced: number;
}

/** The last reload attempt (GET /last-reload); `at` in ms since the epoch. */
export type LastReload =
  | ({ readonly at: number; readonly trigger: string; readonly result: 'success' } & ReloadMoves)
  | { readonly at: number; readonly trigger: string; readonly result: 'failure'; readonly errors: readonly string[] };

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
  /** The last reload since start (null: none yet); the daemon keeps it. */
  readonly lastReload?: () => LastReload | null;
}

export interface AdminDeps extends AdminSource {
  readonly logger: Logger;
}

/**
 * The bounds of the admin endpoint. Node checks headersTimeout and requestTimeout only every
 * connectionsCheckingInterval (default 30 s), hence the 1 s. A connection past maxConnections
 * is closed at once by node:net, before any byte is read.
 */
export const ADMIN_LIMITS = Object.freeze({
  /** Request line and headers; larger gets 431. */
  maxHeaderSize: 8 * 1024,
  /** From connection (or the previous response) to the end of the headers; then 408 and close. */
  headersTimeoutMs: 5000,
  /** The whole request. */
  requestTimeoutMs: 10_000,
  /** An idle keep-alive connection. */
  keepAliveTimeoutMs: 5000,
  /** A connection on which nothing moves (a client that stops reading a response). */
  socketTimeoutMs: 30_000,
  connectionsCheckingIntervalMs: 1000,
  /** Above a browser's 6 per origin times a few tabs and any scraper; far below the descriptor budget. */
  maxConnections: 256,
});

/** The largest number of arcs /ring/arcs draws: a half-degree each, finer than a screen shows. */
export const MAX_ARCS = 720;

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
    algorithm: table.balancer.algorithm,
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

/** The body of GET /ring/arcs: who serves which stretch of the circle now (src/ring-arcs.ts). */
export function describeArcs(table: RoutingTable): object {
  // Rendezvous and Maglev have no ring: each backend is drawn as one arc of its share.
  const { exact, arcs } = table.ring ? ringArcs(table.ring, table.eligible.flags, MAX_ARCS) : shareArcs(table.shares);
  const { ids } = table.balancer;
  return {
    routingHash: table.routingHash,
    /** `positions`: where the ring's points put each backend; `shares`: one arc per backend, sized by its share. */
    drawn: table.ring ? 'positions' : 'shares',
    exact,
    resolution: MAX_ARCS,
    arcs: arcs.map((a) => ({ backend: a.backend < 0 ? null : ids[a.backend], start: a.start, end: a.end })),
  };
}

/** Arcs proportional to `shares` (fractions 0-1), one per serving backend, in id order (not positions). */
function shareArcs(shares: ArrayLike<number>): { exact: boolean; arcs: Array<{ backend: number; start: number; end: number }> } {
  const arcs: Array<{ backend: number; start: number; end: number }> = [];
  let at = 0;
  for (let b = 0; b < shares.length; b++) {
    if (shares[b]! <= 0) continue;
    const end = Math.min(1, at + shares[b]!);
    arcs.push({ backend: b, start: at, end });
    at = end;
  }
  return { exact: false, arcs };
}

/** One answer; `send` adds the headers every answer has. */
interface Answer {
  readonly status: number;
  readonly type: string;
  readonly body: string;
  readonly headers?: Record<string, string>;
}

const text = (status: number, body: string): Answer => ({ status, type: 'text/plain; charset=utf-8', body });
const json = (body: unknown, headers?: Record<string, string>): Answer => ({
  status: 200,
  type: 'application/json',
  body: `${JSON.stringify(body)}\n`,
  headers,
});

const PATHS = ['/', '/metrics', '/healthz', '/ring', '/ring/arcs', '/last-reload'] as const;
type AdminPath = (typeof PATHS)[number];
const isAdminPath = (path: string): path is AdminPath => (PATHS as readonly string[]).includes(path);

/** A request that carries a body: a Content-Length other than 0, or any Transfer-Encoding. */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length.trim() !== '0');
}

export function createAdminServer(deps: AdminDeps): Server {
  const { table, accepting, scrape, active, headers = () => ({}), lastReload = () => null, logger } = deps;
  const misplaced = deps.misplaced ?? (async () => NONE);
  // The arcs change only when the table is swapped (config or health): computed once per table.
  const arcsOf = new WeakMap<RoutingTable, object>();

  const answer = async (path: AdminPath): Promise<Answer> => {
    switch (path) {
      case '/':
        return {
          status: 200,
          type: 'text/html; charset=utf-8',
          body: STATUS_PAGE_HTML,
          headers: { 'content-security-policy': STATUS_PAGE_CSP, 'referrer-policy': 'no-referrer' },
        };
      case '/metrics':
        try {
          return { status: 200, type: PROMETHEUS_TEXT, body: await scrape(), headers: headers() };
        } catch (err) {
          logger.error({ err }, 'metrics collection failed');
          return text(500, 'metrics collection failed\n');
        }
      case '/healthz':
        if (!accepting()) return text(503, 'shutting down\n');
        return table().eligible.count > 0 ? text(200, 'ok\n') : text(503, 'no backend up\n');
      case '/ring': {
        const now = table();
        try {
          const [counts, away] = await Promise.all([active(), misplaced()]);
          return json(describeRing(now, counts, away), headers());
        } catch (err) {
          logger.error({ err }, 'collecting open connections failed');
          return text(500, 'collecting open connections failed\n');
        }
      }
      case '/ring/arcs': {
        const now = table();
        let body = arcsOf.get(now);
        if (body === undefined) arcsOf.set(now, (body = describeArcs(now)));
        return json(body);
      }
      case '/last-reload': {
        const last = lastReload();
        return json({ lastReload: last === null ? null : { ...last, at: new Date(last.at).toISOString() } });
      }
    }
  };

  const server = http.createServer(
    {
      maxHeaderSize: ADMIN_LIMITS.maxHeaderSize,
      headersTimeout: ADMIN_LIMITS.headersTimeoutMs,
      requestTimeout: ADMIN_LIMITS.requestTimeoutMs,
      keepAliveTimeout: ADMIN_LIMITS.keepAliveTimeoutMs,
      connectionsCheckingInterval: ADMIN_LIMITS.connectionsCheckingIntervalMs,
    },
    (req, res) => {
      const path = (req.url ?? '/').split('?')[0]!;
      const withBody = hasBody(req);
      const send = (a: Answer): void => {
        const length = Buffer.byteLength(a.body);
        res.writeHead(a.status, {
          ...a.headers,
          'content-type': a.type,
          'content-length': String(length),
          'cache-control': 'no-store',
          'x-content-type-options': 'nosniff',
          // A body is never read: close rather than let node drain it for the next request.
          ...(withBody ? { connection: 'close' } : {}),
        });
        // HEAD: the same status and headers (Content-Length included), no body.
        res.end(req.method === 'HEAD' ? undefined : a.body);
      };
      if (!isAdminPath(path)) {
        send(text(404, `not found: try ${PATHS.join(', ')}\n`));
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send({ ...text(405, 'method not allowed: the admin endpoint is read-only (GET, HEAD)\n'), headers: { allow: 'GET, HEAD' } });
        return;
      }
      if (withBody) {
        send(text(413, 'request bodies are not accepted\n'));
        return;
      }
      answer(path).then(send, (err: Error) => {
        logger.error({ err, path }, 'admin request failed');
        if (!res.headersSent) send(text(500, 'internal error\n'));
      });
    },
  );
  server.maxConnections = ADMIN_LIMITS.maxConnections;
  server.setTimeout(ADMIN_LIMITS.socketTimeoutMs);
  return server;
}
