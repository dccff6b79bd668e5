// The PROXY protocol codec (src/proxy-protocol.ts) against HAProxy's doc/proxy-protocol.txt:
// its literal examples and limits, hand-assembled v2 bytes, the attacks of issue 8 §3-4 (split
// headers, huge v2 lengths, garbage, lines without CRLF, bad fields, short address blocks,
// TLVs, LOCAL, data after the header) and seeded random round trips.
import { SocketAddress } from 'node:net';
import t from 'tap';
import {
  decodeProxyHeader,
  encodeProxyHeader,
  encodeProxyLocal,
  MAX_V1_LENGTH,
  MAX_V2_LENGTH,
  type DecodeResult,
  type ProxyAddresses,
  type ProxyVersion,
} from '../../src/proxy-protocol.js';
import { prng } from '../helpers/prng.js';

const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const decode = (x: string | Buffer): DecodeResult => decodeProxyHeader(typeof x === 'string' ? latin1(x) : x);
const SIG = '0D0A0D0A 000D0A51 5549540A';


/** Lengths n < bytes.length at which the first n bytes do not decode as `incomplete`. */
function notIncompletePrefixes(bytes: Buffer): string[] {
  const bad: string[] = [];
  for (let n = 0; n < bytes.length; n++) {
    const r = decodeProxyHeader(bytes.subarray(0, n));
    if (r.status !== 'incomplete') bad.push(`${n}: ${JSON.stringify(r)}`);
  }
  return bad;
}

/** The shortest prefix of `bytes` that decodes as invalid, as text, with its reason; null if none. */
function rejectedAt(bytes: Buffer): { prefix: string; reason: string } | null {
  for (let n = 1; n <= bytes.length; n++) {
    const r = decodeProxyHeader(bytes.subarray(0, n));
    if (r.status === 'invalid') return { prefix: bytes.toString('latin1', 0, n), reason: r.reason };
  }
  return null;
}

const okHeader = (r: DecodeResult) => (r.status === 'ok' ? r.header : r);

t.test('v1: the examples and maximum lines of proxy-protocol.txt §2.1', async (t) => {
  const example = 'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n';
  const a: ProxyAddresses = { family: 4, source: '192.168.0.1', sourcePort: 56324, destination: '192.168.0.11', destinationPort: 443 };
  t.equal(encodeProxyHeader('v1', a).toString('latin1'), example, 'encode gives the spec example byte for byte');
  t.same(okHeader(decode(`${example}GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n`)), {
    version: 'v1',
    command: 'proxy',
    addresses: a,
    length: example.length,
  });

  const tcp4 = 'PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n';
  t.equal(tcp4.length, 56);
  t.same(okHeader(decode(tcp4)), {
    version: 'v1',
    command: 'proxy',
    addresses: { family: 4, source: '255.255.255.255', sourcePort: 65535, destination: '255.255.255.255', destinationPort: 65535 },
    length: 56,
  });
  const f = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
  const tcp6 = `PROXY TCP6 ${f} ${f} 65535 65535\r\n`;
  t.equal(tcp6.length, 104);
  t.same(okHeader(decode(tcp6)), {
    version: 'v1',
    command: 'proxy',
    addresses: { family: 6, source: f, sourcePort: 65535, destination: f, destinationPort: 65535 },
    length: 104,
  });
  const six: ProxyAddresses = { family: 6, source: f, sourcePort: 65535, destination: f, destinationPort: 65535 };
  t.equal(encodeProxyHeader('v1', six).toString('latin1'), tcp6);

  t.same(okHeader(decode('PROXY UNKNOWN\r\n')), { version: 'v1', command: 'proxy', addresses: null, length: 15 });
  const worst = `PROXY UNKNOWN ${f} ${f} 65535 65535\r\n`;
  t.equal(worst.length, MAX_V1_LENGTH, 'the worst case of §2.1 is exactly the bound');
  t.same(okHeader(decode(worst)), { version: 'v1', command: 'proxy', addresses: null, length: 107 });
});

