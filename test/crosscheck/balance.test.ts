// Independent cross-check (issue 11 item 2): test/crosscheck/balance.py, written from
// docs/algorithm.md §1, §2, §10 and §11 alone, must give every one of 3,000 random client
// addresses (IPv4, IPv6, IPv4-mapped) the same failover order as src/rendezvous.ts and
// src/maglev.ts, with mixed weights, a weight-0 backend and two backends down.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseIp } from '../../src/address.js';
import { buildBalancer, type Algorithm } from '../../src/balancer.js';
import { murmur3 } from '../../src/hash.js';
import { clientHash } from '../../src/routing.js';

const SCRIPT = fileURLToPath(new URL('./balance.py', import.meta.url));
const python = spawnSync('python3', ['--version']);

const BACKENDS = [
  { id: 'ws-a', weight: 1 },
  { id: 'ws-b', weight: 2 },
  { id: 'ws-c', weight: 1 },
  { id: 'ws-d', weight: 3 },
  { id: 'ws-zero', weight: 0 },
  { id: '10.0.0.11:9000', weight: 1 },
  { id: '[2001:db8::7]:9000', weight: 5 },
  { id: 'a', weight: 1 },
  { id: 'a1', weight: 1 },
  { id: 'ws-é', weight: 2 }, // UTF-8 beyond ASCII in an id
  { id: 'ws-down-1', weight: 1 },
  { id: 'ws-down-2', weight: 4 },
];
const DOWN = ['ws-down-1', 'ws-down-2'];

/** 3,000 deterministic pseudo-random addresses: a third each IPv4, IPv6, IPv4-mapped. */
function addresses(): string[] {
  const word = (i: number, j: number): number => murmur3(Buffer.from(`crosscheck ${i} ${j}`));
  return Array.from({ length: 3000 }, (_, i) => {
    const a = word(i, 0);
    const v4 = [a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255].join('.');
    if (i % 3 === 0) return v4;
    if (i % 3 === 1) return `::ffff:${v4}`;
    const groups = Array.from({ length: 8 }, (_, g) => ((word(i, 1 + (g >> 1)) >>> ((g & 1) * 16)) & 0xffff).toString(16));
    return groups.join(':');
  });
}

function typescriptOrders(algorithm: Algorithm, tableSize: number, list: string[]): string[] {
  const balancer = buildBalancer(BACKENDS, { algorithm, vnodes: 160, tableSize });
  const eligible = Uint8Array.from(balancer.ids, (id, b) => (balancer.weights[b]! > 0 && !DOWN.includes(id) ? 1 : 0));
  return list.map((address) => {
    const walk = balancer.candidates(clientHash(parseIp(address)!, { ipv4Prefix: 32, ipv6Prefix: 64 }), eligible);
    const order = [address];
    for (let b = walk.next(); b >= 0; b = walk.next()) order.push(balancer.ids[b]!);
    return order.join(' ');
  });
}

const cases: Array<[Algorithm, number]> = [
  ['rendezvous', 65537],
  ['maglev', 65537],
  ['maglev', 251], // a small table: many wraps of the walk, weights dominate the turns
];

for (const [algorithm, tableSize] of cases) {
  t.test(`${algorithm}${algorithm === 'maglev' ? ` (tableSize ${tableSize})` : ''}: the Python implementation agrees on 3,000 addresses`, async (t) => {
    if (python.status !== 0) {
      t.plan(0, 'skipped: python3 is not installed, the independent implementation cannot run');
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'ringlb-crosscheck-'));
    const config = join(dir, 'config.json');
    writeFileSync(config, JSON.stringify({ algorithm, tableSize, ipv4Prefix: 32, ipv6Prefix: 64, backends: BACKENDS, down: DOWN }));
    const list = addresses();
    const output = execFileSync('python3', [SCRIPT, config], { input: `${list.join('\n')}\n`, encoding: 'utf8', maxBuffer: 1 << 24 });
    const theirs = output.trimEnd().split('\n');
    const ours = typescriptOrders(algorithm, tableSize, list);
    t.equal(theirs.length, list.length, 'one line per address');
    const differ = ours.filter((line, i) => line !== theirs[i]);
    t.same(differ.slice(0, 5), [], `addresses whose failover order differs (${differ.length} of ${list.length})`);
    const firsts = new Set(ours.map((line) => line.split(' ')[1]));
    t.ok(firsts.size >= 8, `the first choices cover the eligible backends (${firsts.size})`);
    t.equal(ours[0]!.split(' ').length, 1 + 9, 'every order lists the 9 eligible backends');
  });
}
