// The daemon's wiring: one config in force -> fleet (ring + health) -> proxy listeners and the
// admin endpoint; live reload and graceful shutdown. Everything it uses is passed in (logger,
// registry), so tests can observe it and two daemons can run in one process.

import type { Server as HttpServer } from 'node:http';
import type { AddressInfo, Server } from 'node:net';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { availableParallelism } from 'node:os';
import { formatHostPort } from './address.js';
import { createAdminServer, describeRing, localActive, type AdminSource, type LastReload } from './admin.js';
import { shareOfLimit, type Limits } from './admission.js';
import type { BackendConfig, Config, ListenConfig, ListenerConfig, LogLevel } from './config.js';
import { loadConfigFile } from './config-file.js';
import { systemClock, type Clock } from './closer.js';
import type { ConnectionRegistry } from './connections.js';
import { openFileLimit, resolveMaxConnections } from './descriptors.js';
import { RinglbError } from './errors.js';
import { effectiveBackends, namesOf } from './discovery.js';
import { DnsSchedule } from './dns-schedule.js';
import { Fleet, type Upstream } from './fleet.js';
import { listenerPolicy, type ListenerPolicy } from './inbound.js';
import { listenOn } from './listen.js';
import { createMetrics, type Metrics } from './metrics.js';
import { Proxy, createProxyServer } from './proxy.js';
import { Rebalancer } from './rebalancer.js';
import { compareBalancers } from './balancer.js';

/**
 * What one process does. `single`: everything. Under node:cluster, the `primary` runs the
 * health checks and the admin endpoint for the whole daemon and each `worker` runs the proxy
 * listeners, taking health verdicts from the primary.
 */
export type DaemonRole = 'single' | 'primary' | 'worker';

export interface DaemonOptions {
  readonly config: Config;
  readonly logger: Logger;
  /** Defaults to a fresh registry; never the global one. */
  readonly registry?: Registry;
  /** A level from the command line; wins over log.level in every config. */
  readonly logLevel?: LogLevel;
  readonly role?: DaemonRole;
  /** A primary's view of its workers: metrics text and open connections for the admin endpoint. */
  readonly admin?: Partial<Pick<AdminSource, 'scrape' | 'active' | 'misplaced' | 'headers'>>;
  /** Told of every health verdict change of this process's checks. */
  readonly onHealth?: (id: string, up: boolean) => void;
  /** Timers and time for spread and paced closes; injected by tests. */
  readonly clock?: Clock;
  /** Order of spread and paced closes; injected by tests. */
  readonly random?: () => number;
}

/** A reload whose new listeners are bound; `commit` swaps it in, `abort` lets it go. */
export interface PreparedReload {
  commit(): ReloadReport;
  abort(): Promise<void>;
}

/** What a successful reload changed. */
export interface ReloadReport {
  readonly configHash: string;
  readonly routingHash: string;
  readonly unchanged: boolean;
  readonly added: string[];
  readonly removed: string[];
  readonly changed: string[];
  /** Fraction of the hash space whose backend changed. */
  readonly moved: number;
  /** `exact` (counted over the hash space), or `expected` (rendezvous; a change of algorithm). */
  readonly movedBasis: 'exact' | 'expected';
  /** Open connections whose client the ring now sends elsewhere (they stay where they are). */
  readonly misplaced: number;
  readonly listen: string[];
  readonly admin: string;
}

const key = (at: ListenConfig): string => formatHostPort(at.host, at.port);

/** A bound proxy listener and the policy its connections get (replaced by a reload). */
interface Listener {
  readonly server: Server;
  policy: ListenerPolicy;
}

/**
 * The limits this process enforces. With workers, an explicit maxConnections is the daemon's
 * total, shared evenly; "auto" is each process's own descriptor budget; the per-address limit
 * applies in each process (docs/operations.md "Limits").
 */
