/**
 * Admin HTTP server on its own port: /live, /ready, /metrics, /debug/connections, /debug/config.
 * Read-only: it never changes pool or listener state.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { AdminConfig, Config } from '../config/index.js';
import type { Pool } from '../pool/index.js';
import { readSockopts, readTcpInfo } from '../sockopts/index.js';
import type { Clock } from '../util/clock.js';

export interface AdminDeps {
  readonly registry: Registry;
  readonly pools: readonly Pool[];
  readonly config: Config;
  readonly clock: Clock;
  /** True when every listener is bound and we are not draining. */
  readonly isReady: () => boolean;
}

export class AdminServer {
  private readonly server: http.Server;

  constructor(
    private readonly cfg: AdminConfig,
    private readonly deps: AdminDeps,
  ) {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`internal error: ${(err as Error).message}\n`);
      });
    });
  }

  async listen(): Promise<AddressInfo> {
    this.server.listen(this.cfg.port, this.cfg.host);
    await Promise.race([
      once(this.server, 'listening'),
      once(this.server, 'error').then(([err]) => {
        throw err;
      }),
    ]);
    return this.server.address() as AddressInfo;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      if (!this.server.listening) resolve();
      else this.server.close(() => resolve());
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    const routes: Record<string, () => Promise<[number, string, string]>> = {
      '/live': async () => [200, 'text/plain', 'ok\n'],
      '/ready': async () => (this.deps.isReady() ? [200, 'text/plain', 'ready\n'] : [503, 'text/plain', 'not ready\n']),
      '/metrics': async () => [200, this.deps.registry.contentType, await this.deps.registry.metrics()],
      '/debug/connections': async () => [200, 'application/json', JSON.stringify(this.connections(), null, 2) + '\n'],
      '/debug/config': async () => [200, 'application/json', JSON.stringify(this.deps.config, null, 2) + '\n'],
    };
    const route = path !== undefined ? routes[path] : undefined;
    if (route === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}\n`);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' }).end('method not allowed\n');
      return;
    }
    const [status, type, body] = await route();
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : body);
  }

  /** Every upstream socket with its state, traffic, options read back from the kernel, and TCP_INFO. */
  private connections(): unknown[] {
    const now = this.deps.clock.now();
    const out: unknown[] = [];
    for (const pool of this.deps.pools) {
      for (const c of pool.connections()) {
        const s = c.socket;
        out.push({
          route: c.route,
          id: c.id,
          state: c.state.state === 'leased' ? 'active' : c.state.state,
          local: s.localAddress !== undefined ? `${s.localAddress}:${s.localPort}` : null,
          remote: s.remoteAddress !== undefined ? `${s.remoteAddress}:${s.remotePort}` : null,
          ageMs: c.connectedAt !== undefined ? Math.round(now - c.connectedAt) : 0,
          idleMs: Math.round(now - c.lastRecvAt),
          bytesRead: s.bytesRead,
          bytesWritten: s.bytesWritten,
          sockopts: readSockopts(s) ?? null,
          tcpInfo: readTcpInfo(s) ?? null,
        });
      }
    }
    return out;
  }
}
