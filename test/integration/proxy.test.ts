// The data path end to end on loopback: routing and stickiness, failover and return, byte-exact
// transfers with half-close, resets, timeouts and the metrics they leave behind.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net, { type Socket } from 'node:net';
import t, { type Test } from 'tap';
import { WebSocket, WebSocketServer } from 'ws';
import { validateConfig } from '../../src/config.js';
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
  startDaemon,
  type TestDaemon,
  tally,
  waitFor,
  whoAnswers,
  landings,
} from '../helpers/index.js';

const FAST_CHECKS = { intervalMs: 50, timeoutMs: 200, rise: 2, fall: 2 };

t.test('250 client IPs stick to one backend across reconnects and agree with lookup', async (t) => {
  const backends = await Promise.all(['ws-a', 'ws-b', 'ws-c'].map((id) => startBackend(t, id)));
  const config = { backends: backends.map((b) => backendEntry(b)) };
  const { port, adminUrl } = await startDaemon(t, config);
  const ips = Array.from({ length: 250 }, (_, i) => clientIp(i));
  const first = await landings(port, ips);
  const second = await landings(port, ips);
  t.same(second, first, 'every client reached the same backend twice');
  const expected = lookupAll(validateConfig({ listen: { host: '127.0.0.1', port: 0 }, ...config }), ips);
  t.same(first, expected, 'the daemon routes exactly as `lookup` predicts');
  const counts = tally(first);
  t.same(Object.keys(counts), ['ws-a', 'ws-b', 'ws-c'], 'all three backends serve clients');
  const metrics = (await adminGet(`${adminUrl}/metrics`)).body;
  for (const [id, n] of Object.entries(counts)) {
    t.equal(metricValue(metrics, `ringlb_connections_total{backend="${id}"}`), 2 * n, `connections_total for ${id}`);
  }
});

t.test('a prefix of 24 bits keeps a whole /24 on one backend', async (t) => {
  const backends = await Promise.all(['ws-a', 'ws-b', 'ws-c', 'ws-d'].map((id) => startBackend(t, id)));
  const { port } = await startDaemon(t, {
    backends: backends.map((b) => backendEntry(b)),
    hashing: { ipv4Prefix: 24 },
  });
  for (const net24 of ['127.9.1', '127.9.2', '127.9.3']) {
    const found = await landings(port, Array.from({ length: 20 }, (_, i) => `${net24}.${i + 1}`));
    t.equal(new Set(found).size, 1, `all of ${net24}.0/24 lands on ${found[0]}`);
  }
});

t.test('real WebSocket backends: greeting and echo pass through unchanged', async (t) => {
  const servers = await Promise.all(
    ['ws-a', 'ws-b'].map(async (id) => {
      const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
      wss.on('connection', (ws) => {
        ws.send(`hello from ${id}`);
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      });
      await once(wss, 'listening');
      t.teardown(() => {
        for (const c of wss.clients) c.terminate();
        wss.close();
      });
      return { id, port: (wss.address() as net.AddressInfo).port };
    }),
  );
  const { port } = await startDaemon(t, { backends: servers.map((s) => ({ ...s, host: '127.0.0.1' })) });
  const payload = randomBytes(256 * 1024);
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, i) => clientIp(1000 + i)).map(
      (localAddress) =>
        new Promise<{ greeting: string; echoed: Buffer }>((resolve, reject) => {
          const ws = new WebSocket(`ws://127.0.0.1:${port}`, { localAddress });
          const messages: Buffer[] = [];
          ws.on('message', (data: Buffer) => {
            messages.push(data);
            if (messages.length === 1) ws.send(payload);
            else {
              resolve({ greeting: messages[0]!.toString(), echoed: messages[1]! });
              ws.close();
            }
          });
          ws.on('error', reject);
        }),
    ),
  );
  for (const r of results) {
    t.match(r.greeting, /^hello from ws-[ab]$/);
    t.ok(r.echoed.equals(payload), 'a 256 KiB binary message echoes byte for byte');
  }
  t.equal(new Set(results.map((r) => r.greeting)).size, 2, 'both WebSocket backends serve');
});

