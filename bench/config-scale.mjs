// How long the config commands take for large fleets (issue 7 items 5 and 6): `check`, `lookup`
// and `diff` as spawned processes (the bin, so start-up included), and validation in this process.
// Usage: npm run build && node bench/config-scale.mjs [sizes=1000,10000,100000] [vnodes=40]
// vnodes is kept low so that 100,000 backends stay under MAX_RING_POINTS (vnodes x total weight).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../dist/config.js';
import { readConfigFile, loadConfigFile } from '../dist/config-file.js';

const BIN = fileURLToPath(new URL('../bin/ringlb', import.meta.url));
const sizes = (process.argv[2] ?? '1000,10000,100000').split(',').map(Number);
const vnodes = Number(process.argv[3] ?? 40);
const dir = mkdtempSync(join(tmpdir(), 'ringlb-scale-'));

/** A fleet of n backends at distinct addresses; `drop` leaves out every drop-th one (for diff). */
function fleet(n, drop = 0) {
  const backends = [];
  for (let i = 0; i < n; i++) {
    if (drop > 0 && i % drop === 0) continue;
    backends.push({ id: `ws-${i}`, host: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, port: 9000, weight: 1 + (i % 3) });
  }
  return { listen: { host: '0.0.0.0', port: 8080 }, backends, hashing: { vnodes } };
}

const ms = (start) => Number(process.hrtime.bigint() - start) / 1e6;

/** Wall time of one spawned command, failing loudly if it did not succeed. */
function timed(args) {
  const start = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [BIN, ...args], { maxBuffer: 1 << 30, encoding: 'utf8' });
  const took = ms(start);
  if (r.status !== 0) throw new Error(`ringlb ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(0, 500)}`);
  return took;
}

const rows = [];
for (const n of sizes) {
  const a = join(dir, `a-${n}.json`);
  const b = join(dir, `b-${n}.json`);
  writeFileSync(a, JSON.stringify(fleet(n)));
  writeFileSync(b, JSON.stringify(fleet(n, 10)));
  const text = readFileSync(a, 'utf8');
  let start = process.hrtime.bigint();
  parseConfig(text, a);
  const validate = ms(start);
  start = process.hrtime.bigint();
  readConfigFile(a);
  const readSync = ms(start);
  start = process.hrtime.bigint();
  await loadConfigFile(a);
  const loadWorker = ms(start);
  rows.push({
    backends: n,
    bytes: text.length,
    'parse+validate ms': validate.toFixed(0),
    'readConfigFile ms': readSync.toFixed(0),
    'loadConfigFile ms': loadWorker.toFixed(0),
    'check ms': timed(['check', '--config', a]).toFixed(0),
    'check --json ms': timed(['check', '--json', '--config', a]).toFixed(0),
    'lookup ms': timed(['lookup', '--config', a, '192.0.2.1', '2001:db8::1']).toFixed(0),
    'diff ms': timed(['diff', a, b]).toFixed(0),
  });
}
rmSync(dir, { recursive: true, force: true });
console.log(`node ${process.version}, vnodes ${vnodes}, weights 1-3`);
console.table(rows);
