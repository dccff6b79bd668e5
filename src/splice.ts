// Connect to a backend with a deadline, and splice two sockets together. One Splice owns both
// sockets: an error or close on either side ends the other, and its end is reported once.
//
// Half-close policy: both sockets are allowHalfOpen. When one side ends its write side (FIN),
// the other side's write side is ended after everything already received has been written,
// and the reverse direction keeps flowing until it ends too. So a client that sends a request
// and shuts down its write side still gets the whole reply. An error or reset on either side
// resets the other at once, since its peer can no longer be told anything consistent.

import net, { type Socket } from 'node:net';
import type { ConnectErrorReason } from './metrics.js';

/** TCP options for every backend connection; client sockets get the same from the server. */
export const KEEPALIVE_DELAY_MS = 30_000;

/** Map a socket error to the `reason` label of ringlb_connection_errors_total. */
export function connectErrorReason(err: NodeJS.ErrnoException): ConnectErrorReason {
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
    default:
      return 'error';
  }
}

/** A backend connection being set up: who to tell, and the deadline. */
interface Connecting {
  readonly done: (reason: ConnectErrorReason | null, socket: Socket) => void;
  readonly timer: NodeJS.Timeout;
}

// Socket listeners are module functions that find their state through the socket (as ws does),
// so that a connection allocates no closures or once() wrappers for them.
const kConnecting = Symbol('ringlb.connecting');
const kSplice = Symbol('ringlb.splice');
interface StatefulSocket extends Socket {
  [kConnecting]?: Connecting | null;
  [kSplice]?: Splice;
}

/**
 * Open a TCP connection to host:port within `timeoutMs`. `done` is called exactly once: with the
 * connected socket, or with the failure reason (the socket is then already destroyed). The
 * returned socket may be destroyed by the caller to abandon the attempt; `done` is then not called.
 */
export function connectBackend(
  host: string,
  port: number,
  timeoutMs: number,
  done: (reason: ConnectErrorReason | null, socket: Socket) => void,
): Socket {
  // An IP literal is connected to directly; only a host name costs a DNS lookup.
  const socket: StatefulSocket = net.connect({
    host,
    port,
    allowHalfOpen: true,
    noDelay: true,
    keepAlive: true,
    keepAliveInitialDelay: KEEPALIVE_DELAY_MS,
  });
  // A plain timer rather than socket.setTimeout(): the socket would keep that Timeout (and its
  // bound callback) for its whole life even after setTimeout(0). Unref'd, as socket timers are.
  socket[kConnecting] = { done, timer: setTimeout(onConnectTimeout, timeoutMs, socket).unref() };
  socket.on('connect', onConnect);
  socket.on('error', onConnectError);
  socket.on('close', onAbandoned);
  return socket;
}

function settle(socket: StatefulSocket, reason: ConnectErrorReason | null): void {
  const connecting = socket[kConnecting];
  if (!connecting) return;
  socket[kConnecting] = null;
  clearTimeout(connecting.timer);
  socket.removeListener('connect', onConnect);
  socket.removeListener('error', onConnectError);
  socket.removeListener('close', onAbandoned);
  if (reason !== null) socket.destroy();
  connecting.done(reason, socket);
}

function onConnect(this: StatefulSocket): void {
  settle(this, null);
}

function onConnectTimeout(socket: StatefulSocket): void {
  settle(socket, 'timeout');
}

function onConnectError(this: StatefulSocket, err: NodeJS.ErrnoException): void {
  settle(this, connectErrorReason(err));
}

/** Destroyed by the caller (client went away): stay silent. */
function onAbandoned(this: StatefulSocket): void {
  const connecting = this[kConnecting];
  if (!connecting) return;
  this[kConnecting] = null;
  clearTimeout(connecting.timer);
}

/** Why a splice ended, first cause wins. */
export type SpliceEnd = 'closed' | 'client_error' | 'backend_error' | 'idle_timeout';

