// The monitoring kit against real tools (issue 12 item 4): promtool checks the alert rules and
// runs their unit tests, lints a live daemon's /metrics; the Grafana dashboard queries only
// metrics a live daemon exposes; and a real Prometheus server scrapes a daemon on loopback, loads
// the rules, and answers PromQL with the connections this test made. Skipped, with a message,
// where promtool or prometheus is not installed (Debian package `prometheus`).

import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { parse } from 'yaml';
import { adminGet, clientIp, collect, spawnDaemon, startBackend, waitFor, whoAnswers, type SpawnedDaemon } from '../helpers/index.js';

const DEPLOY = fileURLToPath(new URL('../../deploy/', import.meta.url));
const RULES = join(DEPLOY, 'prometheus/ringlb-rules.yml');
const RULE_TESTS = join(DEPLOY, 'prometheus/ringlb-rules.test.yml');
const SCRAPE_CONFIG = join(DEPLOY, 'prometheus/prometheus.yml');
const DASHBOARD = join(DEPLOY, 'grafana/ringlb.json');

// Being added to src/metrics.ts by the lead (issue 12): the rules and the dashboard use them
// already. Until the daemon exposes them, the live checks skip these two names (and say so).
const PENDING = new Set(['ringlb_misplaced_connections']);
const PENDING_LABEL = 'routing_hash'; // on ringlb_config_info

/** Why `bin` cannot be run here (a sentence for the skip message), or null when it can. */
function missing(bin: string): string | null {
  const probe = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (probe.error) return `${bin} is not installed (${probe.error.message}); apt-get install prometheus`;
  return probe.status === 0 ? null : `${bin} --version exited ${probe.status}`;
}
const NO_PROMTOOL = missing('promtool');
const NO_PROMETHEUS = missing('prometheus');

/** Run promtool to completion; stdin is `input` when given. */
async function promtool(args: readonly string[], input?: string): Promise<{ code: number | null; out: string }> {
  const child = spawn('promtool', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.end(input ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const { code, stdout, stderr } = await collect(child);
  clearTimeout(timer);
  return { code, out: stdout + stderr };
}

/** A port free on 127.0.0.1 now (prometheus cannot listen on port 0 and tell which port it got). */
async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * A daemon with one backend that answers and one that refuses (health checks off, so it stays
 * in the ring and its clients fail over): after `clients` connections every series the
 * dashboard draws exists, connection errors and closes included.
 */
async function busyDaemon(t: Test, clients: number): Promise<SpawnedDaemon> {
  const live = await startBackend(t, 'live');
  const refusing = await freePort();
  const daemon = await spawnDaemon(t, {
    listen: { host: '127.0.0.1', port: 0 },
    metrics: { host: '127.0.0.1', port: 0 },
    backends: [
      { id: 'live', host: '127.0.0.1', port: live.port },
      { id: 'refusing', host: '127.0.0.1', port: refusing },
    ],
    healthCheck: { type: 'none' },
  });
  for (let i = 0; i < clients; i++) t.equal(await whoAnswers(daemon.port, clientIp(i)), 'live', `client ${i} is served by the live backend`);
  return daemon;
}

/** /metrics of a spawned daemon once `sample` (a series name prefix) is in it. */
async function scrapeWith(daemon: SpawnedDaemon, sample: string): Promise<string> {
  let body = '';
  await waitFor(async () => {
    body = (await adminGet(`http://127.0.0.1:${daemon.adminPort}/metrics`)).body;
    return body.split('\n').some((line) => line.startsWith(sample));
  }, `${sample} on /metrics`);
  return body;
}

/** Every sample name in a Prometheus text exposition (`x_bucket`, `x_sum`, ... for a histogram). */
function sampleNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const line of exposition.split('\n')) {
    const name = /^([A-Za-z_:][A-Za-z0-9_:]*)[{ ]/.exec(line);
    if (name) names.add(name[1]!);
  }
  return names;
}

// PromQL words that are not metric names when they stand alone.
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'bool', 'and', 'or', 'unless', 'inf', 'nan']);

/** The metric names a PromQL expression (with Grafana variables) selects. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // label values and regexes
    .replace(/\{[^}]*\}/g, '') // label matchers
    .replace(/\[[^\]]*\]/g, '') // ranges
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '') // label lists
    .replace(/\$\w+/g, ''); // Grafana variables
  const names: string[] = [];
  for (const m of bare.matchAll(/(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const isCall = /^\s*\(/.test(bare.slice(m.index + m[0].length));
    if (!isCall && !KEYWORDS.has(m[0].toLowerCase())) names.push(m[0]);
  }
  return names;
}

interface Dashboard {
  panels: Array<{ title: string; type: string; targets?: Array<{ expr: string }> }>;
  templating: { list: Array<{ name: string; type: string; definition?: string }> };
}
const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
/** Every query of the dashboard: panel targets and the `label_values(metric...)` of its variables. */
const dashboardQueries = (): Array<{ where: string; expr: string }> => [
  ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((target) => ({ where: `panel "${p.title}"`, expr: target.expr }))),
  ...dashboard.templating.list
    .filter((v) => v.type === 'query')
    .map((v) => ({ where: `variable $${v.name}`, expr: /^label_values\(([^,]+),/.exec(v.definition!)![1]! })),
];

