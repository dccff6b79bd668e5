// Disruption control with real sockets (issue 9): held clients whose backend is asserted before
// and after a change; rehoming paced by an injected clock; spills and their return home; onDown
// "close" and drain deadlines spread; the closed-connections sum invariant. Timing logic runs on
// a ManualClock, so the tests assert what is due, never how long anything took.

import type { Socket } from 'node:net';
import t, { type Test } from 'tap';
import { validateConfig } from '../../src/config.js';
import { lookupAll } from '../../src/report.js';
import { ManualClock } from '../helpers/clock.js';
import {
  adminGet,
  backendEntry,
  clientIp,
  connectFrom,
  metricValue,
  readLine,
  startBackend,
  startDaemon,
  waitFor,
  type TestBackend,
  type TestDaemon,
} from '../helpers/index.js';

const NO_CHECKS = { type: 'none' } as const;

interface Held {
  readonly ip: string;
  readonly socket: Socket;
  /** The backend that greeted it. */
  readonly on: string;
  closed: boolean;
}

/** Open and hold one connection from each of `ips`, 50 at a time; each records its backend. */
async function hold(t: Test, port: number, ips: readonly string[]): Promise<Held[]> {
  const held: Held[] = [];
  for (let i = 0; i < ips.length; i += 50) {
    const batch = await Promise.all(
      ips.slice(i, i + 50).map(async (ip) => {
        const socket = await connectFrom(port, ip);
        socket.on('error', () => {});
        const h: Held = { ip, socket, on: await readLine(socket), closed: false };
        // The client sockets are half-open capable: ringlb's FIN (or reset) is the close.
        socket.on('end', () => (h.closed = true));
        socket.on('close', () => (h.closed = true));
        socket.resume();
        return h;
      }),
    );
    held.push(...batch);
  }
  t.teardown(() => {
    for (const h of held) h.socket.destroy();
  });
  return held;
}

const tally = (held: readonly Held[]): Record<string, number> => {
  const counts: Record<string, number> = {};
  for (const h of held) counts[h.on] = (counts[h.on] ?? 0) + 1;
  return counts;
};

async function metricsOf(td: TestDaemon): Promise<string> {
  return (await adminGet(`${td.adminUrl}/metrics`)).body;
}

/** Sum of every sample of `name` in Prometheus text (optionally only lines containing `filter`). */
function sumOf(text: string, name: string, filter = ''): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if ((line.startsWith(`${name}{`) || line.startsWith(`${name} `)) && line.includes(filter)) {
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return total;
}

/** The counters add up: every connection served has either ended (with a cause) or is open. */
async function invariant(t: Test, td: TestDaemon): Promise<void> {
  const text = await metricsOf(td);
  t.equal(
    sumOf(text, 'ringlb_closed_connections_total'),
    sumOf(text, 'ringlb_connections_total') - sumOf(text, 'ringlb_connections_active'),
    'closed (by cause) + open = served',
  );
}