function limitsFor(config: Config, role: DaemonRole): Limits {
  const processes = role === 'worker' ? (config.workers === 'auto' ? availableParallelism() : config.workers) : 1;
  const { maxConnections, maxConnectionsPerIp } = config.limits;
  return {
    maxConnections:
      maxConnections === 'auto'
        ? resolveMaxConnections('auto', openFileLimit(), config.backends.length)
        : shareOfLimit(maxConnections, processes),
    maxConnectionsPerIp,
  };
}
/** The startup line lists backends one by one up to this many; beyond, a summary. */
const STARTUP_BACKENDS_LISTED = 50;
/** How often shutdown logs how many connections remain. */
const SHUTDOWN_PROGRESS_MS = 5000;

export class Daemon {
  private config: Config;
  /** Bound proxy listeners by configured address (host:port as written, port 0 included). */
  private listeners = new Map<string, Listener>();
  /** Deadlines of removed backends' connections, by backend id. */
  private readonly drainTimers = new Map<string, NodeJS.Timeout>();
  /** Reloads run one at a time, in the order they were asked for. */
  private reloading: Promise<unknown> = Promise.resolve();
  private stopping = false;

  private admin: HttpServer | null = null;
  /** Resolves host names and discovery names on a schedule; null when the config names none. */
  private dns: DnsSchedule | null = null;
  /** The last reload (of the file, or of what DNS answers), for the status page. */
  lastReload: LastReload | null = null;

  private constructor(
    config: Config,
    readonly role: DaemonRole,
    readonly fleet: Fleet,
    readonly proxy: Proxy,
    readonly rebalancer: Rebalancer,
    readonly metrics: Metrics,
    private readonly logger: Logger,
    private readonly logLevel: LogLevel | undefined,
    private readonly adminSource: AdminSource,
  ) {
    this.config = config;
  }

  /**
   * Bind every listener and the admin endpoint, then serve. If any address cannot be bound,
   * whatever was bound is closed again and the ListenError is thrown.
   */
  static async start(options: DaemonOptions): Promise<Daemon> {
    const { config, logger, registry = new Registry(), logLevel, role = 'single' } = options;
    logger.level = logLevel ?? config.log.level;
    const metrics = createMetrics(registry);
    // Host names and discovery names are resolved before anything serves, then on a schedule.
    let daemon: Daemon | null = null;
    const dns = createDns(config, metrics, logger, (snapshot) => daemon?.rediscovered(snapshot));
    const backends = dns ? effectiveBackends(config, await dns.apply(namesOf(config))) : config.backends;
    const fleet = new Fleet(config, metrics, logger, role === 'worker' ? 'remote' : 'local', options.onHealth, backends);
    let rebalancer: Rebalancer | null = null;
    const proxy = new Proxy({ table: () => fleet.table, metrics, logger, ended: () => rebalancer!.pairEnded() });
    rebalancer = new Rebalancer({
      connections: proxy.connections,
      table: () => fleet.table,
      metrics,
      logger,
      clock: options.clock ?? systemClock,
      random: options.random ?? Math.random,
    });
    const local = rebalancer;
    const source: AdminSource = {
      table: () => fleet.table,
      accepting: () => !daemon?.stopping,
      scrape: options.admin?.scrape ?? (() => registry.metrics()),
      active: options.admin?.active ?? (async () => localActive(fleet.table)),
      misplaced: options.admin?.misplaced ?? (async () => misplacedById(local)),
      headers: options.admin?.headers,
      lastReload: () => daemon?.lastReload ?? null,
    };
    daemon = new Daemon(config, role, fleet, proxy, rebalancer, metrics, logger, logLevel, source);
    daemon.dns = dns;
    const self = daemon;
    fleet.onTransition = (upstream, up) => self.healthChanged(upstream, up);
    if (role !== 'primary') proxy.setLimits(limitsFor(config, role));
    try {
      if (role !== 'primary') daemon.listeners = await daemon.bindListeners(config.listen);
      if (role !== 'worker') daemon.admin = await listenOn(daemon.createAdmin(), config.metrics);
    } catch (err) {
      fleet.stop();
      dns?.stop();
      await Promise.all([...daemon.listeners.values()].map(closeListener));
      throw err;
    }
    if (role === 'single') daemon.logStartup();
    return daemon;
  }

