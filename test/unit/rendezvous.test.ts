// Weighted rendezvous hashing (src/rendezvous.ts, docs/algorithm.md §10): golden vectors, the
// hash and score bit for bit, the failover order, expected shares, and moves that are exactly
// optimal on real keys (issue 11 items 1-3).
import t, { type Test } from 'tap';
import { parseIp } from '../../src/address.js';
import { murmur3 } from '../../src/hash.js';
import { backendHash, buildRendezvous, compareRendezvous, keyBlock, score, type Rendezvous } from '../../src/rendezvous.js';
import type { RingMember } from '../../src/ring.js';
import { clientHash } from '../../src/routing.js';
import { keyHashes } from '../helpers/prng.js';

const GOLDEN_MEMBERS: RingMember[] = [
  { id: 'ws-a', weight: 1 },
  { id: 'ws-b', weight: 2 },
  { id: 'ws-c', weight: 1 },
  { id: 'ws-d', weight: 1 },
];

// Pinned: changing these moves every client of every rendezvous deployment (a breaking change).
// Config: the members above, ipv4Prefix 32, ipv6Prefix 64, every backend eligible; the same
// addresses as the ring's golden vectors. Generated once from the implementation
// (clientHash -> first candidate) and checked by test/crosscheck/balance.py.
const GOLDEN: [string, string][] = [
  ['10.0.0.3', 'ws-a'],
  ['10.7.37.94', 'ws-b'],
  ['10.14.74.185', 'ws-c'],
  ['10.21.111.20', 'ws-a'],
  ['10.28.148.111', 'ws-b'],
  ['10.35.185.202', 'ws-b'],
  ['10.42.222.37', 'ws-c'],
  ['10.49.3.128', 'ws-b'],
  ['10.56.40.219', 'ws-d'],
  ['10.63.77.54', 'ws-a'],
  ['10.70.114.145', 'ws-c'],
  ['10.77.151.236', 'ws-d'],
  ['10.84.188.71', 'ws-c'],
  ['10.91.225.162', 'ws-a'],
  ['10.98.6.253', 'ws-c'],
  ['10.105.43.88', 'ws-b'],
  ['10.112.80.179', 'ws-a'],
  ['10.119.117.14', 'ws-d'],
  ['10.126.154.105', 'ws-b'],
  ['10.133.191.196', 'ws-b'],
  ['10.140.228.31', 'ws-a'],
  ['10.147.9.122', 'ws-b'],
  ['10.154.46.213', 'ws-b'],
  ['10.161.83.48', 'ws-c'],
  ['0.0.0.0', 'ws-b'],
  ['255.255.255.255', 'ws-b'],
  ['127.0.0.1', 'ws-b'],
  ['192.168.0.1', 'ws-c'],
  ['192.168.0.2', 'ws-c'],
  ['172.16.5.4', 'ws-b'],
  ['8.8.8.8', 'ws-b'],
  ['1.1.1.1', 'ws-b'],
  ['::ffff:100.0.0.1', 'ws-d'],
  ['::ffff:101.3.11.30', 'ws-b'],
  ['::ffff:102.6.22.59', 'ws-b'],
  ['::ffff:103.9.33.88', 'ws-d'],
  ['::ffff:104.12.44.117', 'ws-b'],
  ['::ffff:105.15.55.146', 'ws-c'],
  ['::ffff:106.18.66.175', 'ws-c'],
  ['::ffff:107.21.77.204', 'ws-b'],
  ['::ffff:10.1.2.3', 'ws-b'],
  ['10.1.2.3', 'ws-b'],
  ['2001:db8:0:0::1', 'ws-a'],
  ['2001:db8:1f3:2b1::2', 'ws-d'],
  ['2001:db8:3e6:562::3', 'ws-b'],
  ['2001:db8:5d9:813::4', 'ws-b'],
  ['2001:db8:7cc:ac4::5', 'ws-a'],
  ['2001:db8:9bf:d75::6', 'ws-c'],
  ['2001:db8:bb2:1026::7', 'ws-a'],
  ['2001:db8:da5:12d7::8', 'ws-b'],
  ['2001:db8:f98:1588::9', 'ws-c'],
  ['2001:db8:118b:1839::a', 'ws-a'],
  ['2001:db8:137e:1aea::b', 'ws-b'],
  ['2001:db8:1571:1d9b::c', 'ws-c'],
  ['2001:db8:1764:204c::d', 'ws-c'],
  ['2001:db8:1957:22fd::e', 'ws-b'],
  ['::1', 'ws-a'],
  ['::', 'ws-a'],
  ['fe80::1%eth0', 'ws-b'],
  ['2606:4700:4700::1111', 'ws-d'],
  ['2a00:1450:4001:82a::200e', 'ws-d'],
  ['2001:db8:aa:bb::1', 'ws-c'],
  ['2001:db8:aa:bb:ffff:eeee:dddd:cccc', 'ws-c'],
  ['2001:db8:aa:bb:1:2:3:4', 'ws-c'],
];

