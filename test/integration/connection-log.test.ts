// The connection log (log.connections, issue 12 item 3): one JSON line per closed connection with
// the client (PROXY-decoded where there was a header), listener, backend, start, duration, bytes
// each way and the cause; nothing per connection at info when it is off.

import t from 'tap';
import { encodeProxyHeader } from '../../src/proxy-protocol.js';
import { backendEntry, clientIp, connectFrom, readLine, roundTrip, startBackend, startDaemon, waitFor } from '../helpers/index.js';

t.test('one line per closed connection, with who, where, how long, how much and why', async (t) => {
  const backend = await startBackend(t, 'ws-a');
  const td = await startDaemon(t, {
    listen: [
      { host: '127.0.0.1', port: 0 },
      { host: '127.0.0.2', port: 0, acceptProxy: ['127.0.0.1'] },
    ],
    backends: [backendEntry(backend)],
    healthCheck: { type: 'none' },
    log: { connections: true },
  });
  const plain = await connectFrom(td.port, clientIp(13_000));
  t.equal(await readLine(plain), 'ws-a');
  t.equal(await roundTrip(plain, 'hello'), 'hello');
  plain.end();
  await waitFor(() => td.logs.some((l) => l.msg === 'connection closed'), 'the first line');
  const first = td.logs.find((l) => l.msg === 'connection closed')!;
  t.match(first, {
    level: 30,
    client: new RegExp(`^${clientIp(13_000).replace(/\./g, '\\.')}:\\d+$`),
    listen: `127.0.0.1:${td.port}`,
    backend: 'ws-a',
    backendAddress: `127.0.0.1:${backend.port}`,
    toBackend: 6,
    toClient: 5 + 6,
    cause: 'client',
  });
  t.ok(Date.parse(first.start as string) <= Date.now(), 'the start is an ISO time');
  t.type(first.durationMs, 'number');

  // Through the proxied listener: the client is the address the header names.
  const { port: proxied } = td.daemon.listenAddresses[1]!;
  const { Socket } = await import('node:net');
  const viaBalancer = new Socket();
  await new Promise<void>((resolve) => viaBalancer.connect({ host: '127.0.0.2', port: proxied, localAddress: '127.0.0.1' }, resolve));
  viaBalancer.write(encodeProxyHeader('v1', { family: 4, source: '203.0.113.5', sourcePort: 4444, destination: '198.51.100.1', destinationPort: 443 }));
  t.equal(await readLine(viaBalancer), 'ws-a');
  viaBalancer.resetAndDestroy();
  await waitFor(() => td.logs.filter((l) => l.msg === 'connection closed').length === 2, 'the second line');
  t.match(td.logs.filter((l) => l.msg === 'connection closed')[1], {
    client: '203.0.113.5:4444',
    listen: `127.0.0.2:${proxied}`,
    cause: 'client_error',
  });
});

t.test('off by default: no line per connection at info', async (t) => {
  const backend = await startBackend(t, 'ws-a');
  const td = await startDaemon(t, { backends: [backendEntry(backend)], healthCheck: { type: 'none' } });
  for (let i = 0; i < 5; i++) {
    const s = await connectFrom(td.port, clientIp(13_100 + i));
    await readLine(s);
    s.destroy();
  }
  await waitFor(() => td.daemon.connections.size === 0, 'the connections to end');
  t.equal(td.logs.filter((l) => l.msg === 'connection closed').length, 0);
  t.equal(td.logs.filter((l) => l.level >= 30 && /connect/.test(l.msg)).length, 0, 'nothing per connection at info or above');
});
