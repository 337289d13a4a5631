/**
 * The admin split (#11), as Istio does for Envoy: the pod-facing admin listener serves only probes and
 * /metrics; /debug/* (addresses, socket state, config) is served by a second listener on loopback.
 * Both are bounded: capped connections, header/request timeouts, single-flight collection, and
 * /debug/connections paginated and serialized in slices so an admin storm never stalls the data path.
 * Read-only: neither changes pool or listener state.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { AdminConfig, Config, DebugConfig } from '../config/index.js';
import { redactConfig } from '../config/index.js';
import { idleDetectionMs } from '../liveness/index.js';
import type { AnyPool, EndpointView, Pool, UpstreamConn } from '../pool/index.js';
import { expectedSockopts, readSockopts, readTcpInfo } from '../sockopts/index.js';
import type { EffectiveSockopts, TcpInfo } from '../sockopts/index.js';
import type { Clock } from '../util/clock.js';

/** One upstream socket as /debug/connections shows it (the `connections` of a ConnectionsPage). */
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
  /** h2 routes (issue 13): the session's state, streams open, its stream limit and whether a PING is out. */
  readonly h2?: { readonly state: string; readonly streamsOpen: number; readonly maxStreams: number; readonly held: number; readonly isPingOutstanding: boolean; readonly lastReadMsAgo: number };
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

/** Paths served by the pod-facing admin listener; anything else is 404, any method but GET/HEAD is 405. */
export const ADMIN_PATHS = ['/live', '/ready', '/metrics'] as const;
/** Paths served by the loopback debug listener. */
export const DEBUG_PATHS = ['/debug/connections', '/debug/endpoints', '/debug/config'] as const;

/** The body of /debug/endpoints: per route, its upstream name and every endpoint it resolved to (issue 14). */
export interface EndpointsReport {
  readonly routes: ReadonlyArray<{
    readonly route: string;
    readonly host: string;
    readonly port: number;
    readonly resolve: 'all' | 'once';
    /** Fewer than half the endpoints are active: ejection is ignored, every live endpoint is used. */
    readonly isPanic: boolean;
    /** Since the last resolution round finished (null: none yet, or an IP literal). */
    readonly lastResolvedMsAgo: number | null;
    readonly lastResolveError: string | null;
    readonly endpoints: readonly EndpointView[];
  }>;
}

/** Fixed bounds of both listeners (not config: they protect the process, nobody needs to raise them). */
export const ADMIN_LIMITS = {
  /** Concurrent sockets on the admin port; more are closed on accept (kubelet + Prometheus need a handful). */
  adminMaxConnections: 32,
  /** Concurrent sockets on the debug port (humans and doctor). */
  debugMaxConnections: 8,
  /** A client has this long to send its request head (slowloris), and this long for the whole request. */
  headersTimeoutMs: 5000,
  requestTimeoutMs: 10_000,
  /** Idle keep-alive admin connections are closed after this. */
  keepAliveTimeoutMs: 5000,
  /** /debug/connections: entries per response by default, and at most. */
  connectionsDefaultLimit: 100,
  connectionsMaxLimit: 1000,
  /**
   * Views built and serialized per loop turn; the rest after setImmediate. One view costs ~50 µs here
   * (six getsockopt calls through FFI plus TCP_INFO), so a slice is ~1 ms of loop time.
   */
  connectionsSliceSize: 20,
  /** A finished page is served again to requests for the same page within this long (a storm builds ~4/s). */
  connectionsMaxAgeMs: 250,
} as const;

/** The body of /debug/connections: one page of the upstream sockets, in route order then id order. */
export interface ConnectionsPage {
  /** Every upstream socket of every route right now (not only this page). */
  readonly total: number;
  readonly offset: number;
  readonly limit: number;
  /** Query for the next page, or null on the last one. */
  readonly next: string | null;
  readonly connections: readonly ConnectionView[];
}

export interface AdminDeps {
  readonly registry: Registry;
  readonly pools: readonly AnyPool[];
  readonly config: Config;
  readonly clock: Clock;
  /** True when every listener is bound and we are not draining. */
  readonly isReady: () => boolean;
  /** Where /debug/* lives, for the 404 the admin port gives (undefined before it is bound). */
  readonly debugUrl?: () => string | undefined;
}

type Answer = readonly [status: number, type: string, body: string | Buffer];
type Route = (query: URLSearchParams) => Promise<Answer>;

/** One bounded node:http server around a path table. */
class BoundedServer {
  private readonly server: http.Server;