const ids = (n: number, prefix = 'ws-'): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
const all = (table: Rendezvous, down: string[] = []): Uint8Array =>
  Uint8Array.from(table.ids, (id, b) => (table.weights[b]! > 0 && !down.includes(id) ? 1 : 0));
const hashOf = (address: string): number => clientHash(parseIp(address)!, { ipv4Prefix: 32, ipv6Prefix: 64 });
const first = (table: Rendezvous, hash: number, eligible = all(table)): number => table.candidates(hash, eligible).next();
const drain = (table: Rendezvous, hash: number, eligible: Uint8Array): number[] => {
  const walk = table.candidates(hash, eligible);
  const out: number[] = [];
  for (let b = walk.next(); b >= 0; b = walk.next()) out.push(b);
  if (walk.next() !== -1) out.push(-1); // finished must stay finished: shows up as a wrong order
  return out;
};
/** The preference order computed the slow way: every score, sorted (desc), ties by index. */
const reference = (table: Rendezvous, hash: number, eligible: Uint8Array): number[] => {
  const le = new Uint8Array(4);
  new DataView(le.buffer).setUint32(0, hash, true);
  return table.ids
    .map((_, b) => b)
    .filter((b) => eligible[b] && table.weights[b]! > 0)
    .map((b) => ({ b, s: score(table.weights[b]!, murmur3(le, murmur3(Buffer.from(table.ids[b]!)))) }))
    .sort((x, y) => y.s - x.s || x.b - y.b)
    .map(({ b }) => b);
};

t.test('golden vectors: fixed client addresses go to fixed backend ids', async (t) => {
  const table = buildRendezvous(GOLDEN_MEMBERS);
  t.ok(GOLDEN.length >= 50);
  t.same(
    GOLDEN.map(([address]) => [address, table.ids[first(table, hashOf(address))]]),
    GOLDEN,
  );
  t.same([...new Set(GOLDEN.map(([, id]) => id))].sort(), ['ws-a', 'ws-b', 'ws-c', 'ws-d'], 'every backend is exercised');
  t.equal(first(table, hashOf('::ffff:10.1.2.3')), first(table, hashOf('10.1.2.3')), 'mapped = IPv4');
  t.equal(first(table, hashOf('2001:db8:aa:bb::1')), first(table, hashOf('2001:db8:aa:bb:ffff:eeee:dddd:cccc')), 'one /64');
});

t.test('the worked example of docs/algorithm.md §10, value by value', async (t) => {
  const table = buildRendezvous([
    { id: 'ws-a', weight: 1 },
    { id: 'ws-b', weight: 2 },
    { id: 'ws-c', weight: 1 },
  ]);
  t.same(Array.from(table.seeds), [0xc249cd6f, 0xab779203, 0x1d61404b], 'seed = murmur3(utf8(id))');
  const k = hashOf('192.0.2.10');
  t.equal(k, 0x199644be);
  const le = Uint8Array.of(0xbe, 0x44, 0x96, 0x19);
  const r = Array.from(table.seeds, (seed) => murmur3(le, seed));
  t.same(r, [0x8d11ced7, 0xe5f01123, 0x6aecf17f], 'r = murmur3(le32(K), seed)');
  t.same(r.map((x, b) => score(table.weights[b]!, x)), [1.6780654144057243, 18.6273896983559, 1.145416916175179], 'scores');
  t.same(drain(table, k, all(table)).map((b) => table.ids[b]), ['ws-b', 'ws-a', 'ws-c']);
  t.same(drain(table, hashOf('2001:db8:1:2:3:4:5:6'), all(table)).map((b) => table.ids[b]), ['ws-b', 'ws-c', 'ws-a']);
  t.same(Array.from(table.shares(all(table))), [0.25, 0.5, 0.25]);
});

