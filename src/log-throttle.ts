// Conditions that can repeat per connection (a limit reached, descriptors exhausted, a bad
// PROXY header) are logged at most once per window each, with a count (SPEC "Operations"):
// the first occurrence at once, then one line per window while it goes on.

import type { Logger } from 'pino';

export const THROTTLE_WINDOW_MS = 10_000;

type Timer = { unref(): unknown };
export type SetTimer = (fn: () => void, ms: number) => Timer;

interface Window {
  count: number;
  fields: Record<string, unknown>;
}

export class ThrottledLog {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly logger: Logger,
    private readonly windowMs = THROTTLE_WINDOW_MS,
    private readonly setTimer: SetTimer = setTimeout,
  ) {}

  /** One occurrence of `condition` (also the log message); `fields` of the latest go in its line. */
  warn(condition: string, fields: Record<string, unknown> = {}): void {
    const open = this.windows.get(condition);
    if (open) {
      open.count++;
      open.fields = fields;
      return;
    }
    this.logger.warn({ ...fields, count: 1 }, condition);
    this.open(condition, fields);
  }

  private open(condition: string, fields: Record<string, unknown>): void {
    this.windows.set(condition, { count: 0, fields });
    this.setTimer(() => this.close(condition), this.windowMs).unref();
  }

  private close(condition: string): void {
    const window = this.windows.get(condition)!;
    this.windows.delete(condition);
    if (window.count === 0) return;
    this.logger.warn({ ...window.fields, count: window.count, windowMs: this.windowMs }, condition);
    this.open(condition, window.fields);
  }
}
