// The common interface (src/balancer.ts, issue 11 item 1): the ring adapter's generic walk routes
// exactly as pickBackend's fast path for the ring does, and pickBackend gives every algorithm
// the same failover contract (tried, eligibility).
import t from 'tap';
import { buildBalancer, compareBalancers, ringBalancer, type Algorithm, type Balancer } from '../../src/balancer.js';
import { buildRing, compareRings, HASH_SPACE, shares } from '../../src/ring.js';
import { eligibility, pickBackend } from '../../src/routing.js';
import { keyHashes } from '../helpers/prng.js';

const MEMBERS = [
  { id: 'ws-a', weight: 1 },
  { id: 'ws-b', weight: 2 },
  { id: 'ws-c', weight: 1 },
  { id: 'ws-d', weight: 1 },
  { id: 'ws-e', weight: 3 },
  { id: 'ws-z', weight: 0 },
];
const ALGORITHMS: Algorithm[] = ['ring', 'rendezvous', 'maglev'];

/** The generic walk: the first candidate not tried (what pickBackend does for rendezvous and Maglev). */
function firstUntried(balancer: Balancer, hash: number, flags: ArrayLike<number>, tried: readonly number[]): number {
  const walk = balancer.candidates(hash, flags);
  for (let b = walk.next(); b >= 0; b = walk.next()) if (!tried.includes(b)) return b;
  return -1;
}

t.test('the ring adapter: its generic walk = pickBackend on the ring for every key, eligibility and tried list', async (t) => {
  const ring = buildRing(MEMBERS, 160);
  const balancer = ringBalancer(ring);
  t.equal(balancer.ids, ring.ids);
  const index = (id: string): number => ring.ids.indexOf(id);
  const views = [
    eligibility(ring, () => true),
    eligibility(ring, (b) => ring.ids[b] !== 'ws-b'),
    eligibility(ring, (b) => ['ws-a', 'ws-e'].includes(ring.ids[b]!)),
    eligibility(ring, () => false),
  ];
  const trieds = [[], [index('ws-b')], [index('ws-a'), index('ws-e')], [index('ws-c'), index('ws-c'), index('ws-z')]];
  const edges = [0, 1, HASH_SPACE - 1, ring.positions[0]!, ring.positions[ring.positions.length - 1]! + 1];
  let differ = 0;
  let cases = 0;
  for (const hash of [...edges, ...keyHashes(3000)]) {
    for (const allowed of views) {
      for (const tried of trieds) {
        cases++;
        if (firstUntried(balancer, hash, allowed.flags, tried) !== pickBackend(balancer, hash, allowed, tried)) differ++;
      }
    }
  }
  t.equal(differ, 0, `cases (of ${cases}) where the adapter and pickBackend disagree`);
  const flags = views[1]!.flags;
  t.same(Array.from(balancer.shares(flags)), Array.from(shares(ring, flags)), 'shares are the ring\'s');
});

t.test('the ring adapter walks clockwise: each eligible backend once, in the order of pickBackend with tried', async (t) => {
  const ring = buildRing(MEMBERS, 160);
  const balancer = ringBalancer(ring);
  const allowed = eligibility(ring, (b) => ring.ids[b] !== 'ws-d');
  let differ = 0;
  for (const hash of keyHashes(500, 3)) {
    const walk = balancer.candidates(hash, allowed.flags);
    const order: number[] = [];
    for (let b = walk.next(); b >= 0; b = walk.next()) order.push(b);
    // pickBackend, asked again and again with everything so far as tried, gives the same order.
    const byTried: number[] = [];
    for (let b = pickBackend(balancer, hash, allowed, byTried); b >= 0; b = pickBackend(balancer, hash, allowed, byTried)) byTried.push(b);
    if (order.join() !== byTried.join()) differ++;
  }
  t.equal(differ, 0);
  t.equal(ringBalancer(buildRing([], 160)).candidates(5, []).next(), -1, 'an empty ring has no candidate');
});