  /** The bound proxy addresses, in the order of `listen` (port 0 resolved); none in a primary. */
  get listenAddresses(): AddressInfo[] {
    return this.role === 'primary'
      ? []
      : this.config.listen.map((at) => this.listeners.get(key(at))!.server.address() as AddressInfo);
  }

  /** Every client connection of this process: being set up and spliced. */
  get connections(): ConnectionRegistry {
    return this.proxy.connections;
  }

  /** The admin endpoint's address; null in a worker. */
  get adminAddress(): AddressInfo | null {
    return (this.admin?.address() as AddressInfo | undefined) ?? null;
  }

  /**
   * Put `next` in force: open new listeners (and a new admin endpoint) before closing old ones,
   * then swap the fleet's table. Any failure leaves the old config entirely in place and
   * throws. Open connections are never cut; those of removed backends get drainTimeoutMs.
   */
  reload(next: Config, trigger = 'reload'): Promise<ReloadReport> {
    return this.serialized(async () => {
      const report = (await this.prepare(next)).commit();
      this.lastReload = { at: Date.now(), trigger, result: 'success', ...report };
      return report;
    });
  }

  /**
   * Run `step` after every reload asked for before it. A cluster primary runs its two-phase
   * reload (prepare here and in every worker, then commit or abort everywhere) through this.
   */
  serialized<T>(step: () => Promise<T>): Promise<T> {
    const run = this.reloading.then(step);
    this.reloading = run.catch(() => {});
    return run;
  }

  /**
   * Reload from FILE, logging the outcome and counting it in ringlb_config_reloads_total.
   * Returns false when the file was not valid or could not be applied (the old config stays).
   */
  async reloadFile(
    file: string,
    trigger: string,
    reload: (next: Config) => Promise<ReloadReport> = (next) => this.reload(next, trigger),
  ): Promise<boolean> {
    try {
      const report = await reload(await loadConfigFile(file));
      this.metrics.configReloadsTotal.inc({ result: 'success' });
      this.lastReload = { at: Date.now(), trigger, result: 'success', ...report };
      if (report.unchanged) this.logger.info({ trigger, configHash: report.configHash }, 'config unchanged');
      else this.logger.info({ trigger, ...report }, 'config reloaded');
      return true;
    } catch (err) {
      // Whatever went wrong, the daemon keeps serving with the config in force.
      this.metrics.configReloadsTotal.inc({ result: 'failure' });
      const errors = err instanceof RinglbError ? err.lines() : [String((err as Error).message ?? err)];
      this.lastReload = { at: Date.now(), trigger, result: 'failure', errors };
      this.logger.error({ trigger, file, errors }, 'config reload failed; keeping the config in force');
      return false;
    }
  }

  /**
   * First phase of a reload: bind what `next` adds (listeners, a moved admin endpoint). Nothing
   * in force changes until `commit`; `abort` closes what was bound. Call through `serialized`.
   */
  async prepare(next: Config): Promise<PreparedReload> {
    if (this.stopping) throw new Error('the daemon is shutting down');
    // A change of dns.* needs a schedule of its own (seeded with what is known); the old one
    // stops at commit. Names are resolved now, so the commit itself waits for nothing.
    const sameDns = JSON.stringify(next.dns) === JSON.stringify(this.config.dns);
    const dns = sameDns && this.dns ? this.dns : createDns(next, this.metrics, this.logger, (s) => this.rediscovered(s), this.dns?.snapshot);
    let backends: readonly BackendConfig[];
    try {
      backends = dns ? effectiveBackends(next, await dns.apply(namesOf(next))) : next.backends;
    } catch (err) {
      if (dns !== this.dns) dns?.stop();
      throw err;
    }
    const dropDns = (): void => {
      if (dns !== this.dns) dns?.stop();
    };
    const opened =
      this.role === 'primary'
        ? new Map<string, Listener>()
        : await this.bindListeners(next.listen.filter((at) => !this.listeners.has(key(at))));
    let admin = this.admin;
    if (this.role !== 'worker' && key(next.metrics) !== key(this.config.metrics)) {
      try {
        admin = await listenOn(this.createAdmin(), next.metrics);
      } catch (err) {
        dropDns();
        await Promise.all([...opened.values()].map(closeListener));
        throw err;
      }
    }
    const abort = async (): Promise<void> => {
      dropDns();
      await Promise.all([...opened.values()].map(closeListener));
      if (admin && admin !== this.admin) await closeServer(admin);
    };
    if (this.stopping) {
      // Shutdown began while the new listeners were being bound: they must not serve.
      await abort();
      throw new Error('the daemon is shutting down');
    }
    return {
      commit: () => {
        if (dns !== this.dns) {
          this.dns?.stop();
          this.dns = dns;
        }
        return this.commit(next, backends, opened, admin);
      },
      abort,
    };
  }