t.test('backendHash is murmur3(le32(K), seed) of src/hash.ts', async (t) => {
  const le = new Uint8Array(4);
  const view = new DataView(le.buffer);
  const ks = keyHashes(5000, 1);
  const seeds = keyHashes(5000, 2);
  let wrong = 0;
  for (let i = 0; i < ks.length; i++) {
    view.setUint32(0, ks[i]!, true);
    if (backendHash(seeds[i]!, keyBlock(ks[i]!)) !== murmur3(le, seeds[i]!)) wrong++;
  }
  t.equal(wrong, 0, 'pairs where the unrolled hash differs from murmur3');
  for (const extreme of [0, 1, 0xffffffff]) {
    view.setUint32(0, extreme, true);
    const table = buildRendezvous([{ id: 'x', weight: 1 }]);
    t.equal(backendHash(table.seeds[0]!, keyBlock(extreme)), murmur3(le, table.seeds[0]!), `K = ${extreme}`);
  }
});

t.test('score: h strictly inside (0,1), finite and positive at both ends of r', async (t) => {
  for (const r of [0, 1, 2 ** 31, 2 ** 32 - 1]) {
    const s = score(1, r);
    t.ok(Number.isFinite(s) && s > 0, `r = ${r}: score ${s}`);
  }
  t.ok(score(1, 2 ** 32 - 1) > score(1, 2 ** 32 - 2), 'distinct r near 1 stay distinct');
  t.ok(score(1, 1) > score(1, 0), 'and near 0');
  t.equal(score(2, 12345), 2 * score(1, 12345), 'linear in the weight');
});

t.test('failover order: a permutation of the eligible, no repeats, by descending score', async (t) => {
  const members = ids(40).map((id, i) => ({ id, weight: i % 7 === 0 ? 0 : 1 + (i % 4) }));
  const table = buildRendezvous(members);
  const down = ['ws-3', 'ws-17', 'ws-22'];
  const eligible = all(table, down);
  const expectedSet = table.ids.map((_, b) => b).filter((b) => eligible[b]);
  let notPermutation = 0;
  let wrongOrder = 0;
  let wrongFirst = 0;
  for (const hash of keyHashes(2000)) {
    const order = drain(table, hash, eligible);
    if (order.length !== expectedSet.length || new Set(order).size !== order.length) notPermutation++;
    if (order.join() !== reference(table, hash, eligible).join()) wrongOrder++;
    if (first(table, hash, eligible) !== order[0]) wrongFirst++;
  }
  t.equal(notPermutation, 0, 'orders that are not a permutation of the eligible backends');
  t.equal(wrongOrder, 0, 'orders that differ from sorting every score');
  t.equal(wrongFirst, 0, 'first candidates (the log-skipping pass) that differ');
  t.equal(first(table, 1, new Uint8Array(table.ids.length)), -1, 'nothing eligible: -1 at once');
});

t.test('the log-skipping first pass agrees with every score on 10,000 keys, weights 1-10,000', async (t) => {
  const members = ids(200).map((id, i) => ({ id, weight: [1, 2, 3, 10, 100, 9999, 10_000][i % 7]! }));
  const table = buildRendezvous(members);
  const eligible = all(table);
  let wrong = 0;
  for (const hash of keyHashes(10_000, 9)) if (first(table, hash, eligible) !== reference(table, hash, eligible)[0]) wrong++;
  t.equal(wrong, 0);
});

// A real seed collision, found by a search over ids `tie-0`..: murmur3('tie-74770') =
// murmur3('tie-156281') = 639048272. Two such backends score every key alike, so the tie rule
// decides every key: the lower id ('tie-156281' < 'tie-74770' in byte order) always wins.
t.test('equal scores go to the lower id (a real seed collision)', async (t) => {
  t.equal(murmur3(Buffer.from('tie-74770')), 639048272);
  t.equal(murmur3(Buffer.from('tie-156281')), 639048272);
  const table = buildRendezvous([{ id: 'tie-74770', weight: 1 }, { id: 'tie-156281', weight: 1 }, { id: 'ws-x', weight: 1 }]);
  t.same(table.ids, ['tie-156281', 'tie-74770', 'ws-x']);
  let higherFirst = 0;
  let lowerNotNext = 0;
  for (const hash of keyHashes(3000)) {
    const order = drain(table, hash, all(table));
    if (order.indexOf(1) < order.indexOf(0)) higherFirst++;
    if (order.indexOf(1) !== order.indexOf(0) + 1) lowerNotNext++;
  }
  t.equal(higherFirst, 0, 'keys where tie-74770 came before tie-156281');
  t.equal(lowerNotNext, 0, 'keys where the tied pair was split (equal scores are adjacent)');
  const heavier = buildRendezvous([{ id: 'tie-74770', weight: 2 }, { id: 'tie-156281', weight: 1 }]);
  t.equal(first(heavier, 12345), heavier.ids.indexOf('tie-74770'), 'with unequal weights the heavier one wins the same r');
});

