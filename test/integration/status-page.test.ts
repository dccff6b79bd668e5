// The status page (GET / on the admin endpoint, issue 12 item 1) in a real browser: Debian's
// headless Chromium driven by puppeteer-core, loaded from the admin endpoint's own
// http://127.0.0.1:PORT/ origin (Chromium's local network access checks block loopback fetches
// from about:blank). Skips, saying why, when chromium or puppeteer-core is missing.

import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { Browser, Page } from 'puppeteer-core';
import { createAdminServer, type LastReload } from '../../src/admin.js';
import { lookupAll } from '../../src/report.js';
import {
  adminGet,
  backendEntry,
  clientIp,
  connectFrom,
  readLine,
  startBackend,
  startDaemon,
  waitFor,
  type TestBackend,
} from '../helpers/index.js';

const CHROMIUM = '/usr/bin/chromium';
const puppeteer = await import('puppeteer-core').then((m) => m.default, () => null);
const missing = !existsSync(CHROMIUM)
  ? `${CHROMIUM} not found (apt-get install chromium)`
  : puppeteer === null
    ? 'puppeteer-core is not installed (npm install)'
    : null;

t.setTimeout(120_000);

interface RingBody {
  configHash: string;
  routingHash: string;
  backends: Array<{ id: string; address: string; weight: number; state: string; share: number; active: number; misplaced: number }>;
}
interface Cell {
  text: string;
  value: string | undefined;
}
type Row = { id: string; className: string } & Record<string, Cell>;

// Read in the page (a string, so this file needs no DOM types).
const READ_ROWS = `Array.from(document.querySelectorAll('#backends tbody tr')).map((tr) => {
  const row = { id: tr.dataset.id, className: tr.className };
  for (const td of tr.children) if (td.dataset.col !== 'id') row[td.dataset.col] = { text: td.textContent, value: td.dataset.value };
  return row;
})`;
const READ_ARCS = `Array.from(document.querySelectorAll('#arcs path')).map((p) => ({ backend: p.dataset.backend, stroke: getComputedStyle(p).stroke }))`;
const REFRESHES = `Number(document.body.dataset.refreshes || 0)`;

/** One browser for the file, with a fresh profile; flags from the machine notes ("Known to work"). */
async function launch(t: Test): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'ringlb-chromium-'));
  const browser = await puppeteer!.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--user-data-dir=${profile}`,
    ],
  });
  t.teardown(async () => {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  });
  return browser;
}

/** A page that records every console error, page error, failed request, HTTP error and request outside `origin`. */
async function openPage(browser: Browser, t: Test, origin: string, width = 1280, height = 900): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage();
  t.teardown(() => page.close());
  await page.setViewport({ width, height });
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warn') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${String(err)}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('request', (r) => {
    // Self-contained: the page asks nothing of any other origin.
    if (new URL(r.url()).origin !== origin) problems.push(`request to another origin: ${r.url()}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  return { page, problems };
}

const rowsOf = (page: Page): Promise<Row[]> => page.evaluate(READ_ROWS) as Promise<Row[]>;
const refreshesOf = (page: Page): Promise<number> => page.evaluate(REFRESHES) as Promise<number>;
const ringOf = async (adminUrl: string): Promise<RingBody> => JSON.parse((await adminGet(`${adminUrl}/ring`)).body) as RingBody;

/** Open a connection from client address `ip` and read which backend answered; held open. */
async function hold(t: Test, port: number, ip: string): Promise<string> {
  const socket = await connectFrom(port, ip);
  t.teardown(() => socket.destroy());
  return readLine(socket);
}

