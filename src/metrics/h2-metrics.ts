/**
 * h2 route metrics (issue 13), fed by H2Pool and H2Listener events (never by the exchange or the driver
 * themselves). Labels from bounded sets only: route (config), state, code (lowercase h2 error names, unknown
 * codes as "unknown"), kind, outcome, reason (the closed sets in errors.ts). Per-stream counts are plain
 * numbers read at scrape time (prom-client's label hashing costs ~1.5 µs per call).
 */
import http2 from 'node:http2';
import { Counter, Gauge, Histogram } from './prom.js';
import type { Registry } from 'prom-client';
import { ACQUIRE_FAILURES, CLOSE_REASONS } from '../errors.js';
import type { H2Listener } from '../listeners/h2.js';
import type { H2Pool } from '../pool/h2-pool.js';
import type { H2StreamOutcome } from '../proxy/h2-exchange.js';
import { PREFIX } from './registry.js';

const OUTCOMES: readonly H2StreamOutcome[] = ['ok', 'rescued', 'reset', 'failed'];
const STATES = ['connecting', 'ready', 'full', 'draining'] as const;

/** RFC 9113 §7 error codes by number -> lowercase names (the `code` label). */
const H2_CODE_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(http2.constants)
    .filter(([k]) => k.startsWith('NGHTTP2_') && /^NGHTTP2_(NO_ERROR|PROTOCOL_ERROR|INTERNAL_ERROR|FLOW_CONTROL_ERROR|SETTINGS_TIMEOUT|STREAM_CLOSED|FRAME_SIZE_ERROR|REFUSED_STREAM|CANCEL|COMPRESSION_ERROR|CONNECT_ERROR|ENHANCE_YOUR_CALM|INADEQUATE_SECURITY|HTTP_1_1_REQUIRED)$/.test(k))
    .map(([k, v]) => [v as number, k.slice('NGHTTP2_'.length).toLowerCase()]),
);

/** The `code` label of a GOAWAY error code. */
export function h2CodeName(code: number): string {
  return H2_CODE_NAMES.get(code) ?? 'unknown';
}

export interface H2Metrics {
  observeH2(pool: H2Pool, listener: H2Listener): void;
}

export function createH2Metrics(registry: Registry): H2Metrics {
  const registers = [registry];
  const pools: H2Pool[] = [];
  const outcomes = new Map<string, Record<H2StreamOutcome, number>>();
  new Gauge({
    name: `${PREFIX}h2_sessions`,
    help: 'Upstream h2 sessions by state (connecting, ready: room for streams, full, draining: GOAWAY or retired), read at scrape time.',
    labelNames: ['route', 'state'] as const,
    registers,
    collect() {
      this.reset();
      for (const p of pools) {
        const counts = p.sessionCounts();
        for (const state of STATES) this.set({ route: p.config.name, state }, counts[state]);
      }
    },
  });
  const goaways = new Counter({
    name: `${PREFIX}h2_goaways_received_total`,
    help: 'GOAWAY frames received from upstreams, by error code (lowercase RFC 9113 name).',
    labelNames: ['route', 'code'] as const,
    registers,
  });
  const pings = new Counter({
    name: `${PREFIX}h2_pings_sent_total`,
    help: 'PINGs sent upstream: before_use (a silent session before its next stream), periodic (streams open, nothing read), ack_evidence (TCP_INFO: bytes unacknowledged and retransmitted).',
    labelNames: ['route', 'kind'] as const,
    registers,
  });
  const rtt = new Histogram({
    name: `${PREFIX}h2_ping_rtt_seconds`,
    help: 'Round trip of answered PINGs.',
    labelNames: ['route'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers,
  });
  new Counter({
    name: `${PREFIX}h2_streams_total`,
    help: 'Downstream h2 streams ended, by outcome: ok, rescued (completed after a replay), reset (RST_STREAM), failed (answered by the sidecar).',
    labelNames: ['route', 'outcome'] as const,
    registers,
    collect() {
      this.reset();
      for (const [route, counts] of outcomes) for (const outcome of OUTCOMES) this.inc({ route, outcome }, counts[outcome]);
    },
  });
  const rescued = new Counter({
    name: `${PREFIX}h2_streams_rescued_total`,
    help: 'Streams placed again on another session, by the reason their session died or refused them.',
    labelNames: ['route', 'reason'] as const,
    registers,
  });
  const reset = new Counter({
    name: `${PREFIX}h2_streams_reset_total`,
    help: 'Downstream streams that ended in RST_STREAM or a sidecar answer, by reason.',
    labelNames: ['route', 'reason'] as const,
    registers,
  });
  const backoffs = new Counter({
    name: `${PREFIX}h2_ping_backoffs_total`,
    help: 'Periodic PING interval doublings after GOAWAY too_many_pings.',
    labelNames: ['route'] as const,
    registers,
  });
  return {
    observeH2(pool, listener) {
      pools.push(pool);
      const route = pool.config.name;
      const counts: Record<H2StreamOutcome, number> = { ok: 0, rescued: 0, reset: 0, failed: 0 };
      outcomes.set(route, counts);
      for (const kind of ['before_use', 'periodic', 'ack_evidence']) pings.inc({ route, kind }, 0);
      for (const code of ['no_error', 'enhance_your_calm']) goaways.inc({ route, code }, 0);
      for (const reason of [...CLOSE_REASONS, ...ACQUIRE_FAILURES]) {
        rescued.inc({ route, reason }, 0);
        reset.inc({ route, reason }, 0);
      }
      rtt.zero({ route });
      backoffs.inc({ route }, 0);
      pool.h2events.on('pingSent', (_c, kind) => pings.inc({ route, kind }));
      pool.h2events.on('pingAcked', (_c, ms) => rtt.observe({ route }, ms / 1000));
      pool.h2events.on('goawayReceived', (_c, code) => goaways.inc({ route, code: h2CodeName(code) }));
      pool.h2events.on('pingBackoff', () => backoffs.inc({ route }));
      listener.on('streamEnded', (outcome, reason) => {
        counts[outcome]++;
        if ((outcome === 'reset' || outcome === 'failed') && reason !== undefined) reset.inc({ route, reason });
      });
      listener.on('streamRescued', (reason) => rescued.inc({ route, reason }));
    },
  };
}
