// The reconnect storm (issue 13): as many held WebSocket clients as the descriptor limit allows
// through one proxy (two descriptors per client in the proxy; the hard limit here is 20,000 per
// process, so 8,000 by default) over 4 backends; one backend is killed (SIGKILL: the kernel
// closes its sockets, as a crash would), and its clients reconnect at once. Measured per proxy,
// in the same run:
//   recovery     from the kill until every client of the killed backend is greeted again
//   peak rate    the most of those re-greetings in any 100 ms, per second
//   others' p99  the round-trip p99 of the clients that were NOT closed, over pings sent between
//                the kill and the recovery (each client pings every --ping-ms), next to their p99
//                in the calm 2 s before the kill
//   proxy CPU    CPU seconds the proxy used from the kill to the recovery
// Peers: ringlb (workers 1), ringlb2 (workers 2), HAProxy (nbthread 2), nginx (2 workers), and
// the naive Node proxy. Unpinned: ringlb with 2 workers needs 2 cores, and so every peer gets
// both (the clients and backends run there too, identically for every peer).
// Failover for each: ringlb tcp checks every 1 s (fall 1) and its connect retries; HAProxy the
// same checks with `option redispatch 1` and `retries 2`; nginx its default passive failover
// (proxy_next_upstream error); the naive proxy tries the next backend on a failed connect.
//
// Usage: npx tsc -p tsconfig.json && node bench/storm.mjs [--quick] [--reps N] [--clients N] [--only P,P] [--ping-ms MS]
//   --quick       1 repetition, 2,000 clients
//   --reps N      repetitions (default 3; medians are reported)
//   --clients N   held clients (default 8,000; at most 9,000)
//   --only P,P    ringlb, ringlb2, haproxy, nginx, naive (default: all installed)
//   --ping-ms MS  each client's ping period (default 1000)
//   --out FILE    JSON result file (default bench/results/storm-<timestamp>.json)
//   --ringlb-cmd CMD  how to run ringlb (default: node bin/ringlb); --label TEXT  a note

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_RINGLB_CMD, detect, startPeer } from './harness/peers.mjs';
import { freePort, installCleanup, killAll, sleep, startNode, stop, treeCpu } from './harness/procs.mjs';
import { fmt, median, quantileSorted } from './harness/stats.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const PEERS = ['ringlb', 'ringlb2', 'haproxy', 'nginx', 'naive'];
const CLIENTS_PER_PROCESS = 4000;
const BACKENDS = 4;
/** The calm window before the kill, and how long the clients may take to recover. */
const CALM_MS = 2000;
const RECOVERY_LIMIT_MS = 60_000;
const startedAt = Date.now();
const log = (line) => process.stderr.write(`[storm ${((Date.now() - startedAt) / 1000).toFixed(1).padStart(6)}s] ${line}\n`);

let args;
try {
  args = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      reps: { type: 'string' },
      clients: { type: 'string' },
      only: { type: 'string' },
      'ping-ms': { type: 'string' },
      out: { type: 'string' },
      'ringlb-cmd': { type: 'string' },
      label: { type: 'string' },
    },
    strict: true,
  }).values;
} catch (err) {
  process.stderr.write(`storm: ${err.message}\n`);
  process.exit(1);
}
const posInt = (text, what) => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`storm: --${what}: expected a positive integer, got ${text}\n`);
    process.exit(1);
  }
  return n;
};
const reps = args.reps ? posInt(args.reps, 'reps') : args.quick ? 1 : 3;
const clients = args.clients ? posInt(args.clients, 'clients') : args.quick ? 2000 : 8000;
const pingMs = args['ping-ms'] ? posInt(args['ping-ms'], 'ping-ms') : 1000;
if (clients > 9000) {
  process.stderr.write('storm: --clients: at most 9000 (the proxy holds 2 descriptors per client; the limit is 20,000)\n');
  process.exit(1);
}
const wanted = args.only ? args.only.split(',').map((s) => s.trim()) : PEERS;
for (const p of wanted) {
  if (!PEERS.includes(p)) {
    process.stderr.write(`storm: --only: unknown ${p} (one of ${PEERS.join(', ')})\n`);
    process.exit(1);
  }
}

installCleanup((why) => log(why));
setTimeout(() => {
  log('run exceeded 30 minutes; stopping');
  process.exit(2);
}, 30 * 60_000).unref();

const ringlbCmd = args['ringlb-cmd']?.split(/\s+/).filter(Boolean) ?? DEFAULT_RINGLB_CMD;
const found = detect({ ringlbCmd });
const installed = (p) => (p.startsWith('ringlb') ? found.ringlb !== null : p === 'haproxy' ? found.haproxy !== null : p === 'nginx' ? found.nginx !== null && found.nginxStreamModule !== null : true);
const peers = wanted.filter(installed);
for (const note of found.notes) log(note);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringlb-storm-'));

