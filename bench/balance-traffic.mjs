// Ring, rendezvous and Maglev with real traffic (issue 11 item 5): 10,000 client addresses
// through a spawned `ringlb start`, connections opened and closed (each reads the backend's
// greeting, then ends), never held. `npm run build && node bench/balance-traffic.mjs`;
// PASSES=1 for a quick run (5 by default).
//
// - Balance: 10 equal backends; connections per backend counted from the greetings, max/mean,
//   beside the exact max/mean share of the same id set (from the table) and the median and p90
//   of max/mean for an ideal uniform random assignment of 10,000 clients to 10 backends.
// - Cost: the daemon's CPU (utime + stime from /proc/PID/stat) per connection over each pass
//   of 10,000, after a warm-up; median of PASSES passes, the algorithms interleaved pass by pass
//   so that drift of the shared machine falls on all three alike. With 10 and with 1,000
//   backends (where rendezvous is O(N)). Beside it, the in-process cost of the lookup itself
//   (pickBackend from dist/, the same ids and the same 10,000 client keys) and its share of the
//   measured CPU per connection.
// Results: printed, and written to bench/results/balance-traffic-<time>.json.

import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseIp } from '../dist/address.js';
import { buildBalancer } from '../dist/balancer.js';
import { clientHash, eligibility, pickBackend } from '../dist/routing.js';
import { freePort, installCleanup, start, stop, treeCpu, waitListening } from './harness/procs.mjs';
import { median, quantileSorted } from './harness/stats.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(repo, 'bin', 'ringlb');
const ALGORITHMS = ['ring', 'rendezvous', 'maglev'];
const HASHING = { vnodes: 160, tableSize: 65537, ipv4Prefix: 32, ipv6Prefix: 64 };
const CLIENTS = 10_000;
const WARMUP = 2_000;
const PASSES = Number(process.env.PASSES ?? 5);
const PARALLEL = 50; // connections in flight: far below any descriptor limit
const SIZES = [10, 1000];

installCleanup((reason) => console.error(`balance-traffic: ${reason}`));

/** Client i's source address: 127.3.X.Y, 250 per X (40 values of X for 10,000). */
const sourceFor = (i) => `127.3.${Math.floor(i / 250)}.${1 + (i % 250)}`;
const addresses = Array.from({ length: CLIENTS }, (_, i) => sourceFor(i));

/** `n` greeting backends in this process: write `<id>\n`, end when the client ends. */
async function startBackends(n) {
  const backends = [];
  for (let i = 0; i < n; i++) {
    const id = `ws-${String(i).padStart(n > 100 ? 4 : 2, '0')}`;
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => {});
      socket.write(`${id}\n`);
      socket.on('end', () => socket.end());
      socket.resume();
    });
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: 0, host: '127.0.0.1', backlog: 1024 }, resolve);
    });
    backends.push({ id, server, port: server.address().port });
  }
  return backends;
}

/** One connection from `localAddress`: read the greeting line, end, resolve with it on close. */
function greet(port, localAddress) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress });
    let text = '';
    let id = null;
    socket.setEncoding('latin1');
    socket.on('data', (chunk) => {
      text += chunk;
      const nl = text.indexOf('\n');
      if (id === null && nl >= 0) {
        id = text.slice(0, nl);
        socket.end();
      }
    });
    socket.on('error', reject);
    socket.on('close', () => (id === null ? reject(new Error(`no greeting for ${localAddress}`)) : resolve(id)));
  });
}

/** Connect once from each of `sources` through `port`, PARALLEL at a time; returns the ids in order. */
async function pass(port, sources) {
  const found = new Array(sources.length);
  let next = 0;
  const lane = async () => {
    while (next < sources.length) {
      const i = next++;
      found[i] = await greet(port, sources[i]);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, lane));
  return found;
}

