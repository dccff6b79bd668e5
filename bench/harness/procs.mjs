// Every process the harness starts goes through here, so that every one of them is ended on
// exit: normal end, failure, SIGINT/SIGTERM, an uncaught error, or the harness being killed
// outright (a detached reaper process kills the remaining process groups when its IPC channel
// to the harness closes). Also: /proc readings (CPU time and RSS of a process tree), free
// ports, and waiting for a port to listen, each bounded by a deadline.

import { execFileSync, fork, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Live children by pid (each is the leader of its own process group). */
const live = new Map();
let reaper = null;
let cleanedUp = false;

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function startReaper() {
  if (reaper) return;
  reaper = fork(path.join(here, 'reaper.mjs'), [], { detached: true, stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
  reaper.unref();
  reaper.channel?.unref();
  reaper.on('error', () => {});
}

function tellReaper(message) {
  try {
    if (reaper?.connected) reaper.send(message);
  } catch {
    // the reaper is an extra safety net; a lost message must not fail a run
  }
}

/** Kill a process group, ignoring groups that are already gone. */
function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // gone
    }
  }
}

function track(child, name) {
  if (child.pid === undefined) return child;
  const entry = { child, name, exited: false };
  live.set(child.pid, entry);
  tellReaper({ add: child.pid });
  child.once('exit', () => {
    entry.exited = true;
    // The leader is gone; kill what it may have left in its group (nginx workers, forks).
    killGroup(child.pid, 'SIGKILL');
    live.delete(child.pid);
    tellReaper({ remove: child.pid });
  });
  return child;
}

/**
 * spawn() a tracked command in its own process group. `log` is a file path for stdout+stderr
 * (or 'pipe' to read them). `cpus` ('0', '1' or null) runs it under taskset.
 */
export function start(name, command, args, { log = null, cpus = null, env, cwd } = {}) {
  startReaper();
  const [file, argv] = cpus !== null ? ['taskset', ['-c', cpus, command, ...args]] : [command, args];
  let stdio = ['ignore', 'ignore', 'ignore'];
  if (log === 'pipe') stdio = ['ignore', 'pipe', 'pipe'];
  else if (log) {
    const fd = fs.openSync(log, 'a');
    stdio = ['ignore', fd, fd];
  }
  const child = spawn(file, argv, { detached: true, stdio, env: env ?? process.env, cwd });
  if (typeof stdio[1] === 'number') fs.closeSync(stdio[1]);
  child.on('error', () => {}); // reported through 'exit' / readiness checks
  return track(child, name);
}

/** fork() a tracked Node module (IPC channel) in its own process group. */
export function startNode(name, modulePath, args = [], { log = null } = {}) {
  startReaper();
  let stdio = ['ignore', 'inherit', 'inherit', 'ipc'];
  if (log) {
    const fd = fs.openSync(log, 'a');
    stdio = ['ignore', fd, fd, 'ipc'];
  }
  const child = fork(modulePath, args, { detached: true, stdio });
  if (typeof stdio[1] === 'number') fs.closeSync(stdio[1]);
  child.on('error', () => {});
  return track(child, name);
}

/** Run a tracked command to completion within `timeoutMs`; resolves {code, stdout, stderr, timedOut}. */
export function run(name, command, args, { cpus = null, timeoutMs }) {
  return new Promise((resolve) => {
    const child = start(name, command, args, { log: 'pipe', cpus });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid, 'SIGKILL');
    }, timeoutMs);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal, stdout, stderr, timedOut });
    });
  });
}

/** Ask a child to stop (SIGTERM to its group), then SIGKILL after `graceMs`. */
export async function stop(child, graceMs = 1500) {
  if (!child || child.pid === undefined) return;
  const entry = live.get(child.pid);
  if (!entry || entry.exited) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  killGroup(child.pid, 'SIGTERM');
  const timer = sleep(graceMs).then(() => 'timeout');
  if ((await Promise.race([exited, timer])) === 'timeout') {
    killGroup(child.pid, 'SIGKILL');
    await Promise.race([exited, sleep(1000)]);
  }
}

/** Synchronous last resort: SIGKILL every group still alive. Safe to call more than once. */
export function killAll() {
  for (const pid of live.keys()) killGroup(pid, 'SIGKILL');
  live.clear();
}

