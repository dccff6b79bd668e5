// HAProxy as a real peer for interoperability tests: found or reported missing, started in the
// foreground (`-db`) on a config written to a temp dir, loopback ports only, killed in teardown.
// Every instance has a stats frontend, so a test reads HAProxy's own counters (CSV) instead of
// guessing from timing.

import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { collect, waitFor } from './index.js';

const HAPROXY = 'haproxy';

/**
 * `setpriv --pdeathsig KILL` (util-linux) makes HAProxy die with this process: when tap kills a
 * test file on its timeout, teardowns do not run, and a plain child would outlive it.
 */
const PDEATHSIG = spawnSync('setpriv', ['--pdeathsig', 'KILL', 'true']).status === 0;

/** Why HAProxy cannot be used here (a sentence for the skip message), or null when it can. */
export function haproxyMissing(): string | null {
  const probe = spawnSync(HAPROXY, ['-v'], { encoding: 'utf8', timeout: 5_000 });
  if (probe.error) return `haproxy is not installed (${probe.error.message}); apt-get install haproxy`;
  const version = /HAProxy version (\d+)\.(\d+)/.exec(probe.stdout);
  if (!version) return `haproxy -v printed no version: ${JSON.stringify(probe.stdout.slice(0, 80))}`;
  // `http-request return ... lf-string` (what the behind-ringlb frontends answer with) is 2.2+.
  const [major, minor] = [Number(version[1]), Number(version[2])];
  if (major < 2 || (major === 2 && minor < 2)) return `haproxy ${major}.${minor} is older than 2.2`;
  return null;
}

/** Whether this machine can listen on ::1. */
export async function ipv6Loopback(): Promise<boolean> {
  const server = net.createServer();
  try {
    server.listen(0, '::1');
    await once(server, 'listening');
    return true;
  } catch {
    return false;
  } finally {
    server.close();
  }
}

/** A port free on `host` now (HAProxy cannot bind port 0 and tell us which port it got). */
async function freePort(host: string): Promise<number> {
  const server = net.createServer();
  server.listen(0, host);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/** One row of HAProxy's CSV statistics, by column name (`stot`, `conn_tot`, `status`, ...). */
export type StatsRow = Record<string, string>;

export interface Haproxy {
  /** The port chosen for each name passed to startHaproxy. */
  readonly ports: Record<string, number>;
  /** Lines HAProxy logged (its log goes to stdout, raw), for failure messages. */
  readonly logs: string[];
  /** Current statistics keyed `proxy/server` (`fe/FRONTEND`, `be/ringlb`). */
  stats(): Promise<Map<string, StatsRow>>;
}

/**
 * Start HAProxy with `sections` (frontends and backends; `render` gets a free loopback port per
 * name in `portNames`) after a fixed global/defaults block and a stats frontend. A port taken
 * between choosing and binding it makes HAProxy exit: then new ports are chosen, up to 3 times.
 */
export async function startHaproxy(
  t: Test,
  portNames: readonly string[],
  render: (ports: Record<string, number>) => string,
): Promise<Haproxy> {
  let failure = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const ports: Record<string, number> = {};
    for (const name of ['stats', ...portNames]) ports[name] = await freePort('127.0.0.1');
    const started = await launch(t, ports, render(ports));
    if (typeof started !== 'string') return started;
    failure = started;
    if (!/cannot bind|Address already in use/.test(failure)) break;
  }
  throw new Error(`haproxy did not start: ${failure}`);
}

/** One attempt: the running instance, or HAProxy's error output when it exited instead. */
async function launch(t: Test, ports: Record<string, number>, sections: string): Promise<Haproxy | string> {
  const dir = mkdtempSync(join(tmpdir(), 'ringlb-haproxy-'));
  const file = join(dir, 'haproxy.cfg');
  writeFileSync(file, `${PREAMBLE}
frontend stats
  mode http
  bind 127.0.0.1:${ports.stats}
  stats enable
  stats uri /stats
${sections}`);
  const argv = [HAPROXY, '-db', '-f', file];
  if (PDEATHSIG) argv.unshift('setpriv', '--pdeathsig', 'KILL');
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  let partial = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop()!;
    logs.push(...lines);
  });
  const exited = collect(child);
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(killer);
  });
  const statsUrl = `http://127.0.0.1:${ports.stats}/stats;csv`;
  const early: { exit: string | null } = { exit: null };
  void exited.then((r) => (early.exit = `exit ${r.code ?? r.signal}: ${r.stderr.trim()}`));
  // HAProxy binds every listener before it serves any, so a stats answer means all are bound.
  const served = async (): Promise<boolean> => fetch(statsUrl).then((r) => r.ok, () => false);
  await waitFor(async () => early.exit !== null || (await served()), 'haproxy to serve its stats');
  if (early.exit !== null) return early.exit;
  return {
    ports,
    logs,
    stats: async () => parseStats(await (await fetch(statsUrl)).text()),
  };
}

/**
 * One thread (the machine is shared and small); logs raw on stdout; `timeout http-request`
 * so a connection that sends a PROXY header and nothing else (a health check) is let go.
 */
const PREAMBLE = `global
  nbthread 1
  maxconn 500
  log stdout format raw local0
defaults
  log global
  timeout connect 5s
  timeout client 20s
  timeout server 20s
  timeout http-request 5s
`;

/** `# pxname,svname,...` then one line per proxy/server. */
function parseStats(csv: string): Map<string, StatsRow> {
  const [head, ...lines] = csv.trim().split('\n');
  const columns = head!.replace(/^# /, '').split(',');
  const rows = new Map<string, StatsRow>();
  for (const line of lines) {
    const values = line.split(',');
    const row: StatsRow = {};
    columns.forEach((c, i) => (row[c] = values[i] ?? ''));
    rows.set(`${row.pxname}/${row.svname}`, row);
  }
  return rows;
}
