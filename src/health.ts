// Health of one backend: active checks every intervalMs (a TCP connect, or a WebSocket upgrade
// that must answer 101 with the right accept key), plus, when the proxy reports them, failed
// connects of real traffic (passive). `fall` consecutive failures mark it down, `rise`
// consecutive successful checks mark it up again; only active checks raise a backend. A new
// backend starts up, so a freshly started daemon serves at once. A failure for ringlb's own
// reason (no descriptor, no local port) says nothing about the backend: it counts neither way.

import { randomBytes } from 'node:crypto';
import net, { type Socket } from 'node:net';
import { connectFailure, isLocalFailure, type ConnectFailure } from './connect.js';
import { closeFrame, upgradeRequest, UpgradeResponse } from './probe-ws.js';

/** What a WebSocket check asks for. */
export interface WebSocketCheck {
  readonly path: string;
  /** `Host:` to send; null = the backend's host:port. */
  readonly hostHeader: string | null;
}

export interface HealthOptions {
  readonly intervalMs: number;
  /** The whole check (connect, upgrade, answer) must finish within this. */
  readonly timeoutMs: number;
  readonly rise: number;
  readonly fall: number;
  /** Sent first on every check connection: a backend that expects a PROXY header gets one. */
  readonly preamble: Buffer | null;
  /** Present: check with a WebSocket upgrade (healthCheck.type "websocket"); absent: a TCP connect. */
  readonly websocket?: WebSocketCheck | null | undefined;
  /** Source of the first check's offset within the interval, in [0, 1); default Math.random. */
  readonly random?: (() => number) | undefined;
}

/**
 * Why a backend failed: a connect reason (`refused`, `timeout`, ...), what was wrong with its
 * upgrade answer (`status 503`, `bad accept key`, `not HTTP`, ...), `closed` (it hung up before
 * answering), or `traffic <reason>` when real traffic's connects marked it down.
 */
export type HealthFailure = string;

/** Called on every up/down transition, with the failure that marked it down. */
export type HealthListener = (up: boolean, reason: HealthFailure | null) => void;

/** One check in flight: its socket and its single deadline timer. */
interface Check {
  readonly socket: Socket;
  readonly timer: NodeJS.Timeout;
  connected: boolean;
  /** The verdict was recorded; what remains is closing. */
  decided: boolean;
}

export class HealthChecker {
  up = true;
  started = false;
  private successes = 0;
  private failures = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private check: Check | null = null;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly options: HealthOptions,
    initiallyUp: boolean,
    private readonly onChange: HealthListener,
  ) {
    this.up = initiallyUp;
  }

  /**
   * Start checking. The first check runs at a random offset within the interval and later ones
   * keep that phase, so the checks of many backends are spread over the interval, not a burst.
   */
  start(): void {
    this.started = true;
    const { intervalMs } = this.options;
    const offset = Math.floor((this.options.random ?? Math.random)() * intervalMs);
    this.timer = setTimeout(() => {
      if (this.stopped) return;
      this.timer = setInterval(() => this.tick(), intervalMs).unref();
      this.tick();
    }, offset).unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.check) this.finish(this.check);
  }

  /** Passive health: a real-traffic connect to this backend failed (local reasons ignored). */
  trafficFailed(reason: ConnectFailure): void {
    if (!isLocalFailure(reason)) this.record(`traffic ${reason}`);
  }

  /** Passive health: a real-traffic connect succeeded; the failure count starts over. */
  trafficSucceeded(): void {
    this.failures = 0;
  }

  /** A slot of the schedule; a check still running (timeout > interval) takes it. */
  private tick(): void {
    if (this.check === null) this.begin();
  }

  private begin(): void {
    const socket = net.connect({ host: this.host, port: this.port, allowHalfOpen: true, noDelay: true });
    const check: Check = {
      socket,
      // One timer per check: it bounds connect, upgrade and the polite close together.
      timer: setTimeout(() => this.timedOut(check), this.options.timeoutMs).unref(),
      connected: false,
      decided: false,
    };
    this.check = check;
    socket.on('connect', () => this.connected(check));
    socket.on('error', (err: NodeJS.ErrnoException) => this.failed(check, check.connected && err.code === 'ECONNRESET' ? 'reset' : connectFailure(err)));
    socket.on('close', () => {
      if (!check.decided) this.decide(check, 'closed');
      this.finish(check);
    });
  }

  private connected(check: Check): void {
    check.connected = true;
    const { socket } = check;
    const { preamble, websocket } = this.options;
    if (!websocket) {
      if (preamble) socket.write(preamble);
      this.decide(check, null);
      socket.end(() => socket.destroy());
      return;
    }
    const nonce = randomBytes(16);
    const { request, accept } = upgradeRequest({ host: this.host, port: this.port, ...websocket }, nonce);
    const response = new UpgradeResponse(accept);
    socket.write(preamble ? Buffer.concat([preamble, request]) : request);
    socket.on('data', (chunk: Buffer) => {
      if (check.decided) return;
      const verdict = response.push(chunk);
      if (verdict.state === 'incomplete') return;
      if (verdict.state === 'failed') return this.failed(check, verdict.reason);
      this.decide(check, null);
      // Close politely (RFC 6455 §7.1.2): our close frame and FIN; the server answers with its
      // own close frame and closes; the check's timer still bounds the wait.
      socket.end(closeFrame(randomBytes(4)));
    });
    // The server's FIN: after our close frame, the end of a polite close; before an answer, a hang-up.
    socket.on('end', () => this.failed(check, 'closed'));
  }

  private timedOut(check: Check): void {
    if (!check.decided) this.decide(check, 'timeout');
    check.socket.destroy();
  }

  private failed(check: Check, reason: ConnectFailure | HealthFailure): void {
    if (!check.decided) this.decide(check, reason);
    check.socket.destroy();
  }

  /** Record this check's verdict once. */
  private decide(check: Check, failure: ConnectFailure | HealthFailure | null): void {
    check.decided = true;
    if (this.stopped) return;
    if (failure !== null && isLocalFailure(failure as ConnectFailure)) return;
    this.record(failure);
  }

  /** The check's socket is gone (or the checker stopped): the slot is free again. */
  private finish(check: Check): void {
    clearTimeout(check.timer);
    check.decided = true;
    check.socket.destroy();
    if (this.check === check) this.check = null;
  }

  private record(reason: HealthFailure | null): void {
    if (reason === null) {
      this.failures = 0;
      if (!this.up && ++this.successes >= this.options.rise) {
        this.up = true;
        this.successes = 0;
        this.onChange(true, null);
      }
    } else {
      this.successes = 0;
      if (this.up && ++this.failures >= this.options.fall) {
        this.up = false;
        this.failures = 0;
        this.onChange(false, reason);
      }
    }
  }
}
