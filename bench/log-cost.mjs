// The connection log's cost (issue 12 item 3, issue 13): ringlb's CPU per connection with
// `log: {connections: true}` against `false`, at a fixed rate of new connections (default
// 5,000/s: each sends 6 bytes, gets them echoed and closes), with ringlb's stdout going to a
// file. ringlb runs at --log-level info in both (the connection line is an info line), pinned to
// CPU 0; the client and the backends on CPU 1. The two settings alternate, --reps times each.
//
// Usage: npx tsc -p tsconfig.json && node bench/log-cost.mjs [--rate N] [--reps N] [--seconds S]
//        [--ringlb-cmd CMD]

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_RINGLB_CMD, detect, startPeer } from './harness/peers.mjs';
import { freePort, installCleanup, killAll, startNode, stop, treeCpu } from './harness/procs.mjs';
import { fmt, median } from './harness/stats.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: { rate: { type: 'string' }, reps: { type: 'string' }, seconds: { type: 'string' }, 'ringlb-cmd': { type: 'string' } },
  strict: true,
});
const rate = Number(args.rate ?? 5000);
const reps = Number(args.reps ?? 3);
const seconds = Number(args.seconds ?? 5);
const ringlbCmd = args['ringlb-cmd']?.split(/\s+/).filter(Boolean) ?? DEFAULT_RINGLB_CMD;
const log = (line) => process.stderr.write(`[log-cost] ${line}\n`);
installCleanup(log);

const found = detect({ ringlbCmd });
if (found.ringlb === null) {
  log(found.notes.join('; '));
  process.exit(1);
}
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringlb-logcost-'));
const hold = [await freePort(), await freePort()];
const backends = startNode('backends', path.join(here, 'harness', 'backends.mjs'), [JSON.stringify({ hold })], { log: path.join(dir, 'backends.log') });
await new Promise((resolve) => backends.once('message', resolve));

/** One measurement: ringlb CPU µs per completed connection, and the rate reached. */
async function measure(connections, tag) {
  const port = await freePort();
  const opts = { ringlbCmd, ringlbConfig: { log: { connections } } };
  const proxy = await startPeer('ringlb', { port, backends: hold, dir, pinned: true, opts, found, adminPort: await freePort(), tag, logLevel: 'info' });
  try {
    const job = { mode: 'churn', targets: [{ host: '127.0.0.1', port }], rate, conns: 2000, sourcePrefix: '127.8', warmupMs: 1500, durationMs: seconds * 1000, hardLimitMs: 60_000 };
    const child = startNode('client', path.join(here, 'harness', 'client.mjs'), [JSON.stringify(job)], { log: path.join(dir, 'client.log') });
    let cpu0 = null;
    const result = await new Promise((resolve, reject) => {
      child.on('message', (m) => {
        if (m?.phase === 'start') cpu0 = treeCpu(proxy.pid);
        else if (m?.phase === 'end') {
          const cpu1 = treeCpu(proxy.pid);
          resolve({ ...m.result, cpuSeconds: cpu1.user + cpu1.system - cpu0.user - cpu0.system });
        } else if (m?.phase === 'error') reject(new Error(m.error));
      });
      child.once('exit', (code) => reject(new Error(`client exited (${code})`)));
    });
    await stop(child, 500);
    const lines = fs.readFileSync(path.join(dir, `ringlb-${tag}.log`), 'utf8').split('\n').filter((l) => l.includes('"connection closed"')).length;
    return { usPerConnection: (result.cpuSeconds * 1e6) / result.connections, perSecond: result.perSecond, failed: result.failed, logLines: lines };
  } finally {
    await proxy.stopIt();
  }
}

const results = { false: [], true: [] };
for (let rep = 1; rep <= reps; rep++) {
  for (const connections of [false, true]) {
    const r = await measure(connections, `r${rep}-${connections}`);
    results[connections].push(r);
    log(`rep ${rep} log.connections=${connections}: ${fmt(r.usPerConnection)} µs/connection at ${fmt(r.perSecond)}/s (failed ${r.failed}, ${r.logLines} log lines)`);
  }
}
await stop(backends, 500);
const off = median(results.false.map((r) => r.usPerConnection));
const on = median(results.true.map((r) => r.usPerConnection));
const spread = (rs) => `${fmt(Math.min(...rs.map((r) => r.usPerConnection)))}–${fmt(Math.max(...rs.map((r) => r.usPerConnection)))}`;
process.stdout.write(
  [
    `connection log cost, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${reps} repetition(s) each, ${rate} connections/s offered, ${seconds} s each; ${found.ringlb}`,
    `| log.connections | ringlb CPU per connection (µs), median (min–max) | connections/s reached |`,
    '| --- | ---: | ---: |',
    `| false | ${fmt(off)} (${spread(results.false)}) | ${fmt(median(results.false.map((r) => r.perSecond)))} |`,
    `| true | ${fmt(on)} (${spread(results.true)}) | ${fmt(median(results.true.map((r) => r.perSecond)))} |`,
    `cost of the log: ${fmt(on - off)} µs per connection (${fmt((100 * (on - off)) / off)}%)`,
    '',
  ].join('\n'),
);
killAll();
fs.rmSync(dir, { recursive: true, force: true });
process.exit(0);
