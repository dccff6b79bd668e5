// Health checks against real servers on loopback (issue 10 items 1-3): WebSocket checks that
// see what a TCP connect cannot (503 to every upgrade, a wrong accept key, a wedged process,
// the wrong service), a polite close the server sees as code 1000, one timer per check,
// PROXY headers before the upgrade, checks spread over the interval with their phase kept, and
// passive health from real traffic.
import { createHook } from 'node:async_hooks';
import { once } from 'node:events';
import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import { WebSocketServer } from 'ws';
import { HealthChecker, type HealthFailure, type HealthOptions } from '../../src/health.js';
import { acceptFor } from '../../src/probe-ws.js';
import { encodeProxyLocal } from '../../src/proxy-protocol.js';
import { startBackend, waitFor } from '../helpers/index.js';

type Change = [up: boolean, reason: HealthFailure | null];

const WS = { path: '/', hostHeader: null };
const options = (extra: Partial<HealthOptions> = {}): HealthOptions => ({
  intervalMs: 50,
  timeoutMs: 300,
  rise: 1,
  fall: 1,
  preamble: null,
  websocket: WS,
  random: () => 0,
  ...extra,
});

/** A checker whose transitions are recorded; stopped at teardown. */
function checker(t: Test, port: number, opts: HealthOptions, initiallyUp = true): { hc: HealthChecker; changes: Change[] } {
  const changes: Change[] = [];
  const hc = new HealthChecker('127.0.0.1', port, opts, initiallyUp, (up, reason) => changes.push([up, reason]));
  t.teardown(() => hc.stop());
  return { hc, changes };
}