/** Install exit handlers: every child dies with the harness. `onFatal` prints the reason. */
export function installCleanup(onFatal) {
  const cleanup = () => {
    if (cleanedUp) return;
    cleanedUp = true;
    killAll();
    if (reaper) {
      try {
        reaper.kill('SIGTERM');
      } catch {
        // already gone
      }
    }
  };
  process.on('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => {
      onFatal(`interrupted by ${signal}; stopping every process started`);
      cleanup();
      process.exit(130);
    });
  }
  process.on('uncaughtException', (err) => {
    onFatal(`uncaught error: ${err?.stack ?? err}`);
    cleanup();
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    onFatal(`unhandled rejection: ${err?.stack ?? err}`);
    cleanup();
    process.exit(1);
  });
}

// ---------------------------------------------------------------------------------------------
// /proc readings

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** pid -> ppid for every process now. */
function parentMap() {
  const parents = new Map();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parents.set(Number(name), Number(fields[1]));
    } catch {
      // exited meanwhile
    }
  }
  return parents;
}

/** `pid` and all its descendants. */
export function processTree(pid) {
  const parents = parentMap();
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) {
    for (const [child, parent] of parents) if (parent === tree[i]) tree.push(child);
  }
  return tree;
}

/**
 * [user, system] CPU seconds of one process ([0, 0] if gone): utime and stime, plus with
 * `reaped` cutime and cstime (children that exited and were waited for, no longer in the tree).
 */
function cpuOf(pid, reaped) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    // f[0] is field 3 (state); utime, stime, cutime, cstime are fields 14 to 17.
    return reaped ? [(f[11] + f[13]) / CLK_TCK, (f[12] + f[14]) / CLK_TCK] : [f[11] / CLK_TCK, f[12] / CLK_TCK];
  } catch {
    return [0, 0];
  }
}

/** VmRSS of one process in bytes (0 if gone). */
function rssOf(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU seconds {user, system} summed over the live process tree of `pid` (see cpuOf). */
export const treeCpu = (pid, reaped = false) =>
  processTree(pid).reduce(
    (sum, p) => {
      const [user, system] = cpuOf(p, reaped);
      return { user: sum.user + user, system: sum.system + system };
    },
    { user: 0, system: 0 },
  );
/** RSS in bytes summed over the process tree of `pid`. */
export const treeRss = (pid) => processTree(pid).reduce((sum, p) => sum + rssOf(p), 0);

/**
 * Machine-wide CPU seconds from /proc/stat: `busy` (user+nice+system, all CPUs) and `steal`
 * (time the hypervisor gave to others). Time in irq/softirq is left out: it is charged to no
 * process, so it cannot be told apart from our own loopback traffic.
 */
export function machineCpu() {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0];
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    return { busy: (f[0] + f[1] + f[2]) / CLK_TCK, steal: (f[7] ?? 0) / CLK_TCK };
  } catch {
    return { busy: 0, steal: 0 };
  }
}

// ---------------------------------------------------------------------------------------------
// ports

/** A port that was free a moment ago on 127.0.0.1 (bind port 0, read it, close). */
export async function freePort() {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise((resolve) => {
      const server = net.createServer();
      server.once('error', () => resolve(0));
      server.listen(0, '127.0.0.1', () => {
        const { port: p } = server.address();
        server.close(() => resolve(p));
      });
    });
    if (port && !usedPorts.has(port)) {
      usedPorts.add(port);
      return port;
    }
  }
  throw new Error('no free port found');
}
const usedPorts = new Set();

/** True when something listens on TCP `port` (IPv4 or IPv6), read from /proc/net without connecting. */
export function isListening(port) {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === '0A' && cols[1]?.endsWith(hex)) return true;
    }
  }
  return false;
}

/** Wait until every port listens, the child exits (throws) or `timeoutMs` passes (throws). */
export async function waitListening(child, ports, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before listening`);
    }
    if (ports.every(isListening)) return;
    await sleep(20);
  }
  throw new Error(`${what} did not listen on ${ports.join(', ')} within ${timeoutMs} ms`);
}
