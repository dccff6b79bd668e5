// The connect stage: open a TCP connection to a backend within a deadline, optionally from a
// chosen source address, and put a preamble (a PROXY header) before any client byte.
// Failures are classified so that ringlb's own trouble (no descriptor, no local port) is never
// held against a backend.

import net, { type Socket } from 'node:net';
import type { ConnectErrorReason } from './metrics.js';

/** TCP keepalive for every backend connection; client sockets get the same from the server. */
export const KEEPALIVE_DELAY_MS = 30_000;

/** Why a connect failed: the backend's reasons, or ringlb's own `no_file_descriptors`. */
export type ConnectFailure = ConnectErrorReason | 'no_file_descriptors';

export interface ConnectOptions {
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  /** Bind to this local address first (a source-address pool); undefined = the kernel chooses. */
  readonly localAddress?: string | undefined;
  /** Bytes to send before anything else (a PROXY header). */
  readonly preamble?: Buffer | null | undefined;
}

/** Called exactly once: with the connected socket, or with the reason (socket already destroyed). */
export type ConnectDone = (failure: ConnectFailure | null, socket: Socket) => void;

/** Map a connect error to its reason. */
export function connectFailure(err: NodeJS.ErrnoException): ConnectFailure {
  switch (err.code) {
    case 'ECONNREFUSED':
      return 'refused';
    case 'ETIMEDOUT':
      return 'timeout';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'unreachable';
    case 'EMFILE':
    case 'ENFILE':
      return 'no_file_descriptors';
    case 'EADDRNOTAVAIL': // connect: no ephemeral port left for this destination
    case 'EADDRINUSE': // bind to a source address: no port left on it
      return 'no_source_port';
    default:
      return 'error';
  }
}

/** Failures that are ringlb's own condition, not the backend's. */
export const isLocalFailure = (f: ConnectFailure): boolean => f === 'no_file_descriptors' || f === 'no_source_port';

/** A backend connection being set up: who to tell, and the deadline. */
interface Connecting {
  readonly done: ConnectDone;
  readonly timer: NodeJS.Timeout;
  readonly preamble: Buffer | null;
}

// Listeners are module functions that find their state through the socket, so that a connect
// allocates no closures for them.
const kConnecting = Symbol('ringlb.connecting');
interface ConnectingSocket extends Socket {
  [kConnecting]?: Connecting | null;
}

/**
 * Connect to `options.host:port`. The returned socket may be destroyed by the caller to abandon
 * the attempt; `done` is then not called.
 */
export function connectBackend(options: ConnectOptions, done: ConnectDone): Socket {
  const socket: ConnectingSocket = net.connect({
    host: options.host,
    port: options.port,
    localAddress: options.localAddress,
    allowHalfOpen: true,
    noDelay: true,
    keepAlive: true,
    keepAliveInitialDelay: KEEPALIVE_DELAY_MS,
  });
  // A plain timer rather than socket.setTimeout(): the socket would keep that Timeout (and its
  // bound callback) for its whole life even after setTimeout(0). Unref'd, as socket timers are.
  const timer = setTimeout(onConnectTimeout, options.timeoutMs, socket).unref();
  socket[kConnecting] = { done, timer, preamble: options.preamble ?? null };
  socket.on('connect', onConnect);
  socket.on('error', onConnectError);
  socket.on('close', onAbandoned);
  return socket;
}

function settle(socket: ConnectingSocket, failure: ConnectFailure | null): void {
  const connecting = socket[kConnecting];
  if (!connecting) return;
  socket[kConnecting] = null;
  clearTimeout(connecting.timer);
  socket.removeListener('connect', onConnect);
  socket.removeListener('error', onConnectError);
  socket.removeListener('close', onAbandoned);
  if (failure !== null) socket.destroy();
  else if (connecting.preamble) {
    // Corked until the next turn of the event loop, so that client bytes already waiting go
    // out in the same write as the header.
    socket.cork();
    socket.write(connecting.preamble);
    setImmediate(uncork, socket);
  }
  connecting.done(failure, socket);
}

function uncork(socket: Socket): void {
  socket.uncork();
}

function onConnect(this: ConnectingSocket): void {
  settle(this, null);
}

function onConnectTimeout(socket: ConnectingSocket): void {
  settle(socket, 'timeout');
}

function onConnectError(this: ConnectingSocket, err: NodeJS.ErrnoException): void {
  settle(this, connectFailure(err));
}

/** Destroyed by the caller (the client went away): stay silent. */
function onAbandoned(this: ConnectingSocket): void {
  const connecting = this[kConnecting];
  if (!connecting) return;
  this[kConnecting] = null;
  clearTimeout(connecting.timer);
}
