// The data path. Accepting a client is a short chain of stages:
//   inbound (PROXY header on acceptProxy listeners) -> admit (limits) -> route (ring walk)
//   -> connect (source address, PROXY header to the backend; failover) -> splice.
// The client socket is accepted paused and read only by the inbound stage (its header) and
// then by the splice, so nothing is buffered meanwhile and nothing reaches a wrong backend on a
// retry. The connection registry owns every connection; this file decides and counts.

import net, { type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { formatHostPort, parseIp } from './address.js';
import { admit, perIpKey, type Limits } from './admission.js';
import { KEEPALIVE_DELAY_MS, connectBackend, type ConnectFailure } from './connect.js';
import { ConnectionRegistry, Pair, type LoggedStart, type Setup } from './connections.js';
import { loadBound, type RoutingTable, type Upstream } from './fleet.js';
import { isTrusted, readProxyHeader, type ListenerPolicy } from './inbound.js';
import { ThrottledLog } from './log-throttle.js';
import type { CloseCause, Metrics, RejectReason } from './metrics.js';
import { encodeProxyHeader, type ProxyHeader } from './proxy-protocol.js';
import { clientHash, pickBackend } from './routing.js';

export interface ProxyDeps {
  /** The routing table in force; read on every attempt. */
  readonly table: () => RoutingTable;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Told when a spliced pair ended (after the registry and metrics). */
  readonly ended?: (pair: Pair) => void;
}

const NO_LIMITS: Limits = { maxConnections: 0, maxConnectionsPerIp: 0 };

/** What the rate-limited warning says for each refusal that can repeat per connection. */
const REFUSAL_LOG: Partial<Record<RejectReason, string>> = {
  max_connections: 'connection limit reached: refusing clients',
  max_connections_per_ip: 'per-address connection limit reached: refusing clients',
  untrusted_proxy: 'connection from outside acceptProxy on a proxied listener: refused',
  bad_proxy_header: 'missing or bad PROXY header: connection refused',
  no_file_descriptors: 'out of file descriptors: refusing clients',
};
const NO_SOURCE_PORT_LOG = 'no local port left for backend connections (see sourceAddresses)';

export class Proxy {
  readonly connections = new ConnectionRegistry();
  private limits: Limits = NO_LIMITS;
  private readonly warnings: ThrottledLog;

  constructor(private readonly deps: ProxyDeps) {
    this.warnings = new ThrottledLog(deps.logger);
    deps.metrics.beforeScrape = () => this.connections.forEachPair((pair) => this.publishBytes(pair));
  }

  /** Put `limits` in force (new connections only). */
  setLimits(limits: Limits): void {
    this.limits = limits;
    this.connections.countByIp(limits.maxConnectionsPerIp > 0, keyOfAddress);
    this.deps.metrics.maxConnections.set(limits.maxConnections);
  }

  /** The 'connection' listener of a proxy listener whose policy in force `policy()` gives. */
  accept(client: Socket, policy: ListenerPolicy): void {
    const address = client.remoteAddress;
    if (address === undefined) {
      client.destroy(); // already gone: the kernel reports no peer
      return;
    }
    const setup = this.connections.accepted(client);
    // Until spliced the client is read only for its PROXY header, so a client that goes away
    // meanwhile may be noticed only once a backend answers; errors must not crash us.
    client.on('error', noop);
    if (policy.trusted === null) {
      this.admit(setup, address, null);
      return;
    }
    if (!isTrusted(policy.trusted, address)) {
      this.reject(setup, 'untrusted_proxy', { peer: address, listen: `${client.localAddress}:${client.localPort}` });
      return;
    }
    readProxyHeader(client, this.deps.table().config.timeouts.proxyHeaderMs, (header, problem) => {
      if (header === null) this.reject(setup, 'bad_proxy_header', { peer: address, problem });
      // A LOCAL header (the front balancer's own check) carries no client: route by the peer.
      else this.admit(setup, header.addresses?.source ?? address, header);
    });
  }

  /** Admission: the limits, counted by the client's address. */
  private admit(setup: Setup, address: string, header: ProxyHeader | null): void {
    const ip = parseIp(address);
    if (ip === null) {
      setup.client.destroy();
      this.connections.released(setup);
      return;
    }
    setup.address = address;
    const key = this.connections.countsByIp ? perIpKey(ip) : null;
    const refusal = admit(this.limits, this.connections.size - 1, key === null ? 0 : this.connections.fromIp(key));
    if (refusal !== null) {
      this.reject(setup, refusal, { client: address });
      return;
    }
    this.connections.admitted(setup, key);
    const table = this.deps.table();
    setup.hash = clientHash(ip, table.config.hashing);
    // The addresses only a PROXY header to the backend or the connection log needs are read
    // from the socket then, not for every client.
    setup.proxiedPort = header?.addresses?.sourcePort ?? null;
    this.attempt(setup);
  }

  /** Close a client without serving it, counted by `reason`. */
  private reject(setup: Setup, reason: RejectReason, fields: Record<string, unknown>): void {
    this.deps.metrics.rejectedConnectionsTotal.inc({ reason });
    const warning = REFUSAL_LOG[reason];
    if (warning !== undefined) this.warnings.warn(warning, fields);
    else if (this.deps.logger.isLevelEnabled('debug')) this.deps.logger.debug({ ...fields, reason }, 'client refused');
    setup.client.destroy();
    this.connections.released(setup);
  }

  /**
   * Route and connect: try the next eligible backend clockwise, skipping those already tried.
   * Each attempt reads the table in force, so a retry never picks a backend a reload removed or
   * set to drain.
   */
  private attempt(setup: Setup): void {
    const { client } = setup;
    if (client.destroyed) {
      this.connections.released(setup); // gone while an earlier attempt failed
      return;
    }
    const table = this.deps.table();
    const tried = setup.tried;
    const skip = tried === null ? NONE_TRIED : indexesIn(table, tried);
    const bound = loadBound(table);
    const index = pickBackend(table.balancer, setup.hash, table.eligible, skip, bound);
    if (index < 0 || (tried?.length ?? 0) > table.config.retries) {
      this.reject(setup, 'no_backend', { client: setup.address, tried: tried?.map((u) => u.config.id) ?? [] });
      return;
    }
    if (bound !== null) {
      // Bounded loads passed over the home backend (the first candidate): a spill, counted
      // against the home once the connection is served.
      const home = pickBackend(table.balancer, setup.hash, table.eligible, skip);
      setup.spilledFrom = home !== index ? table.upstreams[home]! : null;
    }
    this.connect(setup, table.upstreams[index]!, table);
  }

  /** Connect to `upstream`, from its next source address when it has a pool. */
  private connect(setup: Setup, upstream: Upstream, table: RoutingTable): void {
    const { client } = setup;
    const { host, port, proxyProtocol } = upstream.config;
    const localAddress = upstream.sources?.pick() ?? undefined;
    if (upstream.sources && localAddress === undefined) {
      this.failed(setup, upstream, 'no_source_port'); // every address of the pool is full
      return;
    }
    const started = performance.now();
    const preamble = proxyProtocol === 'off' ? null : encodeProxyHeader(proxyProtocol, proxyAddresses(setup));
    const timeoutMs = table.config.timeouts.connectMs;
    const backend = connectBackend({ host, port, timeoutMs, localAddress, preamble }, (failure, socket) => {
      client.removeListener('close', abandon);
      if (failure === 'no_source_port' && localAddress !== undefined) {
        // That address has no port left: the next one of the pool, for the same backend.
        upstream.sources!.full(localAddress);
        this.connect(setup, upstream, table);
        return;
      }
      if (failure !== null) {
        this.failed(setup, upstream, failure);
        return;
      }
      if (upstream.retired) {
        // Removed by a reload while connecting: route again on the table in force.
        socket.destroy();
        this.attempt(setup);
        return;
      }
      this.splice(setup, socket, upstream, table, started);
    });
    const abandon = (): void => {
      this.connections.released(setup);
      backend.destroy();
    };
    client.on('close', abandon);
  }

  private failed(setup: Setup, upstream: Upstream, failure: ConnectFailure): void {
    if (failure === 'no_file_descriptors') {
      // ringlb's own condition: not the backend's fault, and other backends would fail alike.
      this.reject(setup, 'no_file_descriptors', { client: setup.address, backend: upstream.config.id });
      return;
    }
    const id = upstream.config.id;
    this.deps.metrics.connectionErrorsTotal.inc({ backend: id, reason: failure });
    // Passive health: the traffic that finds a dead backend marks it down (local failures, such
    // as no_source_port, never count; the checker ignores them).
    if (this.deps.table().config.healthCheck.passive) upstream.checker?.trafficFailed(failure);
    if (failure === 'no_source_port') this.warnings.warn(NO_SOURCE_PORT_LOG, { backend: id });
    if (this.deps.logger.isLevelEnabled('debug')) this.deps.logger.debug({ client: setup.address, backend: id, reason: failure }, 'backend connect failed');
    (setup.tried ??= []).push(upstream);
    this.attempt(setup);
  }

  private splice(setup: Setup, socket: Socket, upstream: Upstream, table: RoutingTable, started: number): void {
    const { metrics, logger } = this.deps;
    if (table.config.healthCheck.passive) upstream.checker?.trafficSucceeded();
    setup.client.removeListener('error', noop);
    const labels = { backend: upstream.config.id }; // one object for the three series
    metrics.connectDurationSeconds.observe(labels, (performance.now() - started) / 1000);
    metrics.connectionsTotal.inc(labels);
    metrics.connectionsActive.inc(labels);
    if (setup.spilledFrom !== null) metrics.spilledConnectionsTotal.inc({ backend: setup.spilledFrom.config.id });
    if (logger.isLevelEnabled('debug')) logger.debug({ client: setup.address, backend: labels.backend }, 'client connected');
    const pair = new Pair(setup, socket, table.config.timeouts.idleMs, this.finish, upstream);
    if (table.config.log.connections) {
      pair.logged = {
        client: formatHostPort(setup.address, clientPort(setup)),
        listen: formatHostPort(setup.client.localAddress!, setup.client.localPort!),
        at: Date.now(),
      };
    }
    this.connections.spliced(setup, pair);
  }

  private readonly finish = (pair: Pair, cause: CloseCause): void => {
    this.connections.ended(pair);
    const { metrics, logger } = this.deps;
    const id = pair.upstream.config.id;
    metrics.connectionsActive.dec({ backend: id });
    metrics.closedConnectionsTotal.inc({ backend: id, cause });
    if (cause === 'backend_error') metrics.connectionErrorsTotal.inc({ backend: id, reason: 'reset' });
    this.publishBytes(pair);
    if (pair.logged !== null) this.logConnection(pair, pair.logged, cause);
    else if (logger.isLevelEnabled('debug')) {
      logger.debug({ backend: id, cause, toBackend: pair.bytesToBackend, toClient: pair.bytesToClient }, 'client disconnected');
    }
    this.deps.ended?.(pair);
  };

  /**
   * The connection log (log.connections): one line per closed connection, like HAProxy's
   * `option tcplog`. The client is the PROXY-decoded address where there was a header; listen is
   * the ringlb address it reached.
   */
  private logConnection(pair: Pair, start: LoggedStart, cause: CloseCause): void {
    const { upstream } = pair;
    this.deps.logger.info(
      {
        client: start.client,
        listen: start.listen,
        backend: upstream.config.id,
        backendAddress: formatHostPort(upstream.config.host, upstream.config.port),
        start: new Date(start.at).toISOString(),
        durationMs: Date.now() - start.at,
        toBackend: pair.bytesToBackend,
        toClient: pair.bytesToClient,
        cause,
      },
      'connection closed',
    );
  }

  /** A listener's accept() failed: descriptors ran out (libuv closes that client for us). */
  acceptFailed(err: NodeJS.ErrnoException, listen: string): boolean {
    if (err.code !== 'EMFILE' && err.code !== 'ENFILE') return false;
    this.deps.metrics.rejectedConnectionsTotal.inc({ reason: 'no_file_descriptors' });
    this.warnings.warn(REFUSAL_LOG.no_file_descriptors!, { listen, code: err.code });
    return true;
  }

  private publishBytes(pair: Pair): void {
    const { bytesTotal } = this.deps.metrics;
    const id = pair.upstream.config.id;
    const up = pair.bytesToBackend - pair.reportedToBackend;
    const down = pair.bytesToClient - pair.reportedToClient;
    if (up > 0) bytesTotal.inc({ backend: id, direction: 'to_backend' }, up);
    if (down > 0) bytesTotal.inc({ backend: id, direction: 'to_client' }, down);
    pair.reportedToBackend = pair.bytesToBackend;
    pair.reportedToClient = pair.bytesToClient;
  }
}

const noop = (): void => {};

function keyOfAddress(address: string): number | string | null {
  const ip = parseIp(address);
  return ip === null ? null : perIpKey(ip);
}

const MAPPED = /^::ffff:\d+\.\d+\.\d+\.\d+$/i;
const isIpv6 = (a: string): boolean => a.includes(':') && !MAPPED.test(a);

/** The client's port: from its PROXY header when it came through one, else its socket's. */
const clientPort = (setup: Setup): number => setup.proxiedPort ?? setup.client.remotePort!;

/** The PROXY header's addresses: the client, and the ringlb address it reached (SPEC). */
function proxyAddresses(setup: Setup) {
  const { client } = setup;
  const destination = client.localAddress!;
  const family: 4 | 6 = isIpv6(setup.address) || isIpv6(destination) ? 6 : 4;
  return { family, source: setup.address, sourcePort: clientPort(setup), destination, destinationPort: client.localPort! };
}

const NONE_TRIED: readonly number[] = [];

/** Ring indexes of `upstreams` in `table`; those no longer in it are left out. */
function indexesIn(table: RoutingTable, upstreams: readonly Upstream[]): readonly number[] {
  const indexes: number[] = [];
  for (const u of upstreams) {
    const i = table.upstreams.indexOf(u);
    if (i >= 0) indexes.push(i);
  }
  return indexes;
}

/**
 * Linux copies the listening socket's TCP_NODELAY and keepalive settings (SO_KEEPALIVE,
 * TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT) into every socket it accepts (the child is a clone of
 * the listener: tcp_create_openreq_child), so there they are set once on the listener instead of
 * five setsockopt calls per client (issue 13; `strace -f -e setsockopt`). Elsewhere, per client.
 */
const LISTENER_OPTIONS_INHERITED = process.platform === 'linux';

/** The part of a listening server's libuv TCP handle used here (Node's TCPWrap). */
interface ListeningHandle {
  setNoDelay(enable: boolean): number;
  setKeepAlive(enable: boolean, delaySeconds: number): number;
}

/**
 * A proxy listener's server: clients are accepted paused (see the file comment) with the same
 * TCP options as backend sockets.
 */
export function createProxyServer(onConnection: (socket: Socket) => void): Server {
  if (!LISTENER_OPTIONS_INHERITED) {
    return net.createServer(
      { allowHalfOpen: true, pauseOnConnect: true, noDelay: true, keepAlive: true, keepAliveInitialDelay: KEEPALIVE_DELAY_MS },
      onConnection,
    );
  }
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, onConnection);
  // Node has no public setsockopt for a listening socket; its handle has the socket's own calls.
  server.on('listening', () => {
    const handle = (server as unknown as { _handle: ListeningHandle | null })._handle;
    handle?.setNoDelay(true);
    handle?.setKeepAlive(true, KEEPALIVE_DELAY_MS / 1000);
  });
  return server;
}
