// Config validation (src/config.ts): defaults, the exact `path: message` lines users see for bad
// configs, JSON syntax errors with line and column, and the config hash.
import t from 'tap';
import { closeSync, ftruncateSync, openSync } from 'node:fs';
import { configHash, MAX_NESTING, MAX_PROBLEMS, parseConfig, validateConfig, type Config } from '../../src/config.js';
import { loadConfigFile, MAX_CONFIG_BYTES, readConfigFile } from '../../src/config-file.js';
import { ConfigError, ConfigFileError } from '../../src/errors.js';
import { writeConfig } from '../helpers/index.js';

const LISTEN = { host: '0.0.0.0', port: 8080 };
const backend = (extra: Record<string, unknown> = {}) => ({ host: '10.0.0.11', port: 9000, ...extra });
/** A valid config with `extra` merged in at the top level. */
const withBase = (extra: Record<string, unknown>) => ({ listen: LISTEN, backends: [], ...extra });

/** The lines a user would see for `value`, or ['(valid)']. */
function problems(value: unknown): string[] {
  try {
    validateConfig(value);
    return ['(valid)'];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.lines();
  }
}

const DEFAULTS = {
  hashing: { algorithm: 'ring', vnodes: 160, tableSize: 65537, ipv4Prefix: 32, ipv6Prefix: 64, balanceFactor: null },
  healthCheck: { type: 'tcp', intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3, onDown: 'keep', passive: false, path: '/', hostHeader: null },
  rebalance: { rehome: false, windowMs: 60000, closeSpreadMs: 0 },
  timeouts: { connectMs: 3000, idleMs: 0, proxyHeaderMs: 5000 },
  retries: 2,
  limits: { maxConnections: 'auto', maxConnectionsPerIp: 0 },
  drainTimeoutMs: 0,
  shutdownTimeoutMs: 30000,
  proxyProtocol: 'off',
  sourceAddresses: [],
  metrics: { host: '127.0.0.1', port: 9180 },
  log: { level: 'info', connections: false },
  workers: 1,
};

t.test('a minimal config gets every default', async (t) => {
  const config = validateConfig({ listen: LISTEN, backends: [backend()] });
  t.strictSame(config, {
    listen: [{ host: '0.0.0.0', port: 8080, acceptProxy: null }],
    backends: [
      { id: '10.0.0.11:9000', host: '10.0.0.11', port: 9000, weight: 1, drain: false, proxyProtocol: 'off', sourceAddresses: [] },
    ],
    discovery: [],
    dns: { refreshMs: 30000, servers: [] },
    ...DEFAULTS,
  });
});

t.test('every key written out explicitly is kept', async (t) => {
  const full = {
    listen: [{ host: '::', port: 8443, acceptProxy: ['10.0.0.0/8', '2001:db8::1/128'] }],
    backends: [
      {
        id: 'ws-a',
        host: 'ws-a.internal',
        port: 9000,
        weight: 3,
        drain: true,
        proxyProtocol: 'v2',
        sourceAddresses: ['10.0.1.1', '2001:db8::5'],
      },
    ],
    hashing: { algorithm: 'maglev', vnodes: 40, tableSize: 251, ipv4Prefix: 24, ipv6Prefix: 48, balanceFactor: 1.25 },
    discovery: [
      { dns: 'ws-pool.internal', port: 9000, weight: 2, drain: false, proxyProtocol: 'v2', sourceAddresses: ['10.0.2.1'] },
      { srv: '_ws._tcp.ws.internal', weight: 1, drain: true, proxyProtocol: 'v1', sourceAddresses: [] },
    ],
    dns: { refreshMs: 5000, servers: ['127.0.0.1:5353', '[::1]:53'] },
    healthCheck: {
      type: 'websocket',
      intervalMs: 500,
      timeoutMs: 200,
      rise: 1,
      fall: 5,
      onDown: 'close',
      passive: true,
      path: '/health?probe=1',
      hostHeader: 'ws.example',
    },
    rebalance: { rehome: true, windowMs: 10000, closeSpreadMs: 2000 },
    timeouts: { connectMs: 100, idleMs: 60000, proxyHeaderMs: 250 },
    retries: 0,
    limits: { maxConnections: 20000, maxConnectionsPerIp: 16 },
    drainTimeoutMs: 5000,
    shutdownTimeoutMs: 0,
    proxyProtocol: 'v1',
    sourceAddresses: ['10.0.2.1'],
    metrics: { host: '::1', port: 0 },
    log: { level: 'debug', connections: true },
    workers: 'auto',
  };
  // Discovery entries are written among the backends and come out as `discovery`.
  const { discovery, ...written } = full;
  t.strictSame(validateConfig({ ...written, backends: [...full.backends, ...discovery] }), full);
});

t.test('listen is one address or a list of them', async (t) => {
  t.strictSame(validateConfig({ listen: LISTEN, backends: [] }).listen, [{ ...LISTEN, acceptProxy: null }]);
  const two = [{ host: '0.0.0.0', port: 8080 }, { host: '::', port: 8080 }];
  t.strictSame(validateConfig({ listen: two, backends: [] }).listen, two.map((l) => ({ ...l, acceptProxy: null })));
  // Listeners are known by their configured address, so even two port-0 entries may not repeat.
  const ephemeral = [{ host: '127.0.0.1', port: 0 }, { host: '127.0.0.1', port: 0 }];
  const err = t.throws(() => validateConfig({ listen: ephemeral, backends: [] })) as ConfigError;
  t.strictSame(err.lines(), ['listen[1]: duplicate of listen[0]']);
});

t.test('default backend id is host:port, with an IPv6 host in brackets', async (t) => {
  const config = validateConfig({
    listen: LISTEN,
    backends: [{ host: '10.0.0.12', port: 9000 }, { host: '::1', port: 9000 }, { host: 'ws.example', port: 80 }],
  });
  t.same(config.backends.map((b) => b.id), ['10.0.0.12:9000', '[::1]:9000', 'ws.example:80']);
});

