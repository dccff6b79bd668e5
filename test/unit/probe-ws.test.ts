// The WebSocket health check's bytes (src/probe-ws.ts) against RFC 6455: the §1.3/§4.2.2 example
// key, the exact request of §4.1, every way an answer fails (issue 10 item 1: `status 503`,
// `bad accept key`, `not HTTP`, `response too large`), answers split at every byte, header names
// in any case, and the masked close frame of §5.5.1.
import t from 'tap';
import { acceptFor, closeFrame, MAX_RESPONSE_BYTES, upgradeRequest, UpgradeResponse, type Verdict } from '../../src/probe-ws.js';

// RFC 6455 §1.3: the sample nonce "the sample nonce" base64-encoded, and its accept value.
const RFC_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const RFC_ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';
const RFC_NONCE = Buffer.from(RFC_KEY, 'base64');

const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');
const answer = (...lines: string[]): Buffer => latin1(`${lines.join('\r\n')}\r\n\r\n`);
const GOOD = answer('HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${RFC_ACCEPT}`);

function verdictOf(bytes: Buffer, accept = RFC_ACCEPT): Verdict {
  return new UpgradeResponse(accept).push(bytes);
}

t.test('the accept value of the RFC 6455 example key', async (t) => {
  t.equal(acceptFor(RFC_KEY), RFC_ACCEPT);
});

t.test('the upgrade request, byte for byte', async (t) => {
  const { request, accept } = upgradeRequest({ host: '10.0.0.11', port: 9000, path: '/health?x=1', hostHeader: null }, RFC_NONCE);
  t.equal(
    request.toString('latin1'),
    'GET /health?x=1 HTTP/1.1\r\n' +
      'Host: 10.0.0.11:9000\r\n' +
      'Upgrade: websocket\r\n' +
      'Connection: Upgrade\r\n' +
      `Sec-WebSocket-Key: ${RFC_KEY}\r\n` +
      'Sec-WebSocket-Version: 13\r\n' +
      '\r\n',
  );
  t.equal(accept, RFC_ACCEPT, 'the accept value expected for this request');
});

t.test('the Host header: hostHeader wins; IPv6 in brackets; port 80 left out', async (t) => {
  const host = (target: Parameters<typeof upgradeRequest>[0]): string =>
    /\r\nHost: ([^\r]*)\r\n/.exec(upgradeRequest(target, RFC_NONCE).request.toString('latin1'))![1]!;
  t.equal(host({ host: '10.0.0.11', port: 9000, path: '/', hostHeader: 'chat.example.com' }), 'chat.example.com');
  t.equal(host({ host: '2001:db8::7', port: 9000, path: '/', hostHeader: null }), '[2001:db8::7]:9000');
  t.equal(host({ host: 'ws-a.internal', port: 80, path: '/', hostHeader: null }), 'ws-a.internal');
});

t.test('a fresh nonce gives a fresh key; a nonce must be 16 bytes', async (t) => {
  const target = { host: '127.0.0.1', port: 1, path: '/', hostHeader: null };
  const a = upgradeRequest(target, Buffer.alloc(16, 1));
  const b = upgradeRequest(target, Buffer.alloc(16, 2));
  t.not(a.accept, b.accept);
  t.match(a.request.toString('latin1'), '\r\nSec-WebSocket-Key: AQEBAQEBAQEBAQEBAQEBAQ==\r\n');
  t.throws(() => upgradeRequest(target, Buffer.alloc(15)), RangeError);
});

t.test('a 101 with the right accept key is ok', async (t) => {
  t.same(verdictOf(GOOD), { state: 'ok' });
});

t.test('split at every byte: incomplete until the last byte, then ok', async (t) => {
  const bad: string[] = [];
  for (let cut = 1; cut < GOOD.length; cut++) {
    const r = new UpgradeResponse(RFC_ACCEPT);
    const first = r.push(GOOD.subarray(0, cut));
    const second = r.push(GOOD.subarray(cut));
    if (first.state !== 'incomplete' || second.state !== 'ok') bad.push(`${cut}: ${JSON.stringify([first, second])}`);
  }
  t.same(bad, []);
  const r = new UpgradeResponse(RFC_ACCEPT);
  const verdicts = [...GOOD].map((byte) => r.push(Buffer.from([byte])).state);
  t.same(verdicts.slice(0, -1), new Array(GOOD.length - 1).fill('incomplete'), 'byte by byte');
  t.equal(verdicts.at(-1), 'ok');
});

t.test('the verdict is final: bytes after the headers (a first frame) change nothing', async (t) => {
  const r = new UpgradeResponse(RFC_ACCEPT);
  t.same(r.push(Buffer.concat([GOOD, Buffer.from([0x81, 0x02, 0x68, 0x69])])), { state: 'ok' });
  t.same(r.push(latin1('garbage')), { state: 'ok' });
  const f = new UpgradeResponse(RFC_ACCEPT);
  t.same(f.push(latin1('SSH-2.0')), { state: 'failed', reason: 'not HTTP' });
  t.same(f.push(GOOD), { state: 'failed', reason: 'not HTTP' });
});

t.test('a status other than 101 fails with the status', async (t) => {
  t.same(verdictOf(answer('HTTP/1.1 503 Service Unavailable', 'Content-Length: 0')), { state: 'failed', reason: 'status 503' });
  t.same(verdictOf(answer('HTTP/1.1 200 OK', `Sec-WebSocket-Accept: ${RFC_ACCEPT}`)), { state: 'failed', reason: 'status 200' });
  t.same(verdictOf(answer('HTTP/1.0 404')), { state: 'failed', reason: 'status 404' }, 'a status line without a reason phrase');
});

t.test('a missing or incorrect accept key fails', async (t) => {
  t.same(verdictOf(answer('HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade')), {
    state: 'failed',
    reason: 'missing accept key',
  });
  t.same(verdictOf(GOOD, acceptFor('AQEBAQEBAQEBAQEBAQEBAQ==')), { state: 'failed', reason: 'bad accept key' }, 'the accept of another key');
  const lowercased = answer('HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${RFC_ACCEPT.toLowerCase()}`);
  t.same(verdictOf(lowercased), { state: 'failed', reason: 'bad accept key' }, 'base64 is case-sensitive');
});

t.test('a 101 that does not upgrade to websocket fails', async (t) => {
  const accept = `Sec-WebSocket-Accept: ${RFC_ACCEPT}`;
  t.same(verdictOf(answer('HTTP/1.1 101 Switching Protocols', 'Upgrade: h2c', 'Connection: Upgrade', accept)), { state: 'failed', reason: 'not upgraded' });
  t.same(verdictOf(answer('HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', accept)), { state: 'failed', reason: 'not upgraded' });
});

t.test('header names and the Upgrade/Connection tokens in any case; values trimmed; lists', async (t) => {
  const mixed = answer(
    'HTTP/1.1 101 Switching Protocols',
    'UPGRADE: WebSocket',
    'connection: keep-alive, UPGRADE',
    `sec-websocket-ACCEPT:   ${RFC_ACCEPT}  `,
  );
  t.same(verdictOf(mixed), { state: 'ok' });
  const repeated = answer('HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: keep-alive', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${RFC_ACCEPT}`);
  t.same(verdictOf(repeated), { state: 'ok' }, 'a repeated Connection header is one list');
});

t.test('a wrong service is not HTTP from its first bytes', async (t) => {
  t.same(verdictOf(latin1('ws-a\n')), { state: 'failed', reason: 'not HTTP' }, "the test backends' greeting");
  t.same(verdictOf(latin1('H')), { state: 'incomplete' }, 'a prefix of HTTP/ waits');
  t.same(verdictOf(latin1('HTTX')), { state: 'failed', reason: 'not HTTP' });
  t.same(verdictOf(answer('HTTP/1.1 1O1 Switching Protocols')), { state: 'failed', reason: 'not HTTP' }, 'a status that is not 3 digits');
  t.same(verdictOf(answer('HTTP/1.1 101 Switching Protocols', 'no colon here')), { state: 'failed', reason: 'not HTTP' }, 'a header line without a name');
});

t.test('answers are bounded: no end of headers within the limit is too large', async (t) => {
  const r = new UpgradeResponse(RFC_ACCEPT);
  t.same(r.push(latin1('HTTP/1.1 101 Switching Protocols\r\n')), { state: 'incomplete' });
  const filler = latin1(`X-Filler: ${'a'.repeat(1000)}\r\n`);
  let v: Verdict = { state: 'incomplete' };
  let pushes = 0;
  while (v.state === 'incomplete' && pushes < 100) {
    v = r.push(filler);
    pushes++;
  }
  t.same(v, { state: 'failed', reason: 'response too large' });
  t.equal(pushes, Math.ceil((MAX_RESPONSE_BYTES - 34) / filler.length), 'decided at the first push past the limit');
  const exact = answer('HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${RFC_ACCEPT}`);
  t.same(new UpgradeResponse(RFC_ACCEPT, exact.length).push(exact), { state: 'ok' }, 'headers of exactly the limit pass');
  t.same(new UpgradeResponse(RFC_ACCEPT, exact.length - 1).push(exact), { state: 'failed', reason: 'response too large' }, 'one byte more fails');
});

t.test('the close frame: FIN+close, masked, status 1000 (RFC 6455 §5.5.1)', async (t) => {
  const frame = closeFrame(Buffer.from([0x37, 0xfa, 0x21, 0x3d]));
  t.equal(frame.toString('hex'), '888237fa213d' + (0x03 ^ 0x37).toString(16).padStart(2, '0') + (0xe8 ^ 0xfa).toString(16).padStart(2, '0'));
  const unmasked = [frame[6]! ^ frame[2]!, frame[7]! ^ frame[3]!];
  t.equal((unmasked[0]! << 8) | unmasked[1]!, 1000, 'the status unmasks to 1000');
  t.throws(() => closeFrame(Buffer.alloc(3)), RangeError);
});
