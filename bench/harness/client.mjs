// Load generators, forked by the harness (one process per measurement, on the load core).
// Argument: JSON job. Clients bind many 127.x.y.z source addresses so that a source-hashing
// proxy spreads them over both backends. Every phase is bounded by a deadline.
//
// Timed jobs (ws, http, bulk) run a warm-up, then report {phase:'start'} and, after
// `durationMs`, {phase:'end', result}; the harness reads the proxy's CPU time at both messages.
//   ws    `conns` WebSocket connections, each a closed loop of `size`-byte messages echoed back:
//         round trips/s and p50/p99 round-trip time. By default a light client (below); with
//         wsImpl 'lib' the ws package.
//   http  (fallback for wrk) `conns` HTTP/1.1 keep-alive loops, or with `close` one request per
//         connection (new connections per second): requests/s, p50/p99 latency.
//   bulk  (fallback for iperf3) `streams` TCP streams writing 64 KiB chunks as fast as they can;
//         the sink counts the bytes.
//   churn `rate` new connections per second (started every 10 ms, in 1/100 s batches, at most
//         `conns` in flight): each sends 6 bytes, waits for the echo and closes; counts those
//         completed and failed (for the connection log's cost, bench/log-cost.mjs).
// The hold job is driven over IPC: {cmd:'hold', count} opens connections (each sends 6 bytes and
// waits for the echo, so the proxy's backend side is open too) until `count` are held, and
// answers {held, failed}.

import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import WebSocket from 'ws';
import { quantileSorted } from './stats.mjs';

const job = JSON.parse(process.argv[2]);
const targets = job.targets; // [{host, port}], one for a proxy, two for direct (alternating)
const targetFor = (i) => targets[i % targets.length];
/** Distinct loopback source addresses: `${prefix}.X.Y`, 250 per X. */
const sourceFor = (i) => `${job.sourcePrefix}.${Math.floor(i / 250) % 256}.${1 + (i % 250)}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

process.on('disconnect', () => process.exit(0));
// A hard stop whatever happens: the harness kills us too, this is the second line.
setTimeout(() => process.exit(3), job.hardLimitMs ?? 120_000).unref();

/** Open `count` things with at most `parallel` attempts in flight, before `deadline`. */
async function openMany(count, parallel, deadline, openOne) {
  let next = 0;
  let failed = 0;
  let firstError = null;
  const lane = async () => {
    while (next < count && Date.now() < deadline) {
      const i = next++;
      try {
        await openOne(i);
      } catch (err) {
        failed++;
        firstError ??= String(err?.message ?? err);
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
  return { failed, firstError, notTried: count - next };
}

/** Latency collector: milliseconds, p50/p99 at the end. */
class Latencies {
  values = [];
  add(ms) {
    this.values.push(ms);
  }
  summary() {
    const sorted = Float64Array.from(this.values).sort();
    return { p50Ms: quantileSorted(sorted, 0.5), p99Ms: quantileSorted(sorted, 0.99), samples: sorted.length };
  }
}

/** Run warm-up then the measured window, calling `reset()` at its start; returns elapsed seconds. */
async function timed(reset) {
  await sleep(job.warmupMs);
  reset();
  const started = performance.now();
  process.send({ phase: 'start' });
  await sleep(job.durationMs);
  return (performance.now() - started) / 1000;
}

// ---------------------------------------------------------------------------------------------

/**
 * Closed-loop round trips over many connections: counts and latencies while measuring, and
 * the one way both WebSocket jobs start, time, stop and report a run.
 */
class RoundTripMeter {
  measuring = false;
  running = true;
  count = 0;
  lat = new Latencies();

  record(ms) {
    this.count++;
    this.lat.add(ms);
  }

  async run(sockets, opened, connectStarted, close) {
    if (sockets.length === 0) throw new Error(`no WebSocket connection opened: ${opened.firstError}`);
    const connectMs = performance.now() - connectStarted;
    for (const s of sockets) s.start();
    const seconds = await timed(() => {
      this.count = 0;
      this.lat = new Latencies();
      this.measuring = true;
    });
    this.measuring = false;
    this.running = false;
    const { count } = this;
    const result = { roundTrips: count, perSecond: count / seconds, seconds, conns: sockets.length, connectMs, failed: opened.failed + opened.notTried, firstError: opened.firstError, ...this.lat.summary() };
    for (const s of sockets) close(s);
    return result;
  }
}

async function wsJob() {
  const payload = Buffer.alloc(job.size, 0x61);
  const sockets = [];
  const meter = new RoundTripMeter();
  const connectDeadline = Date.now() + job.connectTimeoutMs;
  const connectStarted = performance.now();
  const opened = await openMany(job.conns, 200, connectDeadline, (i) =>
    new Promise((resolve, reject) => {
      const { host, port } = targetFor(i);
      const ws = new WebSocket(`ws://${host}:${port}/`, {
        perMessageDeflate: false,
        localAddress: sourceFor(i),
        handshakeTimeout: Math.max(1000, connectDeadline - Date.now()),
      });
      let sentAt = 0;
      ws.binaryType = 'nodebuffer';
      ws.once('open', () => {
        sockets.push(ws);
        resolve();
      });
      ws.on('error', reject); // after 'open' a no-op that keeps errors handled
      ws.on('message', () => {
        const now = performance.now();
        if (meter.measuring) {
          meter.record(now - sentAt);
        }
        if (meter.running) {
          sentAt = performance.now();
          ws.send(payload);
        }
      });
      ws.start = () => {
        sentAt = performance.now();
        ws.send(payload);
      };
    }),
  );
  return meter.run(sockets, opened, connectStarted, (ws) => ws.terminate());
}

