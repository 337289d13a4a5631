/**
 * The `node-self` row: node:http answering the upstream's response (200 "ok\n", text/plain) itself, no proxy.
 * The floor of node's HTTP server side alone: parse the request (llhttp), build the request/response objects,
 * write the head and body. Usage: node node-self.js UPSTREAM_PORT_IGNORED [PORT]. Prints "listening PORT".
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const body = Buffer.from('ok\n');
const head = ['Content-Type', 'text/plain', 'Content-Length', String(body.length)];
const server = http.createServer((req, res) => {
  req.resume();
  res.writeHead(200, head);
  res.end(body);
});
server.keepAliveTimeout = 75_000;
server.listen(Number(process.argv[3] ?? 0), '127.0.0.1', () => process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`));
process.on('SIGTERM', () => process.exit(0));
