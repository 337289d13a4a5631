/**
 * The `minimal` row: the floor for a node:http + undici proxy. No features at all: headers passed through
 * (only hop-by-hop Connection/Keep-Alive dropped), one undici Pool, dispatch() writing straight into the
 * response, no retries, no pool policy, no metrics. Usage: node minimal.js UPSTREAM_PORT [PORT]. Prints "listening PORT".
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';

const upstreamPort = Number(process.argv[2]);
const pool = new Pool(`http://127.0.0.1:${upstreamPort}`, { connections: null, pipelining: 1 });

function handler(res: http.ServerResponse): Dispatcher.DispatchHandler {
  return {
    onConnect() {},
    onHeaders(status, raw, _resume, text) {
      const h: string[] = [];
      for (let i = 0; i < raw.length; i += 2) {
        const n = raw[i]!.toString('latin1');
        const l = n.toLowerCase();
        if (l !== 'connection' && l !== 'keep-alive' && l !== 'transfer-encoding') h.push(n, raw[i + 1]!.toString('latin1'));
      }
      res.writeHead(status, text || undefined, h);
      return true;
    },
    onData: (chunk) => res.write(chunk),
    onComplete: () => res.end(),
    onError() {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    },
  };
}

const server = http.createServer((req, res) => {
  const h: string[] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const l = raw[i]!.toLowerCase();
    if (l !== 'connection' && l !== 'keep-alive') h.push(raw[i]!, raw[i + 1]!);
  }
  pool.dispatch({ origin: undefined, path: req.url ?? '/', method: req.method ?? 'GET', headers: h, body: req.method === 'GET' || req.method === 'HEAD' ? null : req } as Dispatcher.DispatchOptions, handler(res));
});
server.keepAliveTimeout = 75_000;
server.listen(Number(process.argv[3] ?? 0), '127.0.0.1', () => process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`));
process.on('SIGTERM', () => process.exit(0));
