// The Node backends, two of each kind, in one child process (forked by the harness, pinned with
// it to the load core). Argument: JSON {ws:[p,p], hold:[p,p], http?:[p,p], sink?:[p,p]}.
//   ws    WebSocket echo servers: every message is sent back. By default a light RFC 6455
//         implementation (handshake by node:http 'upgrade', frames answered in a few lines, so the
//         load core is not the bottleneck); with wsImpl 'lib' the ws package (no compression).
//   hold  TCP servers for held connections: echo the first chunk (so the client knows the whole
//         path is open), then stay idle.
//   http  (only when nginx is not installed) node:http answering every request "ok\n".
//   sink  (only when iperf3 is not installed) TCP sinks counting the bytes they receive.
// IPC: {cmd:'counters'} -> {sinkBytes, holdOpen: [a, b], wsOpen: [a, b]} (connections open now,
// per backend). Exits when the harness goes away.

import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { WebSocketServer } from 'ws';

const ports = JSON.parse(process.argv[2]);
let sinkBytes = 0;
const holdOpen = (ports.hold ?? []).map(() => 0);
const wsOpen = (ports.ws ?? []).map(() => 0);

const listen = (server, port) =>
  new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host: '127.0.0.1', backlog: 4096 }, resolve);
  });

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC11B65';

/**
 * The light WebSocket echo (RFC 6455 frames, no extensions): answer every complete frame in
 * `buffer` (data frames echoed unmasked, ping -> pong, close -> close and end) and return the
 * incomplete rest, or null.
 */
function serveFrames(socket, buffer) {
  let at = 0;
  while (buffer.length - at >= 2) {
    const b0 = buffer[at];
    const b1 = buffer[at + 1];
    let length = b1 & 0x7f;
    let offset = at + 2;
    if (length === 126) {
      if (buffer.length - at < 4) break;
      length = buffer.readUInt16BE(at + 2);
      offset += 2;
    } else if (length === 127) {
      if (buffer.length - at < 10) break;
      length = Number(buffer.readBigUInt64BE(at + 2));
      offset += 8;
    }
    const masked = (b1 & 0x80) !== 0;
    const maskAt = offset;
    if (masked) offset += 4;
    if (buffer.length < offset + length) break;
    const header = length < 126 ? 2 : length < 65536 ? 4 : 10;
    const reply = Buffer.allocUnsafe(header + length);
    const opcode = b0 & 0x0f;
    reply[0] = opcode === 0x9 ? 0x8a : b0; // ping -> pong; everything else echoed as it came
    if (length < 126) reply[1] = length;
    else if (length < 65536) {
      reply[1] = 126;
      reply.writeUInt16BE(length, 2);
    } else {
      reply[1] = 127;
      reply.writeBigUInt64BE(BigInt(length), 2);
    }
    for (let i = 0; i < length; i++) reply[header + i] = masked ? buffer[offset + i] ^ buffer[maskAt + (i & 3)] : buffer[offset + i];
    at = offset + length;
    if (opcode === 0xa) continue; // a pong needs no answer
    socket.write(reply);
    if (opcode === 0x8) {
      socket.end();
      return null;
    }
  }
  return at < buffer.length ? buffer.subarray(at) : null;
}

const servers = [];
for (const [index, port] of (ports.ws ?? []).entries()) {
  const server = http.createServer((req, res) => res.writeHead(426).end());
  if (ports.wsImpl === 'lib') {
    const wss = new WebSocketServer({ server, perMessageDeflate: false, clientTracking: false });
    wss.on('connection', (ws) => {
      wsOpen[index]++;
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      ws.on('error', () => {});
      ws.on('close', () => wsOpen[index]--);
    });
  } else {
    server.on('upgrade', (req, socket, head) => {
      const key = req.headers['sec-websocket-key'];
      socket.on('error', () => {});
      if (typeof key !== 'string' || req.headers.upgrade?.toLowerCase() !== 'websocket') {
        socket.destroy();
        return;
      }
      const accept = createHash('sha1').update(key + WS_GUID).digest('base64');
      socket.setNoDelay(true);
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      wsOpen[index]++;
      socket.on('close', () => wsOpen[index]--);
      // node:http sockets are allowHalfOpen: answer the client's FIN, or the socket stays open.
      socket.on('end', () => socket.end());
      let pending = head.length > 0 ? serveFrames(socket, head) : null;
      socket.on('data', (chunk) => {
        pending = serveFrames(socket, pending ? Buffer.concat([pending, chunk]) : chunk);
      });
    });
  }
  servers.push(listen(server, port));
}
for (const [index, port] of (ports.hold ?? []).entries()) {
  const server = net.createServer((socket) => {
    holdOpen[index]++;
    socket.on('error', () => {});
    socket.once('data', (chunk) => socket.write(chunk));
    socket.on('close', () => holdOpen[index]--);
  });
  servers.push(listen(server, port));
}
for (const port of ports.http ?? []) {
  const body = Buffer.from('ok\n');
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  });
  server.keepAliveTimeout = 3_600_000;
  server.headersTimeout = 3_600_000 + 1000;
  server.requestTimeout = 0;
  servers.push(listen(server, port));
}
for (const port of ports.sink ?? []) {
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.on('data', (chunk) => (sinkBytes += chunk.length));
  });
  servers.push(listen(server, port));
}

await Promise.all(servers);
process.send({ ready: true });
process.on('message', (message) => {
  if (message?.cmd === 'counters') process.send({ counters: { sinkBytes, holdOpen, wsOpen } });
});
process.on('disconnect', () => process.exit(0));
