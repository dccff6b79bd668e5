// Held WebSocket clients of the reconnect storm (bench/storm.mjs), a process of its own (one
// per 4,000 clients: each holds one descriptor per client). Client i connects from its own
// loopback source address, waits for the backend's greeting (its id) and holds the connection,
// sending a ping (16 bytes: the send time, echoed by the backend) every `pingMs`, the clients
// spread evenly over that period. Like a real client with a reconnect loop it reconnects the
// moment it is closed; a connect that fails before the greeting is tried again after RETRY_MS.
//
// Argument: JSON {target: {host, port}, from, count, sourcePrefix, pingMs, connectTimeoutMs,
// hardLimitMs}. Sends {held, failed, firstError} once every client is greeted (or the deadline
// passed). IPC commands:
//   {cmd: 'record'}  start recording: closes, re-greetings and round trips from now on
//   {cmd: 'status'}  answers {status: {greeted, closed, pending}} (pending: closed since
//                    'record' and not greeted again yet)
//   {cmd: 'report'}  answers {report: {closes: [[i, t]], opens: [[i, t, backend]],
//                    rtts: [[i, sentAt, ms]], retries}}; t and sentAt are Date.now() values

import WebSocket from 'ws';

const job = JSON.parse(process.argv[2]);
const url = `ws://${job.target.host}:${job.target.port}/`;
/** Distinct loopback source addresses: `${prefix}.X.Y`, 250 per X (client numbers are global). */
const sourceFor = (i) => `${job.sourcePrefix}.${Math.floor(i / 250) % 256}.${1 + (i % 250)}`;
const RETRY_MS = 100;
const TICK_MS = 10;

process.on('disconnect', () => process.exit(0));
setTimeout(() => process.exit(3), job.hardLimitMs ?? 600_000).unref();

let recording = false;
let retries = 0;
let firstError = null;
const closes = [];
const opens = [];
const rtts = [];
/** Per client: the socket now and whether its backend greeted it. */
const clients = Array.from({ length: job.count }, () => ({ ws: null, greeted: false, closedAt: 0 }));

function connect(k) {
  return new Promise((resolve) => {
    const c = clients[k];
    const ws = new WebSocket(url, { localAddress: sourceFor(job.from + k), perMessageDeflate: false, handshakeTimeout: job.connectTimeoutMs });
    ws.binaryType = 'nodebuffer';
    c.ws = ws;
    c.greeted = false;
    ws.on('error', (err) => {
      firstError ??= String(err?.message ?? err);
    });
    ws.on('message', (data, isBinary) => {
      if (!c.greeted) {
        c.greeted = true;
        if (recording && c.closedAt > 0) opens.push([k, Date.now(), String(data)]);
        resolve();
        return;
      }
      if (isBinary && recording && data.length === 16) rtts.push([k, data.readDoubleLE(8), performance.now() - data.readDoubleLE(0)]);
    });
    ws.once('close', () => {
      if (!c.greeted) {
        retries++;
        setTimeout(() => void connect(k).then(resolve), RETRY_MS);
        return;
      }
      c.greeted = false;
      if (recording) {
        c.closedAt = Date.now();
        closes.push([k, c.closedAt]);
      }
      void connect(k);
    });
  });
}

// Pings: client k pings on tick k mod (pingMs / TICK_MS), so the load is even over the period.
const slots = Math.max(1, Math.round(job.pingMs / TICK_MS));
let tick = 0;
setInterval(() => {
  const slot = tick++ % slots;
  for (let k = slot; k < clients.length; k += slots) {
    const c = clients[k];
    if (!c.greeted || c.ws.readyState !== WebSocket.OPEN) continue;
    const ping = Buffer.allocUnsafe(16); // ws may still hold the previous one
    ping.writeDoubleLE(performance.now(), 0);
    ping.writeDoubleLE(Date.now(), 8);
    c.ws.send(ping);
  }
}, TICK_MS);

const deadline = Date.now() + job.connectTimeoutMs;
let next = 0;
const lane = async () => {
  while (next < job.count && Date.now() < deadline) await connect(next++);
};
await Promise.race([Promise.all(Array.from({ length: 100 }, lane)), new Promise((r) => setTimeout(r, job.connectTimeoutMs))]);
const held = clients.filter((c) => c.greeted).length;
process.send({ held, failed: job.count - held, firstError });

process.on('message', (message) => {
  switch (message?.cmd) {
    case 'record':
      recording = true;
      break;
    case 'status': {
      let greeted = 0;
      let pending = 0;
      let closed = 0;
      for (const c of clients) {
        if (c.greeted) greeted++;
        if (c.closedAt > 0) {
          closed++;
          if (!c.greeted) pending++;
        }
      }
      process.send({ status: { greeted, closed, pending } });
      break;
    }
    case 'report':
      process.send({ report: { closes, opens, rtts, retries } });
      break;
  }
});
