// Graceful shutdown of the spawned daemon (SPEC "Operations"): stop accepting at once, keep the
// admin endpoint and open connections until they finish or shutdownTimeoutMs passes, exit 0; a
// second signal closes everything now. Then `ringlb diff` as people and scripts read it.
// Needs a built dist/ (`tsc -p tsconfig.json`): bin/ringlb runs the compiled code.

import net, { type Socket } from 'node:net';
import t, { type Test } from 'tap';
import { validateConfig, type Config } from '../../src/config.js';
import { buildRing, compareRings, shares, type Ring } from '../../src/ring.js';
import {
  adminGet,
  backendEntry,
  clientIp,
  connectFrom,
  metricValue,
  peerClosed,
  readLine,
  runRinglb,
  spawnDaemon,
  startBackend,
  waitFor,
  writeConfig,
  type LogLine,
  type SpawnedDaemon,
  roundTrip,
} from '../helpers/index.js';

// Top-level tests are independent (port 0, own daemons and temp files): run them side by side.
t.jobs = 4;

const LOOPBACK = { host: '127.0.0.1', port: 0 };

/** Wait (bounded) until the peer has closed `socket`. */
async function closedByPeer(socket: Socket, what: string): Promise<void> {
  let closed = false;
  void peerClosed(socket).then(() => (closed = true));
  await waitFor(() => closed, what);
}

/** Connect to 127.0.0.1:port: 'connected' (and close again) or the error code. */
function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

async function waitForLog(d: SpawnedDaemon, msg: string): Promise<LogLine> {
  await waitFor(() => d.logs.some((l) => l.msg === msg), `the log line '${msg}'`);
  return d.logs.find((l) => l.msg === msg)!;
}

/** One backend 'ws-a', a daemon in front of it, and one client connection held open. */
async function daemonWithClient(t: Test, shutdownTimeoutMs: number, ip: string) {
  const backend = await startBackend(t, 'ws-a');
  const d = await spawnDaemon(t, {
    listen: LOOPBACK,
    metrics: LOOPBACK,
    healthCheck: { type: 'none' },
    shutdownTimeoutMs,
    backends: [backendEntry(backend)],
  });
  const client = await connectFrom(d.port, ip);
  t.teardown(() => client.destroy());
  t.equal(await readLine(client), 'ws-a', 'a client connected through the daemon');
  return { backend, d, client, adminUrl: `http://127.0.0.1:${d.adminPort}` };
}

const LISTENERS_CLOSED = 'shutting down: listeners closed';
const FORCED = 'shutting down: closing the connections still open';

t.test('SIGTERM: refuse new connections, serve the open one and the admin endpoint, exit 0 when it closes', async (t) => {
  const { d, client, adminUrl } = await daemonWithClient(t, 20_000, clientIp(1));
  d.child.kill('SIGTERM');
  const closedLine = await waitForLog(d, LISTENERS_CLOSED);
  t.match(closedLine, { level: 30, open: 1, shutdownTimeoutMs: 20_000 }, 'shutdown starts with one connection open');
  t.match(d.logs.find((l) => l.msg === 'signal received'), { signal: 'SIGTERM' }, 'the signal is logged');
  // A SIGHUP while draining (from a config tool that does not know) must not end or crash the
  // daemon: every check below comes after it.
  d.child.kill('SIGHUP');
  await waitFor(async () => (await connectOutcome(d.port)) === 'ECONNREFUSED', 'new connections to be refused');
  t.equal(await connectOutcome(d.port), 'ECONNREFUSED', 'a new connection is refused');

  const metrics = await adminGet(`${adminUrl}/metrics`);
  t.equal(metrics.status, 200, '/metrics still answers while a connection is open');
  t.equal(metricValue(metrics.body, 'ringlb_connections_active{backend="ws-a"}'), 1, 'and shows the open connection');
  const healthz = await adminGet(`${adminUrl}/healthz`);
  // Shutting down is not healthy, whatever the backends' health (issue 7 item 10; docs/metrics.md).
  t.same([healthz.status, healthz.body], [503, 'shutting down\n'], '/healthz answers 503 while the daemon drains');
  t.equal(await roundTrip(client, 'still open'), 'still open', 'the open connection still echoes');
  t.equal(d.child.exitCode, null, 'the daemon waits for the open connection');

  client.end();
  await closedByPeer(client, 'the pair to close after the client ends');
  await waitFor(() => d.child.exitCode !== null, 'the daemon to exit once the connection closed');
  const result = await d.exited;
  t.equal(result.code, 0, 'exit code 0 once the connection closed');
  t.equal(result.signal, null, 'an exit, not a kill');
  t.notOk(d.logs.some((l) => l.msg === FORCED), 'no connection had to be forced');
  t.ok(d.logs.some((l) => l.msg === 'stopped'), "the last words are 'stopped'");
});

