// DNS on a schedule: resolve backend host names, `dns` names (A and AAAA) and `srv` names (SRV,
// then A/AAAA of their targets) when a config is applied and every refreshMs after, so that no
// connect and no health check waits for a lookup. A name whose lookup fails keeps its last
// answer; every lookup is reported (onResult, for ringlb_dns_resolutions_total) and a failure is
// logged once per streak. node:dns/promises Resolver (c-ares), not getaddrinfo: it takes
// servers of our own (dns.servers) and does not block the libuv thread pool.

import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { EMPTY_SNAPSHOT, pickAddress, sameSnapshot, sortAddresses, sortSrv, srvTargets, type DnsSnapshot, type SrvRecord } from './discovery.js';

/** The names a config asks for. IP literals among `hosts` need no lookup and are skipped. */
export interface DnsNames {
  /** Backend host names: one address in force each. */
  readonly hosts: readonly string[];
  /** `dns` discovery names: every address. */
  readonly dns: readonly string[];
  /** `srv` discovery names. */
  readonly srv: readonly string[];
}

export interface DnsScheduleOptions {
  /** `dns.servers` (`"127.0.0.1:5353"`, `"[::1]:53"`); empty = the system's resolvers. */
  readonly servers: readonly string[];
  readonly refreshMs: number;
  readonly logger: Pick<Logger, 'warn' | 'info'>;
  /** Every lookup of a name, as it ends. */
  readonly onResult: (name: string, ok: boolean) => void;
  /** A scheduled refresh changed the snapshot (not called for apply, which returns it). */
  readonly onChange: (snapshot: DnsSnapshot) => void;
  /** Per query attempt (c-ares `timeout`); default 1000. */
  readonly queryTimeoutMs?: number | undefined;
  /** Attempts per server (c-ares `tries`); default 2. */
  readonly tries?: number | undefined;
}

/** Why a lookup failed: a c-ares code (ETIMEOUT, ENOTFOUND, ESERVFAIL, ...) or `no records`. */
type Lookup<T> = { ok: true; value: T } | { ok: false; reason: string };

/** "The name exists but has no record of this type": an empty answer, not a failure. */
const noData = (err: unknown): boolean => (err as NodeJS.ErrnoException).code === 'ENODATA';
const reasonOf = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? String(err);

export class DnsSchedule {
  private readonly resolver: Resolver;
  private current: DnsSnapshot;
  private names: DnsNames = { hosts: [], dns: [], srv: [] };
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<DnsSnapshot> | null = null;
  private stopped = false;
  /** Names in a failure streak: logged when it starts and when it ends. */
  private readonly failing = new Set<string>();

  /** `previous`: the snapshot of the schedule this one replaces (a reload that changed dns.*). */
  constructor(
    private readonly options: DnsScheduleOptions,
    previous: DnsSnapshot = EMPTY_SNAPSHOT,
  ) {
    this.resolver = new Resolver({ timeout: options.queryTimeoutMs ?? 1000, tries: options.tries ?? 2 });
    if (options.servers.length > 0) this.resolver.setServers([...options.servers]);
    this.current = previous;
  }

  get snapshot(): DnsSnapshot {
    return this.current;
  }

  /**
   * Resolve `names` now (a config being applied) and every refreshMs from now on. Answers for
   * names no longer asked for are dropped; a name that fails keeps what the previous snapshot had.
   */
  async apply(names: DnsNames): Promise<DnsSnapshot> {
    if (this.running) await this.running.catch(() => {});
    this.names = names;
    const asked = new Set([...names.hosts, ...names.dns, ...names.srv]);
    for (const name of this.failing) if (!asked.has(name)) this.failing.delete(name);
    const snapshot = await this.resolve();
    if (this.timer === null) this.timer = setInterval(() => void this.refresh(), this.options.refreshMs).unref();
    return snapshot;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.resolver.cancel();
  }

  /** A slot of the schedule; a refresh still running (slow servers) takes it. */
  private async refresh(): Promise<void> {
    if (this.running) return;
    const before = this.current;
    const after = await this.resolve();
    if (this.timer !== null && !sameSnapshot(before, after)) this.options.onChange(after);
  }

  private resolve(): Promise<DnsSnapshot> {
    const run = this.resolveNames().finally(() => {
      if (this.running === run) this.running = null;
    });
    this.running = run;
    return run;
  }

  private async resolveNames(): Promise<DnsSnapshot> {
    const previous = this.current;
    const srv = new Map<string, readonly SrvRecord[]>();
    await Promise.all(
      unique(this.names.srv).map(async (name) => {
        const answer = this.report(name, await settle(this.resolver.resolveSrv(name), (records) => sortSrv(records)));
        const kept = answer ?? previous.srv.get(name);
        if (kept) srv.set(name, kept);
      }),
    );
    const hostNames = unique([...this.names.hosts, ...srvTargets({ srv })]);
    const addresses = new Map<string, readonly string[]>();
    await Promise.all(
      unique([...this.names.dns, ...hostNames])
        .filter((name) => isIP(name) === 0)
        .map(async (name) => {
          const kept = this.report(name, await this.lookupAddresses(name)) ?? previous.addresses.get(name);
          if (kept) addresses.set(name, kept);
        }),
    );
    const hosts = new Map<string, string>();
    for (const name of hostNames) {
      const address = isIP(name) !== 0 ? name : pickAddress(previous.hosts.get(name), addresses.get(name) ?? []);
      if (address !== undefined) hosts.set(name, address);
    }
    const next = { addresses, srv, hosts };
    this.current = sameSnapshot(previous, next) ? previous : next;
    return this.current;
  }

  /**
   * A and AAAA together. Either type may be absent (ENODATA); any other error fails the name as
   * a whole, so a timed-out AAAA query does not drop the IPv6 half of a fleet.
   */
  private async lookupAddresses(name: string): Promise<Lookup<string[]>> {
    const [v4, v6] = await Promise.allSettled([this.resolver.resolve4(name), this.resolver.resolve6(name)]);
    for (const r of [v4, v6]) if (r.status === 'rejected' && !noData(r.reason)) return { ok: false, reason: reasonOf(r.reason) };
    const list = sortAddresses(v4.status === 'fulfilled' ? v4.value : [], v6.status === 'fulfilled' ? v6.value : []);
    return list.length > 0 ? { ok: true, value: list } : { ok: false, reason: 'no records' };
  }

  /** Count and log one lookup; the answer, or undefined when it failed. */
  private report<T>(name: string, lookup: Lookup<T>): T | undefined {
    // Lookups cancelled by stop() are no one's failure.
    if (this.stopped) return undefined;
    this.options.onResult(name, lookup.ok);
    if (lookup.ok) {
      if (this.failing.delete(name)) this.options.logger.info({ host: name }, 'dns lookup works again');
      return lookup.value;
    }
    if (!this.failing.has(name)) {
      this.failing.add(name);
      this.options.logger.warn({ host: name, reason: lookup.reason }, 'dns lookup failed; keeping the last answer');
    }
    return undefined;
  }
}

const unique = (names: readonly string[]): string[] => [...new Set(names)];

/** An answer of zero records is a failure too: discovery never empties a pool on its own. */
async function settle<A, T extends readonly unknown[]>(query: Promise<A>, map: (answer: A) => T): Promise<Lookup<T>> {
  try {
    const value = map(await query);
    return value.length > 0 ? { ok: true, value } : { ok: false, reason: 'no records' };
  } catch (err) {
    return { ok: false, reason: reasonOf(err) };
  }
}
