// Active TCP health checks for one backend: connect every intervalMs within timeoutMs; `fall`
// consecutive failures mark it down, `rise` consecutive successes mark it up again. A new
// backend starts up, so a freshly started daemon serves at once. A check that fails for
// ringlb's own reason (no descriptor, no local port) says nothing about the backend: it counts
// neither way.

import type { Socket } from 'node:net';
import { connectBackend, isLocalFailure } from './connect.js';
import type { ConnectErrorReason } from './metrics.js';

export interface HealthOptions {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly rise: number;
  readonly fall: number;
  /** Sent first on every check connection: a backend that expects a PROXY header gets one. */
  readonly preamble: Buffer | null;
}

/** Called on every up/down transition, with the last check's failure reason when going down. */
export type HealthListener = (up: boolean, reason: ConnectErrorReason | null) => void;

export class HealthChecker {
  up = true;
  private successes = 0;
  private failures = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly options: HealthOptions,
    initiallyUp: boolean,
    private readonly onChange: HealthListener,
  ) {
    this.up = initiallyUp;
  }

  started = false;

  /** Start checking; the first check runs after one interval. */
  start(): void {
    this.started = true;
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => this.check(), this.options.intervalMs);
    this.timer.unref();
  }

  private check(): void {
    const { timeoutMs, preamble } = this.options;
    connectBackend({ host: this.host, port: this.port, timeoutMs, preamble }, (failure, socket) => {
      if (failure === null) closeCheck(socket);
      if (!this.stopped && (failure === null || !isLocalFailure(failure))) this.record(failure as ConnectErrorReason | null);
      this.schedule();
    });
  }

  private record(reason: ConnectErrorReason | null): void {
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

const ignore = (): void => {};

/** End a check connection: the header (if any) goes out before the FIN, then it is destroyed. */
function closeCheck(socket: Socket): void {
  socket.on('error', ignore);
  socket.end(() => socket.destroy());
}
