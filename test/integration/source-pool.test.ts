// Source-address pools for real (issue 8 §5; SPEC `sourceAddresses`, "Faults never cascade").
// Each case runs test/fixtures/source-pool.mjs in a fresh network namespace (`unshare -n`,
// root) whose ephemeral port range is narrowed to 50 ports (40000-40049), so running out of
// source ports takes 50 connections instead of 28,000 and touches nothing outside the
// namespace. Clients are opened one at a time and held, so every count below is exact.
// Needs a built dist/ (npm test runs tsc first). Skipped, with the reason, where `unshare -n`
// (or ip/sysctl inside it) is not permitted.
//
// What Linux does, measured by the first case and relied on by the rest (kernel 6.x):
// - connect() without bind() picks a port per destination: 50 connections to each backend;
// - connect() from a bound address (bind with port 0, what Node does for `localAddress`;
//   Node cannot set IP_BIND_ADDRESS_NO_PORT) takes a port of that address's range for every
//   destination: 50 connections per source address, shared by all backends;
// - once every port of the range is bound by some socket, an unbound connect finds no port
//   either (EADDRNOTAVAIL), to any destination: health checks then fail for a local reason.

import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { collect, metricValue, tally } from '../helpers/index.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/source-pool.mjs', import.meta.url));
/** The fixture's narrowed range: 40000-40049. */
const PORTS = 50;

// Up to a few hundred connections opened one at a time per case, on a shared 2-core machine.
t.setTimeout(120_000);

/** Why the namespace cases cannot run here, or false when they can. */
function namespaceUnavailable(): string | false {
  const probe = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && sysctl -q -w net.ipv4.ip_local_port_range="40000 40049"'], {
    encoding: 'utf8',
  });
  if (probe.error) return `unshare -n: ${probe.error.message}`;
  if (probe.status !== 0) return `unshare -n with ip and sysctl failed: ${probe.stderr.trim().split('\n')[0]}`;
  return false;
}
const SKIP = namespaceUnavailable();

interface Through {
  /** Per client in order: the backend id it was served by, or null when it was refused. */
  served: Array<string | null>;
  /** Served clients whose line came back through ringlb at the end (all still held). */
  echoed: number;
  /** Per backend: the remote address of each connection it accepted, in order. */
  remotes: Record<string, string[]>;
  /** ringlb's samples (Prometheus text, `ringlb_` lines only). */
  metrics: string;
  healthLogs: string[];
  /** probeWhileFull: the code of an unbound connect to the first backend once the pool was full. */
  probe?: string | null;
}