t.test('backends: [] is valid', async (t) => {
  t.same(validateConfig({ listen: LISTEN, backends: [] }).backends, []);
});

t.test('the returned config is frozen, and the input is left alone', async (t) => {
  const input = { listen: [LISTEN], backends: [backend({ weight: 2 })], hashing: { vnodes: 10 } };
  const copy = structuredClone(input);
  const config = validateConfig(input);
  for (const part of [config, config.listen, config.listen[0], config.backends, config.backends[0], config.hashing,
    config.healthCheck, config.timeouts, config.metrics, config.log]) {
    t.ok(Object.isFrozen(part), 'frozen');
  }
  t.throws(() => {
    (config as { retries: number }).retries = 5;
  }, TypeError);
  t.throws(() => {
    (config.backends[0] as { weight: number }).weight = 5;
  }, TypeError);
  t.same(input, copy, 'input unchanged');
  t.notOk(Object.isFrozen(input) || Object.isFrozen(input.backends[0]), 'input not frozen');
});

t.test('bad configs: the exact lines a user sees', async (t) => {
  const KNOWN_TOP =
    'listen, backends, hashing, healthCheck, timeouts, retries, limits, rebalance, drainTimeoutMs, shutdownTimeoutMs, proxyProtocol, sourceAddresses, dns, metrics, log, workers';
  const cases: [string, unknown, string[]][] = [
    ['missing listen', { backends: [] }, ['listen: is required']],
    ['missing backends', { listen: LISTEN }, ['backends: is required (it may be [])']],
    [
      'listen port 70000',
      withBase({ listen: { host: '0.0.0.0', port: 70000 } }),
      ['listen.port: must be an integer from 0 to 65535, got 70000'],
    ],
    ['listen []', withBase({ listen: [] }), ['listen: must name at least one address']],
    [
      'duplicate listen',
      withBase({ listen: [LISTEN, { host: '::', port: 8080 }, { host: '0.0.0.0', port: 8080 }] }),
      ['listen[2]: duplicate of listen[0]'],
    ],
    [
      'listen host not a string',
      withBase({ listen: { host: 1, port: 1 } }),
      ['listen.host: must be an IP address or host name, got 1'],
    ],
    ['backends not an array', withBase({ backends: {} }), ['backends: must be an array, got {}']],
    [
      'backends[2].port 0',
      withBase({ backends: [backend(), backend({ port: 9001 }), backend({ port: 0 })] }),
      ['backends[2].port: must be an integer from 1 to 65535, got 0'],
    ],
    [
      'backends[1].weight -1',
      withBase({ backends: [backend(), backend({ port: 9001, weight: -1 })] }),
      ['backends[1].weight: must be an integer from 0 to 10000, got -1'],
    ],
    [
      'weight 1.5',
      withBase({ backends: [backend({ weight: 1.5 })] }),
      ['backends[0].weight: must be an integer from 0 to 10000, got 1.5'],
    ],
    [
      'weight as a string',
      withBase({ backends: [backend({ weight: '2' })] }),
      ['backends[0].weight: must be an integer from 0 to 10000, got "2"'],
    ],
    [
      'duplicate id',
      withBase({ backends: [backend({ id: 'ws-a' }), backend({ id: 'ws-a', port: 9001 })] }),
      ['backends[1].id: duplicate id "ws-a" (also backends[0])'],
    ],
    [
      'duplicate default id',
      withBase({ backends: [backend(), backend()] }),
      ['backends[1].id: duplicate id "10.0.0.11:9000" (also backends[0])'],
    ],
    [
      'id with a space',
      withBase({ backends: [backend({ id: 'ws a' })] }),
      ['backends[0].id: must be 1 to 128 printable ASCII characters without spaces, got "ws a"'],
    ],
    [
      'empty id',
      withBase({ backends: [backend({ id: '' })] }),
      ['backends[0].id: must be 1 to 128 printable ASCII characters without spaces, got ""'],
    ],
    ['missing host', withBase({ backends: [{ port: 9000 }] }), ['backends[0].host: is required']],
    [
      'drain not a boolean',
      withBase({ backends: [backend({ drain: 'yes' })] }),
      ['backends[0].drain: must be true or false, got "yes"'],
    ],
    ['unknown top-level key', withBase({ upstreams: [] }), [`upstreams: unknown key (known keys: ${KNOWN_TOP})`]],
    ['unknown top-level key (typo)', withBase({ retires: 3 }), ['retires: unknown key (did you mean "retries"?)']],
    [
      'unknown nested key (typo)',
      withBase({ healthCheck: { intervall: 5000 } }),
      ['healthCheck.intervall: unknown key (did you mean "intervalMs"?)'],
    ],
    [
      'unknown backend key',
      withBase({ backends: [backend({ wieght: 2 })] }),
      ['backends[0].wieght: unknown key (did you mean "weight"?)'],
    ],
    [
      'hashing.vnodes 0',
      withBase({ hashing: { vnodes: 0 } }),
      ['hashing.vnodes: must be an integer from 1 to 10000, got 0'],
    ],
    [
      'ipv4Prefix 33',
      withBase({ hashing: { ipv4Prefix: 33 } }),
      ['hashing.ipv4Prefix: must be an integer from 0 to 32, got 33'],
    ],
    [
      'ipv6Prefix 129',
      withBase({ hashing: { ipv6Prefix: 129 } }),
      ['hashing.ipv6Prefix: must be an integer from 0 to 128, got 129'],
    ],
    [
      'balanceFactor 1 (must be above 1)',
      withBase({ hashing: { balanceFactor: 1 } }),
      ['hashing.balanceFactor: must be null or a number greater than 1 (at most 1000), got 1'],
    ],
    [
      'balanceFactor a string',
      withBase({ hashing: { balanceFactor: '1.25' } }),
      ['hashing.balanceFactor: must be null or a number greater than 1 (at most 1000), got "1.25"'],
    ],
    [
      'rebalance: wrong types and ranges',
      withBase({ rebalance: { rehome: 'yes', windowMs: -1, closeSpreadMs: 1.5, every: 1 } }),
      [
        'rebalance.every: unknown key (known keys: rehome, windowMs, closeSpreadMs)',
        'rebalance.rehome: must be true or false, got "yes"',
        'rebalance.windowMs: must be an integer from 0 to 2147483647, got -1',
        'rebalance.closeSpreadMs: must be an integer from 0 to 2147483647, got 1.5',
      ],
    ],
    [
      'onDown neither keep nor close',
      withBase({ healthCheck: { onDown: 'drop' } }),
      ['healthCheck.onDown: must be one of keep, close, got "drop"'],
    ],
    [
      'too many ring points',
      withBase({ backends: [backend({ weight: 10000 }), backend({ port: 9001, weight: 10000 })], hashing: { vnodes: 1000 } }),
      ['hashing.vnodes: vnodes x total weight is 20000000 ring points, more than 10000000'],
    ],
    [
      'healthCheck.type "http"',
      withBase({ healthCheck: { type: 'http' } }),
      ['healthCheck.type: must be one of tcp, websocket, none, got "http"'],
    ],
    [
      'healthCheck numbers out of range',
      withBase({ healthCheck: { intervalMs: 9, timeoutMs: 0, rise: 0, fall: 0 } }),
      [
        'healthCheck.intervalMs: must be an integer from 10 to 3600000, got 9',
        'healthCheck.timeoutMs: must be an integer from 1 to 3600000, got 0',
        'healthCheck.rise: must be an integer from 1 to 1000, got 0',
        'healthCheck.fall: must be an integer from 1 to 1000, got 0',
      ],
    ],
    [
      'timeouts.connectMs 0',
      withBase({ timeouts: { connectMs: 0 } }),
      ['timeouts.connectMs: must be an integer from 1 to 3600000, got 0'],
    ],
    [
      'timeouts.idleMs -1',
      withBase({ timeouts: { idleMs: -1 } }),
      ['timeouts.idleMs: must be an integer from 0 to 2147483647, got -1'],
    ],
    ['retries -1', withBase({ retries: -1 }), ['retries: must be an integer from 0 to 100, got -1']],
    ['retries null', withBase({ retries: null }), ['retries: must be an integer from 0 to 100, got null']],
    ['workers 0', withBase({ workers: 0 }), ['workers: must be an integer from 1 to 256 or "auto", got 0']],
    ['workers "all"', withBase({ workers: 'all' }), ['workers: must be an integer from 1 to 256 or "auto", got "all"']],
    ['drainTimeoutMs -1', withBase({ drainTimeoutMs: -1 }), ['drainTimeoutMs: must be an integer from 0 to 2147483647, got -1']],
    ['shutdownTimeoutMs "30s"', withBase({ shutdownTimeoutMs: '30s' }), ['shutdownTimeoutMs: must be an integer from 0 to 2147483647, got "30s"']],
    ['metrics.port -1', withBase({ metrics: { port: -1 } }), ['metrics.port: must be an integer from 0 to 65535, got -1']],
    [
      'log.level "verbose"',
      withBase({ log: { level: 'verbose' } }),
      ['log.level: must be one of fatal, error, warn, info, debug, trace, silent, got "verbose"'],
    ],
    [
      'a top-level key nested elsewhere is just unknown',
      withBase({ hashing: { limits: 1 } }),
      ['hashing.limits: unknown key (known keys: algorithm, vnodes, tableSize, ipv4Prefix, ipv6Prefix, balanceFactor)'],
    ],
    ['hashing is an array', withBase({ hashing: [] }), ['hashing: must be an object, got []']],
    ['a null section is reported, not defaulted', withBase({ timeouts: null }), ['timeouts: must be an object, got null']],
    ['listen is a string', withBase({ listen: 'x' }), ['listen: must be an object with host and port, got "x"']],
    ['a numeric host is not a name', withBase({ metrics: { host: '0', port: 9180 } }), ['metrics.host: must be an IP address or host name, got "0"']],
    ['a hex shorthand is not an address', withBase({ listen: { host: '0x7f.1', port: 8080 } }), ['listen.host: must be an IP address or host name, got "0x7f.1"']],
    [
      'config is an array',
      [],
      ['config: must be a JSON object, got []'],
    ],
    [
      'config is a string',
      'x',
      ['config: must be a JSON object, got "x"'],
    ],
    [
      'several problems at once, in order',
      {
        listen: { host: 'not a host', port: 8080 },
        backends: [backend({ port: 0, weight: -1 }), 'x'],
        hashing: { vnodes: 0, extra: 1 },
        retries: 'two',
        log: { connections: 'yes' },
      },
      [
        'listen.host: must be an IP address or host name, got "not a host"',
        'backends[0].port: must be an integer from 1 to 65535, got 0',
        'backends[0].weight: must be an integer from 0 to 10000, got -1',
        'backends[1]: must be an object with host and port, got "x"',
        'hashing.extra: unknown key (known keys: algorithm, vnodes, tableSize, ipv4Prefix, ipv6Prefix, balanceFactor)',
        'hashing.vnodes: must be an integer from 1 to 10000, got 0',
        'retries: must be an integer from 0 to 100, got "two"',
        'log.connections: must be true or false, got "yes"',
      ],
    ],
  ];
  t.ok(cases.length >= 20);
  for (const [name, value, lines] of cases) t.strictSame(problems(value), lines, name);
});