/** Spawn `ringlb start` for `algorithm` in front of `backends`; resolves with {child, port}. */
async function startDaemon(algorithm, backends, dir) {
  const [port, metricsPort] = [await freePort(), await freePort()];
  const config = {
    listen: { host: '127.0.0.1', port },
    metrics: { host: '127.0.0.1', port: metricsPort },
    healthCheck: { type: 'none' },
    hashing: { algorithm, vnodes: HASHING.vnodes, tableSize: HASHING.tableSize },
    backends: backends.map((b) => ({ id: b.id, host: '127.0.0.1', port: b.port })),
    log: { level: 'warn' },
  };
  const file = path.join(dir, `${algorithm}-${backends.length}.json`);
  fs.writeFileSync(file, JSON.stringify(config));
  const child = start(`ringlb ${algorithm}`, process.execPath, [BIN, 'start', '--config', file], {
    log: path.join(dir, `${algorithm}-${backends.length}.log`),
  });
  await waitListening(child, [port, metricsPort], 20_000, `ringlb (${algorithm}, ${backends.length} backends)`);
  return { child, port };
}

const cpuSeconds = (pid) => {
  const { user, system } = treeCpu(pid);
  return user + system;
};

/** Max over mean of the values of `counts` (a Map or object of counts) over `n` bins. */
function maxOverMean(counts, n) {
  const values = [...Object.values(counts)];
  const total = values.reduce((a, b) => a + b, 0);
  return Math.max(...values) / (total / n);
}

const tallyOf = (ids) => {
  const counts = {};
  for (const id of ids) counts[id] = (counts[id] ?? 0) + 1;
  return counts;
};

/** Median and p90 of max/mean for `clients` thrown uniformly at random into `n` bins (mulberry32). */
function idealRandom(clients, n, trials = 2000) {
  let seed = 0x6c62;
  const next = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
  const ratios = [];
  for (let t = 0; t < trials; t++) {
    const bins = new Float64Array(n);
    for (let c = 0; c < clients; c++) bins[Math.floor(next() * n)]++;
    ratios.push(Math.max(...bins) / (clients / n));
  }
  ratios.sort((a, b) => a - b);
  return { median: quantileSorted(ratios, 0.5), p90: quantileSorted(ratios, 0.9) };
}

/**
 * The table the daemon builds, in process: exact max/mean share, ns per pickBackend on our
 * keys, and where each client goes.
 */
function inProcess(algorithm, backends) {
  const balancer = buildBalancer(
    backends.map((b) => ({ id: b.id, weight: 1 })),
    { algorithm, vnodes: HASHING.vnodes, tableSize: HASHING.tableSize },
  );
  const allowed = eligibility(balancer, () => true);
  const shares = balancer.shares(allowed.flags);
  const keys = Uint32Array.from(addresses, (ip) => clientHash(parseIp(ip), HASHING));
  let sink = 0;
  for (const key of keys) sink += pickBackend(balancer, key, allowed); // warm up
  const rounds = backends.length > 100 ? 20 : 200;
  // CPU time, as for the daemon, so that other processes on the shared cores do not count.
  const t0 = process.cpuUsage();
  for (let r = 0; r < rounds; r++) for (const key of keys) sink += pickBackend(balancer, key, allowed);
  const used = process.cpuUsage(t0);
  const ns = ((used.user + used.system) * 1000) / (rounds * keys.length);
  const routed = Array.from(keys, (key) => balancer.ids[pickBackend(balancer, key, allowed)]);
  return { shareMaxOverMean: Math.max(...shares) * backends.length, lookupNs: sink < 0 ? -1 : ns, routed };
}

