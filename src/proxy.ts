// The data path: accept a client, route it by its address, connect to the chosen backend (with
// failover), and splice. The client socket is accepted paused and only read once a backend is
// connected, so nothing is buffered and nothing reaches a wrong backend on a retry.

import net, { type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { parseIp } from './address.js';
import type { RoutingTable, Upstream } from './fleet.js';
import type { Metrics } from './metrics.js';
import { clientHash, pickBackend } from './routing.js';
import { KEEPALIVE_DELAY_MS, Splice, connectBackend, type SpliceEnd } from './splice.js';

export interface ProxyDeps {
  /** The routing table in force; read once per connection. */
  readonly table: () => RoutingTable;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

/** An open client connection: who serves it, and where its client sits on the ring. */
export interface Connection {
  readonly upstream: Upstream;
  readonly hash: number;
}

/** A spliced pair is its own Connection, so an open connection costs no extra object. */
class ProxiedPair extends Splice implements Connection {
  constructor(
    client: Socket,
    backend: Socket,
    idleMs: number,
    onEnd: (splice: Splice, end: SpliceEnd) => void,
    readonly upstream: Upstream,
    readonly hash: number,
  ) {
    super(client, backend, idleMs, onEnd);
  }
}

/** Owns every open client connection: routing, failover, splicing, and byte accounting. */
export class Proxy {
  /** Spliced pairs open now (each pair is also its own Connection). */
  readonly open = new Map<Splice, Connection>();
  /** Clients accepted and waiting for a backend connection. */
  readonly connecting = new Set<Socket>();

  constructor(private readonly deps: ProxyDeps) {
    deps.metrics.beforeScrape = () => {
      for (const [splice, { upstream }] of this.open) this.publishBytes(splice, upstream);
    };
  }

  /** The 'connection' listener for every proxy listener. */
  readonly accept = (client: Socket): void => {
    const address = client.remoteAddress;
    const ip = address === undefined ? null : parseIp(address);
    if (ip === null) {
      client.destroy(); // already gone: the kernel reports no peer
      return;
    }
    const hash = clientHash(ip, this.deps.table().config.hashing);
    this.connecting.add(client);
    // The client is not read while connecting (see the file comment), so a client that goes
    // away meanwhile is noticed only once a backend answers; errors must not crash us.
    client.on('error', noop);
    this.attempt(client, address!, hash, []);
  };

  /**
   * Try the next eligible backend clockwise, skipping those already `tried`. Each attempt reads
   * the table in force, so a retry never picks a backend a reload removed or set to drain.
   */
  private attempt(client: Socket, address: string, hash: number, tried: Upstream[]): void {
    const { metrics, logger } = this.deps;
    if (client.destroyed) {
      this.connecting.delete(client); // gone while an earlier attempt failed
      return;
    }
    const table = this.deps.table();
    const index = pickBackend(table.ring, hash, table.eligible, indexesIn(table, tried));
    if (index < 0 || tried.length > table.config.retries) {
      metrics.rejectedConnectionsTotal.inc({ reason: 'no_backend' });
      if (logger.isLevelEnabled('debug')) {
        logger.debug({ client: address, tried: tried.map((u) => u.config.id) }, 'no backend for client');
      }
      this.connecting.delete(client);
      client.destroy();
      return;
    }
    const upstream = table.upstreams[index]!;
    const { id, host, port } = upstream.config;
    const started = performance.now();
    const backend = connectBackend(host, port, table.config.timeouts.connectMs, (reason, socket) => {
      client.removeListener('close', abandon);
      if (reason !== null) {
        metrics.connectionErrorsTotal.inc({ backend: id, reason });
        if (logger.isLevelEnabled('debug')) logger.debug({ client: address, backend: id, reason }, 'backend connect failed');
        tried.push(upstream);
        this.attempt(client, address, hash, tried);
        return;
      }
      if (upstream.retired) {
        // Removed by a reload while connecting: route again on the table in force.
        socket.destroy();
        this.attempt(client, address, hash, tried);
        return;
      }
      this.connecting.delete(client);
      client.removeListener('error', noop);
      const labels = { backend: id }; // one object for the three series
      metrics.connectDurationSeconds.observe(labels, (performance.now() - started) / 1000);
      metrics.connectionsTotal.inc(labels);
      metrics.connectionsActive.inc(labels);
      upstream.active++;
      if (logger.isLevelEnabled('debug')) logger.debug({ client: address, backend: id }, 'client connected');
      const pair = new ProxiedPair(client, socket, table.config.timeouts.idleMs, this.finish, upstream, hash);
      this.open.set(pair, pair);
    });
    const abandon = (): void => {
      this.connecting.delete(client);
      backend.destroy();
    };
    client.on('close', abandon);
  }

  private readonly finish = (splice: Splice, end: SpliceEnd): void => {
    const { upstream } = this.open.get(splice)!;
    this.open.delete(splice);
    upstream.active--;
    const { metrics, logger } = this.deps;
    const id = upstream.config.id;
    metrics.connectionsActive.dec({ backend: id });
    if (end === 'backend_error') metrics.connectionErrorsTotal.inc({ backend: id, reason: 'reset' });
    this.publishBytes(splice, upstream);
    if (logger.isLevelEnabled('debug')) {
      logger.debug(
        { backend: id, end, toBackend: splice.bytesToBackend, toClient: splice.bytesToClient },
        'client disconnected',
      );
    }
  };

  /** Close every open connection of `upstream` at once (a removed backend's drain deadline). */
  closeUpstream(upstream: Upstream): number {
    let closed = 0;
    for (const [splice, connection] of this.open) {
      if (connection.upstream !== upstream) continue;
      splice.destroy();
      closed++;
    }
    return closed;
  }

  /** Close everything: connections being set up and spliced pairs. */
  closeAll(): void {
    for (const client of this.connecting) client.destroy();
    for (const splice of this.open.keys()) splice.destroy();
  }

  private publishBytes(splice: Splice, upstream: Upstream): void {
    const { bytesTotal } = this.deps.metrics;
    const id = upstream.config.id;
    const up = splice.bytesToBackend - splice.reportedToBackend;
    const down = splice.bytesToClient - splice.reportedToClient;
    if (up > 0) bytesTotal.inc({ backend: id, direction: 'to_backend' }, up);
    if (down > 0) bytesTotal.inc({ backend: id, direction: 'to_client' }, down);
    splice.reportedToBackend = splice.bytesToBackend;
    splice.reportedToClient = splice.bytesToClient;
  }
}

const noop = (): void => {};

/** Ring indexes of `upstreams` in `table`; those no longer in it are left out. */
const NONE_TRIED: readonly number[] = [];

function indexesIn(table: RoutingTable, upstreams: readonly Upstream[]): readonly number[] {
  if (upstreams.length === 0) return NONE_TRIED; // the first attempt of every connection
  const indexes: number[] = [];
  for (const u of upstreams) {
    const i = table.upstreams.indexOf(u);
    if (i >= 0) indexes.push(i);
  }
  return indexes;
}

/**
 * A proxy listener's server: clients are accepted paused (see the file comment) with the same
 * TCP options as backend sockets.
 */
export function createProxyServer(onConnection: (socket: Socket) => void): Server {
  return net.createServer(
    {
      allowHalfOpen: true,
      pauseOnConnect: true,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: KEEPALIVE_DELAY_MS,
    },
    onConnection,
  );
}
