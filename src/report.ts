// What a config routes, for the commands that inspect one without running it (`check`,
// `lookup`): every backend is taken as healthy, `drain` as configured. Pure.

import { formatHostPort, parseIp } from './address.js';
import type { Config } from './config.js';
import { UsageError } from './errors.js';
import { buildBalancer, compareBalancers, type AnyBalancer } from './balancer.js';
import { clientHash, eligibility, pickBackend, type Eligibility } from './routing.js';

/** The table of `config` (ring, rendezvous or Maglev) with every backend up and draining ones excluded. */
function healthyRing(config: Config): { ring: AnyBalancer; allowed: Eligibility } {
  const ring = buildBalancer(config.backends, config.hashing);
  const draining = new Set(config.backends.filter((b) => b.drain).map((b) => b.id));
  return { ring, allowed: eligibility(ring, (i) => !draining.has(ring.ids[i]!)) };
}

/** One row of `check`: a backend as routed with every backend healthy. */
export interface CheckRow {
  id: string;
  address: string;
  weight: number;
  state: 'up' | 'draining';
  share: number;
}

/** Each backend's share by id (a Map: `ring.ids.indexOf` per backend made check quadratic, issue 7 item 6). */
function sharesById(ring: AnyBalancer, allowed: Eligibility): Map<string, number> {
  const values = ring.shares(allowed.flags);
  return new Map(ring.ids.map((id, i) => [id, values[i]!]));
}

/** The rows of `ringlb check`, in config order: every backend up, drain as configured. */
export function checkRows(config: Config): CheckRow[] {
  const { ring, allowed } = healthyRing(config);
  const share = sharesById(ring, allowed);
  return config.backends.map((b) => ({
    id: b.id,
    address: formatHostPort(b.host, b.port),
    weight: b.weight,
    state: b.drain ? 'draining' : 'up',
    share: share.get(b.id)!,
  }));
}

/** Where each client address goes with every backend healthy: backend id, or null for none. */
export function lookupAll(config: Config, ips: readonly string[]): Array<string | null> {
  const bad = ips.filter((ip) => parseIp(ip) === null);
  if (bad.length > 0) throw new UsageError(bad.map((ip) => `${ip}: not an IP address`).join('\n'));
  const { ring, allowed } = healthyRing(config);
  return ips.map((ip) => {
    const index = pickBackend(ring, clientHash(parseIp(ip)!, config.hashing), allowed);
    return index < 0 ? null : ring.ids[index]!;
  });
}

/** `ringlb diff`: each backend's share before and after, and the exact fraction that moves. */
export interface ConfigDiff {
  readonly moved: number;
  /**
   * Present only when `moved` is an expectation rather than a count over the hash space
   * (rendezvous; a change of algorithm): docs/algorithm.md. SPEC's shape is kept otherwise.
   */
  readonly expected?: true;
  readonly backends: Array<{ id: string; before: number; after: number }>;
}

/** Compare two configs as they would route with every backend healthy (drain as configured). */
export function diffConfigs(before: Config, after: Config): ConfigDiff {
  const a = healthyRing(before);
  const b = healthyRing(after);
  const sharesA = sharesById(a.ring, a.allowed);
  const sharesB = sharesById(b.ring, b.allowed);
  const ids = new Set(before.backends.map((x) => x.id));
  for (const x of after.backends) ids.add(x.id);
  const change = compareBalancers(a.ring, a.allowed.flags, b.ring, b.allowed.flags);
  return {
    moved: change.moved,
    ...(change.basis === 'expected' ? { expected: true as const } : {}),
    backends: [...ids].map((id) => ({ id, before: sharesA.get(id) ?? 0, after: sharesB.get(id) ?? 0 })),
  };
}
