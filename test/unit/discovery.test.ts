// Discovery as data (src/discovery.ts, issue 10 items 4-5): DNS answers + configured entries ->
// backends with the SPEC's ids (`address:port`, IPv6 in brackets; the SRV target name), the
// entry's settings copied, sorted and deduplicated so an unchanged answer compares equal; the
// address in force for a host name stays while DNS still lists it.
import t from 'tap';
import {
  discoveredBackends,
  pickAddress,
  sameSnapshot,
  sortAddresses,
  sortSrv,
  srvTargets,
  type DiscoveryEntry,
  type DnsSnapshot,
  type SrvRecord,
} from '../../src/discovery.js';

const entry = (extra: Partial<DiscoveryEntry>): DiscoveryEntry => ({ weight: 1, drain: false, proxyProtocol: 'off', sourceAddresses: [], ...extra });
const srv = (name: string, port: number, priority = 10, weight = 10): SrvRecord => ({ name, port, priority, weight });
const snapshot = (s: Partial<Record<keyof DnsSnapshot, Record<string, unknown>>>): DnsSnapshot => ({
  addresses: new Map(Object.entries((s.addresses ?? {}) as Record<string, string[]>)),
  srv: new Map(Object.entries((s.srv ?? {}) as Record<string, SrvRecord[]>)),
  hosts: new Map(Object.entries((s.hosts ?? {}) as Record<string, string>)),
});

t.test('a dns entry: one backend per address, id address:port with IPv6 in brackets, settings copied', async (t) => {
  const e = entry({ dns: 'pool.test', port: 9000, weight: 2, drain: true, proxyProtocol: 'v2', sourceAddresses: ['10.0.1.1'] });
  const s = snapshot({ addresses: { 'pool.test': ['10.0.0.2', '10.0.0.10', '2001:db8::1'] } });
  t.same(discoveredBackends([e], s), [
    { id: '10.0.0.10:9000', host: '10.0.0.10', port: 9000, weight: 2, drain: true, proxyProtocol: 'v2', sourceAddresses: ['10.0.1.1'], hostName: 'pool.test' },
    { id: '10.0.0.2:9000', host: '10.0.0.2', port: 9000, weight: 2, drain: true, proxyProtocol: 'v2', sourceAddresses: ['10.0.1.1'], hostName: 'pool.test' },
    { id: '[2001:db8::1]:9000', host: '2001:db8::1', port: 9000, weight: 2, drain: true, proxyProtocol: 'v2', sourceAddresses: ['10.0.1.1'], hostName: 'pool.test' },
  ]);
});

t.test('an srv entry: one backend per target, id = target name, port from the record, address in force', async (t) => {
  const s = snapshot({
    srv: { '_ws._tcp.pool.test': [srv('ws-0.pool.test', 9000), srv('ws-1.pool.test', 9001)] },
    hosts: { 'ws-0.pool.test': '10.1.0.1', 'ws-1.pool.test': '2001:db8::2' },
  });
  t.same(
    discoveredBackends([entry({ srv: '_ws._tcp.pool.test', weight: 3 })], s).map((b) => [b.id, b.host, b.port, b.weight, b.hostName]),
    [
      ['ws-0.pool.test', '10.1.0.1', 9000, 3, 'ws-0.pool.test'],
      ['ws-1.pool.test', '2001:db8::2', 9001, 3, 'ws-1.pool.test'],
    ],
  );
  const noAddress = snapshot({ srv: { '_ws._tcp.pool.test': [srv('ws-0.pool.test', 9000), srv('ws-1.pool.test', 9001)] }, hosts: { 'ws-1.pool.test': '10.1.0.2' } });
  t.same(discoveredBackends([entry({ srv: '_ws._tcp.pool.test' })], noAddress).map((b) => b.id), ['ws-1.pool.test'], 'a target without an address yet is left out');
});

