// The PROXY protocol, versions 1 and 2 (HAProxy's doc/proxy-protocol.txt): decode the header a
// trusted balancer in front sends, encode the one ringlb sends to backends. Pure: decode reads
// only the bytes it is given, is called again with more bytes appended, and never allocates by a
// length the peer claims. Section numbers below (§2.1, §2.2) are those of proxy-protocol.txt.

import { Buffer } from 'node:buffer';
import { parseIp } from './address.js';

export type ProxyVersion = 'v1' | 'v2';

export interface ProxyAddresses {
  family: 4 | 6;
  source: string;
  sourcePort: number;
  destination: string;
  destinationPort: number;
}

/** A decoded header: `addresses` null for v1 UNKNOWN, v2 LOCAL, v2 UNSPEC/AF_UNIX (use the connection's own address). */
export interface ProxyHeader {
  version: ProxyVersion;
  command: 'proxy' | 'local';
  addresses: ProxyAddresses | null;
  /** Header bytes consumed; whatever follows in the buffer is the client's data. */
  length: number;
}

export type DecodeResult =
  | { status: 'incomplete' }
  | { status: 'invalid'; reason: string }
  | { status: 'ok'; header: ProxyHeader };

/** §2.1: the longest v1 line a receiver must take, CRLF included ("PROXY UNKNOWN" + two full IPv6 + ports). */
export const MAX_V1_LENGTH = 107;
/**
 * The longest v2 header accepted: 16 fixed bytes plus an address block of up to 4096 bytes. That
 * holds the largest address block (AF_UNIX, 216 bytes) and the TLVs balancers send (AWS's VPC
 * endpoint id, SSL TLVs with a DER client certificate of 1-2 KB) with room to spare, while a
 * peer can make a pending connection hold at most one page; the field itself allows 65535.
 */
export const MAX_V2_LENGTH = 16 + 4096;

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_FIXED = 16;
const CR = 0x0d;
const LF = 0x0a;

/**
 * §2.2: the address-family/protocol bytes a receiver must accept, with the address block each
 * needs. Only TCP over IPv4/IPv6 carries addresses ringlb uses; the other valid combinations
 * (UDP, AF_UNIX) fall back to UNSPEC, as §2.2 asks of receivers that do not implement them.
 */
const V2_FAMILIES = new Map<number, number>([
  [0x00, 0], // UNSPEC
  [0x11, 12], // TCP over IPv4
  [0x12, 12], // UDP over IPv4
  [0x21, 36], // TCP over IPv6
  [0x22, 36], // UDP over IPv6
  [0x31, 216], // UNIX stream
  [0x32, 216], // UNIX datagram
]);

const INCOMPLETE: DecodeResult = Object.freeze({ status: 'incomplete' });
const invalid = (reason: string): DecodeResult => ({ status: 'invalid', reason });

/**
 * Decode from the bytes received so far (call again with more bytes appended). Never throws.
 * `invalid` is returned at the first byte that no valid header could continue with, so a
 * prefix of a valid header is always `incomplete` and an invalid buffer stays invalid.
 */
export function decodeProxyHeader(buf: Buffer): DecodeResult {
  if (buf.length === 0) return INCOMPLETE;
  if (buf[0] === V2_SIGNATURE[0]) return decodeV2(buf);
  if (buf[0] === 0x50 /* 'P' */) return decodeV1(buf);
  return invalid('not a PROXY header');
}

// ---- version 1 (§2.1) ----

function decodeV1(buf: Buffer): DecodeResult {
  const limit = Math.min(buf.length, MAX_V1_LENGTH);
  let end = 0;
  while (end < limit && buf[end] !== CR && buf[end] !== LF) end++;
  const terminated = end < limit;
  // latin1 maps each byte to one character, so any non-ASCII byte fails the field checks.
  const line = buf.toString('latin1', 0, end);
  const fields = parseV1Line(line, terminated);
  if (typeof fields === 'string') return invalid(fields);
  if (!terminated) return buf.length >= MAX_V1_LENGTH ? invalid('v1 line too long') : INCOMPLETE;
  // §2.1: a lone CR or LF must not end the line.
  if (buf[end] === LF) return invalid('v1 line not ended by crlf');
  if (end + 2 > MAX_V1_LENGTH) return invalid('v1 line too long');
  if (end + 1 === buf.length) return INCOMPLETE;
  if (buf[end + 1] !== LF) return invalid('v1 line not ended by crlf');
  return { status: 'ok', header: { version: 'v1', command: 'proxy', addresses: fields, length: end + 2 } };
}

