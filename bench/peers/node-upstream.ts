/**
 * Upstream for runs that must not depend on Debian packages (the quick smoke run) and for memory runs:
 * n HTTP servers answering 200 "ok" (after an optional delay), a TCP bulk server, a TCP server that only holds
 * connections, and a control port reporting counters as JSON. Prints one JSON line with its ports.
 * Usage: node node-upstream.js N [DELAY_MS]
 */
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';

const n = Number(process.argv[2] ?? 1);
const delayMs = Number(process.argv[3] ?? 0);
let accepts = 0;
let held = 0;
/** Open HTTP connections (idle pooled ones included). */
let open = 0;

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen({ port: 0, host: '127.0.0.1', backlog: 16384 }, () => resolve((server.address() as AddressInfo).port)));
}

const body = Buffer.from('ok\n');
const httpPorts: number[] = [];
for (let i = 0; i < n; i++) {
  const server = http.createServer((req, res) => {
    const answer = (): void => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
      res.end(body);
    };
    req.resume();
    if (delayMs > 0) setTimeout(answer, delayMs);
    else answer();
  });
  // Never close a keep-alive connection ourselves during a run: new upstream connections are the proxy's doing.
  server.keepAliveTimeout = 300_000;
  server.headersTimeout = 310_000;
  server.requestTimeout = 0;
  server.on('connection', (s: net.Socket) => {
    accepts++;
    open++;
    s.on('error', () => {});
    s.once('close', () => open--);
  });
  httpPorts.push(await listen(server));
}

const chunk = Buffer.alloc(256 * 1024, 0x61);
const bulk = net.createServer((s) => {
  s.on('error', () => {});
  s.once('data', (first: Buffer) => {
    if (first[0] === 0x44 /* D */) {
      const pump = (): void => {
        while (!s.destroyed && s.write(chunk));
      };
      s.on('drain', pump);
      pump();
    }
    // "U": everything is read and dropped by the flowing stream below.
  });
  s.on('data', () => {});
});
const hold = net.createServer((s) => {
  held++;
  s.on('error', () => {});
  s.once('close', () => held--);
});
const control = http.createServer((_req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ accepts, held, open }));
});

const out = { http: httpPorts, bulk: await listen(bulk), hold: await listen(hold), control: await listen(control) };
process.stdout.write(`${JSON.stringify(out)}\n`);
process.on('SIGTERM', () => process.exit(0));
