// The disruption benchmark (issue 9 item 6): what a fleet change costs held WebSocket clients,
// with real sockets on loopback. 5 `ws` backends greeting with their id, ringlb spawned from
// bin/ringlb with a config file, and thousands of held clients from spread 127.x sources in a
// child process of their own; each reconnects the moment it is closed and logs when and to
// which backend. See docs/operations.md "Scaling out without a storm" for the figures.
//
// Usage: npm run bench:disruption -- [options]
//   --clients N      held WebSocket clients (default 5000, at most 9000: ringlb holds 2
//                    descriptors per client and the limit is 20,000 per process)
//   --reps N         repetitions of the short modes (default 3; medians are reported)
//   --long-reps N    repetitions of the 60 s modes (default 1)
//   --modes M,M      which modes (default all): add-off, add-rehome-10s, add-rehome-60s,
//                    add-lifetime-60s, remove-drain, remove-drain-spread
//   --max-minutes M  stop the whole run after M minutes (default 30)
//   --out FILE       JSON result file (default bench/results/disruption-<timestamp>.json)
//   --keep-logs      keep the temp dir of configs and logs
//
// Scenario "add": 5 -> 6 backends by rewriting the config file (the daemon's watcher reloads it).
// Scenario "remove": 5 -> 4 with drainTimeoutMs 5 s. Per mode, from the moment the file is
// written: reconnects forced (connections closed, by ringlb or by the lifetime emulation), how
// many of them changed backend, the peak of reconnects begun per 100 ms, reconnect time (close
// to greeting), and the time until the new backend holds its ring share: its connections reach
// 98% of share x clients (share from `ringlb check --json`), or every client whose home it is
// (from `ringlb lookup`) when the sample gives it fewer than that. For "remove": the time until
// the removed backend holds no connection.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort, installCleanup, killAll, run, sleep, start, startNode, stop, waitListening } from './harness/procs.mjs';
import { fmt, median, quantileSorted } from './harness/stats.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');
const BIN = path.join(repo, 'bin', 'ringlb');
const FLEET = path.join(here, 'harness', 'ws-fleet.mjs');
const HOLDERS = path.join(here, 'harness', 'ws-holders.mjs');
const startedAt = Date.now();
const log = (line) => process.stderr.write(`[disruption ${((Date.now() - startedAt) / 1000).toFixed(1).padStart(6)}s] ${line}\n`);

/** The share a new backend must reach, as a fraction of its ring share. */
const SHARE_TOLERANCE = 0.02;
const BUCKET_MS = 100;
const BEFORE = ['ws-a', 'ws-b', 'ws-c', 'ws-d', 'ws-e'];
const ADDED = 'ws-f';
const REMOVED = 'ws-e';
const DRAIN_MS = 5000;

/** Each mode: the change, the rebalance keys, how long to watch after the change. */
const MODES = {
  'add-off': { scenario: 'add', title: 'rehome off', rebalance: { rehome: false }, observeMs: 15_000 },
  'add-rehome-10s': { scenario: 'add', title: 'rehome on, windowMs 10 s', rebalance: { rehome: true, windowMs: 10_000 }, observeMs: 15_000 },
  'add-rehome-60s': { scenario: 'add', title: 'rehome on, windowMs 60 s', rebalance: { rehome: true, windowMs: 60_000 }, observeMs: 65_000, long: true },
  'add-lifetime-60s': { scenario: 'add', title: 'max lifetime, every connection recycled over 60 s', rebalance: { rehome: false }, recycleMs: 60_000, observeMs: 65_000, long: true },
  'remove-drain': { scenario: 'remove', title: 'drainTimeoutMs 5 s, closeSpreadMs 0', rebalance: { closeSpreadMs: 0 }, observeMs: 10_000 },
  'remove-drain-spread': { scenario: 'remove', title: 'drainTimeoutMs 5 s, closeSpreadMs 10 s', rebalance: { closeSpreadMs: 10_000 }, observeMs: 20_000 },
};

// ---------------------------------------------------------------------------------------------
// options