t.test('SIGTERM with shutdownTimeoutMs 300: a connection left open is closed, exit 0', async (t) => {
  const { backend, d, client } = await daemonWithClient(t, 300, clientIp(2));
  d.child.kill('SIGTERM');
  await closedByPeer(client, 'the daemon to close the connection after shutdownTimeoutMs');
  t.pass('the daemon closed the connection left open');
  await waitFor(() => d.child.exitCode !== null, 'the daemon to exit');
  const result = await d.exited;
  t.equal(result.code, 0, 'exit code 0');
  t.match(d.logs.find((l) => l.msg === FORCED), { level: 40, closed: 1 }, 'a warning says one connection was closed');
  await waitFor(() => backend.sockets.size === 0, "the backend's side to be closed too");
});

t.test('a second signal closes every connection at once, exit 0', async (t) => {
  const { d, client } = await daemonWithClient(t, 60_000, clientIp(3));
  d.child.kill('SIGTERM');
  await waitForLog(d, LISTENERS_CLOSED);
  t.equal(await roundTrip(client, 'before the second signal'), 'before the second signal', 'the connection is still served');
  d.child.kill('SIGINT');
  await closedByPeer(client, 'the second signal to close the connection');
  t.pass('the client sees its connection closed');
  await waitFor(() => d.child.exitCode !== null, 'the daemon to exit well before shutdownTimeoutMs');
  const result = await d.exited;
  t.equal(result.code, 0, 'exit code 0');
  t.match(d.logs.find((l) => l.msg === 'second signal: closing every connection now'), { level: 40, signal: 'SIGINT' }, 'the second signal is logged');
  t.match(d.logs.find((l) => l.msg === FORCED), { closed: 1 }, 'and the connection it closed');
});

// ---------------------------------------------------------------------------------------------
// ringlb diff OLD NEW

/** A config with backends that are never connected to (diff only reads the files). */
function fleet(backends: Array<string | { id: string; weight?: number; drain?: boolean }>): Record<string, unknown> {
  return {
    listen: LOOPBACK,
    backends: backends.map((b, i) => {
      const { id, ...extra } = typeof b === 'string' ? { id: b } : b;
      return { id, host: '10.0.0.1', port: 9000 + i, ...extra };
    }),
  };
}

/** The healthy ring of a config and each backend's share: what diff compares (drain as configured). */
function healthy(config: Config): { ring: Ring; flags: Uint8Array; share: (id: string) => number } {
  const ring = buildRing(config.backends, config.hashing.vnodes);
  const flags = Uint8Array.from(ring.ids, (id) => (config.backends.find((b) => b.id === id)!.drain ? 0 : 1));
  const values = shares(ring, flags);
  return { ring, flags, share: (id) => (ring.ids.includes(id) ? values[ring.ids.indexOf(id)]! : 0) };
}

interface DiffJson {
  moved: number;
  backends: Array<{ id: string; before: number; after: number }>;
}

/**
 * Run `diff` as text and as JSON on OLD and NEW. Checks the JSON against compareRings and
 * shares computed here, and the text against the JSON: `id  before  after` per backend in
 * aligned columns, then the moved line. Returns the JSON.
 */
async function diff(t: Test, before: Record<string, unknown>, after: Record<string, unknown>): Promise<DiffJson> {
  const oldFile = writeConfig(before, 'old.json');
  const newFile = writeConfig(after, 'new.json');
  const [asText, asJson] = await Promise.all([runRinglb(['diff', oldFile, newFile]), runRinglb(['diff', '--json', oldFile, newFile])]);
  t.equal(asJson.code, 0, 'diff --json: exit 0');
  t.equal(asJson.stderr, '', 'nothing on stderr');
  const body = JSON.parse(asJson.stdout) as DiffJson;
  t.same(Object.keys(body), ['moved', 'backends'], 'JSON: {moved, backends}');
  t.ok(body.backends.every((b) => Object.keys(b).join() === 'id,before,after'), 'each backend is {id, before, after}');

  const a = healthy(validateConfig(before));
  const b = healthy(validateConfig(after));
  const expectedMoved = compareRings(a.ring, a.flags, b.ring, b.flags).moved;
  t.ok(Math.abs(body.moved - expectedMoved) < 1e-9, `moved ${body.moved} is compareRings on the healthy rings (${expectedMoved})`);
  const ids = [...new Set([...(before.backends as Array<{ id: string }>), ...(after.backends as Array<{ id: string }>)].map((x) => x.id))];
  t.same(body.backends.map((x) => x.id), ids, 'the union of both configs, old ones first');
  for (const x of body.backends) {
    t.ok(Math.abs(x.before - a.share(x.id)) < 1e-9 && Math.abs(x.after - b.share(x.id)) < 1e-9, `${x.id}: exact shares before and after`);
  }

  t.equal(asText.code, 0, 'diff: exit 0');
  t.equal(asText.stderr, '', 'nothing on stderr');
  const pct = (f: number): string => `${(f * 100).toFixed(1)}%`;
  const cells = body.backends.map((x) => [x.id, pct(x.before), pct(x.after)] as const);
  const w0 = Math.max(...cells.map((c) => c[0].length));
  const w1 = Math.max(...cells.map((c) => c[1].length));
  const rows = cells.map(([id, was, now]) => `${id.padEnd(w0)}  ${was.padEnd(w1)}  ${now}\n`);
  t.equal(asText.stdout, `${rows.join('')}moved: ${pct(body.moved)} of the hash space\n`, 'text: aligned rows, then the moved line');
  return body;
}

