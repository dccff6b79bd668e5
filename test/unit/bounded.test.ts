// Bounded loads (arXiv:1608.01350) around the ring walk, and the one notion of "home": property
// tests over random sequences of arrivals and departures (issue 9 items 1-2). Pure: no sockets.

import t from 'tap';
import { murmur3 } from '../../src/hash.js';
import { ringBalancer } from '../../src/balancer.js';
import { buildRing } from '../../src/ring.js';
import { capacity, eligibility, homeOf, pickBackend, type LoadBound } from '../../src/routing.js';
import { prng } from '../helpers/prng.js';

const MEMBERS = [
  { id: 'a', weight: 1 },
  { id: 'b', weight: 2 },
  { id: 'c', weight: 1 },
  { id: 'd', weight: 1 },
  { id: 'e', weight: 3 },
];
const ring = ringBalancer(buildRing(MEMBERS, 160));
const all = eligibility(ring, () => true);


const word = new Uint8Array(4);
const keyHash = (i: number): number => {
  new DataView(word.buffer).setUint32(0, i, true);
  return murmur3(word, 0xb0);
};

/** Open connections by backend, and the bound they give. */
class Loads {
  readonly load = new Array<number>(ring.ids.length).fill(0);
  open = 0;
  bound(factor: number): LoadBound {
    return { factor, open: this.open, load: (b) => this.load[b]! };
  }
  add(b: number): void {
    this.load[b]!++;
    this.open++;
  }
  remove(b: number): void {
    this.load[b]!--;
    this.open--;
  }
}

t.test('capacity is ceil(factor x (open + 1) x w / W)', async (t) => {
  const bound = { factor: 1.25, open: 7, load: () => 0 };
  t.equal(capacity(bound, 1, 8), Math.ceil((1.25 * 8 * 1) / 8)); // 2
  t.equal(capacity(bound, 3, 8), Math.ceil((1.25 * 8 * 3) / 8)); // 4
  t.equal(capacity({ factor: 2, open: 0, load: () => 0 }, 1, 100), 1, 'the first connection always fits');
});

t.test('no backend ever exceeds its capacity, over random arrivals and departures', async (t) => {
  for (const factor of [1.01, 1.1, 1.25, 2]) {
    for (let seed = 1; seed <= 5; seed++) {
      const random = prng(seed * 100 + factor * 10);
      const loads = new Loads();
      const open: Array<{ key: number; on: number }> = [];
      let violations = 0;
      let refused = 0;
      for (let step = 0; step < 3000; step++) {
        if (open.length > 0 && random() < 0.45) {
          const i = Math.floor(random() * open.length);
          loads.remove(open[i]!.on);
          open.splice(i, 1);
          continue;
        }
        // Hot keys: a fifth of arrivals come from 3 keys (a big NAT), the rest spread.
        const key = random() < 0.2 ? keyHash(Math.floor(random() * 3)) : keyHash(1000 + Math.floor(random() * 1e6));
        const bound = loads.bound(factor);
        const b = pickBackend(ring, key, all, [], bound);
        if (b < 0) {
          refused++;
          continue;
        }
        if (loads.load[b]! + 1 > capacity(bound, ring.weights[b]!, all.weight)) violations++;
        loads.add(b);
        open.push({ key, on: b });
      }
      t.equal(violations, 0, `factor ${factor}, seed ${seed}: never above capacity`);
      t.equal(refused, 0, `factor ${factor}, seed ${seed}: an eligible fleet never refuses`);
    }
  }
});

t.test('with a large factor the bound routes exactly as without it', async (t) => {
  const loads = new Loads();
  let differ = 0;
  for (let i = 0; i < 5000; i++) {
    const key = keyHash(i % 50); // heavy repetition: a small factor would spill
    const plain = pickBackend(ring, key, all);
    if (pickBackend(ring, key, all, [], loads.bound(1000)) !== plain) differ++;
    loads.add(plain);
  }
  t.equal(differ, 0);
});

t.test('the bound composes with failover and eligibility', async (t) => {
  const loads = new Loads();
  const key = keyHash(7);
  const home = pickBackend(ring, key, all);
  const second = pickBackend(ring, key, all, [home]);
  for (let i = 0; i < 10; i++) loads.add(home); // the home is far over any capacity
  t.equal(pickBackend(ring, key, all, [], loads.bound(1.1)), second, 'a full home spills to the next clockwise');
  const withoutSecond = eligibility(ring, (b) => b !== second);
  const third = pickBackend(ring, key, withoutSecond, [home]);
  t.equal(pickBackend(ring, key, withoutSecond, [], loads.bound(1.1)), third, 'past ineligible backends too');
  t.equal(pickBackend(ring, key, eligibility(ring, (b) => b === home), [], loads.bound(1.1)), home, 'a lone eligible backend always has room');
});

t.test('homeOf: where the client would land now, its own connection not counted', async (t) => {
  const loads = new Loads();
  const key = keyHash(11);
  const home = pickBackend(ring, key, all);
  const second = pickBackend(ring, key, all, [home]);
  t.equal(homeOf(ring, key, all, null, second), home, 'without a bound: the ring alone');
  // Fill the home to its capacity, then place one more: it spills.
  const factor = 1.25;
  while (pickBackend(ring, key, all, [], loads.bound(factor)) === home) loads.add(home);
  loads.add(second); // the spilled connection
  t.equal(homeOf(ring, key, all, loads.bound(factor), second), second, 'while the home is full, the spill is at home');
  t.equal(homeOf(ring, key, all, loads.bound(factor), home), home, 'a connection on its full home is not misplaced');
  loads.remove(home); // one leaves the home: room again
  t.equal(homeOf(ring, key, all, loads.bound(factor), second), home, 'then the spilled connection is misplaced');
  const down = eligibility(ring, (b) => b !== home);
  t.equal(homeOf(ring, key, down, null, home), second, 'a connection on a down backend is misplaced');
  t.equal(homeOf(ring, key, all, null, -1), home, 'a removed backend (-1) is never home');
});
