/** The demo's built-in upstream: a TCP echo server on 127.0.0.1 that greets each connection. */
import { once } from 'node:events';
import net from 'node:net';

export async function startDemoUpstream(): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.write('hello from the demo upstream; I echo what you send\n');
    s.pipe(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}
