// `workers: 2`: routing agrees across workers, metrics are aggregated, reloads apply to every
// worker or none, a dead worker is replaced, and SIGTERM ends them all.

import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import t from 'tap';
import { validateConfig } from '../../src/config.js';
import { lookupAll } from '../../src/report.js';
import {
  adminGet,
  backendEntry,
  clientIp,
  connectFrom,
  metricValue,
  readLine,
  spawnDaemon,
  startBackend,
  tally,
  waitFor,
  type SpawnedDaemon,
  landings,
} from '../helpers/index.js';

/** Process ids of the daemon's workers (its child processes). */
function workerPids(daemon: SpawnedDaemon): number[] {
  const out = execFileSync('ps', ['-o', 'pid=', '--ppid', String(daemon.child.pid)], { encoding: 'utf8' });
  return out.split('\n').map((l) => Number(l.trim())).filter((pid) => pid > 0);
}

t.test('two workers route every client as lookup says, with aggregated metrics, reload and replacement', async (t) => {
  const backends = await Promise.all(['ws-a', 'ws-b', 'ws-c'].map((id) => startBackend(t, id)));
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    metrics: { host: '127.0.0.1', port: 0 },
    backends: backends.slice(0, 2).map((b) => backendEntry(b)),
    healthCheck: { type: 'none' },
    workers: 2,
  };
  const daemon = await spawnDaemon(t, config, ['--log-level', 'debug']);
  const adminUrl = `http://127.0.0.1:${daemon.adminPort}`;
  t.equal(workerPids(daemon).length, 2, 'two worker processes');
  t.equal(daemon.logs.find((l) => l.msg === 'ringlb started')?.workers, 2, 'the startup line names the worker count');

  const ips = Array.from({ length: 200 }, (_, i) => clientIp(12_000 + i));
  const expected = lookupAll(validateConfig(config), ips);
  const first = await landings(daemon.port, ips);
  const second = await landings(daemon.port, ips);
  t.same(first, expected, 'every client lands where lookup says');
  t.same(second, expected, 'and again on reconnect');
  const servedBy = new Set(daemon.logs.filter((l) => l.msg === 'client connected').map((l) => l.worker));
  t.same([...servedBy].sort(), [1, 2], 'both workers served clients (so they agree with each other)');

  const metrics = (await adminGet(`${adminUrl}/metrics`)).body;
  const counts = tally(first);
  for (const [id, n] of Object.entries(counts)) {
    t.equal(metricValue(metrics, `ringlb_connections_total{backend="${id}"}`), 2 * n, `connections_total{${id}} sums both workers`);
  }
  t.equal(metricValue(metrics, 'ringlb_backend_up{backend="ws-a"}'), 1, 'fleet gauges are reported once, not summed');

  // Open connections held across workers show up in /ring.
  const held = await Promise.all(Array.from({ length: 20 }, (_, i) => connectFrom(daemon.port, clientIp(13_000 + i))));
  t.teardown(() => held.forEach((s) => s.destroy()));
  await Promise.all(held.map((s) => readLine(s)));
  await waitFor(async () => {
    const ring = JSON.parse((await adminGet(`${adminUrl}/ring`)).body) as { backends: Array<{ active: number }> };
    return ring.backends.reduce((sum, b) => sum + b.active, 0) === 20;
  }, '/ring to count the 20 held connections over both workers');

  // A reload reaches every worker: add ws-c, and new connections follow the new ring everywhere.
  const grown = { ...config, backends: backends.map((b) => backendEntry(b)) };
  writeFileSync(daemon.configFile, JSON.stringify(grown));
  await waitFor(() => daemon.logs.some((l) => l.msg === 'config reloaded'), 'the reload');
  t.same(await landings(daemon.port, ips), lookupAll(validateConfig(grown), ips), 'both workers route on the new ring');
  for (const s of held.slice(0, 3)) {
    s.write('still here\n');
    t.equal(await readLine(s), 'still here', 'a connection opened before the reload still echoes');
  }

  // A reload that one process cannot apply is applied nowhere.
  const blocker = net.createServer().listen(0, '127.0.0.1');
  t.teardown(() => blocker.close());
  await new Promise((r) => blocker.once('listening', r));
  const taken = (blocker.address() as net.AddressInfo).port;
  writeFileSync(daemon.configFile, JSON.stringify({ ...grown, listen: { host: '127.0.0.1', port: taken } }));
  await waitFor(() => daemon.logs.some((l) => l.msg === 'config reload failed; keeping the config in force'), 'the failure');
  t.same(await landings(daemon.port, ips.slice(0, 20)), lookupAll(validateConfig(grown), ips.slice(0, 20)), 'the old listener still serves');
  const afterFailure = (await adminGet(`${adminUrl}/metrics`)).body;
  t.equal(metricValue(afterFailure, 'ringlb_config_reloads_total{result="failure"}'), 1);

  // A worker that dies is replaced, and clients keep being served.
  const [victim] = workerPids(daemon);
  process.kill(victim!, 'SIGKILL');
  await waitFor(() => daemon.logs.some((l) => l.msg === 'replacement worker serving'), 'a replacement worker');
  t.ok(daemon.logs.some((l) => l.msg === 'worker exited; starting a replacement'), 'the death is logged');
  t.equal(workerPids(daemon).length, 2, 'two workers again');
  t.same(await landings(daemon.port, ips.slice(0, 40)), lookupAll(validateConfig(grown), ips.slice(0, 40)), 'still routing');

  held.forEach((s) => s.destroy());
  daemon.child.kill('SIGTERM');
  const result = await daemon.exited;
  t.equal(result.code, 0, 'SIGTERM ends the primary and its workers with exit code 0');
});
