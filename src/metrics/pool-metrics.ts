/**
 * Pool and listener metrics. Gauges read pool.stats() at scrape time (no paired inc/dec). Labels come only
 * from bounded sets: route (from config), state, reason, direction, option.
 */
import { Counter, Gauge, Histogram } from './prom.js';
import type { Registry } from 'prom-client';
import { ACQUIRE_FAILURES, CLOSE_REASONS, DEAD_PEER_REASONS, DOWNSTREAM_REJECT_REASONS } from '../errors.js';
import type { DownstreamRejectReason, DownstreamResetReason } from '../errors.js';
import type { TcpListener } from '../listeners/index.js';
import { ENDPOINT_STATES, RESOLVE_OUTCOMES } from '../pool/index.js';
import type { AnyPool, EjectReason, Pool } from '../pool/index.js';
import { SOCKOPT_NAMES } from '../sockopts/index.js';
import { PREFIX } from './registry.js';

/** What the listener metrics read: any listener (tcp, http) with open downstreams and reset events. */
export interface ObservedListener {
  readonly route: { readonly name: string };
  readonly activeCount: number;
  on(event: 'downstreamReset', fn: (reason: DownstreamResetReason) => void): unknown;
  on(event: 'downstreamRejected', fn: (reason: DownstreamRejectReason) => void): unknown;
}

export interface SidecarMetrics {
  observePool(pool: AnyPool): void;
  observeListener(listener: ObservedListener | TcpListener): void;
}

