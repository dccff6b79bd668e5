// Live reload (SPEC "Operations", issue 3): what a ring change moves, misplaced and drained
// connections, drainTimeoutMs, listener and admin moves, failed reloads that keep the old config
// (in process, through Daemon.reload); then the spawned bin reloading on a file write, an
// editor's rename, a ConfigMap symlink swap and SIGHUP, and refusing an invalid config.
// The spawned half needs a built dist/ (`tsc -p tsconfig.json`): bin/ringlb runs compiled code.

import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { configHash, validateConfig } from '../../src/config.js';
import { ListenError } from '../../src/errors.js';
import { lookupAll } from '../../src/report.js';
import {
  adminGet,
  backendEntry,
  clientIp,
  connectFrom,
  metricValue,
  peerClosed,
  readLine,
  startBackend,
  waitFor,
  whoAnswers,
  startDaemon,
  tally,
  type LogLine,
  type RunResult,
  type TestBackend,
  roundTrip,
  spawnDaemonOn,
  landings,
} from '../helpers/index.js';

// Top-level tests are independent (port 0, own daemons and temp dirs): run them side by side.
t.jobs = 4;

const LOOPBACK = { host: '127.0.0.1', port: 0 };
/** Health checks off: the only thing changing the ring in these tests is the reload. */
const NO_CHECKS = { type: 'none' };

/** The config a test daemon runs, as startDaemon builds it (listen and metrics on port 0). */
function configOf(backends: TestBackend[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { listen: LOOPBACK, metrics: LOOPBACK, healthCheck: NO_CHECKS, backends: backends.map((b) => backendEntry(b)), ...extra };
}

/** An open client connection and the backend that greeted it. */
interface Held {
  readonly socket: Socket;
  readonly id: string;
}

/** Open a connection from `ip`, read the greeting, keep it open until teardown. */
async function hold(t: Test, port: number, ip: string): Promise<Held> {
  const socket = await connectFrom(port, ip);
  t.teardown(() => socket.destroy());
  return { socket, id: await readLine(socket) };
}

/** Wait (bounded) until the peer has closed `socket`. */
async function closedByPeer(socket: Socket, what: string): Promise<void> {
  let closed = false;
  void peerClosed(socket).then(() => (closed = true));
  await waitFor(() => closed, what);
}

/** Connect to host:port: 'connected' (and close again) or the error code. */
function connectOutcome(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

/** A server bound to 127.0.0.1 on a port the kernel chose; closed at teardown. */
async function occupyPort(t: Test): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as AddressInfo).port;
}

interface RingBody {
  configHash: string;
  backends: Array<{ id: string; address: string; state: string; share: number; active: number }>;
}

async function ringAt(adminUrl: string): Promise<RingBody> {
  return JSON.parse((await adminGet(`${adminUrl}/ring`)).body) as RingBody;
}

/**
 * Wait until the daemon holds exactly `n` open connections: the clients of `landings` close
 * first on our side, and the daemon's side of them must be gone before open ones are counted.
 */
async function settled(adminUrl: string, n: number): Promise<void> {
  const active = async (): Promise<number> => (await ringAt(adminUrl)).backends.reduce((sum, b) => sum + b.active, 0);
  await waitFor(async () => (await active()) === n, `${n} open connections`);
}

const ips = (from: number, count: number): string[] => Array.from({ length: count }, (_, i) => clientIp(from + i));

// ---------------------------------------------------------------------------------------------
// In process: Daemon.reload(config) and its ReloadReport.

t.test('adding a 4th backend to 3 moves about a quarter of the clients, all to the new one', async (t) => {
  const backends = await Promise.all(['ws-a', 'ws-b', 'ws-c', 'ws-d'].map((id) => startBackend(t, id)));
  const three = configOf(backends.slice(0, 3));
  const { daemon, port, adminUrl } = await startDaemon(t, three);
  const clients = ips(0, 300);
  const before = await landings(port, clients);
  t.same(Object.keys(tally(before)), ['ws-a', 'ws-b', 'ws-c'], 'before: the three backends serve');

  const report = await daemon.reload(validateConfig(configOf(backends)));
  t.same(report.added, ['ws-d'], 'the report names the added backend');
  t.same(report.removed, [], 'nothing removed');
  t.same(report.changed, [], 'nothing changed');
  t.equal(report.unchanged, false, 'the config changed');
  t.ok(Math.abs(report.moved - 0.25) < 0.06, `about 1/4 of the hash space moves (${report.moved})`);
  const share = (await ringAt(adminUrl)).backends.find((b) => b.id === 'ws-d')!.share;
  t.ok(Math.abs(report.moved - share) < 1e-9, 'exactly the share the new backend now serves moved');

  const after = await landings(port, clients);
  const movers = clients.filter((_, i) => after[i] !== before[i]);
  t.same(tally(movers.map((ip) => after[clients.indexOf(ip)]!)), { 'ws-d': movers.length }, 'every client that moved went to ws-d');
  const fraction = movers.length / clients.length;
  t.ok(Math.abs(fraction - report.moved) <= 0.08, `the fraction of clients that moved (${fraction}) is what the report says (${report.moved})`);
  t.ok(movers.length > 0, 'some clients moved');
});

