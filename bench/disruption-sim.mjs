// The disruption benchmark as a pure simulation (issue 9 item 6): 1,000,000 connections and 100
// backends, routed and closed by ringlb's own modules from dist/ (the ring through
// buildBalancer, pickBackend, homeOf, planCloses), with no socket, so the figures hold past what one machine can hold.
// `npm run build && node bench/disruption-sim.mjs [connections] [backends]`.
//
// Model: client i is the address 10.x.y.z numbered i, hashed as the daemon hashes it; a closed
// connection reconnects at the instant it is closed (the real benchmark, bench/disruption.mjs,
// measures how long that really takes) and is routed by the table in force.
// - Scale-out (backends -> backends + 1) with rehome off, rehome on (windowMs 10 s and 60 s: the
//   misplaced set through planCloses), and a "max connection lifetime" emulation (every
//   connection closed at a uniformly random moment of 60 s). Figures as in the real run:
//   reconnects forced, how many changed backend, the peak of closes per 100 ms, and when the new
//   backend holds its share (98% of share x connections, or all its homes when fewer).
// - Removal of one backend with drainTimeoutMs 5 s, closeSpreadMs 0 and 10 s.
// - Bounded loads (balanceFactor 1.25) with a hot key set (5% of connections from 10 keys):
//   connections arrive in random order and are placed by pickBackend with the load bound; then
//   the hot clients leave, and rehoming (windowMs 60 s) closes the connections misplaced in one
//   snapshot, each checked again at its turn (homeOf with the loads of that moment), as
//   src/rebalancer.ts does.

import os from 'node:os';
import { buildBalancer } from '../dist/balancer.js';
import { planCloses } from '../dist/planner.js';
import { clientHash, eligibility, homeOf, pickBackend } from '../dist/routing.js';

const N = Number(process.argv[2] ?? 1_000_000);
const B = Number(process.argv[3] ?? 100);
const VNODES = 160;
const BUCKET_MS = 100;
const SHARE_TOLERANCE = 0.02;
const DRAIN_MS = 5000;
const HOT_FRACTION = 0.05;
const HOT_KEYS = 10;
const FACTOR = 1.25;
const HASHING = { ipv4Prefix: 32, ipv6Prefix: 64 };
const started = performance.now();
const log = (line) => process.stderr.write(`[sim ${((performance.now() - started) / 1000).toFixed(1).padStart(5)}s] ${line}\n`);

/** Seeded pseudo-random numbers in [0, 1) (mulberry32), so every run gives the same figures. */
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ipHash = (i) => clientHash(Uint8Array.of(10, (i >>> 16) & 255, (i >>> 8) & 255, i & 255), HASHING);
const idOf = (i) => `ws-${String(i).padStart(3, '0')}`;

/** The ring of `ids` (as the daemon builds it) with every backend eligible, and exact shares. */
function table(ids) {
  const ring = buildBalancer(ids.map((id) => ({ id, weight: 1 })), { algorithm: 'ring', vnodes: VNODES });
  const allowed = eligibility(ring, () => true);
  return { ring, allowed, share: ring.shares(allowed.flags) };
}

/** The id index (into `ids`) each hash is routed to by `t` with every backend under no bound. */
function route(t, hashes, ids) {
  const byRing = Int32Array.from(t.ring.ids, (id) => ids.indexOf(id));
  const out = new Int32Array(hashes.length);
  for (let c = 0; c < hashes.length; c++) out[c] = byRing[pickBackend(t.ring, hashes[c], t.allowed)];
  return out;
}

/** The peak count of `times` (ms) in one BUCKET_MS bucket. */
function peak(times) {
  const counts = new Map();
  let best = 0;
  for (const t of times) {
    const b = Math.floor(t / BUCKET_MS);
    const n = (counts.get(b) ?? 0) + 1;
    counts.set(b, n);
    if (n > best) best = n;
  }
  return best;
}

const hashes = new Uint32Array(N);
for (let i = 0; i < N; i++) hashes[i] = ipHash(i);
log(`${N.toLocaleString('en-US')} client hashes`);

// ---------------------------------------------------------------------------------------------
// scale-out: B -> B + 1