  constructor(
    private readonly cfg: { readonly host: string; readonly port: number },
    private readonly routes: ReadonlyMap<string, Route>,
    maxConnections: number,
    private readonly notFound: (path: string) => string,
  ) {
    this.server = http.createServer(
      {
        headersTimeout: ADMIN_LIMITS.headersTimeoutMs,
        requestTimeout: ADMIN_LIMITS.requestTimeoutMs,
        keepAliveTimeout: ADMIN_LIMITS.keepAliveTimeoutMs,
        // Node checks headersTimeout/requestTimeout on this interval (default 30 s, which would let a
        // slowloris hold a socket 6x longer than the bound).
        connectionsCheckingInterval: 1000,
      },
      (req, res) => {
        this.handle(req, res).catch((err: unknown) => {
          if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`internal error: ${(err as Error).message}\n`);
        });
      },
    );
    // Past the cap node:http destroys the accepted socket at once: the client sees a reset, the process
    // keeps its fds and its loop.
    this.server.maxConnections = maxConnections;
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
    const url = new URL(req.url ?? '/', 'http://admin');
    const route = this.routes.get(url.pathname);
    if (route === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(this.notFound(url.pathname));
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' }).end('method not allowed\n');
      return;
    }
    const [status, type, body] = await route(url.searchParams);
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : body);
  }
}

/**
 * Shares one in-progress collection among concurrent callers with the same key, and reuses its result for
 * `maxAgeMs` after it finished (0 = only while in flight). The promise is kept, not only its result.
 */
class SingleFlight<T> {
  private readonly entries = new Map<string, { readonly result: Promise<T>; doneAt: number | undefined }>();

  constructor(
    private readonly clock: Clock,
    private readonly maxAgeMs: number,
  ) {}

  run(key: string, collect: () => Promise<T>): Promise<T> {
    const now = this.clock.now();
    const hit = this.entries.get(key);
    if (hit !== undefined && (hit.doneAt === undefined || now - hit.doneAt < this.maxAgeMs)) return hit.result;
    // Expired entries of other keys go too, so the map holds at most the keys asked within maxAgeMs.
    for (const [k, e] of this.entries) if (e.doneAt !== undefined && now - e.doneAt >= this.maxAgeMs) this.entries.delete(k);
    const entry: { result: Promise<T>; doneAt: number | undefined } = { result: collect(), doneAt: undefined };
    entry.result.then(
      () => {
        entry.doneAt = this.clock.now();
        if (this.maxAgeMs === 0) this.entries.delete(key);
      },
      () => this.entries.delete(key),
    );
    this.entries.set(key, entry);
    return entry.result;
  }
}

/** The pod-facing listener: /live, /ready, /metrics. /debug/* is 404 naming the debug listener. */
export class AdminServer {
  private readonly server: BoundedServer;
  private readonly scrapes: SingleFlight<Buffer>;

  constructor(cfg: AdminConfig, private readonly deps: AdminDeps) {
    // Only while in flight: our own metrics are never cached (the registry caches process metrics 1 s).
    this.scrapes = new SingleFlight(deps.clock, 0);
    const routes = new Map<string, Route>([
      ['/live', async () => [200, 'text/plain', 'ok\n']],
      ['/ready', async () => (deps.isReady() ? [200, 'text/plain', 'ready\n'] : [503, 'text/plain', 'not ready\n'])],
      // Concurrent scrapes share one collection and one encoded buffer (#11: 1000 parallel scrapes delayed
      // proxied requests by up to 565 ms when each collected and encoded its own).
      ['/metrics', async () => [200, deps.registry.contentType, await this.scrapes.run('', async () => Buffer.from(await deps.registry.metrics()))]],
    ]);
    this.server = new BoundedServer(cfg, routes, ADMIN_LIMITS.adminMaxConnections, (path) => {
      if (path.startsWith('/debug')) {
        const where = this.deps.debugUrl?.();
        return `not found: ${path}\n/debug/* is served only on the loopback debug listener (debug.host:debug.port${where !== undefined ? `, here ${where}` : ''}), not on the admin port\nendpoints: ${ADMIN_PATHS.join(' ')}\n`;
      }
      return `not found: ${path}\nendpoints: ${ADMIN_PATHS.join(' ')}\n`;
    });
  }

  listen(): Promise<AddressInfo> {
    return this.server.listen();
  }

  close(): Promise<void> {
    return this.server.close();
  }
}

/** The loopback listener: /debug/connections (paginated), /debug/config. */
export class DebugServer {
  private readonly server: BoundedServer;
  private readonly pages: SingleFlight<Buffer>;

