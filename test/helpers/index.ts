// Shared test helpers: real backends on port 0 that announce their id, clients bound to chosen
// 127.x source addresses, bounded polling, an in-process daemon with captured logs, and the
// spawned bin. Nothing here mocks the network.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import type { Test } from 'tap';
import { validateConfig } from '../../src/config.js';
import { Daemon, type DaemonOptions } from '../../src/daemon.js';

export const BIN = fileURLToPath(new URL('../../bin/ringlb', import.meta.url));

/** The i-th simulated client source address: 127.1.0.1, 127.1.0.2, ... 127.1.x.y (i < 60,000). */
export const clientIp = (i: number): string => `127.1.${Math.floor(i / 250)}.${1 + (i % 250)}`;

/** Poll `condition` every 20 ms until it holds, failing after `timeoutMs` with `what`. */
export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface TestBackend {
  readonly id: string;
  readonly server: Server;
  readonly port: number;
  /** Sockets accepted and still open. */
  readonly sockets: Set<Socket>;
  close(): Promise<void>;
}

/**
 * A TCP backend that writes `<id>\n` to every connection and then echoes what it receives.
 * Half-close aware: when the client ends, the backend ends after echoing everything.
 */
export async function startBackend(t: Test, id: string, port = 0): Promise<TestBackend> {
  const sockets = new Set<Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.write(`${id}\n`);
    socket.pipe(socket);
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  const backend: TestBackend = {
    id,
    server,
    port: (server.address() as AddressInfo).port,
    sockets,
    close: async () => {
      if (!server.listening) return;
      const closed = once(server, 'close');
      server.close();
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
  t.teardown(() => backend.close());
  return backend;
}

/**
 * Connect to 127.0.0.1:port from `localAddress`; resolves once connected. A reset that arrives
 * while no reader listens must not crash the test process: readers see it as 'close' (readLine
 * and roundTrip reject on it).
 */
export async function connectFrom(port: number, localAddress = '127.0.0.1'): Promise<Socket> {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress, allowHalfOpen: true });
  socket.on('error', () => {});
  await once(socket, 'connect');
  return socket;
}

/** Read from `socket` until a newline; resolves with the line (without the newline), leaving the socket paused. */
export function readLine(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      const nl = text.indexOf('\n');
      if (nl >= 0) {
        socket.removeListener('data', onData);
        socket.removeListener('error', reject);
        socket.removeListener('end', onEnd);
        // Paused, so that bytes after the line (put back) or arriving before the next read are
        // kept: a flowing socket with no 'data' listener drops them. The next readLine resumes.
        socket.pause();
        if (nl + 1 < text.length) socket.unshift(Buffer.from(text.slice(nl + 1), 'latin1'));
        resolve(text.slice(0, nl));
      }
    };
    const onEnd = (): void => reject(new Error(`connection ended before a line (got ${JSON.stringify(text)})`));
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('end', onEnd);
    socket.resume();
  });
}

/** Connect from `localAddress`, read the backend's id line, close. */
export async function whoAnswers(port: number, localAddress: string): Promise<string> {
  const socket = await connectFrom(port, localAddress);
  try {
    return await readLine(socket);
  } finally {
    socket.destroy();
  }
}

/** Where each of `ips` lands now: one connection each, 50 at a time. */
export async function landings(port: number, ips: readonly string[]): Promise<string[]> {
  const found: string[] = [];
  for (let i = 0; i < ips.length; i += 50) {
    found.push(...(await Promise.all(ips.slice(i, i + 50).map((ip) => whoAnswers(port, ip)))));
  }
  return found;
}

/** Count how often each value occurs, keys sorted: `{ "ws-a": 97, "ws-b": 103 }`. */
export function tally(values: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const v of [...values].sort()) counts[v] = (counts[v] ?? 0) + 1;
  return counts;
}

/** Log lines a test daemon wrote, parsed. */
export type LogLine = Record<string, unknown> & { level: number; msg: string };

export interface TestDaemon {
  readonly daemon: Daemon;
  readonly port: number;
  readonly adminUrl: string;
  readonly logs: LogLine[];
}

/** Start a daemon in this process on 127.0.0.1 port 0 with `config` merged over test defaults. */
export async function startDaemon(
  t: Test,
  config: Record<string, unknown>,
  options: Pick<DaemonOptions, 'clock' | 'random'> = {},
): Promise<TestDaemon> {
  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  const full = validateConfig({
    listen: { host: '127.0.0.1', port: 0 },
    metrics: { host: '127.0.0.1', port: 0 },
    ...config,
  });
  const daemon = await Daemon.start({ config: full, logger, logLevel: 'debug', ...options });
  t.teardown(() => daemon.close());
  const admin = daemon.adminAddress!;
  return { daemon, port: daemon.listenAddresses[0]!.port, adminUrl: `http://127.0.0.1:${admin.port}`, logs };
}

