// Binding a server to host:port, for the proxy listeners and the admin endpoint alike.

import type { Server } from 'node:net';
import { formatHostPort } from './address.js';
import type { ListenConfig } from './config.js';
import { ListenError } from './errors.js';

/** Bind any server (proxy or admin) to host:port, turning a bind failure into a ListenError. */
export function listenOn<S extends Server>(server: S, at: ListenConfig, ipv6Only = false): Promise<S> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new ListenError(formatHostPort(at.host, at.port), describeListenError(err)));
    };
    server.once('error', onError);
    // A large backlog absorbs reconnect storms after a backend failure.
    server.listen({ host: at.host, port: at.port, backlog: 4096, ipv6Only }, () => {
      server.removeListener('error', onError);
      resolve(server);
    });
  });
}

function describeListenError(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'EADDRINUSE':
      return 'address already in use';
    case 'EACCES':
      return 'permission denied (ports below 1024 need privileges)';
    case 'EADDRNOTAVAIL':
      return 'address not available on this machine';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host name not found';
    default:
      return err.message;
  }
}
