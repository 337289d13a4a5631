/**
 * Builds and starts everything for a validated Config: one pool and listener per route, metrics and log
 * subscribers, the admin server. Used by `run`, `demo` and the integration tests; signal handling stays in
 * main.
 */
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { AdminServer, DebugServer } from './admin/index.js';
import type { Config } from './config/index.js';
import { shutdown } from './lifecycle/index.js';
// Direct files, not listeners/index.js: the HTTP listener (and undici) load only for http routes.
import { FdBudget, RESERVE_FDS } from './listeners/fd-budget.js';
import type { H2Listener } from './listeners/h2.js';
import type { HttpListener } from './listeners/http.js';
import { TcpListener } from './listeners/tcp.js';
import type { Logger } from './log/index.js';
import { logHttpListenerEvents, logListenerEvents, logPoolEvents } from './log/index.js';
import { createHttpMetrics, createMetrics, createRegistry } from './metrics/index.js';
import { Pool } from './pool/index.js';
import type { H2Pool } from './pool/index.js';
import { selfCheckSockopts } from './sockopts/index.js';
import type { Clock } from './util/clock.js';
import { realClock } from './util/clock.js';
import { httpUrl } from './util/url.js';
import { VERSION } from './version.js';

export interface RunningRoute {
  readonly name: string;
  readonly address: AddressInfo;
  readonly pool: Pool;
  readonly listener: TcpListener | HttpListener;
}

/** An h2 route (issue 13): its session pool and listener. */
export interface RunningH2Route {
  readonly name: string;
  readonly address: AddressInfo;
  readonly pool: H2Pool;
  readonly listener: H2Listener;
}

export interface Sidecar {
  /** tcp and http routes. */
  readonly routes: readonly RunningRoute[];
  /** h2 routes (kept apart: their pool is an H2Pool, not a Pool). */
  readonly h2Routes: readonly RunningH2Route[];
  readonly admin: AddressInfo | undefined;
  /** The loopback /debug/* listener (bound when admin is enabled). */
  readonly debug: AddressInfo | undefined;
  readonly registry: Registry;
  /** Drains and stops; resolves 'drained' or 'forced'. Idempotent. */
  stop(): Promise<'drained' | 'forced'>;
}

export interface StartOptions {
  readonly logger: Logger;
  readonly clock?: Clock;
}