  constructor(cfg: DebugConfig, private readonly deps: AdminDeps) {
    this.pages = new SingleFlight(deps.clock, ADMIN_LIMITS.connectionsMaxAgeMs);
    const routes = new Map<string, Route>([
      ['/debug/connections', (q) => this.connectionsRoute(q)],
      ['/debug/endpoints', async () => [200, 'application/json', JSON.stringify(this.endpointsReport(), null, 2) + '\n']],
      ['/debug/config', async () => [200, 'application/json', JSON.stringify(redactConfig(deps.config), null, 2) + '\n']],
    ]);
    this.server = new BoundedServer(cfg, routes, ADMIN_LIMITS.debugMaxConnections, (path) => `not found: ${path}\nendpoints: ${DEBUG_PATHS.join(' ')}\n`);
  }

  listen(): Promise<AddressInfo> {
    return this.server.listen();
  }

  close(): Promise<void> {
    return this.server.close();
  }

  /** Small (one entry per resolved address), so built whole on each request. */
  private endpointsReport(): EndpointsReport {
    const now = this.deps.clock.now();
    return {
      routes: this.deps.pools.map((p) => {
        const set = p.endpoints;
        return {
          route: p.config.name,
          host: p.config.upstream.host,
          port: p.config.upstream.port,
          resolve: p.config.upstream.resolve,
          isPanic: set.isPanic,
          lastResolvedMsAgo: set.lastResolvedAt !== undefined ? Math.round(now - set.lastResolvedAt) : null,
          lastResolveError: set.lastResolveError ?? null,
          endpoints: set.snapshot(),
        };
      }),
    };
  }

  private async connectionsRoute(q: URLSearchParams): Promise<Answer> {
    const problems: string[] = [];
    const limit = intParam(q, 'limit', ADMIN_LIMITS.connectionsDefaultLimit, 1, ADMIN_LIMITS.connectionsMaxLimit, problems);
    const offset = intParam(q, 'offset', 0, 0, Number.MAX_SAFE_INTEGER, problems);
    if (problems.length > 0) return [400, 'text/plain', problems.join('\n') + '\n'];
    const body = await this.pages.run(`${offset}:${limit}`, () => this.connectionsPage(offset, limit));
    return [200, 'application/json', body];
  }

  /**
   * One page: picks the sockets first (references only), then builds their views (getsockopt + TCP_INFO,
   * ~3 µs each) and serializes them in slices with setImmediate between, so proxied traffic runs between
   * slices. One connection per line keeps the body readable without pretty-printing's doubling.
   */
  private async connectionsPage(offset: number, limit: number): Promise<Buffer> {
    const picked: Array<{ c: UpstreamConn; configured: EffectiveSockopts }> = [];
    let total = 0;
    for (const pool of this.deps.pools) {
      const configured = expectedSockopts(pool.config.keepalive);
      for (const c of pool.connections()) {
        if (total >= offset && picked.length < limit) picked.push({ c, configured });
        total++;
      }
    }
    const next = offset + picked.length < total ? `?offset=${offset + picked.length}&limit=${limit}` : null;
    const parts: string[] = [`{"total":${total},"offset":${offset},"limit":${limit},"next":${JSON.stringify(next)},"connections":[`];
    for (let i = 0; i < picked.length; i += ADMIN_LIMITS.connectionsSliceSize) {
      if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      const now = this.deps.clock.now();
      const slice = picked.slice(i, i + ADMIN_LIMITS.connectionsSliceSize);
      parts.push(slice.map(({ c, configured }, j) => `${i + j > 0 ? ',' : ''}\n${JSON.stringify(viewOf(c, configured, now))}`).join(''));
    }
    parts.push('\n]}\n');
    return Buffer.from(parts.join(''));
  }
}

/** A non-negative integer query parameter within [min, max]; a bad one is a problem (400), never clamped silently. */
function intParam(q: URLSearchParams, name: string, dflt: number, min: number, max: number, problems: string[]): number {
  const raw = q.get(name);
  if (raw === null) return dflt;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) {
    problems.push(`${name}: must be an integer from ${min} to ${max}, got "${raw}"`);
    return dflt;
  }
  return n;
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
    ...(c.h2 !== undefined
      ? { h2: { state: c.h2.state, streamsOpen: c.h2.openStreams, maxStreams: Number.isFinite(c.h2.maxStreams) ? c.h2.maxStreams : -1, held: c.h2.heldCount, isPingOutstanding: c.h2.isPingOutstanding, lastReadMsAgo: Math.round(now - c.h2.lastReadAt) } }
      : {}),
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