let parsed;
try {
  parsed = parseArgs({
    options: {
      clients: { type: 'string' },
      reps: { type: 'string' },
      'long-reps': { type: 'string' },
      modes: { type: 'string' },
      'max-minutes': { type: 'string' },
      out: { type: 'string' },
      'keep-logs': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
} catch (err) {
  process.stderr.write(`bench:disruption: ${err.message} (see --help)\n`);
  process.exit(1);
}
const args = parsed.values;
if (args.help) {
  const lines = fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n');
  const usage = lines.slice(lines.findIndex((l) => l.startsWith('// Usage:')));
  process.stdout.write(`${usage.slice(0, usage.findIndex((l) => l === '//')).map((l) => l.replace(/^\/\/ ?/, '')).join('\n')}\n`);
  process.exit(0);
}
const usageError = (message) => {
  process.stderr.write(`bench:disruption: ${message} (see --help)\n`);
  process.exit(1);
};
const posInt = (text, what, fallback) => {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) usageError(`--${what}: expected a positive integer, got ${text}`);
  return n;
};
const clientCount = posInt(args.clients, 'clients', 5000);
if (clientCount > 9000) usageError('--clients: at most 9000 (ringlb holds 2 descriptors per client; the limit is 20,000)');
const reps = posInt(args.reps, 'reps', 3);
const longReps = posInt(args['long-reps'], 'long-reps', 1);
const maxMinutes = posInt(args['max-minutes'], 'max-minutes', 30);
const modes = args.modes ? args.modes.split(',').map((m) => m.trim()).filter(Boolean) : Object.keys(MODES);
for (const m of modes) if (!MODES[m]) usageError(`--modes: unknown ${m} (one of ${Object.keys(MODES).join(', ')})`);

installCleanup((why) => log(why));
setTimeout(() => {
  log(`run exceeded --max-minutes ${maxMinutes}; stopping`);
  process.exit(2);
}, maxMinutes * 60_000).unref();

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringlb-disruption-'));
const ips = Array.from({ length: clientCount }, (_, i) => `127.20.${Math.floor(i / 250)}.${1 + (i % 250)}`);
log(`${clientCount} clients, ${reps} repetition(s) of the short modes and ${longReps} of the 60 s ones; logs and configs in ${dir}`);

// ---------------------------------------------------------------------------------------------
// the fleet, the configs and what the ring says

const ids = [...BEFORE, ADDED];
const backendPorts = Object.fromEntries(await Promise.all(ids.map(async (id) => [id, await freePort()])));
const fleet = startNode('ws-fleet', FLEET, [JSON.stringify({ backends: ids.map((id) => ({ id, port: backendPorts[id] })) })], { log: path.join(dir, 'fleet.log') });
await nextMessage(fleet, (m) => m.ready, 10_000, 'ws-fleet start');

function configFor(members, mode, ports) {
  return {
    listen: { host: '127.0.0.1', port: ports.listen },
    metrics: { host: '127.0.0.1', port: ports.metrics },
    backends: members.map((id) => ({ id, host: '127.0.0.1', port: backendPorts[id] })),
    // No active checks: the only changes are the ones the bench makes.
    healthCheck: { type: 'none' },
    drainTimeoutMs: mode.scenario === 'remove' ? DRAIN_MS : 0,
    rebalance: mode.rebalance,
    log: { level: 'info' },
  };
}
const afterMembers = (mode) => (mode.scenario === 'add' ? [...BEFORE, ADDED] : BEFORE.filter((id) => id !== REMOVED));

/** `ringlb check --json` and `ringlb lookup` of a config, through the CLI as an operator runs them. */
async function inspect(config, tag) {
  const file = path.join(dir, `inspect-${tag}.json`);
  fs.writeFileSync(file, JSON.stringify(config));
  const check = await run('check', process.execPath, [BIN, 'check', '--config', file, '--json'], { timeoutMs: 30_000 });
  if (check.code !== 0) throw new Error(`ringlb check ${tag}: ${check.stderr.trim()}`);
  const lookup = await run('lookup', process.execPath, [BIN, 'lookup', '--config', file, ...ips], { timeoutMs: 30_000 });
  if (lookup.code !== 0) throw new Error(`ringlb lookup ${tag}: ${lookup.stderr.trim()}`);
  const homes = new Map(lookup.stdout.trim().split('\n').map((line) => line.split(' ')));
  return { shares: Object.fromEntries(JSON.parse(check.stdout).backends.map((b) => [b.id, b.share])), homes: ips.map((ip) => homes.get(ip)) };
}
const placeholderPorts = { listen: 1, metrics: 2 };
const ring = {
  before: await inspect(configFor(BEFORE, MODES['add-off'], placeholderPorts), 'before'),
  add: await inspect(configFor(afterMembers(MODES['add-off']), MODES['add-off'], placeholderPorts), 'add'),
  remove: await inspect(configFor(afterMembers(MODES['remove-drain']), MODES['remove-drain'], placeholderPorts), 'remove'),
};
const movedBy = (scenario) => new Set(ips.map((_, i) => i).filter((i) => ring.before.homes[i] !== ring[scenario].homes[i]));
const addShare = ring.add.shares[ADDED];
const addHomes = ring.add.homes.filter((h) => h === ADDED).length;
const addTarget = Math.min(Math.ceil((1 - SHARE_TOLERANCE) * addShare * clientCount), addHomes);
log(`${ADDED}'s ring share after the add: ${(addShare * 100).toFixed(2)}% (${fmt(addShare * clientCount)} of ${clientCount} clients); the ring moves ${movedBy('add').size} of these clients to it; target ${addTarget} connections`);
log(`removing ${REMOVED} moves ${movedBy('remove').size} clients (its share was ${(ring.before.shares[REMOVED] * 100).toFixed(2)}%)`);

// ---------------------------------------------------------------------------------------------
// one run

function nextMessage(child, accept, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`${what}: no answer within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (m) => accept(m) && done(null, m);
    const onExit = (code) => done(new Error(`${what}: the process exited (${code})`));
    const done = (err, value) => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(value);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/** Send `message` to a child and wait for its answer. */
function ask(child, message, accept, timeoutMs) {
  const answer = nextMessage(child, accept, timeoutMs, message.cmd);
  child.send(message);
  return answer;
}

/** Write a config as an editor does (a temp file renamed over it), so the watcher sees one change. */
function writeConfig(file, config) {
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(config, null, 2));
  fs.renameSync(`${file}.tmp`, file);
}

async function adminJson(port, pathname) {
  const res = await fetch(`http://127.0.0.1:${port}${pathname}`);
  return pathname === '/metrics' ? res.text() : res.json();
}

/** ringlb_closed_connections_total summed by cause. */
function closedByCause(text) {
  const out = {};
  for (const line of text.split('\n')) {
    const m = /^ringlb_closed_connections_total\{[^}]*cause="([a-z_]+)"[^}]*\} (\S+)$/.exec(line);
    if (m) out[m[1]] = (out[m[1]] ?? 0) + Number(m[2]);
  }
  return out;
}