t.test('a backend that failed validation is not also reported as a duplicate', async (t) => {
  // Neither config names an id twice; the ids below exist only as fallbacks for invalid fields.
  t.strictSame(problems(withBase({ backends: [{ port: 9000 }, { port: 9000 }] })), [
    'backends[0].host: is required',
    'backends[1].host: is required',
  ]);
  t.strictSame(problems(withBase({ backends: [backend({ id: 'ws a' }), backend({ id: 'ws b', port: 9001 })] })), [
    'backends[0].id: must be 1 to 128 printable ASCII characters without spaces, got "ws a"',
    'backends[1].id: must be 1 to 128 printable ASCII characters without spaces, got "ws b"',
  ]);
});

t.test('ConfigError carries the problems as path and message', async (t) => {
  const err = t.throws(() => validateConfig(withBase({ retries: -1, log: { level: 'x' } }))) as ConfigError;
  t.ok(err instanceof ConfigError);
  t.equal(err.code, 'RINGLB_ERR_CONFIG');
  t.same(err.problems, [
    { path: 'retries', message: 'must be an integer from 0 to 100, got -1' },
    { path: 'log.level', message: 'must be one of fatal, error, warn, info, debug, trace, silent, got "x"' },
  ]);
  t.equal(err.message, err.lines().join('\n'));
});