t.test('removing one of 4 backends moves only its clients, spread over the others', async (t) => {
  const backends = await Promise.all(['ws-a', 'ws-b', 'ws-c', 'ws-d'].map((id) => startBackend(t, id)));
  const { daemon, port, adminUrl } = await startDaemon(t, configOf(backends));
  const clients = ips(1000, 300);
  const before = await landings(port, clients);
  const victim = 'ws-c';
  await settled(adminUrl, 0);

  const report = await daemon.reload(validateConfig(configOf(backends.filter((b) => b.id !== victim))));
  t.same(report.removed, [victim], 'the report names the removed backend');
  t.same(report.added, [], 'nothing added');
  t.equal(report.misplaced, 0, 'no connection was open');

  const after = await landings(port, clients);
  clients.forEach((ip, i) => {
    if (before[i] !== victim) t.equal(after[i], before[i], `${ip} stays on ${before[i]}`);
  });
  const moved = after.filter((_, i) => before[i] === victim);
  t.ok(moved.length > 0, `${victim} had clients (${moved.length})`);
  t.same(Object.keys(tally(moved)), ['ws-a', 'ws-b', 'ws-d'], `${victim}'s clients spread over all three others: ${JSON.stringify(tally(moved))}`);
  const fraction = moved.length / clients.length;
  t.ok(Math.abs(fraction - report.moved) <= 0.08, `the fraction of clients that moved (${fraction}) is what the report says (${report.moved})`);
});

t.test('reloading an unchanged config changes nothing', async (t) => {
  const backends = await Promise.all(['ws-a', 'ws-b'].map((id) => startBackend(t, id)));
  const config = configOf(backends);
  const { daemon, port } = await startDaemon(t, config);
  const held = await hold(t, port, clientIp(2000));
  const report = await daemon.reload(validateConfig(config));
  t.equal(report.unchanged, true, 'unchanged: true');
  t.equal(report.moved, 0, 'moved: 0');
  t.equal(report.misplaced, 0, 'misplaced: 0');
  t.same([report.added, report.removed, report.changed], [[], [], []], 'no backend added, removed or changed');
  t.equal(report.configHash, configHash(validateConfig(config)), 'the hash of the config in force');
  t.same(report.listen, [`127.0.0.1:${port}`], 'the same listener');
  t.equal(await roundTrip(held.socket, 'still here'), 'still here', 'an open connection is untouched');
});

t.test('removing a backend reports its open connections as misplaced; they keep working', async (t) => {
  const backends = await Promise.all(['ws-a', 'ws-b', 'ws-c'].map((id) => startBackend(t, id)));
  const config = configOf(backends);
  const { daemon, port } = await startDaemon(t, config);
  const candidates = ips(3000, 60);
  const where = lookupAll(validateConfig(config), candidates);
  const onVictim = candidates.filter((_, i) => where[i] === 'ws-b').slice(0, 3);
  const elsewhere = candidates.filter((_, i) => where[i] !== 'ws-b').slice(0, 2);
  t.equal(onVictim.length, 3, 'three clients hash to ws-b');
  const victims = await Promise.all(onVictim.map((ip) => hold(t, port, ip)));
  const others = await Promise.all(elsewhere.map((ip) => hold(t, port, ip)));
  t.same(victims.map((h) => h.id), ['ws-b', 'ws-b', 'ws-b'], 'the three are served by ws-b');
  t.notOk(others.some((h) => h.id === 'ws-b'), 'the other two are not');

  const report = await daemon.reload(validateConfig(configOf(backends.filter((b) => b.id !== 'ws-b'))));
  t.equal(report.misplaced, 3, "misplaced counts exactly the open connections on ws-b");
  t.same(report.removed, ['ws-b']);
  for (const [i, h] of [...victims, ...others].entries()) {
    t.equal(await roundTrip(h.socket, `after reload ${i}`), `after reload ${i}`, `connection ${i} (${h.id}) still echoes`);
  }
  const m = (await adminGet(`http://127.0.0.1:${daemon.adminAddress!.port}/metrics`)).body;
  t.equal(metricValue(m, 'ringlb_backend_up{backend="ws-b"}'), 0, 'the removed backend has no up gauge any more');
  t.notMatch(m, /ringlb_ring_share\{backend="ws-b"\}/, 'nor a ring share');
});

