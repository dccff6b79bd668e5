// The command line as users and scripts see it (SPEC "Command line"): the spawned bin, exact
// output lines, exit codes; `start` with real backends and real clients on loopback.
// Needs a built dist/ (`tsc -p tsconfig.json`): bin/ringlb runs the compiled code.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import {
  BIN,
  backendEntry,
  clientIp,
  collect,
  runRinglb,
  startBackend,
  tally,
  waitFor,
  whoAnswers,
  writeConfig,
  type RunResult,
} from '../helpers/index.js';

// Top-level tests are independent (port 0, own temp files): run them side by side.
t.jobs = 4;

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

/** Non-empty lines of some output. */
const linesOf = (text: string): string[] => text.split('\n').filter((l) => l !== '');

/** Problems as `path: message` lines, sorted: validation order is not part of the contract. */
const problemLines = (problems: ReadonlyArray<{ path: string; message: string }>): string[] =>
  problems.map((p) => `${p.path}: ${p.message}`).sort();

/** A server bound to 127.0.0.1 on a port the kernel chose; closed at teardown. */
async function occupyPort(t: Test): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as AddressInfo).port;
}

/** A loopback port with nothing listening on it (bound on port 0, then released). */
async function closedPort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Run `fn` over `items` with at most `limit` in flight; results in input order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

type LogLine = Record<string, unknown> & { level: number; msg: string };

interface RunningDaemon {
  readonly child: ChildProcess;
  /** stdout lines so far, parsed (a line that is not JSON is kept as `{ unparsed }`). */
  readonly logs: LogLine[];
  /** Resolves when the process has exited, with everything it wrote. */
  readonly done: Promise<RunResult>;
}

/** Spawn `ringlb start ...` and follow its stdout; it is SIGKILLed at teardown if still running. */
function spawnDaemon(t: Test, args: readonly string[]): RunningDaemon {
  const child = spawn(process.execPath, [BIN, 'start', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const done = collect(child);
  const logs: LogLine[] = [];
  let partial = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    const parts = (partial + chunk.toString()).split('\n');
    partial = parts.pop()!;
    for (const line of parts.filter((l) => l !== '')) {
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        logs.push({ level: -1, msg: '', unparsed: line });
      }
    }
  });
  return { child, logs, done };
}

/** Wait until a log line matches; fails at once, with stderr, if the daemon exits first. */
async function waitForLog(d: RunningDaemon, match: (l: LogLine) => boolean, what: string): Promise<LogLine> {
  let exit: RunResult | null = null;
  void d.done.then((r) => (exit = r));
  await waitFor(() => {
    if (d.logs.some(match)) return true;
    if (exit !== null) throw new Error(`ringlb exited (${exit.code ?? exit.signal}) before ${what}: ${exit.stderr}`);
    return false;
  }, what);
  return d.logs.find(match)!;
}

/** SIGTERM the daemon and return what it wrote; asserts every stdout line is JSON (SPEC "Logs"). */
async function stopDaemon(t: Test, d: RunningDaemon): Promise<RunResult> {
  d.child.kill('SIGTERM');
  const result = await d.done;
  t.equal(result.code, 0, 'SIGTERM: exit code 0');
  t.equal(result.signal, null, 'exited by itself, not killed by the signal');
  assertJsonLines(t, result.stdout);
  return result;
}

function assertJsonLines(t: Test, stdout: string): void {
  const bad = linesOf(stdout).filter((line) => {
    try {
      const value: unknown = JSON.parse(line);
      return typeof value !== 'object' || value === null || Array.isArray(value);
    } catch {
      return true;
    }
  });
  t.same(bad, [], 'every stdout line is one JSON object');
}

/** A base config on loopback port 0 for the proxy and the admin endpoint. */
const baseConfig = (backends: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  listen: { host: '127.0.0.1', port: 0 },
  metrics: { host: '127.0.0.1', port: 0 },
  backends,
  ...extra,
});

