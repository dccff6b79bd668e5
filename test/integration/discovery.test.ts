// DNS on a schedule against real DNS servers on loopback (issue 10 items 4-6): the test's own
// server (test/helpers/dns-server.ts) whose records change while the schedule runs — backends
// appear, disappear, change address; SRV targets and ports; a server that stops answering (the
// last set is kept, the failure counted and logged once); answers too long for UDP come over
// TCP — and dnsmasq, when installed, as the server.
import { spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { Resolver } from 'node:dns/promises';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { discoveredBackends, type DiscoveryEntry, type DnsSnapshot } from '../../src/discovery.js';
import { DnsSchedule, type DnsNames, type DnsScheduleOptions } from '../../src/dns-schedule.js';
import { startDnsServer } from '../helpers/dns-server.js';
import { waitFor } from '../helpers/index.js';

const entry = (extra: Partial<DiscoveryEntry>): DiscoveryEntry => ({ weight: 1, drain: false, proxyProtocol: 'off', sourceAddresses: [], ...extra });
const POOL = entry({ dns: 'pool.test', port: 9000 });
const SRV = entry({ srv: '_ws._tcp.pool.test' });

interface Harness {
  readonly schedule: DnsSchedule;
  /** Snapshots passed to onChange, in order. */
  readonly changes: DnsSnapshot[];
  /** `name ok|fail` per lookup, in order. */
  readonly results: string[];
  readonly logs: { level: number; msg: string; host?: string; reason?: string }[];
}

function schedule(t: Test, servers: string[], extra: Partial<DnsScheduleOptions> = {}): Harness {
  const changes: DnsSnapshot[] = [];
  const results: string[] = [];
  const logs: Harness['logs'] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line));
      done();
    },
  });
  const s = new DnsSchedule({
    servers,
    refreshMs: 100,
    logger: pino({ level: 'info' }, sink),
    onResult: (name, ok) => results.push(`${name} ${ok ? 'ok' : 'fail'}`),
    onChange: (snapshot) => changes.push(snapshot),
    queryTimeoutMs: 200,
    tries: 1,
    ...extra,
  });
  t.teardown(() => s.stop());
  return { schedule: s, changes, results, logs };
}

const ids = (entries: DiscoveryEntry[], snapshot: DnsSnapshot): string[] => discoveredBackends(entries, snapshot).map((b) => `${b.id}@${b.host}:${b.port}`);
const names = (extra: Partial<DnsNames>): DnsNames => ({ hosts: [], dns: [], srv: [], ...extra });