t.test('drain: true sends no new connection to the backend; its open ones keep working', async (t) => {
  const backends = await Promise.all(['ws-a', 'ws-b', 'ws-c'].map((id) => startBackend(t, id)));
  const config = configOf(backends);
  const { daemon, port, adminUrl } = await startDaemon(t, config);
  const clients = ips(4000, 120);
  const before = await landings(port, clients);
  const drained = clients.filter((_, i) => before[i] === 'ws-b').slice(0, 2);
  const held = await Promise.all(drained.map((ip) => hold(t, port, ip)));
  t.same(held.map((h) => h.id), ['ws-b', 'ws-b'], 'two connections open on ws-b');
  await settled(adminUrl, 2);

  const next = { ...config, backends: backends.map((b) => backendEntry(b, b.id === 'ws-b' ? { drain: true } : {})) };
  const report = await daemon.reload(validateConfig(next));
  t.same(report.changed, ['ws-b'], 'the report names the drained backend as changed');
  t.equal(report.misplaced, 2, 'its open connections are misplaced');
  const ring = await ringAt(adminUrl);
  t.same(ring.backends.map((b) => [b.id, b.state]), [['ws-a', 'up'], ['ws-b', 'draining'], ['ws-c', 'up']]);
  t.equal(ring.backends[1]!.active, 2, 'its open connections are still counted');

  const after = await landings(port, clients);
  t.notOk(after.includes('ws-b'), `no new connection reaches ws-b: ${JSON.stringify(tally(after))}`);
  clients.forEach((ip, i) => {
    if (before[i] !== 'ws-b') t.equal(after[i], before[i], `${ip} stays on ${before[i]}`);
  });
  for (const [i, h] of held.entries()) {
    t.equal(await roundTrip(h.socket, `drained ${i}`), `drained ${i}`, `open connection ${i} on ws-b still echoes`);
  }
});

/** Three backends, two connections held on ws-b and two elsewhere (chosen by `lookup`). */
async function heldOnVictim(t: Test, extra: Record<string, unknown>, from: number) {
  const backends = await Promise.all(['ws-a', 'ws-b', 'ws-c'].map((id) => startBackend(t, id)));
  const config = configOf(backends, extra);
  const daemon = await startDaemon(t, config);
  const candidates = ips(from, 60);
  const where = lookupAll(validateConfig(config), candidates);
  const victims = await Promise.all(candidates.filter((_, i) => where[i] === 'ws-b').slice(0, 2).map((ip) => hold(t, daemon.port, ip)));
  const others = await Promise.all(candidates.filter((_, i) => where[i] !== 'ws-b').slice(0, 2).map((ip) => hold(t, daemon.port, ip)));
  t.same(victims.map((h) => h.id), ['ws-b', 'ws-b'], 'two connections on ws-b');
  t.equal(others.filter((h) => h.id !== 'ws-b').length, 2, 'two connections elsewhere');
  return { backends, config, victims, others, ...daemon };
}

t.test('drainTimeoutMs: a removed backend\'s connections are closed after it, the others stay', async (t) => {
  const { backends, victims, others, daemon, logs } = await heldOnVictim(t, { drainTimeoutMs: 300 }, 5000);
  let othersClosed = 0;
  for (const h of others) {
    const closed = (): void => void othersClosed++;
    h.socket.once('end', closed).once('close', closed);
  }
  const report = await daemon.reload(validateConfig(configOf(backends.filter((b) => b.id !== 'ws-b'), { drainTimeoutMs: 300 })));
  t.same(report.removed, ['ws-b']);
  await Promise.all(victims.map((h, i) => closedByPeer(h.socket, `connection ${i} on ws-b to be closed`)));
  t.pass("both connections of ws-b were closed by the daemon");
  t.equal(othersClosed, 0, 'no other connection was closed');
  for (const [i, h] of others.entries()) {
    t.equal(await roundTrip(h.socket, `other ${i}`), `other ${i}`, `connection ${i} on ${h.id} still echoes`);
  }
  const line = logs.find((l) => l.msg === 'closing the connections of a removed backend');
  t.match(line, { backend: 'ws-b', closing: 2, drainTimeoutMs: 300, closeSpreadMs: 0 }, 'the forced close is logged with its count');
});

