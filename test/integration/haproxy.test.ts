// Interoperability with HAProxy as the PROXY protocol peer (issue 8 §6), both ways:
// - in front: HAProxy `send-proxy` / `send-proxy-v2` into an `acceptProxy` listener; the backend
//   behind ringlb must see each client's own address, and ringlb must route by it;
// - behind: ringlb `proxyProtocol: "v1"` / `"v2"` into an HAProxy `accept-proxy` frontend that
//   answers with the source it decoded, and ringlb's health checks (PROXY UNKNOWN / v2 LOCAL)
//   must be accepted by it;
// and one case each way over IPv6 when ::1 works here.

import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net, { type AddressInfo, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import { validateConfig } from '../../src/config.js';
import { decodeProxyHeader, type ProxyHeader } from '../../src/proxy-protocol.js';
import { lookupAll } from '../../src/report.js';
import { haproxyMissing, ipv6Loopback, startHaproxy, type Haproxy } from '../helpers/haproxy.js';
import { adminGet, metricValue, startDaemon, tally, waitFor } from '../helpers/index.js';

/** A backend behind ringlb that reads the PROXY header ringlb sends, says what it decoded, then echoes. */
interface DecodingBackend {
  readonly id: string;
  readonly port: number;
  /** Every header received, in order. */
  readonly headers: ProxyHeader[];
}

/**
 * Answers `<id> <source> <source port>\n` (the client in the header; `local -` when it carries
 * none) or `<id> invalid <reason>\n`, then echoes every byte that followed the header, and ends
 * when the client has.
 */
async function startDecodingBackend(t: Test, id: string): Promise<DecodingBackend> {
  const headers: ProxyHeader[] = [];
  const sockets = new Set<Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let received = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      received = Buffer.concat([received, chunk]);
      const result = decodeProxyHeader(received);
      if (result.status === 'incomplete') return;
      socket.removeListener('data', onData);
      if (result.status === 'invalid') {
        socket.end(`${id} invalid ${result.reason}\n`);
        return;
      }
      const { header } = result;
      headers.push(header);
      const who = header.addresses ? `${header.addresses.source} ${header.addresses.sourcePort}` : 'local -';
      socket.write(`${id} ${who}\n`);
      socket.write(received.subarray(header.length));
      socket.pipe(socket);
    };
    socket.on('data', onData);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { id, port: (server.address() as AddressInfo).port, headers };
}

/**
 * A client socket read through one 'data' listener for its whole life, so that no byte can fall
 * between two readers (as with unshift() back into a flowing socket). Every wait is bounded.
 */
class Client {
  private received = Buffer.alloc(0);
  private ended = false;
  private waiter: (() => void) | null = null;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      this.waiter?.();
    });
    const end = (): void => {
      this.ended = true;
      this.waiter?.();
    };
    socket.on('end', end).on('close', end).on('error', () => {});
  }

  /** Connect to host:port from `localAddress`; destroyed in teardown. */
  static async dial(t: Test, host: string, port: number, localAddress: string): Promise<Client> {
    const socket = net.connect({ host, port, localAddress });
    t.teardown(() => socket.destroy());
    await once(socket, 'connect');
    return new Client(socket);
  }

  /** The next line, without its newline. */
  line(): Promise<string> {
    return this.take('a line', () => {
      const nl = this.received.indexOf(0x0a);
      return nl < 0 ? undefined : this.consume(nl + 1).toString('latin1', 0, nl);
    });
  }

  /** The next `n` bytes. */
  bytes(n: number): Promise<Buffer> {
    return this.take(`${n} bytes`, () => (this.received.length >= n ? this.consume(n) : undefined));
  }

  /** Everything until the peer's end (FIN or reset). */
  rest(timeoutMs = 10_000): Promise<Buffer> {
    return this.take('the end of the connection', () => (this.ended ? this.consume(this.received.length) : undefined), timeoutMs);
  }

  private consume(n: number): Buffer {
    const taken = this.received.subarray(0, n);
    this.received = this.received.subarray(n);
    return taken;
  }

  private take<T>(what: string, ready: () => T | undefined, timeoutMs = 10_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => settle(new Error(`no ${what} within ${timeoutMs} ms`)), timeoutMs);
      const settle = (error: Error | null, value?: T): void => {
        clearTimeout(timer);
        this.waiter = null;
        if (error) reject(error);
        else resolve(value!);
      };
      this.waiter = () => {
        const value = ready();
        if (value !== undefined) settle(null, value);
        else if (this.ended) settle(new Error(`connection ended before ${what} (got ${JSON.stringify(this.received.toString('latin1'))})`));
      };
      this.waiter();
    });
  }
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** What one client through HAProxy and ringlb saw. */
interface Visit {
  readonly ip: string;
  readonly localPort: number;
  /** The backend's answer: `<id> <source> <source port>`. */
  readonly answer: string;
  readonly echo: string;
}