async function runOnce(name, rep) {
  const mode = MODES[name];
  const ports = { listen: await freePort(), metrics: await freePort() };
  const file = path.join(dir, `ringlb-${name}-${rep}.json`);
  writeConfig(file, configFor(BEFORE, mode, ports));
  const ringlb = start('ringlb', process.execPath, [BIN, 'start', '--config', file], { log: path.join(dir, `ringlb-${name}-${rep}.log`), cwd: repo });
  let holders = null;
  try {
    await waitListening(ringlb, [ports.listen, ports.metrics], 15_000, 'ringlb');
    holders = startNode('ws-holders', HOLDERS, [JSON.stringify({ target: { host: '127.0.0.1', port: ports.listen }, count: clientCount, sourcePrefix: '127.20', connectTimeoutMs: 60_000 })], { log: path.join(dir, 'holders.log') });
    const opened = await nextMessage(holders, (m) => 'held' in m, 70_000, 'clients');
    if (opened.held < clientCount) throw new Error(`${opened.failed} of ${clientCount} clients were not greeted (${opened.firstError})`);
    await sleep(500);
    await ask(holders, { cmd: 'mark' }, (m) => 'marked' in m, 5000);
    const closed0 = closedByCause(await adminJson(ports.metrics, '/metrics'));
    const after = afterMembers(mode);
    const t0 = Date.now();
    writeConfig(file, configFor(after, mode, ports));
    let reloadMs = null;
    while (Date.now() - t0 < 10_000) {
      const ids = (await adminJson(ports.metrics, '/ring')).backends.map((b) => b.id);
      if (ids.length === after.length && after.every((id) => ids.includes(id))) {
        reloadMs = Date.now() - t0;
        break;
      }
      await sleep(20);
    }
    if (reloadMs === null) throw new Error('the daemon did not reload the rewritten config within 10 s');
    // The lifetime window starts when the new ring is in force, as a rehoming window does: a
    // client recycled before would reconnect by the old ring and not be recycled again.
    if (mode.recycleMs) holders.send({ cmd: 'recycle', windowMs: mode.recycleMs });
    await sleep(t0 + mode.observeMs - Date.now());
    const closed1 = closedByCause(await adminJson(ports.metrics, '/metrics'));
    const report = await ask(holders, { cmd: 'report' }, (m) => 'events' in m, 10_000);
    const byRinglb = Object.fromEntries(Object.entries(closed1).map(([cause, n]) => [cause, n - (closed0[cause] ?? 0)]).filter(([, n]) => n > 0));
    return { t0, reloadMs, byRinglb, ...figures(mode, t0, report, opened.tally) };
  } finally {
    await stop(holders, 500);
    await stop(ringlb, 3000);
  }
}