t.test('a backend added back before its drain deadline keeps its connections', async (t) => {
  const { backends, victims, others, daemon } = await heldOnVictim(t, { drainTimeoutMs: 300 }, 5500);
  const [a, b, c] = backends as [TestBackend, TestBackend, TestBackend];
  await daemon.reload(validateConfig(configOf([a, c], { drainTimeoutMs: 300 }))); // ws-b's deadline starts
  await daemon.reload(validateConfig(configOf([a, b, c], { drainTimeoutMs: 300 }))); // ... and is cancelled
  // A later deadline of the same length for another backend: once it has fired, ws-b's would have too.
  const later = others.filter((h) => h.id === others[0]!.id);
  const keep = [a, b, c].filter((x) => x.id !== others[0]!.id);
  await daemon.reload(validateConfig(configOf(keep, { drainTimeoutMs: 300 })));
  await Promise.all(later.map((h) => closedByPeer(h.socket, `the connection on ${h.id} to be closed at its deadline`)));
  for (const [i, h] of victims.entries()) {
    t.equal(await roundTrip(h.socket, `kept ${i}`), `kept ${i}`, `connection ${i} on ws-b was not closed`);
  }
});

t.test('drainTimeoutMs 0: a removed backend\'s connections are never forced', async (t) => {
  const { backends, victims, others, daemon, logs } = await heldOnVictim(t, { drainTimeoutMs: 0 }, 6000);
  const remaining = backends.filter((b) => b.id !== 'ws-b');
  const report = await daemon.reload(validateConfig(configOf(remaining, { drainTimeoutMs: 0 })));
  t.same(report.removed, ['ws-b']);
  t.equal(report.misplaced, 2, 'the two connections on ws-b are misplaced');
  for (const [i, h] of others.entries()) {
    t.equal(await roundTrip(h.socket, `other ${i}`), `other ${i}`, `connection ${i} on ${h.id} echoes`);
  }
  const again = await daemon.reload(validateConfig(configOf(remaining, { drainTimeoutMs: 0 })));
  t.equal(again.misplaced, 2, 'a later reload still counts them open');
  for (const [i, h] of victims.entries()) {
    t.equal(await roundTrip(h.socket, `victim ${i}`), `victim ${i}`, `connection ${i} on removed ws-b still echoes`);
  }
  t.notOk(logs.some((l) => l.msg === 'closing the connections of a removed backend'), 'nothing was force-closed');
});

t.test('a backend moved to a new address keeps its clients', async (t) => {
  const backends = await Promise.all(['ws-a', 'ws-b', 'ws-c'].map((id) => startBackend(t, id)));
  const { daemon, port, adminUrl } = await startDaemon(t, configOf(backends));
  const clients = ips(6500, 90);
  const before = await landings(port, clients);
  const held = await hold(t, port, clients[before.indexOf('ws-b')]!);
  const replacement = await startBackend(t, 'ws-b'); // the same id, served from another port
  let reached = 0;
  replacement.server.on('connection', () => reached++);

  const report = await daemon.reload(validateConfig(configOf([backends[0]!, replacement, backends[2]!])));
  t.same(report.changed, ['ws-b'], 'the report names ws-b as changed');
  t.same([report.added, report.removed], [[], []], 'nothing added or removed');
  t.equal(report.moved, 0, 'a new address moves no part of the hash space');
  t.equal(report.misplaced, 0, 'and misplaces no open connection');
  const ring = await ringAt(adminUrl);
  t.equal(ring.backends.find((b) => b.id === 'ws-b')!.address, `127.0.0.1:${replacement.port}`, '/ring shows the new address');
  t.same(await landings(port, clients), before, 'every client lands on the same backend id');
  t.equal(reached, before.filter((id) => id === 'ws-b').length, "every ws-b client reached the new address");
  t.equal(await roundTrip(held.socket, 'old address'), 'old address', 'a connection to the old address still echoes');
});

