// WebSocket backends for the disruption benchmark, all in one child process (forked by the
// harness): a `ws` server per backend on 127.0.0.1 that greets every connection with its id as
// the first text message, so a client knows which backend it reached, then holds it.
// Argument: JSON {backends: [{id, port}]}. IPC: sends {ready: true} once every port listens;
// {cmd: 'open'} -> {open: {id: connections open now}}. Exits when the harness goes away.

import { WebSocketServer } from 'ws';

const { backends } = JSON.parse(process.argv[2]);
const open = Object.fromEntries(backends.map((b) => [b.id, 0]));

await Promise.all(
  backends.map(
    ({ id, port }) =>
      new Promise((resolve, reject) => {
        // No compression and no client tracking: thousands of idle sockets should cost little.
        const wss = new WebSocketServer({ host: '127.0.0.1', port, backlog: 4096, perMessageDeflate: false, clientTracking: false });
        wss.once('listening', resolve);
        wss.once('error', reject);
        wss.on('connection', (ws) => {
          open[id]++;
          ws.on('error', () => {});
          ws.on('close', () => open[id]--);
          ws.send(id);
        });
      }),
  ),
);
process.send({ ready: true });
process.on('message', (message) => {
  if (message?.cmd === 'open') process.send({ open });
});
process.on('disconnect', () => process.exit(0));
