// Balance, disruption and cost of the three hashing algorithms side by side (issue 11 item 5):
// ring (vnodes 160), rendezvous and Maglev (tableSize 65537, or TABLE_SIZE), over random id sets.
// `npm run bench:balance` (builds dist/ first). SETS=50 node bench/balance.mjs for a quick run.
//
// Per N and weight mix, over SETS random id sets (200 by default):
// - max/mean share: the largest of share_b / (w_b / W), exact (ring, Maglev: from the table;
//   rendezvous: its exact expected share, so 1 by construction; see the sampled check below);
// - moved on adding one backend (random id, weight 1 or from the mix) and on removing one, as a
//   ratio to the optimum: the added backend's ideal share w / (W + w), the removed one's w / W;
// - build time of one table, and its memory (the arrays it keeps).
// Lookup cost: ns per first candidate (pickBackend with every backend eligible) over 200,000 keys.
// Rendezvous, sampled: 1,000,000 keys routed, max/mean of the counts, beside the same statistic
// for an ideal uniform random assignment of as many keys (the sampling noise alone).
import os from 'node:os';
import { buildBalancer, compareBalancers } from '../dist/balancer.js';
import { pickBackend } from '../dist/routing.js';
import { murmur3 } from '../dist/hash.js';

const SETS = Number(process.env.SETS ?? 200);
const SIZES = [3, 10, 100, 1000];
const ALGORITHMS = ['ring', 'rendezvous', 'maglev'];
const HASHING = { vnodes: 160, tableSize: Number(process.env.TABLE_SIZE ?? 65537) };
const CONNECTION_US = 265; // CPU per proxied connection, measured for the daemon (issue 11)

let counter = 0;
const word = new Uint8Array(4);
const view = new DataView(word.buffer);
/** Deterministic pseudo-random 32-bit values (murmur3 of a counter). */
const random32 = (seed = 0x62616c) => {
  view.setUint32(0, counter++, true);
  return murmur3(word, seed);
};
const randomId = () => {
  const a = random32();
  return `10.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}:${9000 + (random32() % 1000)}`;
};
const mixWeight = () => 1 + (random32() % 4); // 1-4

function idSet(n, mixed) {
  const seen = new Set();
  const out = [];
  while (out.length < n) {
    const id = randomId();
    if (seen.has(id)) continue;
    seen.add(id);
    out.push({ id, weight: mixed ? mixWeight() : 1 });
  }
  return out;
}

