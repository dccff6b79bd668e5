// The command line: commander commands, output formats and exit codes (SPEC "Command line").
// Errors users see are one `path: message` line each on stderr, and exit code 1.

import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { configHash, routingHash, type Config, type LogLevel } from './config.js';
import type { Logger } from 'pino';
import { readConfigFile } from './config-file.js';
import { runWorker, startPrimary, workerCount } from './cluster.js';
import { Daemon } from './daemon.js';
import { openFileLimit, resolveMaxConnections } from './descriptors.js';
import { ConfigError, ConfigFileError, RinglbError, UsageError } from './errors.js';
import { createLogger } from './logger.js';
import { ConfigWatcher } from './watch.js';
import { effectiveBackends, namesOf } from './discovery.js';
import { DnsSchedule } from './dns-schedule.js';
import { checkRows, diffConfigs, lookupAll } from './report.js';
import { printable } from './config-show.js';

const LOG_LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Rows as aligned columns separated by two spaces. */
function table(rows: string[][]): string {
  // A loop, not Math.max(...column): 100,000 arguments overflow the stack.
  const widths = rows[0]?.map((_, c) => rows.reduce((w, r) => Math.max(w, r[c]!.length), 0)) ?? [];
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ')).join('\n');
}

const percent = (fraction: number): string => `${(fraction * 100).toFixed(1)}%`;

/** Print an error's lines on stderr and set exit code 1; rethrow anything that is not ours. */
function fail(err: unknown): void {
  if (!(err instanceof RinglbError)) throw err;
  for (const line of err.lines()) process.stderr.write(`${line}\n`);
  process.exitCode = 1;
}

/**
 * When the reader of stdout or stderr goes away (`ringlb check | head -1`), stop quietly with
 * the exit code set so far instead of dying of an unhandled EPIPE (issue 7 item 7).
 */
function exitQuietlyWhenReaderLeaves(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      process.exit();
    });
  }
}

/** Read two config files, reporting the problems of both, each line prefixed with its file. */
function readBoth(a: string, b: string): [Config, Config] {
  const lines: string[] = [];
  const read = (file: string): Config | null => {
    try {
      return readConfigFile(file);
    } catch (err) {
      if (err instanceof ConfigError) lines.push(...err.lines().map((line) => `${file}: ${line}`));
      else if (err instanceof RinglbError) lines.push(...err.lines());
      else throw err;
      return null;
    }
  };
  const [ca, cb] = [read(a), read(b)];
  if (ca === null || cb === null) throw new UsageError(lines.join('\n'));
  return [ca, cb];
}

/**
 * `config` with its backends as the daemon would have them: host names resolved and `dns`/`srv`
 * entries discovered, once. A name that does not resolve is said on stderr (the daemon keeps
 * such a backend out of service until it does).
 */
