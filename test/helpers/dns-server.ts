// A small authoritative DNS server for tests, on 127.0.0.1 (UDP and TCP on one port, as a
// resolver expects): A, AAAA and SRV records the test changes while it runs, NXDOMAIN for
// unknown names, and a switch that makes it stop answering. The wire format is dns-packet's;
// nothing here mocks node:dns. A UDP answer longer than 512 bytes is sent truncated (TC), so the
// client asks again over TCP (RFC 1035 §4.2.1, RFC 7766).

import dgram from 'node:dgram';
import { once } from 'node:events';
import net, { type AddressInfo, type Socket } from 'node:net';
import dnsPacket, { type Answer, type Packet, type Question } from 'dns-packet';
import type { Test } from 'tap';

export interface SrvTarget {
  readonly target: string;
  readonly port: number;
  readonly priority?: number;
  readonly weight?: number;
}

export interface DnsRecords {
  readonly A?: readonly string[];
  readonly AAAA?: readonly string[];
  readonly SRV?: readonly SrvTarget[];
}

export interface TestDnsServer {
  readonly port: number;
  /** For Resolver.setServers / dns.servers. */
  readonly server: string;
  /** Replace a name's records; null removes the name (NXDOMAIN). */
  set(name: string, records: DnsRecords | null): void;
  /** true: every query is read and dropped, as a dead or firewalled server does. */
  silent: boolean;
  /** Queries received, by transport and name (`udp A pool.test`). */
  readonly queries: string[];
  close(): Promise<void>;
}

const UDP_LIMIT = 512;

function answersFor(records: DnsRecords, q: Question): Answer[] {
  const base = { name: q.name, ttl: 0, class: 'IN' as const };
  switch (q.type) {
    case 'A':
      return (records.A ?? []).map((data) => ({ ...base, type: 'A' as const, data }));
    case 'AAAA':
      return (records.AAAA ?? []).map((data) => ({ ...base, type: 'AAAA' as const, data }));
    case 'SRV':
      return (records.SRV ?? []).map((r) => ({
        ...base,
        type: 'SRV' as const,
        data: { target: r.target, port: r.port, priority: r.priority ?? 10, weight: r.weight ?? 10 },
      }));
    default:
      return [];
  }
}

export async function startDnsServer(t: Test, initial: Record<string, DnsRecords> = {}): Promise<TestDnsServer> {
  const zone = new Map<string, DnsRecords>(Object.entries(initial).map(([k, v]) => [k.toLowerCase(), v]));
  const queries: string[] = [];
  const state = { silent: false };

  const respond = (query: Packet, transport: 'udp' | 'tcp'): Buffer | null => {
    const q = query.questions?.[0];
    if (!q) return null;
    queries.push(`${transport} ${q.type} ${q.name}`);
    if (state.silent) return null;
    const records = zone.get(q.name.toLowerCase());
    // Flags: authoritative, recursion desired echoed; rcode 3 = NXDOMAIN (RFC 1035 §4.1.1).
    const rd = (query.flags ?? 0) & dnsPacket.RECURSION_DESIRED;
    const flags = dnsPacket.AUTHORITATIVE_ANSWER | rd | (records ? 0 : 3);
    const answers = records ? answersFor(records, q) : [];
    const full = dnsPacket.encode({ type: 'response', id: query.id ?? 0, flags, questions: [q], answers });
    if (transport === 'tcp' || full.length <= UDP_LIMIT) return full;
    return dnsPacket.encode({ type: 'response', id: query.id ?? 0, flags: flags | dnsPacket.TRUNCATED_RESPONSE, questions: [q], answers: [] });
  };

  // One port for both transports: bind UDP on port 0, then TCP on the same number (retry if taken).
  let udp: dgram.Socket;
  let tcp: net.Server;
  for (;;) {
    udp = dgram.createSocket('udp4');
    udp.bind(0, '127.0.0.1');
    await once(udp, 'listening');
    tcp = net.createServer();
    const port = udp.address().port;
    const listening = once(tcp, 'listening').then(() => true, () => false);
    tcp.once('error', () => {});
    tcp.listen(port, '127.0.0.1');
    if (await listening) break;
    udp.close();
  }

  udp.on('message', (msg, rinfo) => {
    let query: Packet;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const reply = respond(query, 'udp');
    if (reply) udp.send(reply, rinfo.port, rinfo.address);
  });

  const sockets = new Set<Socket>();
  tcp.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    // RFC 1035 §4.2.2: each message is preceded by its 2-byte length.
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const length = pending.readUInt16BE(0);
        const message = pending.subarray(2, 2 + length);
        pending = pending.subarray(2 + length);
        const reply = respond(dnsPacket.decode(message), 'tcp');
        if (reply) socket.write(Buffer.concat([Buffer.from([reply.length >> 8, reply.length & 0xff]), reply]));
      }
    });
  });

  const port = (tcp.address() as AddressInfo).port;
  let closed = false;
  const server: TestDnsServer = {
    port,
    server: `127.0.0.1:${port}`,
    set: (name, records) => {
      if (records === null) zone.delete(name.toLowerCase());
      else zone.set(name.toLowerCase(), records);
    },
    get silent() {
      return state.silent;
    },
    set silent(value: boolean) {
      state.silent = value;
    },
    queries,
    close: async () => {
      if (closed) return;
      closed = true;
      for (const s of sockets) s.destroy();
      await Promise.all([new Promise<void>((r) => udp.close(() => r())), new Promise<void>((r) => tcp.close(() => r()))]);
    },
  };
  t.teardown(() => server.close());
  return server;
}