t.test('a dns pool: backends appear, disappear and change address within one refresh', async (t) => {
  const dns = await startDnsServer(t, { 'pool.test': { A: ['10.0.0.1', '10.0.0.2', '10.0.0.3'] } });
  const h = schedule(t, [dns.server]);
  const first = await h.schedule.apply(names({ dns: ['pool.test'] }));
  t.same(ids([POOL], first), ['10.0.0.1:9000@10.0.0.1:9000', '10.0.0.2:9000@10.0.0.2:9000', '10.0.0.3:9000@10.0.0.3:9000'], 'resolved when applied');

  const since = Date.now();
  dns.set('pool.test', { A: ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5'] });
  await waitFor(() => h.changes.length === 1, 'the grown pool');
  t.comment(`discovery saw the change ${Date.now() - since} ms after the records changed (refreshMs 100)`);
  t.same(ids([POOL], h.changes[0]!).map((x) => x.split('@')[0]), ['10.0.0.1:9000', '10.0.0.2:9000', '10.0.0.3:9000', '10.0.0.4:9000', '10.0.0.5:9000'], '3 -> 5');

  dns.set('pool.test', { A: ['10.0.0.1', '10.0.0.3', '10.0.0.4', '10.0.0.5'], AAAA: ['2001:db8::7'] });
  await waitFor(() => h.changes.length === 2, 'one gone, one IPv6 added');
  t.same(ids([POOL], h.changes[1]!).map((x) => x.split('@')[0]), ['10.0.0.1:9000', '10.0.0.3:9000', '10.0.0.4:9000', '10.0.0.5:9000', '[2001:db8::7]:9000']);

  const queriesBefore = dns.queries.length;
  await waitFor(() => dns.queries.length >= queriesBefore + 6, 'three more refreshes');
  t.equal(h.changes.length, 2, 'an unchanged answer is no change');
  t.same(h.results.filter((r) => r !== 'pool.test ok'), [], 'every lookup counted as a success');
});

t.test('a backend host name: one address in force, changed in place, kept while listed', async (t) => {
  const dns = await startDnsServer(t, { 'ws-d.test': { A: ['10.0.0.11'] } });
  const h = schedule(t, [dns.server]);
  const first = await h.schedule.apply(names({ hosts: ['ws-d.test', '10.9.9.9'] }));
  t.same([...first.hosts], [['ws-d.test', '10.0.0.11'], ['10.9.9.9', '10.9.9.9']], 'an IP literal is its own address, not looked up');
  t.notOk(dns.queries.some((q) => q.includes('10.9.9.9')), 'no query for the IP literal');
  dns.set('ws-d.test', { A: ['10.0.0.12'] });
  await waitFor(() => h.changes.length === 1, 'the new address');
  t.equal(h.changes[0]!.hosts.get('ws-d.test'), '10.0.0.12');
  dns.set('ws-d.test', { A: ['10.0.0.10', '10.0.0.12'] });
  const queriesBefore = dns.queries.length;
  await waitFor(() => dns.queries.length >= queriesBefore + 4, 'two more refreshes');
  t.equal(h.schedule.snapshot.hosts.get('ws-d.test'), '10.0.0.12', 'still listed: the address in force stays');
});

t.test('SRV: one backend per target with its port; a target that moves keeps its id', async (t) => {
  const dns = await startDnsServer(t, {
    '_ws._tcp.pool.test': { SRV: [{ target: 'ws-0.pool.test', port: 9000 }, { target: 'ws-1.pool.test', port: 9001 }] },
    'ws-0.pool.test': { A: ['10.1.0.1'] },
    'ws-1.pool.test': { AAAA: ['2001:db8::11'] },
  });
  const h = schedule(t, [dns.server]);
  const first = await h.schedule.apply(names({ srv: ['_ws._tcp.pool.test'] }));
  t.same(ids([SRV], first), ['ws-0.pool.test@10.1.0.1:9000', 'ws-1.pool.test@2001:db8::11:9001'], 'targets resolved in the same pass');

  dns.set('ws-1.pool.test', { A: ['10.1.0.2'] });
  await waitFor(() => h.changes.length === 1, 'a target moved');
  t.same(ids([SRV], h.changes[0]!), ['ws-0.pool.test@10.1.0.1:9000', 'ws-1.pool.test@10.1.0.2:9001']);

  dns.set('_ws._tcp.pool.test', { SRV: [{ target: 'ws-0.pool.test', port: 9000 }, { target: 'ws-1.pool.test', port: 9101 }, { target: 'ws-2.pool.test', port: 9000 }] });
  dns.set('ws-2.pool.test', { A: ['10.1.0.3'] });
  await waitFor(() => h.changes.length === 2, 'a port changed, a target added');
  t.same(ids([SRV], h.changes[1]!), ['ws-0.pool.test@10.1.0.1:9000', 'ws-1.pool.test@10.1.0.2:9101', 'ws-2.pool.test@10.1.0.3:9000']);
});

t.test('a server that stops answering: the last set is kept, every failure counted, logged once per streak', async (t) => {
  const dns = await startDnsServer(t, { 'pool.test': { A: ['10.0.0.1', '10.0.0.2'] } });
  const h = schedule(t, [dns.server]);
  const first = await h.schedule.apply(names({ dns: ['pool.test'] }));
  dns.silent = true;
  await waitFor(() => h.results.filter((r) => r === 'pool.test fail').length >= 3, 'three failed lookups');
  t.same(ids([POOL], h.schedule.snapshot), ids([POOL], first), 'the last set is kept');
  t.equal(h.changes.length, 0, 'no change applied');
  const warnings = h.logs.filter((l) => l.level === 40);
  t.same(warnings.map((l) => [l.msg, l.host, l.reason]), [['dns lookup failed; keeping the last answer', 'pool.test', 'ETIMEOUT']], 'one warning for the streak');

  dns.set('pool.test', { A: ['10.0.0.2', '10.0.0.3'] });
  dns.silent = false;
  await waitFor(() => h.changes.length === 1, 'answers again');
  t.same(ids([POOL], h.changes[0]!).map((x) => x.split('@')[0]), ['10.0.0.2:9000', '10.0.0.3:9000']);
  t.same(h.logs.filter((l) => l.level === 30).map((l) => [l.msg, l.host]), [['dns lookup works again', 'pool.test']]);

  dns.set('pool.test', null);
  await waitFor(() => h.logs.filter((l) => l.level === 40).length === 2, 'the next streak');
  t.same(h.logs.at(-1)?.reason, 'ENOTFOUND', 'NXDOMAIN is a failure too: a pool is never emptied by DNS');
  t.same(ids([POOL], h.schedule.snapshot).length, 2);
});

t.test('an answer too long for UDP is fetched over TCP', async (t) => {
  const many = Array.from({ length: 40 }, (_, i) => `2001:db8::${(i + 1).toString(16)}`);
  const dns = await startDnsServer(t, { 'big.test': { AAAA: many } });
  const h = schedule(t, [dns.server]);
  const snapshot = await h.schedule.apply(names({ dns: ['big.test'] }));
  t.equal(discoveredBackends([entry({ dns: 'big.test', port: 9000 })], snapshot).length, 40);
  t.ok(dns.queries.includes('tcp AAAA big.test'), 'asked again over TCP');
});

/**
 * A port free on 127.0.0.1 now for both UDP and TCP (dnsmasq binds both). A UDP port the kernel
 * hands out can be the local port of some TCP connection of a busy suite: check TCP too.
 */
async function freePort(): Promise<number> {
  for (;;) {
    const s = dgram.createSocket('udp4');
    s.bind(0, '127.0.0.1');
    await once(s, 'listening');
    const { port } = s.address();
    const tcp = net.createServer();
    const free = await new Promise<boolean>((resolve) => {
      tcp.once('error', () => resolve(false));
      tcp.listen(port, '127.0.0.1', () => resolve(true));
    });
    await new Promise<void>((r) => s.close(() => r()));
    if (free) await new Promise<void>((r) => tcp.close(() => r()));
    if (free) return port;
  }
}

const hasDnsmasq = spawnSync('dnsmasq', ['--version']).status === 0;

t.test('interop: dnsmasq as the server', { skip: hasDnsmasq ? false : 'dnsmasq is not installed (apt-get install dnsmasq-base)' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ringlb-dnsmasq-'));
  const hosts = join(dir, 'hosts');
  const hostsFile = (lines: string[]): void => writeFileSync(hosts, `${lines.join('\n')}\n`, { mode: 0o644 });
  hostsFile(['10.2.0.1 pool.test', '10.2.0.2 pool.test', '10.2.0.3 pool.test', '10.2.1.1 ws-0.pool.test', '10.2.1.2 ws-1.pool.test']);
  const port = await freePort();
  const child = spawn(
    'dnsmasq',
    [
      '--no-daemon',
      `--port=${port}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      '--no-resolv',
      '--no-hosts',
      '--conf-file=/dev/null',
      '--pid-file=',
      '--user=root',
      `--addn-hosts=${hosts}`,
      // Answer pool.test from local data only (NODATA for a missing AAAA), never REFUSED for want of an upstream.
      '--local=/pool.test/',
      '--srv-host=_ws._tcp.pool.test,ws-0.pool.test,9000',
      '--srv-host=_ws._tcp.pool.test,ws-1.pool.test,9001',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const probe = new Resolver({ timeout: 200, tries: 1 });
  probe.setServers([`127.0.0.1:${port}`]);
  await waitFor(() => probe.resolve4('pool.test').then(() => true, () => false), `dnsmasq answering (${stderr.trim()})`);

  const h = schedule(t, [`127.0.0.1:${port}`]);
  const first = await h.schedule.apply(names({ dns: ['pool.test'], srv: ['_ws._tcp.pool.test'] }));
  t.same(ids([POOL], first).map((x) => x.split('@')[0]), ['10.2.0.1:9000', '10.2.0.2:9000', '10.2.0.3:9000']);
  t.same(ids([SRV], first), ['ws-0.pool.test@10.2.1.1:9000', 'ws-1.pool.test@10.2.1.2:9001']);

  // dnsmasq re-reads --addn-hosts files on SIGHUP.
  hostsFile(['10.2.0.1 pool.test', '10.2.0.2 pool.test', '10.2.0.3 pool.test', '10.2.0.4 pool.test', '10.2.0.5 pool.test', '10.2.1.1 ws-0.pool.test', '10.2.1.9 ws-1.pool.test']);
  child.kill('SIGHUP');
  await waitFor(() => h.changes.length >= 1 && discoveredBackends([POOL], h.changes.at(-1)!).length === 5 && h.changes.at(-1)!.hosts.get('ws-1.pool.test') === '10.2.1.9', 'the new hosts file');
  const last = h.changes.at(-1)!;
  t.same(ids([POOL], last).map((x) => x.split('@')[0]), ['10.2.0.1:9000', '10.2.0.2:9000', '10.2.0.3:9000', '10.2.0.4:9000', '10.2.0.5:9000'], '3 -> 5');
  t.same(ids([SRV], last), ['ws-0.pool.test@10.2.1.1:9000', 'ws-1.pool.test@10.2.1.9:9001'], 'an SRV target moved, same id');
  t.same(h.results.filter((r) => r.endsWith('fail')), [], 'no failed lookup');
});
