// Discovery as data: what DNS answered (a snapshot) and the configured `dns`/`srv` entries turn
// into backends, sorted and deduplicated so that an unchanged answer gives an equal list and a
// reload-like apply changes nothing. Backend host names get one address in force, kept while
// DNS still lists it, so a round-robin answer does not restart a backend's health every refresh.
// No I/O here: dns-schedule.ts asks the servers.

import { formatHostPort, parseIp } from './address.js';
import type { BackendConfig } from './config.js';

/** A configured discovery entry (`backends[]` with `dns` or `srv`), defaults resolved. */
export interface DiscoveryEntry {
  /** A and AAAA: one backend per address, id `address:port`. */
  readonly dns?: string | undefined;
  /** SRV: one backend per target, id = the target name, port from the record. */
  readonly srv?: string | undefined;
  /** Required with `dns`; not used with `srv`. */
  readonly port?: number | undefined;
  readonly weight: number;
  readonly drain: boolean;
  readonly proxyProtocol: BackendConfig['proxyProtocol'];
  readonly sourceAddresses: readonly string[];
}

export interface SrvRecord {
  readonly name: string;
  readonly port: number;
  readonly priority: number;
  readonly weight: number;
}

/** What names resolve to now; a name that failed keeps its last answer. */
export interface DnsSnapshot {
  /** A and AAAA answers by name: IPv4 first, then IPv6, each sorted, no duplicates. */
  readonly addresses: ReadonlyMap<string, readonly string[]>;
  /** SRV answers by name, in preference order (see sortSrv). */
  readonly srv: ReadonlyMap<string, readonly SrvRecord[]>;
  /** The one address in force for each backend host name and SRV target. */
  readonly hosts: ReadonlyMap<string, string>;
}

export const EMPTY_SNAPSHOT: DnsSnapshot = { addresses: new Map(), srv: new Map(), hosts: new Map() };

const byString = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** A and AAAA answers as one list: IPv4 first, then IPv6, each sorted, no duplicates. */
export function sortAddresses(v4: readonly string[], v6: readonly string[]): string[] {
  return [...[...new Set(v4)].sort(byString), ...[...new Set(v6)].sort(byString)];
}

/**
 * SRV records in preference order: lowest priority, then highest weight (RFC 2782), then target
 * and port, so the order is total. The "." target means "no service here" and is dropped.
 */
export function sortSrv(records: readonly SrvRecord[]): SrvRecord[] {
  return records
    .filter((r) => r.name !== '' && r.name !== '.')
    .map((r) => ({ name: r.name.toLowerCase().replace(/\.$/, ''), port: r.port, priority: r.priority, weight: r.weight }))
    .sort((a, b) => a.priority - b.priority || b.weight - a.weight || byString(a.name, b.name) || a.port - b.port);
}

/** The address in force for a host name: the previous one while DNS still lists it, else the first. */
export function pickAddress(previous: string | undefined, addresses: readonly string[]): string | undefined {
  return previous !== undefined && addresses.includes(previous) ? previous : addresses[0];
}

/** Names an SRV answer points at: they need addresses too. */
export function srvTargets(snapshot: Pick<DnsSnapshot, 'srv'>): string[] {
  const targets = new Set<string>();
  for (const records of snapshot.srv.values()) for (const r of records) targets.add(r.name);
  return [...targets].sort(byString);
}

/**
 * The backends `entries` discover in `snapshot`, sorted by id. An id found twice (two entries
 * resolving to one address, two records for one target) is kept once: the first entry in config
 * order, the preferred record. An SRV target without an address yet is left out.
 */
export function discoveredBackends(entries: readonly DiscoveryEntry[], snapshot: DnsSnapshot): BackendConfig[] {
  const byId = new Map<string, BackendConfig>();
  const add = (entry: DiscoveryEntry, id: string, host: string, port: number, hostName: string): void => {
    if (byId.has(id)) return;
    const { weight, drain, proxyProtocol, sourceAddresses } = entry;
    byId.set(id, { id, host, port, weight, drain, proxyProtocol, sourceAddresses, hostName });
  };
  for (const entry of entries) {
    if (entry.dns !== undefined && entry.port !== undefined) {
      for (const address of snapshot.addresses.get(entry.dns) ?? []) add(entry, formatHostPort(address, entry.port), address, entry.port, entry.dns);
    } else if (entry.srv !== undefined) {
      for (const record of snapshot.srv.get(entry.srv) ?? []) {
        const address = snapshot.hosts.get(record.name);
        if (address !== undefined) add(entry, record.name, address, record.port, record.name);
      }
    }
  }
  return [...byId.values()].sort((a, b) => byString(a.id, b.id));
}

const sameList = <T>(a: readonly T[], b: readonly T[], same: (x: T, y: T) => boolean): boolean =>
  a.length === b.length && a.every((x, i) => same(x, b[i]!));

function sameMap<T>(a: ReadonlyMap<string, T>, b: ReadonlyMap<string, T>, same: (x: T, y: T) => boolean): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (w === undefined || !same(v, w)) return false;
  }
  return true;
}

const sameRecord = (x: SrvRecord, y: SrvRecord): boolean =>
  x.name === y.name && x.port === y.port && x.priority === y.priority && x.weight === y.weight;

/** Two snapshots say the same thing (the schedule reports only a change). */
export function sameSnapshot(a: DnsSnapshot, b: DnsSnapshot): boolean {
  return (
    sameMap(a.hosts, b.hosts, (x, y) => x === y) &&
    sameMap(a.addresses, b.addresses, (x, y) => sameList(x, y, (p, q) => p === q)) &&
    sameMap(a.srv, b.srv, (x, y) => sameList(x, y, sameRecord))
  );
}

/**
 * The backends in force: the file's own, each host name replaced by its address in force (one
 * that has not resolved yet keeps its name, and the fleet keeps it out of service), then the
 * discovered ones. A discovered id that the file also names is left out: the file wins.
 */
export function effectiveBackends(
  config: { readonly backends: readonly BackendConfig[]; readonly discovery: readonly DiscoveryEntry[] },
  snapshot: DnsSnapshot,
): BackendConfig[] {
  const own = config.backends.map((b) => {
    const address = snapshot.hosts.get(b.host);
    return address === undefined || address === b.host ? b : { ...b, host: address, hostName: b.host };
  });
  if (config.discovery.length === 0) return own;
  const ids = new Set(own.map((b) => b.id));
  return [...own, ...discoveredBackends(config.discovery, snapshot).filter((b) => !ids.has(b.id))];
}

/** The names a config asks DNS for: backend host names (not IP literals), `dns` and `srv` names. */
export function namesOf(config: { readonly backends: readonly BackendConfig[]; readonly discovery: readonly DiscoveryEntry[] }): {
  hosts: string[];
  dns: string[];
  srv: string[];
} {
  const hosts = [...new Set(config.backends.map((b) => b.host).filter((h) => parseIp(h) === null))];
  const dns = [...new Set(config.discovery.flatMap((e) => (e.dns === undefined ? [] : [e.dns])))];
  const srv = [...new Set(config.discovery.flatMap((e) => (e.srv === undefined ? [] : [e.srv])))];
  return { hosts, dns, srv };
}
