// Client addresses: parsing, IPv4-mapped folding, prefix masking (src/address.ts).
import { isIP } from 'node:net';
import t from 'tap';
import { clientKey, formatHostPort, formatKey, parseIp } from '../../src/address.js';

/** Bytes as a plain array, so a failing t.same prints a readable diff. */
const bytes = (u: Uint8Array | null): number[] | null => (u === null ? null : Array.from(u));

/** The key of `text` (which must parse) under the given prefixes. */
const keyOf = (text: string, v4: number, v6: number): string => {
  const ip = parseIp(text);
  if (ip === null) throw new Error(`test setup: ${text} does not parse`);
  return formatKey(clientKey(ip, v4, v6));
};

t.test('parseIp accepts IPv4 and returns its 4 bytes', async (t) => {
  t.same(bytes(parseIp('1.2.3.4')), [1, 2, 3, 4]);
  t.same(bytes(parseIp('0.0.0.0')), [0, 0, 0, 0]);
  t.same(bytes(parseIp('255.255.255.255')), [255, 255, 255, 255]);
  t.same(bytes(parseIp('10.0.100.9')), [10, 0, 100, 9]);
});

t.test('parseIp accepts IPv6 forms and returns 16 bytes', async (t) => {
  const z = (...tail: number[]): number[] => [...new Array(16 - tail.length).fill(0), ...tail];
  t.same(bytes(parseIp('::')), z());
  t.same(bytes(parseIp('::1')), z(1));
  t.same(bytes(parseIp('1::')), [0, 1, ...new Array(14).fill(0)]);
  t.same(bytes(parseIp('::ffff:1.2.3.4')), z(0xff, 0xff, 1, 2, 3, 4));
  t.same(bytes(parseIp('::FFFF:1.2.3.4')), z(0xff, 0xff, 1, 2, 3, 4));
  t.same(bytes(parseIp('1:2:3:4:5:6:7:8')), [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]);
  t.same(bytes(parseIp('1:2:3:4:5:6:1.2.3.4')), [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 1, 2, 3, 4]);
  t.same(bytes(parseIp('2001:db8::ff00:42:8329')), [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0xff, 0x00, 0x00, 0x42, 0x83, 0x29,
  ]);
  t.same(bytes(parseIp('FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF')), new Array(16).fill(0xff));
  t.same(bytes(parseIp('2001:DB8:ABCD::EF')), bytes(parseIp('2001:db8:abcd::ef')), 'hex is case-insensitive');
  t.same(bytes(parseIp('2001:0db8:0000:0000:0000:0000:0000:0001')), bytes(parseIp('2001:db8::1')));
  t.same(bytes(parseIp('1:2:3:4:5:6:7::')), [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 0], ':: for one group');
  // A zone id names the interface of a link-local address; it is not part of the address.
  t.same(bytes(parseIp('fe80::1%eth0')), bytes(parseIp('fe80::1')));
  t.same(bytes(parseIp('fe80::1%eth0')), [0xfe, 0x80, ...new Array(13).fill(0), 1]);
});

t.test('parseIp rejects what is not an IP address', async (t) => {
  const bad = [
    '300.1.1.1',
    '256.0.0.0',
    '1.2.3',
    '01.2.3.4',
    '1.2.3.04',
    '1.2.3.4.5',
    '1..2.3',
    '1.2.3.',
    '.1.2.3',
    '1.2.3.4 ',
    ' 1.2.3.4',
    '1.2.3.-1',
    '0x1.2.3.4',
    '1.2.3.4/24',
    '',
    'abc',
    '1::2::3',
    '12345::',
    '00000::1',
    ':1::',
    '1:',
    ':::',
    '1:::2',
    'g::1',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7:8::',
    '::1:2:3:4:5:6:7:8',
    '::ffff:1.2.3',
    '::ffff:256.1.1.1',
    '::ffff:01.2.3.4',
    '1.2.3.4::',
    '::1.2.3.4:5',
    '1:2:3:4:5:6:7:1.2.3.4',
    '[::1]',
    'fe80::1%',
    '%eth0',
    '1.2.3.4%eth0',
  ];
  for (const text of bad) t.equal(parseIp(text), null, JSON.stringify(text));
});

