// Parse and validate a config into a frozen, typed Config with every default filled in. Pure:
// the file is read at the edge (config-file.ts). Every problem is collected, each as
// `path: message`, so one run of `ringlb check` shows them all.

import { createHash } from 'node:crypto';
import { formatHostPort, parseIp } from './address.js';
import { ConfigError, ConfigFileError, type ConfigProblem } from './errors.js';
import { MAX_RING_MEMBERS } from './ring.js';

export interface ListenConfig {
  readonly host: string;
  readonly port: number;
}

export interface BackendConfig {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly weight: number;
  readonly drain: boolean;
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Config {
  readonly listen: readonly ListenConfig[];
  readonly backends: readonly BackendConfig[];
  readonly hashing: {
    readonly vnodes: number;
    readonly ipv4Prefix: number;
    readonly ipv6Prefix: number;
    readonly balanceFactor: null;
  };
  readonly healthCheck: {
    readonly type: 'tcp' | 'none';
    readonly intervalMs: number;
    readonly timeoutMs: number;
    readonly rise: number;
    readonly fall: number;
  };
  readonly timeouts: { readonly connectMs: number; readonly idleMs: number };
  readonly retries: number;
  /** Connections to a backend removed from the config are closed after this long; 0 = never. */
  readonly drainTimeoutMs: number;
  /** At shutdown, open connections get this long to finish before they are closed. */
  readonly shutdownTimeoutMs: number;
  readonly metrics: ListenConfig;
  readonly log: { readonly level: LogLevel };
  /** Processes serving the listeners (node:cluster); "auto" = one per CPU. 1 = no cluster. */
  readonly workers: number | 'auto';
}

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
/** Keys of SPEC that later versions implement: rejected with a clear word rather than ignored. */
const NOT_YET = ['limits', 'proxyProtocol'];
/** A ring larger than this is almost certainly a typo in vnodes or weight (memory ~ 16 B/point). */
export const MAX_RING_POINTS = 10_000_000;
const ID_PATTERN = /^[\x21-\x7e]{1,128}$/;
const HOST_LABEL = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;
/** An IP literal, or a DNS name whose last label is not all digits ("0" or "0x7f.1" are not names). */
function isHost(value: string): boolean {
  if (parseIp(value) !== null) return true;
  const labels = value.length <= 253 ? value.split('.') : [];
  return labels.length > 0 && labels.every((l) => HOST_LABEL.test(l)) && !/^\d+$|^0x/i.test(labels[labels.length - 1]!);
}
const isId = (value: string): boolean => ID_PATTERN.test(value);

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown): string => (v === undefined ? 'nothing' : JSON.stringify(v));

/** Collects problems while reading one JSON value; every reader returns a usable value. */
class Reader {
  readonly problems: ConfigProblem[] = [];

  problem(path: string, message: string): void {
    this.problems.push({ path, message });
  }

  /** The object at `path`, with unknown keys reported; `{}` when it is not an object. */
  object(value: Json | undefined, path: string, known: readonly string[]): JsonObject {
    if (!isObject(value)) {
      this.problem(path, `must be an object, got ${show(value)}`);
      return {};
    }
    for (const key of Object.keys(value)) {
      if (known.includes(key)) continue;
      if (NOT_YET.includes(key) && path === 'config') {
        this.problem(key, 'is not implemented in this version of ringlb yet; remove it');
      } else {
        const distance = (k: string): number => editDistance(k.toLowerCase(), key.toLowerCase());
        const near = known.filter((k) => distance(k) <= 2).sort((a, b) => distance(a) - distance(b))[0];
        const hint = near ? `did you mean ${JSON.stringify(near)}?` : `known keys: ${known.join(', ')}`;
        this.problem(join(path, key), `unknown key (${hint})`);
      }
    }
    return value;
  }

  /** An integer in [min, max], or `fallback` when absent. */
  int(obj: JsonObject, key: string, path: string, min: number, max: number, fallback?: number): number {
    const value = obj[key];
    const at = join(path, key);
    if (value === undefined) {
      if (fallback === undefined) this.problem(at, 'is required');
      return fallback ?? min;
    }
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
      this.problem(at, `must be an integer ${range}, got ${show(value)}`);
      return fallback ?? min;
    }
    return value;
  }

  /** A string that `valid` accepts, or `fallback` when absent. */
  string(obj: JsonObject, key: string, path: string, valid: (v: string) => boolean, what: string, fallback?: string): string {
    const value = obj[key];
    const at = join(path, key);
    if (value === undefined) {
      if (fallback === undefined) this.problem(at, 'is required');
      return fallback ?? '';
    }
    if (typeof value !== 'string' || !valid(value)) {
      this.problem(at, `must be ${what}, got ${show(value)}`);
      return fallback ?? '';
    }
    return value;
  }

  /** One of `choices`, or `fallback` when absent. */
  choice<T extends string>(obj: JsonObject, key: string, path: string, choices: readonly T[], fallback: T): T {
    const value = obj[key];
    if (value === undefined) return fallback;
    if (typeof value !== 'string' || !choices.includes(value as T)) {
      this.problem(join(path, key), `must be one of ${choices.join(', ')}, got ${show(value)}`);
      return fallback;
    }
    return value as T;
  }

  boolean(obj: JsonObject, key: string, path: string, fallback: boolean): boolean {
    const value = obj[key];
    if (value === undefined) return fallback;
    if (typeof value !== 'boolean') {
      this.problem(join(path, key), `must be true or false, got ${show(value)}`);
      return fallback;
    }
    return value;
  }
}

