// The fleet's health and DNS through the daemon (issue 10): a WebSocket check that fails while
// the TCP port is open, passive health from real traffic, and names resolved on a schedule
// against a real DNS server on loopback: discovery growing a fleet, host names changing address,
// and no DNS lookup on any connect.

import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo, type Server } from 'node:net';
import t, { type Test } from 'tap';
import { WebSocketServer } from 'ws';
import { startDnsServer } from '../helpers/dns-server.js';
import {
  adminGet,
  backendEntry,
  clientIp,
  landings,
  metricValue,
  startBackend,
  startDaemon,
  tally,
  waitFor,
  whoAnswers,
} from '../helpers/index.js';

/** An echo backend at `host:port` that greets with `host:port`. */
async function backendAt(t: Test, host: string, port: number): Promise<Server> {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.write(`${host}:${(server.address() as AddressInfo).port}\n`);
    s.pipe(s);
  });
  server.listen(port, host);
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return server;
}

/** Backends at 127.0.0.2 .. 127.0.0.(1 + n), all on one port. */
async function pool(t: Test, n: number): Promise<{ port: number; addresses: string[] }> {
  const first = await backendAt(t, '127.0.0.2', 0);
  const port = (first.address() as AddressInfo).port;
  const addresses = ['127.0.0.2'];
  for (let k = 3; k <= n + 1; k++) {
    await backendAt(t, `127.0.0.${k}`, port);
    addresses.push(`127.0.0.${k}`);
  }
  return { port, addresses };
}

const ips = Array.from({ length: 300 }, (_, i) => clientIp(11_000 + i));

t.test('a WebSocket server answering 503 to every upgrade is marked down while its port is open', async (t) => {
  const good = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(good, 'listening');
  good.on('connection', (ws) => ws.send('good'));
  // The broken one: an HTTP server, TCP port open, refusing every upgrade.
  const broken = http.createServer((_req, res) => res.writeHead(503).end());
  // An upgraded socket has no 'error' listener of node:http's any more: the check's reset must not crash us.
  broken.on('upgrade', (_req, socket) => {
    socket.on('error', () => {});
    socket.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n');
  });
  broken.listen(0, '127.0.0.1');
  await once(broken, 'listening');
  t.teardown(() => {
    good.close();
    broken.close();
  });
  const { adminUrl, logs } = await startDaemon(t, {
    backends: [
      { id: 'good', host: '127.0.0.1', port: (good.address() as AddressInfo).port },
      { id: 'broken', host: '127.0.0.1', port: (broken.address() as AddressInfo).port },
    ],
    healthCheck: { type: 'websocket', path: '/live', intervalMs: 40, timeoutMs: 500, rise: 1, fall: 2 },
  });
  await waitFor(async () => metricValue((await adminGet(`${adminUrl}/metrics`)).body, 'ringlb_backend_up{backend="broken"}') === 0, 'broken to be marked down');
  t.match(logs.find((l) => l.msg === 'backend down'), { backend: 'broken', reason: 'status 503' }, 'the log says what was wrong');
  const text = (await adminGet(`${adminUrl}/metrics`)).body;
  t.equal(metricValue(text, 'ringlb_backend_up{backend="good"}'), 1, 'a real WebSocket server passes');
  t.equal(metricValue(text, 'ringlb_ring_share{backend="good"}'), 1, 'and serves the whole hash space');
});

t.test('passive health: the traffic that finds a dead backend marks it down', async (t) => {
  const live = await startBackend(t, 'live');
  // Nothing listens on the dead backend's address (one no other test uses); active checks are far apart.
  const dead = '127.77.77.77';
  const probe = net.createServer();
  probe.listen(0, dead);
  await once(probe, 'listening');
  const deadPort = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const { port, adminUrl, logs } = await startDaemon(t, {
    backends: [backendEntry(live), { id: 'dead', host: dead, port: deadPort }],
    healthCheck: { passive: true, intervalMs: 3_600_000, fall: 2 },
  });
  // Clients whose home is `dead` fail over (counted), and two such failures mark it down.
  const landed = await landings(port, ips.slice(0, 40));
  t.same(tally(landed), { live: 40 }, 'every client is served, by failover while needed');
  await waitFor(() => logs.some((l) => l.msg === 'backend down'), 'the dead backend to be marked down by traffic');
  t.match(logs.find((l) => l.msg === 'backend down'), { backend: 'dead', reason: 'traffic refused' });
  const errors = async (): Promise<number> =>
    metricValue((await adminGet(`${adminUrl}/metrics`)).body, 'ringlb_connection_errors_total{backend="dead",reason="refused"}');
  const atDown = await errors();
  t.ok(atDown >= 2, `fall (2) failures marked it down (${atDown} counted, with connects in flight)`);
  t.same(tally(await landings(port, ips.slice(40, 80))), { live: 40 });
  t.equal(await errors(), atDown, 'once down, no client tries it any more');
});

