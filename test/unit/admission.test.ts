// Admission, the per-address key and the worker share of a limit: pure, no sockets (issue 8 §2).

import t from 'tap';
import { parseIp } from '../../src/address.js';
import { admit, perIpKey, shareOfLimit } from '../../src/admission.js';
import { resolveMaxConnections } from '../../src/descriptors.js';

const key = (text: string): number | string => perIpKey(parseIp(text)!);

t.test('admit: the total limit first, then the per-address one; 0 is unlimited', async (t) => {
  const limits = { maxConnections: 3, maxConnectionsPerIp: 2 };
  t.equal(admit(limits, 0, 0), null);
  t.equal(admit(limits, 2, 1), null, 'the third connection, the second from its address');
  t.equal(admit(limits, 3, 0), 'max_connections', 'the fourth');
  t.equal(admit(limits, 2, 2), 'max_connections_per_ip', 'a third from one address');
  t.equal(admit(limits, 3, 2), 'max_connections', 'both reached: the total is named');
  t.equal(admit({ maxConnections: 0, maxConnectionsPerIp: 0 }, 1e9, 1e9), null, 'no limits');
  t.equal(admit({ maxConnections: 0, maxConnectionsPerIp: 1 }, 1e9, 0), null);
});

t.test('perIpKey: IPv4 by address, IPv4-mapped folded, IPv6 by /64', async (t) => {
  t.equal(key('10.0.0.1'), 0x0a000001);
  t.equal(key('255.255.255.255'), 0xffffffff, 'unsigned');
  t.equal(key('::ffff:10.0.0.1'), key('10.0.0.1'), 'mapped = the IPv4 address');
  t.not(key('10.0.0.1'), key('10.0.0.2'));
  t.equal(key('2001:db8:1:2::1'), '20010db800010002');
  t.equal(key('2001:db8:1:2:ffff:ffff:ffff:ffff'), key('2001:db8:1:2::1'), 'one /64 is one client');
  t.not(key('2001:db8:1:3::1'), key('2001:db8:1:2::1'), 'the next /64 is another');
  t.not(key('::a00:1'), key('10.0.0.1'), 'an IPv6 address is never an IPv4 key');
});

t.test('shareOfLimit: an even share per worker, rounded up; 0 stays unlimited', async (t) => {
  t.equal(shareOfLimit(10, 1), 10);
  t.equal(shareOfLimit(10, 3), 4);
  t.equal(shareOfLimit(1, 4), 1);
  t.equal(shareOfLimit(0, 4), 0);
});

t.test('resolveMaxConnections: auto = two descriptors per client after the reserve', async (t) => {
  t.equal(resolveMaxConnections('auto', 300, 3), 116, '(300 - 64 - 3) / 2, rounded down');
  t.equal(resolveMaxConnections('auto', 20_000, 0), 9968);
  t.equal(resolveMaxConnections('auto', 10, 100), 1, 'never below 1');
  t.equal(resolveMaxConnections('auto', null, 3), 0, 'an unknown descriptor limit: unlimited');
  t.equal(resolveMaxConnections(500, 300, 3), 500, 'an explicit number as given');
  t.equal(resolveMaxConnections(0, 300, 3), 0);
});