/** A backend that answers with its id, then sends `reply` bytes, and hashes what it receives. */
async function startSink(t: Test, reply: Buffer): Promise<{ port: number; received: Promise<{ digest: string; bytes: number }> }> {
  let resolveReceived!: (v: { digest: string; bytes: number }) => void;
  const received = new Promise<{ digest: string; bytes: number }>((r) => (resolveReceived = r));
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {}); // a reset after the test has its bytes must not crash the process
    const hash = createHash('sha256');
    let bytes = 0;
    socket.on('data', (chunk) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    // Reply only after the client's FIN: proves the half-closed direction stays open.
    socket.on('end', () => {
      resolveReceived({ digest: hash.digest('hex'), bytes });
      socket.end(reply);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  return { port: (server.address() as net.AddressInfo).port, received };
}

t.test('multi-MiB transfers are byte-exact both ways, across a client half-close', async (t) => {
  const upload = randomBytes(8 * 1024 * 1024 + 13);
  const reply = randomBytes(6 * 1024 * 1024 + 7);
  const sink = await startSink(t, reply);
  const { port, adminUrl } = await startDaemon(t, { backends: [{ id: 'sink', host: '127.0.0.1', port: sink.port }] });
  const client = await connectFrom(port, clientIp(2000));
  const chunks: Buffer[] = [];
  client.on('data', (c: Buffer) => chunks.push(c));
  client.end(upload); // write everything, then FIN: the reply must still arrive in full
  await once(client, 'end');
  const got = await sink.received;
  t.equal(got.bytes, upload.length, 'the backend received every byte');
  t.equal(got.digest, createHash('sha256').update(upload).digest('hex'), 'in order, unchanged');
  const down = Buffer.concat(chunks);
  t.equal(down.length, reply.length, 'the client received the whole reply after its half-close');
  t.ok(down.equals(reply), 'byte for byte');
  await waitFor(async () => {
    const m = (await adminGet(`${adminUrl}/metrics`)).body;
    return metricValue(m, 'ringlb_connections_active{backend="sink"}') === 0;
  }, 'the pair to close');
  const m = (await adminGet(`${adminUrl}/metrics`)).body;
  t.equal(metricValue(m, 'ringlb_bytes_total{backend="sink",direction="to_backend"}'), upload.length);
  t.equal(metricValue(m, 'ringlb_bytes_total{backend="sink",direction="to_client"}'), reply.length);
  t.equal(metricValue(m, 'ringlb_connections_total{backend="sink"}'), 1);
});

t.test('bytes of an open connection are visible at scrape time', async (t) => {
  const backend = await startBackend(t, 'echo');
  const { port, adminUrl } = await startDaemon(t, { backends: [backendEntry(backend)] });
  const client = await connectFrom(port, clientIp(2100));
  t.teardown(() => client.destroy());
  t.equal(await readLine(client), 'echo');
  client.write('ping-1234\n');
  t.equal(await readLine(client), 'ping-1234');
  const m = (await adminGet(`${adminUrl}/metrics`)).body;
  t.equal(metricValue(m, 'ringlb_bytes_total{backend="echo",direction="to_backend"}'), 10);
  t.equal(metricValue(m, 'ringlb_bytes_total{backend="echo",direction="to_client"}'), 5 + 10);
  t.equal(metricValue(m, 'ringlb_connections_active{backend="echo"}'), 1);
  const ring = JSON.parse((await adminGet(`${adminUrl}/ring`)).body) as { backends: Array<{ active: number }> };
  t.equal(ring.backends[0]!.active, 1, '/ring shows the open connection');
});

t.test('a backend that goes down sends only its own clients elsewhere, and they return', async (t) => {
  const ids = ['ws-a', 'ws-b', 'ws-c'];
  const backends = await Promise.all(ids.map((id) => startBackend(t, id)));
  const { port, adminUrl, logs } = await startDaemon(t, {
    backends: backends.map((b) => backendEntry(b)),
    healthCheck: FAST_CHECKS,
  });
  const ips = Array.from({ length: 120 }, (_, i) => clientIp(3000 + i));
  const before = await landings(port, ips);
  const victim = backends[1]!;
  await victim.close();
  await waitFor(async () => {
    const m = (await adminGet(`${adminUrl}/metrics`)).body;
    return metricValue(m, `ringlb_backend_up{backend="${victim.id}"}`) === 0;
  }, 'the health check to mark ws-b down');
  t.ok(logs.some((l) => l.msg === 'backend down' && l.backend === victim.id), 'the transition is logged');
  const during = await landings(port, ips);
  ips.forEach((ip, i) => {
    if (before[i] !== victim.id) t.equal(during[i], before[i], `${ip} stays on ${before[i]}`);
    else t.not(during[i], victim.id, `${ip} moves off the down backend`);
  });
  t.same(Object.keys(tally(during.filter((_, i) => before[i] === victim.id))).sort(), ['ws-a', 'ws-c'], "ws-b's clients spread over both others");
  const ring = JSON.parse((await adminGet(`${adminUrl}/ring`)).body) as { backends: Array<{ id: string; state: string; share: number }> };
  t.same(ring.backends.map((b) => [b.id, b.state]), [['ws-a', 'up'], ['ws-b', 'down'], ['ws-c', 'up']]);
  t.equal(ring.backends[1]!.share, 0, 'a down backend serves no share of the ring');

  await startBackend(t, victim.id, victim.port); // the same backend, back at its address
  await waitFor(async () => {
    const m = (await adminGet(`${adminUrl}/metrics`)).body;
    return metricValue(m, `ringlb_backend_up{backend="${victim.id}"}`) === 1;
  }, 'ws-b to be marked up again');
  t.same(await landings(port, ips), before, 'every client is back where it started');
});

t.test('a refused connect fails over to the next backend and is counted against the failed one', async (t) => {
  const live = await startBackend(t, 'live');
  const dead = await startBackend(t, 'dead');
  const deadPort = dead.port;
  await dead.close();
  const { port, adminUrl } = await startDaemon(t, {
    backends: [backendEntry(live), { id: 'dead', host: '127.0.0.1', port: deadPort }],
    healthCheck: { type: 'none' },
  });
  const ips = Array.from({ length: 60 }, (_, i) => clientIp(4000 + i));
  const found = await landings(port, ips);
  t.same(tally(found), { live: 60 }, 'every client is served by the live backend');
  const m = (await adminGet(`${adminUrl}/metrics`)).body;
  const errors = metricValue(m, 'ringlb_connection_errors_total{backend="dead",reason="refused"}');
  t.ok(errors > 0 && errors < 60, `some clients hashed to the dead backend first (${errors})`);
  t.equal(metricValue(m, 'ringlb_connections_total{backend="live"}'), 60);
  t.equal(metricValue(m, 'ringlb_connections_total{backend="dead"}'), 0);
});

t.test('with every backend failing, clients are closed and counted as no_backend', async (t) => {
  const dead = await startBackend(t, 'dead');
  await dead.close();
  const { port, adminUrl } = await startDaemon(t, {
    backends: [{ id: 'dead', host: '127.0.0.1', port: dead.port }],
    healthCheck: { type: 'none' },
    retries: 3,
  });
  await peerClosed(await connectFrom(port, clientIp(5000)));
  const m = (await adminGet(`${adminUrl}/metrics`)).body;
  t.equal(metricValue(m, 'ringlb_rejected_connections_total{reason="no_backend"}'), 1);
  t.equal(metricValue(m, 'ringlb_connection_errors_total{backend="dead",reason="refused"}'), 1, 'one backend, tried once');
});

t.test('an empty fleet rejects as no_backend and /healthz is 503', async (t) => {
  const { port, adminUrl } = await startDaemon(t, { backends: [] });
  t.equal((await adminGet(`${adminUrl}/healthz`)).status, 503);
  await peerClosed(await connectFrom(port, clientIp(5100)));
  const m = (await adminGet(`${adminUrl}/metrics`)).body;
  t.equal(metricValue(m, 'ringlb_rejected_connections_total{reason="no_backend"}'), 1);
  t.equal((await adminGet(`${adminUrl}/nope`)).status, 404);
});

t.test('a backend reset ends the client, and a client reset ends the backend', async (t) => {
  const backend = await startBackend(t, 'rst');
  const { port, adminUrl } = await startDaemon(t, { backends: [backendEntry(backend)], healthCheck: { type: 'none' } });
  const client = await connectFrom(port, clientIp(6000));
  t.equal(await readLine(client), 'rst');
  await waitFor(() => backend.sockets.size === 1, 'the backend socket');
  const clientError = new Promise<NodeJS.ErrnoException>((resolve) => client.once('error', resolve));
  [...backend.sockets][0]!.resetAndDestroy();
  t.equal((await clientError).code, 'ECONNRESET', 'the reset is passed on as a reset');
  await waitFor(async () => {
    const m = (await adminGet(`${adminUrl}/metrics`)).body;
    return metricValue(m, 'ringlb_connection_errors_total{backend="rst",reason="reset"}') === 1;
  }, 'the reset to be counted');

  const second = await connectFrom(port, clientIp(6001));
  t.equal(await readLine(second), 'rst');
  await waitFor(() => backend.sockets.size === 1, 'the second backend socket');
  const backendSide = [...backend.sockets][0]!;
  const backendError = new Promise<NodeJS.ErrnoException>((resolve) => backendSide.once('error', resolve));
  second.resetAndDestroy();
  t.equal((await backendError).code, 'ECONNRESET', 'the client reset reaches the backend as a reset');
  await waitFor(async () => {
    const m = (await adminGet(`${adminUrl}/metrics`)).body;
    return metricValue(m, 'ringlb_connections_active{backend="rst"}') === 0;
  }, 'both pairs to be cleaned up');
});

t.test('an idle connection is closed after timeouts.idleMs; a busy one is not', async (t) => {
  const backend = await startBackend(t, 'idle');
  const { port } = await startDaemon(t, { backends: [backendEntry(backend)], timeouts: { idleMs: 300 } });
  const idle = await connectFrom(port, clientIp(7000));
  const busy = await connectFrom(port, clientIp(7001));
  t.equal(await readLine(idle), 'idle');
  t.equal(await readLine(busy), 'idle');
  let busyClosed = false;
  busy.on('close', () => (busyClosed = true));
  busy.on('data', () => {});
  const ticker = setInterval(() => busy.write('x'), 50);
  t.teardown(() => {
    clearInterval(ticker);
    busy.destroy();
  });
  await peerClosed(idle);
  t.notOk(busyClosed, 'the connection with traffic is still open when the idle one was closed');
});

t.test('a backend that never accepts times out after connectMs and the client fails over', async (t) => {
  // A listener whose accept queue is full drops SYNs, so connects to it hang: a real timeout.
  // Its process is stopped (SIGSTOP), so it never accepts; a few connects fill its queue.
  const child = spawn(process.execPath, [
    '-e',
    "require('net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, function () { console.log(this.address().port) })",
  ]);
  t.teardown(() => child.kill('SIGKILL'));
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const stuckPort = Number(line.toString().trim());
  child.kill('SIGSTOP');
  const fillers: Socket[] = [];
  t.teardown(() => {
    for (const s of fillers) s.destroy();
  });
  for (let i = 0; i < 4; i++) {
    const s = net.connect({ port: stuckPort, host: '127.0.0.1' });
    s.on('error', () => {});
    fillers.push(s);
  }
  const live = await startBackend(t, 'live');
  const { port, adminUrl } = await startDaemon(t, {
    backends: [backendEntry(live), { id: 'stuck', host: '127.0.0.1', port: stuckPort }],
    healthCheck: { type: 'none' },
    timeouts: { connectMs: 150 },
  });
  const ips = Array.from({ length: 20 }, (_, i) => clientIp(8000 + i));
  t.same(tally(await landings(port, ips)), { live: 20 });
  const m = (await adminGet(`${adminUrl}/metrics`)).body;
  t.ok(metricValue(m, 'ringlb_connection_errors_total{backend="stuck",reason="timeout"}') > 0, 'timeouts counted against the stuck backend');
});

t.test('IPv4 and IPv6 wildcards on one port both serve (the IPv6 one is bound IPv6-only)', async (t) => {
  const backend = await startBackend(t, 'dual');
  // A port that was free a moment ago; the daemon binds it twice, once per family.
  const probe = net.createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));
  await startDaemon(t, {
    listen: [
      { host: '0.0.0.0', port },
      { host: '::', port },
    ],
    backends: [backendEntry(backend)],
  });
  t.equal(await whoAnswers(port, '127.0.0.1'), 'dual', 'over IPv4');
  const v6 = net.connect({ host: '::1', port });
  await once(v6, 'connect');
  t.equal(await readLine(v6), 'dual', 'over IPv6');
  v6.destroy();
});