t.test('the Grafana dashboard queries only metrics a running daemon exposes (issue 12 item 4)', async (t) => {
  const queries = dashboardQueries();
  const used = new Set<string>();
  for (const { where, expr } of queries) {
    const names = metricNames(expr);
    t.ok(names.length > 0, `${where} selects a metric: ${expr}`);
    for (const name of names) used.add(name);
  }
  // What the issue asks the dashboard to show, and nothing the daemon does not export.
  t.same([...used].sort(), [
    'process_max_fds',
    'process_open_fds',
    'ringlb_backend_up',
    'ringlb_closed_connections_total',
    'ringlb_config_info',
    'ringlb_config_reloads_total',
    'ringlb_connect_duration_seconds_bucket',
    'ringlb_connection_errors_total',
    'ringlb_connections_active',
    'ringlb_connections_total',
    'ringlb_max_connections',
    'ringlb_misplaced_connections',
    'ringlb_rejected_connections_total',
    'ringlb_ring_share',
    'ringlb_bytes_total',
  ].sort());

  const daemon = await busyDaemon(t, 20);
  await scrapeWith(daemon, 'ringlb_connection_errors_total{');
  const exposition = await scrapeWith(daemon, 'ringlb_closed_connections_total{');
  const exposed = sampleNames(exposition);
  for (const name of [...used].sort()) {
    if (PENDING.has(name) && !exposed.has(name)) {
      t.comment(`${name} is not exposed by this build yet (being added); not checked`);
      continue;
    }
    t.ok(exposed.has(name), `${name} is on a live daemon's /metrics`);
  }
  // The routing-hash panel and alert group ringlb_config_info by this label.
  const info = exposition.split('\n').find((line) => line.startsWith('ringlb_config_info{'));
  if (!info?.includes(`${PENDING_LABEL}=`)) t.comment(`ringlb_config_info has no ${PENDING_LABEL} label in this build yet (being added); not checked`);
  else t.match(info, new RegExp(`${PENDING_LABEL}="[0-9a-f]+"`), `ringlb_config_info carries ${PENDING_LABEL}`);
});

t.test('promtool: the rules are valid, every alert has unit tests, and they pass (issue 12 item 4)', { skip: NO_PROMTOOL ?? false }, async (t) => {
  const check = await promtool(['check', 'rules', RULES]);
  t.equal(check.code, 0, check.out);
  t.match(check.out, /SUCCESS: 7 rules found/);
  const config = await promtool(['check', 'config', SCRAPE_CONFIG]);
  t.equal(config.code, 0, config.out);

  // Every alert of the rules file is tested both firing and not firing.
  const rules = parse(readFileSync(RULES, 'utf8')) as { groups: Array<{ rules: Array<{ alert: string }> }> };
  const alerts = rules.groups.flatMap((g) => g.rules.map((r) => r.alert)).sort();
  const tests = parse(readFileSync(RULE_TESTS, 'utf8')) as {
    tests: Array<{ alert_rule_test: Array<{ alertname: string; exp_alerts: unknown[] }> }>;
  };
  const cases = tests.tests.flatMap((c) => c.alert_rule_test);
  const firing = new Set(cases.filter((c) => c.exp_alerts.length > 0).map((c) => c.alertname));
  const quiet = new Set(cases.filter((c) => c.exp_alerts.length === 0).map((c) => c.alertname));
  t.same([...firing].sort(), alerts, 'every alert has a firing case');
  t.same([...quiet].sort(), alerts, 'every alert has a not-firing case');

  const unit = await promtool(['test', 'rules', RULE_TESTS]);
  t.equal(unit.code, 0, unit.out);
  t.match(unit.out, /SUCCESS/);
});

t.test('promtool check metrics: a live daemon lints clean but for prom-client\'s nodejs_active_*_total gauges (issue 12 item 4)', { skip: NO_PROMTOOL ?? false }, async (t) => {
  const daemon = await busyDaemon(t, 20);
  await scrapeWith(daemon, 'ringlb_connection_errors_total{');
  const exposition = await scrapeWith(daemon, 'ringlb_closed_connections_total{');
  const lint = await promtool(['check', 'metrics'], exposition);
  // prom-client names these gauges with _total (its default process metrics, not ringlb's own).
  t.same(lint.out.trim().split('\n').sort(), [
    'nodejs_active_handles_total non-counter metrics should not have "_total" suffix',
    'nodejs_active_requests_total non-counter metrics should not have "_total" suffix',
    'nodejs_active_resources_total non-counter metrics should not have "_total" suffix',
  ]);
  t.equal(lint.code, 3, 'promtool exits 3 for lint findings');
});

