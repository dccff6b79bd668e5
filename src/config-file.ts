// Reading a config file: the edge between the file system and the pure validator. The CLI
// commands read synchronously; a running daemon reads, parses and validates in a worker thread
// so that a large or hostile file never stalls its event loop (issue 7 item 5).

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { freezeConfig, parseConfig, type Config } from './config.js';
import { ConfigError, ConfigFileError, type ConfigProblem } from './errors.js';

/** Larger files are refused before they are read: a real fleet's config is far smaller. */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

/** The reason an `fs` call failed, as one line for `FILE: reason`. */
function describe(err: NodeJS.ErrnoException): string {
  if (err.code === 'ENOENT') return 'no such file';
  if (err.code === 'EISDIR') return 'is a directory, not a file';
  return err.message;
}

const tooLarge = (bytes: number): string => `larger than 16 MiB (${bytes} bytes)`;

/**
 * The text of FILE, at most MAX_CONFIG_BYTES. The size is checked before reading, and the read
 * stops past the limit too, for files whose size stat cannot tell (a FIFO, /dev/zero) or that
 * grow while being read.
 */
function readText(file: string): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new ConfigFileError(file, describe(err as NodeJS.ErrnoException));
  }
  try {
    const stat = fstatSync(fd);
    if (stat.isDirectory()) throw new ConfigFileError(file, 'is a directory, not a file');
    if (stat.size > MAX_CONFIG_BYTES) throw new ConfigFileError(file, tooLarge(stat.size));
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(1 << 20, MAX_CONFIG_BYTES + 1 - total));
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      chunks.push(chunk.subarray(0, n));
      total += n;
      if (total > MAX_CONFIG_BYTES) throw new ConfigFileError(file, `larger than 16 MiB (more than ${MAX_CONFIG_BYTES} bytes)`);
    }
    return Buffer.concat(chunks, total).toString('utf8');
  } catch (err) {
    if (err instanceof ConfigFileError) throw err;
    throw new ConfigFileError(file, describe(err as NodeJS.ErrnoException));
  } finally {
    closeSync(fd);
  }
}

/** Read and validate FILE. Throws ConfigFileError (unreadable, too large, not JSON) or ConfigError. */
export function readConfigFile(file: string): Config {
  return parseConfig(readText(file), file);
}

/** What the worker (config-worker.ts) posts back: a plain, structured-clonable value. */
export type WorkerAnswer =
  | { readonly ok: true; readonly config: Config }
  | { readonly ok: false; readonly problems: readonly ConfigProblem[] }
  | { readonly ok: false; readonly file: string; readonly detail: string }
  | { readonly ok: false; readonly bug: string };

/** A request to the worker and its answer carry the same id. */
export interface WorkerRequest {
  readonly id: number;
  readonly file: string;
}
export interface WorkerReply {
  readonly id: number;
  readonly answer: WorkerAnswer;
}

/** `readConfigFile`'s outcome as the worker computed it: the same Config (frozen again) or error. */
function fromAnswer(answer: WorkerAnswer): Config {
  if (answer.ok) return freezeConfig(answer.config);
  if ('problems' in answer) throw new ConfigError(answer.problems);
  if ('file' in answer) throw new ConfigFileError(answer.file, answer.detail);
  throw new Error(answer.bug);
}

/**
 * The worker's module next to this one: `.js` under dist/, `.ts` when this module itself runs
 * as TypeScript source (tap's loader, which the worker inherits through execArgv).
 */
const WORKER_URL = new URL(`./config-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);
/** A file that needs more heap than this to validate is refused, and the daemon lives on. */
const WORKER_HEAP_MB = 1024;

interface Pending {
  readonly file: string;
  readonly resolve: (config: Config) => void;
  readonly reject: (err: Error) => void;
}

/**
 * One worker per process, started on first use and kept: starting one costs little from dist/
 * but seconds under a TypeScript loader. It keeps the process alive only while a file is being
 * loaded. If it dies (out of memory), the loads in flight fail and the next load starts another.
 */
class ConfigWorker {
  private readonly worker = new Worker(WORKER_URL, { resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB } });
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  dead = false;

  constructor() {
    this.worker.unref();
    this.worker.on('message', (reply: WorkerReply) => {
      const p = this.pending.get(reply.id)!;
      this.settled(reply.id);
      try {
        p.resolve(fromAnswer(reply.answer));
      } catch (err) {
        p.reject(err as Error);
      }
    });
    this.worker.on('error', (err: NodeJS.ErrnoException) => this.fail(err));
    this.worker.on('exit', (code) => this.fail(new Error(`the config worker exited with code ${code}`)));
  }

  load(file: string): Promise<Config> {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { file, resolve, reject });
      this.worker.postMessage({ id, file } satisfies WorkerRequest);
    });
  }

  private settled(id: number): void {
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker.unref();
  }

  private fail(err: NodeJS.ErrnoException): void {
    this.dead = true;
    for (const [id, p] of this.pending) {
      this.settled(id);
      p.reject(
        err.code === 'ERR_WORKER_OUT_OF_MEMORY'
          ? new ConfigFileError(p.file, `needs more than ${WORKER_HEAP_MB} MB of memory to validate`)
          : err,
      );
    }
  }
}

let shared: ConfigWorker | null = null;

/**
 * Read, parse and validate FILE in a worker thread, so the event loop stays free; resolves with
 * the frozen Config or rejects with the ConfigFileError or ConfigError that readConfigFile
 * would throw, with the same lines.
 */
export function loadConfigFile(file: string): Promise<Config> {
  if (shared === null || shared.dead) shared = new ConfigWorker();
  return shared.load(file);
}