/** Connect from `ip`, send a line at once (so it travels right behind the PROXY header), read the answer and the echo. */
async function visit(t: Test, host: string, port: number, ip: string): Promise<Visit> {
  const client = await Client.dial(t, host, port, ip);
  client.socket.write(`payload from ${ip}\n`);
  const answer = await client.line();
  const echo = await client.line();
  const localPort = client.socket.localPort!;
  client.socket.destroy();
  return { ip, localPort, answer, echo };
}

/** ringlb's counters of refused clients and open pairs. */
async function ringlbCounts(adminUrl: string, backends: readonly string[]): Promise<Record<string, number>> {
  const { body } = await adminGet(`${adminUrl}/metrics`);
  const counts: Record<string, number> = {};
  for (const r of ['untrusted_proxy', 'bad_proxy_header', 'no_backend']) {
    counts[r] = metricValue(body, `ringlb_rejected_connections_total{reason="${r}"}`);
  }
  counts.active = backends.reduce((sum, id) => sum + metricValue(body, `ringlb_connections_active{backend="${id}"}`), 0);
  return counts;
}

const NONE_REFUSED = { untrusted_proxy: 0, bad_proxy_header: 0, no_backend: 0 };
const IDS = ['ws-a', 'ws-b', 'ws-c'];

/**
 * HAProxy in front of an `acceptProxy` listener on `host`, sending `directive`. With `checks`,
 * HAProxy checks ringlb through the header: a check carries no client (v1 UNKNOWN / v2 LOCAL;
 * HAProxy manual, check-send-proxy), so ringlb routes it by HAProxy's own address, and it passes
 * when the answer of the backend it reached names that address. (HAProxy resets a check
 * connection as soon as it is done; waiting for an answer makes it wait until ringlb has read
 * the header.)
 */
async function haproxyInFront(t: Test, host: string, directive: string, checks: boolean) {
  const backends = await Promise.all(IDS.map((id) => startDecodingBackend(t, id)));
  const config = {
    listen: { host, port: 0, acceptProxy: [host] },
    backends: backends.map((b) => ({ id: b.id, host: '127.0.0.1', port: b.port })),
    proxyProtocol: 'v1',
    // ringlb's own checks would add UNKNOWN headers to what the backends record.
    healthCheck: { type: 'none' },
  };
  const ringlb = await startDaemon(t, config);
  const bracket = host.includes(':') ? `[${host}]` : host;
  const peer = host.replace(/\./g, '\\.');
  const check = checks ? `\n  option tcp-check\n  tcp-check expect rstring ^ws-[abc]\\ ${peer}\\ [0-9]+` : '';
  const haproxy = await startHaproxy(t, ['front'], (p) => `
frontend fe
  mode tcp
  bind ${bracket}:${p.front}
  default_backend be
backend be
  mode tcp${check}
  server ringlb ${bracket}:${ringlb.port} ${directive}${checks ? ' check inter 100ms' : ''}
`);
  return { backends, config: validateConfig(config), haproxy, ringlb, front: haproxy.ports.front! };
}

type Front = Awaited<ReturnType<typeof haproxyInFront>>;

/** Each client saw its own address and port, routed as `lookup` says, its bytes intact. */
function assertVisits(t: Test, visits: readonly Visit[], expected: ReadonlyArray<string | null>): void {
  t.same(
    visits.map((v) => v.answer),
    visits.map((v, i) => `${expected[i]} ${v.ip} ${v.localPort}`),
    'each client reached the backend lookup names for its address, which decoded the address and port HAProxy sent',
  );
  t.same(visits.map((v) => v.echo), visits.map((v) => `payload from ${v.ip}`), 'bytes right behind the header arrived intact');
}

/** HAProxy's checks reached ringlb with a header that carries no client, routed by the connection's own address. */
async function assertChecksRoutedByPeer(t: Test, run: Front, peer: string): Promise<void> {
  const [home] = lookupAll(run.config, [peer]);
  const fromPeer = (b: DecodingBackend): number => b.headers.filter((h) => h.addresses?.source === peer).length;
  const homeBackend = run.backends.find((b) => b.id === home)!;
  await waitFor(() => fromPeer(homeBackend) >= 3, `3 of HAProxy's health checks to reach ${home}`);
  t.same(
    Object.fromEntries(run.backends.map((b) => [b.id, fromPeer(b) > 0])),
    Object.fromEntries(run.backends.map((b) => [b.id, b.id === home])),
    `HAProxy's checks were routed by ${peer} to its home ${home} only`,
  );
  const server = (await run.haproxy.stats()).get('be/ringlb')!;
  t.same([server.status, server.check_status], ['UP', 'L7OK'], 'HAProxy sees ringlb up, by the answer through it');
}