/** A raw TCP server on 127.0.0.1:0 that hands every connection to `onConnection`. */
async function rawServer(t: Test, onConnection: (socket: Socket) => void): Promise<{ server: Server; port: number }> {
  const sockets = new Set<Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onConnection(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { server, port: (server.address() as AddressInfo).port };
}

/** Call `onRequest` with the request head once a socket has sent a whole one (bytes before it included). */
function onRequest(socket: Socket, handle: (head: string) => void): void {
  let text = '';
  const onData = (chunk: Buffer): void => {
    text += chunk.toString('latin1');
    const end = text.indexOf('\r\n\r\n');
    if (end === -1) return;
    socket.removeListener('data', onData);
    handle(text.slice(0, end));
  };
  socket.on('data', onData);
}

const keyOf = (head: string): string => /\r\nSec-WebSocket-Key: ([^\r]+)/i.exec(head)![1]!;
const switching = (accept: string): string =>
  `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`;

/** Start a checker with fall 1 against `port` and return the reason of its first down transition. */
async function downReason(t: Test, port: number, extra: Partial<HealthOptions> = {}): Promise<HealthFailure | null> {
  const { hc, changes } = checker(t, port, options(extra));
  hc.start();
  await waitFor(() => changes.length > 0, 'a transition');
  hc.stop();
  t.equal(changes[0]![0], false, 'marked down');
  return changes[0]![1];
}

t.test('a server answering 503 to every upgrade is down (status 503) while its TCP port passes a TCP check', async (t) => {
  let tcpChecks = 0;
  const { port } = await rawServer(t, (socket) => {
    let sent = false;
    onRequest(socket, () => {
      sent = true;
      socket.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    });
    socket.on('end', () => {
      if (!sent) tcpChecks++;
      socket.end();
    });
  });
  const tcp = checker(t, port, options({ websocket: null }));
  tcp.hc.start();
  t.equal(await downReason(t, port, { fall: 2 }), 'status 503');
  await waitFor(() => tcpChecks >= 3, 'three TCP checks');
  t.same(tcp.changes, [], 'the TCP check keeps it up');
});

t.test('each way a WebSocket check fails says what was wrong', async (t) => {
  const wrongAccept = await rawServer(t, (socket) => onRequest(socket, () => socket.write(switching(acceptFor('AAAAAAAAAAAAAAAAAAAAAA==')))));
  t.equal(await downReason(t, wrongAccept.port), 'bad accept key');

  const noAccept = await rawServer(t, (socket) =>
    onRequest(socket, () => socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')),
  );
  t.equal(await downReason(t, noAccept.port), 'missing accept key');

  const wedged = await rawServer(t, () => {});
  t.equal(await downReason(t, wedged.port, { timeoutMs: 150 }), 'timeout', 'accepts, reads, never answers');

  const hangsUp = await rawServer(t, (socket) => onRequest(socket, () => socket.end()));
  t.equal(await downReason(t, hangsUp.port), 'closed', 'closes without answering');

  const echo = await startBackend(t, 'ws-a');
  t.equal(await downReason(t, echo.port), 'not HTTP', 'the wrong service on the port (it greets with its id)');

  const gone = await rawServer(t, () => {});
  gone.server.close();
  await once(gone.server, 'close');
  t.equal(await downReason(t, gone.port), 'refused', 'nothing listening');
  t.equal(await downReason(t, gone.port, { websocket: null }), 'refused', 'a TCP check too');
});

t.test('a good ws server stays up; it sees the path, the Host header and a close frame with code 1000', async (t) => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  t.teardown(() => new Promise<void>((resolve) => wss.close(() => resolve())));
  const seen: string[] = [];
  const codes: number[] = [];
  wss.on('connection', (ws, req) => {
    seen.push(`${req.url} ${req.headers.host}`);
    ws.on('close', (code) => codes.push(code));
  });
  const port = (wss.address() as AddressInfo).port;
  const { hc, changes } = checker(t, port, options({ rise: 2, websocket: { path: '/live?probe=1', hostHeader: 'chat.example.com' } }), false);
  hc.start();
  await waitFor(() => codes.length >= 4, 'four checks closed');
  t.same(changes, [[true, null]], 'down -> up after rise checks, and nothing else');
  t.same(new Set(codes), new Set([1000]), 'every check closed with 1000');
  t.same(new Set(seen), new Set(['/live?probe=1 chat.example.com']));
});

t.test('a backend that expects PROXY gets the header before the upgrade request', async (t) => {
  const firstBytes: string[] = [];
  const { port } = await rawServer(t, (socket) =>
    onRequest(socket, (head) => {
      firstBytes.push(head.slice(0, head.indexOf('\r\n', 16) + 2));
      socket.write(switching(acceptFor(keyOf(head))));
    }),
  );
  const { hc, changes } = checker(t, port, options({ preamble: encodeProxyLocal('v1') }), false);
  hc.start();
  await waitFor(() => changes.length > 0, 'up');
  t.same(changes, [[true, null]]);
  t.equal(firstBytes[0], 'PROXY UNKNOWN\r\nGET / HTTP/1.1\r\n');
});

t.test('one timer per check, for tcp and websocket checks (issue 10 item 1)', async (t) => {
  for (const websocket of [null, WS]) {
    let accepted = 0;
    let closeFrames = 0;
    let fifthClose: () => void = () => {};
    const closed = new Promise<void>((resolve) => (fifthClose = resolve));
    const { port } = await rawServer(t, (socket) => {
      accepted++;
      if (!websocket) {
        socket.on('end', () => {
          socket.end();
          if (accepted === 5) fifthClose();
        });
        return;
      }
      onRequest(socket, (head) => {
        socket.write(switching(acceptFor(keyOf(head))));
        socket.once('data', (frame: Buffer) => {
          // The check's close frame: FIN + close, masked, 2 bytes of payload (status 1000).
          if (frame.length === 8 && frame[0] === 0x88 && frame[1] === 0x82 && (((frame[6]! ^ frame[2]!) << 8) | (frame[7]! ^ frame[3]!)) === 1000) closeFrames++;
          socket.destroy();
          if (closeFrames === 5) fifthClose();
        });
      });
    });
    let timeouts = 0;
    // Counted for the whole life of the checker: its first-offset timer, its interval, and one per check.
    const hook = createHook({ init: (_id, type) => void (type === 'Timeout' && timeouts++) }).enable();
    const { hc, changes } = checker(t, port, options({ websocket, intervalMs: 30 }));
    hc.start();
    await closed;
    hc.stop();
    hook.disable();
    const kind = websocket ? 'websocket' : 'tcp';
    t.equal(timeouts, 2 + accepted, `${kind}: ${timeouts} timers for ${accepted} checks`);
    t.same(changes, [], `${kind}: stayed up`);
  }
});

t.test('checks of 20 backends start at their own offsets and keep that phase (issue 10 item 3)', async (t) => {
  const N = 20;
  // Arrival order at the backend, by accept order (the kernel's queue), named by the path each check asked for.
  const arrivals: string[] = [];
  const { port } = await rawServer(t, (socket) => {
    const slot = arrivals.push('?') - 1;
    onRequest(socket, (head) => {
      arrivals[slot] = head.slice(4, head.indexOf(' ', 4));
      socket.write(switching(acceptFor(keyOf(head))));
    });
    socket.on('end', () => socket.end());
  });
  // Offsets are a permutation of k/20 of the interval: checker i gets (7i mod 20)/20.
  const offset = (i: number): number => ((7 * i) % N) / N;
  const changes: Change[] = [];
  for (let i = 0; i < N; i++) {
    const hc = new HealthChecker('127.0.0.1', port, options({ intervalMs: 1000, websocket: { path: `/c${i}`, hostHeader: null }, random: () => offset(i) }), true, (up, r) =>
      changes.push([up, r]),
    );
    t.teardown(() => hc.stop());
    hc.start();
  }
  const round = (k: number): string[] => {
    const counts = new Map<string, number>();
    return arrivals.filter((path) => {
      const n = (counts.get(path) ?? 0) + 1;
      counts.set(path, n);
      return n === k;
    });
  };
  await waitFor(() => round(2).length === N && !arrivals.includes('?'), 'two rounds of checks', 15_000);
  const expected = [...Array(N).keys()].sort((a, b) => offset(a) - offset(b)).map((i) => `/c${i}`);
  t.same(round(1), expected, 'first checks arrive in the order of their offsets, each once');
  t.same(round(2), expected, 'second checks keep the same phase order');
  t.same(changes, []);
});

t.test('passive health: traffic failures count toward fall, local ones never; active checks recover (issue 10 item 2)', async (t) => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  t.teardown(() => new Promise<void>((resolve) => wss.close(() => resolve())));
  let upgrades = 0;
  wss.on('connection', () => upgrades++);
  const port = (wss.address() as AddressInfo).port;
  const { hc, changes } = checker(t, port, options({ fall: 2, rise: 2, intervalMs: 100 }));
  hc.trafficFailed('refused');
  hc.trafficSucceeded();
  hc.trafficFailed('timeout');
  t.same(changes, [], 'a success in between starts the count over');
  for (const local of ['no_source_port', 'no_file_descriptors', 'no_source_port'] as const) hc.trafficFailed(local);
  t.same(changes, [], 'local failures count neither way');
  hc.trafficFailed('refused');
  t.same(changes, [[false, 'traffic refused']], 'two consecutive traffic failures: down');
  for (let i = 0; i < 5; i++) hc.trafficSucceeded();
  t.equal(hc.up, false, 'traffic does not raise a backend');
  hc.start();
  await waitFor(() => changes.length === 2, 'back up');
  t.same(changes[1], [true, null]);
  t.ok(upgrades >= 2, `raised by ${upgrades} active checks (rise 2)`);
});