const ids = Array.from({ length: B + 1 }, (_, i) => idOf(i));
const added = B; // id index of the new backend
const before = table(ids.slice(0, B));
const after = table(ids);
const home0 = route(before, hashes, ids);
const home1 = route(after, hashes, ids);
const addShare = after.share[after.ring.ids.indexOf(ids[added])];
let addHomes = 0;
const movers = [];
for (let c = 0; c < N; c++) {
  if (home1[c] === added) addHomes++;
  if (home1[c] !== home0[c]) movers.push(c);
}
const addTarget = Math.min(Math.ceil((1 - SHARE_TOLERANCE) * addShare * N), addHomes);
log(`${ids[added]}: ring share ${(addShare * 100).toFixed(3)}%, ${addHomes} homes, ${movers.length} moved by the ring; target ${addTarget}`);

/** Figures of a set of closes (connection, time): each reconnects at once to home1. */
function scaleOut(title, closes) {
  closes.sort((a, b) => a[1] - b[1]);
  let held = 0;
  let reachedMs = null;
  let changed = 0;
  for (const [c, t] of closes) {
    if (home1[c] !== home0[c]) changed++;
    if (home1[c] === added && home0[c] !== added) held++;
    if (reachedMs === null && held >= addTarget) reachedMs = t;
  }
  return { title, forced: closes.length, changed, peak: peak(closes.map((x) => x[1])), reachedMs };
}

const rehome = (windowMs, seed) => {
  const plan = planCloses(movers, 0, windowMs, seeded(seed));
  return plan.items.map((c, k) => [c, plan.at[k]]);
};
const lifetime = (windowMs, seed) => {
  const random = seeded(seed);
  return Array.from({ length: N }, (_, c) => [c, random() * windowMs]);
};
const addRows = [
  scaleOut('rehome off', []),
  scaleOut('rehome on, windowMs 10 s', rehome(10_000, 1)),
  scaleOut('rehome on, windowMs 60 s', rehome(60_000, 2)),
  scaleOut('max lifetime, every connection recycled over 60 s', lifetime(60_000, 3)),
];
log('scale-out modes done');

// ---------------------------------------------------------------------------------------------
// removal: B -> B - 1 with a drain deadline

const removed = Math.floor(B / 2);
const onRemoved = [];
for (let c = 0; c < N; c++) if (home0[c] === removed) onRemoved.push(c);
const drain = (title, spreadMs, seed) => {
  const plan = planCloses(onRemoved, DRAIN_MS, spreadMs, seeded(seed));
  // Every one of them changes backend: theirs is gone.
  return { title, forced: plan.items.length, changed: plan.items.length, peak: peak(plan.at), emptyMs: plan.at.at(-1) ?? null };
};
const removeRows = [drain('drainTimeoutMs 5 s, closeSpreadMs 0', 0, 4), drain('drainTimeoutMs 5 s, closeSpreadMs 10 s', 10_000, 5)];
log('removal modes done');

// ---------------------------------------------------------------------------------------------
// bounded loads with a hot key set

/**
 * Place every connection in random arrival order with the bound, then (with `leave`) end the
 * connections for which leave(c) is true and rehome the misplaced ones over 60 s.
 */
function bounded(title, keyHashes, hot, seed) {
  const { ring, allowed } = before;
  const n = keyHashes.length;
  const random = seeded(seed);
  const load = new Int32Array(ring.ids.length);
  let open = 0;
  const bound = { factor: FACTOR, get open() { return open; }, load: (b) => load[b] };
  const unbounded = new Int32Array(ring.ids.length);
  const ringHome = new Int32Array(n);
  const on = new Int32Array(n);
  const order = Array.from({ length: n }, (_, c) => c);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  let spilled = 0;
  let hotSpilled = 0;
  for (const c of order) {
    ringHome[c] = pickBackend(ring, keyHashes[c], allowed);
    unbounded[ringHome[c]]++;
    const b = pickBackend(ring, keyHashes[c], allowed, [], bound);
    on[c] = b;
    load[b]++;
    open++;
    if (b !== ringHome[c]) {
      spilled++;
      if (hot(c)) hotSpilled++;
    }
  }
  const mean = n / ring.ids.length;
  const row = { title, connections: n, spilled, hotSpilled, maxUnbounded: Math.max(...unbounded) / mean, maxBounded: Math.max(...load) / mean };
  // The hot clients leave: their connections end, and the homes they filled have room again.
  const alive = new Uint8Array(n).fill(1);
  for (let c = 0; c < n; c++) {
    if (!hot(c)) continue;
    alive[c] = 0;
    load[on[c]]--;
    open--;
  }
  // One snapshot decides the plan (rebalancer.changed), each is checked again at its turn.
  const misplaced = [];
  for (let c = 0; c < n; c++) if (alive[c] && homeOf(ring, keyHashes[c], allowed, bound, on[c]) !== on[c]) misplaced.push(c);
  const plan = planCloses(misplaced, 0, 60_000, random);
  let closed = 0;
  let backHome = 0;
  const closeTimes = [];
  plan.items.forEach((c, k) => {
    if (homeOf(ring, keyHashes[c], allowed, bound, on[c]) === on[c]) return; // spared
    closed++;
    closeTimes.push(plan.at[k]);
    load[on[c]]--;
    open--;
    const b = pickBackend(ring, keyHashes[c], allowed, [], bound);
    on[c] = b;
    load[b]++;
    open++;
    if (b === ringHome[c]) backHome++;
  });
  let offHome = 0;
  for (let c = 0; c < n; c++) if (alive[c] && on[c] !== ringHome[c]) offHome++;
  return { ...row, misplaced: misplaced.length, closed, spared: misplaced.length - closed, backHome, offHome, peak: peak(closeTimes) };
}