// ---------------------------------------------------------------------------------------------

function httpJob() {
  const request = Buffer.from(`GET / HTTP/1.1\r\nHost: bench\r\n${job.close ? 'Connection: close\r\n' : ''}\r\n`);
  let measuring = false;
  let running = true;
  let count = 0;
  let errors = 0;
  let lat = new Latencies();

  /** Feed bytes; returns how many complete responses they finished. */
  const parser = () => {
    let buffer = '';
    return (chunk) => {
      buffer += chunk.toString('latin1');
      let done = 0;
      for (;;) {
        const head = buffer.indexOf('\r\n\r\n');
        if (head < 0) break;
        const match = /content-length:\s*(\d+)/i.exec(buffer.slice(0, head));
        const total = head + 4 + (match ? Number(match[1]) : 0);
        if (buffer.length < total) break;
        buffer = buffer.slice(total);
        done++;
      }
      return done;
    };
  };
  const finished = (sentAt) => {
    if (!measuring) return;
    count++;
    lat.add(performance.now() - sentAt);
  };

  let sourceIndex = 0;
  const keepAliveLoop = (i) => {
    const socket = net.connect({ ...targetFor(i), localAddress: sourceFor(i), noDelay: true });
    const feed = parser();
    let sentAt = 0;
    socket.on('connect', () => {
      sentAt = performance.now();
      socket.write(request);
    });
    socket.on('data', (chunk) => {
      for (let n = feed(chunk); n > 0; n--) finished(sentAt);
      if (running) {
        sentAt = performance.now();
        socket.write(request);
      }
    });
    socket.on('error', () => errors++);
    socket.on('close', () => {
      if (running) setTimeout(() => keepAliveLoop(i), 10);
    });
    return socket;
  };
  const closeLoop = () => {
    if (!running) return;
    const i = sourceIndex++ % 2000;
    const sentAt = performance.now();
    const socket = net.connect({ ...targetFor(i), localAddress: sourceFor(i), noDelay: true });
    const feed = parser();
    let got = 0;
    // As wrk does: send, read the reply, and let the server close first (Connection: close).
    socket.on('connect', () => socket.write(request));
    socket.on('data', (chunk) => (got += feed(chunk)));
    socket.on('end', () => socket.end());
    socket.on('error', () => errors++);
    socket.on('close', () => {
      if (got > 0) finished(sentAt);
      closeLoop();
    });
  };
  const sockets = [];
  for (let i = 0; i < job.conns; i++) {
    if (job.close) closeLoop();
    else sockets.push(keepAliveLoop(i));
  }
  return timed(() => {
    count = 0;
    errors = 0;
    lat = new Latencies();
    measuring = true;
  }).then((seconds) => {
    measuring = false;
    running = false;
    for (const s of sockets) s.destroy();
    return { requests: count, perSecond: count / seconds, seconds, errors, ...lat.summary() };
  });
}

// ---------------------------------------------------------------------------------------------

async function bulkJob() {
  const chunk = Buffer.alloc(64 * 1024, 0x62);
  let running = true;
  const sockets = [];
  for (let i = 0; i < job.streams; i++) {
    const socket = net.connect({ ...targets[0], localAddress: sourceFor(0), noDelay: true });
    socket.on('error', () => {});
    const pump = () => {
      while (running && socket.write(chunk));
    };
    socket.on('connect', pump);
    socket.on('drain', pump);
    sockets.push(socket);
  }
  const seconds = await timed(() => {});
  running = false;
  for (const s of sockets) s.destroy();
  return { seconds };
}

// ---------------------------------------------------------------------------------------------

function holdJob() {
  const held = [];
  let failed = 0;
  let firstError = null;
  process.on('message', async (message) => {
    if (message?.cmd !== 'hold') return;
    const want = message.count - held.length;
    const base = held.length + failed;
    const deadline = Date.now() + job.connectTimeoutMs;
    const opened = await openMany(want, 200, deadline, (k) =>
      new Promise((resolve, reject) => {
        const i = base + k;
        const socket = net.connect({ ...targetFor(i), localAddress: sourceFor(i) });
        const timer = setTimeout(() => {
          socket.destroy();
          reject(new Error('no echo within the deadline'));
        }, Math.max(1000, deadline - Date.now()));
        socket.once('connect', () => socket.write('hello\n'));
        socket.once('data', () => {
          clearTimeout(timer);
          held.push(socket);
          resolve();
        });
        socket.on('error', (err) => {
          clearTimeout(timer);
          reject(err); // a no-op once held
        });
        socket.once('close', () => clearTimeout(timer));
      }),
    );
    failed += opened.failed;
    firstError ??= opened.firstError;
    process.send({ held: held.length, failed, firstError });
  });
  process.send({ ready: true });
}