t.test('version, help, unknown command, missing --config', async (t) => {
  const [version, help, unknown, noConfig] = await Promise.all([
    runRinglb(['--version']),
    runRinglb(['--help']),
    runRinglb(['frobnicate']),
    runRinglb(['start']),
  ]);

  t.equal(version.stdout, `${pkg.version}\n`, '--version prints the package.json version');
  t.equal(version.code, 0, '--version exits 0');

  t.equal(help.code, 0, '--help exits 0');
  for (const command of ['start', 'check', 'lookup', 'demo']) {
    t.match(help.stdout, new RegExp(`^\\s+${command}\\b`, 'm'), `--help lists ${command}`);
  }

  t.equal(unknown.code, 1, 'unknown command: exit 1');
  t.match(unknown.stderr, /unknown command 'frobnicate'/, 'unknown command: named on stderr');
  t.equal(unknown.stdout, '', 'unknown command: nothing on stdout');

  t.equal(noConfig.code, 1, 'start without --config: exit 1');
  t.match(noConfig.stderr, /--config/, 'start without --config: stderr names the missing option');
  t.equal(noConfig.stdout, '', 'start without --config: nothing on stdout');
});

t.test('check: one line per backend with its exact share', async (t) => {
  const backends = [
    { id: 'ws-a', host: '10.0.0.11', port: 9000 },
    { id: 'ws-b', host: '10.0.0.12', port: 9000, weight: 2 },
    { id: 'ws-zero', host: '10.0.0.13', port: 9000, weight: 0 },
    { id: 'ws-drain', host: '2001:db8::14', port: 9000, drain: true },
  ];
  const file = writeConfig(baseConfig(backends));
  const reordered = writeConfig(baseConfig([backends[3], backends[1], backends[0], backends[2]]));
  const changed = writeConfig(baseConfig([backends[0], { ...backends[1], weight: 3 }, backends[2], backends[3]]));
  const [table, json, jsonReordered, jsonChanged] = await Promise.all([
    runRinglb(['check', '--config', file]),
    runRinglb(['check', '--json', '--config', file]),
    runRinglb(['check', '--json', '--config', reordered]),
    runRinglb(['check', '--json', '--config', changed]),
  ]);

  t.equal(table.code, 0, 'valid config: exit 0');
  t.equal(table.stderr, '', 'valid config: nothing on stderr');
  const rows = linesOf(table.stdout).map((line) => {
    const m = /^(\S+) {2,}(\S+) {2,}(\d+) {2,}(\S+) {2,}(\d+\.\d)%$/.exec(line);
    t.ok(m, `a row of five columns separated by two or more spaces: ${JSON.stringify(line)}`);
    return m ? { id: m[1]!, address: m[2]!, weight: Number(m[3]), state: m[4]!, percent: m[5]! } : null;
  });
  t.same(
    rows.map((r) => r && [r.id, r.address, r.weight, r.state]),
    [
      ['ws-a', '10.0.0.11:9000', 1, 'up'],
      ['ws-b', '10.0.0.12:9000', 2, 'up'],
      ['ws-zero', '10.0.0.13:9000', 0, 'up'],
      ['ws-drain', '[2001:db8::14]:9000', 1, 'draining'],
    ],
    'one row per backend, in config order: id, address, weight, state',
  );
  const percent = Object.fromEntries(rows.map((r) => [r?.id, r?.percent]));
  t.equal(percent['ws-zero'], '0.0', 'a weight-0 backend has no share');
  t.equal(percent['ws-drain'], '0.0', 'a draining backend has no share');
  const a = Number(percent['ws-a']);
  const b = Number(percent['ws-b']);
  t.ok(Math.abs(a + b - 100) <= 0.1, `the other shares sum to 100% (${a} + ${b})`);
  t.ok(b > a, `weight 2 holds more of the ring than weight 1 (${b}% > ${a}%)`);

  t.equal(json.code, 0, 'check --json on a valid config: exit 0');
  t.equal(linesOf(json.stdout).length, 1, 'check --json prints one line');
  const body = JSON.parse(json.stdout) as {
    valid: boolean;
    configHash: string;
    backends: Array<{ id: string; address: string; weight: number; state: string; share: number }>;
  };
  t.equal(body.valid, true, 'valid: true');
  t.match(body.configHash, /^[0-9a-f]{8,}$/, 'configHash is a hex digest');
  t.same(
    body.backends.map((x) => Object.keys(x).sort()),
    backends.map(() => ['address', 'id', 'share', 'state', 'weight']),
    'each backend has exactly id, address, weight, state, share',
  );
  t.same(
    body.backends.map((x) => [x.id, x.address, x.weight, x.state, (x.share * 100).toFixed(1)]),
    rows.map((r) => r && [r.id, r.address, r.weight, r.state, r.percent]),
    'the JSON says what the table says; share is the fraction behind the percentage',
  );
  t.ok(body.backends.every((x) => x.share >= 0 && x.share <= 1), 'shares are fractions 0-1');

  const other = JSON.parse(jsonReordered.stdout) as typeof body;
  t.equal(other.configHash, body.configHash, 'the order of backends does not change configHash');
  const shareById = (x: typeof body): Record<string, number> => Object.fromEntries(x.backends.map((y) => [y.id, y.share]));
  t.same(shareById(other), shareById(body), 'the order of backends does not change any share');
  const weighted = JSON.parse(jsonChanged.stdout) as typeof body;
  t.not(weighted.configHash, body.configHash, 'a different weight gives a different configHash');
});

