// Running out of file descriptors (issue 8 §2; SPEC `limits`, "Faults never cascade"): the
// spawned bin under `prlimit --nofile=N:N`, real clients held open from distinct 127.1.x.y
// addresses, one at a time. A client ringlb cannot serve is closed at once and counted as
// ringlb's own condition; no backend is blamed or marked down; established connections and the
// admin endpoint keep working; the daemon recovers when clients go away.
// Needs a built dist/ (`tsc -p tsconfig.json`): bin/ringlb runs the compiled code. Linux only
// (prlimit, /proc); the prlimit cases are skipped where prlimit is missing.

import { once } from 'node:events';
import net, { type Socket } from 'node:net';
import t, { type Test } from 'tap';
import {
  backendEntry,
  clientIp,
  metricValue,
  roundTrip,
  spawnDaemon,
  startBackend,
  waitFor,
  writeConfig,
  type LogLine,
  type TestBackend,
} from '../helpers/index.js';
import {
  countChecks,
  hasPrlimit,
  holdClient,
  freeDescriptors,
  runLimited,
  samplesOf,
  scrape,
  spawnLimited,
  type HeldClient,
  type LimitedDaemon,
} from '../helpers/descriptors.js';

// Hundreds of clients opened one at a time on a shared 2-core machine: far past tap's 30 s default.
t.setTimeout(240_000);

const LOOPBACK = { host: '127.0.0.1', port: 0 };
const IDS = ['ws-a', 'ws-b', 'ws-c'];
const NO_PRLIMIT = hasPrlimit ? false : 'prlimit (util-linux) is not installed';

/** Three echo backends that announce their id, each counting the health checks it receives. */
async function threeBackends(t: Test): Promise<{ backends: TestBackend[]; checks: Array<{ readonly count: number }> }> {
  const backends = await Promise.all(IDS.map((id) => startBackend(t, id)));
  return { backends, checks: backends.map(countChecks) };
}

/** Wait until every backend has received `n` more health checks than `since`; false on timeout. */
function checksPassed(checks: ReadonlyArray<{ readonly count: number }>, since: readonly number[], n: number): Promise<boolean> {
  return waitFor(() => checks.every((c, i) => c.count >= since[i]! + n), `${n} more health checks of every backend`, 20_000).then(
    () => true,
    () => false,
  );
}

/** Hold clients from clientIp(first), clientIp(first + 1), ... one at a time. */
async function holdMany(port: number, first: number, count: number): Promise<HeldClient[]> {
  const held: HeldClient[] = [];
  for (let i = first; i < first + count; i++) held.push(await holdClient(port, clientIp(i)));
  return held;
}

/** Whether every served client of `held` still echoes a line. */
async function allEcho(held: readonly HeldClient[], text: string): Promise<boolean> {
  for (const c of held) if (c.served !== null && (await roundTrip(c.socket, text)) !== text) return false;
  return true;
}

const backendUp = (text: string): number[] => IDS.map((id) => metricValue(text, `ringlb_backend_up{backend="${id}"}`));
const activeTotal = (text: string): number =>
  IDS.reduce((sum, id) => sum + metricValue(text, `ringlb_connections_active{backend="${id}"}`), 0);
/**
 * SPEC "Operations": a condition that repeats per connection is logged at most once per 10 s,
 * with a count. The test runs well within one window, so a few lines at most, and a count.
 */
function throttled(lines: readonly LogLine[]): boolean {
  return lines.length >= 1 && lines.length <= 3 && lines.some((l) => typeof l.count === 'number');
}
const summary = (lines: readonly LogLine[]): string[] => lines.map((l) => `${l.level} ${l.msg} count=${String(l.count)}`);
const healthTransitions = (logs: readonly LogLine[]): string[] =>
  logs.filter((l) => l.msg === 'backend down' || l.msg === 'backend up').map((l) => `${l.msg} ${String(l.backend)}`);