export function createMetrics(registry: Registry): SidecarMetrics {
  const registers = [registry];
  const pools: AnyPool[] = [];
  const listeners: ObservedListener[] = [];
  // Bytes of connections still open are added at scrape time; closed ones were added to `closedBytes`.
  const closedBytes = new Map<string, { rx: number; tx: number }>();

  new Gauge({
    name: `${PREFIX}upstream_connections`,
    help: 'Upstream connections by state, read from the pool at scrape time.',
    labelNames: ['route', 'state'] as const,
    registers,
    collect() {
      this.reset();
      for (const p of pools) {
        const s = p.stats();
        this.set({ route: p.config.name, state: 'connecting' }, s.connecting);
        this.set({ route: p.config.name, state: 'idle' }, s.idle);
        this.set({ route: p.config.name, state: 'active' }, s.leased);
      }
    },
  });
  const opened = new Counter({
    name: `${PREFIX}upstream_connections_opened_total`,
    help: 'Upstream connections established.',
    labelNames: ['route'] as const,
    registers,
  });
  const closed = new Counter({
    name: `${PREFIX}upstream_connections_closed_total`,
    help: 'Upstream connections closed, by first cause.',
    labelNames: ['route', 'reason'] as const,
    registers,
  });
  const connectDuration = new Histogram({
    name: `${PREFIX}upstream_connect_duration_seconds`,
    help: 'Time to establish an upstream TCP connection.',
    labelNames: ['route'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers,
  });
  const connectFailures = new Counter({
    name: `${PREFIX}upstream_connect_failures_total`,
    help: 'Upstream connects that failed, by reason.',
    labelNames: ['route', 'reason'] as const,
    registers,
  });
  const detection = new Histogram({
    name: `${PREFIX}dead_peer_detection_seconds`,
    help: 'From the last byte received on an upstream connection to the moment it was declared dead (keepalive_timeout, user_timeout, no_ack).',
    labelNames: ['route', 'reason'] as const,
    buckets: [0.25, 0.5, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 60, 120, 300],
    registers,
  });
  const sockoptFailures = new Counter({
    name: `${PREFIX}sockopt_failures_total`,
    help: 'Socket options that could not be set (or read back differently) on an upstream socket.',
    labelNames: ['option'] as const,
    registers,
  });
  // Every label set we can ever produce exists from the start at 0, so rate() and increase() see the first
  // event, and the series count does not change with traffic (the label-cardinality test relies on it).
  for (const option of SOCKOPT_NAMES) sockoptFailures.inc({ option }, 0);
  new Gauge({
    name: `${PREFIX}downstream_connections`,
    help: 'Open downstream (app-side) connections.',
    labelNames: ['route'] as const,
    registers,
    collect() {
      this.reset();
      for (const l of listeners) this.set({ route: l.route.name }, l.activeCount);
    },
  });
  const downstreamResets = new Counter({
    name: `${PREFIX}downstream_resets_total`,
    help: 'Downstream connections reset by the sidecar, by reason (upstream died, or none could be had).',
    labelNames: ['route', 'reason'] as const,
    registers,
  });
  // Issue 11: app connections refused at accept (route cap, fd reserve, accept() errors).
  const downstreamRejected = new Counter({
    name: `${PREFIX}downstream_rejected_total`,
    help: 'App (downstream) connections refused at accept, by reason: overflow (route cap), fd_reserve (fds kept for the admin port), accept_error (EMFILE/ENFILE...).',
    labelNames: ['route', 'reason'] as const,
    registers,
  });
  new Counter({
    name: `${PREFIX}bytes_total`,
    help: 'Bytes moved on upstream connections: rx = received from upstream, tx = sent to upstream.',
    labelNames: ['route', 'direction'] as const,
    registers,
    collect() {
      this.reset();
      for (const p of pools) {
        const done = closedBytes.get(p.config.name) ?? { rx: 0, tx: 0 };
        let rx = done.rx;
        let tx = done.tx;
        for (const c of p.connections()) {
          rx += c.socket.bytesRead;
          tx += c.socket.bytesWritten;
        }
        this.inc({ route: p.config.name, direction: 'rx' }, rx);
        this.inc({ route: p.config.name, direction: 'tx' }, tx);
      }
    },
  });

  // Issue 14: endpoints per route by state, ejections by reason, resolution rounds by outcome. No address
  // label: a headless Service's pods come and go, and each would be a new series.
  new Gauge({
    name: `${PREFIX}upstream_endpoints`,
    help: 'Upstream endpoints (resolved addresses) per route by state: active, ejected (dead-peer or connect failure, in back-off), removed (gone from DNS, connections draining).',
    labelNames: ['route', 'state'] as const,
    registers,
    collect() {
      this.reset();
      for (const p of pools) {
        const counts = p.endpoints.counts();
        for (const state of ENDPOINT_STATES) this.set({ route: p.config.name, state }, counts[state]);
      }
    },
  });
  const ejections = new Counter({
    name: `${PREFIX}upstream_endpoint_ejections_total`,
    help: 'Endpoints ejected from balancing, by the reason: a dead-peer close of one of its connections, or a failed connect.',
    labelNames: ['route', 'reason'] as const,
    registers,
  });
  const resolutions = new Counter({
    name: `${PREFIX}upstream_resolutions_total`,
    help: 'Resolution rounds of a route\'s upstream name, by outcome: changed, unchanged, failed (the last good set keeps serving).',
    labelNames: ['route', 'outcome'] as const,
    registers,
  });
  const EJECT_REASONS: readonly EjectReason[] = [...DEAD_PEER_REASONS, 'connect_refused', 'connect_timeout', 'connect_error'];

  return {
    observePool(pool) {
      pools.push(pool);
      const route = pool.config.name;
      closedBytes.set(route, { rx: 0, tx: 0 });
      opened.inc({ route }, 0);
      for (const reason of CLOSE_REASONS) closed.inc({ route, reason }, 0);
      for (const reason of ACQUIRE_FAILURES) connectFailures.inc({ route, reason }, 0);
      for (const reason of DEAD_PEER_REASONS) detection.zero({ route, reason });
      connectDuration.zero({ route });
      for (const reason of EJECT_REASONS) ejections.inc({ route, reason }, 0);
      for (const outcome of RESOLVE_OUTCOMES) resolutions.inc({ route, outcome }, 0);
      pool.endpoints.on('ejected', (_ep, reason) => ejections.inc({ route, reason }));
      pool.endpoints.on('resolved', (outcome) => resolutions.inc({ route, outcome }));
      pool.endpoints.on('resolveFailed', () => resolutions.inc({ route, outcome: 'failed' }));
      pool.on('connected', (_conn, connectMs) => {
        opened.inc({ route });
        connectDuration.observe({ route }, connectMs / 1000);
      });
      pool.on('connectFailed', (reason) => connectFailures.inc({ route, reason }));
      pool.on('sockoptFailed', (_conn, f) => sockoptFailures.inc({ option: f.option }));
      pool.on('closed', (_conn, info) => {
        closed.inc({ route, reason: info.reason });
        const b = closedBytes.get(route);
        if (b !== undefined) {
          b.rx += info.bytesRead;
          b.tx += info.bytesWritten;
        }
        if (DEAD_PEER_REASONS.has(info.reason)) detection.observe({ route, reason: info.reason }, info.sinceLastRecvMs / 1000);
      });
    },
    observeListener(listener) {
      const l = listener as ObservedListener;
      listeners.push(l);
      const route = l.route.name;
      // A clean FIN (peer_closed, downstream_closed) is passed on as FIN, never as a reset (proxy/tcp-pipe.ts).
      for (const reason of [...CLOSE_REASONS, ...ACQUIRE_FAILURES]) {
        if (reason !== 'peer_closed' && reason !== 'downstream_closed') downstreamResets.inc({ route, reason }, 0);
      }
      l.on('downstreamReset', (reason) => downstreamResets.inc({ route, reason }));
      for (const reason of DOWNSTREAM_REJECT_REASONS) downstreamRejected.inc({ route, reason }, 0);
      l.on('downstreamRejected', (reason) => downstreamRejected.inc({ route, reason }));
    },
  };
}