t.test('check: invalid configs', async (t) => {
  const invalid = writeConfig(
    baseConfig(
      [
        { id: 'a', host: '127.0.0.1', port: 9001 },
        { id: 'b', host: '127.0.0.1', port: 0 },
        { id: 'c', host: '127.0.0.1', port: 9003, weight: -1 },
        { id: 'a', host: '127.0.0.1', port: 9004 },
        { id: 'e', port: 9005 },
      ],
      { hashing: { vnodes: 0 }, retires: 3 },
    ),
  );
  const expected = [
    'backends[1].port: must be an integer from 1 to 65535, got 0',
    'backends[2].weight: must be an integer from 0 to 10000, got -1',
    'backends[3].id: duplicate id "a" (also backends[0])',
    'backends[4].host: is required',
    'hashing.vnodes: must be an integer from 1 to 10000, got 0',
  ];
  // The typo `retires` (for `retries`) is named; the list of known keys after it may grow.
  const typo = /^retires: unknown key\b/;
  const missing = writeConfig('{}').replace(/ringlb\.json$/, 'missing.json');

  const [text, json, missingRun, missingJson] = await Promise.all([
    runRinglb(['check', '--config', invalid]),
    runRinglb(['check', '--json', '--config', invalid]),
    runRinglb(['check', '--config', missing]),
    runRinglb(['check', '--json', '--config', missing]),
  ]);

  const lines = linesOf(text.stderr).sort();
  t.equal(lines.filter((l) => typo.test(l)).length, 1, 'the unknown key `retires` is an error naming it');
  t.same(
    lines.filter((l) => !typo.test(l)),
    expected,
    'every other problem, one `path: message` line each, nothing else',
  );
  t.equal(text.stdout, '', 'nothing on stdout');
  t.equal(text.code, 1, 'invalid config: exit 1');

  t.equal(json.code, 1, 'check --json on an invalid config: exit 1');
  t.equal(linesOf(json.stdout).length, 1, 'check --json prints one line');
  const body = JSON.parse(json.stdout) as { valid: boolean; errors: Array<{ path: string; message: string }> };
  t.same(Object.keys(body).sort(), ['errors', 'valid'], 'exactly valid and errors');
  t.equal(body.valid, false, 'valid: false');
  t.same(problemLines(body.errors), lines, 'errors: the same problems as {path, message}');
  t.ok(
    body.errors.every((e) => Object.keys(e).sort().join() === 'message,path'),
    'each error has exactly path and message',
  );

  t.equal(missingRun.stderr, `${missing}: no such file\n`, 'missing file: `FILE: no such file`');
  t.equal(missingRun.stdout, '', 'missing file: nothing on stdout');
  t.equal(missingRun.code, 1, 'missing file: exit 1');
  t.equal(missingJson.code, 1, 'check --json on a missing file: exit 1');
  const missingBody = JSON.parse(missingJson.stdout) as typeof body;
  t.equal(missingBody.valid, false, 'missing file: valid: false');
  t.same(
    problemLines(missingBody.errors),
    [`${missing}: no such file`],
    'check --json on a missing file: one error whose `path: message` is the stderr line',
  );
});

