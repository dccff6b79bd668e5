// The admin endpoint: /ring, /healthz, /metrics agree with each other and with the config; and
// it is bounded: paths, methods, HEAD, headers, bodies, slow and idle clients (issue 12 item 2).

import { once } from 'node:events';
import net, { type Socket } from 'node:net';
import t, { type Test } from 'tap';
import { ADMIN_LIMITS } from '../../src/admin.js';
import { configHash, routingHash, validateConfig } from '../../src/config.js';
import { adminGet, backendEntry, clientIp, metricValue, startBackend, startDaemon, waitFor, whoAnswers } from '../helpers/index.js';

interface RingBody {
  configHash: string;
  routingHash: string;
  backends: Array<{ id: string; address: string; weight: number; state: string; share: number; active: number }>;
}

t.test('/ring, /healthz and /metrics describe the ring in force', async (t) => {
  const [a, b, c] = await Promise.all(['ws-a', 'ws-b', 'ws-c'].map((id) => startBackend(t, id)));
  const config = {
    backends: [backendEntry(a!), backendEntry(b!, { weight: 2 }), backendEntry(c!, { drain: true })],
  };
  const { port, adminUrl, daemon, logs } = await startDaemon(t, config);
  const expectedHash = configHash(
    validateConfig({ listen: { host: '127.0.0.1', port: 0 }, metrics: { host: '127.0.0.1', port: 0 }, ...config }),
  );

  const ring = JSON.parse((await adminGet(`${adminUrl}/ring`)).body) as RingBody;
  t.equal(ring.configHash, expectedHash, '/ring reports the digest of the validated config');
  t.same(
    ring.backends.map(({ id, address, weight, state, active }) => ({ id, address, weight, state, active })),
    [
      { id: 'ws-a', address: `127.0.0.1:${a!.port}`, weight: 1, state: 'up', active: 0 },
      { id: 'ws-b', address: `127.0.0.1:${b!.port}`, weight: 2, state: 'up', active: 0 },
      { id: 'ws-c', address: `127.0.0.1:${c!.port}`, weight: 1, state: 'draining', active: 0 },
    ],
  );
  const [sa, sb, sc] = ring.backends.map((x) => x.share);
  t.equal(sc, 0, 'a draining backend serves no share');
  t.ok(Math.abs(sa! + sb! - 1) < 1e-12, 'the others share the whole hash space');
  t.ok(sb! > sa!, 'weight 2 serves more than weight 1');

  t.equal((await adminGet(`${adminUrl}/healthz`)).status, 200);

  await whoAnswers(port, clientIp(100));
  const metrics = (await adminGet(`${adminUrl}/metrics`)).body;
  t.equal(ring.routingHash, routingHash(validateConfig({ listen: { host: '127.0.0.1', port: 1 }, ...config })), '/ring reports the routing hash too');
  t.equal(metricValue(metrics, `ringlb_config_info{hash="${expectedHash}",routing_hash="${ring.routingHash}"}`), 1);
  for (const x of ring.backends) {
    t.equal(metricValue(metrics, `ringlb_ring_share{backend="${x.id}"}`), x.share, `ring_share of ${x.id}`);
    t.equal(metricValue(metrics, `ringlb_backend_up{backend="${x.id}"}`), 1, `${x.id} is up`);
  }
  const served = ring.backends.map((x) => metricValue(metrics, `ringlb_connect_duration_seconds_count{backend="${x.id}"}`));
  t.equal(served.reduce((s, n) => s + n, 0), 1, 'one connect observed in the histogram');
  t.equal(served[2], 0, 'never on the draining backend');
  t.match(metrics, /^process_cpu_user_seconds_total /m, 'default process metrics are exported');

  const started = logs.find((l) => l.msg === 'ringlb started') as { configHash?: string; backends?: unknown[] } | undefined;
  t.equal(started?.configHash, expectedHash, 'the startup line names the config hash');
  t.equal(started?.backends?.length, 3, 'and every backend with its share');
  t.equal(daemon.fleet.table.hash, expectedHash);

  const post = await fetch(`${adminUrl}/ring`, { method: 'POST' });
  t.equal(post.status, 405, 'the admin endpoint is read-only');
  await post.text();
});

// ---- admin endpoint hygiene (issue 12 item 2), with raw sockets ---------------------------------

