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
  const socket = net.connect({
    host,
    port,
    allowHalfOpen: true,
    noDelay: true,
    keepAlive: true,
    keepAliveInitialDelay: KEEPALIVE_DELAY_MS,
  });
  let settled = false;
  const settle = (reason: ConnectErrorReason | null): void => {
    if (settled) return;
    settled = true;
    socket.setTimeout(0);
    socket.removeListener('connect', onConnect);
    socket.removeListener('timeout', onTimeout);
    socket.removeListener('error', onError);
    socket.removeListener('close', onClose);
    if (reason !== null) socket.destroy();
    done(reason, socket);
  };
  const onConnect = (): void => settle(null);
  const onTimeout = (): void => settle('timeout');
  const onError = (err: NodeJS.ErrnoException): void => settle(connectErrorReason(err));
  // Destroyed by the caller (client went away): stay silent.
  const onClose = (): void => {
    settled = true;
  };
  socket.setTimeout(timeoutMs);
  socket.once('connect', onConnect);
  socket.once('timeout', onTimeout);
  socket.once('error', onError);
  socket.once('close', onClose);
  return socket;
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
    idleMs: number,
    private readonly onEnd: (splice: Splice, end: SpliceEnd) => void,
  ) {
    client.on('data', (chunk: Buffer) => {
      this.bytesToBackend += chunk.length;
      if (!backend.write(chunk)) client.pause();
    });
    backend.on('data', (chunk: Buffer) => {
      this.bytesToClient += chunk.length;
      if (!client.write(chunk)) backend.pause();
    });
    backend.on('drain', () => client.resume());
    client.on('drain', () => backend.resume());
    client.on('end', () => backend.end());
    backend.on('end', () => client.end());
    client.on('error', () => this.fail('client_error', backend));
    backend.on('error', () => this.fail('backend_error', client));
    client.on('close', () => this.closed(backend));
    backend.on('close', () => this.closed(client));
    if (idleMs > 0) {
      // Any read or write on the client socket counts as activity, and every byte of the pair
      // passes through it. While bytes wait in either write buffer the pair is held back by a
      // slow reader, not idle: wait another period.
      client.setTimeout(idleMs);
      client.on('timeout', () => {
        if (client.writableLength > 0 || backend.writableLength > 0) {
          client.setTimeout(idleMs);
          return;
        }
        this.end ??= 'idle_timeout';
        this.destroy();
      });
    }
    client.resume();
  }

  /** End both sides now (shutdown, drain deadline); reported as closed. */
  destroy(): void {
    this.client.destroy();
    this.backend.destroy();
  }

  private fail(end: SpliceEnd, other: Socket): void {
    this.end ??= end;
    if (!other.destroyed) other.resetAndDestroy();
  }

  /** One socket closed: make sure the other goes too, and report when both have. */
  private closed(other: Socket): void {
    if (!other.destroyed && this.open === 2) {
      // A socket that closed without error finished both directions already, or was destroyed;
      // in both cases the peer has nothing more to exchange through us.
      other.end();
      other.destroySoon();
    }
    if (--this.open === 0) this.onEnd(this, this.end ?? 'closed');
  }
}