/**
 * Two sockets spliced both ways with backpressure: a side that cannot take more (write returns
 * false) pauses the other side's reads until it drains, so memory stays flat whatever the fast
 * side pushes. Byte counts are plain fields, published by the owner at close and at scrape.
 */
export class Splice {
  bytesToBackend = 0;
  bytesToClient = 0;
  /** Bytes already published to metrics; the owner advances these. */
  reportedToBackend = 0;
  reportedToClient = 0;
  private end: SpliceEnd | null = null;
  private open = 2;

  constructor(
    readonly client: Socket,
    readonly backend: Socket,
    private readonly idleMs: number,
    private readonly onEnd: (splice: Splice, end: SpliceEnd) => void,
  ) {
    (client as StatefulSocket)[kSplice] = this;
    (backend as StatefulSocket)[kSplice] = this;
    client.on('data', onClientData);
    backend.on('data', onBackendData);
    backend.on('drain', onBackendDrain);
    client.on('drain', onClientDrain);
    client.on('end', onClientEnd);
    backend.on('end', onBackendEnd);
    client.on('error', onClientError);
    backend.on('error', onBackendError);
    client.on('close', onClientClose);
    backend.on('close', onBackendClose);
    if (idleMs > 0) {
      // Any read or write on the client socket counts as activity, and every byte of the pair
      // passes through it.
      client.setTimeout(idleMs);
      client.on('timeout', onClientTimeout);
    }
    client.resume();
  }

  /** End both sides now (shutdown, drain deadline); reported as closed. */
  destroy(): void {
    this.client.destroy();
    this.backend.destroy();
  }

  // The methods below are for the socket listeners at the end of this file.

  /** An error on one side: reset the other at once (see the file comment). */
  fail(end: SpliceEnd, other: Socket): void {
    this.end ??= end;
    if (!other.destroyed) other.resetAndDestroy();
  }

  /** One socket closed: make sure the other goes too, and report when both have. */
  closed(other: Socket): void {
    if (!other.destroyed && this.open === 2) {
      // A socket that closed without error finished both directions already, or was destroyed;
      // in both cases the peer has nothing more to exchange through us.
      other.end();
      other.destroySoon();
    }
    if (--this.open === 0) this.onEnd(this, this.end ?? 'closed');
  }

  /** The client socket saw no activity for idleMs. */
  timedOut(): void {
    // While bytes wait in either write buffer the pair is held back by a slow reader, not idle:
    // wait another period.
    if (this.client.writableLength > 0 || this.backend.writableLength > 0) {
      this.client.setTimeout(this.idleMs);
      return;
    }
    this.end ??= 'idle_timeout';
    this.destroy();
  }
}

function onClientData(this: StatefulSocket, chunk: Buffer): void {
  const splice = this[kSplice]!;
  splice.bytesToBackend += chunk.length;
  if (!splice.backend.write(chunk)) this.pause();
}

function onBackendData(this: StatefulSocket, chunk: Buffer): void {
  const splice = this[kSplice]!;
  splice.bytesToClient += chunk.length;
  if (!splice.client.write(chunk)) this.pause();
}

function onClientDrain(this: StatefulSocket): void {
  this[kSplice]!.backend.resume();
}

function onBackendDrain(this: StatefulSocket): void {
  this[kSplice]!.client.resume();
}

function onClientEnd(this: StatefulSocket): void {
  this[kSplice]!.backend.end();
}

function onBackendEnd(this: StatefulSocket): void {
  this[kSplice]!.client.end();
}

function onClientError(this: StatefulSocket): void {
  const splice = this[kSplice]!;
  splice.fail('client_error', splice.backend);
}

function onBackendError(this: StatefulSocket): void {
  const splice = this[kSplice]!;
  splice.fail('backend_error', splice.client);
}

function onClientClose(this: StatefulSocket): void {
  const splice = this[kSplice]!;
  splice.closed(splice.backend);
}

function onBackendClose(this: StatefulSocket): void {
  const splice = this[kSplice]!;
  splice.closed(splice.client);
}

function onClientTimeout(this: StatefulSocket): void {
  this[kSplice]!.timedOut();
}