/** An absent optional section reads as `{}` (all defaults); `null` is reported, not defaulted. */
const orEmpty = (value: Json | undefined): Json => (value === undefined ? {} : value);
/** Levenshtein distance, for "did you mean" hints on typos. */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length]!;
}

const join = (path: string, key: string): string => (path === 'config' ? key : `${path}.${key}`);
const HOST_WHAT = 'an IP address or host name';

function readAddress(r: Reader, value: Json | undefined, path: string, defaults?: ListenConfig): ListenConfig {
  if (!isObject(value)) {
    r.problem(path, `must be an object with host and port, got ${show(value)}`);
    return defaults ?? { host: '', port: 0 };
  }
  const obj = r.object(value, path, ['host', 'port']);
  return {
    host: r.string(obj, 'host', path, isHost, HOST_WHAT, defaults?.host),
    port: r.int(obj, 'port', path, 0, 65535, defaults?.port),
  };
}

function readListen(r: Reader, value: Json | undefined): ListenConfig[] {
  if (value === undefined) {
    r.problem('listen', 'is required');
    return [];
  }
  if (!Array.isArray(value)) return [readAddress(r, value, 'listen')];
  if (value.length === 0) r.problem('listen', 'must name at least one address');
  const listen = value.map((v, i) => readAddress(r, v, `listen[${i}]`));
  listen.forEach((l, i) => {
    const first = listen.findIndex((o) => o.host === l.host && o.port === l.port);
    if (first < i) r.problem(`listen[${i}]`, `duplicate of listen[${first}]`);
  });
  return listen;
}

function readBackends(r: Reader, value: Json | undefined): BackendConfig[] {
  if (value === undefined) {
    r.problem('backends', 'is required (it may be [])');
    return [];
  }
  if (!Array.isArray(value)) {
    r.problem('backends', `must be an array, got ${show(value)}`);
    return [];
  }
  if (value.length > MAX_RING_MEMBERS) r.problem('backends', `at most ${MAX_RING_MEMBERS} backends`);
  const seen = new Map<string, number>();
  return value.map((v, i) => {
    const path = `backends[${i}]`;
    const problemsBefore = r.problems.length;
    if (!isObject(v)) {
      r.problem(path, `must be an object with host and port, got ${show(v)}`);
      return { id: '', host: '', port: 0, weight: 0, drain: false };
    }
    const obj = r.object(v, path, ['id', 'host', 'port', 'weight', 'drain']);
    const host = r.string(obj, 'host', path, isHost, HOST_WHAT);
    const port = r.int(obj, 'port', path, 1, 65535);
    const id =
      obj.id === undefined
        ? formatHostPort(host, port)
        : r.string(obj, 'id', path, isId, '1 to 128 printable ASCII characters without spaces');
    const earlier = problemsBefore === r.problems.length ? seen.get(id) : undefined;
    if (earlier !== undefined) r.problem(`${path}.id`, `duplicate id ${show(id)} (also backends[${earlier}])`);
    else if (problemsBefore === r.problems.length) seen.set(id, i);
    return {
      id,
      host,
      port,
      weight: r.int(obj, 'weight', path, 0, 10_000, 1),
      drain: r.boolean(obj, 'drain', path, false),
    };
  });
}

function readWorkers(r: Reader, value: Json | undefined): number | 'auto' {
  if (value === undefined) return 1;
  if (value === 'auto') return value;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 256) {
    r.problem('workers', `must be an integer from 1 to 256 or "auto", got ${show(value)}`);
    return 1;
  }
  return value;
}

