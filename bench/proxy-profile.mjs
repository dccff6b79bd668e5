// A load to profile the data path with: connection churn, keep-alive ping-pong of small messages,
// bulk throughput, and held idle connections with RSS per connection.
//
// Usage: npm run build && node [--cpu-prof] bench/proxy-profile.mjs [scenario...] [--seconds=5]
//          [--target=ringlb|haproxy] [--concurrency=N] [--size=64] [--hold=5000] [--idle-ms=600000]
//          [--settle=0]
// Scenarios: churn pingpong bulk held (default: all four, in that order).
//
// The proxy under test runs in this process (target ringlb: the real Daemon from dist/, 1,000
// backends on the ring, all pointing at one echo server) so that --cpu-prof profiles only the
// proxy; the backends and the clients run in a forked child. target haproxy spawns haproxy
// (nbthread 1, balance source, hash-type consistent) against the same child for a same-run
// ratio. Each scenario prints one JSON line: ops/s, and ops per CPU-second of the proxy process
// (the per-core figure, fair even when the load generator and not the proxy is the bottleneck).
import { fork, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Throughput scenarios count only after a warm-up, for `seconds`; the parent samples the proxy's
 * CPU time over the same window.
 */
const WARMUP_MS = 500;
function window(seconds) {
  const from = performance.now() + WARMUP_MS;
  const to = from + seconds * 1000;
  return {
    counting: () => {
      const now = performance.now();
      return now >= from && now < to;
    },
    done: () => performance.now() >= to,
  };
}

const srcAddress = (i) => `127.1.${Math.floor(i / 250) % 240}.${1 + (i % 250)}`;

// ---- child: echo and sink backends, and the clients ------------------------------------------

if (process.argv[2] === 'load') {
  const echo = net.createServer({ allowHalfOpen: false }, (s) => {
    s.setNoDelay(true);
    s.on('error', () => {});
    s.pipe(s);
  });
  let sunk = 0;
  const sink = net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', (chunk) => (sunk += chunk.length));
  });
  echo.listen(0, '127.0.0.1', 4096);
  sink.listen(0, '127.0.0.1', 4096);
  await Promise.all([once(echo, 'listening'), once(sink, 'listening')]);
  const held = [];
  const commands = {
    /** Each of `concurrency` loops: connect, send `size` bytes, wait for their echo, close. */
    async churn({ port, seconds, concurrency, size }) {
      const payload = Buffer.alloc(size, 'c');
      const { counting, done } = window(seconds);
      let ops = 0;
      let errors = 0;
      let next = 0;
      const loop = () => new Promise((resolve) => {
        const one = () => {
          if (done()) return resolve();
          const s = net.connect({ host: '127.0.0.1', port, localAddress: srcAddress(next++), noDelay: true });
          let got = 0;
          s.on('connect', () => s.write(payload));
          s.on('data', (d) => {
            got += d.length;
            if (got >= size) s.end();
          });
          s.on('error', () => errors++);
          s.on('close', () => {
            if (got >= size && counting()) ops++;
            one();
          });
        };
        one();
      });
      await Promise.all(Array.from({ length: concurrency }, loop));
      return { ops, errors };
    },
    /** `concurrency` persistent connections, each sending `size` bytes and awaiting their echo. */
    async pingpong({ port, seconds, concurrency, size }) {
      const payload = Buffer.alloc(size, 'p');
      const sockets = await Promise.all(Array.from({ length: concurrency }, (_, i) => new Promise((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port, localAddress: srcAddress(i), noDelay: true }, () => resolve(s));
        s.on('error', reject);
      })));
      const latencies = new Float64Array(1 << 22);
      let ops = 0;
      const { counting, done } = window(seconds);
      await Promise.all(sockets.map((s) => new Promise((resolve) => {
        let got = 0;
        let sent = performance.now();
        s.on('data', (d) => {
          got += d.length;
          if (got < size) return;
          got -= size;
          const now = performance.now();
          if (counting()) latencies[ops++ & (latencies.length - 1)] = now - sent;
          if (done()) return resolve();
          sent = now;
          s.write(payload);
        });
        s.write(payload);
      })));
      for (const s of sockets) s.destroy();
      const sorted = latencies.slice(0, Math.min(ops, latencies.length)).sort();
      const at = (q) => +sorted[Math.floor(q * (sorted.length - 1))].toFixed(3);
      return { ops, p50Ms: at(0.5), p99Ms: at(0.99) };
    },
    /** Upload: `concurrency` connections each writing 64 KiB chunks as fast as backpressure allows. */
    async bulk({ port, seconds, concurrency }) {
      const chunk = Buffer.alloc(64 * 1024, 'b');
      let stop = false;
      const streams = Array.from({ length: concurrency }, (_, i) => new Promise((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port, localAddress: srcAddress(i) });
        s.on('error', () => {});
        const pump = () => {
          while (!stop && s.write(chunk));
          if (stop) s.destroy();
        };
        s.on('connect', pump);
        s.on('drain', pump);
        s.on('close', resolve);
      }));
      await new Promise((r) => setTimeout(r, WARMUP_MS));
      const start = sunk;
      await new Promise((r) => setTimeout(r, seconds * 1000));
      const bytes = sunk - start;
      stop = true;
      await Promise.all(streams);
      return { ops: bytes };
    },
    /** Open `count` connections and make sure each is spliced (one echoed byte); keep them. */
    async hold({ port, count }) {
      for (let i = 0; i < count; i += 250) {
        await Promise.all(Array.from({ length: Math.min(250, count - i) }, (_, k) => new Promise((resolve, reject) => {
          const s = net.connect({ host: '127.0.0.1', port, localAddress: srcAddress(i + k) }, () => s.write('h'));
          s.once('data', resolve);
          s.on('error', reject);
          held.push(s);
        })));
      }
      return { held: held.length };
    },
    async release() {
      const closed = held.map((s) => once(s, 'close'));
      for (const s of held.splice(0)) s.destroy();
      await Promise.all(closed);
      return {};
    },
  };
  process.on('message', async ({ cmd, ...args }) => process.send(await commands[cmd](args)));
  process.on('disconnect', () => process.exit()); // the parent died without killing us
  process.send({ echoPort: echo.address().port, sinkPort: sink.address().port });
} else {
  await main();
}