  /** Second phase: swap `next` in. Nothing can fail here. */
  private commit(next: Config, backends: readonly BackendConfig[], opened: Map<string, Listener>, admin: HttpServer | null): ReloadReport {
    const wanted = new Map(next.listen.map((at) => [key(at), at]));
    for (const [at, listener] of this.listeners) {
      const config = wanted.get(at);
      if (config === undefined) {
        void closeListener(listener);
        continue;
      }
      listener.policy = listenerPolicy(config); // acceptProxy may have changed
      opened.set(at, listener);
    }
    if (this.role !== 'primary') this.listeners = new Map(next.listen.map((at) => [key(at), opened.get(key(at))!]));
    if (admin !== this.admin && this.admin) {
      const old = this.admin;
      void closeServer(old);
      old.closeAllConnections();
    }
    this.admin = admin;
    this.config = next;
    this.logger.level = this.logLevel ?? next.log.level;
    if (this.role !== 'primary') this.proxy.setLimits(limitsFor(next, this.role));
    return this.applyBackends(next, backends, 'reload');
  }

  /** Put `backends` in force under `next` (a reload, or DNS answering something new). */
  private applyBackends(next: Config, backends: readonly BackendConfig[], why: string): ReloadReport {
    const before = this.fleet.table;
    const change = this.fleet.apply(next, backends);
    const after = this.fleet.table;
    for (const id of change.added) this.cancelDrain(id);
    for (const upstream of change.removed) this.scheduleDrain(upstream.config.id, next.drainTimeoutMs, upstream);
    const moves = compareBalancers(before.balancer, before.eligible.flags, after.balancer, after.eligible.flags);
    const misplaced = sum(this.rebalancer.misplacedByUpstream(after).values());
    const unchanged = after.hash === before.hash && change.added.length + change.removed.length + change.changed.length === 0;
    if (!unchanged) this.rebalancer.changed(why);
    const adminAt = this.adminAddress;
    return {
      configHash: after.hash,
      routingHash: after.routingHash,
      unchanged,
      added: change.added,
      removed: change.removed.map((u) => u.config.id),
      changed: change.changed,
      moved: moves.moved,
      movedBasis: moves.basis,
      misplaced,
      listen: this.listenAddresses.map((a) => formatHostPort(a.address, a.port)),
      admin: adminAt ? formatHostPort(adminAt.address, adminAt.port) : '',
    };
  }

  /**
   * DNS answered something new on its schedule: applied like a reload (the ring rebuilt, the
   * reload log line with what moved, rehoming if on), in turn with reloads.
   */
  rediscovered(snapshot: Parameters<typeof effectiveBackends>[1]): void {
    void this.serialized(async () => {
      if (this.stopping) return;
      const report = this.applyBackends(this.config, effectiveBackends(this.config, snapshot), 'dns');
      if (report.unchanged) return;
      this.lastReload = { at: Date.now(), trigger: 'dns', result: 'success', ...report };
      this.logger.info({ trigger: 'dns', ...report }, 'config reloaded');
    });
  }

  /**
   * A backend in force went up or down. With onDown "close" the connections of one that went
   * down are closed, spread over closeSpreadMs (spared if it comes back first); either way the
   * homes of clients changed, which rehoming may act on.
   */
  healthChanged(upstream: Upstream, up: boolean): void {
    if (!up && this.config.healthCheck.onDown === 'close' && upstream.active > 0) {
      const closing = this.rebalancer.closeUpstream(upstream, 'backend_down', (pair) => pair.upstream.up);
      const { closeSpreadMs } = this.config.rebalance;
      this.logger.info({ backend: upstream.config.id, closing, closeSpreadMs }, 'closing the connections of a backend that is down');
    }
    this.rebalancer.changed(up ? 'backend up' : 'backend down');
  }