/**
 * Check the text of a v1 line (without CRLF). When `complete` is false the last field may still
 * be growing, so it only has to be a prefix of a valid one. Returns a reason, the addresses
 * (null for UNKNOWN), or null for a valid prefix of an unfinished line.
 */
function parseV1Line(line: string, complete: boolean): string | ProxyAddresses | null {
  const f = line.split(' ');
  const closed = (i: number): boolean => complete || i < f.length - 1;
  const check = (i: number, valid: (s: string) => boolean, viable: (s: string) => boolean): boolean => {
    const s = f[i]!;
    return closed(i) ? valid(s) : viable(s);
  };
  if (!check(0, (s) => s === 'PROXY', (s) => 'PROXY'.startsWith(s))) return 'not a PROXY header';
  if (f.length === 1) return complete ? 'v1 missing fields' : null;
  const protocols = ['TCP4', 'TCP6', 'UNKNOWN'];
  if (!check(1, (s) => protocols.includes(s), (s) => protocols.some((p) => p.startsWith(s)))) {
    return f[1] === '' && closed(1) ? 'v1 empty field' : 'v1 unknown protocol';
  }
  // §2.1: for UNKNOWN the receiver ignores everything up to the CRLF.
  if (closed(1) && f[1] === 'UNKNOWN') return null;
  const family = f[1] === 'TCP6' ? 6 : 4;
  const [validIp, viableIp] = family === 4 ? [isIpv4, ipv4Viable] : [isIpv6, ipv6Viable];
  const names = ['source address', 'destination address', 'source port', 'destination port'];
  for (let i = 2; i < f.length; i++) {
    if (i === 6) return 'v1 too many fields';
    if (f[i] === '' && closed(i)) return 'v1 empty field';
    const ok = i < 4 ? check(i, validIp, viableIp) : check(i, (s) => parsePort(s) >= 0, portViable);
    if (!ok) return `v1 bad ${names[i - 2]}`;
  }
  if (!complete) return null;
  if (f.length < 6) return 'v1 missing fields';
  return {
    family,
    source: formatIp(parseIp(f[2]!)!),
    destination: formatIp(parseIp(f[3]!)!),
    sourcePort: parsePort(f[4]!),
    destinationPort: parsePort(f[5]!),
  };
}

/** §2.1: decimal 0-65535, no leading zeros or signs; -1 if not one. */
function parsePort(s: string): number {
  return /^(0|[1-9][0-9]{0,4})$/.test(s) && Number(s) <= 65535 ? Number(s) : -1;
}

function portViable(s: string): boolean {
  return s === '' || parsePort(s) >= 0;
}

function isIpv4(s: string): boolean {
  return !s.includes(':') && parseIp(s) !== null;
}

/** An IPv6 literal as inet_pton takes it; a `%zone` (which parseIp allows) is not an address. */
function isIpv6(s: string): boolean {
  return s.includes(':') && !s.includes('%') && parseIp(s) !== null;
}

/** Can `s` still grow into a dotted quad (four parts 0-255, no leading zeros)? */
function ipv4Viable(s: string): boolean {
  const parts = s.split('.');
  if (parts.length > 4) return false;
  return parts.every(
    (p, i) => /^[0-9]{0,3}$/.test(p) && (p !== '' || i === parts.length - 1) && !/^0[0-9]/.test(p) && Number(p) <= 255,
  );
}

/**
 * Can `s` still grow into an IPv6 literal? Every finished group is 1-4 hex digits; the groups
 * so far, plus the one being written, fit in 8 (7 when `::` stands for at least one zero group);
 * an IPv4 tail counts as two groups and must itself be able to become a dotted quad.
 */