// ---- parseConfig --------------------------------------------------------------------------------

/** The ConfigFileError thrown by parseConfig(text, 'ringlb.json'). */
function fileError(text: string): ConfigFileError {
  try {
    parseConfig(text, 'ringlb.json');
  } catch (err) {
    if (err instanceof ConfigFileError) return err;
    throw err;
  }
  throw new Error('parseConfig did not throw');
}

t.test('parseConfig parses and validates', async (t) => {
  const text = JSON.stringify({ listen: LISTEN, backends: [backend()] }, null, 2);
  t.strictSame(parseConfig(text, 'ringlb.json'), validateConfig(JSON.parse(text)));
  t.throws(() => parseConfig('{"listen": {"host": "0.0.0.0", "port": 8080}}', 'ringlb.json'), ConfigError);
});

const JSON_HEAD = '{\n  "listen": {"host": "0.0.0.0", "port": 8080},\n';

t.test('invalid JSON names the file, the line and the column', async (t) => {
  const cases: [string, string][] = [
    // V8: "Expected ',' or ']' after array element in JSON at position 66": the '2'
    [JSON_HEAD + '  "backends": [1 2]\n}\n', 'line 3, column 18'],
    // V8: "Expected double-quoted property name in JSON at position 67": the '}'
    [JSON_HEAD + '  "backends": [], }\n', 'line 3, column 19'],
    // V8: "Unexpected number in JSON at position 62": the '1'
    [JSON_HEAD + '  "backends" 1\n}\n', 'line 3, column 14'],
  ];
  for (const [text, where] of cases) {
    const err = fileError(text);
    t.equal(err.code, 'RINGLB_ERR_CONFIG_FILE');
    t.equal(err.file, 'ringlb.json');
    t.match(err.message, /^ringlb\.json: not valid JSON: /);
    t.ok(err.message.endsWith(`(${where})`), `${JSON.stringify(err.message)} ends with (${where})`);
    t.same(err.lines(), [err.message]);
  }
});

t.test('an unexpected token is located too, on one line', async (t) => {
  // V8 words these without a position: "Unexpected token 'x', ...\"ackends\": x\n}\n\" is not
  // valid JSON", quoting the text around it, newlines included.
  const cases: [string, string][] = [
    [JSON_HEAD + '  "backends": x\n}\n', 'line 3, column 15'],
    [JSON_HEAD + '  "backends" []\n}\n', 'line 3, column 14'],
  ];
  for (const [text, where] of cases) {
    const err = fileError(text);
    t.match(err.message, /^ringlb\.json: not valid JSON: /);
    t.ok(err.message.includes(where), `${JSON.stringify(err.message)} names ${where}`);
    t.notOk(err.message.includes('\n'), 'the message is one line');
  }
});

t.test('empty text is a file error, not a crash', async (t) => {
  for (const text of ['', '   \n']) {
    const err = fileError(text);
    t.match(err.message, /^ringlb\.json: /);
    t.match(err.message, /\(line \d+, column \d+\)$/);
  }
  t.match(fileError('').message, /line 1, column 1/);
});

// ---- configHash ---------------------------------------------------------------------------------