// ---- parent: the proxy under test --------------------------------------------------------------

async function main() {
  const args = process.argv.slice(2);
  const option = (name, fallback) => {
    const a = args.find((x) => x.startsWith(`--${name}=`));
    return a === undefined ? fallback : a.slice(name.length + 3);
  };
  const scenarios = args.filter((a) => !a.startsWith('--'));
  const target = option('target', 'ringlb');
  const seconds = Number(option('seconds', 5));
  const size = Number(option('size', 64));
  const holdCount = Number(option('hold', 5000));
  const idleMs = Number(option('idle-ms', 600_000));
  // Seconds of quiet before the baseline and before a second RSS reading of the held connections:
  // V8 shrinks its young generation, grown by a burst of allocation, only after a quiet spell, so
  // the settled figure is the lasting cost of a connection and the first one includes that growth.
  const settleSeconds = Number(option('settle', 0));
  const concurrencyOf = { churn: 64, pingpong: 64, bulk: 4 };

  const peer = fork(new URL(import.meta.url).pathname, ['load'], { stdio: 'inherit' });
  const { echoPort, sinkPort } = await new Promise((r) => peer.once('message', r));
  const ask = (msg) => new Promise((r) => { peer.once('message', r); peer.send(msg); });

  const gc = globalGc();
  let proxyPort;
  let cpuSeconds;
  let rssBytes;
  let stop;
  let setBackend;
  if (target === 'haproxy') {
    const dir = mkdtempSync(join(tmpdir(), 'ringlb-haproxy-'));
    let child = null;
    proxyPort = await freePort();
    setBackend = async (port) => {
      if (child) { child.kill(); await once(child, 'exit'); }
      writeFileSync(join(dir, 'haproxy.cfg'), haproxyConfig(proxyPort, port, idleMs));
      child = spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'ignore', 'inherit'] });
      await waitListening(proxyPort);
    };
    cpuSeconds = () => {
      const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 }; // clock ticks
    };
    rssBytes = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))[1]) * 1024;
    stop = async () => { child.kill(); await once(child, 'exit'); };
  } else {
    const { pino } = await import('pino');
    const { validateConfig } = await import('../dist/config.js');
    const { Daemon } = await import('../dist/daemon.js');
    let daemon = null;
    setBackend = async (port) => {
      await daemon?.close();
      const config = validateConfig({
        listen: { host: '127.0.0.1', port: 0 },
        metrics: { host: '127.0.0.1', port: 0 },
        backends: Array.from({ length: 1000 }, (_, i) => ({ id: `b${i}`, host: '127.0.0.1', port })),
        healthCheck: { type: 'none' },
        timeouts: { idleMs },
      });
      daemon = await Daemon.start({ config, logger: pino({ level: 'warn' }), logLevel: 'warn' });
      proxyPort = daemon.listenAddresses[0].port;
    };
    cpuSeconds = () => {
      const { user, system } = process.cpuUsage();
      return { user: user / 1e6, system: system / 1e6 };
    };
    rssBytes = () => process.memoryUsage().rss;
    stop = () => daemon.close();
  }

  for (const scenario of scenarios.length > 0 ? scenarios : ['churn', 'pingpong', 'bulk', 'held']) {
    await setBackend(scenario === 'bulk' ? sinkPort : echoPort);
    const concurrency = Number(option('concurrency', concurrencyOf[scenario] ?? 0));
    if (scenario === 'held') {
      // Warm up the path, then measure the RSS that `holdCount` idle spliced pairs add.
      await ask({ cmd: 'hold', port: proxyPort, count: 500 });
      await ask({ cmd: 'release' });
      await settle(gc);
      if (settleSeconds > 0) await quiet(settleSeconds, gc);
      const before = rssBytes();
      const heapBefore = process.memoryUsage();
      await ask({ cmd: 'hold', port: proxyPort, count: holdCount });
      await settle(gc);
      const after = rssBytes();
      const heapAfter = process.memoryUsage();
      const per = (a, b) => Math.round((a - b) / holdCount);
      const result = { scenario, target, held: holdCount, rssBytesPerConnection: per(after, before) };
      if (target === 'ringlb') {
        result.heapUsedBytesPerConnection = per(heapAfter.heapUsed, heapBefore.heapUsed);
        result.externalBytesPerConnection = per(heapAfter.external, heapBefore.external);
      }
      if (settleSeconds > 0) {
        await quiet(settleSeconds, gc);
        result.rssBytesPerConnectionSettled = per(rssBytes(), before);
      }
      console.log(JSON.stringify(result));
      await ask({ cmd: 'release' });
      continue;
    }
    const running = ask({ cmd: scenario, port: proxyPort, seconds, concurrency, size });
    await new Promise((r) => setTimeout(r, WARMUP_MS));
    const cpuBefore = cpuSeconds();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const cpuAfter = cpuSeconds();
    const system = cpuAfter.system - cpuBefore.system;
    const cpu = cpuAfter.user - cpuBefore.user + system;
    const r = await running;
    const [unit, scale] = scenario === 'bulk' ? ['MiB', 1024 * 1024] : ['ops', 1];
    console.log(JSON.stringify({
      scenario,
      target,
      concurrency,
      [`${unit}PerSecond`]: Math.round(r.ops / scale / seconds),
      [`${unit}PerCpuSecond`]: Math.round(r.ops / scale / cpu),
      proxyCpu: +(cpu / seconds).toFixed(2),
      kernelShare: +(system / cpu).toFixed(2),
      ...(r.p99Ms === undefined ? {} : { p50Ms: r.p50Ms, p99Ms: r.p99Ms }),
      ...(r.errors ? { errors: r.errors } : {}),
    }));
  }
  await stop();
  peer.kill();
}

/** V8's gc(), exposed without needing --expose-gc on the command line. */
function globalGc() {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc');
}

async function quiet(seconds, gc) {
  await new Promise((r) => setTimeout(r, seconds * 1000));
  await settle(gc);
}

async function settle(gc) {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 100));
  }
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitListening(port) {
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

function haproxyConfig(port, backendPort, idleMs) {
  const idle = idleMs > 0 ? `${idleMs}ms` : '24h';
  return `global
  nbthread 1
  maxconn 9000
defaults
  mode tcp
  timeout connect 3s
  timeout client ${idle}
  timeout server ${idle}
frontend f
  bind 127.0.0.1:${port} backlog 4096
  default_backend b
backend b
  balance source
  hash-type consistent
  server s1 127.0.0.1:${backendPort}
`;
}