const all = (b) => Uint8Array.from(b.ids, (_, i) => (b.weights[i] > 0 ? 1 : 0));
const quantile = (values, q) => {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const median = (values) => quantile(values, 0.5);

function maxOverMean(balancer) {
  const shares = balancer.shares(all(balancer));
  let total = 0;
  for (let b = 0; b < shares.length; b++) total += balancer.weights[b];
  let worst = 0;
  for (let b = 0; b < shares.length; b++) if (balancer.weights[b] > 0) worst = Math.max(worst, shares[b] / (balancer.weights[b] / total));
  return worst;
}

function memoryBytes(balancer) {
  switch (balancer.algorithm) {
    case 'ring':
      return balancer.ring.positions.byteLength + balancer.ring.owners.byteLength + (balancer.ring.index?.byteLength ?? 0);
    case 'rendezvous':
      return balancer.weights.byteLength + balancer.seeds.byteLength;
    case 'maglev':
      return balancer.entries.byteLength + balancer.weights.byteLength;
  }
}

function timed(fn) {
  const t0 = process.hrtime.bigint();
  const value = fn();
  return [value, Number(process.hrtime.bigint() - t0) / 1e6];
}

function measure(algorithm, n, mixed) {
  const ratios = [];
  const addRatios = [];
  const removeRatios = [];
  const builds = [];
  let memory = 0;
  for (let set = 0; set < SETS; set++) {
    counter = (n * 1_000_003 + set * 7919 + (mixed ? 1 : 0)) * 1000; // the same id sets for every algorithm
    const members = idSet(n, mixed);
    const [balancer, ms] = timed(() => buildBalancer(members, { algorithm, ...HASHING }));
    builds.push(ms);
    memory = memoryBytes(balancer);
    ratios.push(maxOverMean(balancer));
    const total = members.reduce((a, m) => a + m.weight, 0);
    const extra = { id: `new-${set}`, weight: mixed ? mixWeight() : 1 };
    const grown = buildBalancer([...members, extra], { algorithm, ...HASHING });
    addRatios.push(compareBalancers(balancer, all(balancer), grown, all(grown)).moved / (extra.weight / (total + extra.weight)));
    const gone = members[random32() % n];
    const shrunk = buildBalancer(members.filter((m) => m !== gone), { algorithm, ...HASHING });
    removeRatios.push(compareBalancers(balancer, all(balancer), shrunk, all(shrunk)).moved / (gone.weight / total));
  }
  return { ratios, addRatios, removeRatios, builds, memory };
}

function lookupNs(algorithm, n) {
  counter = n * 31;
  const members = idSet(n, false);
  const balancer = buildBalancer(members, { algorithm, ...HASHING });
  const allowed = { flags: all(balancer), count: n, weight: 0 };
  const keys = Uint32Array.from({ length: 200_000 }, () => random32(7));
  let sink = 0;
  for (let i = 0; i < 20_000; i++) sink += pickBackend(balancer, keys[i], allowed); // warm up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < keys.length; i++) sink += pickBackend(balancer, keys[i], allowed);
  const ns = Number(process.hrtime.bigint() - t0) / keys.length;
  return sink < 0 ? -1 : ns;
}

function sampledRendezvous(n) {
  counter = n * 977;
  const balancer = buildBalancer(idSet(n, false), { algorithm: 'rendezvous', ...HASHING });
  const allowed = { flags: all(balancer), count: n, weight: 0 };
  const keys = 1_000_000;
  const routed = new Float64Array(n);
  const ideal = new Float64Array(n);
  for (let i = 0; i < keys; i++) {
    routed[pickBackend(balancer, random32(3), allowed)]++;
    ideal[random32(4) % n]++;
  }
  const ratio = (c) => Math.max(...c) / (keys / n);
  return [ratio(routed), ratio(ideal)];
}

const f = (x, d = 3) => x.toFixed(d);
const rows = [];
for (const mixed of [false, true]) {
  for (const n of SIZES) {
    for (const algorithm of ALGORITHMS) {
      const m = measure(algorithm, n, mixed);
      rows.push(
        `| ${mixed ? 'mixed 1-4' : 'equal'} | ${n} | ${algorithm} | ${f(median(m.ratios))} | ${f(quantile(m.ratios, 0.99))} | ` +
          `${f(median(m.addRatios), 2)} / ${f(quantile(m.addRatios, 0.99), 2)} | ${f(median(m.removeRatios), 2)} / ${f(quantile(m.removeRatios, 0.99), 2)} | ` +
          `${f(median(m.builds), 2)} | ${(m.memory / 1024).toFixed(1)} |`,
      );
      process.stderr.write(`${rows[rows.length - 1]}\n`);
    }
  }
}
const lookups = [];
for (const n of SIZES) {
  const cells = ALGORITHMS.map((a) => lookupNs(a, n));
  const rdvShare = (cells[1] / 1000 / CONNECTION_US) * 100;
  lookups.push(`| ${n} | ${cells.map((c) => f(c, 0)).join(' | ')} | ${f(rdvShare, 2)}% |`);
  process.stderr.write(`${lookups[lookups.length - 1]}\n`);
}
const sampled = [3, 10, 100, 1000].map((n) => {
  const [routed, ideal] = sampledRendezvous(n);
  return `| ${n} | ${f(routed, 4)} | ${f(ideal, 4)} |`;
});

const date = new Date().toISOString().slice(0, 10);
console.log(`Maglev tableSize ${HASHING.tableSize}. Measured ${date} on ${os.cpus()[0]?.model ?? 'unknown CPU'} (${os.cpus().length} cores, shared), Node ${process.version}, ${SETS} id sets per row.\n`);
console.log('| weights | N | algorithm | max/mean share, median | p99 | moved on add / optimum, median / p99 | moved on remove / optimum, median / p99 | build ms | memory KiB |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of rows) console.log(r);
console.log('\nLookup, ns per first candidate (pickFrom, every backend eligible, 200,000 keys):\n');
console.log(`| N | ring | rendezvous | maglev | rendezvous as a share of ${CONNECTION_US} µs per connection |`);
console.log('| --- | --- | --- | --- | --- |');
for (const r of lookups) console.log(r);
console.log('\nRendezvous sampled, 1,000,000 keys: max/mean of routed counts, and of an ideal uniform random assignment:\n');
console.log('| N | rendezvous | ideal random |');
console.log('| --- | --- | --- |');
for (const r of sampled) console.log(r);
