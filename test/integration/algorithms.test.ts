// The three hashing algorithms end to end (issue 11, SPEC `hashing.algorithm`): for `ring`,
// `rendezvous` and `maglev` alike, real backends on loopback behind a daemon — clients land where
// `ringlb lookup` says, a backend that goes down sends only its own clients on (to the next
// candidate of their own order) and they return, drain, bounded loads, `/ring` and
// `ringlb_ring_share` agree with `check --json`, `ringlb diff` predicts what a reload moves, and a
// reload that changes the algorithm logs what it moved. Also `check` on 1,000 backends.
// The spawned half needs a built dist/ (`tsc -p tsconfig.json`): bin/ringlb runs compiled code.

import { writeFileSync } from 'node:fs';
import t, { type Test } from 'tap';
import { validateConfig } from '../../src/config.js';
import { lookupAll } from '../../src/report.js';
import {
  adminGet,
  backendEntry,
  clientIp,
  connectFrom,
  landings,
  metricValue,
  readLine,
  roundTrip,
  runRinglb,
  spawnDaemonOn,
  startBackend,
  startDaemon,
  tally,
  waitFor,
  writeConfig,
  type TestBackend,
} from '../helpers/index.js';

t.setTimeout(180_000);
// Each algorithm's block has its own backends and daemons (port 0): run the three side by side.
t.jobs = 3;

const ALGORITHMS = ['ring', 'rendezvous', 'maglev'] as const;
type Algorithm = (typeof ALGORITHMS)[number];

const LOOPBACK = { host: '127.0.0.1', port: 0 };
const NO_CHECKS = { type: 'none' };
const FAST_CHECKS = { intervalMs: 50, timeoutMs: 200, rise: 2, fall: 2 };

type Entry = Record<string, unknown>;

/** A full config (listen and metrics on port 0, so a file of it can also be spawned). */
function configOf(algorithm: Algorithm, backends: readonly Entry[], extra: Entry = {}): Entry {
  const { hashing, ...rest } = extra;
  return {
    listen: LOOPBACK,
    metrics: LOOPBACK,
    healthCheck: NO_CHECKS,
    backends,
    hashing: { algorithm, ...(hashing as Entry | undefined) },
    ...rest,
  };
}

const entries = (backends: readonly TestBackend[], extra: (b: TestBackend) => Entry = () => ({})): Entry[] =>
  backends.map((b) => backendEntry(b, extra(b)));

/** Where `ips` go under `config` with every backend healthy (src/report.ts, as `ringlb lookup`). */
const lookupOf = (config: Entry, ips: readonly string[]): Array<string | null> => lookupAll(validateConfig(config), ips);

const ipRange = (from: number, count: number): string[] => Array.from({ length: count }, (_, i) => clientIp(from + i));

const startFleet = (t: Test, ids: readonly string[]): Promise<TestBackend[]> => Promise.all(ids.map((id) => startBackend(t, id)));

const FIVE = ['ws-a', 'ws-b', 'ws-c', 'ws-d', 'ws-e'];

interface RingBody {
  configHash: string;
  routingHash: string;
  algorithm: string;
  backends: Array<{ id: string; state: string; share: number; active: number }>;
}
const ringOf = async (adminUrl: string): Promise<RingBody> => JSON.parse((await adminGet(`${adminUrl}/ring`)).body) as RingBody;

const lines = (text: string): string[] => text.split('\n').filter((l) => l !== '');

/**
 * Sampling tolerance for an observed fraction of `n` clients against a fraction `p` of the hash
 * space: four standard deviations of a binomial proportion (a false failure about 1 in 16,000).
 */
const tolerance = (p: number, n: number): number => 4 * Math.sqrt((p * (1 - p)) / n);