t.test('configHash: stable, order-free over backends, sensitive to every value', async (t) => {
  const base = {
    listen: LISTEN,
    backends: [
      { id: 'ws-a', host: '10.0.0.11', port: 9000 },
      { id: 'ws-b', host: '10.0.0.12', port: 9000, weight: 2 },
      { id: 'ws-c', host: '10.0.0.13', port: 9000, drain: true },
    ],
  };
  const hash = configHash(validateConfig(base));
  t.match(hash, /^[0-9a-f]{16}$/);
  t.equal(configHash(validateConfig(structuredClone(base))), hash, 'same config, same hash');
  t.equal(configHash(validateConfig({ ...base, backends: [...base.backends].reverse() })), hash, 'backend order');
  t.equal(configHash(validateConfig({ ...base, ...DEFAULTS })), hash, 'defaults written out');
  t.equal(configHash(validateConfig({ backends: base.backends, listen: [LISTEN] })), hash, 'listen as a list of one');

  const b = (i: number, extra: Record<string, unknown>) =>
    base.backends.map((x, j) => (j === i ? { ...x, ...extra } : x));
  const variants: Record<string, unknown> = {
    'listen host': { ...base, listen: { host: '::', port: 8080 } },
    'listen port': { ...base, listen: { host: '0.0.0.0', port: 8081 } },
    'second listener': { ...base, listen: [LISTEN, { host: '::', port: 8080 }] },
    'backend id': { ...base, backends: b(0, { id: 'ws-x' }) },
    'backend host': { ...base, backends: b(0, { host: '10.0.0.99' }) },
    'backend port': { ...base, backends: b(0, { port: 9001 }) },
    'backend weight': { ...base, backends: b(1, { weight: 3 }) },
    'backend drain': { ...base, backends: b(2, { drain: false }) },
    'one backend fewer': { ...base, backends: base.backends.slice(1) },
    vnodes: { ...base, hashing: { vnodes: 161 } },
    ipv4Prefix: { ...base, hashing: { ipv4Prefix: 24 } },
    ipv6Prefix: { ...base, hashing: { ipv6Prefix: 48 } },
    'healthCheck.type': { ...base, healthCheck: { type: 'none' } },
    'healthCheck.intervalMs': { ...base, healthCheck: { intervalMs: 2001 } },
    'healthCheck.timeoutMs': { ...base, healthCheck: { timeoutMs: 1001 } },
    'healthCheck.rise': { ...base, healthCheck: { rise: 3 } },
    'healthCheck.fall': { ...base, healthCheck: { fall: 4 } },
    'timeouts.connectMs': { ...base, timeouts: { connectMs: 3001 } },
    'timeouts.idleMs': { ...base, timeouts: { idleMs: 1 } },
    retries: { ...base, retries: 3 },
    'metrics.host': { ...base, metrics: { host: '0.0.0.0' } },
    'metrics.port': { ...base, metrics: { port: 9181 } },
    'log.level': { ...base, log: { level: 'debug' } },
    'listen acceptProxy': { ...base, listen: { ...LISTEN, acceptProxy: ['10.0.0.0/8'] } },
    'backend proxyProtocol': { ...base, backends: b(0, { proxyProtocol: 'v2' }) },
    'backend sourceAddresses': { ...base, backends: b(0, { sourceAddresses: ['10.0.1.1'] }) },
    'timeouts.proxyHeaderMs': { ...base, timeouts: { proxyHeaderMs: 5001 } },
    'limits.maxConnections': { ...base, limits: { maxConnections: 0 } },
    'limits.maxConnectionsPerIp': { ...base, limits: { maxConnectionsPerIp: 1 } },
    proxyProtocol: { ...base, proxyProtocol: 'v1' },
    sourceAddresses: { ...base, sourceAddresses: ['10.0.2.1'] },
  };
  const seen = new Map<string, string>([[hash, 'base']]);
  for (const [name, value] of Object.entries(variants)) {
    const h = configHash(validateConfig(value) as Config);
    t.notOk(seen.has(h), `${name} changes the hash${seen.has(h) ? ` (same as ${seen.get(h)})` : ''}`);
    seen.set(h, name);
  }
});

// ---- issue 8: connection-edge keys ---------------------------------------------------------------

t.test("SPEC's full example config, minus the keys not implemented yet, is valid", async (t) => {
  // SPEC "Configuration", verbatim except: the `dns` backend, hashing.algorithm, the
  // healthCheck keys passive/onDown/path/hostHeader, rebalance, dns and log.connections.
  const spec = {
    listen: [
      { host: '0.0.0.0', port: 8080 },
      { host: '0.0.0.0', port: 8081, acceptProxy: ['10.0.0.0/8'] },
    ],
    backends: [
      { id: 'ws-a', host: '10.0.0.11', port: 9000 },
      { id: 'ws-b', host: '10.0.0.12', port: 9000, weight: 2, proxyProtocol: 'v1' },
      { id: 'ws-c', host: '10.0.0.13', port: 9000, drain: true },
      { id: 'ws-d', host: 'ws-d.ws.default.svc.cluster.local', port: 9000, sourceAddresses: ['10.0.1.1', '10.0.1.2'] },
    ],
    hashing: { vnodes: 160, ipv4Prefix: 32, ipv6Prefix: 64, balanceFactor: null },
    healthCheck: { type: 'tcp', intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3 },
    timeouts: { connectMs: 3000, idleMs: 0, proxyHeaderMs: 5000 },
    retries: 2,
    limits: { maxConnections: 'auto', maxConnectionsPerIp: 0 },
    drainTimeoutMs: 0,
    shutdownTimeoutMs: 30000,
    proxyProtocol: 'off',
    sourceAddresses: [],
    metrics: { host: '127.0.0.1', port: 9180 },
    log: { level: 'info' },
    workers: 1,
  };
  const config = validateConfig(spec);
  t.strictSame(config.listen[1], { host: '0.0.0.0', port: 8081, acceptProxy: ['10.0.0.0/8'] });
  t.strictSame(
    config.backends.map((b) => [b.id, b.proxyProtocol, b.sourceAddresses]),
    [
      ['ws-a', 'off', []],
      ['ws-b', 'v1', []],
      ['ws-c', 'off', []],
      ['ws-d', 'off', ['10.0.1.1', '10.0.1.2']],
    ],
  );
  t.strictSame(config.limits, { maxConnections: 'auto', maxConnectionsPerIp: 0 });
});

t.test('backends inherit proxyProtocol and sourceAddresses from the top level unless they set their own', async (t) => {
  const config = validateConfig(
    withBase({
      proxyProtocol: 'v2',
      sourceAddresses: ['10.0.1.1', '10.0.1.2'],
      backends: [backend(), backend({ port: 9001, proxyProtocol: 'off', sourceAddresses: [] }), backend({ port: 9002, sourceAddresses: ['10.0.3.3'] })],
    }),
  );
  t.strictSame(
    config.backends.map((b) => [b.proxyProtocol, b.sourceAddresses]),
    [
      ['v2', ['10.0.1.1', '10.0.1.2']],
      ['off', []],
      ['v2', ['10.0.3.3']],
    ],
  );
});

