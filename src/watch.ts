// Watching the config file for changes. The directory is watched, not the file: an editor's
// write-to-temp-and-rename and a Kubernetes ConfigMap update (the `..data` symlink swapped to a
// new directory) replace the file rather than write to it, which a watch on the file misses.
// Bursts of events are debounced, and only a change of the content digest counts, so one
// change is one reload. The debounce is bounded: a file rewritten faster than the quiet time (a
// config management tool in a loop) is still read within MAX_DELAY_MS of its first change
// (issue 7 item 9).

import { createHash } from 'node:crypto';
import { watch, readFileSync, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';

/** Quiet time after the last event before the file is read. */
export const DEBOUNCE_MS = 100;
/** The longest a burst of events can delay reading the file, from its first event. */
export const MAX_DELAY_MS = 1000;

function digestOf(file: string): string | null {
  try {
    return createHash('sha256').update(readFileSync(file)).digest('hex');
  } catch {
    return null; // missing for a moment (mid-rename) or gone: compared like any other content
  }
}

export class ConfigWatcher {
  private readonly watcher: FSWatcher;
  private timer: NodeJS.Timeout | null = null;
  /** When the first event of the burst being debounced arrived. */
  private burstStart = 0;
  private digest: string | null;

  /** Call `onChange` after the content of `file` changes; `onError` if the watch itself fails. */
  constructor(
    private readonly file: string,
    private readonly onChange: () => void,
    onError: (err: Error) => void,
  ) {
    this.digest = digestOf(file);
    this.watcher = watch(dirname(file), { persistent: false }, () => this.poke());
    this.watcher.on('error', onError);
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.watcher.close();
  }

  private poke(): void {
    const now = Date.now();
    if (this.timer) clearTimeout(this.timer);
    else this.burstStart = now;
    const wait = Math.max(0, Math.min(DEBOUNCE_MS, this.burstStart + MAX_DELAY_MS - now));
    this.timer = setTimeout(() => this.settle(), wait);
  }

  private settle(): void {
    this.timer = null;
    const digest = digestOf(this.file);
    if (digest === this.digest || digest === null) return;
    this.digest = digest;
    this.onChange();
  }
}