t.test('discovery: a fleet that grows from 3 to 5 addresses is routed over 5 within one refresh', async (t) => {
  const { port, addresses } = await pool(t, 5);
  const dns = await startDnsServer(t, { 'pool.test': { A: addresses.slice(0, 3) } });
  const td = await startDaemon(t, {
    backends: [{ dns: 'pool.test', port }],
    dns: { servers: [dns.server], refreshMs: 200 },
    healthCheck: { type: 'none' },
  });
  const three = tally(await landings(td.port, ips));
  t.same(Object.keys(three).sort(), addresses.slice(0, 3).map((a) => `${a}:${port}`), 'three backends at first');
  dns.set('pool.test', { A: addresses });
  await waitFor(() => td.logs.some((l) => l.msg === 'config reloaded' && l.trigger === 'dns'), 'the refresh to apply the new set');
  const line = td.logs.find((l) => l.msg === 'config reloaded' && l.trigger === 'dns')!;
  t.same((line.added as string[]).sort(), addresses.slice(3).map((a) => `${a}:${port}`), 'the log line names the added backends');
  t.ok((line.moved as number) > 0.3 && (line.moved as number) < 0.5, `and what moved (${line.moved})`);
  const five = tally(await landings(td.port, ips));
  t.equal(Object.keys(five).length, 5, 'five backends now');
  const text = (await adminGet(`${td.adminUrl}/metrics`)).body;
  t.ok(metricValue(text, 'ringlb_dns_resolutions_total{result="success"}') >= 2, 'lookups are counted');

  // The server stops answering: the set is kept, failures counted.
  dns.silent = true;
  await waitFor(
    async () => metricValue((await adminGet(`${td.adminUrl}/metrics`)).body, 'ringlb_dns_resolutions_total{result="failure"}') >= 1,
    'a failed lookup',
  );
  t.equal(Object.keys(tally(await landings(td.port, ips.slice(0, 100)))).length, 5, 'a failing server keeps the last set');
});

t.test('a host name is resolved on a schedule: no connect looks it up, and a new address keeps the id', async (t) => {
  const a = await backendAt(t, '127.0.0.7', 0);
  const port = (a.address() as AddressInfo).port;
  await backendAt(t, '127.0.0.8', port);
  const dns = await startDnsServer(t, { 'ws-a.test': { A: ['127.0.0.7'] } });
  const td = await startDaemon(t, {
    backends: [{ id: 'ws-a', host: 'ws-a.test', port }],
    dns: { servers: [dns.server], refreshMs: 300 },
    healthCheck: { type: 'none' },
  });
  const before = dns.queries.length;
  t.ok(before >= 1, 'resolved when the config was applied');
  // Many connects between two refreshes (queries in flight are counted as they arrive).
  const queriesAtStart = dns.queries.length;
  const seen = await Promise.all(Array.from({ length: 20 }, (_, i) => whoAnswers(td.port, clientIp(12_000 + i))));
  t.same(tally(seen), { [`127.0.0.7:${port}`]: 20 }, 'served at the address in force');
  const during = dns.queries.length - queriesAtStart;
  t.ok(during <= 2, `20 connects made no lookups of their own (${during} queries meanwhile: the schedule's own A and AAAA at most)`);
  dns.set('ws-a.test', { A: ['127.0.0.8'] });
  await waitFor(async () => (await whoAnswers(td.port, clientIp(12_100))) === `127.0.0.8:${port}`, 'the new address to be used');
  const ring = JSON.parse((await adminGet(`${td.adminUrl}/ring`)).body) as { backends: Array<{ id: string; address: string }> };
  t.same(ring.backends, [{ ...ring.backends[0], id: 'ws-a', address: `127.0.0.8:${port}` }], 'the same id at the new address');
});

t.test("a WebSocket check of a backend at a host name sends that name as Host, not the address", async (t) => {
  const hosts: string[] = [];
  const wss = new WebSocketServer({ host: '127.0.0.9', port: 0 });
  await once(wss, 'listening');
  wss.on('connection', (_ws, req) => hosts.push(req.headers.host ?? ''));
  t.teardown(() => wss.close());
  const port = (wss.address() as AddressInfo).port;
  const dns = await startDnsServer(t, { 'ws-h.test': { A: ['127.0.0.9'] } });
  await startDaemon(t, {
    backends: [{ id: 'ws-h', host: 'ws-h.test', port }],
    dns: { servers: [dns.server], refreshMs: 60_000 },
    healthCheck: { type: 'websocket', intervalMs: 30, timeoutMs: 500 },
  });
  await waitFor(() => hosts.length >= 2, 'two checks');
  t.same([...new Set(hosts)], [`ws-h.test:${port}`]);
});