t.test('v2: the signature, LOCAL and hand-assembled TCP4/TCP6 headers, byte for byte', async (t) => {
  t.same([...hex(SIG)], [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a], 'the §2.2 signature');
  t.equal(encodeProxyLocal('v2').toString('hex'), hex(`${SIG} 20 00 0000`).toString('hex'), 'LOCAL, UNSPEC, length 0');
  t.equal(encodeProxyLocal('v1').toString('latin1'), 'PROXY UNKNOWN\r\n');

  // The §2.1 example connection in v2: 192.168.0.1:56324 -> 192.168.0.11:443.
  const tcp4 = hex(`${SIG} 21 11 000C  C0A80001 C0A8000B  DC04 01BB`);
  const a4: ProxyAddresses = { family: 4, source: '192.168.0.1', sourcePort: 56324, destination: '192.168.0.11', destinationPort: 443 };
  t.equal(encodeProxyHeader('v2', a4).toString('hex'), tcp4.toString('hex'));
  t.same(okHeader(decode(tcp4)), { version: 'v2', command: 'proxy', addresses: a4, length: 28 });

  const tcp6 = hex(`${SIG} 21 21 0024
    20010DB8 00000000 00000000 00000001
    20010DB8 00000000 00000000 00000002
    04D2 0050`);
  const a6: ProxyAddresses = { family: 6, source: '2001:db8::1', sourcePort: 1234, destination: '2001:db8::2', destinationPort: 80 };
  t.equal(encodeProxyHeader('v2', a6).toString('hex'), tcp6.toString('hex'));
  t.same(okHeader(decode(tcp6)), { version: 'v2', command: 'proxy', addresses: a6, length: 52 });

  t.same(okHeader(decode(encodeProxyLocal('v2'))), { version: 'v2', command: 'local', addresses: null, length: 16 });
});

// issue 8 §4: a header split byte by byte; bytes after the header, in the same buffer, are not consumed.
t.test('a header split byte by byte: every prefix is incomplete, the whole is ok with the exact length', async (t) => {
  const tlvs = hex('01 0002 6832  04 0003 000000  E0 0001 FF'); // ALPN "h2", NOOP, a custom type
  const headers: [string, Buffer][] = [
    ['v1 TCP4', latin1('PROXY TCP4 10.1.2.3 10.0.0.1 40000 8080\r\n')],
    ['v1 TCP6', latin1('PROXY TCP6 2001:db8::7 ::ffff:10.0.0.1 0 65535\r\n')],
    ['v1 UNKNOWN', latin1('PROXY UNKNOWN\r\n')],
    ['v1 UNKNOWN with fields', latin1('PROXY UNKNOWN whatever it says\r\n')],
    ['v2 TCP4', encodeProxyHeader('v2', { family: 4, source: '1.2.3.4', sourcePort: 1, destination: '5.6.7.8', destinationPort: 2 })],
    ['v2 TCP6', encodeProxyHeader('v2', { family: 6, source: '::1', sourcePort: 3, destination: 'fe80::9', destinationPort: 4 })],
    ['v2 LOCAL', encodeProxyLocal('v2')],
    ['v2 TCP4 + TLVs', Buffer.concat([hex(`${SIG} 21 11 001B 01020304 05060708 0001 0002`), tlvs])],
  ];
  // Data in the same buffer as the header: a WebSocket upgrade, which itself contains CRLFs.
  const data = latin1('GET /chat HTTP/1.1\r\nUpgrade: websocket\r\n\r\n');
  for (const [name, header] of headers) {
    t.same(notIncompletePrefixes(header), [], `${name}: every proper prefix is incomplete`);
    const whole = decodeProxyHeader(header);
    t.equal(whole.status, 'ok', `${name}: the whole header is ok`);
    t.equal(whole.status === 'ok' && whole.header.length, header.length, `${name}: length is the header alone`);
    const withData = Buffer.concat([header, data]);
    const r = decodeProxyHeader(withData);
    t.equal(r.status === 'ok' && r.header.length, header.length, `${name}: data after the header is not consumed`);
    t.equal(withData.subarray(header.length).toString('latin1'), data.toString('latin1'));
    // Every cut through the data leaves the header decision unchanged.
    for (let n = header.length; n <= withData.length; n += 7) {
      t.same(decodeProxyHeader(withData.subarray(0, n)), whole, `${name}: with ${n - header.length} data bytes`);
    }
  }
  const v2tlv = decodeProxyHeader(headers[7]![1]);
  t.same(v2tlv.status === 'ok' && v2tlv.header.addresses, {
    family: 4,
    source: '1.2.3.4',
    sourcePort: 1,
    destination: '5.6.7.8',
    destinationPort: 2,
  }, 'TLVs are skipped, the addresses still read');
});

