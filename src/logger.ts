// The daemon's logger: pino, JSON lines on stdout, written synchronously. An async destination
// hangs the process at exit when its stdout reader has gone away (TOOLING.md); a balancer logs
// little, so sync costs nothing.

import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';

export function createLogger(level: LogLevel): Logger {
  return pino(
    { level, base: { name: 'ringlb' }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: 1, sync: true }),
  );
}