t.test('acceptProxy: CIDRs and bare addresses, normalised to addr/len with the address as written', async (t) => {
  const listen = (acceptProxy: unknown) => validateConfig(withBase({ listen: { ...LISTEN, acceptProxy } })).listen[0]!.acceptProxy;
  t.strictSame(listen(['10.0.0.0/8', '192.0.2.7', '2001:DB8::/32', '::1', '0.0.0.0/0']), [
    '10.0.0.0/8',
    '192.0.2.7/32',
    '2001:DB8::/32',
    '::1/128',
    '0.0.0.0/0',
  ]);
  t.equal(listen(null), null, 'null: not behind a balancer');
});

t.test('issue 8 keys: the exact lines for bad values', async (t) => {
  const at = (acceptProxy: unknown) => withBase({ listen: { ...LISTEN, acceptProxy } });
  const cases: [string, unknown, string[]][] = [
    ['acceptProxy []', at([]), ['listen.acceptProxy: must be a non-empty array of CIDRs ("10.0.0.0/8", "2001:db8::/32") or addresses, got []']],
    ['acceptProxy a string', at('10.0.0.0/8'), ['listen.acceptProxy: must be a non-empty array of CIDRs ("10.0.0.0/8", "2001:db8::/32") or addresses, got "10.0.0.0/8"']],
    [
      'acceptProxy bad entries',
      withBase({ listen: [LISTEN, { host: '::', port: 8081, acceptProxy: ['10.0.0.0/33', '::/129', 'lb.example', '10.0.0.0/08', 'fe80::1%eth0/64', '10.0.0.0/', 7] }] }),
      [
        'listen[1].acceptProxy[0]: must be a CIDR ("10.0.0.0/8") or an IP address, got "10.0.0.0/33"',
        'listen[1].acceptProxy[1]: must be a CIDR ("10.0.0.0/8") or an IP address, got "::/129"',
        'listen[1].acceptProxy[2]: must be a CIDR ("10.0.0.0/8") or an IP address, got "lb.example"',
        'listen[1].acceptProxy[3]: must be a CIDR ("10.0.0.0/8") or an IP address, got "10.0.0.0/08"',
        'listen[1].acceptProxy[4]: must be a CIDR ("10.0.0.0/8") or an IP address, got "fe80::1%eth0/64"',
        'listen[1].acceptProxy[5]: must be a CIDR ("10.0.0.0/8") or an IP address, got "10.0.0.0/"',
        'listen[1].acceptProxy[6]: must be a CIDR ("10.0.0.0/8") or an IP address, got 7',
      ],
    ],
    ['acceptProxy on metrics', withBase({ metrics: { port: 9180, acceptProxy: ['10.0.0.0/8'] } }), ['metrics.acceptProxy: unknown key (known keys: host, port)']],
    [
      'sourceAddresses: names, wildcards, duplicates',
      withBase({ sourceAddresses: ['10.0.1.1', 'lb.example', '0.0.0.0', '::', '10.0.1.1', '2001:db8::1', '2001:DB8:0::1', 5] }),
      [
        'sourceAddresses[1]: must be an IP address, got "lb.example"',
        'sourceAddresses[2]: must be one local address, not the wildcard "0.0.0.0"',
        'sourceAddresses[3]: must be one local address, not the wildcard "::"',
        'sourceAddresses[4]: duplicate of sourceAddresses[0]',
        'sourceAddresses[6]: duplicate of sourceAddresses[5]',
        'sourceAddresses[7]: must be an IP address, got 5',
      ],
    ],
    ['sourceAddresses not an array', withBase({ sourceAddresses: '10.0.1.1' }), ['sourceAddresses: must be an array of IP addresses, got "10.0.1.1"']],
    [
      'more than 256 source addresses',
      withBase({ backends: [backend({ sourceAddresses: Array.from({ length: 257 }, (_, i) => `10.1.${i >> 8}.${i & 255}`) })] }),
      ['backends[0].sourceAddresses: at most 256 addresses, got 257'],
    ],
    [
      'a backend at an IPv6 literal with only IPv4 source addresses',
      withBase({ backends: [backend(), { host: '::1', port: 9000, sourceAddresses: ['10.0.1.1'] }] }),
      ['backends[1].sourceAddresses: no IPv6 address for IPv6 backend [::1]:9000'],
    ],
    [
      'the same, inherited from the top level',
      withBase({ sourceAddresses: ['2001:db8::1'], backends: [backend(), { host: 'ws.example', port: 9000 }] }),
      ['sourceAddresses: no IPv4 address for IPv4 backend 10.0.0.11:9000 (backends[0])'],
    ],
    ['proxyProtocol "v3"', withBase({ proxyProtocol: 'v3' }), ['proxyProtocol: must be one of off, v1, v2, got "v3"']],
    ['backend proxyProtocol true', withBase({ backends: [backend({ proxyProtocol: true })] }), ['backends[0].proxyProtocol: must be one of off, v1, v2, got true']],
    ['maxConnections -1', withBase({ limits: { maxConnections: -1 } }), ['limits.maxConnections: must be an integer >= 0 or "auto", got -1']],
    ['maxConnections "max"', withBase({ limits: { maxConnections: 'max' } }), ['limits.maxConnections: must be an integer >= 0 or "auto", got "max"']],
    ['maxConnectionsPerIp 1.5', withBase({ limits: { maxConnectionsPerIp: 1.5 } }), ['limits.maxConnectionsPerIp: must be an integer >= 0, got 1.5']],
    ['limits typo', withBase({ limits: { maxConnection: 5 } }), ['limits.maxConnection: unknown key (did you mean "maxConnections"?)']],
    ['proxyHeaderMs 0', withBase({ timeouts: { proxyHeaderMs: 0 } }), ['timeouts.proxyHeaderMs: must be an integer from 1 to 3600000, got 0']],
  ];
  for (const [name, value, lines] of cases) t.strictSame(problems(value), lines, name);
});

