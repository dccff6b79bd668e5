// `ringlb demo` (what `npm start` runs): backends, balancer, simulated clients, the landing
// table, a live ring change, and a balancer anyone can connect to until Ctrl-C.

import { spawn } from 'node:child_process';
import t from 'tap';
import { WebSocket } from 'ws';
import { BIN, collect, waitFor } from '../helpers/index.js';

t.test('the demo shows where 300 clients landed, what adding a backend moves, and keeps serving', async (t) => {
  const child = spawn(process.execPath, [BIN, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const exited = collect(child);
  await waitFor(() => out.includes('running until Ctrl-C'), 'the demo to be ready', 30_000);

  const rows = [...out.matchAll(/^(ws-[abc]) +(\d+) +([\d.]+)%$/gm)];
  t.same(rows.map((r) => r[1]), ['ws-a', 'ws-b', 'ws-c'], 'a row per backend');
  t.equal(rows.reduce((sum, r) => sum + Number(r[2]), 0), 300, 'the rows count all 300 clients');
  t.ok(rows.every((r) => Number(r[2]) > 0), 'every backend got clients');
  t.match(out, /reconnected to the same backend: 300 of 300/);
  const moved = /observed: (\d+) of 300 clients moved \([\d.]+%\), to (.*)$/m.exec(out);
  t.ok(moved, 'the ring change is reported');
  t.equal(moved?.[2], 'ws-d', 'every client that moved went to the new backend');
  t.ok(Number(moved?.[1]) > 30 && Number(moved?.[1]) < 120, `about a quarter moved (${moved?.[1]})`);

  const url = /^balancer +(ws:\/\/\S+)/m.exec(out)?.[1];
  t.ok(url, 'the balancer address is printed');
  const greeting = await new Promise<string>((resolve, reject) => {
    const ws = new WebSocket(url!);
    ws.once('message', (data) => {
      resolve(String(data));
      ws.close();
    });
    ws.once('error', reject);
  });
  t.match(greeting, /^hello from ws-[abcd]$/, 'a WebSocket client gets a greeting through the balancer');

  // The status page's address is printed, it answers, and it shows the 300 held clients.
  const status = /^status +(http:\/\/\S+\/)\s/m.exec(out)?.[1];
  t.ok(status, 'the status page address is printed');
  const page = await fetch(status!);
  t.equal(page.status, 200);
  t.match(page.headers.get('content-type'), /^text\/html/);
  const ring = (await (await fetch(`${status}ring`)).json()) as { backends: Array<{ active: number }> };
  t.equal(ring.backends.reduce((n, b) => n + b.active, 0), 300, 'the demo clients are held open, for the page to show');

  child.kill('SIGINT');
  const result = await exited;
  t.equal(result.code, 0, 'Ctrl-C ends the demo cleanly');
  t.equal(result.stderr, '', 'nothing on stderr');
});
