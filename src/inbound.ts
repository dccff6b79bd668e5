// The inbound stage: on a listener behind another balancer (`listen[].acceptProxy`), only the
// trusted ranges may connect, and each connection must start with a PROXY header (v1 or v2,
// detected) within timeouts.proxyHeaderMs. The header is read from the paused client and the
// client is paused again right after it: bytes that followed it, even in the same segment, are
// put back in front of the socket's buffer, so the backend receives them first and intact.

import net, { BlockList, type Socket } from 'node:net';
import type { ListenerConfig } from './config.js';
import { decodeProxyHeader, type ProxyHeader } from './proxy-protocol.js';

/** What a proxy listener needs per connection; replaced whole by a reload. */
export interface ListenerPolicy {
  readonly config: ListenerConfig;
  /** The trusted ranges; null = not behind a balancer. */
  readonly trusted: BlockList | null;
}

export function listenerPolicy(config: ListenerConfig): ListenerPolicy {
  if (config.acceptProxy === null) return { config, trusted: null };
  const trusted = new BlockList();
  for (const cidr of config.acceptProxy) {
    const slash = cidr.indexOf('/');
    const address = cidr.slice(0, slash);
    const type = net.isIPv6(address) ? 'ipv6' : 'ipv4';
    trusted.addSubnet(address, Number(cidr.slice(slash + 1)), type);
  }
  return { config, trusted };
}

const MAPPED = '::ffff:';

/** Whether `address` (as a socket reports it) is in `list`; IPv4-mapped IPv6 is checked as IPv4. */
export function isTrusted(list: BlockList, address: string): boolean {
  if (address.startsWith(MAPPED) && net.isIPv4(address.slice(MAPPED.length))) {
    return list.check(address.slice(MAPPED.length), 'ipv4');
  }
  return list.check(address, net.isIPv6(address) ? 'ipv6' : 'ipv4');
}

/** The header, or why there is none (a short phrase for the log). */
export type HeaderDone = (header: ProxyHeader | null, problem: string) => void;

interface Reading {
  received: Buffer | null;
  readonly timer: NodeJS.Timeout;
  readonly done: HeaderDone;
}

const kReading = Symbol('ringlb.proxyHeader');
interface ReadingSocket extends Socket {
  [kReading]?: Reading | null;
}

/**
 * Read a PROXY header from the paused `socket` within `timeoutMs`; `done` is called once,
 * unless the caller destroys the socket first. On success the socket is paused again.
 */
export function readProxyHeader(socket: Socket, timeoutMs: number, done: HeaderDone): void {
  const s = socket as ReadingSocket;
  s[kReading] = { received: null, timer: setTimeout(onHeaderTimeout, timeoutMs, s).unref(), done };
  s.on('data', onHeaderData);
  s.on('end', onHeaderEnd);
  s.on('close', onHeaderEnd);
  s.resume();
}

function finish(socket: ReadingSocket, header: ProxyHeader | null, problem: string, rest: Buffer | null): void {
  const reading = socket[kReading];
  if (!reading) return;
  socket[kReading] = null;
  clearTimeout(reading.timer);
  socket.pause();
  socket.removeListener('data', onHeaderData);
  socket.removeListener('end', onHeaderEnd);
  socket.removeListener('close', onHeaderEnd);
  if (rest !== null && rest.length > 0) socket.unshift(rest);
  reading.done(header, problem);
}

function onHeaderData(this: ReadingSocket, chunk: Buffer): void {
  const reading = this[kReading]!;
  // The decoder bounds the length, so `received` never grows past one header and one chunk.
  const received = reading.received === null ? chunk : Buffer.concat([reading.received, chunk]);
  reading.received = received;
  const result = decodeProxyHeader(received);
  if (result.status === 'incomplete') return;
  if (result.status === 'invalid') finish(this, null, result.reason, null);
  else finish(this, result.header, '', received.subarray(result.header.length));
}

function onHeaderEnd(this: ReadingSocket): void {
  finish(this, null, 'connection closed before a complete PROXY header', null);
}

function onHeaderTimeout(socket: ReadingSocket): void {
  finish(socket, null, 'no complete PROXY header in time', null);
}