t.test('parseIp agrees with node:net isIP on valid/invalid', async (t) => {
  // Deliberate differences, left out of the comparison: parseIp accepts any non-empty zone id
  // (`fe80::1%eth 0`, `fe80::1%%`) since it drops the zone anyway, while isIP only accepts
  // [0-9a-zA-Z-.:] in a zone. (Leading-zero IPv4 such as 01.2.3.4 is rejected by both.)
  const mixed = [
    '0.0.0.0', '255.255.255.255', '1.2.3.4', '10.0.0.1', '192.168.1.254', '300.1.1.1', '1.2.3',
    '01.2.3.4', '1.2.3.04', '1.2.3.4.5', '1.2.3.4 ', ' 1.2.3.4', '', 'abc', '1..2.3', '1.2.3.',
    '.1.2.3', '256.0.0.0', '1.2.3.-1', '1.2.3.4%eth0', '0x1.2.3.4', '1234.1.1.1', '1.2.3.4/24',
    '::', '::1', '1::', '::ffff:1.2.3.4', '::FFFF:1.2.3.4', '::1.2.3.4', '1:2:3:4:5:6:7:8',
    '2001:DB8::1', '2001:db8:0:0:0:0:2:1', 'fe80::1%eth0', 'fe80::1%', '::ffff:1.2.3.4%eth0',
    'FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF', '1:2:3:4:5:6:1.2.3.4', '1::2::3', '12345::', ':1::',
    '1:2:3:4:5:6:7:8:9', '::ffff:1.2.3', '1:2:3:4:5:6:7::', '::2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8::',
    '::1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7', '1:', '1:::2', ':::', 'g::1', '::ffff:256.1.1.1',
    '::ffff:01.2.3.4', '1.2.3.4::', '::1.2.3.4:5', '1:2:3:4:5:6:7:1.2.3.4', '1:2:3:4:5:1.2.3.4',
    '2001:db8::1 ', '[::1]', '::-1', '0:0:0:0:0:0:0:0', '00000::1', '0000::1', '%eth0', '1.2.3.4%',
  ];
  t.ok(mixed.length >= 60);
  const disagree = mixed.filter((s) => (parseIp(s) !== null) !== (isIP(s) !== 0));
  t.same(disagree, [], 'strings where parseIp and net.isIP disagree');
  const valid = mixed.filter((s) => isIP(s) !== 0).length;
  t.ok(valid >= 15 && mixed.length - valid >= 15, 'the list mixes valid and invalid addresses');
});

t.test('clientKey folds IPv4-mapped IPv6 into the 4-byte IPv4 key', async (t) => {
  const mapped = clientKey(parseIp('::ffff:10.1.2.3')!, 32, 64);
  t.same(bytes(mapped), [10, 1, 2, 3]);
  t.same(bytes(mapped), bytes(clientKey(parseIp('10.1.2.3')!, 32, 64)));
  // the IPv4 prefix applies to a mapped address, not the IPv6 one
  t.equal(keyOf('::ffff:10.1.2.3', 24, 128), '10.1.2.0');
  t.equal(keyOf('::ffff:10.1.2.3', 32, 0), '10.1.2.3');
  // near misses stay IPv6
  t.equal(clientKey(parseIp('::fffe:1.2.3.4')!, 32, 128).length, 16);
  t.equal(clientKey(parseIp('1::ffff:1.2.3.4')!, 32, 128).length, 16);
  t.equal(clientKey(parseIp('::1.2.3.4')!, 32, 128).length, 16, 'IPv4-compatible is not IPv4-mapped');
  t.equal(clientKey(parseIp('::ffff:0:1.2.3.4')!, 32, 128).length, 16, 'IPv4-translated is not IPv4-mapped');
});

