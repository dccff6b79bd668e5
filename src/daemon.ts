// The daemon's wiring: one config in force -> fleet (ring + health) -> proxy listeners and the
// admin endpoint. Everything it uses is passed in (logger, registry), so tests can observe it
// and two daemons can run in one process.

import type { Server as HttpServer } from 'node:http';
import type { AddressInfo, Server } from 'node:net';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { formatHostPort } from './address.js';
import { createAdminServer, describeRing } from './admin.js';
import type { Config } from './config.js';
import { Fleet } from './fleet.js';
import { listenOn } from './listen.js';
import { createMetrics, type Metrics } from './metrics.js';
import { Proxy, createProxyServer } from './proxy.js';

export interface DaemonOptions {
  readonly config: Config;
  readonly logger: Logger;
  /** Defaults to a fresh registry; never the global one. */
  readonly registry?: Registry;
}

export class Daemon {
  private constructor(
    readonly fleet: Fleet,
    readonly proxy: Proxy,
    readonly metrics: Metrics,
    private readonly listeners: Server[],
    private readonly admin: HttpServer,
    private readonly logger: Logger,
  ) {}

  /**
   * Bind every listener and the admin endpoint, then serve. If any address cannot be bound,
   * whatever was bound is closed again and the ListenError is thrown.
   */
  static async start({ config, logger, registry = new Registry() }: DaemonOptions): Promise<Daemon> {
    const metrics = createMetrics(registry);
    const fleet = new Fleet(config, metrics, logger);
    const table = (): typeof fleet.table => fleet.table;
    const proxy = new Proxy({ table, metrics, logger });
    const bound: Server[] = [];
    try {
      for (const at of config.listen) bound.push(await listenOn(createProxyServer(proxy.accept), at));
      const admin = await listenOn(createAdminServer({ table, metrics, logger }), config.metrics);
      const daemon = new Daemon(fleet, proxy, metrics, bound, admin, logger);
      daemon.logStartup();
      return daemon;
    } catch (err) {
      fleet.stop();
      await Promise.all(bound.map(closeServer));
      throw err;
    }
  }

  /** The bound proxy addresses, in the order of `listen` (port 0 resolved). */
  get listenAddresses(): AddressInfo[] {
    return this.listeners.map((s) => s.address() as AddressInfo);
  }

  get adminAddress(): AddressInfo {
    return this.admin.address() as AddressInfo;
  }

  /** Stop accepting, stop health checks, close every open connection and the admin endpoint. */
  async close(): Promise<void> {
    const closing = this.listeners.map(closeServer);
    this.fleet.stop();
    for (const client of this.proxy.connecting) client.destroy();
    for (const splice of this.proxy.open.keys()) {
      splice.client.destroy();
      splice.backend.destroy();
    }
    await Promise.all(closing);
    this.admin.closeAllConnections();
    await closeServer(this.admin);
    this.logger.info('stopped');
  }

  private logStartup(): void {
    const ring = describeRing(this.fleet.table) as { configHash: string; backends: unknown[] };
    this.logger.info(
      {
        listen: this.listenAddresses.map((a) => formatHostPort(a.address, a.port)),
        admin: formatHostPort(this.adminAddress.address, this.adminAddress.port),
        configHash: ring.configHash,
        backends: ring.backends,
      },
      'ringlb started',
    );
  }
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
