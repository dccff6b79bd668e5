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
  const len = data.length;
  const blocks = len & ~3;
  let h = seed >>> 0;
  for (let i = 0; i < blocks; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = len & 3;
  if (tail !== 0) {
    let k = data[blocks]!;
    if (tail >= 2) k ^= data[blocks + 1]! << 8;
    if (tail === 3) k ^= data[blocks + 2]! << 16;
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
  }
  h ^= len;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const encoder = new TextEncoder();

/**
 * Positions of the first `count` ring points of backend `id`: point i sits at murmur3 of the
 * UTF-8 bytes `id`, 0x00, decimal `i`. The NUL separator keeps keys unambiguous ("a1" point 0
 * and "a" point 10 would otherwise both be "a10"). One buffer serves every point of a backend.
 */
export function pointHashes(id: string, count: number): Uint32Array {
  const idBytes = encoder.encode(id);
  const buffer = new Uint8Array(idBytes.length + 1 + 16);
  buffer.set(idBytes);
  buffer[idBytes.length] = 0;
  const digitsAt = idBytes.length + 1;
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    // decimal digits of i, most significant first
    let len = 0;
    for (let v = i; ; v = Math.floor(v / 10)) {
      len++;
      if (v < 10) break;
    }
    for (let v = i, p = digitsAt + len - 1; p >= digitsAt; v = Math.floor(v / 10), p--) buffer[p] = 48 + (v % 10);
    out[i] = murmur3(buffer.subarray(0, digitsAt + len));
  }
  return out;
}

/** Position of a client key (the masked address bytes from `clientKey`) on the ring. */
export function keyHash(key: Uint8Array): number {
  return murmur3(key);
}