t.test('clientKey masks IPv4 to ipv4Prefix bits', async (t) => {
  const ip = '203.0.113.77'; // 113 = 0111_0001, 77 = 0100_1101
  t.equal(keyOf(ip, 32, 64), '203.0.113.77');
  t.equal(keyOf(ip, 31, 64), '203.0.113.76');
  t.equal(keyOf(ip, 24, 64), '203.0.113.0');
  t.equal(keyOf(ip, 20, 64), '203.0.112.0');
  t.equal(keyOf(ip, 16, 64), '203.0.0.0');
  t.equal(keyOf(ip, 1, 64), '128.0.0.0');
  t.equal(keyOf(ip, 0, 64), '0.0.0.0');
  t.equal(keyOf(ip, 24, 0), '203.0.113.0', 'ipv6Prefix does not touch IPv4');
  t.equal(keyOf('203.0.113.77', 24, 64), keyOf('203.0.113.200', 24, 64), 'same /24, same key');
  t.not(keyOf('203.0.113.77', 24, 64), keyOf('203.0.114.77', 24, 64), 'other /24, other key');
});

t.test('clientKey masks IPv6 to ipv6Prefix bits', async (t) => {
  const ip = '2001:db8:abcd:ffff:ffff:ffff:ffff:ffff';
  t.equal(keyOf(ip, 32, 128), '2001:db8:abcd:ffff:ffff:ffff:ffff:ffff');
  t.equal(keyOf(ip, 32, 64), '2001:db8:abcd:ffff:0:0:0:0');
  t.equal(keyOf(ip, 32, 61), '2001:db8:abcd:fff8:0:0:0:0');
  t.equal(keyOf(ip, 32, 48), '2001:db8:abcd:0:0:0:0:0');
  t.equal(keyOf(ip, 32, 20), '2001:0:0:0:0:0:0:0');
  t.equal(keyOf('ffff:ffff::', 32, 20), 'ffff:f000:0:0:0:0:0:0');
  t.equal(keyOf(ip, 32, 0), '0:0:0:0:0:0:0:0');
  t.equal(keyOf(ip, 0, 64), '2001:db8:abcd:ffff:0:0:0:0', 'ipv4Prefix does not touch IPv6');
  t.equal(keyOf('2001:db8:aa:bb::1', 32, 64), keyOf('2001:db8:aa:bb:ffff:1:2:3', 32, 64), 'same /64');
  t.not(keyOf('2001:db8:aa:bb::1', 32, 64), keyOf('2001:db8:aa:bc::1', 32, 64), 'other /64');
});

t.test('clientKey does not change its input', async (t) => {
  for (const text of ['203.0.113.77', '::ffff:10.1.2.3', '2001:db8:abcd:ffff:ffff:ffff:ffff:ffff']) {
    const ip = parseIp(text)!;
    const before = bytes(ip);
    for (const [v4, v6] of [[0, 0], [20, 61], [24, 64]] as const) {
      const key = clientKey(ip, v4, v6);
      t.not(key, ip, `${text}: a new array`);
      key.fill(0xaa); // writing to the key must not reach the input either
    }
    t.same(bytes(ip), before, text);
  }
});

t.test('formatKey writes keys as text that parses back to the same bytes', async (t) => {
  t.equal(formatKey(Uint8Array.from([10, 0, 0, 1])), '10.0.0.1');
  t.equal(formatKey(parseIp('2001:db8::1')!), '2001:db8:0:0:0:0:0:1');
  t.equal(formatKey(parseIp('::')!), '0:0:0:0:0:0:0:0');
  const samples = [
    '0.0.0.0', '255.255.255.255', '192.0.2.1', '::', '::1', '2001:db8::ff00:42:8329',
    'fe80::1%eth0', 'FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF', '1:2:3:4:5:6:1.2.3.4', '::ffff:1.2.3.4',
  ];
  for (const text of samples) {
    for (const [v4, v6] of [[32, 128], [24, 64], [0, 0]] as const) {
      const key = clientKey(parseIp(text)!, v4, v6);
      t.same(bytes(parseIp(formatKey(key))), bytes(key), `${text} /${v4} /${v6}`);
    }
  }
});

t.test('formatHostPort brackets IPv6 hosts', async (t) => {
  t.equal(formatHostPort('10.0.0.11', 9000), '10.0.0.11:9000');
  t.equal(formatHostPort('ws.example', 80), 'ws.example:80');
  t.equal(formatHostPort('::1', 9000), '[::1]:9000');
  t.equal(formatHostPort('fe80::1%eth0', 1), '[fe80::1%eth0]:1');
});
