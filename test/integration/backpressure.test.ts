// A slow reader on one side holds back the other side: the daemon's memory stays flat however
// much the fast side pushes. Measured on a spawned daemon, so only its own RSS counts.

import { createHash } from 'node:crypto';
import { once } from 'node:events';
import net, { type AddressInfo, type Socket } from 'node:net';
import t from 'tap';
import { clientIp, connectFrom, rssOf, spawnDaemon, waitFor } from '../helpers/index.js';

const TOTAL = 128 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 'ringlb');
/**
 * A daemon that buffered what it was sent would grow by ~TOTAL. One that applies backpressure
 * grows only by garbage not yet collected (64 KiB read buffers), which V8 bounds on its own.
 */
const RSS_BOUND = 64 * 1024 * 1024;

/** Bytes the receiving side may absorb (kernel socket buffers both hops, stream buffers) while its reader reads nothing. */
const STALL_BOUND = 32 * 1024 * 1024;

/** Writes TOTAL bytes of CHUNK, honouring backpressure; `accepted` counts what the peer took. */
class Pusher {
  accepted = 0;
  readonly done: Promise<void>;
  constructor(socket: Socket) {
    this.done = (async () => {
      for (let sent = 0; sent < TOTAL; sent += CHUNK.length) {
        if (!socket.write(CHUNK)) await once(socket, 'drain');
        this.accepted += CHUNK.length;
      }
      socket.end();
    })();
  }
}

/** Resolves once `pusher.accepted` has not changed for 10 polls in a row: the writer is held back. */
async function stalled(pusher: Pusher): Promise<void> {
  let last = -1;
  let still = 0;
  await waitFor(() => {
    still = pusher.accepted === last ? still + 1 : 0;
    last = pusher.accepted;
    return still >= 10;
  }, 'the writer to be held back', 20_000);
}

/** Read everything from `socket` slowly (a 5 ms pause after every MiB); resolves with count and digest. */
function drainSlowly(socket: Socket): Promise<{ bytes: number; digest: string }> {
  return new Promise((resolve) => {
    const hash = createHash('sha256');
    let bytes = 0;
    let sincePause = 0;
    socket.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
      sincePause += chunk.length;
      if (sincePause >= 1024 * 1024) {
        sincePause = 0;
        socket.pause();
        setTimeout(() => socket.resume(), 5);
      }
    });
    socket.on('end', () => resolve({ bytes, digest: hash.digest('hex') }));
  });
}

function expectedDigest(): string {
  const hash = createHash('sha256');
  for (let sent = 0; sent < TOTAL; sent += CHUNK.length) hash.update(CHUNK);
  return hash.digest('hex');
}

/** Sample the daemon's RSS every 20 ms until `done` settles; resolves with the peak. */
async function peakRss(pid: number, done: Promise<unknown>): Promise<number> {
  let peak = rssOf(pid);
  let finished = false;
  void done.finally(() => (finished = true));
  while (!finished) {
    peak = Math.max(peak, rssOf(pid));
    await new Promise((r) => setTimeout(r, 20));
  }
  return peak;
}

for (const direction of ['to_backend', 'to_client'] as const) {
  t.test(`128 MiB pushed ${direction} into a slow reader: byte-exact, daemon RSS stays flat`, async (t) => {
    const backendSockets: Socket[] = [];
    const backend = net.createServer({ allowHalfOpen: true }, (s) => backendSockets.push(s));
    backend.listen(0, '127.0.0.1');
    await once(backend, 'listening');
    t.teardown(() => {
      for (const s of backendSockets) s.destroy();
      backend.close();
    });
    const daemon = await spawnDaemon(t, {
      listen: { host: '127.0.0.1', port: 0 },
      metrics: { host: '127.0.0.1', port: 0 },
      backends: [{ id: 'slow', host: '127.0.0.1', port: (backend.address() as AddressInfo).port }],
      healthCheck: { type: 'none' },
    });
    const pid = daemon.child.pid!;
    const baseline = rssOf(pid);
    const client = await connectFrom(daemon.port, clientIp(9000));
    await waitFor(() => backendSockets.length === 1, 'the backend connection');
    const [writer, reader] = direction === 'to_backend' ? [client, backendSockets[0]!] : [backendSockets[0]!, client];
    // Phase 1: the reader reads nothing. The writer must be held back after a bounded amount.
    const pusher = new Pusher(writer);
    await stalled(pusher);
    t.ok(
      pusher.accepted < STALL_BOUND,
      `with the reader stopped, the writer could push only ${(pusher.accepted / 1048576).toFixed(1)} MiB of ${TOTAL / 1048576}`,
    );
    // Phase 2: the reader reads slowly; everything arrives and the daemon's memory stays bounded.
    const received = drainSlowly(reader);
    const peak = await peakRss(pid, Promise.all([pusher.done, received]));
    const got = await received;
    t.equal(got.bytes, TOTAL, 'every byte arrived');
    t.equal(got.digest, expectedDigest(), 'in order, unchanged');
    t.ok(
      peak - baseline < RSS_BOUND,
      `daemon RSS grew by ${((peak - baseline) / 1048576).toFixed(1)} MiB while ${TOTAL / 1048576} MiB passed (bound ${RSS_BOUND / 1048576} MiB)`,
    );
    client.destroy();
    for (const s of backendSockets) s.destroy();
    daemon.child.kill('SIGTERM');
    t.equal((await daemon.exited).code, 0, 'the daemon exits 0 on SIGTERM');
  });
}