/** The figures of one run, from the clients' log. */
function figures(mode, t0, report, tallyBefore) {
  const events = report.events.slice().sort((a, b) => a[1] - b[1]);
  const closes = events.filter((e) => e[0] === 'close');
  const opens = events.filter((e) => e[0] === 'open');
  const buckets = new Map();
  for (const [, t] of closes) {
    const b = Math.floor((t - t0) / BUCKET_MS);
    buckets.set(b, (buckets.get(b) ?? 0) + 1);
  }
  const latencies = Float64Array.from(opens.filter((e) => e[5] !== null).map((e) => e[1] - e[5])).sort();
  // Connections held by the backend that matters (the added one, or the removed one) over time.
  const watched = mode.scenario === 'add' ? ADDED : REMOVED;
  let held = tallyBefore[watched] ?? 0;
  let reachedMs = null;
  const reached = () => (mode.scenario === 'add' ? held >= addTarget : held === 0);
  for (const [kind, t, , backend] of events) {
    if (backend !== watched) continue;
    held += kind === 'open' ? 1 : -1;
    if (reachedMs === null && reached()) reachedMs = t - t0;
  }
  const closedSet = new Set(closes.map((e) => e[2]));
  const moved = movedBy(mode.scenario);
  return {
    forced: closes.length,
    changedBackend: opens.filter((e) => e[4] !== null && e[3] !== e[4]).length,
    peakPer100ms: Math.max(0, ...buckets.values()),
    reconnectP50Ms: quantileSorted(latencies, 0.5),
    reconnectMaxMs: latencies.length ? latencies[latencies.length - 1] : null,
    reachedMs,
    lastReconnectMs: opens.length ? opens[opens.length - 1][1] - t0 : null,
    heldAtEnd: report.tally[watched] ?? 0,
    retries: report.retries,
    // Where ringlb closes: the closed set is the set the ring moved (issue 9 item 3); null where
    // nothing or every connection is closed (rehome off, the lifetime emulation).
    closedIsMovedSet: mode.rebalance.rehome || mode.scenario === 'remove' ? closedSet.size === moved.size && [...moved].every((i) => closedSet.has(i)) : null,
  };
}

// ---------------------------------------------------------------------------------------------
// the run

const results = {};
const failures = [];
try {
  for (const name of modes) {
    const n = MODES[name].long ? longReps : reps;
    results[name] = [];
    for (let rep = 1; rep <= n; rep++) {
      try {
        const r = await runOnce(name, rep);
        results[name].push(r);
        log(`${name} #${rep}: forced ${r.forced}, changed ${r.changedBackend}, peak ${r.peakPer100ms}/100 ms, reconnect p50 ${fmt(r.reconnectP50Ms)} ms max ${fmt(r.reconnectMaxMs)} ms, ${MODES[name].scenario === 'add' ? 'share' : 'empty'} after ${r.reachedMs === null ? 'never' : `${fmt(r.reachedMs / 1000)} s`}, reload ${r.reloadMs} ms, ringlb closed ${JSON.stringify(r.byRinglb)}, closed = moved set: ${r.closedIsMovedSet}`);
      } catch (err) {
        failures.push({ mode: name, rep, error: String(err?.message ?? err) });
        log(`${name} #${rep}: FAILED: ${err?.message ?? err}`);
      }
    }
  }
} finally {
  await stop(fleet, 500);
}