t.test('the table does not depend on the order of members; weight 0 never serves', async (t) => {
  const members = [...GOLDEN_MEMBERS, { id: 'ws-z', weight: 0 }];
  const a = buildRendezvous(members);
  const b = buildRendezvous([...members].reverse());
  t.same([a.ids, Array.from(a.weights), Array.from(a.seeds)], [b.ids, Array.from(b.weights), Array.from(b.seeds)]);
  const z = a.ids.indexOf('ws-z');
  const everything = Uint8Array.from(a.ids, () => 1); // even flagged eligible
  let served = 0;
  for (const hash of keyHashes(2000)) if (drain(a, hash, everything).includes(z)) served++;
  t.equal(served, 0, 'keys for which ws-z was a candidate');
  t.equal(a.shares(everything)[z], 0);
  t.ok(Object.isFrozen(a));
});

t.test('shares are w / W of the eligible, sum to 1, and match 200,000 sampled keys', async (t) => {
  const table = buildRendezvous(ids(8).map((id, i) => ({ id, weight: 1 + (i % 3) })));
  const eligible = all(table, ['ws-1']);
  const s = Array.from(table.shares(eligible));
  const total = table.weights.reduce((sum, w, b) => sum + (eligible[b] ? w : 0), 0);
  t.same(s, table.ids.map((_, b) => (eligible[b] ? table.weights[b]! / total : 0)));
  t.ok(Math.abs(s.reduce((a, b) => a + b, 0) - 1) < 1e-12, 'sum 1');
  t.same(Array.from(table.shares(new Uint8Array(8))), new Array(8).fill(0), 'nothing eligible: all 0');
  const samples = 200_000;
  const tally = new Array<number>(8).fill(0);
  for (const hash of keyHashes(samples, 3)) tally[first(table, hash, eligible)]!++;
  for (let b = 0; b < 8; b++) {
    const observed = tally[b]! / samples;
    const sigma = Math.sqrt((s[b]! * (1 - s[b]!)) / samples);
    t.ok(Math.abs(observed - s[b]!) <= 4 * sigma, `${table.ids[b]}: observed ${observed.toFixed(4)}, expected ${s[b]!.toFixed(4)}`);
  }
});

// ---- moves: exactly optimal on real keys --------------------------------------------------

const close = (t: Test, actual: number, expected: number, message: string): void => {
  t.ok(Math.abs(actual - expected) < 1e-12, `${message}: ${actual} vs ${expected}`);
};

/** Route `count` keys through both tables; what moved, by (from, to) id. */
function sampleMoves(before: Rendezvous, eb: Uint8Array, after: Rendezvous, ea: Uint8Array, count: number) {
  let moved = 0;
  const pairs = new Map<string, number>();
  for (const hash of keyHashes(count, 11)) {
    const from = before.ids[first(before, hash, eb)];
    const to = after.ids[first(after, hash, ea)];
    if (from === to) continue;
    moved++;
    pairs.set(`${from}>${to}`, (pairs.get(`${from}>${to}`) ?? 0) + 1);
  }
  return { fraction: moved / count, pairs };
}

t.test('adding one backend to N: every moved key moves to it; expected moved exactly 1/(N+1)', async (t) => {
  for (const n of [3, 10, 100]) {
    const before = buildRendezvous(ids(n).map((id) => ({ id, weight: 1 })));
    const after = buildRendezvous(ids(n + 1).map((id) => ({ id, weight: 1 })));
    const added = `ws-${n}`;
    const samples = 40_000;
    const { fraction, pairs } = sampleMoves(before, all(before), after, all(after), samples);
    t.ok([...pairs.keys()].every((p) => p.endsWith(`>${added}`)), `N=${n}: moved only to ${added}`);
    const expected = 1 / (n + 1);
    t.ok(Math.abs(fraction - expected) <= 4 * Math.sqrt((expected * (1 - expected)) / samples), `N=${n}: sampled ${fraction.toFixed(4)} ~ ${expected.toFixed(4)}`);
    const change = compareRendezvous(before, all(before), after, all(after));
    close(t, change.moved, expected, `N=${n}: expected moved`);
    t.same([...change.movedTo.keys()], [added]);
    t.equal(change.basis, 'expected');
  }
});

