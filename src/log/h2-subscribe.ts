/**
 * h2 log lines (issue 13): one per GOAWAY received, per PING timeout and per PING backoff; never per stream
 * or per PING answered.
 */
import { h2CodeName } from '../metrics/h2-metrics.js';
import type { H2Pool } from '../pool/h2-pool.js';
import { F } from './fields.js';
import type { Logger } from './logger.js';

export function logH2Events(pool: H2Pool, parent: Logger): void {
  const route = pool.config.name;
  const log = parent.child({ [F.component]: 'h2', [F.route]: route });
  pool.h2events.on('goawayReceived', (conn, code, lastStreamId, debug) => {
    const fields = { [F.route]: route, [F.connId]: conn.id, code: h2CodeName(code), lastStreamId, debug };
    if (code === 0) log.info(fields, 'h2 goaway received');
    else log.warn(fields, 'h2 goaway received');
  });
  pool.h2events.on('pingTimedOut', (conn) => log.warn({ [F.route]: route, [F.connId]: conn.id }, 'h2 ping timeout'));
  pool.h2events.on('pingBackoff', (intervalMs) => log.warn({ [F.route]: route, intervalMs }, 'h2 periodic ping interval doubled (GOAWAY too_many_pings)'));
}
