// The routing decision (src/routing.ts): who may serve, and the bounded clockwise failover walk.
import t from 'tap';
import { clientKey, parseIp } from '../../src/address.js';
import { keyHash } from '../../src/hash.js';
import { ringBalancer } from '../../src/balancer.js';
import { buildRing, HASH_SPACE, type Ring } from '../../src/ring.js';
import { clientHash, eligibility, pickBackend, type Eligibility } from '../../src/routing.js';
import { keyHashes } from '../helpers/prng.js';

const VNODES = 160;
const MEMBERS = [
  { id: 'ws-a', weight: 1 },
  { id: 'ws-b', weight: 2 },
  { id: 'ws-c', weight: 1 },
  { id: 'ws-d', weight: 1 },
  { id: 'ws-e', weight: 1 },
  { id: 'ws-z', weight: 0 },
];
const ring = buildRing(MEMBERS, VNODES);
const table = ringBalancer(ring);
const index = (id: string): number => ring.ids.indexOf(id);
const name = (b: number): string => (b < 0 ? '(none)' : ring.ids[b]!);
const except = (...down: string[]): Eligibility => eligibility(ring, (b) => !down.includes(ring.ids[b]!));

/** Hashes at the ends of the ring and on its points, where an off-by-one would show. */
const last = ring.positions.length - 1;
const EDGES = [0, 1, HASH_SPACE - 1, ring.positions[0]!, ring.positions[0]! + 1, ring.positions[last]!, ring.positions[last]! + 1];

/**
 * Eligible backends in clockwise order from `hash`, computed without the ring's binary search
 * or walk: each backend's distance is the clockwise distance to its nearest point at or after
 * `hash` (mod 2^32); equal distances (equal positions) go to the lower id, as on the ring.
 */
function clockwiseOrder(r: Ring, hash: number, allowed: Eligibility): string[] {
  const nearest = new Map<number, number>();
  for (let i = 0; i < r.positions.length; i++) {
    const b = r.owners[i]!;
    if (!allowed.flags[b]) continue;
    const distance = (r.positions[i]! - hash + HASH_SPACE) % HASH_SPACE;
    if (!nearest.has(b) || distance < nearest.get(b)!) nearest.set(b, distance);
  }
  return [...nearest]
    .sort(([b1, d1], [b2, d2]) => d1 - d2 || (r.ids[b1]! < r.ids[b2]! ? -1 : 1))
    .map(([b]) => r.ids[b]!);
}

t.test('eligibility: weight > 0 and mayServe', async (t) => {
  const all = eligibility(ring, () => true);
  t.same(Array.from(all.flags), ring.ids.map((id) => (id === 'ws-z' ? 0 : 1)), 'weight 0 is never eligible');
  t.equal(all.count, 5);
  const some = except('ws-b', 'ws-d');
  t.same(Array.from(some.flags), ring.ids.map((id) => (['ws-a', 'ws-c', 'ws-e'].includes(id) ? 1 : 0)));
  t.equal(some.count, 3);
  const none = eligibility(ring, () => false);
  t.same(Array.from(none.flags), ring.ids.map(() => 0));
  t.equal(none.count, 0);
  const asked: number[] = [];
  eligibility(ring, (b) => (asked.push(b), true));
  t.ok(asked.every((b) => b >= 0 && b < ring.ids.length), 'mayServe is asked with ring indexes');
  const weighted = ring.ids.filter((id) => id !== 'ws-z').map(index);
  t.ok(weighted.every((b) => asked.includes(b)), 'about every backend with weight > 0');
});

t.test('pickBackend returns -1 when nothing may serve', async (t) => {
  for (const hash of [0, 12345, HASH_SPACE - 1]) {
    t.equal(pickBackend(table, hash, eligibility(ring, () => false)), -1, `hash ${hash}: none eligible`);
    t.equal(pickBackend(table, hash, eligibility(ring, (b) => b === index('ws-z'))), -1, 'only weight 0 allowed');
    const empty = buildRing([], VNODES);
    t.equal(pickBackend(ringBalancer(empty), hash, eligibility(empty, () => true)), -1, 'empty ring');
  }
});

t.test('pickBackend returns -1 when every eligible backend was tried', async (t) => {
  const allowed = except('ws-d');
  const tried = ['ws-a', 'ws-b', 'ws-c', 'ws-e'].map(index);
  for (const hash of keyHashes(20)) t.equal(pickBackend(table, hash, allowed, tried), -1);
});

