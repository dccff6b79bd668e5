// The pinned hash (src/hash.ts). The vectors below are published MurmurHash3 x86_32 results
// (Python mmh3's README for "foo", the test-vector list widely quoted on Stack Overflow under
// "MurmurHash3 test vectors" for the rest); each was also re-checked against Austin Appleby's
// reference C code (MurmurHash3_x86_32). A failure here moves every client of every deployment.
import t from 'tap';
import { keyHash, murmur3, pointHashes } from '../../src/hash.js';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

t.test('murmur3 matches published MurmurHash3 x86_32 vectors', async (t) => {
  const fox = 'The quick brown fox jumps over the lazy dog';
  const vectors: [Uint8Array, number, number][] = [
    [text(''), 0, 0x00000000],
    [text(''), 1, 0x514e28b7],
    [text(''), 0xffffffff, 0x81f16f39],
    [text('hello'), 0, 0x248bfa47],
    [text('hello'), 1, 0xbb4abcad],
    [text(fox), 0, 0x2e4ff723],
    [text(fox), 0x9747b28c, 0x2fa826cd],
    [text('foo'), 0, 0xf6a5c420],
    [text('foo'), 42, 0xb12f489e],
    [text('abc'), 0, 0xb3dd93fa],
    [text('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'), 0, 0xee925b90],
    // every tail length, 1-4 bytes
    [Uint8Array.of(0x21), 0, 0x72661cf4],
    [Uint8Array.of(0x21, 0x43), 0, 0xa0f7b07a],
    [Uint8Array.of(0x21, 0x43, 0x65), 0, 0x7e4a8634],
    [Uint8Array.of(0x21, 0x43, 0x65, 0x87), 0, 0xf55b516b],
    [Uint8Array.of(0x21, 0x43, 0x65, 0x87), 0x5082edee, 0x2362f9de],
    [Uint8Array.of(0), 0, 0x514e28b7],
    [Uint8Array.of(0, 0), 0, 0x30f4c306],
    [Uint8Array.of(0, 0, 0), 0, 0x85f0b427],
    [Uint8Array.of(0, 0, 0, 0), 0, 0x2362f9de],
    [text('a'), 0x9747b28c, 0x7fa09ea6],
    [text('aa'), 0x9747b28c, 0x5d211726],
    [text('aaa'), 0x9747b28c, 0x283e0130],
    [text('aaaa'), 0x9747b28c, 0x5a97808a],
    [text('ab'), 0x9747b28c, 0x74875592],
    [text('abc'), 0x9747b28c, 0xc84a62dd],
    [text('abcd'), 0x9747b28c, 0xf0478627],
    [text('Hello, world!'), 0x9747b28c, 0x24884cba],
    [text('ππππππππ'), 0x9747b28c, 0xd58063c1], // UTF-8, 16 bytes
    [text('a'.repeat(256)), 0x9747b28c, 0x37405bdc],
  ];
  for (const [data, seed, expected] of vectors) {
    const label = `${JSON.stringify(new TextDecoder().decode(data))} (${data.length} bytes) seed ${hex(seed)}`;
    t.equal(hex(murmur3(data, seed)), hex(expected), label);
  }
});

t.test('murmur3 returns an unsigned 32-bit integer and reads only the view it is given', async (t) => {
  const h = murmur3(text('foo'));
  t.ok(Number.isInteger(h) && h >= 0 && h < 2 ** 32, `${h} is a uint32`);
  t.equal(h, 4138058784); // mmh3.hash('foo', signed=False)
  const backing = text('xxhelloyy');
  t.equal(hex(murmur3(backing.subarray(2, 7))), '0x248bfa47', 'a subarray hashes only its own bytes');
  t.equal(murmur3(text('hello')), murmur3(text('hello'), 0), 'the default seed is 0');
});

t.test('pointHashes(id, n)[i] is murmur3 of the bytes id, 0x00, decimal i', async (t) => {
  const ids = ['a', 'a1', 'ws-a', '10.0.0.11:9000', '[2001:db8::1]:9000', 'x'.repeat(128), 'wé-ü'];
  const n = 1200; // one-, two-, three- and four-digit suffixes
  for (const id of ids) {
    const points = pointHashes(id, n);
    t.equal(points.length, n, `${id}: ${n} points`);
    const wrong: number[] = [];
    for (let i = 0; i < n; i++) {
      if (points[i] !== murmur3(Buffer.from(`${id}\0${i}`))) wrong.push(i);
    }
    t.same(wrong, [], `${id}: indexes whose point hash differs`);
    for (const i of [0, 9, 10, 99, 100, 999, 1000, 1199]) {
      t.equal(points[i], murmur3(Buffer.from(`${id}\0${i}`)), `${id} point ${i}`);
    }
  }
  t.same(Array.from(pointHashes('ws-a', 5)), Array.from(pointHashes('ws-a', 500).subarray(0, 5)), 'a prefix does not depend on n');
  t.equal(pointHashes('ws-a', 0).length, 0);
});

t.test('point keys are unambiguous: "a1" point 0 is not "a" point 10', async (t) => {
  t.not(pointHashes('a1', 1)[0], pointHashes('a', 11)[10]);
  t.equal(pointHashes('a1', 1)[0], murmur3(Uint8Array.of(0x61, 0x31, 0x00, 0x30)));
  t.equal(pointHashes('a', 11)[10], murmur3(Uint8Array.of(0x61, 0x00, 0x31, 0x30)));
});

t.test('keyHash is murmur3 with seed 0 of the key bytes', async (t) => {
  t.equal(hex(keyHash(Uint8Array.of(0x21, 0x43, 0x65, 0x87))), '0xf55b516b');
  t.equal(hex(keyHash(Uint8Array.of(0, 0, 0, 0))), '0x2362f9de');
  const keys = [Uint8Array.of(10, 0, 0, 1), Uint8Array.of(192, 168, 1, 0), new Uint8Array(16), Uint8Array.of(...new Array(16).fill(0xff))];
  for (const key of keys) t.equal(keyHash(key), murmur3(key), `key ${Array.from(key).join(',')}`);
});