interface QueryAnswer {
  status: string;
  error?: string;
  data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

t.test('a real Prometheus scrapes the daemon and counts the connections made (issue 12 item 4)', { skip: NO_PROMETHEUS ?? false }, async (t) => {
  const N = 7;
  const live = await startBackend(t, 'live');
  const daemon = await spawnDaemon(t, {
    listen: { host: '127.0.0.1', port: 0 },
    metrics: { host: '127.0.0.1', port: 0 },
    backends: [{ id: 'live', host: '127.0.0.1', port: live.port }],
  });

  const dir = mkdtempSync(join(tmpdir(), 'ringlb-prometheus-'));
  const config = join(dir, 'prometheus.yml');
  writeFileSync(
    config,
    [
      'global: { scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }',
      `rule_files: [${JSON.stringify(RULES)}]`,
      'scrape_configs:',
      '  - job_name: ringlb',
      `    static_configs: [{ targets: ["127.0.0.1:${daemon.adminPort}"] }]`,
      '',
    ].join('\n'),
  );
  const port = await freePort();
  const prometheus = spawn(
    'prometheus',
    [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  prometheus.stderr.on('data', (c: Buffer) => (log = (log + c.toString()).slice(-4000)));
  const exited = collect(prometheus);
  // Stopped first, then its storage removed (it writes until it exits).
  t.teardown(async () => {
    if (prometheus.exitCode === null && prometheus.signalCode === null) {
      prometheus.kill('SIGTERM');
      const timer = setTimeout(() => prometheus.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const api = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${api}/-/ready`).catch(() => null))?.status === 200, `prometheus ready (log: ${log})`, 20_000);

  // Every socket it listens on is on loopback (its web port; nothing else).
  const ss = spawnSync('ss', ['-Hltnp'], { encoding: 'utf8' });
  if (ss.error) t.comment(`ss (iproute2) is not installed: the listening sockets are not checked`);
  else {
    const listening = ss.stdout
      .split('\n')
      .filter((line) => line.includes(`pid=${prometheus.pid},`))
      .map((line) => line.trim().split(/\s+/)[3]);
    t.same(listening, [`127.0.0.1:${port}`], 'prometheus listens on 127.0.0.1 only');
  }

  const query = async (promql: string): Promise<QueryAnswer> =>
    (await (await fetch(`${api}/api/v1/query?query=${encodeURIComponent(promql)}`)).json()) as QueryAnswer;
  const value = async (promql: string): Promise<number | null> => {
    const [first] = (await query(promql)).data.result;
    return first ? Number(first.value[1]) : null;
  };
  // The scrape works before the connections, so the count below is what they added.
  await waitFor(async () => (await value('up{job="ringlb"}')) === 1, 'the daemon scraped (up == 1)', 15_000);
  t.equal(await value('sum(ringlb_connections_total)'), null, 'no connection counted before the test made any');

  for (let i = 0; i < N; i++) t.equal(await whoAnswers(daemon.port, clientIp(i)), 'live');
  let got: number | null = null;
  await waitFor(async () => (got = await value('sum(ringlb_connections_total)')) === N, `sum(ringlb_connections_total) == ${N}`, 15_000).catch(
    (err: Error) => t.fail(`${err.message}; last answer ${got}`),
  );
  t.equal(got, N, `PromQL counts the ${N} connections the test made`);
  t.equal(await value('ringlb_connections_total{backend="live"}'), N, 'against the backend that served them');

  // The rules load and evaluate without errors against the daemon's real series.
  type Rules = { data: { groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> } };
  let rules: Rules['data']['groups'][number]['rules'] = [];
  await waitFor(async () => {
    const body = (await (await fetch(`${api}/api/v1/rules`)).json()) as Rules;
    rules = body.data.groups.flatMap((g) => g.rules);
    return rules.length > 0 && rules.every((r) => r.health !== 'unknown');
  }, 'the rules evaluated once');
  t.same(
    rules.map((r) => `${r.name} ${r.health}${r.lastError ? `: ${r.lastError}` : ''}`),
    rules.map((r) => `${r.name} ok`),
    'every rule evaluates',
  );
  t.same((await query('ALERTS{alertstate="firing"}')).data.result, [], 'no alert fires for a healthy daemon');

  // Every dashboard query parses and evaluates in Prometheus, with Grafana's variables filled in.
  for (const { where, expr } of dashboardQueries()) {
    const promql = expr.replaceAll('$job', 'ringlb').replaceAll('$instance', '.+').replaceAll('$__rate_interval', '1m');
    const answer = await query(promql);
    t.equal(answer.status, 'success', `${where}: ${promql}${answer.error ? ` (${answer.error})` : ''}`);
  }
});