/** A TCP backend that accepts and never reads (paused): bytes sent to it pile up. */
async function startWedgedBackend(t: Test): Promise<{ port: number; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.push(s);
    s.on('error', () => {});
    s.pause();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, sockets };
}

/** Write `upload` from a fresh client until the daemon holds bytes it cannot pass on. */
async function stallUpload(td: TestDaemon, ip: string, upload: Buffer): Promise<Socket> {
  const client = await connectFrom(td.port, ip);
  client.on('error', () => {});
  client.write(upload);
  await waitFor(() => td.daemon.connections.pairs().some((p) => p.backend.writableLength > 0), 'the pair to stall');
  return client;
}

t.test('a pair whose slow reader keeps reading is not idle (issue 7 item 8)', async (t) => {
  // The backend reads a chunk now and then: the upload waits in buffers for several idle
  // periods, but bytes move (as fast as the socket buffers show it: see splice.ts). Then it
  // reads everything.
  const wedged = await startWedgedBackend(t);
  const td = await startDaemon(t, {
    backends: [{ id: 'slow', host: '127.0.0.1', port: wedged.port }],
    timeouts: { idleMs: 1000 },
    healthCheck: { type: 'none' },
  });
  const upload = Buffer.alloc(64 * 1024 * 1024, 7);
  const client = await stallUpload(td, clientIp(9500), upload);
  let clientClosed = false;
  client.on('close', () => (clientClosed = true));
  const backend = wedged.sockets[0]!;
  let received = 0;
  let slow = true;
  backend.on('data', (c: Buffer) => {
    received += c.length;
    if (slow) backend.pause();
  });
  // One chunk every 10 ms until 24 MiB have arrived: several idle periods with bytes waiting.
  while (received < 24 * 1024 * 1024 && !clientClosed) {
    backend.resume();
    await new Promise((r) => setTimeout(r, 10));
  }
  t.notOk(clientClosed, 'the slowly read pair was not closed as idle');
  slow = false;
  backend.resume();
  await waitFor(() => received === upload.length, 'the whole upload to arrive', 30_000);
  t.pass('every byte arrived');
  client.destroy();
});

