// TCP keepalive on both sockets of a pair, read back from the kernel with `ss`. On Linux the
// client socket gets it from the listening socket it was accepted on (set once per listener,
// not per client: issue 13), so this guards that the inheritance really happens.

import { execFileSync } from 'node:child_process';
import t from 'tap';
import { backendEntry, connectFrom, readLine, startBackend, startDaemon } from '../helpers/index.js';

/** `ss` lines of established TCP sockets from `local` to `peer` (host:port each), with timers. */
function sockets(local: string, peer: string): string {
  return execFileSync('ss', ['-tnoH', 'state', 'established', 'src', local, 'dst', peer], { encoding: 'utf8' });
}

const hasSs = (() => {
  try {
    execFileSync('ss', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

t.test('issue 13: the accepted client socket and the backend socket both carry a 30 s keepalive timer', { skip: hasSs ? false : 'ss (iproute2) is not installed' }, async (t) => {
  const backend = await startBackend(t, 'ws-a');
  const { port } = await startDaemon(t, { backends: [backendEntry(backend)] });
  const client = await connectFrom(port, '127.0.13.1');
  t.teardown(() => client.destroy());
  t.equal(await readLine(client), 'ws-a', 'the pair is spliced');
  const clientSide = sockets(`127.0.0.1:${port}`, `127.0.13.1:${client.localPort}`);
  t.match(clientSide, /timer:\(keepalive,(29|30)sec,0\)/, `ringlb's client socket: ${clientSide.trim()}`);
  const [toBackend] = [...backend.sockets];
  const backendSide = sockets(`127.0.0.1:${toBackend!.remotePort}`, `127.0.0.1:${backend.port}`);
  t.match(backendSide, /timer:\(keepalive,(29|30)sec,0\)/, `ringlb's backend socket: ${backendSide.trim()}`);
});