interface RawClient {
  readonly socket: Socket;
  /** Everything received so far. */
  received(): string;
  /** Resolves when the server closed the connection (FIN or reset). */
  readonly closed: Promise<void>;
}

/** A plain TCP connection to the admin port, recording what comes back. */
async function rawClient(t: Test, port: number): Promise<RawClient> {
  const socket = net.connect({ host: '127.0.0.1', port });
  let data = '';
  socket.on('data', (chunk: Buffer) => (data += chunk.toString('latin1')));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  t.teardown(() => socket.destroy());
  await once(socket, 'connect');
  return { socket, received: () => data, closed };
}

/** Send `request` on a fresh connection and return everything until the server closes it. */
async function exchange(t: Test, port: number, request: string): Promise<string> {
  const client = await rawClient(t, port);
  client.socket.write(request);
  await client.closed;
  return client.received();
}

interface Response {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Split pipelined HTTP/1.1 responses; a HEAD response (named by `head`) has no body. */
function parseResponses(text: string, head: readonly boolean[]): Response[] {
  const responses: Response[] = [];
  let rest = text;
  for (const isHead of head) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) throw new Error(`incomplete response: ${JSON.stringify(rest)}`);
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = isHead ? 0 : Number(headers['content-length'] ?? 0);
    responses.push({ status: Number(statusLine!.split(' ')[1]), headers, body: rest.slice(end + 4, end + 4 + length) });
    rest = rest.slice(end + 4 + length);
  }
  if (rest !== '') throw new Error(`bytes after the last response: ${JSON.stringify(rest.slice(0, 200))}`);
  return responses;
}

const request = (method: string, path: string, extra = ''): string => `${method} ${path} HTTP/1.1\r\nHost: admin\r\n${extra}\r\n`;
const lastRequest = (method: string, path: string, extra = ''): string => request(method, path, `${extra}Connection: close\r\n`);

t.test('every path answers HEAD like GET without a body; unknown paths 404; other methods 405 (issue 12 item 2)', async (t) => {
  const a = await startBackend(t, 'ws-a');
  const { adminUrl } = await startDaemon(t, { backends: [backendEntry(a)] });
  const port = Number(new URL(adminUrl).port);

  for (const path of ['/', '/metrics', '/healthz', '/ring', '/ring/arcs', '/last-reload', '/ring?pretty=1']) {
    // HEAD then GET on one connection: if HEAD sent any body, the GET's status line would not follow its headers.
    const [head, get] = parseResponses(await exchange(t, port, request('HEAD', path) + lastRequest('GET', path)), [true, false]);
    t.equal(head!.status, 200, `HEAD ${path}: 200`);
    t.equal(get!.status, 200, `GET ${path}: 200`);
    t.equal(head!.headers['content-type'], get!.headers['content-type'], `HEAD ${path}: the GET's content type`);
    t.equal(head!.headers['x-content-type-options'], 'nosniff');
    t.equal(head!.headers['cache-control'], 'no-store');
    // /metrics and /ring can change between the two requests; the others are byte-identical.
    if (!path.startsWith('/metrics') && !path.startsWith('/ring?')) {
      t.equal(head!.headers['content-length'], String(Buffer.byteLength(get!.body, 'latin1')), `HEAD ${path}: the GET's Content-Length`);
    }
  }

  for (const path of ['/nope', '/ring/', '/metrics/x', '/favicon.ico', '/healthz/../ring']) {
    const [get] = parseResponses(await exchange(t, port, lastRequest('GET', path)), [false]);
    t.equal(get!.status, 404, `GET ${path}: 404`);
    t.equal(get!.body, 'not found: try /, /metrics, /healthz, /ring, /ring/arcs, /last-reload\n');
    const [head] = parseResponses(await exchange(t, port, lastRequest('HEAD', path)), [true]);
    t.equal(head!.status, 404, `HEAD ${path}: 404, no body`);
  }

  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
    for (const path of ['/', '/ring']) {
      const [answer] = parseResponses(await exchange(t, port, lastRequest(method, path, 'Content-Length: 0\r\n')), [false]);
      t.equal(answer!.status, 405, `${method} ${path}: 405`);
      t.equal(answer!.headers.allow, 'GET, HEAD', `${method} ${path}: Allow`);
    }
  }
});