function ipv6Viable(s: string): boolean {
  if (s.length > 45 || !/^[0-9A-Fa-f:.]*$/.test(s)) return false; // 45: six 4-digit groups and a dotted quad
  if (s === ':') return true;
  const halves = s.split('::');
  if (halves.length > 2) return false;
  const groups: string[] = [];
  for (const h of halves) if (h !== '') groups.push(...h.split(':'));
  const open = halves[halves.length - 1] === '' ? null : groups.pop()!;
  if (!groups.every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g))) return false;
  const room = halves.length === 2 ? 7 : 8;
  if (open === null) return groups.length <= room;
  if (open.includes('.')) {
    return ipv4Viable(open) && (halves.length === 2 ? groups.length + 2 <= room : groups.length + 2 === room);
  }
  return /^[0-9A-Fa-f]{0,4}$/.test(open) && groups.length + 1 <= room;
}

// ---- version 2 (§2.2) ----

function decodeV2(buf: Buffer): DecodeResult {
  const signed = Math.min(buf.length, V2_SIGNATURE.length);
  for (let i = 0; i < signed; i++) if (buf[i] !== V2_SIGNATURE[i]) return invalid('not a PROXY header');
  if (buf.length < 13) return INCOMPLETE;
  const version = buf[12]! >> 4;
  const command = buf[12]! & 0x0f;
  if (version !== 2) return invalid(`unsupported v2 version ${version}`);
  if (command > 1) return invalid(`unsupported v2 command ${command}`);
  const local = command === 0;
  if (buf.length < 14) return INCOMPLETE;
  const family = buf[13]!;
  // §2.2: LOCAL ignores the family byte; for PROXY an unlisted one must be rejected.
  const needed = local ? 0 : V2_FAMILIES.get(family);
  if (needed === undefined) return invalid(`unsupported v2 address family 0x${family.toString(16).padStart(2, '0')}`);
  if (buf.length < V2_FIXED) return INCOMPLETE;
  const blockLength = (buf[14]! << 8) | buf[15]!;
  if (blockLength > MAX_V2_LENGTH - V2_FIXED) return invalid(`v2 length ${blockLength} exceeds ${MAX_V2_LENGTH - V2_FIXED}`);
  if (blockLength < needed) return invalid(`v2 length ${blockLength} too short for its addresses`);
  const end = V2_FIXED + blockLength;
  // TLVs follow the addresses when their size is known; LOCAL and UNSPEC blocks are skipped whole.
  if (needed > 0) {
    const bad = checkTlvs(buf, V2_FIXED + needed, end);
    if (bad !== null) return invalid(bad);
  }
  if (buf.length < end) return INCOMPLETE;
  let addresses: ProxyAddresses | null = null;
  if (!local && (family === 0x11 || family === 0x21)) {
    const size = family === 0x11 ? 4 : 16;
    const at = V2_FIXED;
    const ports = at + 2 * size;
    addresses = {
      family: size === 4 ? 4 : 6,
      source: formatIp(buf.subarray(at, at + size)),
      destination: formatIp(buf.subarray(at + size, ports)),
      sourcePort: (buf[ports]! << 8) | buf[ports + 1]!,
      destinationPort: (buf[ports + 2]! << 8) | buf[ports + 3]!,
    };
  }
  return { status: 'ok', header: { version: 'v2', command: local ? 'local' : 'proxy', addresses, length: end } };
}

/**
 * Walk the TLVs in [start, end) over the bytes received so far: each must fit in the header.
 * Returns a reason or null. Bounded: every TLV is at least 3 bytes and end <= MAX_V2_LENGTH.
 */
function checkTlvs(buf: Buffer, start: number, end: number): string | null {
  let at = start;
  while (at < end) {
    if (end - at < 3) return 'v2 tlv truncated';
    if (buf.length < at + 3) return null;
    at += 3 + ((buf[at + 1]! << 8) | buf[at + 2]!);
    if (at > end) return 'v2 tlv overruns header';
  }
  return null;
}

// ---- encoding ----