const withTimeout = (promise, ms, what) => {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms))),
  ]);
};
/** The next IPC message of `child` that has `key` (after sending it `message`, if any). */
const ask = (child, message, key, ms = 10_000) =>
  withTimeout(
    new Promise((resolve, reject) => {
      const exited = (code) => {
        child.off('message', on);
        reject(new Error(`${key}: child exited (${code})`));
      };
      const on = (m) => {
        if (m?.[key] === undefined) return;
        child.off('message', on);
        child.off('exit', exited);
        resolve(m);
      };
      child.on('message', on);
      child.once('exit', exited);
      if (message) child.send(message);
    }),
    ms,
    key,
  );

/** One storm through `peer`: fresh backends, proxy and clients; everything stopped after. */
async function storm(peer, tag) {
  const ports = [];
  for (let i = 0; i < BACKENDS; i++) ports.push(await freePort());
  const backends = ports.map((port, i) =>
    startNode('storm-backend', path.join(here, 'harness', 'storm-backend.mjs'), [JSON.stringify({ id: `b${i + 1}`, port })], { log: path.join(dir, `backends-${tag}.log`) }),
  );
  const started = [];
  const clientProcs = [];
  try {
    await Promise.all(backends.map((b) => ask(b, null, 'ready')));
    const port = await freePort();
    const ringlbConfig = {
      healthCheck: { type: 'tcp', intervalMs: 1000, timeoutMs: 500, rise: 2, fall: 1 },
      ...(peer === 'ringlb2' ? { workers: 2 } : {}),
    };
    const opts = { ringlbCmd, ringlbConfig };
    const proxy = await startPeer(peer === 'ringlb2' ? 'ringlb' : peer, { port, backends: ports, dir, pinned: false, opts, found, adminPort: await freePort(), tag, failover: true });
    started.push(proxy);
    for (let from = 0; from < clients; from += CLIENTS_PER_PROCESS) {
      const count = Math.min(CLIENTS_PER_PROCESS, clients - from);
      const job = { target: { host: '127.0.0.1', port }, from, count, sourcePrefix: '127.9', pingMs, connectTimeoutMs: 60_000, hardLimitMs: 300_000 };
      clientProcs.push(startNode('storm-clients', path.join(here, 'harness', 'storm-clients.mjs'), [JSON.stringify(job)], { log: path.join(dir, `clients-${tag}.log`) }));
    }
    const opened = await Promise.all(clientProcs.map((c) => ask(c, null, 'held', 90_000)));
    const held = opened.reduce((n, o) => n + o.held, 0);
    if (held < clients) throw new Error(`only ${held} of ${clients} clients held (${opened.find((o) => o.firstError)?.firstError ?? 'no error'})`);
    const victimOpen = (await ask(backends[0], { cmd: 'open' }, 'open')).open;
    for (const c of clientProcs) c.send({ cmd: 'record' });
    await sleep(CALM_MS);
    const cpu0 = treeCpu(proxy.pid);
    const killedAt = Date.now();
    process.kill(backends[0].pid, 'SIGKILL');
    // Recovered: at least the victim's clients were closed, and none is waiting any more.
    let recovered = false;
    while (Date.now() - killedAt < RECOVERY_LIMIT_MS) {
      await sleep(50);
      const status = (await Promise.all(clientProcs.map((c) => ask(c, { cmd: 'status' }, 'status')))).map((m) => m.status);
      const closed = status.reduce((n, s) => n + s.closed, 0);
      const pending = status.reduce((n, s) => n + s.pending, 0);
      if (closed >= victimOpen && pending === 0) {
        recovered = true;
        break;
      }
    }
    const cpu1 = treeCpu(proxy.pid);
    await sleep(300); // pings sent during the storm come back
    const reportsRaw = (await Promise.all(clientProcs.map((c) => ask(c, { cmd: 'report' }, 'report', 30_000)))).map((m) => m.report);
    // Client numbers are local to each process: make them global.
    const reports = reportsRaw.map((r, p) => ({
      closes: r.closes.map(([k, t]) => [p * CLIENTS_PER_PROCESS + k, t]),
      opens: r.opens.map(([k, t, b]) => [p * CLIENTS_PER_PROCESS + k, t, b]),
      rtts: r.rtts.map(([k, sent, ms]) => [p * CLIENTS_PER_PROCESS + k, sent, ms]),
      retries: r.retries,
    }));
    const closes = reports.flatMap((r) => r.closes);
    const opens = reports.flatMap((r) => r.opens);
    const rtts = reports.flatMap((r) => r.rtts);
    const closedClients = new Set(closes.map(([k]) => k));
    const lastOpen = opens.reduce((t, [, at]) => Math.max(t, at), killedAt);
    const bins = new Map();
    for (const [, at] of opens) bins.set(Math.floor((at - killedAt) / 100), (bins.get(Math.floor((at - killedAt) / 100)) ?? 0) + 1);
    const others = rtts.filter(([k]) => !closedClients.has(k));
    const p99 = (xs) => quantileSorted(Float64Array.from(xs).sort(), 0.99);
    const calm = others.filter(([, sent]) => sent < killedAt).map(([, , ms]) => ms);
    const during = others.filter(([, sent]) => sent >= killedAt && sent <= lastOpen).map(([, , ms]) => ms);
    return {
      figures: {
        recoveryMs: recovered ? lastOpen - killedAt : null,
        peakPerSecond: Math.max(0, ...bins.values()) * 10,
        othersP99Ms: p99(during),
        calmP99Ms: p99(calm),
        proxyCpuS: cpu1.user + cpu1.system - cpu0.user - cpu0.system,
      },
      detail: {
        held,
        victimOpen,
        closed: closedClients.size,
        reconnected: new Set(opens.map(([k]) => k)).size,
        retries: reports.reduce((n, r) => n + r.retries, 0),
        otherSamples: during.length,
        calmSamples: calm.length,
        recovered,
      },
    };
  } finally {
    await Promise.all(clientProcs.map((c) => stop(c, 500)));
    await Promise.all(started.map((p) => p.stopIt()));
    await Promise.all(backends.map((b) => stop(b, 500)));
  }
}

