// How long a reload takes with many backends and many open connections (issue 3's figure).
// Usage: npm run build && node bench/reload-time.mjs [backends=1000] [connections=9000]
// The daemon runs in this process; the echo backend and the clients run in a child process,
// so each process stays under the file-descriptor limit (the daemon holds 2 sockets per client).
import { fork } from 'node:child_process';
import net from 'node:net';
import { pino } from 'pino';
import { validateConfig } from '../dist/config.js';
import { Daemon } from '../dist/daemon.js';

if (process.argv[2] === 'peer') {
  // Child: an echo backend, then `connections` clients from distinct 127.x source addresses.
  const echo = net.createServer((s) => { s.on('error', () => {}); s.pipe(s); });
  await new Promise((r) => echo.listen(0, '127.0.0.1', r));
  process.send({ backendPort: echo.address().port });
  process.once('message', async ({ port, connections }) => {
    const sockets = [];
    for (let i = 0; i < connections; i += 500) {
      await Promise.all(Array.from({ length: Math.min(500, connections - i) }, (_, k) => new Promise((resolve, reject) => {
        const j = i + k;
        const s = net.connect({ host: '127.0.0.1', port, localAddress: `127.2.${Math.floor(j / 250)}.${1 + (j % 250)}` }, resolve);
        s.on('error', reject);
        sockets.push(s);
      })));
    }
    process.send({ connected: sockets.length });
  });
} else {
  const backends = Number(process.argv[2] ?? 1000);
  const connections = Number(process.argv[3] ?? 9000);
  const peer = fork(new URL(import.meta.url).pathname, ['peer']);
  const { backendPort } = await new Promise((r) => peer.once('message', r));
  const config = (n) => validateConfig({
    listen: { host: '127.0.0.1', port: 0 },
    metrics: { host: '127.0.0.1', port: 0 },
    backends: Array.from({ length: n }, (_, i) => ({ id: `b${i}`, host: '127.0.0.1', port: backendPort })),
    healthCheck: { type: 'none' },
  });
  const daemon = await Daemon.start({ config: config(backends), logger: pino(), logLevel: 'warn' });
  peer.send({ port: daemon.listenAddresses[0].port, connections });
  await new Promise((r) => peer.once('message', r));
  while (daemon.proxy.open.size < connections) await new Promise((r) => setTimeout(r, 50));
  const times = [];
  let first;
  for (let round = 0; round < 7; round++) {
    const next = config(round % 2 === 0 ? backends + 1 : backends); // add one backend, then remove it
    const started = performance.now();
    const report = await daemon.reload(next);
    times.push(performance.now() - started);
    first ??= report;
  }
  times.sort((a, b) => a - b);
  console.log(JSON.stringify({
    backends,
    openConnections: daemon.proxy.open.size,
    reloadMs: { median: +times[3].toFixed(1), min: +times[0].toFixed(1), max: +times[6].toFixed(1) },
    firstReload: { moved: +first.moved.toFixed(4), misplaced: first.misplaced },
  }));
  peer.kill();
  await daemon.close();
}
