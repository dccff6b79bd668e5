// A burst of clients, as a reconnect storm brings (issue 13): libuv accepts them together in
// one turn of the event loop, and every one must be spliced and counted.

import t from 'tap';
import { adminGet, backendEntry, clientIp, connectFrom, metricValue, readLine, startBackend, startDaemon, waitFor } from '../helpers/index.js';

t.test('issue 13: 300 clients connecting at once are all spliced to their backend', async (t) => {
  const backend = await startBackend(t, 'ws-a');
  const { port, adminUrl } = await startDaemon(t, { backends: [backendEntry(backend)] });
  const clients = await Promise.all(Array.from({ length: 300 }, (_, i) => connectFrom(port, clientIp(i))));
  t.teardown(() => clients.forEach((c) => c.destroy()));
  const lines = await Promise.all(clients.map((c) => readLine(c)));
  t.equal(lines.filter((l) => l === 'ws-a').length, 300, 'each client got the greeting of its backend');
  await waitFor(() => backend.sockets.size === 300, '300 backend connections');
  const metrics = (await adminGet(`${adminUrl}/metrics`)).body;
  t.equal(metricValue(metrics, 'ringlb_connections_total{backend="ws-a"}'), 300, 'connections_total counts all of them');
  t.equal(metricValue(metrics, 'ringlb_connections_active{backend="ws-a"}'), 300);
});
