/** Binding a listener's server: one helper for the tcp, http and h2 listeners. */
import { once } from 'node:events';
import type { AddressInfo, Server } from 'node:net';
import type { HostPort } from '../config/index.js';

/** Listens on `at` (port 0 = a free port) and resolves with the bound address; a bind error rejects. */
export async function listenOn(server: Server, at: HostPort): Promise<AddressInfo> {
  server.listen(at.port, at.host);
  await Promise.race([
    once(server, 'listening'),
    once(server, 'error').then(([err]) => {
      throw err;
    }),
  ]);
  return server.address() as AddressInfo;
}