/** One backend entry for a config. */
export const backendEntry = (b: TestBackend, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  id: b.id,
  host: '127.0.0.1',
  port: b.port,
  ...extra,
});

/** Fetch an admin path; resolves with status and body text. */
export async function adminGet(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
}

/** The value of one sample in Prometheus text, e.g. metric('ringlb_connections_total{backend="a"}'); 0 when absent. */
export function metricValue(text: string, sample: string): number {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${sample} `)) return Number(line.slice(sample.length + 1));
  }
  return 0;
}

/** Write `config` as JSON to a fresh temporary file; returns its path. */
export function writeConfig(config: unknown, name = 'ringlb.json'): string {
  const dir = mkdtempSync(join(tmpdir(), 'ringlb-test-'));
  const file = join(dir, name);
  writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config, null, 2));
  return file;
}

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run the bin to completion with `args`. */
export async function runRinglb(args: readonly string[], timeoutMs = 20_000): Promise<RunResult> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const result = await collect(child);
  clearTimeout(timer);
  return result;
}

/** Collect a child's output until it exits. */
export async function collect(child: ChildProcess): Promise<RunResult> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  return { code, signal, stdout, stderr };
}

/** Resolves when the peer has closed `socket` (FIN or reset), reading and discarding any data. */
export function peerClosed(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    socket.on('error', () => {});
    socket.once('end', resolve);
    socket.once('close', resolve);
    socket.resume();
  });
}

export interface SpawnedDaemon {
  readonly child: ChildProcess;
  readonly configFile: string;
  readonly port: number;
  readonly adminPort: number;
  /** Every stdout line so far, parsed. */
  readonly logs: LogLine[];
  /** Resolves with the exit result. */
  readonly exited: Promise<RunResult>;
}

/** Spawn `ringlb start` on `config` (written to a temp file) and wait for its startup line. */
export function spawnDaemon(t: Test, config: unknown, args: readonly string[] = []): Promise<SpawnedDaemon> {
  return spawnDaemonOn(t, writeConfig(config), args);
}

/** Every JSON log line `child` writes on stdout, parsed, appended as they arrive. */
export function logLinesOf(child: ChildProcess): LogLine[] {
  const logs: LogLine[] = [];
  let partial = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop()!;
    for (const line of lines) if (line) logs.push(JSON.parse(line) as LogLine);
  });
  return logs;
}

/** Resolves once `logs` has the startup line; rejects with stderr if the process exits first. */
export async function startedLine(logs: readonly LogLine[], exited: Promise<RunResult>, timeoutMs = 10_000): Promise<LogLine> {
  await Promise.race([
    waitFor(() => logs.some((l) => l.msg === 'ringlb started'), 'the daemon to start', timeoutMs),
    exited.then((r) => {
      throw new Error(`ringlb exited early (${r.code}): ${r.stderr.trim()}`);
    }),
  ]);
  return logs.find((l) => l.msg === 'ringlb started')!;
}

/** Spawn `ringlb start --config FILE` (a file the test manages) and wait for its startup line. */
export async function spawnDaemonOn(t: Test, file: string, args: readonly string[] = []): Promise<SpawnedDaemon> {
  const child = spawn(process.execPath, [BIN, 'start', '--config', file, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const logs = logLinesOf(child);
  const exited = collect(child);
  const started = (await startedLine(logs, exited)) as LogLine & { listen: string[]; admin: string };
  const portOf = (address: string): number => Number(address.slice(address.lastIndexOf(':') + 1));
  return { child, configFile: file, port: portOf(started.listen[0]!), adminPort: portOf(started.admin), logs, exited };
}

/** Resident set size of a process in bytes, from /proc (Linux). */
export function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+) kB/.exec(status);
  return kb ? Number(kb[1]) * 1024 : 0;
}

/** Write a line and resolve with the line that comes back; rejects if the connection closes first. */
export async function roundTrip(socket: Socket, text: string): Promise<string> {
  const what = JSON.stringify(text);
  if (socket.destroyed || socket.readableEnded) throw new Error(`the connection was closed before ${what} was sent`);
  let onClose!: () => void;
  let timer!: NodeJS.Timeout;
  const failed = new Promise<never>((_, reject) => {
    onClose = () => reject(new Error(`the connection closed before ${what} came back`));
    timer = setTimeout(() => reject(new Error(`no echo of ${what} within 10 s`)), 10_000);
    socket.once('end', onClose).once('close', onClose);
  });
  socket.write(`${text}\n`);
  try {
    return await Promise.race([readLine(socket), failed]);
  } finally {
    clearTimeout(timer);
    socket.removeListener('end', onClose).removeListener('close', onClose);
  }
}