t.test('a reload whose listen port is taken fails with ListenError; the old config stays', async (t) => {
  const backends = await Promise.all(['ws-a', 'ws-b', 'ws-c'].map((id) => startBackend(t, id)));
  const config = configOf(backends.slice(0, 2));
  const { daemon, port, adminUrl } = await startDaemon(t, config);
  const held = await hold(t, port, clientIp(7000));
  const hashBefore = (await ringAt(adminUrl)).configHash;
  const taken = await occupyPort(t);

  const error = await daemon.reload(validateConfig(configOf(backends, { listen: { host: '127.0.0.1', port: taken } }))).then(
    () => null,
    (err: unknown) => err,
  );
  t.ok(error instanceof ListenError, `the reload rejects with a ListenError (${String(error)})`);
  t.equal((error as ListenError).message, `listen 127.0.0.1:${taken}: address already in use`);
  t.same(daemon.listenAddresses.map((a) => a.port), [port], 'the old listener is still the one in force');
  const ring = await ringAt(adminUrl);
  t.equal(ring.configHash, hashBefore, 'the old config is still in force');
  t.same(ring.backends.map((b) => b.id), ['ws-a', 'ws-b'], 'the backend of the failed reload was not added');
  t.match(await whoAnswers(port, clientIp(7001)), /^ws-[ab]$/, 'the old port still serves new connections');
  t.equal(await roundTrip(held.socket, 'after failure'), 'after failure', 'an open connection still echoes');

  const adminError = await daemon.reload(validateConfig(configOf(backends, { metrics: { host: '127.0.0.1', port: taken } }))).then(
    () => null,
    (err: unknown) => err,
  );
  t.ok(adminError instanceof ListenError, 'a taken metrics port fails the same way');
  t.equal((await ringAt(adminUrl)).configHash, hashBefore, 'and the old config and admin endpoint stay');

  const ok = await daemon.reload(validateConfig(configOf(backends)));
  t.same(ok.added, ['ws-c'], 'a later good reload still applies');
});

t.test('a listen change moves the listener; open connections stay', async (t) => {
  const backends = await Promise.all(['ws-a', 'ws-b'].map((id) => startBackend(t, id)));
  const config = configOf(backends);
  const { daemon, port } = await startDaemon(t, config);
  const held = await hold(t, port, clientIp(8000));
  // Another loopback address, port 0: a new listener on a free port, with no race for it.
  const report = await daemon.reload(validateConfig({ ...config, listen: { host: '127.0.0.2', port: 0 } }));
  const [moved] = daemon.listenAddresses;
  t.equal(moved!.address, '127.0.0.2', 'the listener is on the new address');
  t.not(moved!.port, 0, 'on a port the kernel chose');
  t.same(report.listen, [`127.0.0.2:${moved!.port}`], 'the report names the new listener');
  t.equal(report.unchanged, false, 'a listen change is a change');
  t.equal(report.moved, 0, 'and moves no client');

  const client = net.connect({ host: '127.0.0.2', port: moved!.port, localAddress: clientIp(8001) });
  t.teardown(() => client.destroy());
  await once(client, 'connect');
  t.match(await readLine(client), /^ws-[ab]$/, 'a new connection on the new port is served');
  await waitFor(async () => (await connectOutcome('127.0.0.1', port)) === 'ECONNREFUSED', 'the old port to refuse');
  t.equal(await connectOutcome('127.0.0.1', port), 'ECONNREFUSED', 'the old port refuses new connections');
  t.equal(await roundTrip(held.socket, 'opened before'), 'opened before', 'a connection opened before the change still echoes');
});

