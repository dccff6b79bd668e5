// `workers` > 1: ringlb on node:cluster. The workers share the proxy listeners (the kernel
// spreads accepted connections, SCHED_NONE) and route identically, since routing is a pure
// function of the config. The primary owns everything that must happen once: health checks
// (verdicts are sent to every worker), the admin endpoint (metrics of all workers aggregated),
// reloads (prepared in every process, then committed everywhere or aborted everywhere),
// replacing a worker that dies, and the order of shutdown. Scrapes and reloads involve the
// workers that are ready: a dead or starting one is left out (and a starting one gets the
// config in force once ready), a hung one fails them (issue 7 items 1-4).

import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import type { Logger } from 'pino';
import { AggregatorRegistry, Gauge, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { localActive, type AdminSource } from './admin.js';
import { freezeConfig, type Config, type LogLevel } from './config.js';
import { Daemon, misplacedById, type PreparedReload, type ReloadReport } from './daemon.js';
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
  misplaced: Record<string, number>;
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

/** The workers gauges of one scrape, in a registry of its own so that concurrent scrapes share no value. */
function workerGauges(included: number, configured: number): Promise<MetricObjectWithValues<MetricValue<string>>[]> {
  const registry = new Registry();
  // Alert on ringlb_workers_ready < ringlb_workers_configured (docs/operations.md "workers").
  new Gauge({
    name: 'ringlb_workers_ready',
    help: 'Workers whose metrics this scrape includes (the others are dead or starting)',
    registers: [registry],
  }).set(included);
  new Gauge({ name: 'ringlb_workers_configured', help: 'Workers the primary keeps running', registers: [registry] }).set(configured);
  return registry.getMetricsAsJSON();
}

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
  // A failed send means the primary is gone, and 'disconnect' below ends this worker; without
  // a callback the failure would be an 'error' event that kills it with a stack trace first.
  const send = (msg: FromWorker): void => void process.send?.(msg, undefined, undefined, () => {});
  // The primary decides when to stop; a Ctrl-C reaches the whole process group.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => {});
  // The primary is gone: nobody runs health checks or reloads any more.
  process.on('disconnect', () => void (daemon?.close() ?? Promise.resolve()).then(() => process.exit(0)));

  const handle = async (msg: ToWorker): Promise<void> => {
    switch (msg.type) {
      case 'init': {
        const config = freezeConfig(msg.config);
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
          const next = freezeConfig(msg.config);
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
        const misplaced = Object.fromEntries(misplacedById(daemon.rebalancer));
        send({ type: 'reply', seq: msg.seq, ok: true, stats: { metrics, active, misplaced } });
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

/** One forked worker as the primary sees it. */
interface Member {
  readonly worker: Worker;
  /** Set once it serves, cleared when it goes: only ready workers take part in reloads and scrapes. */
  ready: boolean;
  /** The config it serves with: the one it was started on, then each one committed to it. */
  config: Config;
}

type Request = Extract<ToWorker, { seq: number }>;

/** Fork the workers, wait until all serve, and run the primary's side. Throws on a failed start. */
export async function startPrimary(config: Config, logger: Logger, logLevel: LogLevel | undefined): Promise<Primary> {
  cluster.schedulingPolicy = cluster.SCHED_NONE; // the kernel spreads accepts; no hand-off via the primary
  const members = new Map<Worker, Member>();
  const waiting = new Map<number, { readonly worker: Worker; settle: (reply: Reply | null) => void }>();
  let seq = 0;
  let stopping = false;
  let current = config;
  /** The number of workers the primary keeps running; a reload changing `workers` applies at the next start. */
  const count = workerCount(config);
  const ready = (): Member[] => [...members.values()].filter((m) => m.ready);

  /**
   * Send without ever raising an 'error' event (an unhandled one kills the primary, issue 7 item
   * 1): a worker that is not connected is skipped, and a failed write (EPIPE from a worker that
   * just died) calls `onFailure` instead.
   */
  const post = (worker: Worker, msg: ToWorker, onFailure: () => void = () => {}): void => {
    if (!worker.isConnected()) return onFailure();
    worker.send(msg, (err) => {
      if (err) onFailure();
    });
  };
  const broadcast = (msg: ToWorker): void => {
    for (const worker of members.keys()) post(worker, msg);
  };

  /**
   * Ask one worker. Resolves with null as soon as it cannot answer any more (the send failed, it
   * disconnected or exited), so nobody waits out the timeout on a dead worker; rejects when a
   * live worker does not answer within REQUEST_TIMEOUT_MS (it hangs).
   */
  const request = (worker: Worker, msg: Request): Promise<Reply | null> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(msg.seq);
        reject(new WorkerError([`worker ${worker.id}: no answer to ${msg.type} within ${REQUEST_TIMEOUT_MS} ms`]));
      }, REQUEST_TIMEOUT_MS);
      const settle = (reply: Reply | null): void => {
        clearTimeout(timer);
        waiting.delete(msg.seq);
        resolve(reply);
      };
      waiting.set(msg.seq, { worker, settle });
      post(worker, msg, () => settle(null));
    });
  /** `worker` is going: what it was asked ends now, unanswered. */
  const abandon = (worker: Worker): void => {
    const member = members.get(worker);
    if (member) member.ready = false;
    for (const entry of waiting.values()) if (entry.worker === worker) entry.settle(null);
  };

  const primaryRegistry = new Registry();
  /**
   * Stats of the ready workers. One that dies or disconnects meanwhile is left out; one that does
   * not answer fails the whole collection (a 500), rather than under-reporting a live worker.
   */
  const collect = async (): Promise<Stats[]> => {
    const replies = await Promise.all(
      ready().map(async ({ worker }) => ({ worker, reply: await request(worker, { type: 'stats', seq: ++seq }) })),
    );
    return replies.flatMap(({ worker, reply }) => {
      if (reply === null) return [];
      if (!reply.ok || !reply.stats) throw new WorkerError([`worker ${worker.id}: ${reply.lines?.join('; ') ?? 'no stats'}`]);
      return [reply.stats];
    });
  };
  /** A per-backend count of every ready worker, summed. */
  const summed = async (of: (s: Stats) => Record<string, number>): Promise<Map<string, number>> => {
    const totals = new Map<string, number>();
    for (const s of await collect()) {
      for (const [id, n] of Object.entries(of(s))) totals.set(id, (totals.get(id) ?? 0) + n);
    }
    return totals;
  };
  const admin: Pick<AdminSource, 'scrape' | 'active' | 'misplaced' | 'headers'> = {
    scrape: async () => {
      const stats = await collect();
      const all = [await primaryRegistry.getMetricsAsJSON(), await workerGauges(stats.length, count), ...stats.map((s) => s.metrics)];
      return AggregatorRegistry.aggregate(all).metrics();
    },
    active: () => summed((s) => s.active),
    misplaced: () => summed((s) => s.misplaced),
    // /metrics and /ring say when a worker is missing from them (dead or starting).
    headers: () => ({ 'X-Ringlb-Workers': `${ready().length}/${count} ready` }),
  };
  const daemon = await Daemon.start({
    config,
    logger,
    logLevel,
    registry: primaryRegistry,
    role: 'primary',
    onHealth: (id, up) => broadcast({ type: 'health', states: { [id]: up } }),
    admin,
  });

  /** Put the config in force on a worker that started on an older one; a worker that cannot take it is replaced. */
  const catchUp = (member: Member): Promise<void> =>
    daemon.serialized(async () => {
      const next = current;
      if (!member.ready || member.config === next) return;
      const { worker } = member;
      try {
        const prepared = await request(worker, { type: 'prepare', seq: ++seq, config: next });
        if (prepared === null) return;
        if (!prepared.ok) throw new WorkerError(prepared.lines ?? []);
        if ((await request(worker, { type: 'commit', seq: ++seq })) !== null) member.config = next;
      } catch (err) {
        logger.error({ worker: worker.id, errors: linesOf(err) }, 'worker cannot take the config in force; replacing it');
        worker.process.kill('SIGKILL');
      }
    });

  /** Fork one worker and resolve when it serves; reject with its error lines if it cannot. */
  const fork = (): Promise<string[]> =>
    new Promise((resolve, reject) => {
      const worker = cluster.fork();
      const member: Member = { worker, ready: false, config: current };
      members.set(worker, member);
      // A backstop: every send handles its own failure, so this only logs what else a channel reports.
      worker.on('error', (err) => logger.warn({ worker: worker.id, err }, 'worker channel error'));
      worker.on('message', (msg: FromWorker) => {
        switch (msg.type) {
          case 'hello':
            // A worker that asks while the primary stops missed the broadcast shutdown.
            if (stopping) return post(worker, { type: 'shutdown' });
            member.config = current;
            return post(worker, { type: 'init', config: current, health: daemon.fleet.healthStates(), logLevel });
          case 'ready':
            member.ready = true;
            // Verdicts broadcast while it started found no fleet to apply them to.
            post(worker, { type: 'health', states: daemon.fleet.healthStates() });
            // A worker takes no part in a reload until it is ready, so one that started during a
            // reload (or on the config a reload then replaced) gets the committed config now, in
            // the reload queue, after that reload (issue 7 item 2).
            void catchUp(member);
            return resolve(msg.listen);
          case 'failed':
            return reject(new WorkerError(msg.lines));
          case 'reply':
            return waiting.get(msg.seq)?.settle(msg);
        }
      });
      worker.once('disconnect', () => abandon(worker));
      worker.once('exit', (code, signal) => {
        abandon(worker);
        members.delete(worker);
        reject(new WorkerError([`worker ${worker.id} exited during start (${signal ?? code})`]));
        if (stopping) return;
        logger.error({ worker: worker.id, code, signal }, 'worker exited; starting a replacement');
        setTimeout(() => {
          if (stopping) return;
          fork().then(
            () => logger.info({ workers: ready().length }, 'replacement worker serving'),
            (err) => logger.error({ errors: linesOf(err) }, 'replacement worker failed to start'),
          );
        }, RESTART_DELAY_MS).unref();
      });
    });

  let listen: string[];
  try {
    listen = (await Promise.all(Array.from({ length: count }, fork)))[0]!;
  } catch (err) {
    stopping = true;
    for (const w of members.keys()) w.process.kill('SIGKILL');
    await daemon.close();
    throw err;
  }
  daemon.logStartup({ workers: count, listen });

  /**
   * Two-phase reload over the primary and the ready workers. A worker that dies on the way
   * drops out (its replacement starts on the config in force); any other failure aborts
   * everywhere. Each ready worker ends on `next`; one that became ready meanwhile is caught up.
   */
  const reload = (next: Config): Promise<ReloadReport> =>
    daemon.serialized(async () => {
      const own = await daemon.prepare(next);
      const targets = ready();
      const results = await Promise.allSettled(targets.map((m) => request(m.worker, { type: 'prepare', seq: ++seq, config: next })));
      const prepared = targets.filter((_, i) => {
        const r = results[i]!;
        return r.status === 'fulfilled' && r.value?.ok === true;
      });
      const failed = results.flatMap((r) =>
        r.status === 'rejected' ? linesOf(r.reason) : r.value === null || r.value.ok ? [] : (r.value.lines ?? []),
      );
      if (failed.length > 0) {
        await own.abort();
        await Promise.all(prepared.map((m) => request(m.worker, { type: 'abort', seq: ++seq }).catch(() => null)));
        throw new WorkerError([...new Set(failed)]);
      }
      const report = own.commit();
      current = next;
      const committed = await Promise.allSettled(prepared.map((m) => request(m.worker, { type: 'commit', seq: ++seq })));
      const reports: ReloadReport[] = [];
      committed.forEach((r, i) => {
        const member = prepared[i]!;
        if (r.status === 'rejected') {
          // In force everywhere else; the hung worker applies the commit when it gets to it.
          logger.error({ worker: member.worker.id, errors: linesOf(r.reason) }, 'worker did not confirm the reload');
        } else if (r.value?.report) {
          member.config = next;
          reports.push(r.value.report);
        }
      });
      broadcast({ type: 'health', states: daemon.fleet.healthStates() });
      // Against the count kept running, not the workers alive now (issue 7 item 4).
      if (workerCount(next) !== count) {
        logger.warn({ workers: count, configured: next.workers }, 'a change of workers takes effect at the next start');
      }
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
    const exits = [...members.keys()].map((w) => new Promise<void>((resolve) => w.once('exit', () => resolve())));
    broadcast({ type: 'shutdown' });
    stopped = Promise.all(exits).then(() => daemon.close());
    return stopped;
  };
  return { reload, daemon, stop };
}
