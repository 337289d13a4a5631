/**
 * The `h2-minimal` row: the floor for a node:http2 → node:http2 proxy (issue 13's "minimal Node proxy"). No
 * features at all: one upstream session (opened at start, never replaced), request headers passed through
 * (pseudo-headers included; hop-by-hop headers are forbidden in HTTP/2 anyway), response headers passed back
 * (no trailers: the bench upstream sends none), bodies piped both ways, no PINGs, no retries, no metrics. Usage: node h2-minimal.js UPSTREAM_PORT.
 * Prints one JSON line {"port": N}.
 */
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';

const up = http2.connect(`http://127.0.0.1:${process.argv[2]}`, { peerMaxConcurrentStreams: 100_000 });
up.on('error', () => {});

const server = http2.createServer({ settings: { maxConcurrentStreams: 100_000 } });
server.on('session', (s) => s.on('error', () => {}));
server.on('stream', (down, headers) => {
  down.on('error', () => {});
  const upStream = up.request(headers, { endStream: down.readableEnded });
  upStream.on('error', () => {
    if (!down.headersSent) down.respond({ ':status': 502 }, { endStream: true });
    else down.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  });
  upStream.on('response', (h) => down.respond(h));
  down.pipe(upStream);
  upStream.pipe(down);
  down.on('close', () => {
    if (!upStream.closed) upStream.close(http2.constants.NGHTTP2_CANCEL);
  });
});
up.once('remoteSettings', () => {
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`));
});
process.on('SIGTERM', () => process.exit(0));
