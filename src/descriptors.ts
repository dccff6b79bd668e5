// File descriptors: the process's limit, and what `limits.maxConnections: "auto"` resolves to.
// Each proxied client costs two descriptors (client and backend sockets); the rest of the
// process (stdio, listeners, the admin endpoint and its clients, the config watcher, one health
// check per backend at most) is covered by a reserve, so ringlb refuses a client cleanly before
// accept() or connect() would fail with EMFILE.

import { readFileSync } from 'node:fs';

/** Descriptors kept back from `auto` for everything that is not a client pair. */
export const FIXED_RESERVE = 64;

/**
 * The soft RLIMIT_NOFILE of this process (Node raises it to the hard limit at start-up), or
 * null where it cannot be read (no /proc) or is unlimited.
 */
export function openFileLimit(): number | null {
  let text: string;
  try {
    text = readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return null;
  }
  const soft = /^Max open files\s+(\S+)/m.exec(text)?.[1];
  const n = soft === undefined ? NaN : Number(soft);
  return Number.isSafeInteger(n) && n > 0 ? n : null;
}

/**
 * The connection limit in force: an explicit number as given (0 = unlimited), or for `auto`
 * two descriptors per client out of `limit` less the reserve (FIXED_RESERVE plus one per
 * backend, for its health check); at least 1. An unknown limit resolves `auto` to 0.
 */
export function resolveMaxConnections(setting: number | 'auto', limit: number | null, backends: number): number {
  if (setting !== 'auto') return setting;
  if (limit === null) return 0;
  return Math.max(1, Math.floor((limit - FIXED_RESERVE - backends) / 2));
}
