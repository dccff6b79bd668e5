// `workers` > 1: ringlb on node:cluster. The workers share the proxy listeners (the kernel
// spreads accepted connections, SCHED_NONE) and route identically, since routing is a pure
// function of the config. The primary owns everything that must happen once: health checks
// (verdicts are sent to every worker), the admin endpoint (metrics of all workers aggregated),
// reloads (prepared in every process, then committed everywhere or aborted everywhere),
// replacing a worker that dies, and the order of shutdown.

import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import type { Logger } from 'pino';
import { AggregatorRegistry, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { localActive } from './admin.js';
import { validateConfig, type Config, type LogLevel } from './config.js';
import { Daemon, type PreparedReload, type ReloadReport } from './daemon.js';
import { RinglbError, WorkerError } from './errors.js';
import { createLogger } from './logger.js';

/** How long the primary waits for a worker to answer a request before giving up on it. */
const REQUEST_TIMEOUT_MS = 10_000;
/** A worker that dies is replaced after this pause, so a crash loop does not spin. */
const RESTART_DELAY_MS = 500;

type ToWorker =
  | { type: 'init'; config: Config; health: Record<string, boolean>; logLevel: LogLevel | undefined }
  | { type: 'prepare'; seq: number; config: Config }
  | { type: 'commit'; seq: number }
  | { type: 'abort'; seq: number }
  | { type: 'stats'; seq: number }
  | { type: 'health'; states: Record<string, boolean> }
  | { type: 'shutdown' }
  | { type: 'hurry' };

interface Stats {
  metrics: MetricObjectWithValues<MetricValue<string>>[];
  active: Record<string, number>;
}

type FromWorker =
  | { type: 'hello' }
  | { type: 'ready'; listen: string[] }
  | { type: 'failed'; lines: string[] }
  | Reply;

/** The answer to a request: `ok` with what was asked for, or the problems as lines. */
interface Reply {
  type: 'reply';
  seq: number;
  ok: boolean;
  lines?: string[];
  report?: ReloadReport;
  stats?: Stats;
}

const linesOf = (err: unknown): string[] =>
  err instanceof RinglbError ? err.lines() : [String((err as Error)?.message ?? err)];

/** The number of workers a config asks for. */
export function workerCount(config: Config): number {
  return config.workers === 'auto' ? availableParallelism() : config.workers;
}

// ---------------------------------------------------------------------------------------------
// Worker

/** Run this process as a worker: wait for the primary's config, then serve its listeners. */
export function runWorker(): void {
  let daemon: Daemon | null = null;
  let pending: PreparedReload | null = null;
  let registry: Registry | null = null;
  const send = (msg: FromWorker): void => void process.send?.(msg);
  // The primary decides when to stop; a Ctrl-C reaches the whole process group.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => {});
  // The primary is gone: nobody runs health checks or reloads any more.
  process.on('disconnect', () => void (daemon?.close() ?? Promise.resolve()).then(() => process.exit(0)));

  const handle = async (msg: ToWorker): Promise<void> => {
    switch (msg.type) {
      case 'init': {
        const config = validateConfig(msg.config);
        const logger = createLogger(msg.logLevel ?? config.log.level, { worker: cluster.worker?.id });
        registry = new Registry();
        try {
          daemon = await Daemon.start({ config, logger, registry, logLevel: msg.logLevel, role: 'worker' });
        } catch (err) {
          send({ type: 'failed', lines: linesOf(err) });
          process.exit(1);
        }
        daemon.fleet.setHealth(msg.health);
        send({ type: 'ready', listen: daemon.listenAddresses.map((a) => `${a.address}:${a.port}`) });
        return;
      }
      case 'prepare':
        try {
          const next = validateConfig(msg.config);
          pending = await daemon!.serialized(() => daemon!.prepare(next));
          send({ type: 'reply', seq: msg.seq, ok: true });
        } catch (err) {
          send({ type: 'reply', seq: msg.seq, ok: false, lines: linesOf(err) });
        }
        return;
      case 'commit': {
        const report = pending!.commit();
        pending = null;
        send({ type: 'reply', seq: msg.seq, ok: true, report });
        return;
      }
      case 'abort':
        await pending?.abort();
        pending = null;
        send({ type: 'reply', seq: msg.seq, ok: true });
        return;
      case 'stats': {
        if (!daemon || !registry) {
          send({ type: 'reply', seq: msg.seq, ok: false, lines: ['worker not started yet'] });
          return;
        }
        const metrics = await registry.getMetricsAsJSON();
        const active = Object.fromEntries(localActive(daemon.fleet.table));
        send({ type: 'reply', seq: msg.seq, ok: true, stats: { metrics, active } });
        return;
      }
      case 'health':
        daemon?.fleet.setHealth(msg.states);
        return;
      case 'shutdown':
        await daemon?.shutdown();
        process.exit(0);
        return;
      case 'hurry':
        daemon?.hurry();
        return;
    }
  };
  process.on('message', (msg: ToWorker) => void handle(msg));
  // Messages sent before this listener existed would be lost: ask for the config only now.
  send({ type: 'hello' });
}

// ---------------------------------------------------------------------------------------------
// Primary

export interface Primary {
  /** Validate-and-apply everywhere, all or nothing. */
  reload(next: Config): Promise<ReloadReport>;
  readonly daemon: Daemon;
  /** First call: graceful shutdown of every worker, then exit; second call: hurry them. */
  stop(): Promise<void>;
}

/** Fork the workers, wait until all serve, and run the primary's side. Throws on a failed start. */
export async function startPrimary(config: Config, logger: Logger, logLevel: LogLevel | undefined): Promise<Primary> {
  cluster.schedulingPolicy = cluster.SCHED_NONE; // the kernel spreads accepts; no hand-off via the primary
  const workers = new Set<Worker>();
  const waiting = new Map<number, { resolve: (m: FromWorker) => void; reject: (e: Error) => void }>();
  let seq = 0;
  let stopping = false;
  let current = config;

  const request = (worker: Worker, msg: ToWorker & { seq: number }): Promise<Reply> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(msg.seq);
        reject(new WorkerError([`worker ${worker.id}: no answer to ${msg.type} within ${REQUEST_TIMEOUT_MS} ms`]));
      }, REQUEST_TIMEOUT_MS);
      waiting.set(msg.seq, {
        resolve: (m) => {
          clearTimeout(timer);
          waiting.delete(msg.seq);
          resolve(m as Reply);
        },
        reject,
      });
      worker.send(msg);
    });
  const broadcast = (msg: ToWorker): void => {
    for (const w of workers) if (w.isConnected()) w.send(msg);
  };

  const primaryRegistry = new Registry();
  const collect = async (): Promise<Stats[]> =>
    Promise.all(
      [...workers].map(async (w) => {
        const reply = await request(w, { type: 'stats', seq: ++seq });
        if (!reply.ok || !reply.stats) throw new WorkerError([`worker ${w.id}: ${reply.lines?.join('; ') ?? 'no stats'}`]);
        return reply.stats;
      }),
    );
  const daemon = await Daemon.start({
    config,
    logger,
    logLevel,
    registry: primaryRegistry,
    role: 'primary',
    onHealth: (id, up) => broadcast({ type: 'health', states: { [id]: up } }),
    admin: {
      // A worker that does not answer fails the scrape (500) rather than under-reporting.
      scrape: async () => {
        const stats = await collect();
        const all = [await primaryRegistry.getMetricsAsJSON(), ...stats.map((s) => s.metrics)];
        return AggregatorRegistry.aggregate(all).metrics();
      },
      active: async () => {
        const totals = new Map<string, number>();
        for (const s of await collect()) {
          for (const [id, n] of Object.entries(s.active)) totals.set(id, (totals.get(id) ?? 0) + n);
        }
        return totals;
      },
    },
  });

  /** Fork one worker and resolve when it serves; reject with its error lines if it cannot. */
  const fork = (): Promise<string[]> =>
    new Promise((resolve, reject) => {
      const worker = cluster.fork();
      workers.add(worker);
      worker.on('message', (msg: FromWorker) => {
        if (msg.type === 'hello') {
          const init: ToWorker = { type: 'init', config: current, health: daemon.fleet.healthStates(), logLevel };
          worker.send(init);
        } else if (msg.type === 'reply') waiting.get(msg.seq)?.resolve(msg);
        else if (msg.type === 'ready') resolve(msg.listen);
        else if (msg.type === 'failed') reject(new WorkerError(msg.lines));
      });
      worker.once('exit', (code, signal) => {
        workers.delete(worker);
        reject(new WorkerError([`worker ${worker.id} exited during start (${signal ?? code})`]));
        if (stopping) return;
        logger.error({ worker: worker.id, code, signal }, 'worker exited; starting a replacement');
        setTimeout(() => {
          if (stopping) return;
          fork().then(
            () => logger.info({ workers: workers.size }, 'replacement worker serving'),
            (err) => logger.error({ errors: linesOf(err) }, 'replacement worker failed to start'),
          );
        }, RESTART_DELAY_MS).unref();
      });
    });

  const count = workerCount(config);
  let listen: string[];
  try {
    listen = (await Promise.all(Array.from({ length: count }, fork)))[0]!;
  } catch (err) {
    stopping = true;
    for (const w of workers) w.process.kill('SIGKILL');
    await daemon.close();
    throw err;
  }
  daemon.logStartup({ workers: count, listen });

  const reload = (next: Config): Promise<ReloadReport> =>
    daemon.serialized(async () => {
      const own = await daemon.prepare(next);
      const targets = [...workers];
      const results = await Promise.allSettled(targets.map((w) => request(w, { type: 'prepare', seq: ++seq, config: next })));
      const failed = results.flatMap((r) =>
        r.status === 'rejected' ? linesOf(r.reason) : r.value.ok ? [] : (r.value.lines ?? []),
      );
      if (failed.length > 0) {
        await own.abort();
        await Promise.all(
          targets.map((w, i) =>
            results[i]!.status === 'fulfilled' ? request(w, { type: 'abort', seq: ++seq }).catch(() => {}) : null,
          ),
        );
        throw new WorkerError([...new Set(failed)]);
      }
      const report = own.commit();
      current = next;
      const committed = await Promise.all(targets.map((w) => request(w, { type: 'commit', seq: ++seq })));
      broadcast({ type: 'health', states: daemon.fleet.healthStates() });
      if (workerCount(next) !== targets.length) {
        logger.warn({ workers: targets.length, configured: next.workers }, 'a change of workers takes effect at the next start');
      }
      const reports = committed.map((c) => c.report!);
      return {
        ...report,
        misplaced: reports.reduce((sum, r) => sum + r.misplaced, 0),
        listen: reports[0]?.listen ?? [],
      };
    });

  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    if (stopped) {
      broadcast({ type: 'hurry' });
      return stopped;
    }
    stopping = true;
    daemon.beginShutdown();
    const exits = [...workers].map((w) => new Promise<void>((resolve) => w.once('exit', () => resolve())));
    broadcast({ type: 'shutdown' });
    stopped = Promise.all(exits).then(() => daemon.close());
    return stopped;
  };
  return { reload, daemon, stop };
}
