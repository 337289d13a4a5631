/**
 * h2c upstream for the h2 benchmark (its own process, so its CPU is not the harness's): node:http2 with prior
 * knowledge on 127.0.0.1:0. Any path answers 200 "ok\n" at once; `/hold` sends the response headers and keeps
 * the stream open until the client (or proxy) closes it, for RSS-per-open-stream runs. Prints one JSON line
 * {"port": N}; GET /stats on the same port answers {"open": streams held, "sessions": open sessions}.
 * Usage: node h2-upstream.js
 */
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';

const body = Buffer.from('ok\n');
let held = 0;
let sessions = 0;
const server = http2.createServer({
  // Never the limit under test: the proxies' own caps decide how many upstream sessions they open.
  settings: { maxConcurrentStreams: 100_000 },
  peerMaxConcurrentStreams: 100_000,
  maxSessionMemory: 1000,
});
server.on('session', (s) => {
  sessions++;
  s.on('error', () => {});
  s.once('close', () => sessions--);
});
server.on('stream', (stream, headers) => {
  stream.on('error', () => {});
  const path = headers[':path'];
  if (path === '/hold') {
    held++;
    stream.once('close', () => held--);
    stream.respond({ ':status': 200, 'content-type': 'text/plain' });
    stream.resume();
    return;
  }
  if (path === '/stats') {
    stream.respond({ ':status': 200, 'content-type': 'application/json' });
    stream.end(JSON.stringify({ open: held, sessions }));
    return;
  }
  stream.resume();
  stream.respond({ ':status': 200, 'content-type': 'text/plain', 'content-length': body.length });
  stream.end(body);
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
