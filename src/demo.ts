// `ringlb demo`: three local WebSocket backends behind ringlb, clients from many 127.x source
// addresses, where they landed, and what adding a backend moves — then it stays up so anyone
// can connect, until Ctrl-C.

import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { formatHostPort } from './address.js';
import { validateConfig, type Config } from './config.js';
import { Daemon } from './daemon.js';
import { ListenError } from './errors.js';
import { createLogger } from './logger.js';

const CLIENTS = 300;

/** A WebSocket backend that greets each client with its id and echoes what it is sent. */
export async function startEchoBackend(id: string): Promise<WebSocketServer> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  wss.on('connection', (ws) => {
    ws.send(`hello from ${id}`);
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  await new Promise((resolve) => wss.once('listening', resolve));
  return wss;
}

/** The i-th simulated client's source address: 127.0.1.1, 127.0.1.2, ... (all loopback on Linux). */
const clientAddress = (i: number): string => `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;

/**
 * Open a WebSocket from `localAddress` and read the greeting; resolves with the backend id. It
 * is closed then, unless `held` keeps it (the demo's clients stay connected until Ctrl-C, so the
 * status page shows them).
 */
function greet(url: string, localAddress: string, held?: WebSocket[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { localAddress });
    ws.once('message', (data) => {
      resolve(String(data).replace(/^hello from /, ''));
      if (held) held.push(ws);
      else ws.close();
    });
    ws.once('error', reject);
  });
}

async function landings(url: string, held?: WebSocket[]): Promise<string[]> {
  const found: string[] = [];
  // In batches of 50 at a time.
  for (let i = 0; i < CLIENTS; i += 50) {
    const batch = Array.from({ length: Math.min(50, CLIENTS - i) }, (_, k) => greet(url, clientAddress(i + k), held));
    found.push(...(await Promise.all(batch)));
  }
  return found;
}

function tally(ids: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  return new Map([...counts].sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Start the daemon on the preferred ports, or on free ones if those are taken. */
async function startDaemon(config: Config): Promise<Daemon> {
  const logger = createLogger('warn');
  try {
    return await Daemon.start({ config, logger, logLevel: 'warn' });
  } catch (err) {
    if (!(err instanceof ListenError)) throw err;
    const anyPort = validateConfig({
      ...config,
      listen: { host: '127.0.0.1', port: 0 },
      metrics: { host: '127.0.0.1', port: 0 },
    });
    return Daemon.start({ config: anyPort, logger, logLevel: 'warn' });
  }
}

const say = (line = ''): boolean => process.stdout.write(`${line}\n`);

export async function runDemo(): Promise<void> {
  const ids = ['ws-a', 'ws-b', 'ws-c'];
  const servers = await Promise.all(ids.map(startEchoBackend));
  const backendOf = (id: string, wss: WebSocketServer): { id: string; host: string; port: number } => ({
    id,
    host: '127.0.0.1',
    port: (wss.address() as AddressInfo).port,
  });
  const raw = {
    listen: { host: '127.0.0.1', port: 8080 },
    backends: ids.map((id, i) => backendOf(id, servers[i]!)),
    healthCheck: { intervalMs: 1000, timeoutMs: 500 },
    metrics: { host: '127.0.0.1', port: 9180 },
  };
  const daemon = await startDaemon(validateConfig(raw));
  const listen = daemon.listenAddresses[0]!;
  const url = `ws://${formatHostPort(listen.address, listen.port)}`;

  say(`ringlb demo: ${ids.length} WebSocket backends behind ${url}`);
  say(`${CLIENTS} clients connect from ${clientAddress(0)} .. ${clientAddress(CLIENTS - 1)}; each backend greets with its id.`);
  const first = await landings(url);
  const again = await landings(url);
  const sticky = first.filter((id, i) => again[i] === id).length;
  say();
  say('backend  clients  share of the ring');
  const table = daemon.fleet.table;
  for (const [id, n] of tally(first)) {
    const share = table.shares[table.balancer.ids.indexOf(id)]!;
    say(`${id.padEnd(7)}  ${String(n).padStart(7)}  ${(share * 100).toFixed(1)}%`);
  }
  say(`reconnected to the same backend: ${sticky} of ${CLIENTS}`);

  // Add a fourth backend live and show that only the clients the ring says move do move.
  const extra = await startEchoBackend('ws-d');
  servers.push(extra);
  const grown = validateConfig({ ...raw, backends: [...raw.backends, backendOf('ws-d', extra)] });
  const predicted = await daemon.reload(grown);
  // These stay connected until Ctrl-C: the status page shows them on their backends.
  const held: WebSocket[] = [];
  const after = await landings(url, held);
  const moved = after.filter((id, i) => id !== first[i]);
  say();
  say(`adding ws-d: the ring predicts ${(predicted.moved * 100).toFixed(1)}% of the hash space moves, all of it to ws-d`);
  say(`observed: ${moved.length} of ${CLIENTS} clients moved (${((moved.length / CLIENTS) * 100).toFixed(1)}%), to ${[...tally(moved).keys()].join(', ') || 'nobody'}`);

  const admin = daemon.adminAddress!;
  const adminUrl = `http://${formatHostPort(admin.address, admin.port)}`;
  say();
  say(`balancer  ${url}   (connect with any WebSocket client; it greets and echoes)`);
  say(`backends  ${raw.backends.map((b) => `${b.id}=ws://${formatHostPort(b.host, b.port)}`).join('  ')}  ws-d=ws://127.0.0.1:${(extra.address() as AddressInfo).port}`);
  say(`status    ${adminUrl}/   (open in a browser: the ring, each backend, and the ${CLIENTS} clients held open)`);
  say(`metrics   ${adminUrl}/metrics   ring ${adminUrl}/ring   health ${adminUrl}/healthz`);
  say('running until Ctrl-C');

  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  for (const ws of held) ws.terminate();
  await daemon.close();
  for (const wss of servers) {
    for (const ws of wss.clients) ws.terminate();
    wss.close();
  }
}