t.test('sorted and deduplicated: the same answer in any order gives an equal list; the first entry wins an id', async (t) => {
  const a = entry({ dns: 'a.test', port: 9000, weight: 1 });
  const b = entry({ dns: 'b.test', port: 9000, weight: 5 });
  const s1 = snapshot({ addresses: { 'a.test': ['10.0.0.1', '10.0.0.3'], 'b.test': ['10.0.0.3', '10.0.0.2'] } });
  const s2 = snapshot({ addresses: { 'b.test': ['10.0.0.2', '10.0.0.3'], 'a.test': ['10.0.0.3', '10.0.0.1'] } });
  const list = discoveredBackends([a, b], s1);
  t.same(list.map((x) => `${x.id} w${x.weight}`), ['10.0.0.1:9000 w1', '10.0.0.2:9000 w5', '10.0.0.3:9000 w1']);
  t.same(JSON.stringify(discoveredBackends([a, b], s2)), JSON.stringify(list), 'same JSON: compares equal');
  t.same(discoveredBackends([a, b], snapshot({})), [], 'nothing resolved yet: no backends');
  t.same(discoveredBackends([entry({ dns: 'a.test', port: 9001 }), a], s1).length, 4, 'another port is another id');
});

t.test('sortAddresses: IPv4 first, then IPv6, each sorted, no duplicates', async (t) => {
  t.same(sortAddresses(['10.0.0.9', '10.0.0.1', '10.0.0.9'], ['2001:db8::2', '2001:db8::1']), ['10.0.0.1', '10.0.0.9', '2001:db8::1', '2001:db8::2']);
});

t.test('sortSrv: priority, then weight (higher first), then name and port; "." dropped; names lowercased without the root dot', async (t) => {
  const sorted = sortSrv([srv('WS-2.pool.test.', 9000, 20), srv('ws-1.pool.test', 9001, 10, 5), srv('.', 0), srv('ws-0.pool.test', 9000, 10, 50), srv('ws-0.pool.test', 8999, 10, 50)]);
  t.same(sorted.map((r) => `${r.name}:${r.port}`), ['ws-0.pool.test:8999', 'ws-0.pool.test:9000', 'ws-1.pool.test:9001', 'ws-2.pool.test:9000']);
  const s = snapshot({ srv: { x: sorted }, hosts: { 'ws-0.pool.test': '10.0.0.1' } });
  t.same(discoveredBackends([entry({ srv: 'x' })], s).map((b) => `${b.id}:${b.port}`), ['ws-0.pool.test:8999'], 'two records for one target: the preferred one');
  t.same(srvTargets(s), ['ws-0.pool.test', 'ws-1.pool.test', 'ws-2.pool.test']);
});

t.test('pickAddress keeps the address in force while it is listed (round-robin answers restart nothing)', async (t) => {
  t.equal(pickAddress(undefined, ['10.0.0.1', '10.0.0.2']), '10.0.0.1');
  t.equal(pickAddress('10.0.0.2', ['10.0.0.1', '10.0.0.2']), '10.0.0.2');
  t.equal(pickAddress('10.0.0.3', ['10.0.0.1', '10.0.0.2']), '10.0.0.1', 'gone: the first listed');
  t.equal(pickAddress('10.0.0.3', []), undefined);
});

t.test('sameSnapshot compares every part', async (t) => {
  const base = { addresses: { n: ['10.0.0.1'] }, srv: { s: [srv('t', 1)] }, hosts: { h: '10.0.0.1' } };
  t.ok(sameSnapshot(snapshot(base), snapshot(structuredClone(base))));
  t.notOk(sameSnapshot(snapshot(base), snapshot({ ...base, addresses: { n: ['10.0.0.2'] } })), 'an address');
  t.notOk(sameSnapshot(snapshot(base), snapshot({ ...base, addresses: { n: ['10.0.0.1', '10.0.0.2'] } })), 'one more address');
  t.notOk(sameSnapshot(snapshot(base), snapshot({ ...base, addresses: { m: ['10.0.0.1'] } })), 'another name');
  t.notOk(sameSnapshot(snapshot(base), snapshot({ ...base, srv: { s: [srv('t', 2)] } })), 'an SRV port');
  t.notOk(sameSnapshot(snapshot(base), snapshot({ ...base, hosts: { h: '10.0.0.2' } })), 'a host address');
  t.notOk(sameSnapshot(snapshot(base), snapshot({ ...base, hosts: {} })), 'a host gone');
});
