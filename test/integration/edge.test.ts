// The connection edge on loopback (issue 8): PROXY headers from a trusted balancer in front,
// PROXY headers to backends (and their health checks), the limits, and every rejection reason
// they produce. Backends here parse the header as a real one would and announce what it said.

import { once } from 'node:events';
import net, { type AddressInfo, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import { validateConfig } from '../../src/config.js';
import { decodeProxyHeader, encodeProxyHeader, encodeProxyLocal, type ProxyHeader } from '../../src/proxy-protocol.js';
import { lookupAll } from '../../src/report.js';
import {
  adminGet,
  clientIp,
  connectFrom,
  metricValue,
  peerClosed,
  readLine,
  roundTrip,
  startBackend,
  startDaemon,
  waitFor,
} from '../helpers/index.js';

interface ProxiedBackend {
  readonly id: string;
  readonly port: number;
  /** Headers of connections that carried no bytes after them (health checks). */
  readonly checks: ProxyHeader[];
}

/**
 * A backend that expects a PROXY header: it answers `<id> <source>` (the decoded client, or
 * `local`) and then echoes whatever follows the header. A connection that ends right after its
 * header is a health check and is recorded.
 */
async function startProxiedBackend(t: Test, id: string): Promise<ProxiedBackend> {
  const checks: ProxyHeader[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    let received = Buffer.alloc(0);
    let header: ProxyHeader | null = null;
    socket.on('data', (chunk: Buffer) => {
      if (header !== null) return;
      received = Buffer.concat([received, chunk]);
      const result = decodeProxyHeader(received);
      if (result.status === 'incomplete') return;
      if (result.status === 'invalid') {
        socket.destroy();
        return;
      }
      header = result.header;
      const a = header.addresses;
      socket.removeAllListeners('data');
      socket.write(`${id} ${a ? `${a.source}:${a.sourcePort}` : 'local'}\n`);
      const rest = received.subarray(header.length);
      if (rest.length > 0) socket.write(rest);
      socket.pipe(socket);
    });
    socket.on('end', () => {
      if (header !== null && header.addresses === null) checks.push(header);
      socket.end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { id, port: (server.address() as AddressInfo).port, checks };
}

const entry = (b: { id: string; port: number }, extra: Record<string, unknown> = {}) => ({
  id: b.id,
  host: '127.0.0.1',
  port: b.port,
  ...extra,
});

/** A v1 header for client `ip` reaching 192.0.2.1:443. */
const v1 = (ip: string, port = 40000): Buffer =>
  encodeProxyHeader('v1', { family: 4, source: ip, sourcePort: port, destination: '192.0.2.1', destinationPort: 443 });
const v2 = (ip: string, port = 40000): Buffer =>
  encodeProxyHeader('v2', { family: 4, source: ip, sourcePort: port, destination: '192.0.2.1', destinationPort: 443 });

async function metrics(adminUrl: string): Promise<string> {
  return (await adminGet(`${adminUrl}/metrics`)).body;
}

t.test('behind a trusted balancer: the PROXY header names the client, for routing and for the backend', async (t) => {
  const backends = await Promise.all(['pa', 'pb', 'pc'].map((id) => startProxiedBackend(t, id)));
  const config = {
    listen: { host: '127.0.0.1', port: 0, acceptProxy: ['127.0.0.1/32'] },
    backends: backends.map((b) => entry(b)),
    proxyProtocol: 'v2',
    healthCheck: { type: 'none' },
  };
  const { port, adminUrl } = await startDaemon(t, config);
  const clients = Array.from({ length: 40 }, (_, i) => `198.51.100.${i + 1}`);
  const expected = lookupAll(validateConfig({ ...config, listen: { host: '127.0.0.1', port: 1 } }), clients);
  t.ok(new Set(expected).size > 1, 'the 40 client addresses spread over several backends');
  for (const [i, ip] of clients.entries()) {
    const socket = await connectFrom(port);
    // The header and the first client bytes in one write (one segment): both must arrive.
    socket.write(Buffer.concat([i % 2 ? v1(ip, 50000 + i) : v2(ip, 50000 + i), Buffer.from('hello\n')]));
    t.equal(await readLine(socket), `${expected[i]} ${ip}:${50000 + i}`, `${ip} is routed by its own address and named to the backend`);
    t.equal(await readLine(socket), 'hello', 'the bytes after the header arrive intact');
    t.equal(await roundTrip(socket, 'more'), 'more', 'and the connection goes on');
    socket.destroy();
  }
  t.equal(metricValue(await metrics(adminUrl), 'ringlb_rejected_connections_total{reason="bad_proxy_header"}'), 0);
});

t.test('a header split byte by byte is read whole; a v2 LOCAL connection routes by its own address', async (t) => {
  const backend = await startProxiedBackend(t, 'pa');
  const { port } = await startDaemon(t, {
    listen: { host: '127.0.0.1', port: 0, acceptProxy: ['127.0.0.0/8'] },
    backends: [entry(backend, { proxyProtocol: 'v1' })],
    healthCheck: { type: 'none' },
  });
  const socket = await connectFrom(port, '127.5.0.1');
  const bytes = Buffer.concat([v1('203.0.113.9', 1234), Buffer.from('tail\n')]);
  for (const byte of bytes) {
    socket.write(Buffer.from([byte]));
    await new Promise((r) => setTimeout(r, 2));
  }
  t.equal(await readLine(socket), 'pa 203.0.113.9:1234');
  t.equal(await readLine(socket), 'tail');
  socket.destroy();

  // The front balancer's own check: LOCAL, so the backend hears of ringlb's peer (127.5.0.2).
  const local = await connectFrom(port, '127.5.0.2');
  local.write(encodeProxyLocal('v2'));
  const line = await readLine(local);
  t.match(line, /^pa 127\.5\.0\.2:\d+$/, `a LOCAL connection is announced with the peer's own address (${line})`);
  local.destroy();
});

t.test('every way a PROXY listener refuses is counted by its reason', async (t) => {
  const backend = await startBackend(t, 'a');
  const { port, adminUrl, logs, daemon } = await startDaemon(t, {
    listen: [
      { host: '127.0.0.1', port: 0, acceptProxy: ['127.0.0.1'] },
      { host: '127.0.0.2', port: 0, acceptProxy: ['127.9.9.9/32', '::1'] },
    ],
    backends: [entry(backend)],
    timeouts: { proxyHeaderMs: 300 },
    healthCheck: { type: 'none' },
  });
  const outcome = async (send: Buffer | null, via = port, host = '127.0.0.1'): Promise<void> => {
    const socket = net.connect({ host, port: via });
    await once(socket, 'connect');
    socket.on('error', () => {});
    if (send) socket.write(send);
    await peerClosed(socket);
  };
  await outcome(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')); // garbage: not a header
  const v2Huge = Buffer.from(v2('10.0.0.1'));
  v2Huge.writeUInt16BE(65535, 14); // the claimed length no balancer sends
  await outcome(v2Huge);
  await outcome(Buffer.from(`PROXY TCP4 10.0.0.1 10.0.0.2 1 2${' '.repeat(100)}`)); // no CRLF within 107 bytes
  await outcome(Buffer.from('PROXY TCP4 10.0.0.1 10.0.0.2 1 99999\r\n')); // a port out of range
  await outcome(null); // nothing within proxyHeaderMs
  await outcome(v1('10.0.0.1').subarray(0, 10)); // a header that never completes
  let text = await metrics(adminUrl);
  t.equal(metricValue(text, 'ringlb_rejected_connections_total{reason="bad_proxy_header"}'), 6, 'six bad headers');
  t.equal(metricValue(text, 'ringlb_connections_total{backend="a"}'), 0, 'none reached the backend');

  // The second listener trusts only 127.9.9.9 and ::1: a valid header from 127.0.0.1 is refused.
  const second = daemon.listenAddresses[1]!.port;
  await outcome(v1('10.0.0.1'), second, '127.0.0.2');
  text = await metrics(adminUrl);
  t.equal(metricValue(text, 'ringlb_rejected_connections_total{reason="untrusted_proxy"}'), 1, 'an untrusted peer');
  const warned = logs.filter((l) => l.msg === 'missing or bad PROXY header: connection refused');
  t.equal(warned.length, 1, 'six bad headers in a burst are one warning line (then one per 10 s with a count)');
  t.match(warned[0], { level: 40, count: 1 });
});

t.test('limits: maxConnections and maxConnectionsPerIp refuse at once and count', async (t) => {
  const backend = await startBackend(t, 'a');
  const { port, adminUrl, daemon, logs } = await startDaemon(t, {
    backends: [entry(backend)],
    limits: { maxConnections: 5, maxConnectionsPerIp: 2 },
    healthCheck: { type: 'none' },
  });
  t.equal(metricValue(await metrics(adminUrl), 'ringlb_max_connections'), 5, 'the limit in force is exported');
  const held: Socket[] = [];
  const open = async (ip: string): Promise<Socket> => {
    const s = await connectFrom(port, ip);
    t.equal(await readLine(s), 'a', `${ip} is served`);
    held.push(s);
    return s;
  };
  const refused = async (ip: string): Promise<void> => {
    const s = await connectFrom(port, ip);
    s.on('error', () => {});
    await peerClosed(s);
  };
  const first = await open(clientIp(1));
  await open(clientIp(1));
  await refused(clientIp(1)); // a third from the same address
  await open(clientIp(2));
  let text = await metrics(adminUrl);
  t.equal(metricValue(text, 'ringlb_rejected_connections_total{reason="max_connections_per_ip"}'), 1);
  first.destroy();
  held.splice(held.indexOf(first), 1);
  await waitFor(() => daemon.connections.size === 2, 'the closed one to be gone');
  await open(clientIp(1)); // room again for that address
  await open(clientIp(3));
  await open(clientIp(4));
  await refused(clientIp(5)); // the sixth at once
  await refused(clientIp(6));
  text = await metrics(adminUrl);
  t.equal(metricValue(text, 'ringlb_rejected_connections_total{reason="max_connections"}'), 2);
  t.equal(metricValue(text, 'ringlb_connections_active{backend="a"}'), 5);
  t.equal(logs.filter((l) => l.msg === 'connection limit reached: refusing clients').length, 1, 'one warning for the burst');
  for (const s of held) t.equal(await roundTrip(s, 'ping'), 'ping', 'held connections still echo');
  for (const s of held) s.destroy();
});

t.test('per-address limits count the address a PROXY header names, not the balancer', async (t) => {
  const backend = await startProxiedBackend(t, 'pa');
  const { port, adminUrl } = await startDaemon(t, {
    listen: { host: '127.0.0.1', port: 0, acceptProxy: ['127.0.0.1'] },
    backends: [entry(backend, { proxyProtocol: 'v1' })],
    limits: { maxConnectionsPerIp: 1 },
    healthCheck: { type: 'none' },
  });
  const via = async (ip: string): Promise<Socket> => {
    const s = await connectFrom(port);
    s.on('error', () => {});
    s.write(v1(ip));
    return s;
  };
  const a = await via('10.1.0.1');
  const b = await via('10.1.0.2');
  t.match(await readLine(a), /^pa 10\.1\.0\.1:/);
  t.match(await readLine(b), /^pa 10\.1\.0\.2:/);
  const again = await via('10.1.0.1');
  await peerClosed(again);
  t.equal(metricValue(await metrics(adminUrl), 'ringlb_rejected_connections_total{reason="max_connections_per_ip"}'), 1);
  a.destroy();
  b.destroy();
});

t.test('health checks of a backend that gets PROXY headers send one too', async (t) => {
  const one = await startProxiedBackend(t, 'v1');
  const two = await startProxiedBackend(t, 'v2');
  const { adminUrl } = await startDaemon(t, {
    backends: [entry(one, { proxyProtocol: 'v1' }), entry(two, { proxyProtocol: 'v2' })],
    healthCheck: { intervalMs: 30, timeoutMs: 500, rise: 1, fall: 1 },
  });
  await waitFor(() => one.checks.length >= 3 && two.checks.length >= 3, 'three checks of each backend');
  t.match(one.checks[0], { version: 'v1', addresses: null }, 'v1: PROXY UNKNOWN');
  t.match(two.checks[0], { version: 'v2', command: 'local', addresses: null }, 'v2: LOCAL');
  const text = await metrics(adminUrl);
  t.equal(metricValue(text, 'ringlb_backend_up{backend="v1"}'), 1, 'the checks keep both up');
  t.equal(metricValue(text, 'ringlb_backend_up{backend="v2"}'), 1);
});
