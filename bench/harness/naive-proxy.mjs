// The naive Node proxy (issue 13): TCP load balancing written the obvious way, as a peer in
// the benchmark, so that "Node, written in 40 lines" is measured in the same run as ringlb.
// net.createServer, a source-address hash modulo the backends, net.connect and two pipe()
// calls. On a failed connect it tries the next backend (as every peer does with a dead one), so
// the reconnect storm can be measured through it too; nothing else (no health, no limits).
//
// Usage: node naive-proxy.mjs '{"port":P,"backends":[p1,p2,...]}'   (everything on 127.0.0.1)

import net from 'node:net';

const { port, backends } = JSON.parse(process.argv[2]);

/** FNV-1a of the client address: the same client picks the same backend. */
function hash(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

function connect(client, first, tries) {
  const upstream = net.connect({ host: '127.0.0.1', port: backends[(first + tries) % backends.length] });
  upstream.once('connect', () => {
    upstream.removeAllListeners('error');
    upstream.on('error', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  });
  upstream.once('error', () => {
    if (tries + 1 < backends.length && !client.destroyed) connect(client, first, tries + 1);
    else client.destroy();
  });
  client.once('close', () => upstream.destroy());
}

const server = net.createServer({ pauseOnConnect: true }, (client) => {
  client.on('error', () => {});
  connect(client, hash(client.remoteAddress ?? ''), 0);
});
// The default backlog (511), as the obvious program has it.
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