t.test('request bodies are refused with 413 and headers are bounded (issue 12 item 2)', async (t) => {
  const a = await startBackend(t, 'ws-a');
  const { adminUrl } = await startDaemon(t, { backends: [backendEntry(a)] });
  const port = Number(new URL(adminUrl).port);

  const sized = await exchange(t, port, `${request('GET', '/ring', 'Content-Length: 5\r\n')}hello`);
  const [withLength] = parseResponses(sized, [false]);
  t.equal(withLength!.status, 413, 'a GET with a body: 413');
  t.equal(withLength!.headers.connection, 'close', 'and the connection is closed (the body is never read)');
  t.equal(withLength!.body, 'request bodies are not accepted\n');
  const chunked = await exchange(t, port, `${request('GET', '/metrics', 'Transfer-Encoding: chunked\r\n')}5\r\nhello\r\n0\r\n\r\n`);
  t.equal(parseResponses(chunked, [false])[0]!.status, 413, 'a chunked body: 413');

  const fits = 'X-Pad: ' + 'a'.repeat(ADMIN_LIMITS.maxHeaderSize - 200) + '\r\n';
  t.equal(parseResponses(await exchange(t, port, lastRequest('GET', '/healthz', fits)), [false])[0]!.status, 200, 'headers just under the bound: 200');
  const big = 'X-Pad: ' + 'a'.repeat(ADMIN_LIMITS.maxHeaderSize) + '\r\n';
  t.match(await exchange(t, port, lastRequest('GET', '/healthz', big)), /^HTTP\/1\.1 431 /, `headers over ${ADMIN_LIMITS.maxHeaderSize} bytes: 431 and closed`);
});

t.test('slow and idle admin clients are cut off and capped; the proxy does not notice (issue 12 item 2)', async (t) => {
  const a = await startBackend(t, 'ws-a');
  const { port: proxyPort, adminUrl } = await startDaemon(t, { backends: [backendEntry(a)] });
  const port = Number(new URL(adminUrl).port);
  const healthz = async (): Promise<string> => exchange(t, port, lastRequest('GET', '/healthz'));

  // A slowloris: one byte of a request's headers per second, never finishing them.
  const slow = await rawClient(t, port);
  const slowRequest = request('GET', '/healthz', 'X-Slow: ' + 'z'.repeat(100) + '\r\n');
  let sent = 0;
  const drip = setInterval(() => {
    if (!slow.socket.destroyed) slow.socket.write(slowRequest[sent++]!);
  }, 1000);
  t.teardown(() => clearInterval(drip));

  // 200 connections that never send a byte.
  const idle = await Promise.all(Array.from({ length: 200 }, () => rawClient(t, port)));
  t.match(await healthz(), /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nok\n$/, '/healthz answers beside 200 idle connections and a slowloris');

  // Up to the cap: the connection past it is closed at once, before anything is read.
  const more = await Promise.all(Array.from({ length: ADMIN_LIMITS.maxConnections - 201 }, () => rawClient(t, port)));
  const over = await rawClient(t, port);
  over.socket.write(lastRequest('GET', '/healthz'));
  await over.closed;
  t.equal(over.received(), '', `connection ${ADMIN_LIMITS.maxConnections + 1} is closed without an answer`);
  t.equal(await whoAnswers(proxyPort, clientIp(1)), 'ws-a', 'the proxy serves while the admin endpoint is full');

  // headersTimeout cuts the slowloris and the idle ones: 408, closed.
  await waitFor(() => slow.socket.destroyed, 'the slowloris to be closed', ADMIN_LIMITS.headersTimeoutMs + 10_000);
  t.ok(sent < slowRequest.length, `the slowloris was closed before it finished its headers (${sent} of ${slowRequest.length} bytes)`);
  t.match(slow.received(), /^HTTP\/1\.1 408 Request Timeout\r\n/, 'with 408');
  await Promise.all([...idle, ...more].map((c) => c.closed));
  t.ok([...idle, ...more].every((c) => /^HTTP\/1\.1 408 /.test(c.received())), 'every idle connection got 408 and was closed');
  t.match(await healthz(), /^HTTP\/1\.1 200 OK\r\n/, 'and the endpoint answers again');
  t.equal(await whoAnswers(proxyPort, clientIp(2)), 'ws-a', 'the proxy still serves');
});
