// The arcs the status page draws (src/ring-arcs.ts, issue 12 item 1): exact runs of the routing
// rule, the wrap past 2^32 - 1, health taken into account, and downsampling to equal bins.
import t from 'tap';
import { downsampleArcs, ringArcs, servedArcs, type Arc } from '../../src/ring-arcs.js';
import { buildRing, findPoint, HASH_SPACE, shares, type Ring } from '../../src/ring.js';

// Three backends, points written by hand (positions in units of 2^32 / 8 so the fractions are exact):
//   point  position  owner
//     0      1/8      a
//     1      2/8      a
//     2      4/8      b
//     3      6/8      c
// Key h goes to the first point >= h: [0, 1/8] -> a, (1/8, 2/8] -> a, (2/8, 4/8] -> b,
// (4/8, 6/8] -> c, and past 6/8 it wraps to point 0 -> a.
const E = HASH_SPACE / 8;
const HAND: Ring = {
  ids: ['a', 'b', 'c'],
  weights: [1, 1, 1],
  positions: Uint32Array.from([E, 2 * E, 4 * E, 6 * E]),
  owners: Uint32Array.from([0, 0, 1, 2]),
};
const at = (eighths: number): number => (eighths * E + 1) / HASH_SPACE; // just past a point
const plain = (arcs: readonly Arc[]) => arcs.map(({ start, end, backend }) => [start, end, backend]);

t.test('exact arcs follow the routing rule and merge runs of one backend', async (t) => {
  t.same(plain(servedArcs(HAND, [1, 1, 1])), [
    [0, at(2), 0], // points 0 and 1 merged
    [at(2), at(4), 1],
    [at(4), at(6), 2],
    [at(6), 1, 0], // the wrap belongs to point 0's owner
  ]);
});

t.test('a backend that may not serve hands its arcs to the next one clockwise', async (t) => {
  t.same(plain(servedArcs(HAND, [1, 0, 1])), [
    [0, at(2), 0],
    [at(2), at(6), 2], // b's stretch goes to c, merged with c's own
    [at(6), 1, 0],
  ]);
  t.same(plain(servedArcs(HAND, [0, 0, 0])), [[0, 1, -1]], 'nobody eligible: one unserved arc');
  const empty: Ring = { ids: [], weights: [], positions: new Uint32Array(0), owners: new Uint32Array(0) };
  t.same(plain(servedArcs(empty, [])), [[0, 1, -1]], 'an empty ring: the circle is unserved');
});

t.test('on a real ring the arcs tile the circle and add up to the exact shares', async (t) => {
  const ring = buildRing(['ws-a', 'ws-b', 'ws-c', 'ws-d'].map((id, i) => ({ id, weight: 1 + (i % 2) })), 160);
  const eligible = Uint8Array.from([1, 0, 1, 1]);
  const arcs = servedArcs(ring, eligible);
  t.equal(arcs[0]!.start, 0);
  t.equal(arcs[arcs.length - 1]!.end, 1);
  t.ok(arcs.every((a, i) => i === 0 || a.start === arcs[i - 1]!.end), 'no gap, no overlap');
  t.ok(arcs.every((a, i) => i === 0 || a.backend !== arcs[i - 1]!.backend), 'runs are merged');
  const total = new Float64Array(4);
  for (const a of arcs) total[a.backend]! += a.end - a.start;
  const exact = shares(ring, eligible);
  for (let b = 0; b < 4; b++) t.ok(Math.abs(total[b]! - exact[b]!) < 1e-12, `${ring.ids[b]}: ${total[b]} = ${exact[b]}`);
  // Spot check against lookups: the key at the middle of every arc routes to the arc's backend.
  const serving = (h: number): number => {
    let i = findPoint(ring, h);
    while (!eligible[ring.owners[i]!]) i = (i + 1) % ring.owners.length;
    return ring.owners[i]!;
  };
  const wrong = arcs.filter((a) => serving(Math.floor(((a.start + a.end) / 2) * HASH_SPACE)) !== a.backend);
  t.equal(wrong.length, 0, 'the middle key of every arc routes to its backend');
});

t.test('downsampling gives each bin to the backend that serves most of it', async (t) => {
  const arcs: Arc[] = [
    { start: 0, end: 0.3, backend: 0 },
    { start: 0.3, end: 0.35, backend: 1 }, // too short to win a bin
    { start: 0.35, end: 0.6, backend: 2 },
    { start: 0.6, end: 1, backend: 0 },
  ];
  // 4 bins of 0.25: [0, .25) all 0; [.25, .5) 0 has .05, 1 .05, 2 .15 -> 2; [.5, .75) 2 .1, 0 .15 -> 0; [.75, 1) 0.
  t.same(plain(downsampleArcs(arcs, 4)), [
    [0, 0.25, 0],
    [0.25, 0.5, 2],
    [0.5, 1, 0],
  ]);
  const tie: Arc[] = [
    { start: 0, end: 0.5, backend: 3 },
    { start: 0.5, end: 1, backend: 1 },
  ];
  t.same(plain(downsampleArcs(tie, 1)), [[0, 1, 1]], 'a tie goes to the lower index');
});

t.test('ringArcs: exact while few enough, at most maxArcs bins with hundreds of backends', async (t) => {
  const few = ringArcs(HAND, [1, 1, 1], 720);
  t.equal(few.exact, true);
  t.equal(few.arcs.length, 4);
  const members = Array.from({ length: 300 }, (_, i) => ({ id: `ws-${String(i).padStart(3, '0')}`, weight: 1 }));
  const ring = buildRing(members, 160);
  const eligible = new Uint8Array(300).fill(1);
  const many = ringArcs(ring, eligible, 720);
  t.equal(many.exact, false, '48,000 points are downsampled');
  t.ok(many.arcs.length <= 720, `${many.arcs.length} arcs`);
  t.equal(many.arcs[0]!.start, 0);
  t.equal(many.arcs[many.arcs.length - 1]!.end, 1);
  const drawn = new Set(many.arcs.map((a) => a.backend));
  t.ok(drawn.size > 250, `most of the 300 backends are visible (${drawn.size})`);
  t.notOk(drawn.has(-1), 'every bin is served');
});
