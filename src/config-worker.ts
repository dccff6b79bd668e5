// The worker thread of loadConfigFile (config-file.ts): reads, parses and validates files off
// the daemon's event loop and posts each outcome as plain data (errors do not survive a
// structured clone as their classes; config-file.ts rebuilds them).

import { parentPort } from 'node:worker_threads';
import { readConfigFile, type WorkerAnswer, type WorkerReply, type WorkerRequest } from './config-file.js';
import { ConfigError, ConfigFileError } from './errors.js';

function answer(file: string): WorkerAnswer {
  try {
    return { ok: true, config: readConfigFile(file) };
  } catch (err) {
    if (err instanceof ConfigError) return { ok: false, problems: err.problems };
    if (err instanceof ConfigFileError) return { ok: false, file: err.file, detail: err.detail };
    return { ok: false, bug: err instanceof Error ? err.message : String(err) };
  }
}

parentPort!.on('message', ({ id, file }: WorkerRequest) => {
  parentPort!.postMessage({ id, answer: answer(file) } satisfies WorkerReply);
});
