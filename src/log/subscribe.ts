/**
 * Turns pool and listener events into log lines: debug on open, one line per upstream close (route, reason,
 * age, bytes each way, time since the last byte received), warn when a dead peer is detected. Never per chunk.
 */
import { DEAD_PEER_REASONS } from '../errors.js';
import type { HttpListener, TcpListener } from '../listeners/index.js';
import type { AnyPool } from '../pool/index.js';
import { F } from './fields.js';
import type { Logger } from './logger.js';

export function logPoolEvents(pool: AnyPool, parent: Logger): void {
  const route = pool.config.name;
  const upstream = `${pool.config.upstream.host}:${pool.config.upstream.port}`;
  const log = parent.child({ [F.component]: 'pool', [F.route]: route, [F.upstream]: upstream });
  pool.on('connected', (conn, connectMs) => {
    if (!log.isLevelEnabled('debug')) return;
    const s = conn.socket;
    log.debug(
      { [F.connId]: conn.id, [F.connectMs]: Math.round(connectMs), [F.local]: `${s.localAddress}:${s.localPort}`, [F.remote]: `${s.remoteAddress}:${s.remotePort}`, [F.sockopts]: conn.sockopts },
      'upstream connected',
    );
  });
  pool.on('connectFailed', (reason, err, connectMs) => {
    log.warn({ [F.reason]: reason, [F.connectMs]: Math.round(connectMs), [F.err]: err }, 'upstream connect failed');
  });
  pool.on('sockoptFailed', (conn, failure) => {
    log.warn({ [F.connId]: conn.id, [F.option]: failure.option, [F.err]: failure.message }, 'could not set socket option');
  });
  const ep = parent.child({ [F.component]: 'endpoints', [F.route]: route, [F.upstream]: upstream });
  pool.endpoints.on('added', (e) => ep.info({ endpoint: e.key, isSlowStart: e.warmFrom !== -Infinity }, 'endpoint added'));
  pool.endpoints.on('removed', (e) => ep.info({ endpoint: e.key, connections: e.connections, inFlight: e.conns.leased.size }, 'endpoint removed from DNS: idle connections retired, busy ones finish'));
  pool.endpoints.on('ejected', (e, reason, backoffMs) => ep.warn({ endpoint: e.key, [F.reason]: reason, backoffMs, ejections: e.ejections, panic: pool.endpoints.isPanic }, 'endpoint ejected'));
  pool.endpoints.on('restored', (e) => ep.info({ endpoint: e.key }, 'endpoint restored after a successful probe connect'));
  pool.endpoints.on('resolveFailed', (err, hasSet) =>
    ep.warn({ [F.err]: err, hasSet }, hasSet ? 'resolution failed: the last good endpoint set keeps serving' : 'resolution failed: no endpoint set yet, requests fail with resolve_failed'),
  );
  pool.endpoints.on('resolved', (outcome, count) => {
    if (outcome === 'changed') ep.info({ endpoints: count }, 'endpoint set changed');
  });
  pool.on('closed', (conn, info) => {
    const fields = {
      [F.connId]: conn.id,
      [F.reason]: info.reason,
      [F.ageMs]: Math.round(info.ageMs),
      [F.sinceLastRecvMs]: Math.round(info.sinceLastRecvMs),
      [F.bytesIn]: info.bytesRead,
      [F.bytesOut]: info.bytesWritten,
      ...(info.err !== undefined ? { [F.err]: info.err } : {}),
    };
    if (DEAD_PEER_REASONS.has(info.reason)) log.warn(fields, 'dead upstream peer detected, connection dropped');
    else log.info(fields, 'upstream connection closed');
  });
}

/**
 * Refused app connections: at most one warn per route per second, carrying how many were refused since the
 * previous line (a flood of refusals must not become a flood of log lines).
 */
function logRejections(listener: TcpListener | HttpListener, log: Logger): void {
  let lastAt = -Infinity;
  let pending = new Map<string, number>();
  listener.on('downstreamRejected', (reason, err) => {
    pending.set(reason, (pending.get(reason) ?? 0) + 1);
    const now = performance.now();
    if (now - lastAt < 1000) return;
    lastAt = now;
    const counts = Object.fromEntries(pending);
    pending = new Map();
    log.warn({ rejected: counts, ...(err !== undefined ? { [F.err]: err } : {}) }, 'app connections refused');
  });
}

export function logListenerEvents(listener: TcpListener, parent: Logger): void {
  const log = parent.child({ [F.component]: 'listener', [F.route]: listener.route.name });
  logRejections(listener, log);
  listener.on('downstreamReset', (reason) => {
    log.info({ [F.reason]: reason }, 'downstream reset');
  });
}

/** HTTP listener lines: one per retry and per sidecar-generated answer; never per successful request. */
export function logHttpListenerEvents(listener: HttpListener, parent: Logger): void {
  const log = parent.child({ [F.component]: 'http', [F.route]: listener.route.name });
  logRejections(listener, log);
  listener.on('retried', (reason) => log.info({ [F.reason]: reason }, 'request retried on a fresh connection'));
  listener.on('retryBudgetExhausted', () => log.warn('retry budget exhausted: request failed without retry'));
  listener.on('requestFailed', (reason, status) => log.info({ [F.reason]: reason, status }, 'sidecar answered the request itself'));
  listener.on('downstreamReset', (reason) => log.info({ [F.reason]: reason }, 'app connection reset'));
}
