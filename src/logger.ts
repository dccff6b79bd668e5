// The daemon's logger: pino, JSON lines on stdout, written synchronously. An async destination
// hangs the process at exit when its stdout reader has gone away (TOOLING.md); a balancer logs
// little, so sync costs nothing.

import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';

/** `fields` are added to every line (a worker adds its number). */
export function createLogger(level: LogLevel, fields: Record<string, unknown> = {}): Logger {
  return pino(
    { level, base: { name: 'ringlb', ...fields }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: 1, sync: true }),
  );
}
