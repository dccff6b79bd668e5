// Connect to a backend with a deadline, and splice two sockets together. One Splice owns both
// sockets: an error or close on either side ends the other, and its end is reported once.
//
// Half-close policy: both sockets are allowHalfOpen. When one side ends its write side (FIN),
// the other side's write side is ended after everything already received has been written,
// and the reverse direction keeps flowing until it ends too. So a client that sends a request
// and shuts down its write side still gets the whole reply. An error or reset on either side
// resets the other at once, since its peer can no longer be told anything consistent.
//
// Idleness (timeouts.idleMs) means no byte moved in either direction: nothing read, and no
// waiting byte delivered. A pair whose bytes wait for a reader that never reads is idle too
// (issue 7 item 8): waiting is not moving.
//
// A side paused for backpressure is not read, so its peer's reset would go unnoticed for as
// long as the other side stays wedged, and the pair would hold two descriptors for ever. Pairs
// with a paused side are probed once a second with a zero-length write, which sends nothing on
// a live socket and fails at once on a reset one (the kernel reports the pending error): the
// pair then ends like any other, and backpressure is kept.

import type { Socket } from 'node:net';
import type { CloseCause } from './metrics.js';

/** How often pairs with a paused side are probed for a dead peer (see the file comment). */
export const STALL_PROBE_MS = 1000;
const EMPTY = Buffer.alloc(0);
/** Pairs with a side paused for backpressure; probed while any are. */
const stalled = new Set<Splice>();
let probeTimer: NodeJS.Timeout | null = null;

function stall(splice: Splice): void {
  stalled.add(splice);
  probeTimer ??= setInterval(probeStalled, STALL_PROBE_MS).unref();
}

function probeStalled(): void {
  if (stalled.size === 0) {
    clearInterval(probeTimer!);
    probeTimer = null;
    return;
  }
  for (const splice of stalled) {
    probe(splice.client);
    probe(splice.backend);
  }
}

/** A zero-length write to a paused side with nothing queued: a reset peer fails it at once. */
function probe(socket: Socket): void {
  if (socket.isPaused() && socket.writableLength === 0 && !socket.writableEnded && !socket.destroyed) socket.write(EMPTY);
}

// Socket listeners are module functions that find their splice through the socket (as ws
// does), so that a connection allocates no closures or once() wrappers for them.
const kSplice = Symbol('ringlb.splice');
interface StatefulSocket extends Socket {
  [kSplice]?: Splice;
}

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
  /** Why the pair ended; the first cause wins. */
  private end: CloseCause | null = null;
  private open = 2;
  /** At the last idle timeout: bytes read, and bytes waiting in both write buffers. */
  private readAtTimeout = -1;
  private waitingAtTimeout = -1;

  constructor(
    readonly client: Socket,
    readonly backend: Socket,
    private readonly idleMs: number,
    private readonly onEnd: (splice: Splice, cause: CloseCause) => void,
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
    // A client that sent its FIN while the pair was being set up (after its PROXY header, say)
    // has already emitted 'end', before these listeners existed: pass it on now.
    if (client.readableEnded) this.ended('client', backend);
    client.resume();
  }

  /** True once either socket has closed: the pair is ending. */
  get closing(): boolean {
    return this.open < 2;
  }

  /** End both sides now, for `cause` (shutdown, drain deadline) unless the pair was already ending. */
  destroy(cause: CloseCause): void {
    this.end ??= cause;
    this.client.destroy();
    this.backend.destroy();
  }

  // The methods below are for the socket listeners at the end of this file.

  /** An error on one side: reset the other at once (see the file comment). */
  fail(end: CloseCause, other: Socket): void {
    this.end ??= end;
    if (!other.destroyed) other.resetAndDestroy();
  }

  /** `reader` was paused because its peer cannot take more. */
  paused(reader: Socket): void {
    reader.pause();
    // With an idle timeout the probe's write would count as activity; the timeout ends a
    // wedged pair instead.
    if (this.idleMs === 0) stall(this);
  }

  /** `reader` may be read again. */
  resumed(reader: Socket): void {
    reader.resume();
    if (!this.client.isPaused() && !this.backend.isPaused()) stalled.delete(this);
  }

  /** A side ended its writes (FIN): it closed first, unless something else ended the pair. */
  ended(side: 'client' | 'backend', other: Socket): void {
    this.end ??= side;
    other.end();
  }

  /** One socket closed: make sure the other goes too, and report when both have. */
  closed(side: 'client' | 'backend', other: Socket): void {
    stalled.delete(this);
    this.end ??= side;
    if (!other.destroyed && this.open === 2) {
      // A socket that closed without error finished both directions already, or was destroyed;
      // in both cases the peer has nothing more to exchange through us.
      other.end();
      other.destroySoon();
    }
    if (--this.open === 0) this.onEnd(this, this.end ?? side);
  }

  /**
   * The client socket saw no activity for idleMs. Every read of the pair shows there (a client
   * read directly, a backend read as the write to the client), so nothing was read; but waiting
   * bytes may have been delivered to a slow reader meanwhile. The buffers only shrink without
   * reads, so a change of what waits since the last timeout is movement: wait another period.
   * A pair is therefore closed between idleMs and 2 x idleMs after its last byte moved.
   */
  timedOut(): void {
    const read = this.bytesToBackend + this.bytesToClient;
    const waiting = this.client.writableLength + this.backend.writableLength;
    if (waiting > 0 && (read !== this.readAtTimeout || waiting !== this.waitingAtTimeout)) {
      this.readAtTimeout = read;
      this.waitingAtTimeout = waiting;
      this.client.setTimeout(this.idleMs);
      return;
    }
    this.destroy('idle_timeout');
  }
}

function onClientData(this: StatefulSocket, chunk: Buffer): void {
  const splice = this[kSplice]!;
  splice.bytesToBackend += chunk.length;
  if (!splice.backend.write(chunk)) splice.paused(this);
}

function onBackendData(this: StatefulSocket, chunk: Buffer): void {
  const splice = this[kSplice]!;
  splice.bytesToClient += chunk.length;
  if (!splice.client.write(chunk)) splice.paused(this);
}

function onClientDrain(this: StatefulSocket): void {
  const splice = this[kSplice]!;
  splice.resumed(splice.backend);
}

function onBackendDrain(this: StatefulSocket): void {
  const splice = this[kSplice]!;
  splice.resumed(splice.client);
}

function onClientEnd(this: StatefulSocket): void {
  const splice = this[kSplice]!;
  splice.ended('client', splice.backend);
}

function onBackendEnd(this: StatefulSocket): void {
  const splice = this[kSplice]!;
  splice.ended('backend', splice.client);
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
  splice.closed('client', splice.backend);
}

function onBackendClose(this: StatefulSocket): void {
  const splice = this[kSplice]!;
  splice.closed('backend', splice.client);
}

function onClientTimeout(this: StatefulSocket): void {
  this[kSplice]!.timedOut();
}