/**
 * HAProxy behind ringlb: an `accept-proxy` frontend on `host` that answers every HTTP request
 * with the source and destination it decoded from ringlb's header (`lf-string`, HAProxy 2.2+).
 */
async function haproxyBehind(t: Test, host: string, version: 'v1' | 'v2') {
  const bracket = host.includes(':') ? `[${host}]` : host;
  const haproxy = await startHaproxy(t, ['pp'], (p) => `
frontend fe
  mode http
  bind ${bracket}:${p.pp} accept-proxy
  http-request return status 200 content-type text/plain lf-string "%[src] %[src_port] %[dst] %[dst_port]"
`);
  const ringlb = await startDaemon(t, {
    listen: { host, port: 0 },
    backends: [{ id: 'haproxy', host, port: haproxy.ports.pp, proxyProtocol: version }],
    healthCheck: { type: 'tcp', intervalMs: 100, timeoutMs: 1000, rise: 2, fall: 2 },
  });
  return { haproxy, ringlb };
}

/** One HTTP/1.1 request from `ip` through ringlb: the status line, the body and the client's port. */
async function httpFrom(t: Test, host: string, port: number, ip: string): Promise<{ status: string; body: string; localPort: number }> {
  const client = await Client.dial(t, host, port, ip);
  client.socket.write('GET / HTTP/1.1\r\nHost: ringlb.test\r\nConnection: close\r\n\r\n');
  const text = (await client.rest()).toString('latin1');
  const split = text.indexOf('\r\n\r\n');
  return { status: text.slice(0, text.indexOf('\r\n')), body: text.slice(split + 4), localPort: client.socket.localPort! };
}

/**
 * ringlb's checks were accepted by HAProxy: its frontend counted `requests` + at least 5 more
 * sessions (each check is one, and nothing else connects), every connection it accepted became
 * a session (a header HAProxy rejects counts a connection and no session), and ringlb still has
 * the backend up.
 */
async function assertChecksAccepted(t: Test, haproxy: Haproxy, adminUrl: string, requests: number): Promise<void> {
  let fe: Record<string, string> = {};
  try {
    await waitFor(async () => {
      fe = (await haproxy.stats()).get('fe/FRONTEND')!;
      return Number(fe.stot) >= requests + 5 && fe.conn_tot === fe.stot;
    }, 'five of ringlb health checks accepted by HAProxy');
  } catch (err) {
    t.fail(`${(err as Error).message}: connections ${fe.conn_tot}, sessions ${fe.stot}; HAProxy logged ${JSON.stringify(haproxy.logs.slice(-5))}`);
    return;
  }
  t.pass(`HAProxy made a session of every connection, ${Number(fe.stot) - requests} of them checks`);
  const { body } = await adminGet(`${adminUrl}/metrics`);
  t.equal(metricValue(body, 'ringlb_backend_up{backend="haproxy"}'), 1, 'ringlb keeps the accept-proxy backend up');
}