for (const algorithm of ALGORITHMS) {
  t.test(algorithm, async (t) => {
    t.test('clients land where `ringlb lookup` says, and not where another algorithm would put them', async (t) => {
      const backends = await startFleet(t, FIVE);
      const config = configOf(algorithm, entries(backends));
      const ips = ipRange(0, 250);
      const [lookup, { port }] = await Promise.all([
        runRinglb(['lookup', '--config', writeConfig(config), ...ips]),
        startDaemon(t, config),
      ]);
      t.equal(lookup.code, 0, 'lookup: exit 0');
      const said = lines(lookup.stdout).map((l) => l.split(' ')[1]!);
      const landed = await landings(port, ips);
      t.same(landed, said, 'every client is answered by the backend lookup names');
      t.same(Object.keys(tally(landed)), FIVE, 'all five backends serve some of them');
      t.same(await landings(port, ips), landed, 'a reconnect lands on the same backend');
      // Were `hashing.algorithm` ignored anywhere, the daemon would agree with another algorithm.
      const other: Algorithm = algorithm === 'ring' ? 'rendezvous' : 'ring';
      const otherSays = lookupOf(configOf(other, entries(backends)), ips);
      const differ = landed.filter((id, i) => id !== otherSays[i]).length;
      t.ok(differ > ips.length / 2, `${differ} of ${ips.length} clients land elsewhere under ${other}`);
    });

    t.test('a backend that goes down sends only its own clients to their next candidate, and they return', async (t) => {
      const backends = await startFleet(t, FIVE);
      const config = configOf(algorithm, entries(backends), { healthCheck: FAST_CHECKS });
      const { port, adminUrl } = await startDaemon(t, config);
      const ips = ipRange(1000, 200);
      const before = await landings(port, ips);
      t.same(before, lookupOf(config, ips), 'before: as lookup says');
      const victim = backends[2]!;
      await victim.close();
      await waitFor(async () => (await ringOf(adminUrl)).backends.find((b) => b.id === victim.id)!.state === 'down', `${victim.id} marked down`);
      const during = await landings(port, ips);
      t.same(
        during.filter((_, i) => before[i] !== victim.id),
        before.filter((id) => id !== victim.id),
        'every client of the other backends stays where it was',
      );
      // Down and draining are both "not eligible": the next candidate in the client's own order.
      const next = lookupOf(configOf(algorithm, entries(backends, (b) => ({ drain: b === victim }))), ips);
      t.same(during, next, `${victim.id}'s clients go where lookup sends them with ${victim.id} drained`);
      const moved = tally(during.filter((_, i) => before[i] === victim.id));
      t.ok(Object.keys(moved).length >= 3, `they spread over the others: ${JSON.stringify(moved)}`);

      await startBackend(t, victim.id, victim.port);
      await waitFor(async () => (await ringOf(adminUrl)).backends.find((b) => b.id === victim.id)!.state === 'up', `${victim.id} up again`);
      t.same(await landings(port, ips), before, 'every client is back where it started');
    });

    t.test('drain: no new clients, the open connection stays, and undrained they return', async (t) => {
      const backends = await startFleet(t, FIVE);
      const config = configOf(algorithm, entries(backends));
      const { daemon, port, adminUrl } = await startDaemon(t, config);
      const ips = ipRange(2000, 200);
      const before = await landings(port, ips);
      const drained = backends[0]!;
      const heldIp = ips[before.indexOf(drained.id)]!;
      const held = await connectFrom(port, heldIp);
      t.teardown(() => held.destroy());
      t.equal(await readLine(held), drained.id, 'a connection held on the backend about to drain');

      const drainedConfig = configOf(algorithm, entries(backends, (b) => ({ drain: b === drained })));
      await daemon.reload(validateConfig(drainedConfig));
      const during = await landings(port, ips);
      t.same(during, lookupOf(drainedConfig, ips), 'clients land where lookup says with the drain');
      t.notOk(during.includes(drained.id), 'no new connection reaches the draining backend');
      t.same(
        during.filter((_, i) => before[i] !== drained.id),
        before.filter((id) => id !== drained.id),
        'only its clients move',
      );
      t.equal(await roundTrip(held, 'still here'), 'still here', 'the open connection still echoes');
      const ring = await ringOf(adminUrl);
      const row = ring.backends.find((b) => b.id === drained.id)!;
      t.same([row.state, row.share, row.active], ['draining', 0, 1], '/ring: draining, no share, one open connection');

      await daemon.reload(validateConfig(config));
      t.same(await landings(port, ips), before, 'undrained, every client is back');
    });

    t.test('bounded loads: a hot address fills its home, then its next candidates, in its own order', async (t) => {
      const backends = await startFleet(t, ['ws-a', 'ws-b', 'ws-c']);
      const base = configOf(algorithm, entries(backends));
      // The hot client's candidate order, from lookup alone: its home, then where it goes with
      // the home drained, then with both drained.
      const ip = clientIp(3000);
      const [home] = lookupOf(base, [ip]);
      const [second] = lookupOf(configOf(algorithm, entries(backends, (b) => ({ drain: b.id === home }))), [ip]);
      const third = backends.map((b) => b.id).find((id) => id !== home && id !== second)!;
      const { port, adminUrl } = await startDaemon(t, { ...base, hashing: { algorithm, balanceFactor: 1.25 } });
      // The k-th connection (k - 1 open) may go to a backend holding fewer than ceil(1.25 k / 3):
      // 1, 1, 2, 2, 3, 3, 3, 4, 4 — so of 9 connections the 2nd, 4th, 6th and 9th find the home
      // full and take the second candidate, and the 7th finds both full and takes the third.
      const got: string[] = [];
      for (let k = 0; k < 9; k++) {
        const socket = await connectFrom(port, ip);
        t.teardown(() => socket.destroy());
        got.push(await readLine(socket));
      }
      const [h, s, r] = [home!, second!, third];
      t.same(got, [h, s, h, s, h, s, r, h, s], `home ${h}, then ${s}, then ${r}`);
      const m = (await adminGet(`${adminUrl}/metrics`)).body;
      t.equal(metricValue(m, `ringlb_spilled_connections_total{backend="${h}"}`), 5, 'five spills, counted against the home');
      t.equal(metricValue(m, `ringlb_spilled_connections_total{backend="${s}"}`), 0, 'none against the others');
    });

    t.test('/ring and ringlb_ring_share report the algorithm and the shares `check --json` prints', async (t) => {
      const backends = await startFleet(t, FIVE);
      const weights: Record<string, number> = { 'ws-a': 1, 'ws-b': 2, 'ws-c': 1, 'ws-d': 3, 'ws-e': 1 };
      const config = configOf(algorithm, entries(backends, (b) => ({ weight: weights[b.id] })));
      const [checked, { adminUrl }] = await Promise.all([runRinglb(['check', '--json', '--config', writeConfig(config)]), startDaemon(t, config)]);
      t.equal(checked.code, 0, 'check: exit 0');
      const check = JSON.parse(checked.stdout) as { routingHash: string; backends: Array<{ id: string; share: number }> };
      const ring = await ringOf(adminUrl);
      t.equal(ring.algorithm, algorithm, `/ring says ${algorithm}`);
      t.equal(ring.routingHash, check.routingHash, 'the same routingHash');
      const shares = (rows: Array<{ id: string; share: number }>): Record<string, number> => Object.fromEntries(rows.map((b) => [b.id, b.share]));
      t.same(shares(ring.backends), shares(check.backends), 'the same share for every backend, to the last bit');
      const m = (await adminGet(`${adminUrl}/metrics`)).body;
      t.same(
        Object.fromEntries(FIVE.map((id) => [id, metricValue(m, `ringlb_ring_share{backend="${id}"}`)])),
        shares(check.backends),
        'ringlb_ring_share agrees',
      );
      const total = check.backends.reduce((n, b) => n + b.share, 0);
      t.ok(Math.abs(total - 1) < 1e-9, `the shares add up to 1 (${total})`);
      if (algorithm === 'rendezvous') {
        for (const b of check.backends) t.ok(Math.abs(b.share - weights[b.id]! / 8) < 1e-12, `${b.id}: exactly w/W (${b.share})`);
      }
      if (algorithm === 'maglev') {
        for (const b of check.backends) {
          // Exact over the 2^32 key hashes, each entry covering floor or ceil of 2^32 / 65537 of them.
          const hashes = b.share * 2 ** 32;
          t.ok(Number.isInteger(hashes), `${b.id}: a whole number of key hashes (${hashes})`);
          t.ok(Math.abs(b.share - weights[b.id]! / 8) <= 8 / 65537, `${b.id}: w/W within a few entries (${b.share})`);
        }
      }
    });

    t.test('`ringlb diff` predicts what a reload moves: the fraction, and for the ring and rendezvous where to', async (t) => {
      const backends = await startFleet(t, [...FIVE, 'ws-f']);
      const old = configOf(algorithm, entries(backends.slice(0, 5)));
      const next = configOf(algorithm, entries(backends));
      const [oldFile, newFile] = [writeConfig(old), writeConfig(next)];
      const [text, json] = await Promise.all([runRinglb(['diff', oldFile, newFile]), runRinglb(['diff', '--json', oldFile, newFile])]);
      t.same([text.code, json.code], [0, 0], 'diff: exit 0');
      const diff = JSON.parse(json.stdout) as { moved: number; backends: Array<{ id: string; before: number; after: number }> };
      const suffix = algorithm === 'rendezvous' ? ' (expected)' : '';
      t.equal(lines(text.stdout).at(-1), `moved: ${(diff.moved * 100).toFixed(1)}% of the hash space${suffix}`, 'the last line');
      if (algorithm === 'rendezvous') t.ok(Math.abs(diff.moved - 1 / 6) < 1e-12, `rendezvous: exactly 1/6 expected (${diff.moved})`);
      const added = diff.backends.find((b) => b.id === 'ws-f')!;
      t.same([added.before], [0], 'the new backend had no share before');
      if (algorithm !== 'maglev') t.ok(Math.abs(diff.moved - added.after) < 1e-12, 'only the new backend`s share moves');

      const { daemon, port } = await startDaemon(t, old);
      const ips = ipRange(4000, 600);
      const before = await landings(port, ips);
      await daemon.reload(validateConfig(next));
      const after = await landings(port, ips);
      t.same(after, lookupOf(next, ips), 'after the reload: as lookup says');
      const moves = ips.map((_, i) => [before[i]!, after[i]!] as const).filter(([a, b]) => a !== b);
      const observed = moves.length / ips.length;
      const allowed = tolerance(diff.moved, ips.length);
      t.ok(
        Math.abs(observed - diff.moved) <= allowed,
        `observed ${observed.toFixed(4)} of ${ips.length} clients moved; diff said ${diff.moved.toFixed(4)} (± ${allowed.toFixed(4)})`,
      );
      if (algorithm === 'maglev') {
        // Maglev's documented excess (docs/algorithm.md §12): a few move between old backends.
        const toNew = moves.filter(([, b]) => b === 'ws-f').length;
        t.ok(toNew >= moves.length * 0.8, `most moves (${toNew} of ${moves.length}) go to the new backend`);
      } else {
        t.same(moves.filter(([, b]) => b !== 'ws-f'), [], 'every move goes to the new backend');
      }
    });

    t.test('check with 1,000 backends finishes with every share', async (t) => {
      const fleet = Array.from({ length: 1000 }, (_, i) => ({ id: `ws-${i}`, host: '10.0.0.1', port: 1024 + i }));
      const run = await runRinglb(['check', '--json', '--config', writeConfig(configOf(algorithm, fleet))], 60_000);
      t.equal(run.code, 0, 'exit 0');
      const body = JSON.parse(run.stdout) as { valid: boolean; backends: Array<{ id: string; share: number }> };
      t.equal(body.backends.length, 1000, 'one row per backend');
      const values = body.backends.map((b) => b.share);
      const total = values.reduce((a, b) => a + b, 0);
      t.ok(Math.abs(total - 1) < 1e-9, `the shares add up to 1 (${total})`);
      t.ok(Math.min(...values) > 0, 'every backend has a share');
      if (algorithm === 'rendezvous') t.ok(values.every((v) => Math.abs(v - 0.001) < 1e-12), 'rendezvous: exactly 1/1000 each');
      if (algorithm === 'maglev') {
        t.ok(Math.max(...values) - Math.min(...values) <= 1 / 65537 + 1e-12, 'maglev: within one table entry of each other');
      }
    });
  });
}

