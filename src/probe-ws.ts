// The WebSocket health check as bytes: the opening handshake a client sends (RFC 6455 §4.1),
// an incremental verdict on the server's answer (§4.1 client requirements, §4.2.2 accept key),
// and the close frame that ends the check politely (§5.5.1, masked as every client frame must
// be, §5.3). No sockets here: health.ts moves the bytes.

import { createHash } from 'node:crypto';

/** RFC 6455 §1.3: the GUID concatenated to the key before hashing. */
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** A larger answer to an upgrade is not a WebSocket server's (ws sends ~130 bytes). */
export const MAX_RESPONSE_BYTES = 8192;

export interface UpgradeTarget {
  readonly host: string;
  readonly port: number;
  readonly path: string;
  /** Sent as `Host:`; null = the backend's host and port. */
  readonly hostHeader: string | null;
}

/** The value of `Sec-WebSocket-Accept` a server must answer to `key` (base64, as sent). */
export function acceptFor(key: string): string {
  return createHash('sha1').update(key + WS_GUID).digest('base64');
}

/** `host:port` as a Host header writes it: IPv6 in brackets, port 80 left out (RFC 7230 §5.4). */
export function hostHeaderOf(host: string, port: number): string {
  const h = host.includes(':') ? `[${host}]` : host;
  return port === 80 ? h : `${h}:${port}`;
}

/** The opening handshake for `target` with a 16-byte nonce (§4.1: fresh and random per check). */
export function upgradeRequest(target: UpgradeTarget, nonce: Buffer): { request: Buffer; accept: string } {
  if (nonce.length !== 16) throw new RangeError('Sec-WebSocket-Key nonce must be 16 bytes');
  const key = nonce.toString('base64');
  const host = target.hostHeader ?? hostHeaderOf(target.host, target.port);
  const request =
    `GET ${target.path} HTTP/1.1\r\n` +
    `Host: ${host}\r\n` +
    'Upgrade: websocket\r\n' +
    'Connection: Upgrade\r\n' +
    `Sec-WebSocket-Key: ${key}\r\n` +
    'Sec-WebSocket-Version: 13\r\n' +
    '\r\n';
  return { request: Buffer.from(request, 'latin1'), accept: acceptFor(key) };
}

/** A close frame with status 1000 (normal closure), masked with the 4-byte `mask`. */
export function closeFrame(mask: Buffer): Buffer {
  if (mask.length !== 4) throw new RangeError('masking key must be 4 bytes');
  // FIN + opcode 0x8 (close); MASK bit + payload length 2; the key; the status, masked.
  return Buffer.from([0x88, 0x82, mask[0]!, mask[1]!, mask[2]!, mask[3]!, 0x03 ^ mask[0]!, 0xe8 ^ mask[1]!]);
}

export type Verdict =
  | { readonly state: 'incomplete' }
  | { readonly state: 'ok' }
  | { readonly state: 'failed'; readonly reason: string };

const INCOMPLETE: Verdict = { state: 'incomplete' };
const OK: Verdict = { state: 'ok' };
const failed = (reason: string): Verdict => ({ state: 'failed', reason });

const HTTP_PREFIX = Buffer.from('HTTP/', 'latin1');
const END_OF_HEADERS = Buffer.from('\r\n\r\n', 'latin1');
const STATUS_LINE = /^HTTP\/\d\.\d (\d{3})(?: |$)/;
const HEADER_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/;

/**
 * Reads a server's answer to one upgrade request, chunk by chunk, and decides as soon as it can:
 * a wrong service is `not HTTP` from its first bytes; headers end at the first CRLF CRLF within
 * `MAX_RESPONSE_BYTES`. Bytes after the headers (a first frame) are not looked at.
 */
export class UpgradeResponse {
  private buffered: Buffer = Buffer.alloc(0);
  private verdict: Verdict = INCOMPLETE;

  constructor(
    private readonly expectedAccept: string,
    private readonly maxBytes = MAX_RESPONSE_BYTES,
  ) {}

  push(chunk: Buffer): Verdict {
    if (this.verdict.state !== 'incomplete') return this.verdict;
    const searchFrom = Math.max(0, this.buffered.length - 3);
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const prefix = Math.min(this.buffered.length, HTTP_PREFIX.length);
    if (this.buffered.compare(HTTP_PREFIX, 0, prefix, 0, prefix) !== 0) return (this.verdict = failed('not HTTP'));
    const end = this.buffered.indexOf(END_OF_HEADERS, searchFrom);
    if (end === -1 ? this.buffered.length > this.maxBytes : end + END_OF_HEADERS.length > this.maxBytes) {
      return (this.verdict = failed('response too large'));
    }
    if (end === -1) return INCOMPLETE;
    return (this.verdict = this.judge(this.buffered.toString('latin1', 0, end).split('\r\n')));
  }

  private judge(lines: string[]): Verdict {
    const status = STATUS_LINE.exec(lines[0]!);
    if (!status) return failed('not HTTP');
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const header = HEADER_LINE.exec(line);
      if (!header) return failed('not HTTP');
      // A repeated header is a list (RFC 7230 §3.2.2).
      const name = header[1]!.toLowerCase();
      const previous = headers.get(name);
      headers.set(name, previous === undefined ? header[2]! : `${previous}, ${header[2]!}`);
    }
    if (status[1] !== '101') return failed(`status ${status[1]!}`);
    // §4.1 client requirements 2-4: Upgrade is websocket, Connection has the upgrade token.
    const tokens = (name: string): string[] => (headers.get(name) ?? '').toLowerCase().split(',').map((t) => t.trim());
    if (!tokens('upgrade').includes('websocket') || !tokens('connection').includes('upgrade')) return failed('not upgraded');
    const accept = headers.get('sec-websocket-accept');
    if (accept === undefined) return failed('missing accept key');
    if (accept !== this.expectedAccept) return failed('bad accept key');
    return OK;
  }
}
