/**
 * The `relay` row: a featureless Node byte relay (net.createServer + net.connect + pipe), one upstream
 * connection per client connection, no HTTP work at all. Under keep-alive HTTP load it is the cost of
 * Node/libuv moving the bytes (two reads, two writes per request, the stream machinery between them): a floor
 * for any Node proxy of these requests. Usage: node relay.js UPSTREAM_PORT [PORT]. Prints "listening PORT".
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';

const upstreamPort = Number(process.argv[2]);
const server = net.createServer((c) => {
  c.setNoDelay(true);
  const u = net.connect({ host: '127.0.0.1', port: upstreamPort, noDelay: true });
  const kill = (): void => {
    c.destroy();
    u.destroy();
  };
  c.on('error', kill).on('close', kill);
  u.on('error', kill).on('close', kill);
  c.pipe(u);
  u.pipe(c);
});
server.listen(Number(process.argv[3] ?? 0), '127.0.0.1', () => process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`));
process.on('SIGTERM', () => process.exit(0));
