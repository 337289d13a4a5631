/**
 * Builds and starts everything for a validated Config: one pool and listener per route, metrics and log
 * subscribers, the admin server. Used by `run`, `demo` and the integration tests; signal handling stays in
 * main.
 */
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { AdminServer } from './admin/index.js';
import type { Config } from './config/index.js';
import { shutdown } from './lifecycle/index.js';
import { FdBudget, HttpListener, RESERVE_FDS, TcpListener } from './listeners/index.js';
import type { Logger } from './log/index.js';
import { logHttpListenerEvents, logListenerEvents, logPoolEvents } from './log/index.js';
import { createHttpMetrics, createMetrics, createRegistry } from './metrics/index.js';
import { Pool } from './pool/index.js';
import { selfCheckSockopts } from './sockopts/index.js';
import type { Clock } from './util/clock.js';
import { realClock } from './util/clock.js';
import { VERSION } from './version.js';

export interface RunningRoute {
  readonly name: string;
  readonly address: AddressInfo;
  readonly pool: Pool;
  readonly listener: TcpListener | HttpListener;
}

export interface Sidecar {
  readonly routes: readonly RunningRoute[];
  readonly admin: AddressInfo | undefined;
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
  let isDraining = false;
  const routes: RunningRoute[] = [];
  const started: Array<{ pool: Pool; listener: TcpListener | HttpListener }> = [];
  // One fd budget for every route's app connections, so /live keeps its fds (issue 11).
  const fds = new FdBudget();
  log.info({ maxAppConnections: fds.maxAdmitted, reserveFds: RESERVE_FDS }, 'fd budget');
  try {
    for (const route of config.routes) {
      let pool: Pool;
      let listener: TcpListener | HttpListener;
      if (route.mode === 'http') {
        // warmSpares is a tcp feature: an http connection is read by its undici Client only once leased.
        pool = new Pool({ ...route, warmSpares: 0 }, clock, {
          idleTimeoutMs: route.http.idleTimeoutMs,
          maxIdle: route.http.maxIdle,
          maxPending: route.http.maxPending,
          hasOwnReader: true,
          siblingEviction: route.http.siblingEviction,
        });
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
    return n;
  };

  let admin: AdminServer | undefined;
  let adminAddress: AddressInfo | undefined;
  if (config.admin.enabled) {
    admin = new AdminServer(config.admin, {
      registry,
      pools: routes.map((r) => r.pool),
      config,
      clock,
      isReady: () => !isDraining && routes.every((r) => r.listener.isListening),
    });
    try {
      adminAddress = await admin.listen();
    } catch (err) {
      for (const r of routes) {
        await r.pool.close();
        await r.listener.stopAccepting();
      }
      throw err;
    }
    log.info({ admin: `http://${adminAddress.address}:${adminAddress.port}` }, 'admin listening');
  }

  let stopping: Promise<'drained' | 'forced'> | undefined;
  return {
    routes,
    admin: adminAddress,
    registry,
    stop() {
      stopping ??= shutdown({
        markNotReady: () => {
          isDraining = true;
        },
        listeners: routes.map((r) => r.listener),
        closePools: async () => {
          await Promise.all(routes.map((r) => r.pool.close()));
        },
        closeAdmin: () => admin?.close() ?? Promise.resolve(),
        drainTimeoutMs: config.shutdown.drainTimeoutMs,
        clock,
      });
      return stopping;
    },
  };
}