// issue 8 §4: garbage is rejected at once, not after timeouts.proxyHeaderMs.
t.test('garbage is rejected at its first byte; only 0x0D and "P" can start a header', async (t) => {
  const starters: number[] = [];
  for (let byte = 0; byte < 256; byte++) {
    const r = decodeProxyHeader(Buffer.of(byte));
    if (r.status === 'incomplete') starters.push(byte);
    else t.same(r, { status: 'invalid', reason: 'not a PROXY header' }, `first byte 0x${byte.toString(16)}`);
  }
  t.same(starters, [0x0d, 0x50]);
  t.same(decode(''), { status: 'incomplete' }, 'nothing yet is incomplete');
  t.same(rejectedAt(latin1('GET / HTTP/1.1\r\n\r\n')), { prefix: 'G', reason: 'not a PROXY header' });
  t.same(rejectedAt(latin1('SSH-2.0-OpenSSH_9.2\r\n')), { prefix: 'S', reason: 'not a PROXY header' });
  t.same(rejectedAt(hex('16 0301 00F1 01')), { prefix: '\x16', reason: 'not a PROXY header' }, 'a TLS ClientHello');
  t.same(rejectedAt(latin1('POST / HTTP/1.1\r\n')), { prefix: 'PO', reason: 'not a PROXY header' });
  t.same(rejectedAt(latin1('PROXZ TCP4')), { prefix: 'PROXZ', reason: 'not a PROXY header' });
  t.same(rejectedAt(latin1('\r\n\r\nGET')), { prefix: '\r\n\r\nG', reason: 'not a PROXY header' });
  // A v2 signature wrong at any one byte is rejected at that byte.
  const sig = hex(`${SIG} 21 11 000C`);
  const rejectedBytes: number[] = [];
  for (let i = 0; i < 12; i++) {
    const bad = Buffer.from(sig);
    bad[i] ^= 0x01;
    const r = rejectedAt(bad);
    if (r?.reason === 'not a PROXY header') rejectedBytes.push(r.prefix.length);
  }
  t.same(rejectedBytes, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
});

// issue 8 §4: a v1 line without CRLF.
t.test('a v1 line without CRLF is invalid at 107 bytes, not later; a lone CR or LF never ends it', async (t) => {
  const long = latin1(`PROXY UNKNOWN ${'x'.repeat(200)}`);
  t.same(decodeProxyHeader(long.subarray(0, MAX_V1_LENGTH - 1)), { status: 'incomplete' });
  t.same(rejectedAt(long), { prefix: long.toString('latin1', 0, 107), reason: 'v1 line too long' });
  // CRLF must fit in the first 107 bytes: a CR at byte 107 (index 106) is already too late.
  const lateCr = latin1(`PROXY UNKNOWN ${'x'.repeat(92)}\r\n`);
  t.equal(lateCr.length, 108);
  t.same(decodeProxyHeader(lateCr), { status: 'invalid', reason: 'v1 line too long' });
  t.same(decodeProxyHeader(lateCr.subarray(0, 107)), { status: 'invalid', reason: 'v1 line too long' });
  const fits = latin1(`PROXY UNKNOWN ${'x'.repeat(91)}\r\n`);
  t.same(okHeader(decodeProxyHeader(fits)), { version: 'v1', command: 'proxy', addresses: null, length: 107 });
  // Two IPv6 addresses with dotted tails are valid literals but make the line longer than 107.
  const tail = 'ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255';
  t.same(rejectedAt(latin1(`PROXY TCP6 ${tail} ${tail} 65535 65535\r\n`))?.reason, 'v1 line too long');
  t.same(okHeader(decode(`PROXY TCP6 ${tail} ::1 1 2\r\n`)), {
    version: 'v1',
    command: 'proxy',
    addresses: { family: 6, source: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', sourcePort: 1, destination: '::1', destinationPort: 2 },
    length: 11 + tail.length + 10,
  });

  t.same(decode('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n'), { status: 'invalid', reason: 'v1 line not ended by crlf' });
  t.same(decode('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r'), { status: 'incomplete' }, 'a CR waits for its LF');
  t.same(decode('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n'), { status: 'invalid', reason: 'v1 line not ended by crlf' });
  t.same(decode('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX'), { status: 'invalid', reason: 'v1 line not ended by crlf' });
  t.same(decode('PROXY UNKNOWN a\nb\r\n'), { status: 'invalid', reason: 'v1 line not ended by crlf' });
  t.same(decode('PROXY UNKNOWN a\rb\r\n'), { status: 'invalid', reason: 'v1 line not ended by crlf' });
});

// issue 8 §4: v1 with bad ports and addresses.
t.test('v1 fields are strict, and a bad one is rejected at its first impossible byte', async (t) => {
  // [line, the shortest prefix that is invalid, reason]
  const cases: [string, string, string][] = [
    ['PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n', 'PROXY  ', 'v1 empty field'],
    ['PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n', 'PROXY t', 'v1 unknown protocol'],
    ['PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n', 'PROXY TCP5', 'v1 unknown protocol'],
    ['PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n', 'PROXY UD', 'v1 unknown protocol'],
    ['PROXY UNKNOWNX\r\n', 'PROXY UNKNOWNX', 'v1 unknown protocol'],
    ['PROXY TCP4\r\n', 'PROXY TCP4\r', 'v1 missing fields'],
    ['PROXY\r\n', 'PROXY\r', 'v1 missing fields'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n', 'PROXY TCP4 1.2.3.4 5.6.7.8 1\r', 'v1 missing fields'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ', 'v1 too many fields'],
    ['PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n', 'PROXY TCP4 1.2.3.4  ', 'v1 empty field'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 \r', 'v1 empty field'],
    // addresses: IPv4 dotted quads only, of the family named
    ['PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n', 'PROXY TCP4 01', 'v1 bad source address'],
    ['PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n', 'PROXY TCP4 1.2.3.256', 'v1 bad source address'],
    ['PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n', 'PROXY TCP4 1.2.3 ', 'v1 bad source address'],
    ['PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n', 'PROXY TCP4 1.2.3.4.', 'v1 bad source address'],
    ['PROXY TCP4 1..2.3 5.6.7.8 1 2\r\n', 'PROXY TCP4 1..', 'v1 bad source address'],
    ['PROXY TCP4 0x1.2.3.4 5.6.7.8 1 2\r\n', 'PROXY TCP4 0x', 'v1 bad source address'],
    ['PROXY TCP4 ::1 5.6.7.8 1 2\r\n', 'PROXY TCP4 :', 'v1 bad source address'],
    ['PROXY TCP4 1.2.3.4 localhost 1 2\r\n', 'PROXY TCP4 1.2.3.4 l', 'v1 bad destination address'],
    ['PROXY TCP6 1.2.3.4 ::1 1 2\r\n', 'PROXY TCP6 1.', 'v1 bad source address'], // a dotted tail needs six groups before it
    ['PROXY TCP6 ::1 ::1%eth0 1 2\r\n', 'PROXY TCP6 ::1 ::1%', 'v1 bad destination address'],
    ['PROXY TCP6 1:::2 ::1 1 2\r\n', 'PROXY TCP6 1:::', 'v1 bad source address'],
    ['PROXY TCP6 1::2::3 ::1 1 2\r\n', 'PROXY TCP6 1::2::', 'v1 bad source address'],
    ['PROXY TCP6 :1 ::1 1 2\r\n', 'PROXY TCP6 :1', 'v1 bad source address'],
    ['PROXY TCP6 12345:: ::1 1 2\r\n', 'PROXY TCP6 12345', 'v1 bad source address'],
    ['PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n', 'PROXY TCP6 1:2:3:4:5:6:7:8:', 'v1 bad source address'],
    ['PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n', 'PROXY TCP6 1:2:3:4:5:6:7 ', 'v1 bad source address'],
    ['PROXY TCP6 1:2:3:4:5:6:7::8 ::1 1 2\r\n', 'PROXY TCP6 1:2:3:4:5:6:7::8', 'v1 bad source address'],
    ['PROXY TCP6 1:2:3:4:5:1.2.3.4 ::1 1 2\r\n', 'PROXY TCP6 1:2:3:4:5:1.', 'v1 bad source address'],
    ['PROXY TCP6 ::ffff:1.2.3.04 ::1 1 2\r\n', 'PROXY TCP6 ::ffff:1.2.3.04', 'v1 bad source address'],
    ['PROXY TCP6 ::g ::1 1 2\r\n', 'PROXY TCP6 ::g', 'v1 bad source address'],
    // ports: decimal 0-65535, no leading zeros, no signs
    ['PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n', 'PROXY TCP4 1.2.3.4 5.6.7.8 65536', 'v1 bad source port'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n', 'PROXY TCP4 1.2.3.4 5.6.7.8 08', 'v1 bad source port'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n', 'PROXY TCP4 1.2.3.4 5.6.7.8 +', 'v1 bad source port'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n', 'PROXY TCP4 1.2.3.4 5.6.7.8 -', 'v1 bad source port'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 0x50\r\n', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 0x', 'v1 bad destination port'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 100000\r\n', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 100000', 'v1 bad destination port'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 99999', 'v1 bad destination port'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2\t\r\n', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\t', 'v1 bad destination port'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 \xb2\r\n', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 \xb2', 'v1 bad destination port'],
  ];
  for (const [line, prefix, reason] of cases) {
    t.same(rejectedAt(latin1(line)), { prefix, reason }, JSON.stringify(line));
    t.same(decode(line), { status: 'invalid', reason }, `${JSON.stringify(line)}: the whole line gives the same reason`);
  }
});

t.test('v1 accepts every literal form of its family and reports IPv6 canonically', async (t) => {
  const cases: [string, string, string][] = [
    ['TCP4', '0.0.0.0', '0.0.0.0'],
    ['TCP4', '10.200.30.4', '10.200.30.4'],
    ['TCP6', '2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['TCP6', '2001:DB8::A', '2001:db8::a'],
    ['TCP6', '::', '::'],
    ['TCP6', '::1', '::1'],
    ['TCP6', '1::', '1::'],
    ['TCP6', '1:0:0:1:0:0:0:1', '1:0:0:1::1'],
    ['TCP6', '2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['TCP6', '2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['TCP6', '::ffff:1.2.3.4', '::ffff:1.2.3.4'],
    ['TCP6', '::ffff:102:304', '::ffff:1.2.3.4'],
    ['TCP6', '::FFFF:0102:0304', '::ffff:1.2.3.4'],
    ['TCP6', '64:ff9b::1.2.3.4', '64:ff9b::102:304'],
  ];
  for (const [proto, text, canonical] of cases) {
    const r = decode(`PROXY ${proto} ${text} ${text} 0 1\r\n`);
    const a = r.status === 'ok' ? r.header.addresses : null;
    t.same(a && [a.family, a.source, a.destination], [proto === 'TCP4' ? 4 : 6, canonical, canonical], `${proto} ${text}`);
    t.equal(new SocketAddress({ address: text, family: proto === 'TCP4' ? 'ipv4' : 'ipv6' }).address, canonical, `node:net agrees on ${text}`);
  }
});

// issue 8 §4: the v2 length of 65535 (nothing is buffered or allocated by the claimed length).
t.test('v2: a length above the bound is invalid at its 16th byte (the 65535 attack)', async (t) => {
  const bound = MAX_V2_LENGTH - 16;
  t.equal(bound, 4096);
  for (const len of [0xffff, bound + 1]) {
    for (const ver of ['20', '21']) {
      const fixed = hex(`${SIG} ${ver} 11 ${len.toString(16).padStart(4, '0')}`);
      t.same(notIncompletePrefixes(fixed), [], `length ${len}: the first 15 bytes are incomplete`);
      t.same(decodeProxyHeader(fixed), { status: 'invalid', reason: `v2 length ${len} exceeds 4096` }, `command ${ver}, length ${len}`);
    }
  }
  // Exactly at the bound: PROXY TCP4 padded with one NOOP TLV up to 4096 address-block bytes.
  const pad = bound - 12 - 3;
  const atBound = Buffer.concat([hex(`${SIG} 21 11 1000 01020304 05060708 0001 0002 04 ${pad.toString(16).padStart(4, '0')}`), Buffer.alloc(pad)]);
  t.equal(atBound.length, MAX_V2_LENGTH);
  t.equal(decodeProxyHeader(atBound.subarray(0, MAX_V2_LENGTH - 1)).status, 'incomplete');
  const r = decodeProxyHeader(atBound);
  t.equal(r.status === 'ok' && r.header.length, MAX_V2_LENGTH, 'a header of exactly MAX_V2_LENGTH is ok');
  const local = Buffer.concat([hex(`${SIG} 20 00 1000`), Buffer.alloc(bound, 0xab)]);
  t.same(okHeader(decodeProxyHeader(local)), { version: 'v2', command: 'local', addresses: null, length: MAX_V2_LENGTH });
});

t.test('v2: version nibble 2 and commands LOCAL/PROXY only, rejected at byte 13', async (t) => {
  const rejected: string[] = [];
  for (let byte = 0; byte < 256; byte++) {
    const head = Buffer.concat([hex(SIG), Buffer.of(byte)]);
    const r = decodeProxyHeader(head);
    if (r.status === 'invalid') rejected.push(`${byte.toString(16).padStart(2, '0')} ${r.reason}`);
  }
  t.equal(rejected.length, 254, 'only 0x20 and 0x21 pass');
  t.notOk(rejected.some((s) => s.startsWith('20 ') || s.startsWith('21 ')));
  t.ok(rejected.includes('11 unsupported v2 version 1'));
  t.ok(rejected.includes('31 unsupported v2 version 3'));
  t.ok(rejected.includes('22 unsupported v2 command 2'));
  t.ok(rejected.includes('2f unsupported v2 command 15'));
});

// issue 8 §4: v2 LOCAL (and the families that carry no usable address).
t.test('v2: address families — the seven of §2.2 for PROXY, anything for LOCAL', async (t) => {
  const accepted: string[] = [];
  for (let fam = 0; fam < 256; fam++) {
    const byte = fam.toString(16).padStart(2, '0');
    const r = decodeProxyHeader(hex(`${SIG} 21 ${byte}`));
    if (r.status === 'incomplete') accepted.push(byte);
    else t.same(r, { status: 'invalid', reason: `unsupported v2 address family 0x${byte}` });
    t.equal(decodeProxyHeader(hex(`${SIG} 20 ${byte}`)).status, 'incomplete', `LOCAL ignores family 0x${byte}`);
  }
  t.same(accepted, ['00', '11', '12', '21', '22', '31', '32']);

  // Only TCP over IPv4/IPv6 yields addresses; UDP, AF_UNIX and UNSPEC fall back to none.
  const block = (n: number): string => Buffer.alloc(n, 7).toString('hex');
  const noAddresses: [string, string][] = [
    ['UNSPEC', `${SIG} 21 00 0000`],
    ['UNSPEC with bytes', `${SIG} 21 00 0005 ${block(5)}`],
    ['UDP4', `${SIG} 21 12 000C ${block(12)}`],
    ['UDP6', `${SIG} 21 22 0024 ${block(36)}`],
    ['UNIX stream', `${SIG} 21 31 00D8 ${block(216)}`],
    ['UNIX datagram', `${SIG} 21 32 00D8 ${block(216)}`],
  ];
  for (const [name, bytes] of noAddresses) {
    const h = hex(bytes);
    t.same(okHeader(decodeProxyHeader(h)), { version: 'v2', command: 'proxy', addresses: null, length: h.length }, name);
  }
  // LOCAL with a TCP4 block (a sender may present one): the addresses are ignored (§2.2).
  const local4 = hex(`${SIG} 20 11 000C 01020304 05060708 0001 0002`);
  t.same(okHeader(decodeProxyHeader(local4)), { version: 'v2', command: 'local', addresses: null, length: 28 });
});

// issue 8 §4: a v2 address block shorter than its addresses.
t.test('v2: an address block shorter than its family needs is invalid at byte 16', async (t) => {
  const cases: [string, number][] = [
    ['11', 11],
    ['11', 0],
    ['12', 11],
    ['21', 35],
    ['21', 12],
    ['22', 35],
    ['31', 215],
    ['32', 0],
  ];
  for (const [fam, len] of cases) {
    const fixed = hex(`${SIG} 21 ${fam} ${len.toString(16).padStart(4, '0')}`);
    t.same(decodeProxyHeader(fixed), { status: 'invalid', reason: `v2 length ${len} too short for its addresses` }, `0x${fam} length ${len}`);
  }
  t.same(decodeProxyHeader(hex(`${SIG} 20 11 0000`)).status, 'ok', 'LOCAL needs no address block');
});

// issue 8 §4: TLVs.
t.test('v2: TLVs are skipped when they fit and rejected when they overrun, as soon as that shows', async (t) => {
  const addresses = '01020304 05060708 0001 0002';
  const tlvs: [string, string][] = [
    ['one ALPN', '01 0008 687474702F312E31'],
    ['an empty NOOP', '04 0000'],
    ['AUTHORITY then SSL with sub-TLVs', '02 0003 612E62  20 000C 01 00000000 21 0004 5454 4C53'],
    ['unique id of 128 bytes', `05 0080 ${'AB'.repeat(128)}`],
  ];
  for (const [name, tlv] of tlvs) {
    const len = 12 + hex(tlv).length;
    const h = hex(`${SIG} 21 11 ${len.toString(16).padStart(4, '0')} ${addresses} ${tlv}`);
    t.same(notIncompletePrefixes(h), [], `${name}: prefixes incomplete`);
    const r = decodeProxyHeader(h);
    t.same(r.status === 'ok' && [r.header.addresses?.source, r.header.length], ['1.2.3.4', h.length], name);
  }
  // A TLV that claims more than the header holds is rejected once its 3-byte head arrives.
  const overrun = hex(`${SIG} 21 11 0014 ${addresses} 01 0010 6832 0000 0000`);
  t.same(rejectedAt(overrun)?.reason, 'v2 tlv overruns header');
  t.equal(rejectedAt(overrun)?.prefix.length, 16 + 12 + 3, 'at the TLV length, before the header is complete');
  // Fewer than 3 bytes left after the addresses cannot be a TLV.
  t.same(decodeProxyHeader(hex(`${SIG} 21 11 000E ${addresses} 0100`)), { status: 'invalid', reason: 'v2 tlv truncated' });
  t.same(decodeProxyHeader(hex(`${SIG} 21 11 000D ${addresses}`)), { status: 'invalid', reason: 'v2 tlv truncated' }, 'judged from the length alone');
  // IPv6 and AF_UNIX: TLVs start after 36 and 216 address bytes.
  const v6 = hex(`${SIG} 21 21 0027 ${'00'.repeat(36)} 04 0000`);
  const r6 = decodeProxyHeader(v6);
  t.equal(r6.status === 'ok' && r6.header.length, 16 + 39);
  t.same(decodeProxyHeader(hex(`${SIG} 21 31 00DB ${'00'.repeat(216)} 04 0001`)), { status: 'invalid', reason: 'v2 tlv overruns header' });
  // LOCAL and UNSPEC blocks are opaque: nothing in them is read as a TLV.
  t.equal(decodeProxyHeader(hex(`${SIG} 20 11 000E ${addresses} FFFF`)).status, 'ok');
  t.equal(decodeProxyHeader(hex(`${SIG} 21 00 0004 01FFFF00`)).status, 'ok');
});

/** A random IPv6 address: groups often zero (to exercise `::`), sometimes IPv4-mapped. */
function randomIpv6(rand: () => number): { bytes: Buffer; full: string } {
  const bytes = Buffer.alloc(16);
  if (rand() < 0.1) {
    bytes[10] = bytes[11] = 0xff;
    for (let i = 12; i < 16; i++) bytes[i] = Math.floor(rand() * 256);
  } else {
    for (let g = 0; g < 8; g++) {
      const kind = rand();
      const word = kind < 0.45 ? 0 : kind < 0.6 ? Math.floor(rand() * 16) : Math.floor(rand() * 65536);
      bytes.writeUInt16BE(word, g * 2);
    }
  }
  const groups: string[] = [];
  for (let g = 0; g < 8; g++) groups.push(bytes.readUInt16BE(g * 2).toString(16).padStart(4, '0'));
  return { bytes, full: groups.join(':') };
}

/** JSON with a fixed key order, so two headers compare as strings whatever order they were built in. */
const show = (x: unknown): string =>
  JSON.stringify(x, ['status', 'reason', 'version', 'command', 'addresses', 'family', 'source', 'sourcePort', 'destination', 'destinationPort', 'length']);

t.test('decode(encode(x)) round-trips 4000 seeded random connections per version, IPv6 as node:net prints it', async (t) => {
  const rand = prng(0x8a11ce);
  const port = (): number => (rand() < 0.05 ? (rand() < 0.5 ? 0 : 65535) : Math.floor(rand() * 65536));
  const mismatches: string[] = [];
  for (let i = 0; i < 4000; i++) {
    let a: ProxyAddresses;
    if (i % 2 === 0) {
      const ip = (): string => Array.from({ length: 4 }, () => Math.floor(rand() * 256)).join('.');
      a = { family: 4, source: ip(), sourcePort: port(), destination: ip(), destinationPort: port() };
    } else {
      // Written in full 8-group form; expected back in node's canonical form.
      const src = randomIpv6(rand).full;
      const dst = randomIpv6(rand).full;
      a = { family: 6, source: src, sourcePort: port(), destination: dst, destinationPort: port() };
    }
    const canonical = (s: string): string => new SocketAddress({ address: s, family: a.family === 4 ? 'ipv4' : 'ipv6' }).address;
    const expected = { ...a, source: canonical(a.source), destination: canonical(a.destination) };
    for (const version of ['v1', 'v2'] as ProxyVersion[]) {
      const bytes = encodeProxyHeader(version, a);
      const r = decodeProxyHeader(Buffer.concat([bytes, Buffer.from('tail')]));
      const got = show(r.status === 'ok' ? r.header : r);
      const want = show({ version, command: 'proxy', addresses: expected, length: bytes.length });
      if (got !== want) mismatches.push(`${want} -> ${got}`);
      // Re-encoding the decoded addresses gives the same bytes.
      if (r.status === 'ok' && !encodeProxyHeader(version, r.header.addresses!).equals(bytes)) mismatches.push(`re-encode ${JSON.stringify(a)}`);
    }
  }
  t.same(mismatches.slice(0, 5), [], 'no mismatches');
  t.equal(mismatches.length, 0);
});

t.test('once invalid, a buffer stays invalid as bytes are appended (random lines and mutated v2 headers)', async (t) => {
  // The incremental contract: `incomplete` must never hide a line that can no longer become
  // valid, and `invalid` must never be given to a prefix of a valid header.
  const rand = prng(20240608);
  const alphabet = '0123456789abcdefABCDEF:. \r\n%x';
  const pick = (s: string): string => s[Math.floor(rand() * s.length)]!;
  const valid = [
    'PROXY TCP4 10.1.2.3 192.168.100.200 40000 8080\r\n',
    'PROXY TCP6 2001:db8::7 ::ffff:10.0.0.1 0 65535\r\n',
    'PROXY TCP6 1:2:3:4:5:6:7:8 ::1 1 2\r\n',
    'PROXY TCP6 fe80::1:2 1:2:3:4:5:6:1.2.3.4 12 345\r\n',
    'PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n',
  ];
  const violations: string[] = [];
  const outcomes = { ok: 0, invalid: 0 };
  for (let i = 0; i < 8000; i++) {
    // One to three random edits (replace, insert, delete) of a valid line, then some data.
    let s = valid[i % valid.length]!;
    for (let e = Math.floor(rand() * 3); e >= 0; e--) {
      const at = 6 + Math.floor(rand() * (s.length - 6));
      const op = rand();
      s = op < 0.4 ? s.slice(0, at) + pick(alphabet) + s.slice(at + 1) : op < 0.7 ? s.slice(0, at) + pick(alphabet) + s.slice(at) : s.slice(0, at) + s.slice(at + 1);
    }
    const bytes = latin1(`${s}DATA`);
    let invalidAt = -1;
    for (let len = 1; len <= bytes.length; len++) {
      const r = decodeProxyHeader(bytes.subarray(0, len));
      if (r.status === 'ok') {
        if (invalidAt >= 0) violations.push(`${JSON.stringify(s)}: ok at ${len} after invalid at ${invalidAt}`);
        outcomes.ok++;
        break;
      }
      if (r.status === 'invalid' && invalidAt < 0) invalidAt = len;
      if (r.status === 'incomplete' && invalidAt >= 0) violations.push(`${JSON.stringify(s)}: incomplete at ${len} after invalid at ${invalidAt}`);
    }
    if (invalidAt >= 0) outcomes.invalid++;
  }
  // Valid lines built from random IPv6 texts in every notation: no prefix is ever invalid.
  for (let i = 0; i < 3000; i++) {
    const { bytes: ip } = randomIpv6(rand);
    const groups = Array.from({ length: 8 }, (_, g) => ip.readUInt16BE(g * 2).toString(16));
    const forms = [
      groups.join(':'),
      groups.map((g) => g.padStart(4, '0').toUpperCase()).join(':'),
      new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address,
      `${groups.slice(0, 6).join(':')}:${ip[12]}.${ip[13]}.${ip[14]}.${ip[15]}`,
    ];
    const line = latin1(`PROXY TCP6 ${forms[i % 4]} ${forms[(i + 1) % 4]} 1 2\r\n`);
    const bad = notIncompletePrefixes(line);
    if (bad.length > 0 || decodeProxyHeader(line).status !== 'ok') violations.push(`${line.toString('latin1')}: ${bad[0]}`);
  }
  // v2: one random byte changed in a valid header.
  for (let i = 0; i < 3000; i++) {
    const h = Buffer.from(
      i % 2 === 0
        ? encodeProxyHeader('v2', { family: 4, source: '10.0.0.1', sourcePort: 1, destination: '10.0.0.2', destinationPort: 2 })
        : hex(`${SIG} 21 21 002A ${'11'.repeat(36)} 01 0003 616263`),
    );
    h[Math.floor(rand() * h.length)] = Math.floor(rand() * 256);
    let seenInvalid = false;
    for (let len = 1; len <= h.length; len++) {
      const status = decodeProxyHeader(h.subarray(0, len)).status;
      if (status === 'invalid') seenInvalid = true;
      else if (seenInvalid) violations.push(`v2 ${h.toString('hex')}: ${status} at ${len} after invalid`);
    }
  }
  t.same(violations.slice(0, 5), []);
  t.ok(outcomes.ok > 500 && outcomes.invalid > 500, `edited lines ended both ways (${JSON.stringify(outcomes)})`);
});

t.test('encode converts addresses to the family asked for, canonically, and refuses what it cannot send', async (t) => {
  const v1 = (a: ProxyAddresses): string => encodeProxyHeader('v1', a).toString('latin1');
  t.equal(
    v1({ family: 4, source: '::ffff:10.0.0.1', sourcePort: 5, destination: '10.0.0.2', destinationPort: 6 }),
    'PROXY TCP4 10.0.0.1 10.0.0.2 5 6\r\n',
    'an IPv4-mapped address (a dual-stack socket) is sent as IPv4 under family 4',
  );
  t.equal(
    v1({ family: 6, source: '10.0.0.1', sourcePort: 5, destination: '2001:DB8:0:0::1', destinationPort: 6 }),
    'PROXY TCP6 ::ffff:10.0.0.1 2001:db8::1 5 6\r\n',
    'an IPv4 address under family 6 is sent IPv4-mapped; IPv6 in canonical form',
  );
  t.equal(
    v1({ family: 6, source: 'fe80::1%eth0', sourcePort: 5, destination: '::1', destinationPort: 6 }),
    'PROXY TCP6 fe80::1 ::1 5 6\r\n',
    'a zone id is local to this host and not sent',
  );
  t.equal(
    encodeProxyHeader('v2', { family: 6, source: '1.2.3.4', sourcePort: 0, destination: '::', destinationPort: 0 }).toString('hex'),
    hex(`${SIG} 21 21 0024 00000000000000000000FFFF01020304 ${'00'.repeat(16)} 0000 0000`).toString('hex'),
  );
  const base: ProxyAddresses = { family: 4, source: '1.2.3.4', sourcePort: 1, destination: '5.6.7.8', destinationPort: 2 };
  t.throws(() => encodeProxyHeader('v1', { ...base, source: 'example.com' }), new RangeError('example.com: not an IP address'));
  t.throws(() => encodeProxyHeader('v2', { ...base, destination: '2001:db8::1' }), new RangeError('2001:db8::1: not an IPv4 address'));
  t.throws(() => encodeProxyHeader('v1', { ...base, sourcePort: 65536 }), new RangeError('65536: not a port number'));
  t.throws(() => encodeProxyHeader('v2', { ...base, destinationPort: -1 }), new RangeError('-1: not a port number'));
  t.throws(() => encodeProxyHeader('v2', { ...base, destinationPort: 1.5 }), new RangeError('1.5: not a port number'));
});
