// Helpers for descriptor tests (issue 8 §2): the bin spawned under `prlimit --nofile`, the
// daemon's open descriptors read from /proc, clients held open one at a time, backends that
// count the health checks they receive, and scrapes that leave no connection behind.

import { spawn, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import http from 'node:http';
import net, { type Socket } from 'node:net';
import type { Test } from 'tap';
import {
  BIN,
  collect,
  logLinesOf,
  startedLine,
  writeConfig,
  type LogLine,
  type RunResult,
  type SpawnedDaemon,
  type TestBackend,
} from './index.js';

/** Whether util-linux `prlimit` is installed (Linux only). */
export const hasPrlimit = spawnSync('prlimit', ['--version'], { stdio: 'ignore' }).status === 0;

/** The command line that runs the bin with `nofile` as both soft and hard descriptor limit. */
const limited = (nofile: number, args: readonly string[]): string[] => [
  `--nofile=${nofile}:${nofile}`,
  '--',
  process.execPath,
  BIN,
  ...args,
];

/** Run the bin to completion under a descriptor limit (e.g. `check --json`). */
export async function runLimited(nofile: number, args: readonly string[], timeoutMs = 20_000): Promise<RunResult> {
  const child = spawn('prlimit', limited(nofile, args), { stdio: ['ignore', 'pipe', 'pipe'] });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const result = await collect(child);
  clearTimeout(timer);
  return result;
}

export interface LimitedDaemon extends SpawnedDaemon {
  /** The daemon's own pid (prlimit execs it, so this is the node process). */
  readonly pid: number;
}

/**
 * Spawn `ringlb start` on `config` under a descriptor limit and wait for its startup line.
 * Like spawnDaemon in index.ts, with prlimit in front.
 */
export async function spawnLimited(t: Test, config: unknown, nofile: number): Promise<LimitedDaemon> {
  const file = writeConfig(config);
  const child = spawn('prlimit', limited(nofile, ['start', '--config', file]), { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const logs = logLinesOf(child);
  const exited = collect(child);
  await startedLine(logs, exited, 20_000);
  const started = logs.find((l) => l.msg === 'ringlb started')! as LogLine & { listen: string[]; admin: string };
  const portOf = (address: string): number => Number(address.slice(address.lastIndexOf(':') + 1));
  return {
    child,
    pid: child.pid!,
    configFile: file,
    port: portOf(started.listen[0]!),
    adminPort: portOf(started.admin),
    logs,
    exited,
  };
}

/**
 * How many descriptors process `pid` can still open under a limit of `nofile` (Linux /proc).
 * The limit bounds descriptor numbers, not their count: one inherited above it (a parent's
 * pipe at fd 251, say) takes no slot, so only numbers below the limit are counted.
 */
export const freeDescriptors = (pid: number, nofile: number): number =>
  nofile - readdirSync(`/proc/${pid}/fd`).filter((name) => Number(name) < nofile).length;

/** GET /metrics on a connection of its own that is closed afterwards (no pooled socket stays open in the daemon). */
export function scrape(adminPort: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: adminPort, path: '/metrics', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`/metrics answered ${res.statusCode}`))));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('/metrics did not answer within 10 s')));
    req.on('error', reject);
  });
}

/** Every sample line of `metric` (with labels) in Prometheus text. */
export const samplesOf = (text: string, metric: string): string[] =>
  text.split('\n').filter((line) => line.startsWith(`${metric}{`) || line.startsWith(`${metric} `));

/** A client held open: `served` is the backend id it read, or null when ringlb closed it unserved. */
export interface HeldClient {
  readonly socket: Socket;
  readonly served: string | null;
}

/**
 * Connect from `localAddress` and wait for the backend's id line (served) or for the peer to
 * close or reset the connection (refused). A connection that does neither within `hangMs`
 * rejects: a refused client must be closed at once, never left hanging.
 */
export function holdClient(port: number, localAddress: string, hangMs = 10_000): Promise<HeldClient> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress, allowHalfOpen: true });
    let text = '';
    let settled = false;
    const settle = (served: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      if (served === null) socket.destroy();
      resolve({ socket, served });
    };
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      const nl = text.indexOf('\n');
      // The backend sends nothing after its id line until it is spoken to.
      if (nl >= 0) settle(text.slice(0, nl));
    };
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the client from ${localAddress} was neither served nor closed within ${hangMs} ms`));
    }, hangMs);
    socket.on('data', onData);
    socket.on('error', () => settle(null));
    socket.once('end', () => settle(null));
    socket.once('close', () => settle(null));
  });
}

/**
 * Count the TCP health checks a backend receives: connections that close without carrying a
 * byte from the peer. Every client a test lets through must therefore send something.
 */
export function countChecks(backend: TestBackend): { readonly count: number } {
  const counter = { count: 0 };
  backend.server.on('connection', (socket: Socket) => {
    let bytes = 0;
    socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
    socket.once('close', () => {
      if (bytes === 0) counter.count++;
    });
  });
  return counter;
}