async function measure(n, dir) {
  const backends = await startBackends(n);
  const daemons = {};
  for (const algorithm of ALGORITHMS) daemons[algorithm] = await startDaemon(algorithm, backends, dir);
  const rows = {};
  for (const algorithm of ALGORITHMS) {
    const { port } = daemons[algorithm];
    await pass(port, Array.from({ length: WARMUP }, (_, i) => `127.4.${Math.floor(i / 250)}.${1 + (i % 250)}`));
    rows[algorithm] = { cpuUs: [], counts: null, sticky: true };
  }
  for (let p = 0; p < PASSES; p++) {
    for (const algorithm of ALGORITHMS) {
      const { child, port } = daemons[algorithm];
      const before = cpuSeconds(child.pid);
      const ids = await pass(port, addresses);
      const cpu = cpuSeconds(child.pid) - before;
      const row = rows[algorithm];
      row.cpuUs.push((cpu / CLIENTS) * 1e6);
      // Every pass must send every client where the first did.
      if (row.ids && ids.some((id, i) => id !== row.ids[i])) row.sticky = false;
      row.ids ??= ids;
      row.counts ??= tallyOf(ids);
    }
  }
  for (const algorithm of ALGORITHMS) await stop(daemons[algorithm].child);
  await Promise.all(backends.map((b) => new Promise((resolve) => b.server.close(resolve))));
  return ALGORITHMS.map((algorithm) => {
    const row = rows[algorithm];
    const local = inProcess(algorithm, backends);
    // The daemon must route as the in-process table does, or the comparison means nothing.
    const agrees = local.routed.every((id, i) => id === row.ids[i]);
    const cpuUs = median(row.cpuUs);
    return {
      n,
      algorithm,
      maxOverMean: maxOverMean(row.counts, n),
      shareMaxOverMean: local.shareMaxOverMean,
      busiest: Math.max(...Object.values(row.counts)),
      quietest: Math.min(...Object.values(row.counts)),
      cpuUsPerConnection: cpuUs,
      cpuUsPasses: row.cpuUs,
      lookupNs: local.lookupNs,
      lookupShare: local.lookupNs / 1000 / cpuUs,
      sticky: row.sticky,
      agreesWithTable: agrees,
    };
  });
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringlb-balance-traffic-'));
const results = [];
for (const n of SIZES) {
  console.error(`${n} backends: ${PASSES} passes of ${CLIENTS} connections per algorithm ...`);
  results.push(...(await measure(n, dir)));
}
const ideal = idealRandom(CLIENTS, 10);

const f = (x, d) => x.toFixed(d);
console.log(`\nMeasured ${new Date().toISOString().slice(0, 10)} on ${os.cpus()[0].model} (${os.cpus().length} cores, shared), Node ${process.version};`);
console.log(`${CLIENTS} client addresses, ${PASSES} passes each, ${PARALLEL} connections in flight; load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}.\n`);
console.log('| N | algorithm | connections max/mean | busiest / quietest | exact share max/mean | daemon CPU µs per connection (median; passes) | lookup ns | lookup / connection CPU |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of results) {
  const passes = r.cpuUsPasses.map((x) => f(x, 0)).join(', ');
  const balance = r.n === 10 ? [f(r.maxOverMean, 3), `${r.busiest} / ${r.quietest}`, f(r.shareMaxOverMean, 3)] : ['–', `${r.busiest} / ${r.quietest}`, f(r.shareMaxOverMean, 3)];
  console.log(`| ${r.n} | ${r.algorithm} | ${balance.join(' | ')} | ${f(r.cpuUsPerConnection, 0)} (${passes}) | ${f(r.lookupNs, 0)} | ${f(r.lookupShare * 100, 2)}% |`);
}
console.log(`\nIdeal uniform random assignment of ${CLIENTS} clients to 10 backends: max/mean median ${f(ideal.median, 3)}, p90 ${f(ideal.p90, 3)}.`);
const wrong = results.filter((r) => !r.sticky || !r.agreesWithTable);
for (const r of wrong) console.log(`WARNING: ${r.algorithm} at N = ${r.n}: sticky ${r.sticky}, agrees with the table ${r.agreesWithTable}`);

const out = path.join(repo, 'bench', 'results', `balance-traffic-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, JSON.stringify({ clients: CLIENTS, passes: PASSES, parallel: PARALLEL, ideal, results }, null, 2));
console.log(`\nwritten ${path.relative(repo, out)}`);
fs.rmSync(dir, { recursive: true, force: true });
process.exit(wrong.length > 0 ? 1 : 0);