// ---------------------------------------------------------------------------------------------

/**
 * The light WebSocket client: a real RFC 6455 handshake, then a closed loop of masked binary
 * frames of `size` (≤ 125) bytes. The echo of a frame is exactly size + 2 bytes (unmasked, short
 * length), and a connection has one frame in flight, so a round trip ends when that many bytes
 * have arrived. Each connection sends the same frame (one random mask key per connection).
 */
async function wsLiteJob() {
  if (job.size > 125) throw new Error('the light WebSocket client sends frames of at most 125 bytes');
  const echoLength = job.size + 2;
  const sockets = [];
  const meter = new RoundTripMeter();
  const connectDeadline = Date.now() + job.connectTimeoutMs;
  const connectStarted = performance.now();
  const opened = await openMany(job.conns, 200, connectDeadline, (i) =>
    new Promise((resolve, reject) => {
      const { host, port } = targetFor(i);
      const key = randomBytes(16).toString('base64');
      const expected = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC11B65`).digest('base64');
      const mask = randomBytes(4);
      const frame = Buffer.alloc(6 + job.size);
      frame[0] = 0x82; // FIN, binary
      frame[1] = 0x80 | job.size;
      mask.copy(frame, 2);
      for (let k = 0; k < job.size; k++) frame[6 + k] = 0x61 ^ mask[k & 3];
      const socket = net.connect({ host, port, localAddress: sourceFor(i), noDelay: true });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error('WebSocket handshake timed out'));
      }, Math.max(1000, connectDeadline - Date.now()));
      let handshake = '';
      let received = 0;
      let sentAt = 0;
      const onFrames = (bytes) => {
        received += bytes;
        while (received >= echoLength) {
          received -= echoLength;
          const now = performance.now();
          if (meter.measuring) {
            meter.record(now - sentAt);
          }
          if (meter.running) {
            sentAt = performance.now();
            socket.write(frame);
          }
        }
      };
      socket.once('connect', () =>
        socket.write(`GET / HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`),
      );
      const onHandshake = (chunk) => {
        handshake += chunk.toString('latin1');
        const end = handshake.indexOf('\r\n\r\n');
        if (end < 0) return;
        clearTimeout(timer);
        const head = handshake.slice(0, end);
        if (!/^HTTP\/1\.1 101 /.test(head) || !head.includes(expected)) {
          socket.destroy();
          reject(new Error(`bad WebSocket handshake: ${head.split('\r\n')[0]}`));
          return;
        }
        socket.off('data', onHandshake);
        socket.on('data', (data) => onFrames(data.length));
        socket.start = () => {
          sentAt = performance.now();
          socket.write(frame);
        };
        sockets.push(socket);
        resolve();
        if (handshake.length > end + 4) onFrames(handshake.length - end - 4);
      };
      socket.on('data', onHandshake);
      socket.on('error', (err) => {
        clearTimeout(timer);
        reject(err); // a no-op once open
      });
    }),
  );
  return meter.run(sockets, opened, connectStarted, (socket) => socket.destroy());
}

// ---------------------------------------------------------------------------------------------

async function churnJob() {
  let measuring = false;
  let done = 0;
  let failed = 0;
  let inFlight = 0;
  let index = 0;
  const perTick = job.rate / 100;
  let owed = 0;
  const one = () => {
    const i = index++ % 4000;
    inFlight++;
    const socket = net.connect({ ...targets[0], localAddress: sourceFor(i) });
    let echoed = false;
    socket.once('connect', () => socket.write('hello\n'));
    socket.once('data', () => {
      echoed = true;
      socket.end();
    });
    socket.on('end', () => socket.destroy());
    socket.on('error', () => {});
    socket.once('close', () => {
      inFlight--;
      if (!measuring) return;
      if (echoed) done++;
      else failed++;
    });
  };
  const timer = setInterval(() => {
    owed += perTick;
    while (owed >= 1 && inFlight < job.conns) {
      owed--;
      one();
    }
    owed = Math.min(owed, perTick); // do not catch up a backlog in bursts
  }, 10);
  const seconds = await timed(() => {
    done = 0;
    failed = 0;
    measuring = true;
  });
  measuring = false;
  clearInterval(timer);
  return { connections: done, perSecond: done / seconds, seconds, failed };
}

const jobs = { ws: job.wsImpl === 'lib' ? wsJob : wsLiteJob, http: httpJob, bulk: bulkJob, churn: churnJob };
if (job.mode === 'hold') holdJob();
else {
  try {
    const result = await jobs[job.mode]();
    process.send({ phase: 'end', result }, () => process.exit(0));
  } catch (err) {
    process.send({ phase: 'error', error: String(err?.message ?? err) }, () => process.exit(1));
  }
}
