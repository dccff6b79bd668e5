// Parse and validate a config into a frozen, typed Config with every default filled in. Pure:
// the file is read at the edge (config-file.ts). Every problem is collected, each as
// `path: message`, so one run of `ringlb check` shows them all.

import { createHash } from 'node:crypto';
import { formatHostPort, parseIp } from './address.js';
import { memberPath, preview, printable, quote } from './config-show.js';
import { ConfigError, ConfigFileError, type ConfigProblem } from './errors.js';
import type { Algorithm } from './balancer.js';
import type { DiscoveryEntry } from './discovery.js';
import { DEFAULT_TABLE_SIZE } from './maglev.js';
import { MAX_RING_MEMBERS } from './ring.js';

export interface ListenConfig {
  readonly host: string;
  readonly port: number;
}

export type ProxyProtocolVersion = 'off' | 'v1' | 'v2';

export interface ListenerConfig extends ListenConfig {
  /** CIDRs of trusted balancers in front; null = not behind a balancer (no PROXY header read). */
  readonly acceptProxy: readonly string[] | null;
}

export interface BackendConfig {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly weight: number;
  readonly drain: boolean;
  /** Resolved: the backend's own value, else the top-level one. */
  readonly proxyProtocol: ProxyProtocolVersion;
  /** Resolved like proxyProtocol; [] = the kernel chooses the source address. */
  readonly sourceAddresses: readonly string[];
  /** The DNS name `host` was resolved from (backends in force only; a check's default Host). */
  readonly hostName?: string;
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Config {
  readonly listen: readonly ListenerConfig[];
  /** The backends the file names (a host may be a DNS name, resolved on a schedule). */
  readonly backends: readonly BackendConfig[];
  /** `backends[]` entries with `dns` or `srv`: backends discovered from DNS. */
  readonly discovery: readonly DiscoveryEntry[];
  readonly dns: { readonly refreshMs: number; readonly servers: readonly string[] };
  readonly hashing: {
    /** `ring` (ketama-style), `rendezvous` (weighted HRW) or `maglev` (lookup table); docs/algorithm.md. */
    readonly algorithm: Algorithm;
    /** Ring points per unit of weight (ring only). */
    readonly vnodes: number;
    /** Entries of the Maglev table, a prime (maglev only). */
    readonly tableSize: number;
    readonly ipv4Prefix: number;
    readonly ipv6Prefix: number;
    /** Bounded loads (arXiv:1608.01350): null = off, else a factor > 1. */
    readonly balanceFactor: number | null;
  };
  readonly healthCheck: {
    readonly type: 'tcp' | 'websocket' | 'none';
    readonly intervalMs: number;
    readonly timeoutMs: number;
    readonly rise: number;
    readonly fall: number;
    /** Open connections of a backend marked down: `keep` them, or `close` them (spread). */
    readonly onDown: 'keep' | 'close';
    /** Failed connects of real traffic count toward `fall`. */
    readonly passive: boolean;
    /** For `websocket` checks: the request path and Host header (null = the backend's host). */
    readonly path: string;
    readonly hostHeader: string | null;
  };
  readonly rebalance: {
    /** Close misplaced connections, paced over windowMs, so their clients reconnect home. */
    readonly rehome: boolean;
    readonly windowMs: number;
    /** Bulk closes ringlb makes itself are spread in random order over this long; 0 = at once. */
    readonly closeSpreadMs: number;
  };
  readonly timeouts: { readonly connectMs: number; readonly idleMs: number; readonly proxyHeaderMs: number };
  readonly retries: number;
  /** Client connections open at once: "auto" = what the descriptor limit allows; 0 = unlimited. */
  readonly limits: { readonly maxConnections: number | 'auto'; readonly maxConnectionsPerIp: number };
  /** Connections to a backend removed from the config are closed after this long; 0 = never. */
  readonly drainTimeoutMs: number;
  /** At shutdown, open connections get this long to finish before they are closed. */
  readonly shutdownTimeoutMs: number;
  /** PROXY protocol header sent to backends that do not set their own. */
  readonly proxyProtocol: ProxyProtocolVersion;
  /** Source addresses for backends that do not set their own; [] = the kernel chooses. */
  readonly sourceAddresses: readonly string[];
  readonly metrics: ListenConfig;
  /** `connections`: one info line per closed connection (like HAProxy's option tcplog). */
  readonly log: { readonly level: LogLevel; readonly connections: boolean };
  /** Processes serving the listeners (node:cluster); "auto" = one per CPU. 1 = no cluster. */
  readonly workers: number | 'auto';
}

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const PROXY_VERSIONS: readonly ProxyProtocolVersion[] = ['off', 'v1', 'v2'];
/** Keys of SPEC that later versions implement: named as such rather than called unknown. */
/** A ring larger than this is almost certainly a typo in vnodes or weight (memory ~ 16 B/point). */
export const MAX_RING_POINTS = 10_000_000;
/** Arrays and objects inside each other; a valid config needs 4 levels (config.backends[0].sourceAddresses). */
export const MAX_NESTING = 32;
/** Source addresses per backend (or top level): each brings ~28k ephemeral ports. */
export const MAX_SOURCE_ADDRESSES = 256;
/** Problems listed in full; a file with more (each of 100,000 backends wrong) gets a count of the rest. */
export const MAX_PROBLEMS = 1000;
/** Unknown keys longer than this get no "did you mean": no known key is within two edits. */
const MAX_HINT_KEY = 32;
const ID_PATTERN = /^[\x21-\x7e]{1,128}$/;
const HOST_LABEL = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;
/** An IP literal, or a DNS name whose last label is not all digits ("0" or "0x7f.1" are not names). */
function isHost(value: string): boolean {
  if (value.length > 253) return false;
  if (parseIp(value) !== null) return true;
  const labels = value.split('.');
  return labels.every((l) => HOST_LABEL.test(l)) && !/^\d+$|^0x/i.test(labels[labels.length - 1]!);
}
const isId = (value: string): boolean => value.length <= 128 && ID_PATTERN.test(value);

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/** "did you mean" for an unknown key: the nearest known key within two edits, else the list. */
function keyHint(key: string, known: readonly string[]): string {
  let near: string | undefined;
  let best = 3;
  if (key.length <= MAX_HINT_KEY) {
    for (const k of known) {
      const d = editDistance(k.toLowerCase(), key.toLowerCase());
      if (d < best) [near, best] = [k, d];
    }
  }
  return near ? `did you mean ${JSON.stringify(near)}?` : `known keys: ${known.join(', ')}`;
}

/** Collects problems while reading one JSON value; every reader returns a usable value. */
class Reader {
  private readonly shown: ConfigProblem[] = [];
  /** Every problem found, including those past MAX_PROBLEMS. */
  count = 0;