/**
 * Header bytes to send to a backend: v1 `PROXY TCP4 ...\r\n` / v2 binary PROXY with AF_INET(6)
 * STREAM. Addresses are converted to `a.family` (an IPv4 address under family 6 is sent
 * IPv4-mapped, an IPv4-mapped one under family 4 as IPv4) and written in canonical form.
 * Throws RangeError for an address or port that cannot be sent: a caller's bug, not a peer's.
 */
export function encodeProxyHeader(version: ProxyVersion, a: ProxyAddresses): Buffer {
  const source = addressBytes(a.source, a.family);
  const destination = addressBytes(a.destination, a.family);
  for (const port of [a.sourcePort, a.destinationPort]) {
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`${port}: not a port number`);
  }
  if (version === 'v1') {
    const line = `PROXY TCP${a.family} ${formatIp(source)} ${formatIp(destination)} ${a.sourcePort} ${a.destinationPort}\r\n`;
    return Buffer.from(line, 'latin1');
  }
  const size = source.length;
  const out = Buffer.alloc(V2_FIXED + 2 * size + 4);
  V2_SIGNATURE.copy(out, 0);
  out[12] = 0x21; // version 2, PROXY
  out[13] = size === 4 ? 0x11 : 0x21; // TCP over IPv4 / IPv6
  out.writeUInt16BE(out.length - V2_FIXED, 14);
  out.set(source, V2_FIXED);
  out.set(destination, V2_FIXED + size);
  out.writeUInt16BE(a.sourcePort, V2_FIXED + 2 * size);
  out.writeUInt16BE(a.destinationPort, V2_FIXED + 2 * size + 2);
  return out;
}

/**
 * For health checks: v1 `PROXY UNKNOWN\r\n`, v2 LOCAL with AF_UNSPEC and no addresses (§2.1
 * allows UNKNOWN for connections that relay no client; §2.2 defines LOCAL for health checks).
 */
export function encodeProxyLocal(version: ProxyVersion): Buffer {
  if (version === 'v1') return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  const out = Buffer.alloc(V2_FIXED);
  V2_SIGNATURE.copy(out, 0);
  out[12] = 0x20; // version 2, LOCAL; family UNSPEC and length 0 stay zero
  return out;
}

function addressBytes(text: string, family: 4 | 6): Uint8Array {
  const ip = parseIp(text);
  if (ip === null) throw new RangeError(`${text}: not an IP address`);
  if (family === 6) {
    if (ip.length === 16) return ip;
    const mapped = new Uint8Array(16);
    mapped[10] = mapped[11] = 0xff;
    mapped.set(ip, 12);
    return mapped;
  }
  if (ip.length === 4) return ip;
  const isMapped = ip.subarray(0, 10).every((b) => b === 0) && ip[10] === 0xff && ip[11] === 0xff;
  if (!isMapped) throw new RangeError(`${text}: not an IPv4 address`);
  return ip.slice(12);
}

/**
 * IPv4 as a dotted quad; IPv6 as node:net prints socket addresses (libuv's inet_ntop): lower
 * case, the longest run of two or more zero groups (the first on a tie) as `::` (RFC 5952 §4.2),
 * and a dotted tail for `::a.b.c.d` and IPv4-mapped `::ffff:a.b.c.d`.
 */
function formatIp(ip: Uint8Array): string {
  if (ip.length === 4) return ip.join('.');
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((ip[i]! << 8) | ip[i + 1]!);
  let best = -1;
  let bestLength = 1; // a single zero group is written, not compressed
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      best = i;
      bestLength = j - i;
    }
    i = j;
  }
  const dotted = best === 0 && (bestLength === 6 || (bestLength === 5 && words[5] === 0xffff));
  let out = '';
  for (let i = 0; i < (dotted ? 6 : 8); i++) {
    if (i === best) {
      out += '::';
      i += bestLength - 1;
    } else {
      out += (out === '' || out.endsWith(':') ? '' : ':') + words[i]!.toString(16);
    }
  }
  if (dotted) out += (out.endsWith(':') ? '' : ':') + Array.from(ip.subarray(12)).join('.');
  return out;
}