/** Run the fixture in a fresh network namespace with `scenario`; resolves with its JSON. */
async function inNamespace<T>(scenario: unknown): Promise<T> {
  const child = spawn('unshare', ['-n', process.execPath, FIXTURE, JSON.stringify(scenario)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const result = await collect(child);
  clearTimeout(timer);
  if (result.code !== 0) throw new Error(`fixture exited ${result.code ?? result.signal}: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

const repeat = <V>(value: V, n: number): V[] => Array.from({ length: n }, () => value);
const errors = (m: string, backend: string): number =>
  metricValue(m, `ringlb_connection_errors_total{backend="${backend}",reason="no_source_port"}`);
const noBackend = (m: string): number => metricValue(m, 'ringlb_rejected_connections_total{reason="no_backend"}');

t.test('Linux: unbound connects get a range per destination; a bound address one range for all (issue 8 §5)', { skip: SKIP }, async (t) => {
  const k = await inNamespace<{
    unbound: Record<'first' | 'second', { count: number; code: string }>;
    bound: Record<'first' | 'second' | 'otherAddress', { count: number; code: string }>;
    unboundAfterBound: { count: number; code: string };
  }>({ kernel: true });
  t.same(k.unbound.first, { count: PORTS, code: 'EADDRNOTAVAIL' }, 'unbound, first destination: the whole range');
  t.same(k.unbound.second, { count: PORTS, code: 'EADDRNOTAVAIL' }, 'unbound, second destination: the whole range again');
  t.same(k.bound.first, { count: PORTS, code: 'EADDRINUSE' }, 'bound to 127.0.0.2: the whole range (while 100 unbound are open)');
  t.same(k.bound.second, { count: 0, code: 'EADDRINUSE' }, 'bound to 127.0.0.2, another destination: nothing left');
  t.same(k.bound.otherAddress, { count: PORTS, code: 'EADDRINUSE' }, 'bound to 127.0.0.3: a range of its own');
  t.same(k.unboundAfterBound, { count: 0, code: 'EADDRNOTAVAIL' }, 'every port bound somewhere: no unbound connect, even to a new destination');
});

t.test('one source address holds one range of connections, then no_source_port and no_backend (issue 8 §5)', { skip: SKIP }, async (t) => {
  const r = await inNamespace<Through>({ backends: [{ id: 'ws-a', sourceAddresses: ['127.0.0.2'] }], clients: PORTS + 10 });
  t.same(r.served, [...repeat('ws-a', PORTS), ...repeat(null, 10)], 'the first 50 served, the next 10 refused');
  t.equal(r.echoed, PORTS, 'all 50 still carry bytes');
  t.same(tally(r.remotes['ws-a']!), { '127.0.0.2': PORTS }, 'every backend connection came from the pool address');
  t.equal(metricValue(r.metrics, 'ringlb_connections_active{backend="ws-a"}'), PORTS);
  t.equal(errors(r.metrics, 'ws-a'), 10, 'each refused client: one no_source_port against ws-a');
  t.equal(noBackend(r.metrics), 10, 'and, with no other backend, one no_backend');
});

t.test('three source addresses hold three ranges, spread evenly round robin (issue 8 §5)', { skip: SKIP }, async (t) => {
  const pool = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
  const r = await inNamespace<Through>({ sourceAddresses: pool, backends: [{ id: 'ws-a' }], clients: 3 * PORTS + 10 });
  t.same(r.served, [...repeat('ws-a', 3 * PORTS), ...repeat(null, 10)], 'three times as many served, then refused');
  t.equal(r.echoed, 3 * PORTS);
  const remotes = r.remotes['ws-a']!;
  t.same(tally(remotes), { '127.0.0.2': PORTS, '127.0.0.3': PORTS, '127.0.0.4': PORTS }, 'an even spread');
  t.same(remotes.slice(0, 6), [...pool, ...pool], 'in round robin order');
  t.equal(metricValue(r.metrics, 'ringlb_connections_active{backend="ws-a"}'), 3 * PORTS);
  t.equal(errors(r.metrics, 'ws-a'), 10, 'one no_source_port per refused client, not one per address tried');
  t.equal(noBackend(r.metrics), 10);
});

t.test('an address with no port left is skipped and the next one tried, for the same client (issue 8 §5)', { skip: SKIP }, async (t) => {
  // 40 ports of 127.0.0.3 are taken before ringlb starts: it fills after 10 connections.
  const pool = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
  const r = await inNamespace<Through>({
    sourceAddresses: pool,
    backends: [{ id: 'ws-a' }],
    occupy: { '127.0.0.3': PORTS - 10 },
    clients: 2 * PORTS + 10 + 10,
  });
  t.same(r.served, [...repeat('ws-a', 2 * PORTS + 10), ...repeat(null, 10)], 'no client refused until every address is full');
  const remotes = r.remotes['ws-a']!;
  t.same(tally(remotes), { '127.0.0.2': PORTS, '127.0.0.3': 10, '127.0.0.4': PORTS });
  // Connections 1-30 go round robin; the 32nd finds 127.0.0.3 full and takes 127.0.0.4.
  t.same(remotes.slice(27, 33), ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.2', '127.0.0.4', '127.0.0.2']);
  t.equal(errors(r.metrics, 'ws-a'), 10, 'only the clients refused at the end are counted');
  t.equal(noBackend(r.metrics), 10);
});

t.test('an address that is not on this host fails like a full one and is skipped (issue 8 §5)', { skip: SKIP }, async (t) => {
  // bind() to an address the host does not have fails with EADDRNOTAVAIL, the same code as
  // connect() without a port: ringlb cannot tell them apart, so it is no_source_port too.
  const r = await inNamespace<Through>({ sourceAddresses: ['10.9.9.9', '127.0.0.2'], backends: [{ id: 'ws-a' }], clients: PORTS + 10 });
  t.same(r.served, [...repeat('ws-a', PORTS), ...repeat(null, 10)], 'the first client too is served, from the next address');
  t.same(tally(r.remotes['ws-a']!), { '127.0.0.2': PORTS });
  t.equal(errors(r.metrics, 'ws-a'), 10, 'counted only for the clients refused at the end');
});

t.test('a full pool on one backend fails over to the next backend (issue 8 §5)', { skip: SKIP }, async (t) => {
  // Every client comes from 127.0.0.1: one key, so one home backend and one failover backend.
  const r = await inNamespace<Through>({
    backends: [
      { id: 'ws-a', sourceAddresses: ['127.0.0.2'] },
      { id: 'ws-b', sourceAddresses: ['127.0.0.3'] },
    ],
    clients: 2 * PORTS + 10,
  });
  const home = r.served[0]!;
  const other = home === 'ws-a' ? 'ws-b' : 'ws-a';
  t.same(r.served, [...repeat(home, PORTS), ...repeat(other, PORTS), ...repeat(null, 10)], 'home until its pool is full, then the next backend');
  t.equal(r.echoed, 2 * PORTS);
  t.same(tally(r.remotes[home]!), { [home === 'ws-a' ? '127.0.0.2' : '127.0.0.3']: PORTS });
  t.same(tally(r.remotes[other]!), { [other === 'ws-a' ? '127.0.0.2' : '127.0.0.3']: PORTS });
  t.equal(errors(r.metrics, home), PORTS + 10, 'every client after the first 50 found the home pool full');
  t.equal(errors(r.metrics, other), 10, 'the last 10 found both full');
  t.equal(noBackend(r.metrics), 10);
  t.equal(metricValue(r.metrics, `ringlb_connections_total{backend="${home}"}`), PORTS);
  t.equal(metricValue(r.metrics, `ringlb_connections_total{backend="${other}"}`), PORTS);
});

t.test('one address shared by two backends: one range for both, no failover gain (issue 8 §5)', { skip: SKIP }, async (t) => {
  const r = await inNamespace<Through>({ sourceAddresses: ['127.0.0.2'], backends: [{ id: 'ws-a' }, { id: 'ws-b' }], clients: PORTS + 10 });
  const home = r.served[0]!;
  const other = home === 'ws-a' ? 'ws-b' : 'ws-a';
  t.same(r.served, [...repeat(home, PORTS), ...repeat(null, 10)], 'the failover backend cannot get a port of 127.0.0.2 either');
  t.same(r.remotes[other], [], 'it never saw a connection');
  t.equal(errors(r.metrics, home), 10);
  t.equal(errors(r.metrics, other), 10);
  t.equal(noBackend(r.metrics), 10);
});

t.test('no pool: the kernel reuses ports per backend, a range for each; exhaustion is no_source_port (issue 8 §5)', { skip: SKIP }, async (t) => {
  const r = await inNamespace<Through>({ backends: [{ id: 'ws-a' }, { id: 'ws-b' }], clients: 2 * PORTS + 10 });
  const home = r.served[0]!;
  const other = home === 'ws-a' ? 'ws-b' : 'ws-a';
  t.same(r.served, [...repeat(home, PORTS), ...repeat(other, PORTS), ...repeat(null, 10)]);
  t.equal(r.echoed, 2 * PORTS);
  t.same(tally(r.remotes[home]!), { '127.0.0.1': PORTS });
  t.equal(errors(r.metrics, home), PORTS + 10, 'EADDRNOTAVAIL from connect() is no_source_port too');
  t.equal(errors(r.metrics, other), 10);
  t.equal(noBackend(r.metrics), 10);
});

t.test('health checks that find no source port do not mark the backend down (issue 8 §5, "Faults never cascade")', { skip: SKIP }, async (t) => {
  const r = await inNamespace<Through>({
    backends: [{ id: 'ws-a', sourceAddresses: ['127.0.0.2'] }],
    // fall: 1, so a single check failure held against the backend would mark it down.
    healthCheck: { type: 'tcp', intervalMs: 20, timeoutMs: 200, rise: 1, fall: 1 },
    clients: PORTS + 5,
    probeWhileFull: 1000, // about 50 check intervals with every port taken
  });
  t.equal(r.probe, 'EADDRNOTAVAIL', 'an unbound connect, as a health check makes, finds no port');
  t.same(r.served, [...repeat('ws-a', PORTS), ...repeat(null, 5)]);
  t.equal(metricValue(r.metrics, 'ringlb_backend_up{backend="ws-a"}'), 1);
  t.same(r.healthLogs, [], 'no health transition was logged');
  t.equal(errors(r.metrics, 'ws-a'), 5, 'only the refused clients are counted');
});