t.test('a metrics address change moves /metrics', async (t) => {
  const backends = await Promise.all(['ws-a'].map((id) => startBackend(t, id)));
  const config = configOf(backends);
  const { daemon, adminUrl } = await startDaemon(t, config);
  const oldPort = daemon.adminAddress!.port;
  t.equal((await adminGet(`${adminUrl}/metrics`)).status, 200, 'before: /metrics answers on the old address');
  const report = await daemon.reload(validateConfig({ ...config, metrics: { host: '127.0.0.2', port: 0 } }));
  const admin = daemon.adminAddress!;
  t.equal(admin.address, '127.0.0.2', 'the admin endpoint is on the new address');
  t.equal(report.admin, `127.0.0.2:${admin.port}`, 'the report names it');
  const res = await adminGet(`http://127.0.0.2:${admin.port}/metrics`);
  t.equal(res.status, 200, '/metrics answers on the new address');
  t.equal(
    metricValue(res.body, `ringlb_config_info{hash="${report.configHash}",routing_hash="${report.routingHash}"}`),
    1,
    'and reports the new config',
  );
  await waitFor(async () => (await connectOutcome('127.0.0.1', oldPort)) === 'ECONNREFUSED', 'the old admin port to refuse');
  t.equal(await connectOutcome('127.0.0.1', oldPort), 'ECONNREFUSED', 'the old admin address is closed');
});

// ---------------------------------------------------------------------------------------------
// Spawned: real signals and real file watching.

interface Spawned {
  readonly child: ChildProcess;
  readonly port: number;
  readonly adminUrl: string;
  readonly logs: LogLine[];
  readonly exited: Promise<RunResult>;
}

/** Spawn `ringlb start --config FILE` (FILE written by the test) and wait for its startup line. */
async function spawnOn(t: Test, file: string): Promise<Spawned> {
  const d = await spawnDaemonOn(t, file);
  return { child: d.child, port: d.port, adminUrl: `http://127.0.0.1:${d.adminPort}`, logs: d.logs, exited: d.exited };
}

const text = (config: unknown): string => JSON.stringify(config, null, 2);
const count = (d: Spawned, msg: string): number => d.logs.filter((l) => l.msg === msg).length;

async function reloadsCounted(d: Spawned): Promise<{ success: number; failure: number }> {
  const m = (await adminGet(`${d.adminUrl}/metrics`)).body;
  return {
    success: metricValue(m, 'ringlb_config_reloads_total{result="success"}'),
    failure: metricValue(m, 'ringlb_config_reloads_total{result="failure"}'),
  };
}

/**
 * SIGHUP with the file as it is, and wait for its 'config unchanged' line. Reloads run in order,
 * so any reload a file event started before has been logged by then.
 */
async function flush(d: Spawned): Promise<LogLine> {
  const before = count(d, 'config unchanged');
  d.child.kill('SIGHUP');
  await waitFor(() => count(d, 'config unchanged') > before, "SIGHUP's 'config unchanged' line");
  return d.logs.filter((l) => l.msg === 'config unchanged')[before]!;
}

/** How a test puts a config into the file the daemon watches. */
interface Layout {
  readonly file: string;
  write(config: unknown): void;
}

const tempDir = (): string => mkdtempSync(join(tmpdir(), 'ringlb-reload-'));

/** Overwrite the file in place (truncate and write the same inode). */
function inPlace(): Layout {
  const file = join(tempDir(), 'ringlb.json');
  return { file, write: (config) => writeFileSync(file, text(config)) };
}

/** An editor's save: write a temp file in the same directory, rename it over the file. */
function byRename(): Layout {
  const dir = tempDir();
  const file = join(dir, 'ringlb.json');
  return {
    file,
    write: (config) => {
      const tmp = join(dir, '.ringlb.json.swp');
      writeFileSync(tmp, text(config));
      renameSync(tmp, file);
    },
  };
}

/**
 * A Kubernetes ConfigMap volume: `config.json -> ..data/config.json`, `..data -> ..<timestamp>`;
 * an update writes a new timestamped directory, points `..data_tmp` at it, renames `..data_tmp`
 * over `..data` and removes the old directory (the kubelet's atomic writer).
 */