async function resolved(config: Config): Promise<Config> {
  const names = namesOf(config);
  if (names.hosts.length + names.dns.length + names.srv.length === 0) return config;
  const failed: string[] = [];
  const schedule = new DnsSchedule({
    servers: config.dns.servers,
    refreshMs: config.dns.refreshMs,
    logger: { warn: () => {}, info: () => {} } as unknown as Logger,
    onResult: (name, ok) => {
      if (!ok) failed.push(name);
    },
    onChange: () => {},
  });
  try {
    const backends = effectiveBackends(config, await schedule.apply(names));
    for (const name of new Set(failed)) process.stderr.write(`${printable(name, 253)}: does not resolve\n`);
    return { ...config, backends };
  } finally {
    schedule.stop();
  }
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function start(file: string, logLevel: LogLevel | undefined): Promise<void> {
  // Until the daemon is up, a SIGHUP must not kill the process (its default action): the
  // file is read at start anyway.
  let reload = (_trigger: string): void => {};
  let stopping = false;
  process.on('SIGHUP', () => {
    if (!stopping) reload('SIGHUP');
  });
  const config = readConfigFile(file);
  const logger = createLogger(logLevel ?? config.log.level);
  let stopNow: () => Promise<void>;
  let hurry: () => void;
  if (workerCount(config) > 1) {
    const primary = await startPrimary(config, logger, logLevel);
    reload = (trigger) => void primary.daemon.reloadFile(file, trigger, (next) => primary.reload(next));
    stopNow = () => primary.stop();
    hurry = () => void primary.stop();
  } else {
    const daemon = await Daemon.start({ config, logger, logLevel });
    // A SIGHUP for content the watcher also sees costs one more reload that reports
    // 'config unchanged': harmless, and simpler than sharing what was read.
    reload = (trigger) => void daemon.reloadFile(file, trigger);
    stopNow = () => daemon.shutdown();
    hurry = () => daemon.hurry();
  }
  let watcher: ConfigWatcher | null = null;
  try {
    watcher = new ConfigWatcher(
      file,
      () => reload('file'),
      (err) => logger.error({ err, file }, 'watching the config file failed; reload with SIGHUP'),
    );
  } catch (err) {
    // inotify limits (ENOSPC, EMFILE) or permissions: keep serving, reload by signal only.
    logger.error({ err, file }, 'cannot watch the config file; reload with SIGHUP');
  }
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: closing every connection now');
      hurry();
      return;
    }
    stopping = true;
    logger.info({ signal }, 'signal received');
    watcher?.close();
    void stopNow().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

export function createProgram(): Command {
  const program = new Command()
    .name('ringlb')
    .description('Layer-4 consistent-hashing TCP load balancer for WebSocket fleets')
    .version(version())
    .showHelpAfterError('(run ringlb --help for usage)');

  program
    .command('start')
    .description('run the daemon in the foreground')
    .requiredOption('--config <file>', 'config file (JSON)')
    .addOption(new Option('--log-level <level>', 'log level; wins over log.level in the file').choices(LOG_LEVELS))
    .action((opts: { config: string; logLevel?: LogLevel }) => start(opts.config, opts.logLevel).catch(fail));

  program
    .command('check')
    .description("validate a config; print each backend's address, weight, state and share of the hash space")
    .requiredOption('--config <file>', 'config file (JSON)')
    .option('--json', 'print JSON')
    .action(async (opts: { config: string; json?: boolean }) => {
      exitQuietlyWhenReaderLeaves();
      try {
        const file = readConfigFile(opts.config);
        const config = await resolved(file);
        const rows = checkRows(config);
        if (opts.json) {
          const maxConnections = resolveMaxConnections(config.limits.maxConnections, openFileLimit(), config.backends.length);
          const body = { valid: true, configHash: configHash(file), routingHash: routingHash(config), maxConnections, backends: rows };
          process.stdout.write(`${JSON.stringify(body)}\n`);
        } else if (rows.length > 0) {
          const cells = rows.map((r) => [r.id, r.address, String(r.weight), r.state, percent(r.share)]);
          process.stdout.write(`${table(cells)}\n`);
        }
      } catch (err) {
        if (opts.json && err instanceof RinglbError) {
          const errors =
            err instanceof ConfigError
              ? err.problems
              : [{ path: opts.config, message: err instanceof ConfigFileError ? err.detail : err.message }];
          process.stdout.write(`${JSON.stringify({ valid: false, errors })}\n`);
        }
        fail(err);
      }
    });

  program
    .command('lookup')
    .description('print where the daemon would send each client IP with every backend healthy')
    .requiredOption('--config <file>', 'config file (JSON)')
    .argument('<ip...>', 'client IP addresses')
    .action(async (ips: string[], opts: { config: string }) => {
      exitQuietlyWhenReaderLeaves();
      try {
        const config = await resolved(readConfigFile(opts.config));
        const found = lookupAll(config, ips);
        process.stdout.write(ips.map((ip, i) => `${ip} ${found[i] ?? '-'}\n`).join(''));
      } catch (err) {
        fail(err);
      }
    });

  program
    .command('diff')
    .description("print each backend's share before and after, and the exact fraction of the hash space that moves")
    .argument('<old>', 'the config in force (JSON)')
    .argument('<new>', 'the config to apply (JSON)')
    .option('--json', 'print JSON')
    .action(async (oldFile: string, newFile: string, opts: { json?: boolean }) => {
      exitQuietlyWhenReaderLeaves();
      try {
        const [before, after] = readBoth(oldFile, newFile);
        const diff = diffConfigs(await resolved(before), await resolved(after));
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(diff)}\n`);
          return;
        }
        const rows = diff.backends.map((b) => [b.id, percent(b.before), percent(b.after)]);
        if (rows.length > 0) process.stdout.write(`${table(rows)}\n`);
        // Rendezvous (and a change of algorithm) move keys by an expectation, not a count.
        const expected = diff.expected ? ' (expected)' : '';
        process.stdout.write(`moved: ${percent(diff.moved)} of the hash space${expected}\n`);
      } catch (err) {
        fail(err);
      }
    });

  program
    .command('demo')
    .description('local WebSocket backends behind ringlb, simulated clients, and what a ring change moves')
    // Loaded on demand: the demo brings the ws package, which the daemon never needs (its
    // load costs the daemon ~4 MB of RSS; issue 13).
    .action(() =>
      import('./demo.js')
        .then(({ runDemo }) => runDemo())
        .catch(fail),
    );

  return program;
}

if (cluster.isWorker) runWorker();
else await createProgram().parseAsync(process.argv);
