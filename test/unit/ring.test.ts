// The consistent-hash ring (src/ring.ts): golden vectors, construction invariants, exact shares
// and exact moves over the whole 32-bit hash space.
import t, { type Test } from 'tap';
import { clientKey, parseIp } from '../../src/address.js';
import { keyHash, murmur3 } from '../../src/hash.js';
import {
  buildRing,
  compareRings,
  findPoint,
  HASH_SPACE,
  servingOwners,
  shares,
  type Ring,
  type RingMember,
} from '../../src/ring.js';
import { ringBalancer } from '../../src/balancer.js';
import { eligibility, pickBackend } from '../../src/routing.js';

// ---- helpers ----------------------------------------------------------------------------------

const VNODES = 160;
const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `ws-${String.fromCharCode(97 + i)}`);
const equal = (list: string[], weight = 1): RingMember[] => list.map((id) => ({ id, weight }));
/** Eligibility flags with every backend of `ring` eligible except those in `down`. */
const flags = (ring: Ring, down: string[] = []): Uint8Array =>
  Uint8Array.from(ring.ids, (id) => (down.includes(id) ? 0 : 1));
/** Per-id view of an array indexed like ring.ids. */
const byId = (ring: Ring, values: ArrayLike<number>): Record<string, number> =>
  Object.fromEntries(ring.ids.map((id, b) => [id, values[b]!]));
