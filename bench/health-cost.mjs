// CPU cost of health checks (issue 10's figure): CPU time of the checking process per 1,000
// checks, for tcp and websocket checks. Usage: npm run build && node bench/health-cost.mjs [checkers=1000] [seconds=10]
// The checkers run in this process; a ws WebSocketServer and a plain TCP server run in a child
// process, so the figure is the checker's side only (what a ringlb process pays).
import { fork } from 'node:child_process';
import net from 'node:net';
import { WebSocketServer } from 'ws';
import { HealthChecker } from '../dist/health.js';

if (process.argv[2] === 'peer') {
  let accepted = 0;
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  wss.on('connection', () => accepted++);
  const tcp = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted++;
    s.on('error', () => {});
    s.on('end', () => s.end());
    s.resume();
  });
  await Promise.all([new Promise((r) => wss.once('listening', r)), new Promise((r) => tcp.listen(0, '127.0.0.1', r))]);
  process.send({ ws: wss.address().port, tcp: tcp.address().port });
  process.on('message', () => {
    process.send({ accepted });
    accepted = 0;
  });
} else {
  const checkers = Number(process.argv[2] ?? 1000);
  const seconds = Number(process.argv[3] ?? 10);
  const peer = fork(new URL(import.meta.url).pathname, ['peer']);
  const ports = await new Promise((r) => peer.once('message', r));
  const counted = () => new Promise((r) => { peer.once('message', (m) => r(m.accepted)); peer.send('count'); });
  for (const type of ['tcp', 'websocket']) {
    const port = type === 'tcp' ? ports.tcp : ports.ws;
    let transitions = 0;
    const options = { intervalMs: 1000, timeoutMs: 1000, rise: 2, fall: 3, preamble: null, websocket: type === 'websocket' ? { path: '/', hostHeader: null } : null };
    const all = Array.from({ length: checkers }, () => new HealthChecker('127.0.0.1', port, options, true, () => transitions++));
    for (const c of all) c.start();
    await new Promise((r) => setTimeout(r, 1500)); // every checker past its first offset
    await counted();
    const cpu0 = process.cpuUsage();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const cpu = process.cpuUsage(cpu0);
    const checks = await counted();
    for (const c of all) c.stop();
    const ms = (cpu.user + cpu.system) / 1000;
    console.log(`${type}: ${checks} checks in ${seconds} s, ${ms.toFixed(0)} ms CPU (user ${(cpu.user / 1000).toFixed(0)}, system ${(cpu.system / 1000).toFixed(0)}) = ${((ms / checks) * 1000).toFixed(0)} ms CPU per 1,000 checks; ${transitions} transitions`);
    await new Promise((r) => setTimeout(r, 1500));
  }
  peer.kill();
}