/** Validate a parsed JSON value. Throws ConfigError listing every problem. */
export function validateConfig(value: unknown): Config {
  if (!isObject(value)) throw new ConfigError([{ path: 'config', message: `must be a JSON object, got ${show(value)}` }]);
  const r = new Reader();
  const root = r.object(value as Json, 'config', [
    'listen',
    'backends',
    'hashing',
    'healthCheck',
    'timeouts',
    'retries',
    'drainTimeoutMs',
    'shutdownTimeoutMs',
    'metrics',
    'log',
    'workers',
  ]);
  const listen = readListen(r, root.listen);
  const backends = readBackends(r, root.backends);

  const h = r.object(orEmpty(root.hashing), 'hashing', ['vnodes', 'ipv4Prefix', 'ipv6Prefix', 'balanceFactor']);
  const hashing = {
    vnodes: r.int(h, 'vnodes', 'hashing', 1, 10_000, 160),
    ipv4Prefix: r.int(h, 'ipv4Prefix', 'hashing', 0, 32, 32),
    ipv6Prefix: r.int(h, 'ipv6Prefix', 'hashing', 0, 128, 64),
    balanceFactor: null,
  };
  if (h.balanceFactor !== undefined && h.balanceFactor !== null) {
    r.problem('hashing.balanceFactor', 'bounded loads are not implemented in this version of ringlb yet; use null');
  }
  const points = backends.reduce((sum, b) => sum + b.weight * hashing.vnodes, 0);
  if (points > MAX_RING_POINTS) {
    r.problem('hashing.vnodes', `vnodes x total weight is ${points} ring points, more than ${MAX_RING_POINTS}`);
  }

  const hc = r.object(orEmpty(root.healthCheck), 'healthCheck', ['type', 'intervalMs', 'timeoutMs', 'rise', 'fall']);
  const healthCheck = {
    type: r.choice(hc, 'type', 'healthCheck', ['tcp', 'none'] as const, 'tcp'),
    intervalMs: r.int(hc, 'intervalMs', 'healthCheck', 10, 3_600_000, 2000),
    timeoutMs: r.int(hc, 'timeoutMs', 'healthCheck', 1, 3_600_000, 1000),
    rise: r.int(hc, 'rise', 'healthCheck', 1, 1000, 2),
    fall: r.int(hc, 'fall', 'healthCheck', 1, 1000, 3),
  };

  const t = r.object(orEmpty(root.timeouts), 'timeouts', ['connectMs', 'idleMs']);
  const timeouts = {
    connectMs: r.int(t, 'connectMs', 'timeouts', 1, 3_600_000, 3000),
    idleMs: r.int(t, 'idleMs', 'timeouts', 0, 2_147_483_647, 0),
  };

  const retries = r.int(root, 'retries', 'config', 0, 100, 2);
  const drainTimeoutMs = r.int(root, 'drainTimeoutMs', 'config', 0, 2_147_483_647, 0);
  const shutdownTimeoutMs = r.int(root, 'shutdownTimeoutMs', 'config', 0, 2_147_483_647, 30_000);
  const metrics = readAddress(r, orEmpty(root.metrics), 'metrics', { host: '127.0.0.1', port: 9180 });
  const l = r.object(orEmpty(root.log), 'log', ['level']);
  const log = { level: r.choice(l, 'level', 'log', LOG_LEVELS, 'info') };
  const workers = readWorkers(r, root.workers);

  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return deepFreeze({
    listen,
    backends,
    hashing,
    healthCheck,
    timeouts,
    retries,
    drainTimeoutMs,
    shutdownTimeoutMs,
    metrics,
    log,
    workers,
  });
}

/** Parse config text (JSON) from `file` and validate it. Throws ConfigFileError or ConfigError. */
export function parseConfig(text: string, file: string): Config {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ConfigFileError(file, `not valid JSON: ${describeJsonError(text, (err as Error).message)}`);
  }
  return validateConfig(value);
}

/** Turn V8's JSON.parse message into `reason (line L, column C)`. */
function describeJsonError(text: string, message: string): string {
  const offset = jsonErrorOffset(text, message);
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - before.lastIndexOf('\n');
  const reason = message
    .replace(/ in JSON at position \d+.*$/s, '')
    .replace(/^(Unexpected token '.+?'),.*$/s, '$1');
  return `${reason} (line ${line}, column ${column})`;
}

/**
 * Offset of the character JSON.parse stumbled on. Most V8 messages say "at position N"; the
 * "Unexpected token" ones (Node 20) do not, so find the longest prefix of `text` that is still
 * the valid beginning of a JSON document: such a prefix parses, or fails only at its very end.
 */
function jsonErrorOffset(text: string, message: string): number {
  const position = /at position (\d+)/.exec(message);
  if (position) return Number(position[1]);
  if (message.includes('Unexpected end of JSON input')) return text.length;
  const validStart = (length: number): boolean => {
    try {
      JSON.parse(text.slice(0, length));
      return true;
    } catch (err) {
      const m = (err as Error).message;
      const at = /at position (\d+)/.exec(m);
      return m.includes('Unexpected end of JSON input') || (at !== null && Number(at[1]) >= length);
    }
  };
  let lo = 0; // the longest valid start found so far
  let hi = text.length; // a length known not to be a valid start
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (validStart(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/**
 * Digest of the validated config with defaults filled in: two instances reporting the same hash
 * route identically. Backends are sorted by id first, since their order never changes the ring.
 */
export function configHash(config: Config): string {
  const canonical = { ...config, backends: [...config.backends].sort((a, b) => (a.id < b.id ? -1 : 1)) };
  return createHash('sha256').update(canonicalJson(canonical)).digest('hex').slice(0, 16);
}

/** JSON with object keys sorted, so equal configs give equal text. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (isObject(value)) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