// ---------------------------------------------------------------------------------------------
// output

const seconds = (ms) => (ms === null ? null : ms / 1000);
/** Median of a figure over the runs; null when any run never got there. */
const med = (runs, get) => (runs.some((r) => get(r) === null) ? null : median(runs.map(get)));
const cell = (value, never = 'never') => (value === null ? never : Number.isInteger(value) ? value.toLocaleString('en-US') : fmt(value));
const rows = (scenario) =>
  modes
    .filter((m) => MODES[m].scenario === scenario && results[m]?.length)
    .map((m) => {
      const runs = results[m];
      const never = `not within ${MODES[m].observeMs / 1000} s`;
      return `| ${MODES[m].title} | ${runs.length} | ${cell(med(runs, (r) => r.forced))} | ${cell(med(runs, (r) => r.changedBackend))} | ${cell(med(runs, (r) => r.peakPer100ms))} | ${cell(med(runs, (r) => r.reconnectP50Ms), '–')} / ${cell(med(runs, (r) => r.reconnectMaxMs), '–')} | ${cell(seconds(med(runs, (r) => r.reachedMs)), never)} |`;
    });
const cpuModel = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model;
const date = new Date().toISOString();
const header = `ringlb disruption benchmark, ${date.slice(0, 16).replace('T', ' ')} UTC — ${cpuModel} × ${os.cpus().length}, Linux ${os.release()}, Node ${process.version}; ${clientCount} held WebSocket clients, medians of the runs counted`;
const addRows = rows('add');
const removeRows = rows('remove');
const tables = [
  ...(addRows.length
    ? [
        `5 -> 6 backends (${ADDED}'s ring share ${(addShare * 100).toFixed(1)}%, ${movedBy('add').size} of ${clientCount} clients move to it by the ring):`,
        '',
        '| mode | runs | reconnects forced | changed backend | peak reconnects / 100 ms | reconnect p50 / max (ms) | new backend at its share after (s) |',
        '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
        ...addRows,
      ]
    : []),
  ...(removeRows.length
    ? [
        '',
        `5 -> 4 backends (${REMOVED} removed, ${movedBy('remove').size} clients on it), drainTimeoutMs ${DRAIN_MS / 1000} s, rehome off:`,
        '',
        '| mode | runs | reconnects forced | changed backend | peak reconnects / 100 ms | reconnect p50 / max (ms) | removed backend empty after (s) |',
        '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
        ...removeRows,
      ]
    : []),
].join('\n');
const output = `\n${header}\n\n${tables}\n${failures.length ? `\nFailures:\n${failures.map((f) => `- ${f.mode} #${f.rep}: ${f.error}`).join('\n')}\n` : ''}\nwall time ${((Date.now() - startedAt) / 1000).toFixed(0)} s\n`;
process.stdout.write(output);

const resultsDir = path.join(here, 'results');
fs.mkdirSync(resultsDir, { recursive: true });
const outFile = args.out ?? path.join(resultsDir, `disruption-${date.replace(/[:.]/g, '-')}.json`);
const meta = { date, cpu: { model: cpuModel, count: os.cpus().length }, kernel: os.release(), node: process.version, clients: clientCount, reps, longReps, shareTolerance: SHARE_TOLERANCE, addShare, addHomes, addTarget, movedByAdd: movedBy('add').size, movedByRemove: movedBy('remove').size };
fs.writeFileSync(outFile, `${JSON.stringify({ meta, modes: Object.fromEntries(modes.map((m) => [m, MODES[m]])), results, failures, markdown: `${header}\n\n${tables}` }, null, 2)}\n`);
log(`results written to ${path.relative(process.cwd(), outFile)}`);
killAll();
if (failures.length === 0 && !args['keep-logs']) fs.rmSync(dir, { recursive: true, force: true });
else log(`logs and configs kept in ${dir}`);
process.exit(failures.length === 0 ? 0 : 1);
