// One WebSocket backend of the reconnect storm (bench/storm.mjs), a process of its own so that
// the storm can kill it outright (SIGKILL: the kernel closes its sockets, as a crash would).
// It greets every connection with its id (so a client knows where it landed) and echoes every
// message. Argument: JSON {id, port}. Sends {ready: true} once listening; {cmd: 'open'} ->
// {open: N}.

import { WebSocketServer } from 'ws';

const { id, port } = JSON.parse(process.argv[2]);
let open = 0;
// No compression and no client tracking: thousands of idle sockets should cost little.
const wss = new WebSocketServer({ host: '127.0.0.1', port, backlog: 4096, perMessageDeflate: false, clientTracking: false });
wss.on('connection', (ws) => {
  open++;
  ws.on('error', () => {});
  ws.on('close', () => open--);
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.send(id);
});
wss.once('listening', () => process.send({ ready: true }));
wss.once('error', (err) => {
  process.stderr.write(`storm backend ${id}: ${err.message}\n`);
  process.exit(1);
});
process.on('message', (message) => {
  if (message?.cmd === 'open') process.send({ open });
});
process.on('disconnect', () => process.exit(0));