  problem(path: string, message: string): void {
    if (this.count++ < MAX_PROBLEMS) this.shown.push({ path, message });
  }

  /** The problems to report: the first MAX_PROBLEMS, then one line counting the rest. */
  get problems(): ConfigProblem[] {
    const hidden = this.count - this.shown.length;
    return hidden > 0 ? [...this.shown, { path: 'config', message: `${hidden} more problems not shown` }] : this.shown;
  }

  /**
   * The object at `path`, with unknown keys reported; `{}` when it is not an object.
   */
  object(value: Json | undefined, path: string, known: readonly string[]): JsonObject {
    if (!isObject(value)) {
      this.problem(path, `must be an object, got ${preview(value)}`);
      return {};
    }
    for (const key of Object.keys(value)) {
      if (known.includes(key)) continue;
      this.problem(memberPath(path, key), `unknown key (${keyHint(key, known)})`);
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
    if (!isIntIn(value, min, max)) {
      this.problem(at, `must be an integer ${range(min, max)}, got ${preview(value)}`);
      return fallback ?? min;
    }
    return value;
  }

  /** An integer in [min, max] or "auto"; `fallback` when absent. */
  intOrAuto(obj: JsonObject, key: string, path: string, min: number, max: number, fallback: number | 'auto'): number | 'auto' {
    const value = obj[key];
    if (value === undefined) return fallback;
    if (value === 'auto' || isIntIn(value, min, max)) return value;
    this.problem(join(path, key), `must be an integer ${range(min, max)} or "auto", got ${preview(value)}`);
    return fallback;
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
      this.problem(at, `must be ${what}, got ${preview(value)}`);
      return fallback ?? '';
    }
    return value;
  }