/** Self-checks socket options, then binds every listener and the admin port. */
export async function startSidecar(config: Config, opts: StartOptions): Promise<Sidecar> {
  const clock = opts.clock ?? realClock;
  const log = opts.logger;
  await selfCheckSockopts(config.routes.map((r) => ({ name: `routes.${r.name}.keepalive`, keepalive: r.keepalive })));

  const registry = createRegistry(VERSION);
  const metrics = createMetrics(registry);
  const httpMetrics = createHttpMetrics(registry);
  let h2Metrics: import('./metrics/h2-metrics.js').H2Metrics | undefined;
  let isDraining = false;
  const routes: RunningRoute[] = [];
  const h2Routes: RunningH2Route[] = [];
  const started: Array<{ pool: Pool | H2Pool; listener: TcpListener | HttpListener | H2Listener }> = [];
  // One fd budget for every route's app connections, so /live keeps its fds (issue 11).
  const fds = new FdBudget();
  log.info({ maxAppConnections: fds.maxAdmitted, reserveFds: RESERVE_FDS }, 'fd budget');
  try {
    for (const route of config.routes) {
      if (route.mode === 'h2') {
        // Loaded only for h2 routes (node:http2 code paths; undici is never loaded for them).
        const [{ H2Pool }, { H2Listener }, { createH2Metrics }, { logH2Events }] = await Promise.all([
          import('./pool/h2-pool.js'),
          import('./listeners/h2.js'),
          import('./metrics/h2-metrics.js'),
          import('./log/h2-subscribe.js'),
        ]);
        // ACK evidence uses the route's http.earlyRetry settings (the same kernel facts as for HTTP/1).
        const pool = new H2Pool(route, route.h2, clock, { ackEvidenceAfterMs: route.http.earlyRetry.enabled ? route.http.earlyRetry.afterMs : undefined });
        const listener = new H2Listener(route, pool, clock, fds);
        h2Metrics ??= createH2Metrics(registry);
        h2Metrics.observeH2(pool, listener);
        logPoolEvents(pool, log);
        logH2Events(pool, log);
        metrics.observePool(pool);
        metrics.observeListener(listener);
        started.push({ pool, listener });
        const address = await listener.listen();
        h2Routes.push({ name: route.name, address, pool, listener });
        log.info({ route: route.name, mode: route.mode, listen: `${address.address}:${address.port}`, upstream: `${route.upstream.host}:${route.upstream.port}` }, 'route listening');
        continue;
      }
      let pool: Pool;
      let listener: TcpListener | HttpListener;
      if (route.mode === 'http') {
        // No warmSpares override any more: an h1 connection idle before its first request is read by its own
        // idle reader (any byte -> protocol_error) and handed to undici intact (test/integration/pool.test.ts).
        // Loaded only for http routes: undici and the HTTP path cost a tcp-only sidecar ~20 MiB RSS.
        const { h1DriverFactory } = await import('./pool/h1-driver.js');
        pool = new Pool(route, clock, {
          idleTimeoutMs: route.http.idleTimeoutMs,
          maxIdle: route.http.maxIdle,
          maxPending: route.http.maxPending,
          pendingTimeoutMs: route.http.pendingTimeoutMs,
          driver: h1DriverFactory(httpUrl(route.upstream.host, route.upstream.port)),
          siblingEviction: route.http.siblingEviction,
        });
        const { HttpListener } = await import('./listeners/http.js');
        const http = new HttpListener(route, pool, clock, fds);
        logHttpListenerEvents(http, log);
        httpMetrics.observeHttpListener(http);
        listener = http;
      } else {
        pool = new Pool(route, clock);
        const tcp = new TcpListener(route, pool, clock, fds);
        logListenerEvents(tcp, log);
        listener = tcp;
      }
      logPoolEvents(pool, log);
      metrics.observePool(pool);
      metrics.observeListener(listener);
      started.push({ pool, listener });
      const address = await listener.listen();
      pool.start();
      routes.push({ name: route.name, address, pool, listener });
      log.info({ route: route.name, mode: route.mode, listen: `${address.address}:${address.port}`, upstream: `${route.upstream.host}:${route.upstream.port}` }, 'route listening');
    }
  } catch (err) {
    for (const s of started) {
      await s.pool.close();
      await s.listener.stopAccepting();
    }
    throw err;
  }

  fds.idleUpstreams = () => {
    let n = 0;
    for (const r of routes) n += r.pool.idleCount;
    for (const r of h2Routes) n += r.pool.idleCount;
    return n;
  };

  let admin: AdminServer | undefined;
  let debug: DebugServer | undefined;
  let adminAddress: AddressInfo | undefined;
  let debugAddress: AddressInfo | undefined;
  if (config.admin.enabled) {
    const deps = {
      registry,
      pools: [...routes.map((r) => r.pool), ...h2Routes.map((r) => r.pool)],
      config,
      clock,
      isReady: () => !isDraining && routes.every((r) => r.listener.isListening) && h2Routes.every((r) => r.listener.isListening),
      debugUrl: () => (debugAddress !== undefined ? urlOf(debugAddress) : undefined),
    };
    admin = new AdminServer(config.admin, deps);
    debug = new DebugServer(config.debug, deps);
    try {
      adminAddress = await admin.listen();
      debugAddress = await debug.listen();
    } catch (err) {
      await admin.close();
      await debug.close();
      for (const r of [...routes, ...h2Routes]) {
        await r.pool.close();
        await r.listener.stopAccepting();
      }
      throw err;
    }
    log.info({ admin: urlOf(adminAddress), debug: urlOf(debugAddress) }, 'admin listening');
  }

  let stopping: Promise<'drained' | 'forced'> | undefined;
  return {
    routes,
    h2Routes,
    admin: adminAddress,
    debug: debugAddress,
    registry,
    stop() {
      stopping ??= shutdown({
        markNotReady: () => {
          isDraining = true;
        },
        listeners: [...routes.map((r) => r.listener), ...h2Routes.map((r) => r.listener)],
        closePools: async () => {
          await Promise.all([...routes.map((r) => r.pool.close()), ...h2Routes.map((r) => r.pool.close())]);
        },
        closeAdmin: async () => {
          await Promise.all([admin?.close(), debug?.close()]);
        },
        drainTimeoutMs: config.shutdown.drainTimeoutMs,
        clock,
      });
      return stopping;
    },
  };
}

function urlOf(a: AddressInfo): string {
  return httpUrl(a.address, a.port);
}