t.test('diff', { jobs: 4 }, async (t) => {
  t.test('a backend replaced by another: the exact text', async (t) => {
    const body = await diff(t, fleet(['a']), fleet(['b']));
    t.same(body, { moved: 1, backends: [{ id: 'a', before: 1, after: 0 }, { id: 'b', before: 0, after: 1 }] });
    const run = await runRinglb(['diff', writeConfig(fleet(['a'])), writeConfig(fleet(['b']))]);
    t.equal(run.stdout, 'a  100.0%  0.0%\nb  0.0%    100.0%\nmoved: 100.0% of the hash space\n', 'no header, columns aligned');
  });

  t.test('weights swapped between two backends move everything', async (t) => {
    const run = await runRinglb([
      'diff',
      writeConfig(fleet([{ id: 'ws-long-name', weight: 1 }, { id: 'b', weight: 0 }])),
      writeConfig(fleet([{ id: 'ws-long-name', weight: 0 }, { id: 'b', weight: 1 }])),
    ]);
    t.equal(run.stdout, 'ws-long-name  100.0%  0.0%\nb             0.0%    100.0%\nmoved: 100.0% of the hash space\n');
  });

  t.test('adding a 5th of equal backends moves about 20%, all of it to the new one', async (t) => {
    const four = ['ws-a', 'ws-b', 'ws-c', 'ws-d'];
    const body = await diff(t, fleet(four), fleet([...four, 'ws-e']));
    t.ok(Math.abs(body.moved - 0.2) < 0.04, `about 1/5 of the hash space moves (${body.moved})`);
    const added = body.backends.find((b) => b.id === 'ws-e')!;
    t.equal(added.before, 0, 'the new backend had no share before');
    t.ok(Math.abs(added.after - body.moved) < 1e-9, 'what moved is exactly what the new backend now serves');
    t.ok(body.backends.filter((b) => b.id !== 'ws-e').every((b) => b.after < b.before), 'every other backend gives some up');
  });

  t.test('a union of old and new backends, one draining', async (t) => {
    const body = await diff(t, fleet(['edge-1', 'b', 'core-long']), fleet(['b', { id: 'core-long', drain: true }, 'd']));
    t.same(body.backends.map((b) => b.id), ['edge-1', 'b', 'core-long', 'd']);
    t.equal(body.backends[2]!.after, 0, 'a draining backend has share 0 after');
    t.equal(body.backends[0]!.after, 0, 'a removed backend has share 0 after');
  });

  t.test('identical configs move 0.0%', async (t) => {
    const config = fleet(['ws-a', 'ws-b', 'ws-c']);
    const body = await diff(t, config, { ...config, backends: [...(config.backends as unknown[])].reverse() });
    t.equal(body.moved, 0, 'moved 0 (the order of backends never matters)');
    t.ok(body.backends.every((b) => b.before === b.after), 'every share unchanged');
    const run = await runRinglb(['diff', writeConfig(config), writeConfig(config)]);
    t.match(run.stdout, /\nmoved: 0\.0% of the hash space\n$/, 'the text says 0.0%');
  });

  t.test('a bad file: one error line per problem, exit 1', async (t) => {
    const good = writeConfig(fleet(['a']));
    const bad = writeConfig({ listen: LOOPBACK, backends: [{ id: 'a', host: '10.0.0.1', port: 0 }] });
    const run = await runRinglb(['diff', good, bad]);
    t.equal(run.stderr, `${bad}: backends[0].port: must be an integer from 1 to 65535, got 0\n`, 'the problem as `path: message`, naming the bad file');
    t.equal(run.stdout, '', 'nothing on stdout');
    t.equal(run.code, 1, 'exit 1');
    const missing = `${good}.missing`;
    const run2 = await runRinglb(['diff', '--json', missing, good]);
    t.equal(run2.stderr, `${missing}: no such file\n`, 'a missing file is named');
    t.equal(run2.stdout, '', 'no JSON for a failed diff');
    t.equal(run2.code, 1, 'exit 1');
  });
});