t.test('check: a JSON syntax error is reported with its line and column', async (t) => {
  // Each file has its error on line 3; `at` is the 1-based column of the offending character.
  const cases = [
    { name: 'trailing comma', line3: '  "backends": [ { "id": "a", "host": "127.0.0.1", "port": 9001, } ]', at: ', }' },
    { name: 'stray comma', line3: '  "backends": [ , ]', at: ',' },
  ];
  const runs = await Promise.all(
    cases.map((c) => {
      const file = writeConfig(['{', '  "listen": { "host": "127.0.0.1", "port": 0 },', c.line3, '}', ''].join('\n'));
      return runRinglb(['check', '--config', file]).then((run) => ({ file, run }));
    }),
  );
  for (const [i, c] of cases.entries()) {
    const { file, run } = runs[i]!;
    const column = c.line3.indexOf(c.at) + c.at.length; // the last character of `at`, 1-based
    t.equal(run.code, 1, `${c.name}: exit 1`);
    t.equal(run.stdout, '', `${c.name}: nothing on stdout`);
    t.ok(run.stderr.startsWith(`${file}: `), `${c.name}: stderr starts with the file path`);
    t.match(run.stderr, `line 3, column ${column}`, `${c.name}: names line 3, column ${column}`);
    t.equal(linesOf(run.stderr).length, 1, `${c.name}: one problem, one line: ${JSON.stringify(run.stderr)}`);
  }
});

t.test('issue 7 item 5: hostile input gives short escaped problem lines, no stack trace', async (t) => {
  // One file with several of issue 7's cases at once: a UTF-8 byte order mark in front, a
  // number JSON cannot hold, keys with a newline and an escape sequence, and an id of a megabyte.
  const id = 'i'.repeat(1_000_000);
  const text = `\ufeff${JSON.stringify(baseConfig([{ id, host: '10.0.0.1', port: 9000, 'a\nb': 1 }], { retries: 1, '\u001b[2J': 0 }))}`;
  const file = writeConfig(text.replace('"retries":1', '"retries":1e400'));
  const deep = writeConfig(`{"listen": {"host": "127.0.0.1", "port": 0}, "backends": ${'['.repeat(5000)}${']'.repeat(5000)}}`);
  const [run, deepRun] = await Promise.all([runRinglb(['check', '--config', file]), runRinglb(['check', '--config', deep])]);
  t.equal(run.code, 1, 'exit 1');
  t.equal(run.stdout, '', 'nothing on stdout');
  t.same(linesOf(run.stderr).sort(), [
    '["\\u001b[2J"]: unknown key (known keys: listen, backends, hashing, healthCheck, timeouts, retries, limits, rebalance, drainTimeoutMs, shutdownTimeoutMs, proxyProtocol, sourceAddresses, dns, metrics, log, workers)',
    `backends[0].id: must be 1 to 128 printable ASCII characters without spaces, got "${'i'.repeat(60)}"…(1000000 characters)`,
    'backends[0]["a\\nb"]: unknown key (known keys: id, host, port, weight, drain, proxyProtocol, sourceAddresses)',
    'retries: must be an integer from 0 to 100, got a number too large',
  ]);
  t.equal(deepRun.code, 1, 'nested 5000 deep: exit 1');
  t.same(linesOf(deepRun.stderr), [`backends${'[0]'.repeat(31)}: nested deeper than 32 levels of arrays and objects`]);
});

/**
 * Spawn the bin with stdout piped to a reader that goes away after the first chunk, as
 * `ringlb ... | head -1` does; resolves with the exit and what was written to stderr.
 */