function configMap(): Layout {
  const dir = tempDir();
  const file = join(dir, 'config.json');
  let version = 0;
  const stamp = (v: number): string => `..2026_01_0${v}`;
  return {
    file,
    write: (config) => {
      version++;
      mkdirSync(join(dir, stamp(version)));
      writeFileSync(join(dir, stamp(version), 'config.json'), text(config));
      if (version === 1) {
        symlinkSync(stamp(version), join(dir, '..data'));
        symlinkSync(join('..data', 'config.json'), file);
        return;
      }
      symlinkSync(stamp(version), join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
      rmSync(join(dir, stamp(version - 1)), { recursive: true });
    },
  };
}

/**
 * The daemon's file is a symlink into another directory, and the test writes the target there:
 * the daemon's directory watch sees nothing, so only SIGHUP can make it reload.
 */
function unwatched(): Layout {
  const real = join(tempDir(), 'real.json');
  const file = join(tempDir(), 'ringlb.json');
  writeFileSync(real, '{}');
  symlinkSync(real, file);
  return { file, write: (config) => writeFileSync(real, text(config)) };
}

/**
 * Start on [ws-a, ws-b], then add ws-c, then remove ws-a, each by `layout.write` (and a SIGHUP
 * when `trigger` is SIGHUP). After each: the new backend set is in force, a connection opened
 * at the start still echoes, and in the end there is exactly one 'config reloaded' per change.
 */
async function reloadsOnChange(t: Test, layout: Layout, trigger: 'file' | 'SIGHUP', from: number): Promise<Spawned> {
  const backends = await Promise.all(['ws-a', 'ws-b', 'ws-c'].map((id) => startBackend(t, id)));
  const [a, b, c] = backends as [TestBackend, TestBackend, TestBackend];
  layout.write(configOf([a, b]));
  const d = await spawnOn(t, layout.file);
  const held = await hold(t, d.port, clientIp(from));
  t.match(held.id, /^ws-[ab]$/, `a connection held open on ${held.id}`);

  const steps = [
    { members: [a, b, c], added: ['ws-c'], removed: [] as string[] },
    { members: [b, c], added: [] as string[], removed: ['ws-a'] },
  ];
  const hashes: string[] = [];
  for (const [n, step] of steps.entries()) {
    const next = configOf(step.members);
    const ids = step.members.map((m) => m.id);
    const hash = configHash(validateConfig(next));
    hashes.push(hash);
    layout.write(next);
    if (trigger === 'SIGHUP') d.child.kill('SIGHUP');
    await waitFor(async () => (await ringAt(d.adminUrl)).configHash === hash, `[${ids.join(', ')}] to be in force`);
    t.same((await ringAt(d.adminUrl)).backends.map((x) => x.id), ids, `change ${n + 1}: /ring lists ${ids.join(', ')}`);
    const found = tally(await landings(d.port, ips(from + 1, 40)));
    t.same(Object.keys(found), ids, `change ${n + 1}: new connections reach exactly ${ids.join(', ')}: ${JSON.stringify(found)}`);
    t.equal(await roundTrip(held.socket, `after change ${n + 1}`), `after change ${n + 1}`, `change ${n + 1}: the held connection still echoes`);
  }

  const unchanged = await flush(d);
  t.match(unchanged, { trigger: 'SIGHUP', configHash: hashes[1] }, 'SIGHUP on an unchanged file: config unchanged');
  const reloaded = d.logs.filter((l) => l.msg === 'config reloaded');
  t.equal(reloaded.length, 2, `exactly one 'config reloaded' per change: ${JSON.stringify(reloaded.map((l) => l.trigger))}`);
  t.same(
    reloaded.map((l) => [l.trigger, l.configHash, l.added, l.removed]),
    steps.map((s, i) => [trigger, hashes[i], s.added, s.removed]),
    'each line names its trigger, the new hash and what was added and removed',
  );
  t.ok(reloaded.every((l) => l.level === 30 && typeof l.moved === 'number' && l.moved > 0 && l.moved < 1), 'at info, with the fraction moved');
  t.equal((await reloadsCounted(d)).success, 3, 'two changes and one unchanged reload count as successes');
  return d;
}

t.test('reload by writing the file in place', async (t) => {
  await reloadsOnChange(t, inPlace(), 'file', 10_000);
});

t.test("reload by an editor's rename over the file", async (t) => {
  const d = await reloadsOnChange(t, byRename(), 'file', 11_000);
  t.equal((await reloadsCounted(d)).failure, 0, 'an atomic rename never shows a half-written file');
});

t.test('reload by a ConfigMap-style ..data symlink swap', async (t) => {
  const d = await reloadsOnChange(t, configMap(), 'file', 12_000);
  t.equal((await reloadsCounted(d)).failure, 0, 'a symlink swap never shows a half-written file');
});

t.test('reload by SIGHUP', async (t) => {
  const d = await reloadsOnChange(t, unwatched(), 'SIGHUP', 13_000);
  t.equal((await reloadsCounted(d)).failure, 0, 'no failure');
});

t.test('an invalid config or an unbindable port is logged, counted, and the old config keeps serving', async (t) => {
  const backends = await Promise.all(['ws-a', 'ws-b', 'ws-c'].map((id) => startBackend(t, id)));
  const [a, b, c] = backends as [TestBackend, TestBackend, TestBackend];
  const layout = byRename();
  const good = configOf([a, b]);
  layout.write(good);
  const d = await spawnOn(t, layout.file);
  const held = await hold(t, d.port, clientIp(14_000));
  const hash = configHash(validateConfig(good));
  const FAILED = 'config reload failed; keeping the config in force';

  layout.write({ ...configOf([a, b]), backends: [backendEntry(a, { port: 70000 }), backendEntry(b, { weight: -1 })] });
  await waitFor(() => count(d, FAILED) === 1, 'the invalid config to be refused');
  const refused = d.logs.find((l) => l.msg === FAILED)!;
  t.equal(refused.level, 50, 'logged at error');
  t.match(refused, { trigger: 'file', file: layout.file }, 'naming the trigger and the file');
  t.same(
    [...(refused.errors as string[])].sort(),
    ['backends[0].port: must be an integer from 1 to 65535, got 70000', 'backends[1].weight: must be an integer from 0 to 10000, got -1'],
    'errors holds one `path: message` line per problem',
  );
  t.same(await reloadsCounted(d), { success: 0, failure: 1 }, 'counted as one failure');
  t.equal((await ringAt(d.adminUrl)).configHash, hash, 'the old config is still in force');
  t.match(await whoAnswers(d.port, clientIp(14_001)), /^ws-[ab]$/, 'and serves new connections');
  t.equal(await roundTrip(held.socket, 'after invalid'), 'after invalid', 'the held connection still echoes');

  const taken = await occupyPort(t);
  layout.write(configOf([a, b, c], { listen: { host: '127.0.0.1', port: taken } }));
  await waitFor(() => count(d, FAILED) === 2, 'the unbindable listen port to be refused');
  t.same(d.logs.filter((l) => l.msg === FAILED)[1]!.errors, [`listen 127.0.0.1:${taken}: address already in use`], 'the bind error is logged');
  t.same(await reloadsCounted(d), { success: 0, failure: 2 }, 'counted as a second failure');
  const ring = await ringAt(d.adminUrl);
  t.equal(ring.configHash, hash, 'the old config is still in force');
  t.same(ring.backends.map((x) => x.id), ['ws-a', 'ws-b'], 'ws-c of the failed reload was not added');
  t.match(await whoAnswers(d.port, clientIp(14_002)), /^ws-[ab]$/, 'the old port still serves');
  t.equal(await roundTrip(held.socket, 'after bind failure'), 'after bind failure', 'the held connection still echoes');

  const fixed = configOf([a, b, c]);
  layout.write(fixed);
  await waitFor(async () => (await ringAt(d.adminUrl)).configHash === configHash(validateConfig(fixed)), 'a fixed config to be applied');
  await flush(d);
  t.equal(count(d, FAILED), 2, 'one failure line per bad write');
  t.equal(count(d, 'config reloaded'), 1, 'one reload for the fix');
  t.same(await reloadsCounted(d), { success: 2, failure: 2 }, 'the fix and the SIGHUP count as successes');
  t.equal(await roundTrip(held.socket, 'after fix'), 'after fix', 'the held connection still echoes');
});

t.test('switching health checks off brings a backend marked down back up', async (t) => {
  const a = await startBackend(t, 'ws-a');
  const b = await startBackend(t, 'ws-b');
  const base = {
    listen: { host: '127.0.0.1', port: 0 },
    metrics: { host: '127.0.0.1', port: 0 },
    backends: [backendEntry(a), backendEntry(b)],
  };
  const { daemon, adminUrl } = await startDaemon(t, {
    ...base,
    healthCheck: { intervalMs: 50, timeoutMs: 200, rise: 1, fall: 1 },
  });
  await b.close();
  const stateOf = async (id: string): Promise<string | undefined> => {
    const ring = JSON.parse((await adminGet(`${adminUrl}/ring`)).body) as { backends: Array<{ id: string; state: string }> };
    return ring.backends.find((x) => x.id === id)?.state;
  };
  await waitFor(async () => (await stateOf('ws-b')) === 'down', 'ws-b to be marked down');
  await daemon.reload(validateConfig({ ...base, healthCheck: { type: 'none' } }));
  t.equal(await stateOf('ws-b'), 'up', 'with no checks, every backend counts as up');
});