const FIGURES = [
  ['recoveryMs', 'Recovery: kill to every client served again (ms)'],
  ['peakPerSecond', 'Peak re-greetings per second (100 ms bins)'],
  ['othersP99Ms', "Other clients' round-trip p99 during the storm (ms)"],
  ['calmP99Ms', "Other clients' round-trip p99 before the kill (ms)"],
  ['proxyCpuS', 'Proxy CPU from kill to recovery (s)'],
];
const title = { ringlb: 'ringlb', ringlb2: 'ringlb ×2 workers', haproxy: 'HAProxy', nginx: 'nginx', naive: 'naive Node' };

const raw = Object.fromEntries(peers.map((p) => [p, []]));
const failures = [];
log(`${reps} repetition(s), ${clients} clients, 4 backends, peers ${peers.join(', ')}; logs in ${dir}`);
for (let rep = 1; rep <= reps; rep++) {
  for (const peer of peers) {
    const t0 = Date.now();
    try {
      const r = await storm(peer, `r${rep}-${peer}`);
      raw[peer].push(r);
      log(`rep ${rep} ${peer.padEnd(8)} ${Object.entries(r.figures).map(([k, v]) => `${k}=${fmt(v)}`).join(' ')} (victim ${r.detail.victimOpen}, closed ${r.detail.closed}, retries ${r.detail.retries}; ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    } catch (err) {
      failures.push({ rep, peer, error: String(err?.message ?? err) });
      log(`rep ${rep} ${peer}: FAILED: ${err?.message ?? err}`);
    }
  }
}

/** Median, with the spread of the repetitions in brackets. */
function cell(peer, key) {
  const values = raw[peer].map((r) => r.figures[key]).filter((v) => typeof v === 'number');
  if (values.length === 0) return '–';
  const m = median(values);
  return values.length > 1 ? `${fmt(m)} (${fmt(Math.min(...values))}–${fmt(Math.max(...values))})` : fmt(m);
}
const date = new Date().toISOString();
const cpuModel = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model;
const table = [
  `| figure | ${peers.map((p) => title[p]).join(' | ')} |`,
  `| --- | ${peers.map(() => '---:').join(' | ')} |`,
  ...FIGURES.map(([key, label]) => `| ${label} | ${peers.map((p) => cell(p, key)).join(' | ')} |`),
].join('\n');
const header = [
  `ringlb reconnect storm, ${date.slice(0, 16).replace('T', ' ')} UTC — ${reps} repetition(s), ${clients} held WebSocket clients, 4 backends, one killed; unpinned${args.label ? ` — ${args.label}` : ''}`,
  `${cpuModel} × ${os.cpus().length}, Linux ${os.release()}, Node ${process.version}; ${[found.ringlb, found.haproxy, found.nginx].filter(Boolean).join('; ')}`,
  `medians (min–max of the repetitions); each client pings every ${pingMs} ms`,
].join('\n');
process.stdout.write(`\n${header}\n\n${table}\n${failures.length ? `\nFailures:\n${failures.map((f) => `- rep ${f.rep} ${f.peer}: ${f.error}`).join('\n')}\n` : ''}`);
const outFile = args.out ?? path.join(here, 'results', `storm-${date.replace(/[:.]/g, '-')}.json`);
fs.mkdirSync(path.dirname(outFile), { recursive: true });
fs.writeFileSync(outFile, `${JSON.stringify({ date, clients, reps, pingMs, peers, raw, failures, markdown: `${header}\n\n${table}` }, null, 2)}\n`);
log(`results written to ${path.relative(process.cwd(), outFile)}`);
killAll();
if (failures.length === 0) fs.rmSync(dir, { recursive: true, force: true });
process.exit(0);