t.test('failover visits each eligible backend once, clockwise, then gives up', async (t) => {
  for (const down of [[], ['ws-b'], ['ws-a', 'ws-e']]) {
    const allowed = except(...down);
    let mismatches = 0;
    for (const hash of [...keyHashes(300), ...EDGES]) {
      const tried: number[] = [];
      for (let b = pickBackend(table, hash, allowed, tried); b >= 0; b = pickBackend(table, hash, allowed, tried)) {
        tried.push(b);
        if (tried.length > ring.ids.length) break; // a bug would loop; do not loop with it
      }
      if (tried.map(name).join() !== clockwiseOrder(ring, hash, allowed).join()) mismatches++;
    }
    t.equal(mismatches, 0, `down [${down.join(', ')}]: keys whose failover order is not clockwise`);
  }
  // One key spelled out.
  const hash = keyHashes(1)[0]!;
  const order = clockwiseOrder(ring, hash, except());
  const picks: string[] = [];
  const tried: number[] = [];
  for (let i = 0; i < 6; i++) {
    const b = pickBackend(table, hash, except(), tried);
    picks.push(name(b));
    if (b >= 0) tried.push(b);
  }
  t.same(picks, [...order, '(none)'], `hash ${hash}`);
  t.equal(new Set(order).size, 5, 'five distinct backends');
});

t.test('tried backends that are not eligible do not end the walk early', async (t) => {
  const allowed = except('ws-b', 'ws-d');
  const hash = keyHashes(1)[0]!;
  const first = pickBackend(table, hash, allowed);
  t.ok(first >= 0);
  t.equal(pickBackend(table, hash, allowed, [index('ws-b'), index('ws-d'), index('ws-z')]), first);
});

t.test('a tried backend listed twice still leaves the others to try', async (t) => {
  // The doc comment: "the first eligible backend not in `tried`". With ws-a and ws-c eligible
  // and tried = [ws-a, ws-a], ws-c is eligible and untried.
  const allowed = except('ws-b', 'ws-d', 'ws-e');
  const picks = keyHashes(5).map((hash) => name(pickBackend(table, hash, allowed, [index('ws-a'), index('ws-a')])));
  t.same(picks, ['ws-c', 'ws-c', 'ws-c', 'ws-c', 'ws-c'], 'picks for 5 keys with tried = [ws-a, ws-a]');
});

t.test("a down backend's keys go to the next eligible clockwise; other keys stay", async (t) => {
  const all = except();
  for (const down of ['ws-a', 'ws-b', 'ws-e']) {
    const allowed = except(down);
    const moved: Record<string, number> = {};
    let stayed = 0;
    let wrong = 0;
    for (const hash of keyHashes(5000)) {
      const before = name(pickBackend(table, hash, all));
      const after = name(pickBackend(table, hash, allowed));
      if (before !== down) {
        if (after === before) stayed++;
        else wrong++;
      } else {
        if (after !== clockwiseOrder(ring, hash, all)[1]) wrong++;
        moved[after] = (moved[after] ?? 0) + 1;
      }
    }
    t.equal(wrong, 0, `${down} down: keys that went anywhere but the next eligible backend`);
    t.ok(stayed > 3000, `${down} down: ${stayed} keys of other backends stay`);
    t.notOk(down in moved, `${down} down gets nothing`);
    t.ok(Object.keys(moved).length >= 3, `${down} down: its keys spread over ${JSON.stringify(moved)}`);
  }
});

t.test('clientHash: normalise, mask, hash', async (t) => {
  const cases: [string, number, number][] = [
    ['10.1.2.3', 32, 64],
    ['10.1.2.3', 24, 64],
    ['::ffff:10.1.2.3', 32, 64],
    ['2001:db8:aa:bb::1', 32, 64],
    ['2001:db8:aa:bb::1', 32, 48],
  ];
  for (const [address, ipv4Prefix, ipv6Prefix] of cases) {
    const ip = parseIp(address)!;
    t.equal(clientHash(ip, { ipv4Prefix, ipv6Prefix }), keyHash(clientKey(ip, ipv4Prefix, ipv6Prefix)), `${address} /${ipv4Prefix} /${ipv6Prefix}`);
  }
  t.equal(clientHash(parseIp('::ffff:10.0.0.1')!, { ipv4Prefix: 32, ipv6Prefix: 64 }), 1557541978, 'pinned, as in ring.test.ts');
  t.equal(
    clientHash(parseIp('10.1.2.3')!, { ipv4Prefix: 24, ipv6Prefix: 64 }),
    clientHash(parseIp('10.1.2.200')!, { ipv4Prefix: 24, ipv6Prefix: 64 }),
    'one /24, one position',
  );
});