t.test('issue 11: hashing.algorithm and a prime tableSize', async (t) => {
  t.equal(validateConfig(withBase({ hashing: { algorithm: 'rendezvous' } })).hashing.algorithm, 'rendezvous');
  t.equal(validateConfig(withBase({ hashing: { algorithm: 'maglev', tableSize: 131071 } })).hashing.tableSize, 131071);
  t.strictSame(problems(withBase({ hashing: { algorithm: 'jump', tableSize: 65536 } })), [
    'hashing.algorithm: must be one of ring, rendezvous, maglev, got "jump"',
    'hashing.tableSize: must be a prime from 3 to 1000003 (e.g. 65537), got 65536',
  ]);
  t.strictSame(problems(withBase({ hashing: { tableSize: 1000033 } })), ['hashing.tableSize: must be a prime from 3 to 1000003 (e.g. 65537), got 1000033']);
});

t.test('issue 10: discovery entries, dns servers, websocket check settings', async (t) => {
  const ok = validateConfig(
    withBase({
      backends: [backend(), { dns: 'pool.internal', port: 9000 }, { srv: '_ws._tcp.ws.internal', weight: 2 }],
      dns: { servers: ['127.0.0.1:5353', '10.0.0.2', '[::1]:53', '::1'] },
      healthCheck: { type: 'websocket', path: '/ws', hostHeader: 'ws.example' },
    }) as Record<string, unknown>,
  );
  t.equal(ok.backends.length, 1, 'static backends');
  t.strictSame(
    ok.discovery.map((e) => [e.dns ?? e.srv, e.port, e.weight]),
    [
      ['pool.internal', 9000, 1],
      ['_ws._tcp.ws.internal', undefined, 2],
    ],
  );
  t.strictSame(problems(withBase({ backends: [{ dns: '10.0.0.1', port: 9000 }] })), [
    'backends[0].dns: must be a DNS name, got "10.0.0.1"',
  ]);
  t.strictSame(problems(withBase({ backends: [{ dns: 'pool.internal' }] })), ['backends[0].port: is required']);
  t.strictSame(problems(withBase({ backends: [{ srv: '_ws._tcp.x', port: 9000, id: 'a' }] })), [
    'backends[0].port: unknown key (known keys: srv, weight, drain, proxyProtocol, sourceAddresses)',
    'backends[0].id: unknown key (known keys: srv, weight, drain, proxyProtocol, sourceAddresses)',
  ]);
  t.strictSame(problems(withBase({ dns: { servers: ['ns1.example', '127.0.0.1:99999'] } })), [
    'dns.servers[0]: must be an IP address with an optional port ("127.0.0.1:5353", "[::1]:53"), got "ns1.example"',
    'dns.servers[1]: must be an IP address with an optional port ("127.0.0.1:5353", "[::1]:53"), got "127.0.0.1:99999"',
  ]);
  t.strictSame(problems(withBase({ dns: { refreshMs: 10 } })), ['dns.refreshMs: must be an integer from 100 to 86400000, got 10']);
  t.strictSame(problems(withBase({ healthCheck: { path: 'ws', hostHeader: 'a b' } })), [
    'healthCheck.path: must be a path starting with / (printable ASCII, no spaces), got "ws"',
    'healthCheck.hostHeader: must be null or a host (printable ASCII, no spaces), got "a b"',
  ]);
  t.strictSame(problems(withBase({ healthCheck: { path: '/a\r\nX: y' } })), [
    'healthCheck.path: must be a path starting with / (printable ASCII, no spaces), got "/a\\r\\nX: y"',
  ], 'no header injection through the path');
});

// ---- issue 7 item 5: nothing in a file gives a stack trace, a two-line problem or a stall ----------

