// Seeded test data: a PRNG (mulberry32) for property and fuzz tests, small, fast, and fixed by
// its seed, so a failure names a reproducible case; and a fixed spread of key hashes.

import { murmur3 } from '../../src/hash.js';

export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Deterministic key hashes, not client addresses: murmur3 of the counter 0, 1, ... under `seed`. */
export function keyHashes(count: number, seed = 0x5eed): number[] {
  const word = new Uint8Array(4);
  const view = new DataView(word.buffer);
  return Array.from({ length: count }, (_, i) => {
    view.setUint32(0, i, true);
    return murmur3(word, seed);
  });
}