  /** Close the connections of removed backend `id` after `timeoutMs` (0 = never), spread over closeSpreadMs. */
  private scheduleDrain(id: string, timeoutMs: number, upstream: Upstream): void {
    if (timeoutMs === 0 || upstream.active === 0) return;
    this.cancelDrain(id);
    const timer = setTimeout(() => {
      this.drainTimers.delete(id);
      // Spared if the backend is added back before its turn.
      const closing = this.rebalancer.closeUpstream(upstream, 'drain_deadline', (pair) => !pair.upstream.retired);
      const { closeSpreadMs } = this.config.rebalance;
      this.logger.info({ backend: id, closing, drainTimeoutMs: timeoutMs, closeSpreadMs }, 'closing the connections of a removed backend');
    }, timeoutMs);
    timer.unref();
    this.drainTimers.set(id, timer);
  }

  /** A backend added back before its deadline keeps its connections. */
  private cancelDrain(id: string): void {
    const timer = this.drainTimers.get(id);
    if (timer) clearTimeout(timer);
    this.drainTimers.delete(id);
  }

  /**
   * Graceful shutdown: stop accepting at once, let open connections finish for up to
   * shutdownTimeoutMs (logging how many remain), then close the rest. The admin endpoint stays
   * up until the end. `hurry()` cuts the wait short (a second signal).
   */
  async shutdown(): Promise<void> {
    this.stopping = true;
    const timeoutMs = this.config.shutdownTimeoutMs;
    const closing = [...this.listeners.values()].map(closeListener);
    this.fleet.stop();
    const remaining = (): number => this.connections.size;
    this.logger.info({ open: remaining(), shutdownTimeoutMs: timeoutMs }, 'shutting down: listeners closed');
    const deadline = Date.now() + timeoutMs;
    // With closeSpreadMs, what is still open is closed in random order, evenly, ending at the
    // deadline, so its clients do not all reconnect elsewhere in the same instant.
    const spreadMs = Math.min(this.config.rebalance.closeSpreadMs, timeoutMs);
    let spreading = spreadMs === 0;
    let lastProgress = Date.now();
    while (remaining() > 0 && Date.now() < deadline && !this.cutShort) {
      if (!spreading && Date.now() >= deadline - spreadMs) {
        spreading = true;
        this.logger.info({ open: remaining(), closeSpreadMs: spreadMs }, 'shutting down: closing the connections still open, spread to the deadline');
        this.rebalancer.closeAllOver(Math.max(0, deadline - Date.now()), 'shutdown');
      }
      await new Promise((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 100);
      });
      if (Date.now() - lastProgress >= SHUTDOWN_PROGRESS_MS) {
        lastProgress = Date.now();
        this.logger.info({ open: remaining(), leftMs: Math.max(0, deadline - Date.now()) }, 'shutting down: waiting for connections');
      }
    }
    const forced = remaining();
    if (forced > 0) this.logger.warn({ closed: forced }, 'shutting down: closing the connections still open');
    await this.close(closing);
  }

  /** A primary's shutdown: /healthz says 503 and checks stop; the admin endpoint stays up. */
  beginShutdown(): void {
    this.stopping = true;
    this.fleet.stop();
  }

  private cutShort = false;
  private wake: (value: unknown) => void = () => {};

  /** Stop waiting for open connections: shutdown() closes them now. */
  hurry(): void {
    this.cutShort = true;
    this.rebalancer.finishNow();
    this.wake(undefined);
  }

  /** Close everything now: listeners, open connections, health checks, the admin endpoint. */
  async close(closing = [...this.listeners.values()].map(closeListener)): Promise<void> {
    this.stopping = true;
    this.fleet.stop();
    for (const timer of this.drainTimers.values()) clearTimeout(timer);
    this.rebalancer.stop();
    this.dns?.stop();
    this.connections.closeAll('shutdown');
    await Promise.all(closing);
    if (this.admin) {
      this.admin.closeAllConnections();
      await closeServer(this.admin);
    }
    this.logger.info('stopped');
  }

  private createAdmin(): HttpServer {
    const admin = createAdminServer({ ...this.adminSource, logger: this.logger });
    admin.on('error', (err) => this.logger.error({ err }, 'admin endpoint error'));
    return admin;
  }

  /**
   * Bind proxy listeners for `addresses`; all or none (a failure closes those just bound). An
   * IPv6 wildcard listed beside an IPv4 address on the same port is bound IPv6-only, since a
   * dual-stack `::` would take the IPv4 port too.
   */
  private async bindListeners(addresses: readonly ListenerConfig[]): Promise<Map<string, Listener>> {
    const bound = new Map<string, Listener>();
    const all = this.config.listen.concat(addresses);
    try {
      for (const at of addresses) {
        const ipv6Only = at.host.includes(':') && all.some((o) => o.port === at.port && !o.host.includes(':'));
        const listener: Listener = { server: createProxyServer((socket) => this.proxy.accept(socket, listener.policy)), policy: listenerPolicy(at) };
        await listenOn(listener.server, at, ipv6Only);
        listener.server.on('error', (err: NodeJS.ErrnoException) => {
          // Running out of descriptors on accept is counted, not logged per client.
          if (!this.proxy.acceptFailed(err, key(at))) this.logger.error({ err, listen: key(at) }, 'listener error');
        });
        bound.set(key(at), listener);
      }
    } catch (err) {
      await Promise.all([...bound.values()].map(closeListener));
      throw err;
    }
    return bound;
  }

  /** One line: listeners, admin, config hash, backends and their shares; `extra` adds fields. */
  logStartup(extra: Record<string, unknown> = {}): void {
    const ring = describeRing(this.fleet.table) as { configHash: string; routingHash: string; backends: Array<{ share: number }> };
    // A fleet of hundreds would make one enormous line; /ring has the full list.
    const backends =
      ring.backends.length <= STARTUP_BACKENDS_LISTED
        ? { backends: ring.backends }
        : {
            backendCount: ring.backends.length,
            shareMin: ring.backends.reduce((m, b) => Math.min(m, b.share), 1),
            shareMax: ring.backends.reduce((m, b) => Math.max(m, b.share), 0),
          };
    const admin = this.adminAddress!;
    this.logger.info(
      {
        listen: this.listenAddresses.map((a) => formatHostPort(a.address, a.port)),
        admin: formatHostPort(admin.address, admin.port),
        configHash: ring.configHash,
        routingHash: ring.routingHash,
        ...backends,
        ...extra,
      },
      'ringlb started',
    );
  }
}