const missing = haproxyMissing();
if (missing !== null) {
  t.plan(0, missing);
} else {
  const ips = Array.from({ length: 40 }, (_, i) => `127.3.0.${i + 1}`);

  for (const directive of ['send-proxy', 'send-proxy-v2']) {
    t.test(`HAProxy in front (${directive}): the backend sees each client, routed by its address`, async (t) => {
      const run = await haproxyInFront(t, '127.0.0.1', directive, true);
      const expected = lookupAll(run.config, ips);
      t.ok(new Set(expected).size >= 2, `the 40 clients spread over several backends: ${JSON.stringify(tally(expected.map(String)))}`);
      assertVisits(t, await Promise.all(ips.map((ip) => visit(t, '127.0.0.1', run.front, ip))), expected);
      await assertChecksRoutedByPeer(t, run, '127.0.0.1');
      const { active: _inFlight, ...refused } = await ringlbCounts(run.ringlb.adminUrl, IDS);
      t.same(refused, NONE_REFUSED, 'ringlb refused none of the clients and checks');
    });
  }

  t.test('HAProxy in front (send-proxy-v2): 1 MiB right behind the header comes back byte for byte', async (t) => {
    const run = await haproxyInFront(t, '127.0.0.1', 'send-proxy-v2', false);
    const client = await Client.dial(t, '127.0.0.1', run.front, '127.3.1.1');
    const data = randomBytes(1 << 20);
    client.socket.write(data);
    const [home] = lookupAll(run.config, ['127.3.1.1']);
    t.equal(await client.line(), `${home} 127.3.1.1 ${client.socket.localPort}`, 'the backend decoded the client');
    t.equal(sha256(await client.bytes(data.length)), sha256(data), 'the echo is the same 1 MiB');
  });

  // A client that closes its side at once (a probe, an impatient user): HAProxy sends the header
  // and the FIN right behind it. The half-close policy (src/splice.ts) owes the backend that FIN,
  // so the backend answers and ends, and the pair closes. (HAProxy itself may give up on a client
  // gone before its server connection is up: that client sees the end and no answer.)
  // Guards issue 8 §6: found here, a FIN that came during the connect stage was lost.
  t.test('HAProxy in front (send-proxy): clients that half-close at once get the end, and no pair stays open', async (t) => {
    const run = await haproxyInFront(t, '127.0.0.1', 'send-proxy', false);
    const quick = Array.from({ length: 20 }, (_, i) => `127.3.2.${i + 1}`);
    const expected = lookupAll(run.config, quick);
    const outcomes = await Promise.all(
      quick.map(async (ip, i) => {
        const client = await Client.dial(t, '127.0.0.1', run.front, ip);
        const answer = `${expected[i]} ${ip} ${client.socket.localPort}\n`;
        client.socket.end();
        const text = await client.rest(5_000).then((b) => b.toString('latin1'), () => null);
        return text === null ? 'no end within 5 s' : text === '' || text === answer ? 'ended' : `wrong answer ${JSON.stringify(text)}`;
      }),
    );
    t.same(tally(outcomes), { ended: quick.length }, 'every client saw the end of its connection, after the right answer if any');
    // Closing takes a few turns of both event loops after the clients saw their end.
    await waitFor(async () => (await ringlbCounts(run.ringlb.adminUrl, IDS)).active === 0, 'no pair open', 3_000).catch(() => {});
    t.same(await ringlbCounts(run.ringlb.adminUrl, IDS), { ...NONE_REFUSED, active: 0 }, 'ringlb refused none, and no pair is left open');
  });

  for (const version of ['v1', 'v2'] as const) {
    t.test(`HAProxy behind (proxyProtocol ${version}): it decodes each client, and accepts ringlb's checks`, async (t) => {
      const { haproxy, ringlb } = await haproxyBehind(t, '127.0.0.1', version);
      const clients = Array.from({ length: 10 }, (_, i) => `127.4.0.${i + 1}`);
      const answers = await Promise.all(clients.map((ip) => httpFrom(t, '127.0.0.1', ringlb.port, ip)));
      t.same(answers.map((a) => a.status), clients.map(() => 'HTTP/1.1 200 OK'), 'HAProxy answered every request');
      t.same(
        answers.map((a) => a.body),
        answers.map((a, i) => `${clients[i]} ${a.localPort} 127.0.0.1 ${ringlb.port}`),
        'HAProxy decoded each client address and port, and the ringlb address it reached',
      );
      await assertChecksAccepted(t, haproxy, ringlb.adminUrl, clients.length);
    });
  }

  const ipv6 = (await ipv6Loopback()) ? false : '::1 is not available here: no IPv6 loopback';
  t.test('IPv6 (::1), both ways', { skip: ipv6 }, async (t) => {
    t.test('HAProxy in front over IPv6 (send-proxy, a TCP6 line)', async (t) => {
      const run = await haproxyInFront(t, '::1', 'send-proxy', true);
      assertVisits(t, [await visit(t, '::1', run.front, '::1')], lookupAll(run.config, ['::1']));
      await assertChecksRoutedByPeer(t, run, '::1');
    });
    t.test('HAProxy behind over IPv6 (proxyProtocol v2, AF_INET6)', async (t) => {
      const { haproxy, ringlb } = await haproxyBehind(t, '::1', 'v2');
      const answer = await httpFrom(t, '::1', ringlb.port, '::1');
      t.equal(answer.status, 'HTTP/1.1 200 OK', 'HAProxy answered');
      t.equal(answer.body, `::1 ${answer.localPort} ::1 ${ringlb.port}`, 'HAProxy decoded the IPv6 client and the ringlb address');
      await assertChecksAccepted(t, haproxy, ringlb.adminUrl, 1);
    });
  });
}