function configOf(backends: readonly TestBackend[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { backends: backends.map((b) => backendEntry(b)), healthCheck: NO_CHECKS, ...extra };
}

/** Where the ring sends each ip under `config` (every backend up). */
function homes(config: Record<string, unknown>, ips: readonly string[]): Array<string | null> {
  return lookupAll(validateConfig({ listen: { host: '127.0.0.1', port: 1 }, ...config }), ips);
}

t.test('rehoming after 5 -> 6 backends closes exactly the clients the ring moved, paced over the window', async (t) => {
  const backends = await Promise.all(['ws-a', 'ws-b', 'ws-c', 'ws-d', 'ws-e', 'ws-f'].map((id) => startBackend(t, id)));
  const five = configOf(backends.slice(0, 5), { rebalance: { rehome: true, windowMs: 10_000 } });
  const six = configOf(backends, { rebalance: { rehome: true, windowMs: 10_000 } });
  const clock = new ManualClock();
  const td = await startDaemon(t, five, { clock, random: Math.random });
  const ips = Array.from({ length: 2000 }, (_, i) => clientIp(i));
  const held = await hold(t, td.port, ips);
  t.same(held.map((h) => h.on), homes(five, ips), 'every client is on its home before');

  const after = homes(six, ips);
  const moved = new Set(ips.filter((_, i) => after[i] !== held[i]!.on));
  t.ok(moved.size > 200 && moved.size < 500, `about 1/6 of 2000 move (${moved.size})`);
  t.ok([...moved].every((ip) => after[ips.indexOf(ip)] === 'ws-f'), 'all of them to the new backend');

  const report = await td.daemon.reload(validateConfig({ listen: { host: '127.0.0.1', port: 0 }, metrics: { host: '127.0.0.1', port: 0 }, ...six }));
  t.equal(report.misplaced, moved.size, 'the reload misplaced exactly the moved clients');
  // Close 0 is due at once; the gauge counts the rest.
  await waitFor(() => held.filter((h) => h.closed).length === 1, 'the first close');
  t.equal(sumOf(await metricsOf(td), 'ringlb_misplaced_connections'), moved.size - 1, 'the misplaced gauge counts exactly the rest');

  // Close i is due at i x window / n: at half the window, floor(n / 2) + 1 are due.
  clock.advance(5000);
  const half = Math.floor(moved.size / 2) + 1;
  await waitFor(() => held.filter((h) => h.closed).length >= half, 'the first half of the closes');
  t.equal(held.filter((h) => h.closed).length, half, 'no more than are due');
  clock.advance(5000);
  await waitFor(() => held.filter((h) => h.closed).length >= moved.size, 'every close');
  const closed = new Set(held.filter((h) => h.closed).map((h) => h.ip));
  t.same([...closed].sort(), [...moved].sort(), 'the closed set is the set the ring moved');
  const text = await metricsOf(td);
  t.equal(sumOf(text, 'ringlb_closed_connections_total', 'cause="rehome"'), moved.size, 'each counted as rehome');
  t.equal(sumOf(text, 'ringlb_misplaced_connections'), 0, 'nothing is misplaced any more');
  t.equal(held.filter((h) => !h.closed).length, 2000 - moved.size, 'connections on their home were not touched');
  // The clients reconnect: to their home, the new backend.
  const back = await hold(t, td.port, [...moved].slice(0, 50));
  t.same(tally(back), { 'ws-f': 50 }, 'reconnects land on the new backend');
  await invariant(t, td);
});

t.test('a connection whose home changes back before its turn is spared; rehome off touches nothing', async (t) => {
  const backends = await Promise.all(['ws-a', 'ws-b', 'ws-c', 'ws-d'].map((id) => startBackend(t, id)));
  const rebalance = { rehome: true, windowMs: 1000 };
  const three = configOf(backends.slice(0, 3), { rebalance });
  const four = configOf(backends, { rebalance });
  const clock = new ManualClock();
  const td = await startDaemon(t, three, { clock });
  const ips = Array.from({ length: 400 }, (_, i) => clientIp(3000 + i));
  const held = await hold(t, td.port, ips);
  const full = (c: Record<string, unknown>) => validateConfig({ listen: { host: '127.0.0.1', port: 0 }, metrics: { host: '127.0.0.1', port: 0 }, ...c });
  const report = await td.daemon.reload(full(four));
  const moved = report.misplaced;
  t.ok(moved > 50, `the reload misplaced ${moved}`);
  clock.advance(250);
  const early = Math.floor((moved * 250) / 1000) + 1;
  await waitFor(() => held.filter((h) => h.closed).length >= early, 'the first quarter of the closes');
  await td.daemon.reload(full(three)); // back: nobody is misplaced now
  clock.advance(1000);
  t.equal(sumOf(await metricsOf(td), 'ringlb_closed_connections_total', 'cause="rehome"'), early, 'the rest were spared');
  t.equal(held.filter((h) => h.closed).length, early);

  // With rehome off the gauge still tells, and nothing is closed.
  await td.daemon.reload(full({ ...four, rebalance: { rehome: false, windowMs: 1000 } }));
  const misplaced = sumOf(await metricsOf(td), 'ringlb_misplaced_connections');
  t.ok(misplaced > 0, `misplaced shown (${misplaced})`);
  clock.advance(5000);
  t.equal(sumOf(await metricsOf(td), 'ringlb_closed_connections_total', 'cause="rehome"'), early, 'no rehoming while off');
  const ring = JSON.parse((await adminGet(`${td.adminUrl}/ring`)).body) as { backends: Array<{ misplaced: number }> };
  t.equal(
    ring.backends.reduce((n, b) => n + b.misplaced, 0),
    misplaced,
    '/ring shows the same misplaced counts',
  );
  await invariant(t, td);
});

t.test('bounded loads: a hot address spills past its full home, and returns home when there is room', async (t) => {
  const [a, b] = await Promise.all(['ws-a', 'ws-b'].map((id) => startBackend(t, id)));
  // Find an address whose home is ws-a: its connections all hash there.
  const base = configOf([a!, b!]);
  const candidates = Array.from({ length: 50 }, (_, i) => clientIp(5000 + i));
  const ip = candidates[homes(base, candidates).indexOf('ws-a')]!;
  const clock = new ManualClock();
  const td = await startDaemon(t, { ...base, hashing: { balanceFactor: 1.25 }, rebalance: { rehome: true, windowMs: 100 } }, { clock });
  // Capacity for the k-th connection is ceil(1.25 x k / 2): 1, 2, 2, 3, 4, 4, 5, 5, so of 8
  // connections from one address the 3rd, 6th and 8th find ws-a full and spill to ws-b.
  const held: Held[] = [];
  for (let k = 0; k < 8; k++) held.push(...(await hold(t, td.port, [ip])));
  t.same(held.map((h) => h.on), ['ws-a', 'ws-a', 'ws-b', 'ws-a', 'ws-a', 'ws-b', 'ws-a', 'ws-b']);
  let text = await metricsOf(td);
  t.equal(metricValue(text, 'ringlb_spilled_connections_total{backend="ws-a"}'), 3, 'spills counted against the home');
  t.equal(sumOf(text, 'ringlb_misplaced_connections'), 0, 'while the home is full, a spill is where it belongs');

  // Two connections on ws-a end: 3 and 3, so a spilled one's home has room (capacity 4 of 6).
  for (const h of held.filter((x) => x.on === 'ws-a').slice(0, 2)) h.socket.destroy();
  await waitFor(async () => sumOf(await metricsOf(td), 'ringlb_misplaced_connections') === 3, 'the spills to be misplaced');
  // Rehoming looks again after a close (CAPACITY_RECHECK_MS) and paces three closes over the
  // window, the first at once. Each is checked at its turn: after two are closed, ws-a is full
  // for the third (3 of capacity 3), so it is spared. The clock moves one turn at a time, with
  // the sockets of each close settled before the next turn, as they are when turns are apart.
  const spills = held.filter((h) => h.on === 'ws-b');
  clock.advance(1000);
  await waitFor(() => spills.filter((h) => h.closed).length === 1 && td.daemon.connections.size === 5, 'the first rehome');
  clock.advance(34);
  await waitFor(() => spills.filter((h) => h.closed).length === 2 && td.daemon.connections.size === 4, 'the second rehome');
  clock.advance(100);
  text = await metricsOf(td);
  t.equal(sumOf(text, 'ringlb_closed_connections_total', 'cause="rehome"'), 2, 'two rehomed');
  t.equal(sumOf(text, 'ringlb_misplaced_connections'), 0, 'the third is home again with ws-a full');
  const back = await hold(t, td.port, [ip]);
  t.same(tally(back), { 'ws-a': 1 }, 'a rehomed client reconnects to its home');
  await invariant(t, td);
});

t.test('onDown "close": a backend marked down loses its connections, spread over closeSpreadMs', async (t) => {
  const [a, b] = await Promise.all(['ws-a', 'ws-b'].map((id) => startBackend(t, id)));
  const clock = new ManualClock();
  const td = await startDaemon(
    t,
    {
      backends: [backendEntry(a!), backendEntry(b!)],
      healthCheck: { intervalMs: 30, timeoutMs: 200, rise: 1, fall: 1, onDown: 'close' },
      rebalance: { closeSpreadMs: 1000 },
    },
    { clock },
  );
  const held = await hold(t, td.port, Array.from({ length: 200 }, (_, i) => clientIp(6000 + i)));
  const onB = held.filter((h) => h.on === 'ws-b');
  t.ok(onB.length > 50, `${onB.length} on ws-b`);
  // ws-b stops accepting (its open connections stay): its checks are refused, it is marked down.
  b!.server.close();
  await waitFor(() => td.logs.some((l) => l.msg === 'closing the connections of a backend that is down'), 'ws-b to be marked down');
  t.match(td.logs.find((l) => l.msg === 'closing the connections of a backend that is down'), { backend: 'ws-b', closing: onB.length, closeSpreadMs: 1000 });
  const first = 1; // close 0 is due at once
  await waitFor(() => onB.filter((h) => h.closed).length >= first, 'the first close');
  t.equal(onB.filter((h) => h.closed).length, first, 'only the first is due before the clock moves');
  clock.advance(500);
  const due = Math.floor(onB.length / 2) + 1;
  await waitFor(() => onB.filter((h) => h.closed).length >= due, 'half of them');
  t.equal(onB.filter((h) => h.closed).length, due, 'paced: half at half the spread');
  clock.advance(500);
  await waitFor(() => onB.every((h) => h.closed), 'all of them');
  t.ok(held.filter((h) => h.on === 'ws-a').every((h) => !h.closed), "ws-a's connections are untouched");
  t.equal(sumOf(await metricsOf(td), 'ringlb_closed_connections_total', 'cause="backend_down"'), onB.length);
  await invariant(t, td);
});

t.test('a removed backend: at its drain deadline its connections close, spread; the rest stay', async (t) => {
  const [a, b] = await Promise.all(['ws-a', 'ws-b'].map((id) => startBackend(t, id)));
  const clock = new ManualClock();
  const spread = { closeSpreadMs: 400 };
  const td = await startDaemon(t, { ...configOf([a!, b!]), rebalance: spread }, { clock });
  const held = await hold(t, td.port, Array.from({ length: 100 }, (_, i) => clientIp(7000 + i)));
  const onB = held.filter((h) => h.on === 'ws-b');
  await td.daemon.reload(
    validateConfig({
      listen: { host: '127.0.0.1', port: 0 },
      metrics: { host: '127.0.0.1', port: 0 },
      ...configOf([a!]),
      rebalance: spread,
      drainTimeoutMs: 50,
    }),
  );
  await waitFor(() => td.logs.some((l) => l.msg === 'closing the connections of a removed backend'), 'the drain deadline');
  clock.advance(400);
  await waitFor(() => onB.every((h) => h.closed), "every connection of ws-b to close");
  t.ok(held.filter((h) => h.on === 'ws-a').every((h) => !h.closed), 'the others stay');
  t.equal(sumOf(await metricsOf(td), 'ringlb_closed_connections_total', 'cause="drain_deadline"'), onB.length);
  await invariant(t, td);
});

t.test('shutdown spreads what is still open over closeSpreadMs, ending at the deadline', async (t) => {
  const backend = await startBackend(t, 'ws-a');
  const td = await startDaemon(t, { ...configOf([backend]), shutdownTimeoutMs: 600, rebalance: { closeSpreadMs: 300 } });
  const held = await hold(t, td.port, Array.from({ length: 60 }, (_, i) => clientIp(8000 + i)));
  await td.daemon.shutdown();
  await waitFor(() => held.every((h) => h.closed), 'every client to be closed');
  const spreadLine = td.logs.find((l) => l.msg === 'shutting down: closing the connections still open, spread to the deadline');
  t.match(spreadLine, { open: 60, closeSpreadMs: 300 }, 'the spread began with every connection open');
  t.equal(td.daemon.connections.size, 0, 'nothing left open');
  // The registry outlives the admin endpoint: read the counters directly.
  const text = await td.daemon.metrics.registry.metrics();
  t.equal(sumOf(text, 'ringlb_closed_connections_total', 'cause="shutdown"'), 60, 'each closed as shutdown');
});

t.test('the counters add up through churn: resets, half-closes and refusals', async (t) => {
  const backends = await Promise.all(['ws-a', 'ws-b'].map((id) => startBackend(t, id)));
  const td = await startDaemon(t, configOf(backends));
  for (let i = 0; i < 60; i++) {
    const s = await connectFrom(td.port, clientIp(9000 + i));
    s.on('error', () => {});
    const on = await readLine(s);
    if (i % 3 === 0) s.resetAndDestroy();
    else if (i % 3 === 1) s.end();
    else {
      // The backend goes: the client hears its FIN and closes its own side.
      s.on('end', () => s.end());
      s.resume();
      backends.find((b) => b.id === on)!.sockets.forEach((x) => x.destroy());
    }
  }
  await waitFor(() => td.daemon.connections.size === 0, 'every connection to end');
  await invariant(t, td);
  const text = await metricsOf(td);
  t.equal(sumOf(text, 'ringlb_closed_connections_total'), 60, 'sixty ended');
  t.ok(sumOf(text, 'ringlb_closed_connections_total', 'cause="client"') > 0, 'some by the client');
  t.ok(sumOf(text, 'ringlb_closed_connections_total', 'cause="client_error"') > 0, 'some by a client reset');
  t.ok(sumOf(text, 'ringlb_closed_connections_total', 'cause="backend"') > 0, 'some by the backend');
});

t.test('rehoming never closes the connections of a draining backend: drain keeps them until they close', async (t) => {
  const backends = await Promise.all(['ws-a', 'ws-b'].map((id) => startBackend(t, id)));
  const rebalance = { rehome: true, windowMs: 100 };
  const clock = new ManualClock();
  const td = await startDaemon(t, configOf(backends, { rebalance }), { clock });
  const held = await hold(t, td.port, Array.from({ length: 100 }, (_, i) => clientIp(14_000 + i)));
  const onB = held.filter((h) => h.on === 'ws-b').length;
  await td.daemon.reload(
    validateConfig({
      listen: { host: '127.0.0.1', port: 0 },
      metrics: { host: '127.0.0.1', port: 0 },
      backends: [backendEntry(backends[0]!), backendEntry(backends[1]!, { drain: true })],
      healthCheck: NO_CHECKS,
      rebalance,
    }),
  );
  clock.advance(1000);
  const text = await metricsOf(td);
  t.equal(sumOf(text, 'ringlb_misplaced_connections'), onB, 'they are misplaced (their home is ws-a now)');
  t.equal(sumOf(text, 'ringlb_closed_connections_total'), 0, 'and none is closed');
  t.ok(held.every((h) => !h.closed));
});