t.test('limits.maxConnections "auto" refuses clients cleanly before descriptors run out (issue 8 §2)', { skip: NO_PRLIMIT }, async (t) => {
  const NOFILE = 300;
  // src/descriptors.ts: two per client, less 64 reserved and one per backend: (300 - 64 - 3) / 2.
  const LIMIT = 116;
  const EXTRA = 30;
  const { backends, checks } = await threeBackends(t);
  const config = {
    listen: LOOPBACK,
    metrics: LOOPBACK,
    backends: backends.map((b) => backendEntry(b)),
    healthCheck: { intervalMs: 500, timeoutMs: 1000 },
  };

  const check = await runLimited(NOFILE, ['check', '--json', '--config', writeConfig(config)]);
  t.equal(check.code, 0, 'check accepts the config');
  t.equal((JSON.parse(check.stdout) as { maxConnections?: number }).maxConnections, LIMIT, 'check --json shows the limit auto resolves to');

  const d = await spawnLimited(t, config, NOFILE);
  const startup = d.logs.length;
  t.equal(metricValue(await scrape(d.adminPort), 'ringlb_max_connections'), LIMIT, 'ringlb_max_connections is the limit in force');

  const served = await holdMany(d.port, 0, LIMIT);
  const refused = await holdMany(d.port, LIMIT, EXTRA);
  const held = [...served, ...refused];
  t.teardown(() => held.forEach((c) => c.socket.destroy()));
  t.same(
    { served: held.filter((c) => c.served !== null).length, refused: held.filter((c) => c.served === null).length },
    { served: LIMIT, refused: EXTRA },
    'exactly the limit is served; every client past it is closed at once (EOF or reset, not a hang)',
  );
  t.same(served.filter((c) => c.served === null).length, 0, 'the first 116 clients are the ones served');
  t.ok(await allEcho(served, 'still here'), 'every served client echoes while the others are refused');
  const refusalLines = d.logs.slice(startup);
  t.ok(throttled(refusalLines), 'refusals are logged at most once per 10 s with a count, not once per client', {
    found: summary(refusalLines),
  });

  // Checks must keep running at the limit: the reserve covers them.
  const since = checks.map((c) => c.count);
  t.ok(await checksPassed(checks, since, 2), 'every backend received two more health checks while the limit was reached');
  const text = await scrape(d.adminPort);
  t.equal(metricValue(text, 'ringlb_rejected_connections_total{reason="max_connections"}'), EXTRA, 'every refusal is counted');
  t.same(backendUp(text), [1, 1, 1], 'every backend is still up');
  t.same(samplesOf(text, 'ringlb_connection_errors_total'), [], 'no backend is blamed for anything');
  t.same(healthTransitions(d.logs), [], 'no health transition was logged');

  held.forEach((c) => c.socket.destroy());
  await waitFor(async () => activeTotal(await scrape(d.adminPort)) === 0, 'the daemon to see every client go', 30_000);
  const again = await holdMany(d.port, 1000, 10);
  t.teardown(() => again.forEach((c) => c.socket.destroy()));
  t.same(again.filter((c) => c.served === null).length, 0, 'once the clients closed, new clients are served again');
  t.ok(await allEcho(again, 'back'), 'and they echo');
});

/** An idle connection to the admin endpoint: one descriptor in the daemon (node:http waits 60 s for a request). */
async function idleAdminConnection(adminPort: number): Promise<{ socket: Socket; closed: () => boolean }> {
  const socket = net.connect({ host: '127.0.0.1', port: adminPort });
  let closed = false;
  socket.on('error', () => {});
  socket.once('close', () => (closed = true));
  socket.once('end', () => (closed = true));
  await once(socket, 'connect');
  socket.resume();
  return { socket, closed: () => closed };
}

/**
 * The number of free descriptors once it has read the same five times 20 ms apart: a health
 * check holds one for a moment, and a reading taken then would be one short.
 */