const hotCount = Math.round(N * HOT_FRACTION);
const isHot = (c) => c < hotCount;
// Connections 0 .. hotCount-1 share HOT_KEYS addresses (a NAT, a popular /24 behind one key).
const hotHashes = Uint32Array.from(hashes, (h, c) => (isHot(c) ? hashes[c % HOT_KEYS] : h));
const boundedRows = [
  bounded('no hot keys', hashes, () => false, 6),
  bounded(`hot set: ${(HOT_FRACTION * 100).toFixed(0)}% of connections from ${HOT_KEYS} keys`, hotHashes, isHot, 7),
];
log('bounded loads done');

// ---------------------------------------------------------------------------------------------
// output

const count = (x) => (x === null ? '–' : x.toLocaleString('en-US'));
const secs = (ms, never) => (ms === null ? never : (ms / 1000).toFixed(2));
const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
const lines = [
  `ringlb disruption simulation, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC — ${N.toLocaleString('en-US')} connections, ${B} backends, ring vnodes ${VNODES}; dist/ modules, no sockets; ${cpu}, Node ${process.version}, ${((performance.now() - started) / 1000).toFixed(1)} s`,
  '',
  `${B} -> ${B + 1} backends (${ids[added]}'s ring share ${(addShare * 100).toFixed(3)}%, ${movers.length.toLocaleString('en-US')} connections moved by the ring):`,
  '',
  '| mode | reconnects forced | changed backend | peak closes / 100 ms | new backend at its share after (s) |',
  '| --- | ---: | ---: | ---: | ---: |',
  ...addRows.map((r) => `| ${r.title} | ${count(r.forced)} | ${count(r.changed)} | ${count(r.peak)} | ${secs(r.reachedMs, 'never')} |`),
  '',
  `${B} -> ${B - 1} backends (${ids[removed]} removed, ${onRemoved.length.toLocaleString('en-US')} connections on it), rehome off:`,
  '',
  '| mode | reconnects forced | changed backend | peak closes / 100 ms | removed backend empty after (s) |',
  '| --- | ---: | ---: | ---: | ---: |',
  ...removeRows.map((r) => `| ${r.title} | ${count(r.forced)} | ${count(r.changed)} | ${count(r.peak)} | ${secs(r.emptyMs, '–')} |`),
  '',
  `Bounded loads, balanceFactor ${FACTOR}, ${B} backends; then the hot clients leave and rehome (windowMs 60 s) acts:`,
  '',
  '| case | spilled | of them hot | max load / mean, unbounded | max load / mean, bounded | misplaced after | closed (rehomed) | spared at their turn | of the closed, back on ring home | still off ring home | peak closes / 100 ms |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...boundedRows.map((r) => `| ${r.title} | ${count(r.spilled)} | ${count(r.hotSpilled)} | ${r.maxUnbounded.toFixed(2)} | ${r.maxBounded.toFixed(2)} | ${count(r.misplaced)} | ${count(r.closed)} | ${count(r.spared)} | ${count(r.backHome)} | ${count(r.offHome)} | ${count(r.peak)} |`),
];
process.stdout.write(`\n${lines.join('\n')}\n`);