const sum = (values: Iterable<number>): number => {
  let total = 0;
  for (const v of values) total += v;
  return total;
};

/** Misplaced connections by the backend id they are on. */
export function misplacedById(rebalancer: Rebalancer): Map<string, number> {
  const ids = new Map<string, number>();
  for (const [u, n] of rebalancer.misplacedByUpstream()) ids.set(u.config.id, (ids.get(u.config.id) ?? 0) + n);
  return ids;
}

/**
 * A DNS schedule for `config`, counting every lookup; null when it names nothing to resolve.
 * `previous`: what the schedule it replaces knew, so a failing name keeps its last answer.
 */
function createDns(
  config: Config,
  metrics: Metrics,
  logger: Logger,
  onChange: (snapshot: Parameters<typeof effectiveBackends>[1]) => void,
  previous?: Parameters<typeof effectiveBackends>[1],
): DnsSchedule | null {
  const names = namesOf(config);
  if (names.hosts.length + names.dns.length + names.srv.length === 0) return null;
  return new DnsSchedule(
    {
      servers: config.dns.servers,
      refreshMs: config.dns.refreshMs,
      logger,
      onResult: (_name, ok) => metrics.dnsResolutionsTotal.inc({ result: ok ? 'success' : 'failure' }),
      onChange,
    },
    previous,
  );
}

function closeListener(listener: Listener): Promise<void> {
  return closeServer(listener.server);
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