async function steadySpare(spare: () => number): Promise<number> {
  const readings: number[] = [];
  await waitFor(() => {
    readings.push(spare());
    return readings.length >= 5 && readings.slice(-5).every((r) => r === readings[readings.length - 1]);
  }, 'the descriptor count to settle');
  return readings[readings.length - 1]!;
}

/**
 * Bring the daemon to exactly `free` unused descriptors: an idle admin connection takes one, a
 * held client closed gives two back. At 0 free, accept() fails and libuv accepts-and-closes the
 * client itself (ringlb never sees it); at 1 free, ringlb accepts and its backend connect()
 * fails with EMFILE: the case it must count as its own.
 */
async function steer(d: LimitedDaemon, nofile: number, free: number, held: HeldClient[], idle: Socket[]): Promise<void> {
  const spare = (): number => freeDescriptors(d.pid, nofile);
  for (let step = 0; (await steadySpare(spare)) !== free; step++) {
    if (step === 20) throw new Error(`could not bring the daemon to ${free} free descriptors (${spare()} free)`);
    const before = await steadySpare(spare);
    if (before > free) {
      const admin = await idleAdminConnection(d.adminPort);
      idle.push(admin.socket);
      await waitFor(() => spare() < before || admin.closed(), 'the daemon to accept an admin connection');
    } else {
      const client = held.pop()!;
      client.socket.destroy();
      await waitFor(() => spare() >= before + 2, 'the daemon to close a released client');
    }
  }
}

t.test('limits.maxConnections 0: exhausted descriptors are ringlb\'s own condition (issue 8 §2)', { skip: NO_PRLIMIT }, async (t) => {
  const NOFILE = 200;
  const INTERVAL = 500;
  const { backends } = await threeBackends(t);
  const d = await spawnLimited(
    t,
    {
      listen: LOOPBACK,
      metrics: LOOPBACK,
      backends: backends.map((b) => backendEntry(b)),
      // fall 1: a single health check blamed for a local failure marks its backend down.
      healthCheck: { intervalMs: INTERVAL, timeoutMs: 1000, fall: 1, rise: 1 },
      limits: { maxConnections: 0 },
    },
    NOFILE,
  );
  const startup = d.logs.length;
  const held: HeldClient[] = [];
  const idle: Socket[] = [];
  t.teardown(() => [...held.map((c) => c.socket), ...idle].forEach((s) => s.destroy()));

  // Serve clients until one is not: then every descriptor but at most one is in use.
  let next = 0;
  for (; next < NOFILE; next++) {
    const client = await holdClient(d.port, clientIp(next));
    if (client.served === null) break;
    held.push(client);
    await roundTrip(client.socket, 'hello'); // served means it echoes
  }
  t.ok(next < NOFILE && held.length > 50, `the daemon ran out of descriptors after ${held.length} clients`);

  // No descriptor left at all, for several health-check intervals. Checks cannot reach the
  // backends now, so there is no check to count: the wait is on the clock, and what is asserted
  // afterwards is that nothing was blamed meanwhile. Clients meanwhile are closed at once.
  await steer(d, NOFILE, 0, held, idle);
  const until = Date.now() + 4 * INTERVAL;
  const meanwhile: HeldClient[] = [];
  while (Date.now() < until) {
    meanwhile.push(await holdClient(d.port, clientIp(next++)));
    await new Promise((r) => setTimeout(r, 100));
  }
  held.push(...meanwhile.filter((c) => c.served !== null)); // released with the others if served
  t.same(
    meanwhile.filter((c) => c.served !== null).length,
    0,
    `with no descriptor left, all ${meanwhile.length} clients that tried were closed at once, none left hanging`,
  );

  // One descriptor left: ringlb accepts, cannot connect to a backend, and must count that itself.
  await steer(d, NOFILE, 1, held, idle);
  const refusals = await holdMany(d.port, next, 10);
  next += 10;
  held.push(...refusals.filter((c) => c.served !== null)); // released with the others if served
  t.same(refusals.filter((c) => c.served !== null).length, 0, 'with one descriptor left, no further client is served');
  t.equal(d.child.exitCode, null, 'the daemon is alive');
  t.ok(await allEcho(held, 'still here'), `all ${held.length} established connections still echo`);
  const exhaustionLines = d.logs.slice(startup);
  t.ok(throttled(exhaustionLines), 'exhaustion is logged at most once per 10 s with a count, not once per client', {
    found: summary(exhaustionLines),
  });

  // The admin endpoint needs a descriptor per scrape, and node:http closes idle keep-alive
  // connections after 5 s, so a connection opened beforehand is not dependable: scrape once a
  // few clients have gone.
  idle.splice(0).forEach((s) => s.destroy());
  held.splice(-10).forEach((c) => c.socket.destroy());
  await waitFor(() => freeDescriptors(d.pid, NOFILE) >= 20, 'released clients to free their descriptors');
  const text = await scrape(d.adminPort);
  t.ok(
    metricValue(text, 'ringlb_rejected_connections_total{reason="no_file_descriptors"}') >= 1,
    'clients refused for want of a descriptor are counted as no_file_descriptors',
  );
  t.same(samplesOf(text, 'ringlb_connection_errors_total'), [], 'no backend is blamed for the missing descriptors');
  t.same(backendUp(text), [1, 1, 1], 'every backend is up');
  t.same(healthTransitions(d.logs), [], 'no backend was marked down at any time');

  held.splice(0).forEach((c) => c.socket.destroy());
  await waitFor(async () => activeTotal(await scrape(d.adminPort)) === 0, 'the daemon to see every client go', 30_000);
  const again = await holdMany(d.port, next, 10);
  held.push(...again);
  t.same(again.filter((c) => c.served === null).length, 0, 'after the clients went away, new clients are served again');
  t.ok(await allEcho(again, 'back'), 'and they echo');
});