t.test('a reload that changes the algorithm routes by the new one and logs what it moved', async (t) => {
  const backends = await startFleet(t, FIVE);
  const configs = ALGORITHMS.map((algorithm) => configOf(algorithm, entries(backends)));
  const files = configs.map((c) => writeConfig(c));
  const file = writeConfig(configs[0]);
  const d = await spawnDaemonOn(t, file);
  const ips = ipRange(5000, 300);
  let before = await landings(d.port, ips);
  t.same(before, lookupOf(configs[0]!, ips), 'ring: as lookup says');
  // ring -> rendezvous -> maglev -> ring: each algorithm is left once and entered once.
  for (const [from, to] of [[0, 1], [1, 2], [2, 0]] as const) {
    const what = `${ALGORITHMS[from]} -> ${ALGORITHMS[to]}`;
    const json = await runRinglb(['diff', '--json', files[from]!, files[to]!]);
    const { moved } = JSON.parse(json.stdout) as { moved: number };
    const seen = d.logs.length;
    writeFileSync(file, JSON.stringify(configs[to]));
    await waitFor(() => d.logs.slice(seen).some((l) => l.msg === 'config reloaded'), `the reload ${what}`);
    const line = d.logs.slice(seen).find((l) => l.msg === 'config reloaded')!;
    t.equal(line.moved, moved, `${what}: the log line's moved is diff's (${moved.toFixed(4)})`);
    const after = await landings(d.port, ips);
    t.same(after, lookupOf(configs[to]!, ips), `${what}: clients land as lookup says`);
    const observed = after.filter((id, i) => id !== before[i]).length / ips.length;
    const allowed = tolerance(moved, ips.length);
    t.ok(Math.abs(observed - moved) <= allowed, `${what}: observed ${observed.toFixed(4)} moved, expected ${moved.toFixed(4)} (± ${allowed.toFixed(4)})`);
    before = after;
  }
});
