// The config watcher on a real directory: changes are seen, unchanged rewrites are not, and a
// file rewritten faster than the debounce is still read (issue 7 item 9).

import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ConfigWatcher } from '../../src/watch.js';
import { waitFor } from '../helpers/index.js';

function watched(t: Test): { file: string; changes: () => number } {
  const dir = mkdtempSync(join(tmpdir(), 'ringlb-watch-'));
  const file = join(dir, 'ringlb.json');
  writeFileSync(file, '{"v":0}');
  let changes = 0;
  const watcher = new ConfigWatcher(file, () => changes++, (err) => t.fail(String(err)));
  t.teardown(() => watcher.close());
  return { file, changes: () => changes };
}

t.test('a change is seen once; rewriting the same content is not a change', async (t) => {
  const w = watched(t);
  writeFileSync(w.file, '{"v":1}');
  await waitFor(() => w.changes() === 1, 'the change to be seen');
  // An editor's write-to-temp-and-rename with the same content.
  writeFileSync(`${w.file}.tmp`, '{"v":1}');
  renameSync(`${w.file}.tmp`, w.file);
  writeFileSync(w.file, '{"v":2}');
  await waitFor(() => w.changes() === 2, 'the second change to be seen');
  t.equal(w.changes(), 2, 'the same-content rewrite did not count');
});

t.test('a file rewritten every 30 ms is read while the writes go on', async (t) => {
  const w = watched(t);
  // Far longer than the bounded delay; the old debounce restarted on every event and never fired.
  const writes = 200;
  let written = 0;
  for (; written < writes && w.changes() === 0; written++) {
    writeFileSync(w.file, `{"v":${written + 1}}`);
    await new Promise((r) => setTimeout(r, 30));
  }
  t.ok(w.changes() >= 1, `a change was seen after ${written} of ${writes} writes`);
  t.ok(written < writes, 'before the writes stopped');
});
