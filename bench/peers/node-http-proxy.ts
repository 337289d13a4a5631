/**
 * The node-http-proxy row: npm http-proxy with a keep-alive agent, the way most Node apps proxy.
 * Usage: node node-http-proxy.js UPSTREAM_PORT READ_TIMEOUT_MS. Prints "listening PORT".
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import httpProxy from 'http-proxy';

const upstreamPort = Number(process.argv[2]);
const timeoutMs = Number(process.argv[3] ?? 30000);
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256 });
const proxy = httpProxy.createProxyServer({ target: `http://127.0.0.1:${upstreamPort}`, agent, proxyTimeout: timeoutMs });
const timedOut = new WeakSet<http.IncomingMessage>();
proxy.on('proxyReq', (proxyReq, req) => proxyReq.once('timeout', () => timedOut.add(req)));
proxy.on('error', (_err, req, res) => {
  // Same answers as the other peers: 504 when proxyTimeout fired, 502 otherwise.
  const r = res as http.ServerResponse;
  const code = timedOut.has(req) ? 504 : 502;
  if ('headersSent' in r && !r.headersSent) {
    r.writeHead(code);
    r.end();
  } else r.destroy?.();
});
const server = http.createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 75_000;
server.listen(0, '127.0.0.1', () => process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`));
process.on('SIGTERM', () => process.exit(0));
