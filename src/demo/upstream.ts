/** The demo's built-in upstreams on 127.0.0.1: a TCP echo server and a small HTTP/1.1 server. */
import { once } from 'node:events';
import http from 'node:http';
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

/** HTTP upstream for the demo's http route: answers every request with a short JSON description of it. */
export async function startDemoHttpUpstream(): Promise<http.Server> {
  let served = 0;
  const server = http.createServer({ keepAlive: true }, (req, res) => {
    req.on('error', () => {});
    req.resume();
    req.on('end', () => {
      served++;
      const body = `${JSON.stringify({ upstream: 'keepalive-sidecar demo', method: req.method, url: req.url, host: req.headers.host, upstreamConnectionPort: req.socket.remotePort, served })}\n`;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 65000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}