  /** One of `choices`, or `fallback` when absent. */
  choice<T extends string>(obj: JsonObject, key: string, path: string, choices: readonly T[], fallback: T): T {
    const value = obj[key];
    if (value === undefined) return fallback;
    if (typeof value !== 'string' || !choices.includes(value as T)) {
      this.problem(join(path, key), `must be one of ${choices.join(', ')}, got ${preview(value)}`);
      return fallback;
    }
    return value as T;
  }

  boolean(obj: JsonObject, key: string, path: string, fallback: boolean): boolean {
    const value = obj[key];
    if (value === undefined) return fallback;
    if (typeof value !== 'boolean') {
      this.problem(join(path, key), `must be true or false, got ${preview(value)}`);
      return fallback;
    }
    return value;
  }
}

const isIntIn = (value: Json, min: number, max: number): value is number =>
  typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
const range = (min: number, max: number): string => (max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`);

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

/** Path of a known key (always a plain identifier) inside `path`. */
const join = (path: string, key: string): string => (path === 'config' ? key : `${path}.${key}`);
const HOST_WHAT = 'an IP address or host name';

/**
 * The first array or object nested deeper than MAX_NESTING, as a problem; null if none.
 * Iterative, so no input can exhaust the stack (issue 7 item 5), and linear in the input.
 */
function nestingProblem(root: unknown): ConfigProblem | null {
  interface Frame {
    readonly value: object;
    readonly depth: number;
    readonly parent: Frame | null;
    readonly key: string | number;
  }
  const stack: Frame[] = [{ value: root as object, depth: 1, parent: null, key: '' }];
  while (stack.length > 0) {
    const frame = stack.pop()!;
    if (frame.depth > MAX_NESTING) {
      const keys: Array<string | number> = [];
      for (let f: Frame | null = frame; f?.parent; f = f.parent) keys.push(f.key);
      let path = 'config';
      for (const k of keys.reverse()) path = typeof k === 'number' ? `${path}[${k}]` : memberPath(path, k);
      return { path: printable(path, 200), message: `nested deeper than ${MAX_NESTING} levels of arrays and objects` };
    }
    const children = Array.isArray(frame.value) ? frame.value.entries() : Object.entries(frame.value);
    for (const [key, value] of children) {
      if (typeof value === 'object' && value !== null) stack.push({ value, depth: frame.depth + 1, parent: frame, key });
    }
  }
  return null;
}

/**
 * `addr/len` or a bare address (one host), IPv4 or IPv6, normalised to `addr/len` with the
 * address as written; null if it is not one. Zones make no sense in a range and are refused.
 */
export function parseCidr(text: string): { text: string; bytes: Uint8Array; prefix: number } | null {
  if (text.length > 64 || text.includes('%')) return null;
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const bytes = parseIp(address);
  if (bytes === null) return null;
  const bits = bytes.length * 8;
  const lengthText = slash < 0 ? String(bits) : text.slice(slash + 1);
  if (!/^(0|[1-9]\d{0,2})$/.test(lengthText) || Number(lengthText) > bits) return null;
  return { text: `${address}/${lengthText}`, bytes, prefix: Number(lengthText) };
}

/** `listen[].acceptProxy`: null (absent or null), or a non-empty array of CIDRs. */
function readAcceptProxy(r: Reader, value: Json | undefined, path: string): string[] | null {
  if (value === undefined || value === null) return null;
  const what = 'CIDRs ("10.0.0.0/8", "2001:db8::/32") or addresses';
  if (!Array.isArray(value) || value.length === 0) {
    r.problem(path, `must be a non-empty array of ${what}, got ${preview(value)}`);
    return null;
  }
  return value.map((v, i) => {
    const cidr = typeof v === 'string' ? parseCidr(v) : null;
    if (cidr === null) r.problem(`${path}[${i}]`, `must be a CIDR ("10.0.0.0/8") or an IP address, got ${preview(v)}`);
    return cidr?.text ?? '';
  });
}

/**
 * `sourceAddresses`: up to MAX_SOURCE_ADDRESSES distinct local IP literals (a wildcard is no
 * one address). Duplicates are found by address bytes, so `::1` and `0::1` are one.
 */
function readSourceAddresses(r: Reader, value: Json, path: string): string[] {
  if (!Array.isArray(value)) {
    r.problem(path, `must be an array of IP addresses, got ${preview(value)}`);
    return [];
  }
  if (value.length > MAX_SOURCE_ADDRESSES) {
    r.problem(path, `at most ${MAX_SOURCE_ADDRESSES} addresses, got ${value.length}`);
    return [];
  }
  const seen = new Map<string, number>();
  const before = r.count;
  value.forEach((v, i) => {
    const at = `${path}[${i}]`;
    const bytes = typeof v === 'string' && v.length <= 64 ? parseIp(v) : null;
    if (bytes === null) return r.problem(at, `must be an IP address, got ${preview(v)}`);
    if (bytes.every((b) => b === 0)) return r.problem(at, `must be one local address, not the wildcard ${quote(v as string)}`);
    const zone = (v as string).indexOf('%');
    const key = `${bytes.join('.')}${zone < 0 ? '' : (v as string).slice(zone)}`;
    const first = seen.get(key);
    if (first !== undefined) r.problem(at, `duplicate of ${path}[${first}]`);
    else seen.set(key, i);
  });
  return r.count === before ? (value as string[]) : [];
}

function readAddress(r: Reader, value: Json | undefined, path: string, defaults?: ListenConfig): ListenConfig {
  if (!isObject(value)) {
    r.problem(path, `must be an object with host and port, got ${preview(value)}`);
    return defaults ?? { host: '', port: 0 };
  }
  const obj = r.object(value, path, ['host', 'port']);
  return {
    host: r.string(obj, 'host', path, isHost, HOST_WHAT, defaults?.host),
    port: r.int(obj, 'port', path, 0, 65535, defaults?.port),
  };
}

function readListener(r: Reader, value: Json | undefined, path: string): ListenerConfig {
  if (!isObject(value)) {
    r.problem(path, `must be an object with host and port, got ${preview(value)}`);
    return { host: '', port: 0, acceptProxy: null };
  }
  const obj = r.object(value, path, ['host', 'port', 'acceptProxy']);
  return {
    host: r.string(obj, 'host', path, isHost, HOST_WHAT),
    port: r.int(obj, 'port', path, 0, 65535),
    acceptProxy: readAcceptProxy(r, obj.acceptProxy, join(path, 'acceptProxy')),
  };
}

function readListen(r: Reader, value: Json | undefined): ListenerConfig[] {
  if (value === undefined) {
    r.problem('listen', 'is required');
    return [];
  }
  if (!Array.isArray(value)) return [readListener(r, value, 'listen')];
  if (value.length === 0) r.problem('listen', 'must name at least one address');
  const listen = value.map((v, i) => readListener(r, v, `listen[${i}]`));
  const first = new Map<string, number>();
  listen.forEach((l, i) => {
    const key = formatHostPort(l.host, l.port);
    const earlier = first.get(key);
    if (earlier !== undefined) r.problem(`listen[${i}]`, `duplicate of listen[${earlier}]`);
    else first.set(key, i);
  });
  return listen;
}

/** Backend defaults that come from the top level of the config. */
interface BackendDefaults {
  readonly proxyProtocol: ProxyProtocolVersion;
  readonly sourceAddresses: readonly string[];
}


/** A DNS name for discovery: a host name, not an IP literal. */
const isName = (v: string): boolean => isHost(v) && parseIp(v) === null;

function readBackends(
  r: Reader,
  value: Json | undefined,
  defaults: BackendDefaults,
): { backends: BackendConfig[]; discovery: DiscoveryEntry[] } {
  const discovery: DiscoveryEntry[] = [];
  if (value === undefined) {
    r.problem('backends', 'is required (it may be [])');
    return { backends: [], discovery };
  }
  if (!Array.isArray(value)) {
    r.problem('backends', `must be an array, got ${preview(value)}`);
    return { backends: [], discovery };
  }
  if (value.length > MAX_RING_MEMBERS) r.problem('backends', `at most ${MAX_RING_MEMBERS} backends`);
  const seen = new Map<string, number>();
  const backends: BackendConfig[] = [];
  value.forEach((v, i) => {
    const path = `backends[${i}]`;
    const problemsBefore = r.count;
    if (!isObject(v)) {
      r.problem(path, `must be an object with host and port, got ${preview(v)}`);
      return;
    }
    if (v.dns !== undefined || v.srv !== undefined) {
      discovery.push(readDiscovery(r, v, path, defaults));
      return;
    }
    const obj = r.object(v, path, ['id', 'host', 'port', 'weight', 'drain', 'proxyProtocol', 'sourceAddresses']);
    const host = r.string(obj, 'host', path, isHost, HOST_WHAT);
    const port = r.int(obj, 'port', path, 1, 65535);
    const id =
      obj.id === undefined
        ? formatHostPort(host, port)
        : r.string(obj, 'id', path, isId, '1 to 128 printable ASCII characters without spaces');
    const earlier = problemsBefore === r.count ? seen.get(id) : undefined;
    if (earlier !== undefined) r.problem(`${path}.id`, `duplicate id ${quote(id)} (also backends[${earlier}])`);
    else if (problemsBefore === r.count) seen.set(id, i);
    const own = obj.sourceAddresses !== undefined;
    const sourceAddresses = own ? readSourceAddresses(r, obj.sourceAddresses!, `${path}.sourceAddresses`) : defaults.sourceAddresses;
    checkFamily(r, host, port, sourceAddresses, own ? `${path}.sourceAddresses` : 'sourceAddresses', own ? '' : ` (${path})`);
    backends.push({
      id,
      host,
      port,
      weight: r.int(obj, 'weight', path, 0, 10_000, 1),
      drain: r.boolean(obj, 'drain', path, false),
      proxyProtocol: r.choice(obj, 'proxyProtocol', path, PROXY_VERSIONS, defaults.proxyProtocol),
      sourceAddresses,
    });
  });
  return { backends, discovery };
}

/**
 * A discovery entry: `{ dns: NAME, port }` (A and AAAA: one backend per address) or
 * `{ srv: NAME }` (one backend per SRV target, port from the record), with the settings every
 * discovered backend gets. Neither takes `id` or `host`: ids come from what DNS answers.
 */
function readDiscovery(r: Reader, v: JsonObject, path: string, defaults: BackendDefaults): DiscoveryEntry {
  const srv = v.srv !== undefined;
  const common = ['weight', 'drain', 'proxyProtocol', 'sourceAddresses'];
  const obj = r.object(v, path, srv ? ['srv', ...common] : ['dns', 'port', ...common]);
  if (srv && v.dns !== undefined) r.problem(path, 'takes dns or srv, not both');
  const name = srv
    ? r.string(obj, 'srv', path, isName, 'a DNS name (e.g. "_ws._tcp.ws.default.svc.cluster.local")')
    : r.string(obj, 'dns', path, isName, 'a DNS name');
  const port = srv ? undefined : r.int(obj, 'port', path, 1, 65535);
  const own = obj.sourceAddresses !== undefined;
  return {
    ...(srv ? { srv: name } : { dns: name, port }),
    weight: r.int(obj, 'weight', path, 0, 10_000, 1),
    drain: r.boolean(obj, 'drain', path, false),
    proxyProtocol: r.choice(obj, 'proxyProtocol', path, PROXY_VERSIONS, defaults.proxyProtocol),
    sourceAddresses: own ? readSourceAddresses(r, obj.sourceAddresses!, `${path}.sourceAddresses`) : defaults.sourceAddresses,
  };
}

/** A backend at an IP literal needs a source address of its family, or no connect can work. */
function checkFamily(r: Reader, host: string, port: number, sources: readonly string[], path: string, whose: string): void {
  const target = sources.length > 0 ? parseIp(host) : null;
  if (target === null) return;
  if (sources.some((s) => parseIp(s)!.length === target.length)) return;
  const family = target.length === 4 ? 'IPv4' : 'IPv6';
  r.problem(path, `no ${family} address for ${family} backend ${formatHostPort(host, port)}${whose}`);
}

/** `dns.servers`: IP addresses with an optional port (`127.0.0.1:5353`, `[::1]:53`, `10.0.0.2`). */
function readDnsServers(r: Reader, value: Json): string[] {
  if (!Array.isArray(value) || value.length > 16) {
    r.problem('dns.servers', `must be an array of at most 16 server addresses, got ${preview(value)}`);
    return [];
  }
  const servers: string[] = [];
  value.forEach((v, i) => {
    const m = typeof v === 'string' ? /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+))(?::(\d{1,5}))?$|^([0-9a-fA-F:]+)$/.exec(v) : null;
    const ip = m ? (m[1] ?? m[2] ?? m[4])! : '';
    const port = m?.[3] === undefined ? 53 : Number(m[3]);
    if (!m || parseIp(ip) === null || port < 1 || port > 65535) {
      r.problem(`dns.servers[${i}]`, `must be an IP address with an optional port ("127.0.0.1:5353", "[::1]:53"), got ${preview(v)}`);
    } else servers.push(v as string);
  });
  return servers;
}

const ALGORITHMS: readonly Algorithm[] = ['ring', 'rendezvous', 'maglev'];
/** Larger Maglev tables take long to build and hold memory for little gain (docs/algorithm.md). */
const MAX_TABLE_SIZE = 1_000_003;

function isPrime(n: number): boolean {
  if (n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

/** `hashing.tableSize`: a prime (Maglev's permutations need it), default 65537. */
function readTableSize(r: Reader, value: Json | undefined): number {
  if (value === undefined) return DEFAULT_TABLE_SIZE;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 3 || value > MAX_TABLE_SIZE || !isPrime(value)) {
    r.problem('hashing.tableSize', `must be a prime from 3 to ${MAX_TABLE_SIZE} (e.g. 65537), got ${preview(value)}`);
    return DEFAULT_TABLE_SIZE;
  }
  return value;
}

/** `hashing.balanceFactor`: null (off) or a number > 1 (bounded loads). */
function readBalanceFactor(r: Reader, value: Json | undefined): number | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'number' || !(value > 1) || value > 1000) {
    r.problem('hashing.balanceFactor', `must be null or a number greater than 1 (at most 1000), got ${preview(value)}`);
    return null;
  }
  return value;
}

/** Validate a parsed JSON value. Throws ConfigError listing every problem. */
export function validateConfig(value: unknown): Config {
  if (!isObject(value)) throw new ConfigError([{ path: 'config', message: `must be a JSON object, got ${preview(value)}` }]);
  const deep = nestingProblem(value);
  if (deep !== null) throw new ConfigError([deep]);
  const r = new Reader();
  const root = r.object(
    value as Json,
    'config',
    [
      'listen',
      'backends',
      'hashing',
      'healthCheck',
      'timeouts',
      'retries',
      'limits',
      'rebalance',
      'drainTimeoutMs',
      'shutdownTimeoutMs',
      'proxyProtocol',
      'sourceAddresses',
      'dns',
      'metrics',
      'log',
      'workers',
    ],
  );
  const listen = readListen(r, root.listen);
  const proxyProtocol = r.choice(root, 'proxyProtocol', 'config', PROXY_VERSIONS, 'off');
  const sourceAddresses =
    root.sourceAddresses === undefined ? [] : readSourceAddresses(r, root.sourceAddresses, 'sourceAddresses');
  const { backends, discovery } = readBackends(r, root.backends, { proxyProtocol, sourceAddresses });

  const h = r.object(
    orEmpty(root.hashing),
    'hashing',
    ['algorithm', 'vnodes', 'tableSize', 'ipv4Prefix', 'ipv6Prefix', 'balanceFactor'],
  );
  const hashing = {
    algorithm: r.choice(h, 'algorithm', 'hashing', ALGORITHMS, 'ring'),
    vnodes: r.int(h, 'vnodes', 'hashing', 1, 10_000, 160),
    tableSize: readTableSize(r, h.tableSize),
    ipv4Prefix: r.int(h, 'ipv4Prefix', 'hashing', 0, 32, 32),
    ipv6Prefix: r.int(h, 'ipv6Prefix', 'hashing', 0, 128, 64),
    balanceFactor: readBalanceFactor(r, h.balanceFactor),
  };
  let points = 0;
  for (const b of backends) points += b.weight * hashing.vnodes;
  if (hashing.algorithm === 'ring' && points > MAX_RING_POINTS) {
    r.problem('hashing.vnodes', `vnodes x total weight is ${points} ring points, more than ${MAX_RING_POINTS}`);
  }

  const hc = r.object(
    orEmpty(root.healthCheck),
    'healthCheck',
    ['type', 'intervalMs', 'timeoutMs', 'rise', 'fall', 'onDown', 'passive', 'path', 'hostHeader'],
  );
  const healthCheck = {
    type: r.choice(hc, 'type', 'healthCheck', ['tcp', 'websocket', 'none'] as const, 'tcp'),
    intervalMs: r.int(hc, 'intervalMs', 'healthCheck', 10, 3_600_000, 2000),
    timeoutMs: r.int(hc, 'timeoutMs', 'healthCheck', 1, 3_600_000, 1000),
    rise: r.int(hc, 'rise', 'healthCheck', 1, 1000, 2),
    fall: r.int(hc, 'fall', 'healthCheck', 1, 1000, 3),
    onDown: r.choice(hc, 'onDown', 'healthCheck', ['keep', 'close'] as const, 'keep'),
    passive: r.boolean(hc, 'passive', 'healthCheck', false),
    // Written into the check's request line and Host header verbatim: no spaces or line breaks.
    path: r.string(hc, 'path', 'healthCheck', (v) => /^\/[\x21-\x7e]*$/.test(v) && v.length <= 1024, 'a path starting with / (printable ASCII, no spaces)', '/'),
    hostHeader: hc.hostHeader === null || hc.hostHeader === undefined ? null : r.string(hc, 'hostHeader', 'healthCheck', (v) => /^[\x21-\x7e]{1,255}$/.test(v), 'null or a host (printable ASCII, no spaces)'),
  } as const;

  const d = r.object(orEmpty(root.dns), 'dns', ['refreshMs', 'servers']);
  const dns = {
    refreshMs: r.int(d, 'refreshMs', 'dns', 100, 86_400_000, 30_000),
    servers: d.servers === undefined ? [] : readDnsServers(r, d.servers),
  };

  const rb = r.object(orEmpty(root.rebalance), 'rebalance', ['rehome', 'windowMs', 'closeSpreadMs']);
  const rebalance = {
    rehome: r.boolean(rb, 'rehome', 'rebalance', false),
    windowMs: r.int(rb, 'windowMs', 'rebalance', 0, 2_147_483_647, 60_000),
    closeSpreadMs: r.int(rb, 'closeSpreadMs', 'rebalance', 0, 2_147_483_647, 0),
  };

  const t = r.object(orEmpty(root.timeouts), 'timeouts', ['connectMs', 'idleMs', 'proxyHeaderMs']);
  const timeouts = {
    connectMs: r.int(t, 'connectMs', 'timeouts', 1, 3_600_000, 3000),
    idleMs: r.int(t, 'idleMs', 'timeouts', 0, 2_147_483_647, 0),
    proxyHeaderMs: r.int(t, 'proxyHeaderMs', 'timeouts', 1, 3_600_000, 5000),
  };

  const retries = r.int(root, 'retries', 'config', 0, 100, 2);
  const lim = r.object(orEmpty(root.limits), 'limits', ['maxConnections', 'maxConnectionsPerIp']);
  const limits = {
    maxConnections: r.intOrAuto(lim, 'maxConnections', 'limits', 0, Number.MAX_SAFE_INTEGER, 'auto'),
    maxConnectionsPerIp: r.int(lim, 'maxConnectionsPerIp', 'limits', 0, Number.MAX_SAFE_INTEGER, 0),
  };
  const drainTimeoutMs = r.int(root, 'drainTimeoutMs', 'config', 0, 2_147_483_647, 0);
  const shutdownTimeoutMs = r.int(root, 'shutdownTimeoutMs', 'config', 0, 2_147_483_647, 30_000);
  const metrics = readAddress(r, orEmpty(root.metrics), 'metrics', { host: '127.0.0.1', port: 9180 });
  const l = r.object(orEmpty(root.log), 'log', ['level', 'connections']);
  const log = { level: r.choice(l, 'level', 'log', LOG_LEVELS, 'info'), connections: r.boolean(l, 'connections', 'log', false) };
  const workers = r.intOrAuto(root, 'workers', 'config', 1, 256, 1);

  if (r.count > 0) throw new ConfigError(r.problems);
  return deepFreeze({
    listen,
    backends,
    discovery,
    dns,
    hashing,
    healthCheck,
    rebalance,
    timeouts,
    retries,
    limits,
    drainTimeoutMs,
    shutdownTimeoutMs,
    proxyProtocol,
    sourceAddresses,
    metrics,
    log,
    workers,
  });
}

/** Parse config text (JSON) from `file` and validate it. Throws ConfigFileError or ConfigError. */
export function parseConfig(text: string, file: string): Config {
  // Some editors start UTF-8 files with a byte order mark; JSON.parse would reject it.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
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
  let line = 1;
  for (let i = before.indexOf('\n'); i !== -1; i = before.indexOf('\n', i + 1)) line++;
  const column = offset - before.lastIndexOf('\n');
  const reason = message
    .replace(/ in JSON at position \d+.*$/s, '')
    .replace(/^(Unexpected token '.+?'),.*$/s, '$1');
  // V8 quotes the offending token raw: a control character must not reach the terminal.
  return `${printable(reason, 120)} (line ${line}, column ${column})`;
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

/**
 * Digest of exactly what routing depends on: backend ids, weights and drain flags, and
 * `hashing`. Instances whose listen, metrics, log, timeouts or health settings differ still
 * route every client alike when their routing hashes are equal.
 */
export function routingHash(config: Config): string {
  const backends = config.backends
    .map((b) => ({ id: b.id, weight: b.weight, drain: b.drain }))
    .sort((a, b) => (a.id < b.id ? -1 : 1));
  return createHash('sha256').update(canonicalJson({ backends, hashing: config.hashing })).digest('hex').slice(0, 16);
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

/** Freeze a config again after it crossed a thread boundary (structured clone drops freezing). */
export const freezeConfig = (config: Config): Config => deepFreeze(config);

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

