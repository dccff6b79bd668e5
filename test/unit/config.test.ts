// Config validation (src/config.ts): defaults, the exact `path: message` lines users see for bad
// configs, JSON syntax errors with line and column, and the config hash.
import t from 'tap';
import { configHash, parseConfig, validateConfig, type Config } from '../../src/config.js';
import { ConfigError, ConfigFileError } from '../../src/errors.js';

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
  hashing: { vnodes: 160, ipv4Prefix: 32, ipv6Prefix: 64, balanceFactor: null },
  healthCheck: { type: 'tcp', intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3 },
  timeouts: { connectMs: 3000, idleMs: 0 },
  retries: 2,
  drainTimeoutMs: 0,
  shutdownTimeoutMs: 30000,
  metrics: { host: '127.0.0.1', port: 9180 },
  log: { level: 'info' },
  workers: 1,
};

t.test('a minimal config gets every default', async (t) => {
  const config = validateConfig({ listen: LISTEN, backends: [backend()] });
  t.strictSame(config, {
    listen: [{ host: '0.0.0.0', port: 8080 }],
    backends: [{ id: '10.0.0.11:9000', host: '10.0.0.11', port: 9000, weight: 1, drain: false }],
    ...DEFAULTS,
  });
});

t.test('every key written out explicitly is kept', async (t) => {
  const full = {
    listen: [{ host: '::', port: 8443 }],
    backends: [{ id: 'ws-a', host: 'ws-a.internal', port: 9000, weight: 3, drain: true }],
    hashing: { vnodes: 40, ipv4Prefix: 24, ipv6Prefix: 48, balanceFactor: null },
    healthCheck: { type: 'none', intervalMs: 500, timeoutMs: 200, rise: 1, fall: 5 },
    timeouts: { connectMs: 100, idleMs: 60000 },
    retries: 0,
    drainTimeoutMs: 5000,
    shutdownTimeoutMs: 0,
    metrics: { host: '::1', port: 0 },
    log: { level: 'debug' },
    workers: 'auto',
  };
  t.strictSame(validateConfig(full), full);
});

t.test('listen is one address or a list of them', async (t) => {
  t.strictSame(validateConfig({ listen: LISTEN, backends: [] }).listen, [LISTEN]);
  const two = [{ host: '0.0.0.0', port: 8080 }, { host: '::', port: 8080 }];
  t.strictSame(validateConfig({ listen: two, backends: [] }).listen, two);
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
    'listen, backends, hashing, healthCheck, timeouts, retries, drainTimeoutMs, shutdownTimeoutMs, metrics, log, workers';
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
      'balanceFactor 1.25',
      withBase({ hashing: { balanceFactor: 1.25 } }),
      ['hashing.balanceFactor: bounded loads are not implemented in this version of ringlb yet; use null'],
    ],
    [
      'too many ring points',
      withBase({ backends: [backend({ weight: 10000 }), backend({ port: 9001, weight: 10000 })], hashing: { vnodes: 1000 } }),
      ['hashing.vnodes: vnodes x total weight is 20000000 ring points, more than 10000000'],
    ],
    [
      'healthCheck.type "http"',
      withBase({ healthCheck: { type: 'http' } }),
      ['healthCheck.type: must be one of tcp, none, got "http"'],
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
      'limits (not implemented yet)',
      withBase({ limits: { maxConnections: 0 } }),
      ['limits: is not implemented in this version of ringlb yet; remove it'],
    ],
    [
      'proxyProtocol (not implemented yet)',
      withBase({ proxyProtocol: 'v1' }),
      ['proxyProtocol: is not implemented in this version of ringlb yet; remove it'],
    ],
    [
      'a not-yet key nested is just unknown',
      withBase({ hashing: { limits: 1 } }),
      ['hashing.limits: unknown key (known keys: vnodes, ipv4Prefix, ipv6Prefix, balanceFactor)'],
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
        proxyProtocol: 'v1',
      },
      [
        'proxyProtocol: is not implemented in this version of ringlb yet; remove it',
        'listen.host: must be an IP address or host name, got "not a host"',
        'backends[0].port: must be an integer from 1 to 65535, got 0',
        'backends[0].weight: must be an integer from 0 to 10000, got -1',
        'backends[1]: must be an object with host and port, got "x"',
        'hashing.extra: unknown key (known keys: vnodes, ipv4Prefix, ipv6Prefix, balanceFactor)',
        'hashing.vnodes: must be an integer from 1 to 10000, got 0',
        'retries: must be an integer from 0 to 100, got "two"',
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
  };
  const seen = new Map<string, string>([[hash, 'base']]);
  for (const [name, value] of Object.entries(variants)) {
    const h = configHash(validateConfig(value) as Config);
    t.notOk(seen.has(h), `${name} changes the hash${seen.has(h) ? ` (same as ${seen.get(h)})` : ''}`);
    seen.set(h, name);
  }
});