t.test('a pair whose bytes wait for a reader that never reads is idle (issue 7 item 8)', async (t) => {
  const wedged = await startWedgedBackend(t);
  const td = await startDaemon(t, {
    backends: [{ id: 'wedged', host: '127.0.0.1', port: wedged.port }],
    timeouts: { idleMs: 200 },
    healthCheck: { type: 'none' },
  });
  const client = await stallUpload(td, clientIp(9501), Buffer.alloc(32 * 1024 * 1024, 7));
  await peerClosed(client);
  await waitFor(() => td.daemon.connections.size === 0, 'the pair to be gone');
  const text = await (await fetch(`${td.adminUrl}/metrics`)).text();
  t.equal(metricValue(text, 'ringlb_connections_active{backend="wedged"}'), 0);
  t.equal(metricValue(text, 'ringlb_closed_connections_total{backend="wedged",cause="idle_timeout"}'), 1);
});

t.test('a client that resets while its backend is wedged is noticed, with no idle timeout (issue 7 item 8)', async (t) => {
  const wedged = await startWedgedBackend(t);
  const td = await startDaemon(t, {
    backends: [{ id: 'wedged', host: '127.0.0.1', port: wedged.port }],
    healthCheck: { type: 'none' },
  });
  const client = await stallUpload(td, clientIp(9502), Buffer.alloc(32 * 1024 * 1024, 7));
  // Wait until the daemon stopped reading the client (backpressure), then reset it.
  await waitFor(() => td.daemon.connections.pairs().some((p) => p.client.isPaused()), 'the client side to be paused');
  client.resetAndDestroy();
  await waitFor(() => td.daemon.connections.size === 0, 'the leaked pair to be noticed');
  const text = await (await fetch(`${td.adminUrl}/metrics`)).text();
  t.equal(metricValue(text, 'ringlb_connections_active{backend="wedged"}'), 0, 'no connection left open');
  t.equal(metricValue(text, 'ringlb_closed_connections_total{backend="wedged",cause="client_error"}'), 1);
});
