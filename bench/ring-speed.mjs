// Ring build time and lookups/s with 1,000 backends (issue targets: build < 50 ms, >= 5 M lookups/s).
// Usage: npm run build && node bench/ring-speed.mjs [backends=1000] [vnodes=160] [runs=7]
// Runs against dist/. Prints medians of `runs` rounds as one JSON line; the first build is reported
// apart because it is the one a daemon pays at start-up (cold JIT). Times are this process's CPU
// time, not wall time, so that other load on a shared machine does not count against it.
import { parseIp } from '../dist/address.js';
import { buildRing, findPoint } from '../dist/ring.js';
import { ringBalancer } from '../dist/balancer.js';
import { clientHash, eligibility, pickBackend } from '../dist/routing.js';

const backends = Number(process.argv[2] ?? 1000);
const vnodes = Number(process.argv[3] ?? 160);
const runs = Number(process.argv[4] ?? 7);
const members = Array.from({ length: backends }, (_, i) => ({ id: `ws-${i}`, weight: 1 }));
const hashing = { ipv4Prefix: 32, ipv6Prefix: 64 };
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

// Client addresses as the proxy sees them (remoteAddress text), with their hashes precomputed.
const N = 1 << 16;
const addresses = Array.from({ length: N }, (_, i) => `10.${(i * 7) & 255}.${(i >> 8) & 255}.${i & 255}`);
const hashes = new Uint32Array(N);
for (let i = 0; i < N; i++) hashes[i] = clientHash(parseIp(addresses[i]), hashing);

/** CPU milliseconds of this process since `from` (a process.cpuUsage() result). */
const cpuMs = (from) => {
  const { user, system } = process.cpuUsage(from);
  return (user + system) / 1000;
};

/** Calls per CPU-second of `body(i)` over `seconds`, in batches of N. */
function rate(body, seconds = 0.5) {
  let sink = 0;
  let calls = 0;
  const started = process.cpuUsage();
  let elapsed = 0;
  while (elapsed < seconds * 1000) {
    for (let i = 0; i < N; i++) sink += body(i);
    calls += N;
    elapsed = cpuMs(started);
  }
  if (sink === 0.5) console.log(sink); // keep the results alive
  return calls / (elapsed / 1000);
}

// The first build in wall time too: the JIT compiles it on other threads, which CPU time counts.
let wall = performance.now();
let t0 = process.cpuUsage();
let ring = buildRing(members, vnodes);
const firstBuildMs = cpuMs(t0);
const firstBuildWallMs = performance.now() - wall;
const builds = [];
for (let r = 0; r < runs; r++) {
  t0 = process.cpuUsage();
  ring = buildRing(members, vnodes);
  builds.push(cpuMs(t0));
}
const table = ringBalancer(ring);
const allowed = eligibility(ring, () => true);
// Failover case: a quarter of the backends ineligible, so walks step past some points.
const partly = eligibility(ring, (b) => b % 4 !== 0);

const results = { findPoint: [], pickBackend: [], pickBackendQuarterDown: [], addressToBackend: [] };
for (let r = 0; r < runs; r++) {
  results.findPoint.push(rate((i) => findPoint(ring, hashes[i])));
  results.pickBackend.push(rate((i) => pickBackend(table, hashes[i], allowed)));
  results.pickBackendQuarterDown.push(rate((i) => pickBackend(table, hashes[i], partly)));
  // The whole per-connection routing decision: parse remoteAddress, hash, walk.
  results.addressToBackend.push(rate((i) => pickBackend(table, clientHash(parseIp(addresses[i]), hashing), allowed)));
}

const mps = (xs) => +(median(xs) / 1e6).toFixed(2);
console.log(JSON.stringify({
  backends,
  vnodes,
  points: ring.positions.length,
  buildMs: {
    first: +firstBuildMs.toFixed(1),
    firstWall: +firstBuildWallMs.toFixed(1),
    median: +median(builds).toFixed(1),
    min: +Math.min(...builds).toFixed(1),
  },
  lookupsPerSecondMillions: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, mps(v)])),
}));
