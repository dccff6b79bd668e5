// The pinned hash. Changing anything here moves every client of every deployment: the golden
// vectors in test/unit/hash.test.ts must fail first.
//
// MurmurHash3 x86_32 (Austin Appleby, public domain), seed 0, over bytes. Why not node:crypto:
// MD5 via crypto.hash costs ~1.5 µs per call here, too slow for a 160,000-point ring build and
// per-connection lookups; murmur3 is fast, well distributed and reimplemented in every language,
// so another balancer can reproduce the ring exactly.

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/** MurmurHash3 x86_32 of `data` with `seed`, as an unsigned 32-bit integer. */
export function murmur3(data: Uint8Array, seed = 0): number {
  const blocks = data.length & ~3;
  return finish(data, blocks, data.length, mixBlocks(data, 0, blocks, seed >>> 0));
}

/** murmur3's scramble of one 4-byte block (or of the tail bytes). */
export function mixK(k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, C2);
}

/** murmur3's step of the state `h` by one scrambled full block `k`. */
export function mixH(h: number, k: number): number {
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** murmur3's final avalanche of the state `h` after the length was mixed in; unsigned. */
export function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The body of murmur3: mix the 4-byte blocks of data[from, to) into the state `h`. */
function mixBlocks(data: Uint8Array, from: number, to: number, h: number): number {
  for (let i = from; i < to; i += 4) {
    h = mixH(h, mixK(data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24)));
  }
  return h;
}

/** The end of murmur3: the 0-3 tail bytes data[blocks, len), then the length and the final mix. */
function finish(data: Uint8Array, blocks: number, len: number, h: number): number {
  const tail = len - blocks;
  if (tail !== 0) {
    let k = data[blocks]!;
    if (tail >= 2) k ^= data[blocks + 1]! << 8;
    if (tail === 3) k ^= data[blocks + 2]! << 16;
    h ^= mixK(k);
  }
  return fmix(h ^ len);
}

const encoder = new TextEncoder();
const ZERO = 48;
const NINE = 57;

/**
 * Positions of the first `count` ring points of backend `id`: point i sits at murmur3 of the
 * UTF-8 bytes `id`, 0x00, decimal `i`. The NUL separator keeps keys unambiguous ("a1" point 0
 * and "a" point 10 would otherwise both be "a10").
 *
 * A ring build hashes 160 keys per weight unit, so this is murmur3 done incrementally: one key
 * buffer whose decimal digits are counted up in place, and the blocks that hold only id bytes
 * and the NUL (the same for every point) mixed once.
 */
export function pointHashes(id: string, count: number): Uint32Array {
  const idBytes = encoder.encode(id);
  const digitsAt = idBytes.length + 1;
  const key = new Uint8Array(digitsAt + 16); // NUL included: new arrays are zeroed
  key.set(idBytes);
  const fixed = digitsAt & ~3;
  const h0 = mixBlocks(key, 0, fixed, 0);
  key[digitsAt] = ZERO;
  let len = digitsAt + 1;
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    const blocks = len & ~3;
    out[i] = finish(key, blocks, len, mixBlocks(key, fixed, blocks, h0));
    // Count the digits up to i + 1: trailing 9s become 0s; a carry past the first digit
    // (99 -> 100) makes the number one digit longer.
    let p = len - 1;
    while (p >= digitsAt && key[p] === NINE) key[p--] = ZERO;
    if (p >= digitsAt) {
      key[p]!++;
    } else {
      key[digitsAt] = ZERO + 1;
      key[len++] = ZERO;
    }
  }
  return out;
}

/** Position of a client key (the masked address bytes from `clientKey`) on the ring. */
export function keyHash(key: Uint8Array): number {
  return murmur3(key);
}