t.test('issue 7 item 5: arrays nested thousands deep are one problem line, not a RangeError', async (t) => {
  const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
  const err = fileOrConfigError(`{"listen": {"host": "0.0.0.0", "port": 8080}, "backends": ${deep(5000)}}`);
  t.strictSame(err.lines(), [`backends[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: nested deeper than ${MAX_NESTING} levels of arrays and objects`]);
  // The limit, exactly: 32 levels (the config object is the first) pass the nesting check.
  t.match(problems(withBase({ x: JSON.parse(deep(MAX_NESTING - 1)) }))[0], /^x: unknown key \(known keys: /);
  t.match(problems(withBase({ x: JSON.parse(deep(MAX_NESTING)) }))[0], /^x(\[0\]){31}: nested deeper than 32 levels/);
});

t.test('issue 7 item 5: keys are escaped in paths, so a problem is one line that cannot repaint a terminal', async (t) => {
  t.strictSame(problems(withBase({ backends: [backend({ 'a\nb': 1, 'x\u001b[2Jy': 2, 'caf\u00e9': 3, 'a"b': 4 })] })), [
    'backends[0]["a\\nb"]: unknown key (known keys: id, host, port, weight, drain, proxyProtocol, sourceAddresses)',
    'backends[0]["x\\u001b[2Jy"]: unknown key (known keys: id, host, port, weight, drain, proxyProtocol, sourceAddresses)',
    'backends[0]["caf\\u00e9"]: unknown key (known keys: id, host, port, weight, drain, proxyProtocol, sourceAddresses)',
    'backends[0]["a\\"b"]: unknown key (known keys: id, host, port, weight, drain, proxyProtocol, sourceAddresses)',
  ]);
  t.strictSame(problems(withBase({ '\u202ehost': 1 }))[0]!.split(':')[0], '["\\u202ehost"]', 'a bidi override at the top level');
});

t.test('issue 7 item 5: huge keys and values are shown cut, with their length', async (t) => {
  const key = 'w'.repeat(1_000_000);
  t.strictSame(problems(withBase({ backends: [backend({ [key]: 1 })] })), [
    `backends[0]["${'w'.repeat(60)}"…(1000000 characters)]: unknown key (known keys: id, host, port, weight, drain, proxyProtocol, sourceAddresses)`,
  ]);
  const id = 'i'.repeat(20_000_000);
  t.strictSame(problems(withBase({ backends: [backend({ id })] })), [
    `backends[0].id: must be 1 to 128 printable ASCII characters without spaces, got "${'i'.repeat(60)}"…(20000000 characters)`,
  ]);
  const host = `${'\u0007'.repeat(100)}`;
  t.strictSame(problems(withBase({ backends: [backend({ host })] })), [
    `backends[0].host: must be an IP address or host name, got "${'\\u0007'.repeat(10)}"…(100 characters)`,
  ]);
  const big = { list: Array.from({ length: 100_000 }, (_, i) => i) };
  t.strictSame(problems(withBase({ log: big })), ['log.list: unknown key (known keys: level, connections)']);
  t.strictSame(problems(withBase({ backends: [big.list] })), ['backends[0]: must be an object with host and port, got [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,…']);
});

t.test('issue 7 item 5: a number JSON cannot hold is reported as too large, not as null', async (t) => {
  const text = JSON.stringify(withBase({ retries: 1, backends: [backend({ weight: 2 })] }))
    .replace('"retries":1', '"retries":1e400')
    .replace('"weight":2', '"weight":-1e400');
  t.strictSame(fileOrConfigError(text).lines(), [
    'backends[0].weight: must be an integer from 0 to 10000, got a negative number too large',
    'retries: must be an integer from 0 to 100, got a number too large',
  ]);
});

t.test('issue 7 item 5: a leading UTF-8 byte order mark is accepted and stripped', async (t) => {
  const text = `\ufeff${JSON.stringify({ listen: LISTEN, backends: [backend()] })}`;
  t.strictSame(parseConfig(text, 'ringlb.json'), validateConfig({ listen: LISTEN, backends: [backend()] }));
  // Anywhere else it is a syntax error, named by its escape rather than printed invisibly.
  const err = fileError(`{"listen": \ufeff1}`);
  t.notOk(/[^\x20-\x7e]/.test(err.message.replace('…', '')), `${JSON.stringify(err.message)} is printable ASCII`);
});

t.test('issue 7 item 5: past MAX_PROBLEMS, the rest are counted on one line', async (t) => {
  const lines = problems(withBase({ backends: Array.from({ length: 1500 }, () => ({})) }));
  t.equal(lines.length, MAX_PROBLEMS + 1);
  t.equal(lines[0], 'backends[0].host: is required');
  t.equal(lines[MAX_PROBLEMS], 'config: 2000 more problems not shown');
});

/** The ConfigError or ConfigFileError that parseConfig throws for `text`. */
function fileOrConfigError(text: string): ConfigError | ConfigFileError {
  try {
    parseConfig(text, 'ringlb.json');
  } catch (err) {
    if (err instanceof ConfigError || err instanceof ConfigFileError) return err;
    throw err;
  }
  throw new Error('parseConfig did not throw');
}

// ---- config-file.ts: the size limit, and loading in a worker thread ------------------------------

t.test('a file larger than 16 MiB is refused before it is read', async (t) => {
  const file = writeConfig('');
  const fd = openSync(file, 'r+');
  ftruncateSync(fd, MAX_CONFIG_BYTES + 1); // sparse: its size is known without writing it
  closeSync(fd);
  const expected = `${file}: larger than 16 MiB (${MAX_CONFIG_BYTES + 1} bytes)`;
  t.strictSame((t.throws(() => readConfigFile(file)) as ConfigFileError).lines(), [expected]);
  const err = await loadConfigFile(file).catch((e: unknown) => e);
  t.ok(err instanceof ConfigFileError);
  t.strictSame((err as ConfigFileError).lines(), [expected]);
});

t.test('loadConfigFile: the same Config as readConfigFile, frozen, or the same error and lines', async (t) => {
  const good = writeConfig({ listen: LISTEN, backends: [backend({ sourceAddresses: ['10.0.1.1'] })] });
  const config = await loadConfigFile(good);
  t.strictSame(config, readConfigFile(good));
  for (const part of [config, config.listen[0], config.backends, config.backends[0], config.backends[0]!.sourceAddresses, config.limits]) {
    t.ok(Object.isFrozen(part), 'frozen again after crossing threads');
  }

  const bad = writeConfig(withBase({ retries: -1, backends: [backend({ 'a\nb': 1 })] }));
  const err = await loadConfigFile(bad).catch((e: unknown) => e);
  t.ok(err instanceof ConfigError, 'a ConfigError');
  t.strictSame((err as ConfigError).problems, (t.throws(() => readConfigFile(bad)) as ConfigError).problems);

  const missing = await loadConfigFile('/nonexistent/ringlb.json').catch((e: unknown) => e);
  t.ok(missing instanceof ConfigFileError, 'a ConfigFileError');
  t.strictSame((missing as ConfigFileError).lines(), ['/nonexistent/ringlb.json: no such file']);

  const text = await loadConfigFile(writeConfig('{"listen": 1,}')).catch((e: unknown) => e);
  t.ok(text instanceof ConfigFileError);
  t.match((text as ConfigFileError).detail, /^not valid JSON: .* \(line 1, column 14\)$/);

  // Loads in flight at once each get their own answer.
  const [a, b] = await Promise.allSettled([loadConfigFile(good), loadConfigFile(bad)]);
  t.equal(a.status, 'fulfilled');
  t.equal(b.status, 'rejected');
});