// IPv6 clients share a limit per /64, but loopback is the single address ::1/128: a test cannot
// bind two addresses of one /64, so the /64 key is left to the unit tests of admission.
t.test('limits.maxConnectionsPerIp refuses the 4th connection from one address only (issue 8 §2)', async (t) => {
  const { backends } = await threeBackends(t);
  const d = await spawnDaemon(t, {
    listen: LOOPBACK,
    metrics: LOOPBACK,
    backends: backends.map((b) => backendEntry(b)),
    healthCheck: { type: 'none' },
    limits: { maxConnectionsPerIp: 3 },
  });
  const ip = clientIp(0);
  const first = await Promise.all([1, 2, 3].map(() => holdClient(d.port, ip)));
  t.teardown(() => first.forEach((c) => c.socket.destroy()));
  t.same(first.filter((c) => c.served === null).length, 0, 'three connections from one address are served');
  const fourth = await holdClient(d.port, ip);
  t.equal(fourth.served, null, 'the 4th is closed at once');
  const other = await holdClient(d.port, clientIp(1));
  t.teardown(() => other.socket.destroy());
  t.not(other.served, null, 'another address still gets in');
  const per = 'ringlb_rejected_connections_total{reason="max_connections_per_ip"}';
  t.equal(metricValue(await scrape(d.adminPort), per), 1, 'the refusal is counted as max_connections_per_ip');

  first.pop()!.socket.destroy();
  await waitFor(async () => activeTotal(await scrape(d.adminPort)) === 3, 'the daemon to see one connection close');
  const replacement = await holdClient(d.port, ip);
  t.teardown(() => replacement.socket.destroy());
  t.not(replacement.served, null, 'after one of the three closed, that address may open one more');
  t.ok(await allEcho([...first, replacement, other], 'ping'), 'and every admitted connection echoes');
  t.equal((await holdClient(d.port, ip)).served, null, 'the address is at its limit again');
  t.equal(metricValue(await scrape(d.adminPort), per), 2, 'and that refusal is counted too');
});
