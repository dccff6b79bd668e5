// Client addresses as bytes: parse IPv4/IPv6 text, fold IPv4-mapped IPv6 into IPv4, and
// mask to a prefix. Pure; node:net is deliberately not imported (the core does no I/O).
// The result is the routing key: 4 bytes for IPv4, 16 bytes for IPv6.

/** Parse dotted-quad IPv4 (no leading zeros, no shorthand) into `out` at `offset`. */
function parseIpv4Into(text: string, out: Uint8Array, offset: number): boolean {
  let part = 0;
  let digits = 0;
  let value = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 46; // a virtual '.' closes the last part
    if (c === 46) {
      if (digits === 0 || part > 3) return false;
      out[offset + part++] = value;
      digits = 0;
      value = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits === 1 && value === 0) return false; // "01" is ambiguous (octal in some parsers)
      value = value * 10 + (c - 48);
      if (++digits > 3 || value > 255) return false;
    } else {
      return false;
    }
  }
  return part === 4;
}

/** Parse one hex group of 1-4 digits; -1 if it is not one. */
function parseHexGroup(text: string): number {
  if (text.length === 0 || text.length > 4) return -1;
  let value = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    let d: number;
    if (c >= 48 && c <= 57) d = c - 48;
    else if (c >= 97 && c <= 102) d = c - 87;
    else if (c >= 65 && c <= 70) d = c - 55;
    else return -1;
    value = value * 16 + d;
  }
  return value;
}

/** Parse RFC 4291 text (with `::`, an embedded IPv4 tail and an optional `%zone`) into 16 bytes. */
function parseIpv6(text: string): Uint8Array | null {
  const zone = text.indexOf('%');
  if (zone !== -1) {
    if (!/^[A-Za-z0-9_.-]+$/.test(text.slice(zone + 1))) return null; // interface name or index
    text = text.slice(0, zone);
  }
  const out = new Uint8Array(16);
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] === '' ? [] : halves[0]!.split(':');
  const tail = halves.length === 2 ? (halves[1] === '' ? [] : halves[1]!.split(':')) : [];
  const groups: number[] = [];
  // The embedded IPv4 tail (::ffff:1.2.3.4) is only allowed as the very last piece.
  const all = halves.length === 2 ? tail : head;
  const last = all[all.length - 1];
  let v4Tail: Uint8Array | null = null;
  if (last !== undefined && last.includes('.')) {
    v4Tail = new Uint8Array(4);
    if (!parseIpv4Into(last, v4Tail, 0)) return null;
    all.pop();
  }
  for (const g of head) {
    const v = parseHexGroup(g);
    if (v < 0) return null;
    groups.push(v);
  }
  const tailGroups: number[] = [];
  for (const g of tail) {
    const v = parseHexGroup(g);
    if (v < 0) return null;
    tailGroups.push(v);
  }
  const used = groups.length + tailGroups.length + (v4Tail ? 2 : 0);
  if (halves.length === 2) {
    if (used > 7) return null; // '::' stands for at least one zero group
    for (let i = used; i < 8; i++) groups.push(0);
    groups.push(...tailGroups);
  } else if (used !== 8) {
    return null;
  }
  for (let i = 0; i < groups.length && i < 8; i++) {
    out[i * 2] = groups[i]! >> 8;
    out[i * 2 + 1] = groups[i]! & 0xff;
  }
  if (v4Tail) out.set(v4Tail, 12);
  return out;
}

/**
 * Parse an IP address as text into its bytes: 4 for IPv4, 16 for IPv6 (not yet normalised:
 * see `clientKey`). Returns null for anything that is not an IP address.
 */
export function parseIp(text: string): Uint8Array | null {
  if (text.includes(':')) return parseIpv6(text);
  const out = new Uint8Array(4);
  return parseIpv4Into(text, out, 0) ? out : null;
}

/** True when 16 bytes are an IPv4-mapped IPv6 address (::ffff:a.b.c.d). */
function isV4Mapped(ip: Uint8Array): boolean {
  if (ip.length !== 16 || ip[10] !== 0xff || ip[11] !== 0xff) return false;
  for (let i = 0; i < 10; i++) if (ip[i] !== 0) return false;
  return true;
}

/** Zero every bit after the first `prefix` bits, in place. */
function maskInPlace(ip: Uint8Array, prefix: number): Uint8Array {
  for (let i = 0; i < ip.length; i++) {
    const keep = prefix - i * 8;
    if (keep >= 8) continue;
    ip[i] = keep <= 0 ? 0 : ip[i]! & (0xff << (8 - keep));
  }
  return ip;
}

/**
 * The routing key of a client address: IPv4-mapped IPv6 becomes IPv4, then the address is
 * masked to `ipv4Prefix` or `ipv6Prefix` bits. Returns a new array; `ip` is not changed.
 */
export function clientKey(ip: Uint8Array, ipv4Prefix: number, ipv6Prefix: number): Uint8Array {
  if (isV4Mapped(ip)) return maskInPlace(ip.slice(12, 16), ipv4Prefix);
  return maskInPlace(ip.slice(), ip.length === 4 ? ipv4Prefix : ipv6Prefix);
}

/** Format key bytes back as text (IPv4 dotted quad, IPv6 as 8 full hex groups); for logs and tests. */
export function formatKey(key: Uint8Array): string {
  if (key.length === 4) return key.join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((key[i]! << 8) | key[i + 1]!).toString(16));
  return groups.join(':');
}

/** `host:port`, with an IPv6 host in brackets: for ids, logs and errors. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
