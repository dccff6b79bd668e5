// The error registry (src/errors.ts): stable codes, one line per problem, every code documented.
import { existsSync, readFileSync } from 'node:fs';
import t from 'tap';
import {
  ConfigError,
  ConfigFileError,
  ERROR_CODES,
  ListenError,
  RinglbError,
  UsageError,
  WorkerError,
} from '../../src/errors.js';

t.test('every error code is documented in docs/errors.md', async (t) => {
  // The one unit test that reads a file: the docs are the contract for these codes.
  const doc = new URL('../../docs/errors.md', import.meta.url);
  if (!t.ok(existsSync(doc), 'docs/errors.md exists')) return;
  const text = readFileSync(doc, 'utf8');
  const missing = ERROR_CODES.filter((code) => !new RegExp(`\\b${code}\\b`).test(text));
  t.same(missing, [], 'codes not mentioned in docs/errors.md');
});

t.test('each error class has its code, name and lines()', async (t) => {
  const config = new ConfigError([
    { path: 'backends[2].weight', message: 'must be an integer from 0 to 10000, got -1' },
    { path: 'retries', message: 'must be an integer from 0 to 100, got "two"' },
  ]);
  const file = new ConfigFileError('ringlb.json', 'not valid JSON: Unexpected end of JSON input (line 1, column 1)');
  const listen = new ListenError('0.0.0.0:8080', 'address already in use');
  const usage = new UsageError('300.1.1.1: not an IP address');
  const worker = new WorkerError(['listen 127.0.0.1:8080: address already in use', 'worker 2: no answer to prepare within 10000 ms']);
  const all: [RinglbError, string, string, string[]][] = [
    [
      config,
      'RINGLB_ERR_CONFIG',
      'ConfigError',
      ['backends[2].weight: must be an integer from 0 to 10000, got -1', 'retries: must be an integer from 0 to 100, got "two"'],
    ],
    [
      file,
      'RINGLB_ERR_CONFIG_FILE',
      'ConfigFileError',
      ['ringlb.json: not valid JSON: Unexpected end of JSON input (line 1, column 1)'],
    ],
    [listen, 'RINGLB_ERR_LISTEN', 'ListenError', ['listen 0.0.0.0:8080: address already in use']],
    [usage, 'RINGLB_ERR_USAGE', 'UsageError', ['300.1.1.1: not an IP address']],
    [
      worker,
      'RINGLB_ERR_WORKER',
      'WorkerError',
      ['listen 127.0.0.1:8080: address already in use', 'worker 2: no answer to prepare within 10000 ms'],
    ],
  ];
  for (const [err, code, name, lines] of all) {
    t.ok(err instanceof RinglbError && err instanceof Error, `${name} is a RinglbError`);
    t.equal(err.code, code, `${name} code`);
    t.equal(err.name, name);
    t.strictSame(err.lines(), lines, `${name} lines`);
    t.equal(err.message, lines.join('\n'), `${name} message`);
  }
  t.same(config.problems.map((p) => p.path), ['backends[2].weight', 'retries']);
  t.equal(file.file, 'ringlb.json');
  t.equal(listen.address, '0.0.0.0:8080');
  t.equal(listen.reason, 'address already in use');
  t.same(
    [...all.map(([err]) => err.code)].sort(),
    [...ERROR_CODES].sort(),
    'ERROR_CODES lists exactly the codes of the error classes',
  );
});