t.test('every algorithm: pickBackend skips tried and ineligible backends and stops when none is left', async (t) => {
  for (const algorithm of ALGORITHMS) {
    const balancer = buildBalancer(MEMBERS, { algorithm, vnodes: 160, tableSize: 65537 });
    t.equal(balancer.algorithm, algorithm);
    t.same(balancer.ids, ['ws-a', 'ws-b', 'ws-c', 'ws-d', 'ws-e', 'ws-z']);
    const flags = Uint8Array.from(balancer.ids, (id, b) => (balancer.weights[b]! > 0 && id !== 'ws-c' ? 1 : 0));
    const allowed = { flags, count: 4, weight: 0 };
    let bad = 0;
    for (const hash of keyHashes(500, 7)) {
      const tried: number[] = [];
      for (let b = pickBackend(balancer, hash, allowed, tried); b >= 0; b = pickBackend(balancer, hash, allowed, tried)) {
        if (!flags[b] || tried.includes(b)) bad++;
        tried.push(b);
      }
      if (tried.length !== 4) bad++; // every eligible backend, each once, then -1
    }
    t.equal(bad, 0, `${algorithm}: walks that repeated, served an ineligible backend or stopped early`);
    t.equal(pickBackend(balancer, 1, { flags: new Uint8Array(6), count: 0, weight: 0 }, []), -1, `${algorithm}: nothing eligible`);
  }
});

t.test('shares sum to 1 for every algorithm; an ineligible backend has 0', async (t) => {
  for (const algorithm of ALGORITHMS) {
    const balancer = buildBalancer(MEMBERS, { algorithm, vnodes: 160 });
    const flags = Uint8Array.from(balancer.ids, (id, b) => (balancer.weights[b]! > 0 && id !== 'ws-e' ? 1 : 0));
    const s = Array.from(balancer.shares(flags));
    t.ok(Math.abs(s.reduce((a, b) => a + b, 0) - 1) < 1e-12, `${algorithm}: sum ${s.reduce((a, b) => a + b, 0)}`);
    t.same([s[balancer.ids.indexOf('ws-e')], s[balancer.ids.indexOf('ws-z')]], [0, 0], `${algorithm}: ws-e down, ws-z weight 0`);
  }
});

t.test('compareBalancers: exact for the ring, expected across algorithms', async (t) => {
  const ring = buildBalancer(MEMBERS, { algorithm: 'ring', vnodes: 160 });
  const grown = buildBalancer([...MEMBERS, { id: 'ws-f', weight: 1 }], { algorithm: 'ring', vnodes: 160 });
  const on = (b: { ids: readonly string[]; weights: ArrayLike<number> }) => Uint8Array.from(b.ids, (_, i) => (b.weights[i]! > 0 ? 1 : 0));
  const change = compareBalancers(ring, on(ring), grown, on(grown));
  t.equal(change.basis, 'exact');
  if (ring.algorithm === 'ring' && grown.algorithm === 'ring') {
    t.equal(change.moved, compareRings(ring.ring, on(ring), grown.ring, on(grown)).moved);
  }
  const maglev = buildBalancer(MEMBERS, { algorithm: 'maglev', vnodes: 160 });
  const across = compareBalancers(ring, on(ring), maglev, on(maglev));
  t.equal(across.basis, 'expected');
  // Switching algorithm reshuffles: routed keys move about as often as the estimate says.
  const samples = 40_000;
  let moved = 0;
  for (const hash of keyHashes(samples, 13)) if (pickBackend(ring, hash, { flags: on(ring), count: 5, weight: 0 }) !== pickBackend(maglev, hash, { flags: on(maglev), count: 5, weight: 0 })) moved++;
  t.ok(Math.abs(moved / samples - across.moved) < 0.02, `ring -> maglev: routed ${(moved / samples).toFixed(4)}, estimate ${across.moved.toFixed(4)}`);
  const lost = [...across.movedFrom.values()].reduce((a, b) => a + b, 0);
  t.ok(Math.abs(lost - across.moved) < 1e-12, 'from adds up');
  const empty = buildBalancer([], { algorithm: 'maglev', vnodes: 160 });
  t.equal(compareBalancers(empty, [], buildBalancer([], { algorithm: 'rendezvous', vnodes: 160 }), []).moved, 0, 'nobody to nobody');
  t.equal(compareBalancers(empty, [], ring, on(ring)).moved, 1, 'nobody to somebody');
});
