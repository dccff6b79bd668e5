// Held WebSocket clients for the disruption benchmark, in a child process of their own (forked
// by the harness): client i connects from its own loopback source address, waits for the
// backend's greeting (its id) and holds the connection. Like a real client with a reconnect
// loop, it reconnects the moment it is closed, and keeps a log of every close and every
// greeting with its time (Date.now(), comparable with the harness's clock) and backend.
//
// Argument: JSON {target: {host, port}, count, sourcePrefix, connectTimeoutMs, hardLimitMs}.
// Sends {held, failed, firstError, tally} once `count` clients are greeted (or the deadline
// passed). IPC commands:
//   {cmd: 'mark'}               forget the log so far; answers {marked: time}
//   {cmd: 'recycle', windowMs}  "max connection lifetime" emulation: every client open now
//                               closes its own connection at a uniformly random moment of the
//                               next windowMs (and reconnects, like any other close)
//   {cmd: 'report'}             answers {events, tally, retries}
// Log entries: ['close', t, client, backend, byClient (0|1)] and
//              ['open', t, client, backend, previousBackend, closedAt].

import WebSocket from 'ws';

const job = JSON.parse(process.argv[2]);
const url = `ws://${job.target.host}:${job.target.port}/`;
/** Distinct loopback source addresses: `${prefix}.X.Y`, 250 per X. */
const sourceFor = (i) => `${job.sourcePrefix}.${Math.floor(i / 250) % 256}.${1 + (i % 250)}`;
/** A connect that failed before the greeting is tried again after this long (not a close). */
const RETRY_MS = 100;

process.on('disconnect', () => process.exit(0));
// A hard stop whatever happens: the harness kills us too, this is the second line.
setTimeout(() => process.exit(3), job.hardLimitMs ?? 900_000).unref();

let events = [];
let retries = 0;
let firstError = null;
/** Per client: the socket now, the backend that greeted it, when it was last closed. */
const clients = Array.from({ length: job.count }, () => ({ ws: null, backend: null, previous: null, closedAt: null, byClient: false }));

/** Connect client `i`; resolves when it is greeted (the first time only matters to `openAll`). */
function connect(i) {
  return new Promise((resolve) => {
    const c = clients[i];
    const ws = new WebSocket(url, { localAddress: sourceFor(i), perMessageDeflate: false, handshakeTimeout: job.connectTimeoutMs });
    c.ws = ws;
    let greeted = false;
    ws.on('error', (err) => {
      firstError ??= String(err?.message ?? err);
    });
    ws.once('message', (data) => {
      greeted = true;
      c.backend = String(data);
      events.push(['open', Date.now(), i, c.backend, c.previous, c.closedAt]);
      resolve();
    });
    ws.once('close', () => {
      if (!greeted) {
        // Refused or cut before the greeting: not a held connection, so not a close; try again.
        retries++;
        setTimeout(() => void connect(i).then(resolve), RETRY_MS);
        return;
      }
      const now = Date.now();
      events.push(['close', now, i, c.backend, c.byClient ? 1 : 0]);
      c.previous = c.backend;
      c.backend = null;
      c.closedAt = now;
      c.byClient = false;
      void connect(i);
    });
  });
}

/** Open every client, at most `parallel` handshakes in flight, until the deadline. */
async function openAll(parallel) {
  const deadline = Date.now() + job.connectTimeoutMs;
  let next = 0;
  const lane = async () => {
    while (next < job.count && Date.now() < deadline) await connect(next++);
  };
  await Promise.race([Promise.all(Array.from({ length: parallel }, lane)), new Promise((r) => setTimeout(r, job.connectTimeoutMs))]);
}

const tally = () => {
  const counts = {};
  for (const c of clients) if (c.backend !== null) counts[c.backend] = (counts[c.backend] ?? 0) + 1;
  return counts;
};

await openAll(100);
const held = clients.filter((c) => c.backend !== null).length;
process.send({ held, failed: job.count - held, firstError, tally: tally() });

process.on('message', (message) => {
  switch (message?.cmd) {
    case 'mark':
      events = [];
      retries = 0;
      process.send({ marked: Date.now() });
      break;
    case 'recycle':
      for (const c of clients) {
        const { ws } = c;
        if (ws === null || c.backend === null) continue;
        setTimeout(() => {
          if (c.ws !== ws || c.backend === null) return; // closed meanwhile: its new connection is young
          c.byClient = true;
          ws.terminate();
        }, Math.random() * message.windowMs);
      }
      break;
    case 'report':
      process.send({ events, tally: tally(), retries });
      break;
  }
});
