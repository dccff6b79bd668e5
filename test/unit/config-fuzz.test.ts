// Fuzz of the config validator (issue 7 item 5): malformed configs from a seeded PRNG (wrong
// types and ranges at every key, deep nesting, huge and control-character keys and values,
// non-finite numbers) must each give only ConfigError or ConfigFileError, with every problem a
// single printable line `path: message` shorter than a bound. A failure names its seed.
import t, { type Test } from 'tap';
import { parseConfig, validateConfig } from '../../src/config.js';
import { ConfigError, ConfigFileError, type ConfigProblem } from '../../src/errors.js';
import { prng } from '../helpers/prng.js';


/** Longest line a problem may print: paths of a few levels, values and keys cut to 60 characters. */
const MAX_LINE = 500;

const KEYS = {
  top: ['listen', 'backends', 'hashing', 'healthCheck', 'timeouts', 'retries', 'limits', 'drainTimeoutMs',
    'shutdownTimeoutMs', 'proxyProtocol', 'sourceAddresses', 'metrics', 'log', 'workers', 'rebalance', 'dns'],
  listen: ['host', 'port', 'acceptProxy'],
  backend: ['id', 'host', 'port', 'weight', 'drain', 'proxyProtocol', 'sourceAddresses', 'dns', 'srv'],
  hashing: ['vnodes', 'ipv4Prefix', 'ipv6Prefix', 'balanceFactor', 'algorithm'],
  healthCheck: ['type', 'intervalMs', 'timeoutMs', 'rise', 'fall', 'passive'],
  timeouts: ['connectMs', 'idleMs', 'proxyHeaderMs'],
  limits: ['maxConnections', 'maxConnectionsPerIp'],
  metrics: ['host', 'port'],
  log: ['level', 'connections'],
};

function fuzzer(random: () => number) {
  const int = (n: number): number => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const nasty = (): string =>
    pick([
      'a\nb',
      '\u001b[2J\u001b[H',
      '\r',
      '"quoted"',
      'caf\u00e9',
      '\u202eevil',
      '\ufeff',
      '\ud800',
      'x'.repeat(1 + int(200_000)),
      '\u0000'.repeat(1 + int(300)),
      '10.0.0.1/99',
      '::',
      '0.0.0.0',
      'auto',
      'v2',
      '',
    ]);
  const nest = (depth: number): unknown => {
    let v: unknown = pick([1, 'x', null]);
    for (let i = 0; i < depth; i++) v = random() < 0.5 ? [v] : { [nasty()]: v };
    return v;
  };
  /** A value of the wrong type or out of range, most of the time. */
  const bad = (): unknown =>
    pick<() => unknown>([
      () => -1,
      () => 1.5,
      () => Infinity,
      () => -Infinity,
      () => NaN,
      () => 2 ** 53 + int(10),
      () => 1e300,
      () => int(70_000),
      () => true,
      () => null,
      () => nasty(),
      () => [],
      () => ({}),
      () => Array.from({ length: int(50) }, () => nasty()),
      () => nest(1 + int(60)),
      () => ({ [nasty()]: nasty() }),
    ])();
  const section = (keys: readonly string[]): unknown => {
    if (random() < 0.1) return bad();
    const obj: Record<string, unknown> = {};
    for (const k of keys) if (random() < 0.4) obj[k] = bad();
    if (random() < 0.2) obj[nasty()] = bad();
    return obj;
  };
  return (): unknown => {
    const config: Record<string, unknown> = {
      listen: random() < 0.5 ? section(KEYS.listen) : Array.from({ length: int(4) }, () => section(KEYS.listen)),
      backends: random() < 0.1 ? bad() : Array.from({ length: int(8) }, () => section(KEYS.backend)),
    };
    for (const key of KEYS.top.slice(2)) {
      if (random() < 0.3) {
        const keys = (KEYS as Record<string, readonly string[]>)[key];
        config[key] = keys ? section(keys) : bad();
      }
    }
    if (random() < 0.1) config[nasty()] = bad();
    return random() < 0.03 ? bad() : config;
  };
}

function checkProblems(t: Test, problems: readonly ConfigProblem[], lines: readonly string[], seed: number): void {
  t.equal(lines.length, problems.length);
  for (const [i, line] of lines.entries()) {
    const p = problems[i]!;
    const ok =
      line === `${p.path}: ${p.message}` &&
      p.path.length > 0 &&
      p.message.length > 0 &&
      line.length < MAX_LINE &&
      // printable ASCII only, plus the ellipsis that marks a cut
      /^[\x20-\x7e…]*$/.test(line);
    if (!ok) t.fail(`seed ${seed}: bad problem line ${JSON.stringify(line.slice(0, 600))} (${line.length} chars)`);
  }
}

t.test('issue 7 item 5: malformed configs give only single-line, bounded `path: message` problems', async (t) => {
  const CASES = 400;
  let invalid = 0;
  for (let seed = 1; seed <= CASES; seed++) {
    const random = prng(seed);
    const value = fuzzer(random)();
    // Half of them go through the JSON text path too (a BOM in front, now and then).
    const asText = random() < 0.5;
    try {
      if (asText) parseConfig(`${random() < 0.2 ? '\ufeff' : ''}${JSON.stringify(value) ?? ''}`, 'fuzz.json');
      else validateConfig(value);
    } catch (err) {
      if (err instanceof ConfigError) {
        invalid++;
        checkProblems(t, err.problems, err.lines(), seed);
      } else if (err instanceof ConfigFileError) {
        invalid++;
        checkProblems(t, [{ path: err.file, message: err.detail }], err.lines(), seed);
      } else {
        t.fail(`seed ${seed}: threw ${String(err)}`);
      }
    }
  }
  // Almost every generated config is invalid; the few valid ones are fine too.
  t.ok(invalid > CASES * 0.9, `${invalid} of ${CASES} were rejected`);
});
