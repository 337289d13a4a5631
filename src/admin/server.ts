/**
 * Admin HTTP server on its own port: /live, /ready, /metrics, /debug/connections, /debug/config.
 * Read-only: it never changes pool or listener state.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { AdminConfig, Config } from '../config/index.js';
import { redactConfig } from '../config/index.js';
import { idleDetectionMs } from '../liveness/index.js';
import type { Pool, UpstreamConn } from '../pool/index.js';
import { expectedSockopts, readSockopts, readTcpInfo } from '../sockopts/index.js';
import type { EffectiveSockopts, TcpInfo } from '../sockopts/index.js';
import type { Clock } from '../util/clock.js';

/** The paths served; anything else is 404, any method but GET/HEAD on these is 405. */
export const ADMIN_PATHS = ['/live', '/ready', '/metrics', '/debug/connections', '/debug/config'] as const;

/** One upstream socket as /debug/connections shows it (a JSON array of these). */
export interface ConnectionView {
  readonly route: string;
  readonly id: number;
  /** Pool state; `active` = leased (same word as the metric label). `closed` only in a race with close. */
  readonly state: 'connecting' | 'idle' | 'active' | 'closed';
  /** Time in the current state. */
  readonly stateForMs: number;
  readonly local: string | null;
  readonly remote: string | null;
  /** Since the connection was established (0 while connecting). */
  readonly ageMs: number;
  /** Since the last byte received from the upstream (or the connect, if none yet). */
  readonly idleMs: number;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  /** What we asked the kernel for (from the route's keepalive config). */
  readonly configured: EffectiveSockopts;
  /** What the kernel reports now, read back with getsockopt; null once the fd is gone. */
  readonly sockopts: EffectiveSockopts | null;
  /** Every read-back value equals the configured one. */
  readonly isSockoptsAsConfigured: boolean | null;
  readonly tcpInfo: TcpInfo | null;
  readonly timers: {
    /** Our max-age timer: time left before the connection is no longer reused (null while connecting). */
    readonly maxAgeInMs: number | null;
    /**
     * Estimate from the kernel timer model (liveness/detection-time.ts): if the peer is silent from now on,
     * the kernel declares it dead within this many ms (idle: keepalive + UT; in flight: UT since the last ACK).
     * null when keepalive is off or TCP_INFO could not be read.
     */
    readonly deadIfSilentWithinMs: number | null;
  };
}

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

  /** Built once: path -> [status, content type, body]. */
  private readonly routes: ReadonlyMap<string, () => Promise<[number, string, string]>> = new Map<string, () => Promise<[number, string, string]>>([
    ['/live', async () => [200, 'text/plain', 'ok\n']],
    ['/ready', async () => (this.deps.isReady() ? [200, 'text/plain', 'ready\n'] : [503, 'text/plain', 'not ready\n'])],
    ['/metrics', async () => [200, this.deps.registry.contentType, await this.deps.registry.metrics()]],
    ['/debug/connections', async () => [200, 'application/json', JSON.stringify(this.connections(), null, 2) + '\n']],
    ['/debug/config', async () => [200, 'application/json', JSON.stringify(redactConfig(this.deps.config), null, 2) + '\n']],
  ]);

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    const route = path !== undefined ? this.routes.get(path) : undefined;
    if (route === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}\nendpoints: ${ADMIN_PATHS.join(' ')}\n`);
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
  private connections(): ConnectionView[] {
    const now = this.deps.clock.now();
    const out: ConnectionView[] = [];
    for (const pool of this.deps.pools) {
      const configured = expectedSockopts(pool.config.keepalive);
      for (const c of pool.connections()) out.push(viewOf(c, configured, now));
    }
    return out;
  }
}

function viewOf(c: UpstreamConn, configured: EffectiveSockopts, now: number): ConnectionView {
  const s = c.socket;
  const st = c.state;
  const since = st.state === 'connecting' ? st.since : st.state === 'idle' ? st.idleSince : st.state === 'leased' ? st.leasedAt : st.closedAt;
  const sockopts = c.state.state === 'connecting' ? null : readSockopts(s) ?? null;
  const tcpInfo = c.state.state === 'connecting' ? null : readTcpInfo(s) ?? null;
  return {
    route: c.route,
    id: c.id,
    state: st.state === 'leased' ? 'active' : st.state,
    stateForMs: Math.round(now - since),
    local: s.localAddress !== undefined ? `${s.localAddress}:${s.localPort}` : null,
    remote: s.remoteAddress !== undefined ? `${s.remoteAddress}:${s.remotePort}` : null,
    ageMs: c.connectedAt !== undefined ? Math.round(now - c.connectedAt) : 0,
    idleMs: Math.round(now - c.lastRecvAt),
    bytesRead: s.bytesRead,
    bytesWritten: s.bytesWritten,
    configured,
    sockopts,
    isSockoptsAsConfigured: sockopts === null ? null : (Object.keys(configured) as Array<keyof EffectiveSockopts>).every((k) => sockopts[k] === configured[k]),
    tcpInfo,
    timers: {
      maxAgeInMs: Number.isFinite(c.maxAgeAt) ? Math.round(c.maxAgeAt - now) : null,
      deadIfSilentWithinMs: deadIfSilentWithin(sockopts, tcpInfo),
    },
  };
}

/** See ConnectionView.timers.deadIfSilentWithinMs. */
function deadIfSilentWithin(so: EffectiveSockopts | null, ti: TcpInfo | null): number | null {
  if (so === null || ti === null) return null;
  if (ti.unacked > 0 && so.userTimeoutMs > 0) return Math.max(0, so.userTimeoutMs - ti.lastAckRecvMs);
  if (!so.keepAlive) return null;
  // tcp_keepalive_timer measures from the last segment received (data or ACK).
  const sinceRecv = Math.min(ti.lastDataRecvMs, ti.lastAckRecvMs);
  const bound = idleDetectionMs({ isKeepaliveOn: true, idleSec: so.keepIdleSec, intvlSec: so.keepIntvlSec, probes: so.keepCnt, userTimeoutMs: so.userTimeoutMs });
  return Math.max(0, Math.round(bound - sinceRecv));
}
