// The close planner (issue 9 item 5): random order, even pacing, the pacing bound, end-aligned
// plans for the shutdown deadline. Pure: the clock's reading and the random source are passed in.

import t from 'tap';
import { planCloses } from '../../src/planner.js';
import { prng } from '../helpers/prng.js';


const ids = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

t.test('every item once, in an order the random source decides', async (t) => {
  const a = planCloses(ids(100), 0, 1000, prng(1));
  const b = planCloses(ids(100), 0, 1000, prng(2));
  t.same([...a.items].sort((x, y) => x - y), ids(100), 'a permutation');
  t.not(a.items.join(), b.items.join(), 'another seed, another order');
  t.same(planCloses(ids(100), 0, 1000, prng(1)).items, a.items, 'the same seed, the same order');
  t.not(a.items.join(), ids(100).join(), 'not the given order');
});

t.test('evenly paced from start over the window; 0 closes everything at once', async (t) => {
  const p = planCloses(ids(4), 1000, 400, () => 0);
  t.same(p.at, [1000, 1100, 1200, 1300]);
  t.same(planCloses(ids(3), 50, 0, () => 0).at, [50, 50, 50]);
  t.same(planCloses([], 50, 1000, () => 0).at, []);
  t.same(planCloses(ids(4), 0, 400, () => 0, true).at, [100, 200, 300, 400], 'end-aligned: the last at start + window');
});

t.test('pacing bound: in any interval of length d, at most ceil(n x d / window) + 1 closes', async (t) => {
  const random = prng(7);
  let worst = 0;
  for (let round = 0; round < 200; round++) {
    const n = 1 + Math.floor(random() * 5000);
    const windowMs = 1 + Math.floor(random() * 120_000);
    const { at } = planCloses(ids(n), random() * 1e6, windowMs, random, random() < 0.5);
    for (let k = 0; k < 20; k++) {
      const d = random() * windowMs * 1.5;
      const from = at[0]! - d / 2 + random() * (windowMs + d);
      let count = 0;
      for (const x of at) if (x >= from && x < from + d) count++;
      const bound = Math.ceil((n * d) / windowMs) + 1;
      worst = Math.max(worst, count - bound);
      if (count > bound) t.fail(`n=${n} window=${windowMs} d=${d}: ${count} > ${bound}`);
    }
  }
  t.ok(worst <= 0, 'never above the bound');
});
