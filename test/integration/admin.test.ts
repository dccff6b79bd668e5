// The admin endpoint: /ring, /healthz, /metrics agree with each other and with the config.

import t from 'tap';
import { configHash, routingHash, validateConfig } from '../../src/config.js';
import { adminGet, backendEntry, clientIp, metricValue, startBackend, startDaemon, whoAnswers } from '../helpers/index.js';

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