async function readerLeavesEarly(args: readonly string[]): Promise<{ code: number | null; signal: string | null; stderr: string; got: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let got = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdout!.once('data', (c: Buffer) => {
    got = c.toString();
    child.stdout!.destroy();
  });
  const [code, signal] = (await once(child, 'close')) as [number | null, string | null];
  return { code, signal, stderr, got };
}

t.test('issue 7 item 7: check and lookup exit quietly when their reader goes away', async (t) => {
  // Output far beyond a pipe's 64 KiB buffer, so the writes after the reader left fail (EPIPE).
  const fleet = Array.from({ length: 20_000 }, (_, i) => ({ id: `ws-${i}`, host: '10.0.0.1', port: 1024 + i }));
  const file = writeConfig(baseConfig(fleet, { hashing: { vnodes: 4 } }));
  const ips = Array.from({ length: 5000 }, (_, i) => `10.9.${i >> 8}.${i & 255}`);
  const [check, lookup] = await Promise.all([
    readerLeavesEarly(['check', '--config', file]),
    readerLeavesEarly(['lookup', '--config', file, ...ips]),
  ]);
  t.match(check.got, /^ws-0 +10\.0\.0\.1:1024 +1 +up +\d+\.\d%\n/, 'check: the reader got the first row');
  t.same([check.code, check.signal, check.stderr], [0, null, ''], 'check: exit 0, nothing on stderr');
  t.match(lookup.got, /^10\.9\.0\.0 ws-\d+\n/, 'lookup: the reader got the first line');
  t.same([lookup.code, lookup.signal, lookup.stderr], [0, null, ''], 'lookup: exit 0, nothing on stderr');
});