t.test('removing, downing or draining one backend: every moved key moves from it; exactly 1/N', async (t) => {
  for (const n of [3, 10, 100]) {
    const before = buildRendezvous(ids(n).map((id) => ({ id, weight: 1 })));
    const removed = `ws-${n - 1}`;
    const after = buildRendezvous(ids(n - 1).map((id) => ({ id, weight: 1 })));
    const { pairs } = sampleMoves(before, all(before), after, all(after), 20_000);
    t.ok([...pairs.keys()].every((p) => p.startsWith(`${removed}>`)), `N=${n}: removal moved only from ${removed}`);
    close(t, compareRendezvous(before, all(before), after, all(after)).moved, 1 / n, `N=${n} removal`);
    const down = sampleMoves(before, all(before), before, all(before, [removed]), 20_000);
    t.ok([...down.pairs.keys()].every((p) => p.startsWith(`${removed}>`)), `N=${n}: down moved only from ${removed}`);
    const change = compareRendezvous(before, all(before), before, all(before, [removed]));
    close(t, change.moved, 1 / n, `N=${n} down`);
    t.same([...change.movedFrom.keys()], [removed]);
  }
});

t.test('a weight change moves keys only toward (or away from) that backend, as expected', async (t) => {
  const members = ids(6).map((id, i) => ({ id, weight: 1 + (i % 2) }));
  const before = buildRendezvous(members);
  const after = buildRendezvous(members.map((m) => (m.id === 'ws-2' ? { ...m, weight: 4 } : m)));
  const samples = 100_000;
  const { fraction, pairs } = sampleMoves(before, all(before), after, all(after), samples);
  t.ok([...pairs.keys()].every((p) => p.endsWith('>ws-2')), `moved only to ws-2: ${[...pairs.keys()].join(' ')}`);
  const change = compareRendezvous(before, all(before), after, all(after));
  // Gain of ws-2: 4/12 - 1/9 (W 9 -> 12).
  close(t, change.moved, 4 / 12 - 1 / 9, 'expected moved = the gain of ws-2');
  t.ok(Math.abs(fraction - change.moved) <= 4 * Math.sqrt((change.moved * (1 - change.moved)) / samples), `sampled ${fraction.toFixed(4)}`);
  // And a change that is not one backend's: two weights swap. The formula, against sampling.
  const swapped = buildRendezvous(members.map((m) => ({ ...m, weight: m.id === 'ws-0' ? 2 : m.id === 'ws-1' ? 1 : m.weight })));
  const swap = compareRendezvous(before, all(before), swapped, all(swapped));
  const observed = sampleMoves(before, all(before), swapped, all(swapped), samples).fraction;
  t.ok(Math.abs(observed - swap.moved) <= 4 * Math.sqrt((swap.moved * (1 - swap.moved)) / samples), `swap: sampled ${observed.toFixed(4)}, expected ${swap.moved.toFixed(4)}`);
  const lost = [...swap.movedFrom.values()].reduce((a, b) => a + b, 0);
  const gained = [...swap.movedTo.values()].reduce((a, b) => a + b, 0);
  close(t, lost, swap.moved, 'from adds up');
  close(t, gained, swap.moved, 'to adds up');
});

t.test('identical tables move nothing; from or to nobody moves everything', async (t) => {
  const a = buildRendezvous(GOLDEN_MEMBERS);
  const b = buildRendezvous([...GOLDEN_MEMBERS].reverse());
  const same = compareRendezvous(a, all(a), b, all(b));
  t.same([same.moved, same.movedFrom.size, same.movedTo.size], [0, 0, 0]);
  const empty = buildRendezvous([]);
  t.equal(compareRendezvous(empty, [], empty, []).moved, 0);
  const fromNobody = compareRendezvous(empty, [], a, all(a));
  t.equal(fromNobody.moved, 1);
  t.same(Object.fromEntries(fromNobody.movedTo), { 'ws-a': 0.2, 'ws-b': 0.4, 'ws-c': 0.2, 'ws-d': 0.2 });
  t.equal(compareRendezvous(a, all(a), a, new Uint8Array(4)).moved, 1, 'everything down');
});
