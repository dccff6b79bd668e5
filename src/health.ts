// Active TCP health checks for one backend: connect every intervalMs within timeoutMs; `fall`
// consecutive failures mark it down, `rise` consecutive successes mark it up again. A new
// backend starts up, so a freshly started daemon serves at once.

import type { ConnectErrorReason } from './metrics.js';
import { connectBackend } from './splice.js';

export interface HealthOptions {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly rise: number;
  readonly fall: number;
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
    connectBackend(this.host, this.port, this.options.timeoutMs, (reason, socket) => {
      if (reason === null) socket.destroy();
      if (!this.stopped) this.record(reason);
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