const sum = (values: Iterable<number>): number => [...values].reduce((a, b) => a + b, 0);
const shareOf = (ring: Ring, id: string, eligible = flags(ring)): number => shares(ring, eligible)[ring.ids.indexOf(id)]!;
/** A plain snapshot of a ring for t.same. */
const snapshot = (ring: Ring) => ({
  ids: [...ring.ids],
  weights: [...ring.weights],
  positions: Array.from(ring.positions),
  owners: Array.from(ring.owners),
});
/** Deterministic Fisher-Yates shuffle driven by murmur3. */
const shuffle = <T>(list: readonly T[], seed: number): T[] => {
  const out = [...list];
  for (let i = out.length - 1; i > 0; i--) {
    const j = murmur3(Buffer.from(`shuffle ${seed} ${i}`)) % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
};

// ---- golden vectors ---------------------------------------------------------------------------

const GOLDEN_MEMBERS: RingMember[] = [
  { id: 'ws-a', weight: 1 },
  { id: 'ws-b', weight: 2 },
  { id: 'ws-c', weight: 1 },
  { id: 'ws-d', weight: 1 },
];

// Pinned: changing these vectors moves every client of every deployment; it is a breaking change.
// Config: the members above, vnodes 160, ipv4Prefix 32, ipv6Prefix 64, every backend eligible.
// Generated once from the implementation (parseIp -> clientKey -> keyHash -> pickBackend).
const GOLDEN: [string, string][] = [
  ['10.0.0.3', 'ws-a'],
  ['10.7.37.94', 'ws-d'],
  ['10.14.74.185', 'ws-c'],
  ['10.21.111.20', 'ws-b'],
  ['10.28.148.111', 'ws-a'],
  ['10.35.185.202', 'ws-b'],
  ['10.42.222.37', 'ws-b'],
  ['10.49.3.128', 'ws-a'],
  ['10.56.40.219', 'ws-c'],
  ['10.63.77.54', 'ws-d'],
  ['10.70.114.145', 'ws-b'],
  ['10.77.151.236', 'ws-b'],
  ['10.84.188.71', 'ws-a'],
  ['10.91.225.162', 'ws-c'],
  ['10.98.6.253', 'ws-d'],
  ['10.105.43.88', 'ws-a'],
  ['10.112.80.179', 'ws-b'],
  ['10.119.117.14', 'ws-c'],
  ['10.126.154.105', 'ws-b'],
  ['10.133.191.196', 'ws-a'],
  ['10.140.228.31', 'ws-c'],
  ['10.147.9.122', 'ws-b'],
  ['10.154.46.213', 'ws-d'],
  ['10.161.83.48', 'ws-a'],
  ['0.0.0.0', 'ws-a'],
  ['255.255.255.255', 'ws-c'],
  ['127.0.0.1', 'ws-d'],
  ['192.168.0.1', 'ws-a'],
  ['192.168.0.2', 'ws-c'],
  ['172.16.5.4', 'ws-c'],
  ['8.8.8.8', 'ws-d'],
  ['1.1.1.1', 'ws-b'],
  ['::ffff:100.0.0.1', 'ws-b'],
  ['::ffff:101.3.11.30', 'ws-c'],
  ['::ffff:102.6.22.59', 'ws-b'],
  ['::ffff:103.9.33.88', 'ws-a'],
  ['::ffff:104.12.44.117', 'ws-d'],
  ['::ffff:105.15.55.146', 'ws-b'],
  ['::ffff:106.18.66.175', 'ws-a'],
  ['::ffff:107.21.77.204', 'ws-b'],
  ['::ffff:10.1.2.3', 'ws-a'],
  ['10.1.2.3', 'ws-a'],
  ['2001:db8:0:0::1', 'ws-b'],
  ['2001:db8:1f3:2b1::2', 'ws-b'],
  ['2001:db8:3e6:562::3', 'ws-b'],
  ['2001:db8:5d9:813::4', 'ws-b'],
  ['2001:db8:7cc:ac4::5', 'ws-b'],
  ['2001:db8:9bf:d75::6', 'ws-b'],
  ['2001:db8:bb2:1026::7', 'ws-a'],
  ['2001:db8:da5:12d7::8', 'ws-c'],
  ['2001:db8:f98:1588::9', 'ws-a'],
  ['2001:db8:118b:1839::a', 'ws-b'],
  ['2001:db8:137e:1aea::b', 'ws-c'],
  ['2001:db8:1571:1d9b::c', 'ws-b'],
  ['2001:db8:1764:204c::d', 'ws-b'],
  ['2001:db8:1957:22fd::e', 'ws-b'],
  ['::1', 'ws-b'],
  ['::', 'ws-b'],
  ['fe80::1%eth0', 'ws-d'],
  ['2606:4700:4700::1111', 'ws-b'],
  ['2a00:1450:4001:82a::200e', 'ws-c'],
  ['2001:db8:aa:bb::1', 'ws-a'],
  ['2001:db8:aa:bb:ffff:eeee:dddd:cccc', 'ws-a'],
  ['2001:db8:aa:bb:1:2:3:4', 'ws-a'],
];

const route = (ring: Ring, address: string): string => {
  const ip = parseIp(address);
  if (ip === null) return `(${address} does not parse)`;
  const b = pickBackend(ringBalancer(ring), keyHash(clientKey(ip, 32, 64)), eligibility(ring, () => true));
  return b < 0 ? '(none)' : ring.ids[b]!;
};

t.test('golden vectors: fixed client addresses go to fixed backend ids', async (t) => {
  const ring = buildRing(GOLDEN_MEMBERS, VNODES);
  t.ok(GOLDEN.length >= 60);
  t.same(
    GOLDEN.map(([address]) => [address, route(ring, address)]),
    GOLDEN,
    'client address -> backend id',
  );
  t.same([...new Set(GOLDEN.map(([, id]) => id))].sort(), ['ws-a', 'ws-b', 'ws-c', 'ws-d'], 'every backend is exercised');
  // Pairs that differ only in what the key ignores route together.
  t.equal(route(ring, '::ffff:10.1.2.3'), route(ring, '10.1.2.3'));
  t.equal(route(ring, '2001:db8:aa:bb::1'), route(ring, '2001:db8:aa:bb:ffff:eeee:dddd:cccc'));
  t.equal(route(ring, 'fe80::1%eth0'), route(ring, 'fe80::1'));
});

t.test('golden raw values: ring positions and key hashes', async (t) => {
  const ring = buildRing(GOLDEN_MEMBERS, VNODES);
  t.equal(ring.positions.length, 5 * VNODES);
  t.same(Array.from(ring.positions.subarray(0, 5)), [955641, 27707553, 33742793, 34945689, 38469816]);
  t.same(Array.from(ring.owners.subarray(0, 5), (o) => ring.ids[o]), ['ws-b', 'ws-d', 'ws-b', 'ws-b', 'ws-b']);
  t.equal(keyHash(Uint8Array.of(10, 0, 0, 1)), 1557541978);
  t.equal(keyHash(clientKey(parseIp('::ffff:10.0.0.1')!, 32, 64)), 1557541978);
  t.equal(keyHash(clientKey(parseIp('2001:db8::1')!, 32, 64)), 1199165800);
});

// ---- construction -----------------------------------------------------------------------------

t.test('the ring does not depend on the order of members', async (t) => {
  const members: RingMember[] = [
    ...GOLDEN_MEMBERS,
    { id: 'ws-e', weight: 3 },
    { id: 'ws-z', weight: 0 },
    { id: '10.0.0.11:9000', weight: 1 },
    { id: '[::1]:9000', weight: 2 },
  ];
  const reference = snapshot(buildRing(members, VNODES));
  t.same(reference.ids, [...members.map((m) => m.id)].sort(), 'ids ascending');
  for (let seed = 1; seed <= 6; seed++) {
    const order = shuffle(members, seed);
    t.same(snapshot(buildRing(order, VNODES)), reference, `order ${order.map((m) => m.id).join(' ')}`);
  }
  t.same(snapshot(buildRing([...members].reverse(), VNODES)), reference, 'reversed');
});

t.test('sort invariant: positions ascending, equal positions by id; point counts', async (t) => {
  const members: RingMember[] = ids(10).map((id, i) => ({ id, weight: (i % 3) + 1 }));
  const ring = buildRing(members, VNODES);
  let disorder = 0;
  let badOwner = 0;
  for (let i = 0; i < ring.positions.length; i++) {
    if (ring.owners[i]! >= ring.ids.length) badOwner++;
    if (i === 0) continue;
    const [p0, p1] = [ring.positions[i - 1]!, ring.positions[i]!];
    if (p0 > p1 || (p0 === p1 && ring.ids[ring.owners[i - 1]!]! >= ring.ids[ring.owners[i]!]!)) disorder++;
  }
  t.equal(disorder, 0, 'adjacent points out of order');
  t.equal(badOwner, 0, 'owners that are not an index of ring.ids');
  const counts: Record<string, number> = {};
  for (const o of ring.owners) counts[ring.ids[o]!] = (counts[ring.ids[o]!] ?? 0) + 1;
  t.same(counts, Object.fromEntries(members.map((m) => [m.id, VNODES * m.weight])), 'points per backend = vnodes x weight');
  t.same(ring.weights, ring.ids.map((id) => members.find((m) => m.id === id)!.weight), 'weights indexed like ids');
  t.ok(Object.isFrozen(ring), 'the ring is frozen');
});

// Two real point collisions, found by a search over ids `tie-0`..: point 93 of `tie-104` and
// point 68 of `tie-127` both hash to 3508518327, and point 68 of `tie-104` and point 93 of
// `tie-127` both hash to 4134649649.
t.test('equal positions are ordered by id, whatever the member order', async (t) => {
  const TIES = [3508518327, 4134649649];
  t.equal(murmur3(Buffer.from('tie-104\x0093')), TIES[0]);
  t.equal(murmur3(Buffer.from('tie-127\x0068')), TIES[0]);
  t.equal(murmur3(Buffer.from('tie-104\x0068')), TIES[1]);
  t.equal(murmur3(Buffer.from('tie-127\x0093')), TIES[1]);
  const members = [{ id: 'tie-127', weight: 1 }, { id: 'ws-x', weight: 1 }, { id: 'tie-104', weight: 1 }];
  const ring = buildRing(members, VNODES);
  t.same(snapshot(buildRing([...members].reverse(), VNODES)), snapshot(ring), 'member order does not matter');
  for (const tie of TIES) {
    const at = findPoint(ring, tie);
    t.equal(ring.positions[at], tie);
    t.equal(ring.positions[at + 1], tie);
    t.same([ring.ids[ring.owners[at]!], ring.ids[ring.owners[at + 1]!]], ['tie-104', 'tie-127'], `tie at ${tie}`);
    // A key on the tie belongs to the lower id; with it down, to the other tied point's owner.
    t.equal(ring.ids[pickBackend(ringBalancer(ring), tie, eligibility(ring, () => true))], 'tie-104');
    const down104 = eligibility(ring, (b) => ring.ids[b] !== 'tie-104');
    t.equal(ring.ids[pickBackend(ringBalancer(ring), tie, down104)], 'tie-127');
  }
  const s = shares(ring, flags(ring));
  t.ok(Math.abs(sum(s) - 1) < 1e-12, 'shares still sum to 1 with ties');
  const without = buildRing(members.filter((m) => m.id !== 'tie-104'), VNODES);
  const change = compareRings(ring, flags(ring), without, flags(without));
  t.ok(Math.abs(change.moved - shareOf(ring, 'tie-104')) < 1e-12, 'removing a tied backend moves exactly its share');
  t.same([...change.movedFrom.keys()], ['tie-104']);
});

t.test('weight 0 gets no points and no share; weight 2 about twice weight 1', async (t) => {
  const ring = buildRing([...GOLDEN_MEMBERS, { id: 'ws-z', weight: 0 }], VNODES);
  const z = ring.ids.indexOf('ws-z');
  t.ok(z >= 0, 'a weight-0 backend is still a member');
  t.notOk(ring.owners.includes(z), 'it owns no point');
  const s = byId(ring, shares(ring, flags(ring)));
  t.equal(s['ws-z'], 0);
  const meanOfWeight1 = (s['ws-a']! + s['ws-c']! + s['ws-d']!) / 3;
  const ratio = s['ws-b']! / meanOfWeight1;
  t.ok(ratio > 1.7 && ratio < 2.3, `weight 2 / weight 1 share ratio ${ratio.toFixed(3)} is about 2`);
});

t.test('buildRing of no members, or only weight 0, is an empty ring', async (t) => {
  for (const members of [[], [{ id: 'ws-z', weight: 0 }]]) {
    const ring = buildRing(members, VNODES);
    t.equal(ring.positions.length, 0);
    t.equal(ring.owners.length, 0);
    t.same(Array.from(shares(ring, flags(ring))), members.map(() => 0));
  }
});

// ---- lookup -----------------------------------------------------------------------------------

// A hand-made ring, as groupcache's test does it: points at 10 (a), 20 (b), 30 (a).
const HAND: Ring = {
  ids: ['a', 'b'],
  weights: [2, 1],
  positions: Uint32Array.of(10, 20, 30),
  owners: Uint32Array.of(0, 1, 0),
};

t.test('findPoint: first point at or after the hash, wrapping to point 0', async (t) => {
  const cases: [number, number][] = [
    [0, 0],
    [9, 0],
    [10, 0],
    [11, 1],
    [20, 1],
    [21, 2],
    [30, 2],
    [31, 0],
    [HASH_SPACE - 1, 0],
  ];
  t.same(cases.map(([hash]) => [hash, findPoint(HAND, hash)]), cases);
  const empty = buildRing([], VNODES);
  t.equal(findPoint(empty, 0), -1);
  t.equal(findPoint(empty, 12345), -1);
});

t.test('findPoint on a real ring: exact positions, one past, and past the last point', async (t) => {
  const ring = buildRing(GOLDEN_MEMBERS, VNODES);
  const last = ring.positions.length - 1;
  t.ok(ring.positions[0]! > 0 && ring.positions[last]! < HASH_SPACE - 1, 'the test needs room at both ends');
  t.equal(findPoint(ring, 0), 0);
  let wrong = 0;
  for (let i = 0; i < ring.positions.length; i++) {
    if (ring.positions[i] === ring.positions[i - 1]) continue;
    if (findPoint(ring, ring.positions[i]!) !== i) wrong++;
    if (findPoint(ring, ring.positions[i]! + 1) !== (i === last ? 0 : i + 1)) wrong++;
  }
  t.equal(wrong, 0, 'points not found at their own position or one past it');
  t.equal(findPoint(ring, ring.positions[last]! + 1), 0);
  t.equal(findPoint(ring, HASH_SPACE - 1), 0);
});

// ---- shares -----------------------------------------------------------------------------------

t.test('shares and servingOwners on the hand-made ring', async (t) => {
  // arcs: point 0 owns (30, 2^32) and [0, 10], point 1 owns (10, 20], point 2 owns (20, 30]
  t.same(Array.from(shares(HAND, [1, 1])), [(HASH_SPACE - 10) / HASH_SPACE, 10 / HASH_SPACE]);
  t.same(Array.from(servingOwners(HAND, [1, 0])), [0, 0, 0]);
  t.same(Array.from(servingOwners(HAND, [0, 1])), [1, 1, 1]);
  t.same(Array.from(servingOwners(HAND, [0, 0])), [-1, -1, -1]);
  t.same(Array.from(shares(HAND, [1, 0])), [1, 0]);
  t.same(Array.from(shares(HAND, [0, 0])), [0, 0]);
});

t.test('shares sum to 1 when any backend is eligible, 0 when none is', async (t) => {
  const ring = buildRing(ids(6).map((id, i) => ({ id, weight: i % 3 })), VNODES); // weights 0,1,2,0,1,2
  for (let mask = 0; mask < 1 << ring.ids.length; mask++) {
    const eligible = Uint8Array.from(ring.ids, (_, b) => ((mask >> b) & 1) * (ring.weights[b]! > 0 ? 1 : 0));
    const total = sum(shares(ring, eligible));
    const any = eligible.some((e) => e === 1);
    if (any) t.ok(Math.abs(total - 1) < 1e-12, `mask ${mask}: sum ${total}`);
    else t.equal(total, 0, `mask ${mask}: nothing eligible`);
  }
});

t.test("an ineligible backend's share goes entirely to the others", async (t) => {
  const ring = buildRing(equal(ids(5)), VNODES);
  const up = shares(ring, flags(ring));
  for (const id of ring.ids) {
    const down = shares(ring, flags(ring, [id]));
    const b = ring.ids.indexOf(id);
    t.equal(down[b], 0, `${id} down has share 0`);
    const gains = ring.ids.map((_, o) => (o === b ? 0 : down[o]! - up[o]!));
    t.ok(gains.every((g) => g >= 0), `${id} down: nobody else loses`);
    t.ok(Math.abs(sum(gains) - up[b]!) < 1e-12, `${id} down: the others gain exactly its share`);
  }
});

t.test('balance: 10 equal backends at 160 vnodes stay within 15% of the mean share', async (t) => {
  const natural = [ids(10), Array.from({ length: 10 }, (_, i) => `10.0.0.${11 + i}:9000`)];
  for (const list of natural) {
    const ring = buildRing(equal(list), VNODES);
    const s = Array.from(shares(ring, flags(ring)));
    const mean = sum(s) / s.length;
    const max = Math.max(...s) / mean;
    const min = Math.min(...s) / mean;
    t.ok(max <= 1.15, `${list[0]}..${list[9]}: max/mean ${max.toFixed(4)}, min/mean ${min.toFixed(4)}`);
  }
});

// ---- moves ------------------------------------------------------------------------------------

const close = (t: Test, actual: number, expected: number, message: string): void => {
  t.ok(Math.abs(actual - expected) < 1e-12, `${message}: ${actual} vs ${expected}`);
};

t.test('adding one backend to N moves about 1/(N+1), all of it to the new backend', async (t) => {
  for (const n of [3, 5, 10]) {
    const before = buildRing(equal(ids(n)), VNODES);
    const after = buildRing(equal(ids(n + 1)), VNODES);
    const added = ids(n + 1)[n]!;
    const change = compareRings(before, flags(before), after, flags(after));
    const expected = 1 / (n + 1);
    t.ok(
      Math.abs(change.moved - expected) <= 0.25 * expected,
      `N=${n}: moved ${change.moved.toFixed(4)}, 1/(N+1) = ${expected.toFixed(4)}`,
    );
    t.same([...change.movedTo.keys()], [added], `N=${n}: only to ${added}`);
    t.equal(change.movedTo.get(added), change.moved);
    close(t, change.moved, shareOf(after, added), `N=${n}: moved = new share`);
    t.ok([...change.movedFrom.keys()].every((id) => ids(n).includes(id)), `N=${n}: only from old backends`);
    close(t, sum(change.movedFrom.values()), change.moved, `N=${n}: from adds up`);
  }
});

t.test('removing one backend moves exactly its share, only from it', async (t) => {
  for (const n of [3, 5, 10]) {
    const before = buildRing(equal(ids(n)), VNODES);
    for (const removed of [ids(n)[0]!, ids(n)[n - 1]!]) {
      const after = buildRing(equal(ids(n).filter((id) => id !== removed)), VNODES);
      const change = compareRings(before, flags(before), after, flags(after));
      close(t, change.moved, shareOf(before, removed), `N=${n} remove ${removed}`);
      t.same([...change.movedFrom.keys()], [removed]);
      t.notOk(change.movedTo.has(removed));
      close(t, sum(change.movedTo.values()), change.moved, 'to adds up');
    }
  }
});

t.test('a backend going down moves its share away; coming back moves it back', async (t) => {
  const ring = buildRing(GOLDEN_MEMBERS, VNODES);
  for (const id of ring.ids) {
    const share = shareOf(ring, id);
    const down = compareRings(ring, flags(ring), ring, flags(ring, [id]));
    close(t, down.moved, share, `${id} down`);
    t.same([...down.movedFrom.keys()], [id], `${id} down: only from ${id}`);
    t.notOk(down.movedTo.has(id));
    const back = compareRings(ring, flags(ring, [id]), ring, flags(ring));
    close(t, back.moved, share, `${id} back`);
    t.same([...back.movedTo.keys()], [id], `${id} back: only to ${id}`);
    t.same(Object.fromEntries(back.movedFrom), Object.fromEntries(down.movedTo), `${id} back: returns what it gave`);
  }
});

t.test('identical rings move nothing', async (t) => {
  const ring = buildRing(GOLDEN_MEMBERS, VNODES);
  const same = buildRing(shuffle(GOLDEN_MEMBERS, 7), VNODES);
  for (const other of [ring, same]) {
    const change = compareRings(ring, flags(ring), other, flags(other));
    t.equal(change.moved, 0);
    t.equal(change.movedFrom.size, 0);
    t.equal(change.movedTo.size, 0);
  }
  const empty = buildRing([], VNODES);
  t.equal(compareRings(empty, [], empty, []).moved, 0, 'two empty rings');
});

t.test('from an empty ring to one backend moves everything to it', async (t) => {
  const empty = buildRing([], VNODES);
  const one = buildRing([{ id: 'ws-a', weight: 1 }], VNODES);
  const change = compareRings(empty, [], one, [1]);
  t.equal(change.moved, 1);
  t.same(Object.fromEntries(change.movedTo), { 'ws-a': 1 });
  t.equal(change.movedFrom.size, 0);
  const back = compareRings(one, [1], empty, []);
  t.equal(back.moved, 1);
  t.same(Object.fromEntries(back.movedFrom), { 'ws-a': 1 });
});

t.test('weight 1 -> 2 moves keys only toward that backend', async (t) => {
  const before = buildRing(equal(ids(5)), VNODES);
  const after = buildRing(ids(5).map((id) => ({ id, weight: id === 'ws-c' ? 2 : 1 })), VNODES);
  const change = compareRings(before, flags(before), after, flags(after));
  t.same([...change.movedTo.keys()], ['ws-c']);
  t.notOk(change.movedFrom.has('ws-c'));
  close(t, change.moved, shareOf(after, 'ws-c') - shareOf(before, 'ws-c'), 'moved = gain of ws-c');
  t.ok(change.moved > 0.05, `something moved (${change.moved})`);
});

t.test('compareRings on the hand-made ring, by hand', async (t) => {
  const change = compareRings(HAND, [1, 1], HAND, [1, 0]);
  t.equal(change.moved, 10 / HASH_SPACE);
  t.same(Object.fromEntries(change.movedFrom), { b: 10 / HASH_SPACE });
  t.same(Object.fromEntries(change.movedTo), { a: 10 / HASH_SPACE });
});

// ---- cross-check: lookup agrees with the exact shares ------------------------------------------

t.test('pickBackend agrees with servingOwners and shares over 20,000 hashes', async (t) => {
  const ring = buildRing([...GOLDEN_MEMBERS, { id: 'ws-e', weight: 1 }, { id: 'ws-f', weight: 3 }], VNODES);
  const down = ['ws-b', 'ws-e'];
  const eligible = flags(ring, down);
  const allowed = eligibility(ring, (b) => eligible[b] === 1);
  const serving = servingOwners(ring, eligible);
  const expectedShares = byId(ring, shares(ring, eligible));
  const samples = 20_000;
  const tally: Record<string, number> = Object.fromEntries(ring.ids.map((id) => [id, 0]));
  let disagree = 0;
  const word = new Uint8Array(4);
  const view = new DataView(word.buffer);
  for (let i = 0; i < samples; i++) {
    view.setUint32(0, i, true);
    const hash = murmur3(word);
    const b = pickBackend(ringBalancer(ring), hash, allowed);
    if (b !== serving[findPoint(ring, hash)]) disagree++;
    tally[ring.ids[b]!]!++;
  }
  t.equal(disagree, 0, 'hashes where pickBackend and servingOwners disagree');
  for (const id of down) t.equal(tally[id], 0, `${id} is down and gets nothing`);
  for (const id of ring.ids) {
    const observed = tally[id]! / samples;
    t.ok(Math.abs(observed - expectedShares[id]!) < 0.02, `${id}: sampled ${observed.toFixed(4)}, exact ${expectedShares[id]!.toFixed(4)}`);
  }
});