/** A PNG's width and height from its IHDR chunk. */
function pngSize(t: Test, file: string): { width: number; height: number } {
  const png = readFileSync(file);
  t.equal(png.subarray(1, 4).toString('latin1'), 'PNG', `${file} is a PNG`);
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

const FAST_HEALTH = { intervalMs: 100, timeoutMs: 200, rise: 1, fall: 1 };

t.test('the status page shows the ring as /ring describes it, live, in Chromium', { skip: missing ?? false }, async (t) => {
  const browser = await launch(t);
  const backends = await Promise.all(['ws-a', 'ws-b', 'ws-c'].map((id) => startBackend(t, id)));
  const [a, b, c] = backends as [TestBackend, TestBackend, TestBackend];
  const { port, adminUrl, daemon } = await startDaemon(t, {
    backends: [backendEntry(a), backendEntry(b, { weight: 2 }), backendEntry(c)],
    healthCheck: FAST_HEALTH,
  });
  // Open connections, so "open" is not all zeros.
  const held: string[] = [];
  for (let i = 0; i < 6; i++) held.push(await hold(t, port, clientIp(i)));

  const { page, problems } = await openPage(browser, t, adminUrl);
  const response = await page.goto(`${adminUrl}/`, { waitUntil: 'load' });
  const headers = response!.headers();
  t.match(headers['content-security-policy'], /^default-src 'none'; script-src 'sha256-[A-Za-z0-9+/]+=*'; style-src 'sha256-[A-Za-z0-9+/]+=*'; connect-src 'self'/, 'a strict CSP that names the inline script and style by hash');
  t.equal(headers['x-content-type-options'], 'nosniff');
  t.equal(headers['cache-control'], 'no-store');
  await waitFor(async () => (await refreshesOf(page)) >= 2, 'two refreshes of the page');

  // The table's numbers are /ring's.
  const ring = await ringOf(adminUrl);
  const rows = await rowsOf(page);
  t.same(
    rows.map((r) => r.id),
    ring.backends.map((x) => x.id),
    'a row per backend, sorted by id at first',
  );
  for (const x of ring.backends) {
    const row = rows.find((r) => r.id === x.id)!;
    t.same(
      {
        address: row.address!.text,
        state: row.state!.text,
        weight: Number(row.weight!.value),
        share: Number(row.share!.value),
        shareText: row.share!.text,
        active: Number(row.active!.value),
        misplaced: Number(row.misplaced!.value),
      },
      {
        address: x.address,
        state: x.state,
        weight: x.weight,
        share: x.share,
        shareText: `${(x.share * 100).toFixed(2)}%`,
        active: x.active,
        misplaced: x.misplaced,
      },
      `${x.id}'s row equals /ring`,
    );
  }
  t.equal(ring.backends.reduce((s, x) => s + x.active, 0), 6, 'the six held connections are in /ring');
  const text = async (id: string): Promise<string> => (await page.evaluate(`document.getElementById(${JSON.stringify(id)}).textContent`)) as string;
  t.equal(await text('config-hash'), ring.configHash);
  t.equal(await text('routing-hash'), ring.routingHash);
  t.match(await text('uptime'), /^\d+s$/, 'uptime from process_start_time_seconds');
  t.equal(await text('last-reload'), 'none since start');
  t.match(await text('open-total'), /^6( of at most \d+)?$/);

  // The ring: arcs in each backend's colour, as /ring/arcs says, the swatch in the same colour.
  const arcs = JSON.parse((await adminGet(`${adminUrl}/ring/arcs`)).body) as { drawn: string; exact: boolean; arcs: Array<{ backend: string | null }> };
  t.equal(arcs.drawn, 'positions', 'the ring is drawn from its points');
  t.equal(arcs.exact, true, 'three backends are drawn exactly');
  const drawn = (await page.evaluate(READ_ARCS)) as Array<{ backend: string; stroke: string }>;
  t.equal(drawn.length, arcs.arcs.length, 'one path per arc');
  t.same(new Set(drawn.map((d) => d.backend)), new Set(['ws-a', 'ws-b', 'ws-c']), 'every backend has arcs');
  const swatches = (await page.evaluate(
    `Object.fromEntries(Array.from(document.querySelectorAll('#backends tbody tr')).map((tr) => [tr.dataset.id, getComputedStyle(tr.querySelector('.swatch')).backgroundColor]))`,
  )) as Record<string, string>;
  const strokes = new Map(drawn.map((d) => [d.backend, d.stroke]));
  t.equal(new Set(strokes.values()).size, 3, 'three colours');
  for (const id of ['ws-a', 'ws-b', 'ws-c']) t.equal(swatches[id], strokes.get(id), `${id}'s swatch has its arcs' colour`);

  // Rates from successive scrapes: connections to one backend only raise that backend's rate.
  // Addresses chosen by the routing rule itself (ringlb lookup's), so no probe touches another backend.
  const target = held[0]!;
  const candidates = Array.from({ length: 60 }, (_, i) => clientIp(100 + i));
  const where = lookupAll(daemon.fleet.table.config, candidates);
  const ips = candidates.filter((_, i) => where[i] === target);
  t.ok(ips.length > 5, `${ips.length} addresses land on ${target}`);
  for (const ip of ips) {
    const socket = await connectFrom(port, ip);
    t.equal(await readLine(socket), target, `${ip} lands on ${target}`);
    socket.destroy();
  }
  await waitFor(async () => {
    const r = (await rowsOf(page)).find((x) => x.id === target)!;
    return Number(r.connRate!.value) > 0 && Number(r.byteRate!.value) > 0;
  }, `${target}'s conn/s and bytes/s above 0`);
  const others = (await rowsOf(page)).filter((r) => r.id !== target);
  t.ok(others.every((r) => r.connRate!.value === '0'), 'the other backends served nothing since the last scrape');

  // Sorting: by share, largest first; again, smallest first; by backend, a-z.
  const click = (key: string): Promise<void> => page.click(`#backends th[data-key="${key}"] button`);
  const column = async (key: string): Promise<string[]> => (await rowsOf(page)).map((r) => (key === 'id' ? r.id : (r[key]!.value ?? r[key]!.text)));
  await click('share');
  const desc = (await column('share')).map(Number);
  t.same(desc, [...desc].sort((x, y) => y - x), 'share: largest first');
  t.equal((await rowsOf(page))[0]!.id, 'ws-b', 'weight 2 has the largest share');
  t.equal(await page.evaluate(`document.querySelector('th[data-key="share"]').getAttribute('aria-sort')`), 'descending');
  await click('share');
  const asc = (await column('share')).map(Number);
  t.same(asc, [...asc].sort((x, y) => x - y), 'share again: smallest first');
  await click('id');
  t.same(await column('id'), ['ws-a', 'ws-b', 'ws-c'], 'backend: a to z');
  await click('active');
  const open = (await column('active')).map(Number);
  t.same(open, [...open].sort((x, y) => y - x), 'open: most first');

  const dir = t.testdir({});
  const wide = join(dir, 'status-3-backends.png');
  await page.screenshot({ path: wide, fullPage: true });
  t.same(pngSize(t, wide).width, 1280, `screenshot written: ${wide}`);

  // A backend that goes down: its row says so within two refreshes of /ring saying so.
  await c.close();
  await waitFor(async () => (await ringOf(adminUrl)).backends.find((x) => x.id === 'ws-c')!.state === 'down', '/ring to report ws-c down');
  const seen = await refreshesOf(page);
  await waitFor(async () => (await rowsOf(page)).find((r) => r.id === 'ws-c')!.state!.text === 'down', 'the page to show ws-c down');
  t.ok((await refreshesOf(page)) <= seen + 2, 'within two refreshes');
  const down = (await rowsOf(page)).find((r) => r.id === 'ws-c')!;
  t.equal(down.share!.value, '0', 'its share is 0');
  t.equal(down.className, 'state-down', 'its row is marked down');
  await waitFor(async () => !((await page.evaluate(READ_ARCS)) as Array<{ backend: string }>).some((d) => d.backend === 'ws-c'), 'ws-c to leave the ring drawing');
  const after = await ringOf(adminUrl);
  const shares = Object.fromEntries((await rowsOf(page)).map((r) => [r.id, Number(r.share!.value)]));
  t.same(shares, Object.fromEntries(after.backends.map((x) => [x.id, x.share])), 'the others took its share, as /ring says');
  await page.screenshot({ path: join(dir, 'status-3-backends-one-down.png') });

  // A phone: everything fits the width (the table scrolls inside its own box).
  await page.setViewport({ width: 390, height: 844, isMobile: true, deviceScaleFactor: 2 });
  await waitFor(async () => (await refreshesOf(page)) > 0, 'the page');
  const overflow = (await page.evaluate(`document.documentElement.scrollWidth - window.innerWidth`)) as number;
  t.equal(overflow, 0, 'no horizontal scrolling of the page on a 390 px wide screen');
  const phone = join(dir, 'status-3-backends-phone.png');
  await page.screenshot({ path: phone, fullPage: true });
  t.same(pngSize(t, phone).width, 780, `phone screenshot written: ${phone}`);

  t.same(problems, [], 'no console errors, page errors, failed requests or HTTP errors');
});

t.test('the last reload and what it moved, from /last-reload', { skip: missing ?? false }, async (t) => {
  const browser = await launch(t);
  const a = await startBackend(t, 'ws-a');
  const { daemon } = await startDaemon(t, { backends: [backendEntry(a)] });
  // The daemon fills lastReload in; here an admin endpoint over the same table with one given.
  let last: LastReload | null = {
    at: Date.now() - 5000,
    trigger: 'SIGHUP',
    result: 'success',
    configHash: daemon.fleet.table.hash,
    routingHash: daemon.fleet.table.routingHash,
    unchanged: false,
    added: ['ws-d'],
    removed: [],
    changed: ['ws-b'],
    moved: 0.25,
    misplaced: 3,
  };
  const admin = createAdminServer({
    table: () => daemon.fleet.table,
    accepting: () => true,
    scrape: () => daemon.metrics.registry.metrics(),
    active: async () => new Map(),
    lastReload: () => last,
    logger: (await import('pino')).pino({ level: 'silent' }),
  });
  admin.listen(0, '127.0.0.1');
  await once(admin, 'listening');
  t.teardown(() => new Promise<void>((resolve) => admin.close(() => resolve())));
  const url = `http://127.0.0.1:${(admin.address() as AddressInfo).port}`;

  const body = JSON.parse((await adminGet(`${url}/last-reload`)).body) as { lastReload: { at: string; moved: number } };
  t.equal(body.lastReload.at, new Date(last.at).toISOString(), '/last-reload gives the time as ISO 8601');
  t.equal(body.lastReload.moved, 0.25);

  const { page, problems } = await openPage(browser, t, url);
  await page.goto(`${url}/`, { waitUntil: 'load' });
  const reloadText = (): Promise<string> => page.evaluate(`document.getElementById('last-reload').textContent`) as Promise<string>;
  await waitFor(async () => (await reloadText()) !== '', 'the last reload to be shown');
  t.match(await reloadText(), /^\S.* \(5s ago, SIGHUP\): moved 25\.00% of the hash space; added ws-d; changed ws-b; 3 open connections misplaced$/);

  last = { at: Date.now(), trigger: 'file change', result: 'failure', errors: ['backends[0].port: must be an integer from 1 to 65535'] };
  await waitFor(async () => (await reloadText()).includes('failed'), 'the failed reload to be shown');
  t.match(await reloadText(), /\(\d+s ago, file change\): failed, config kept: backends\[0\]\.port: must be an integer from 1 to 65535$/);
  t.same(problems, []);
});

t.test('300 backends: the ring at 720 arcs at most, a row each, sortable', { skip: missing ?? false }, async (t) => {
  const browser = await launch(t);
  const ids = Array.from({ length: 300 }, (_, i) => `ws-${String(i).padStart(3, '0')}`);
  const backends = await Promise.all(ids.map((id) => startBackend(t, id)));
  const { adminUrl } = await startDaemon(t, {
    backends: backends.map((b, i) => backendEntry(b, { weight: 1 + (i % 3), drain: i % 50 === 7 })),
  });
  const { page, problems } = await openPage(browser, t, adminUrl);
  await page.goto(`${adminUrl}/`, { waitUntil: 'load' });
  await waitFor(async () => (await refreshesOf(page)) >= 2, 'two refreshes of the page');

  const ring = await ringOf(adminUrl);
  const rows = await rowsOf(page);
  t.equal(rows.length, 300, 'a row per backend');
  const byId = new Map(rows.map((r) => [r.id, r]));
  const wrong = ring.backends.filter((x) => {
    const r = byId.get(x.id);
    return !r || Number(r.share!.value) !== x.share || r.state!.text !== x.state || Number(r.weight!.value) !== x.weight;
  });
  t.same(wrong.map((x) => x.id), [], 'every row equals /ring');
  const drawn = (await page.evaluate(READ_ARCS)) as Array<{ backend: string }>;
  t.ok(drawn.length > 300 && drawn.length <= 720, `the ring is drawn at ${drawn.length} arcs`);
  const draining = ring.backends.filter((x) => x.state === 'draining').map((x) => x.id);
  t.equal(draining.length, 6);
  t.notOk(drawn.some((d) => draining.includes(d.backend)), 'draining backends have no arcs');

  await page.click('#backends th[data-key="weight"] button');
  const weights = (await rowsOf(page)).map((r) => Number(r.weight!.value));
  t.same(weights, [...weights].sort((x, y) => y - x), 'sorted by weight, heaviest first');
  await page.click('#backends th[data-key="state"] button');
  const states = (await rowsOf(page)).map((r) => r.state!.text);
  t.same(states.slice(0, 294), Array(294).fill('up'), 'by state: up first');
  t.same(states.slice(294), Array(6).fill('draining'), 'then draining');

  const dir = t.testdir({});
  const shot = join(dir, 'status-300-backends.png');
  await page.screenshot({ path: shot });
  t.same(pngSize(t, shot), { width: 1280, height: 900 }, `screenshot written: ${shot}`);
  t.same(problems, [], 'no console errors, page errors, failed requests or HTTP errors');
});