t.test('check --json: maxConnections is what limits.maxConnections resolves to in this process', async (t) => {
  const fleet = [{ id: 'ws-a', host: '10.0.0.1', port: 9000 }, { id: 'ws-b', host: '10.0.0.2', port: 9000 }];
  const auto = writeConfig(baseConfig(fleet));
  const fixed = writeConfig(baseConfig(fleet, { limits: { maxConnections: 500 } }));
  const run = async (file: string): Promise<RunResult> =>
    collect(spawn('prlimit', ['--nofile=1000:1000', '--', process.execPath, BIN, 'check', '--json', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const [a, f] = await Promise.all([run(auto), run(fixed)]);
  // auto: two descriptors per client out of 1000, less the reserve (64, plus one per backend).
  t.equal((JSON.parse(a.stdout) as { maxConnections: number }).maxConnections, Math.floor((1000 - 64 - 2) / 2));
  t.equal((JSON.parse(f.stdout) as { maxConnections: number }).maxConnections, 500);
});

t.test('lookup', async (t) => {
  const ids = ['ws-a', 'ws-b', 'ws-c', 'ws-d'];
  const fleet = ids.map((id, i) => ({ id, host: '10.0.0.1', port: 9000 + i }));
  const file = writeConfig(baseConfig(fleet));
  const drained = writeConfig(baseConfig(fleet.map((b) => (b.id === 'ws-c' ? { ...b, drain: true } : b))));

  // One call answers several questions: the order, IPv6, IPv4-mapped forms, repeats.
  const shown = ['192.0.2.1', '2001:db8::1', '::ffff:192.0.2.1', '198.51.100.7', '192.0.2.1'];
  const v4 = Array.from({ length: 60 }, (_, i) => `10.${i}.${(i * 7) % 256}.${(i * 13 + 1) % 256}`);
  const mapped = v4.map((ip) => `::ffff:${ip}`);
  const clients = Array.from({ length: 200 }, (_, i) => clientIp(i));
  const ips = [...shown, ...v4, ...mapped, ...clients];
  const [all, someDrained, notIp] = await Promise.all([
    runRinglb(['lookup', '--config', file, ...ips]),
    runRinglb(['lookup', '--config', drained, ...clients]),
    runRinglb(['lookup', '--config', file, '192.0.2.1', '300.1.1.1']),
  ]);

  t.equal(all.code, 0, 'exit 0');
  t.equal(all.stderr, '', 'nothing on stderr');
  const lines = linesOf(all.stdout).map((l) => l.split(' '));
  t.same(
    lines.map((l) => l[0]),
    ips,
    'one line per IP, in the order given',
  );
  t.same(
    lines.filter((l) => l.length !== 2 || !ids.includes(l[1]!)),
    [],
    'every line is `IP backend-id`',
  );
  const got = lines.map((l) => l[1]!);
  const at = (from: number, n: number): string[] => got.slice(from, from + n);
  t.equal(got[4], got[0], 'the same IP twice in one call: the same backend');
  t.equal(got[2], got[0], '::ffff:192.0.2.1 goes where 192.0.2.1 goes');
  t.same(at(shown.length + v4.length, mapped.length), at(shown.length, v4.length), 'each ::ffff:a.b.c.d maps like a.b.c.d');
  t.ok(Object.keys(tally(at(shown.length, v4.length))).length > 1, 'that sample spreads over several backends');

  const before = at(shown.length + v4.length + mapped.length, clients.length);
  const after = linesOf(someDrained.stdout).map((l) => l.split(' ')[1]!);
  t.equal(someDrained.code, 0, 'with a draining backend: exit 0');
  t.equal(after.length, clients.length, 'with a draining backend: a backend for every client');
  t.ok((tally(before)['ws-c'] ?? 0) > 0, 'without drain, ws-c serves some of these clients');
  t.equal(tally(after)['ws-c'], undefined, 'a draining backend is never returned');
  t.same(
    after.filter((_, i) => before[i] !== 'ws-c'),
    before.filter((id) => id !== 'ws-c'),
    'only the drained backend`s clients move (and a second process agrees on the rest)',
  );

  t.equal(notIp.stderr, '300.1.1.1: not an IP address\n', 'not an IP address: that error line only');
  t.equal(notIp.stdout, '', 'nothing on stdout, not even for the valid IP');
  t.equal(notIp.code, 1, 'not an IP address: exit 1');
});

t.test('start', { jobs: 5 }, async (t) => {
  t.test('a bad config: the problems on stderr, exit 1', async (t) => {
    const file = writeConfig(baseConfig([{ id: 'a', host: '127.0.0.1', port: 0 }], { retries: -1 }));
    const run = await runRinglb(['start', '--config', file]);
    t.same(linesOf(run.stderr).sort(), [
      'backends[0].port: must be an integer from 1 to 65535, got 0',
      'retries: must be an integer from 0 to 100, got -1',
    ], 'one `path: message` line per problem, nothing else');
    t.equal(run.code, 1, 'exit 1');
    t.equal(run.stdout, '', 'nothing on stdout: it never started');
  });

  t.test('the listen port already in use: one line on stderr, exit 1', async (t) => {
    const port = await occupyPort(t);
    const file = writeConfig({ ...baseConfig([]), listen: { host: '127.0.0.1', port } });
    const run = await runRinglb(['start', '--config', file]);
    t.equal(run.stderr, `listen 127.0.0.1:${port}: address already in use\n`, 'exactly one line naming the address');
    t.equal(run.code, 1, 'exit 1');
    t.notMatch(run.stdout, /ringlb started/, 'never reports having started');
    assertJsonLines(t, run.stdout);
  });

  t.test('routes each client as `lookup` says, and exits 0 on SIGTERM', async (t) => {
    const backends = await Promise.all(['ws-a', 'ws-b', 'ws-c'].map((id) => startBackend(t, id)));
    const file = writeConfig(baseConfig(backends.map((b) => backendEntry(b))));
    const d = spawnDaemon(t, ['--config', file]);
    const started = await waitForLog(d, (l) => l.msg === 'ringlb started', 'the startup log line');

    t.equal(started.level, 30, 'the startup line is at info');
    const listen = started.listen as string[];
    t.equal(listen.length, 1, 'one listen address');
    const m = /^127\.0\.0\.1:(\d+)$/.exec(listen[0]!);
    t.ok(m, `listen is host:port with the bound port: ${listen[0]}`);
    t.match(started.admin, /^127\.0\.0\.1:\d+$/, 'admin is host:port');
    const startedBackends = started.backends as Array<{ id: string; share: number }>;
    const ips = Array.from({ length: 240 }, (_, i) => clientIp(i));
    // What the offline commands say, asked while the clients connect.
    const offline = Promise.all([
      runRinglb(['check', '--json', '--config', file]),
      runRinglb(['lookup', '--config', file, ...ips]),
    ]);

    const port = Number(m![1]);
    const first = await mapLimit(ips, 40, (ip) => whoAnswers(port, ip));
    const second = await mapLimit(ips, 40, (ip) => whoAnswers(port, ip));
    const moved = ips.filter((_, i) => first[i] !== second[i]);
    t.same(moved, [], 'every client reaches the same backend on its second connection');

    const [checked, lookup] = await offline;
    const check = JSON.parse(checked.stdout) as { configHash: string; backends: Array<{ id: string; share: number }> };
    t.equal(started.configHash, check.configHash, 'the startup configHash is the one `check` prints');
    t.same(
      startedBackends.map((b) => [b.id, b.share]),
      check.backends.map((b) => [b.id, b.share]),
      'the startup line lists every backend with the share `check` prints',
    );

    t.equal(lookup.code, 0, 'lookup: exit 0');
    t.same(
      first.map((id, i) => `${ips[i]} ${id}`),
      linesOf(lookup.stdout),
      'every client reached the backend `ringlb lookup` names for its IP',
    );
    const counts = tally(first);
    t.same(Object.keys(counts), ['ws-a', 'ws-b', 'ws-c'], `all three backends serve clients: ${JSON.stringify(counts)}`);

    const result = await stopDaemon(t, d);
    t.notMatch(result.stdout, /client connected/, 'at the default level (info) no per-connection lines');
  });

  t.test('--log-level debug wins over log.level "warn" in the file', async (t) => {
    const backend = await startBackend(t, 'ws-a');
    const file = writeConfig(baseConfig([backendEntry(backend)], { log: { level: 'warn' } }));
    const d = spawnDaemon(t, ['--config', file, '--log-level', 'debug']);
    const started = await waitForLog(d, (l) => l.msg === 'ringlb started', 'the startup log line');
    const port = Number(/:(\d+)$/.exec((started.listen as string[])[0]!)![1]);
    t.equal(await whoAnswers(port, clientIp(7)), 'ws-a', 'the client reaches the only backend');
    const connected = await waitForLog(d, (l) => l.msg === 'client connected', 'a per-connection debug line');
    t.equal(connected.level, 20, 'per-connection events are at debug');
    t.equal(connected.backend, 'ws-a', 'the debug line names the backend');
    t.equal(connected.client, clientIp(7), 'and the client');
    await stopDaemon(t, d);
  });

  t.test('--log-level warn wins over log.level "debug" in the file', async (t) => {
    // A backend nobody listens on, checked often and marked down at the first failure: its
    // `backend down` warning shows that logging works and that startup is behind us.
    const port = await closedPort();
    const file = writeConfig(
      baseConfig([{ id: 'gone', host: '127.0.0.1', port }], {
        log: { level: 'debug' },
        healthCheck: { intervalMs: 50, fall: 1 },
      }),
    );
    const d = spawnDaemon(t, ['--config', file, '--log-level', 'warn']);
    const down = await waitForLog(d, (l) => l.msg === 'backend down', 'the `backend down` warning');
    t.equal(down.level, 40, 'the warning is at warn');
    // Exit code 0 (asserted by stopDaemon) proves the SIGTERM handler, installed after the
    // startup line would have been written, was in place: the absence below is meaningful.
    const result = await stopDaemon(t, d);
    t.notMatch(result.stdout, /ringlb started/, 'no `ringlb started` info line');
    t.same(
      linesOf(result.stdout).filter((l) => (JSON.parse(l) as LogLine).level < 40),
      [],
      'nothing below warn at all',
    );
  });
});
