/**
 * The only configuration schema (convict). Top-level keys can be set from the environment (SIDECAR_*);
 * routes come from a file, or from the single-route shortcut SIDECAR_UPSTREAM / SIDECAR_LISTEN / SIDECAR_MODE.
 */
import { createRequire } from 'node:module';

// CommonJS packages are required, not imported: an ESM import of one makes Node scan its source for named
// exports (cjs-module-lexer), work that idle RSS keeps paying for (see bench/idle-rss.ts).
const convict = createRequire(import.meta.url)('convict') as typeof import('convict');

let formatsAdded = false;

/** Registers our custom formats once (convict keeps them globally). */
export function addFormats(): void {
  if (formatsAdded) return;
  formatsAdded = true;
  convict.addFormat({
    name: 'required-string',
    validate(v: unknown) {
      if (typeof v !== 'string' || v.length === 0) throw new Error('is required (a non-empty string)');
    },
  });
  convict.addFormat({
    name: 'route-name',
    validate(v: unknown) {
      if (typeof v !== 'string' || !/^[a-z][a-z0-9_-]{0,62}$/.test(v)) {
        throw new Error('is required: lower-case letters, digits, "_" or "-", starting with a letter (it becomes a metric label)');
      }
    },
  });
  convict.addFormat({
    name: 'listen-port',
    validate(v: unknown) {
      if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 65535) {
        throw new Error('is required: an integer port 0-65535 (0 = pick a free port)');
      }
    },
    coerce: (v: unknown) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v),
  });
  convict.addFormat({
    name: 'upstream-port',
    validate(v: unknown) {
      if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 65535) {
        throw new Error('is required: an integer port 1-65535');
      }
    },
    coerce: (v: unknown) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v),
  });
  convict.addFormat({
    name: 'whole-seconds-ms',
    validate(v: unknown) {
      // The kernel takes TCP_KEEPIDLE/TCP_KEEPINTVL in whole seconds (tcp(7)); 1500 would silently become 1 s.
      if (!Number.isInteger(v) || (v as number) < 1000 || (v as number) % 1000 !== 0 || (v as number) > 32767000) {
        throw new Error('must be a whole number of seconds in milliseconds, 1000-32767000 (the kernel counts in seconds)');
      }
    },
  });
  convict.addFormat({
    name: 'probes',
    validate(v: unknown) {
      if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 127) throw new Error('must be an integer 1-127 (TCP_KEEPCNT)');
    },
  });
  convict.addFormat({
    name: 'user-timeout-ms',
    validate(v: unknown) {
      if (v === null) return; // null = the mode's default
      if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 2147483647) {
        throw new Error('must be an integer >= 0 (0 disables TCP_USER_TIMEOUT)');
      }
    },
  });
  convict.addFormat({
    name: 'positive-int',
    validate(v: unknown) {
      if (!Number.isInteger(v) || (v as number) < 1) throw new Error('must be an integer >= 1');
    },
    coerce: (v: unknown) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v),
  });
  convict.addFormat({
    name: 'ping-interval-ms',
    validate(v: unknown) {
      if (!Number.isInteger(v) || (v as number) < 1000) throw new Error('must be an integer >= 1000 (gRPC servers police PINGs: see README gRPC)');
    },
  });
  convict.addFormat({
    name: 'string-array',
    validate(v: unknown) {
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new Error('must be an array of strings');
    },
  });
  convict.addFormat({
    name: 'early-retry-ms',
    validate(v: unknown) {
      if (!Number.isInteger(v) || (v as number) < 250) {
        throw new Error('must be an integer >= 250 (below that a healthy peer\'s delayed ACK could look like a dead one)');
      }
    },
  });
}

/** Top-level keys. `routes` is validated item by item with routeSchema. */
export const topSchema = {
  config: {
    doc: 'Path to a JSON or YAML configuration file.',
    format: String,
    default: '',
    env: 'SIDECAR_CONFIG',
  },
  admin: {
    enabled: {
      doc: 'Serve /live, /ready and /metrics on the admin listener, and /debug/* on the debug listener.',
      format: Boolean,
      default: true,
      env: 'SIDECAR_ADMIN_ENABLED',
    },
    host: {
      doc: 'Admin listener address (use the pod IP or 0.0.0.0 to let Prometheus scrape from outside the pod).',
      format: 'required-string',
      default: '127.0.0.1',
      env: 'SIDECAR_ADMIN_HOST',
    },
    port: {
      doc: 'Admin listener port (0 = pick a free port).',
      format: 'listen-port',
      default: 9901,
      env: 'SIDECAR_ADMIN_PORT',
    },
  },
  // Debug listener (#11): /debug/* only, on loopback, apart from the pod-facing admin port (as Envoy's admin
  // stays on localhost while Istio's agent serves probes and merged metrics on the pod IP).
  debug: {
    host: {
      doc: 'Debug listener address for /debug/* (connections, config). Must be a loopback address (127.0.0.0/8 or ::1): the views show addresses and config, and are never exposed to the pod network.',
      format: 'required-string',
      default: '127.0.0.1',
      env: 'SIDECAR_DEBUG_HOST',
    },
    port: {
      doc: 'Debug listener port (0 = pick a free port). Served only while admin.enabled is true.',
      format: 'listen-port',
      default: 9902,
      env: 'SIDECAR_DEBUG_PORT',
    },
  },
  log: {
    level: {
      doc: 'Log level (pino).',
      format: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      default: 'info',
      env: 'SIDECAR_LOG_LEVEL',
    },
  },
  shutdown: {
    drainTimeoutMs: {
      doc: 'On SIGTERM/SIGINT: how long open connections may finish before they are reset with local_shutdown.',
      format: 'nat',
      default: 15000,
      env: 'SIDECAR_DRAIN_TIMEOUT_MS',
    },
  },
  routes: {
    doc: 'Routes: each listens on a local port and forwards to one upstream. See routeSchema.',
    format: Array,
    default: [] as unknown[],
  },
};

/** One route. Keys carry units. Defaults are the production defaults. */
export const routeSchema = {
  name: {
    doc: 'Route name; used as the `route` label in metrics and logs.',
    format: 'route-name',
    default: null as unknown as string,
  },
  mode: {
    doc: '"tcp": byte pipe for any protocol; "http": HTTP/1.1 reverse proxy with a keep-alive pool and retries; "h2": HTTP/2 (h2c) and gRPC reverse proxy with PING liveness and stream rescue.',
    format: ['tcp', 'http', 'h2'],
    default: 'tcp',
  },
  listen: {
    host: { doc: 'Local address to listen on.', format: 'required-string', default: '127.0.0.1' },
    port: { doc: 'Local port to listen on (0 = pick a free port).', format: 'listen-port', default: null as unknown as number },
  },
  upstream: {
    host: { doc: 'Upstream host name or address.', format: 'required-string', default: null as unknown as string },
    port: { doc: 'Upstream port.', format: 'upstream-port', default: null as unknown as number },
    // Issue 14: several endpoints per route (a headless Service gives one A record per pod).
    resolve: {
      doc: '"all": every A/AAAA address of upstream.host is an endpoint (P2C balancing, per-endpoint ejection), re-resolved every resolveIntervalMs or at the record TTL if lower (>= 1 s); "once": resolved once at start, never again. An IP literal is always one endpoint.',
      format: ['all', 'once'],
      default: 'all',
    },
    resolveIntervalMs: {
      doc: 'Re-resolution interval of upstream.host (resolve: all); the record TTL wins when lower, bounded below by 1000.',
      format: 'positive-int',
      default: 5000,
    },
    dnsServers: {
      doc: 'Resolvers to ask, as "ip:port" (or "[v6]:port"); empty = the system resolv.conf, with its search domains and ndots.',
      format: Array,
      default: [] as string[],
    },
  },
  keepalive: {
    idleMs: {
      doc: 'TCP_KEEPIDLE: idle time before the first keepalive probe (whole seconds, >= 1000).',
      format: 'whole-seconds-ms',
      default: 3000,
    },
    intervalMs: {
      doc: 'TCP_KEEPINTVL: time between keepalive probes (whole seconds, >= 1000).',
      format: 'whole-seconds-ms',
      default: 1000,
    },
    probes: {
      doc: 'TCP_KEEPCNT: unanswered probes before the connection is declared dead (ignored by Linux once TCP_USER_TIMEOUT is set).',
      format: 'probes',
      default: 3,
    },
    userTimeoutMs: {
      doc: 'TCP_USER_TIMEOUT: how long written data may stay unacknowledged (and, with keepalive, how long a silent peer is tolerated) before the kernel kills the connection. null = mode default (tcp 5000, http 10000); 0 = off.',
      format: 'user-timeout-ms',
      default: null as unknown as number,
    },
  },
  connectTimeoutMs: { doc: 'Upstream connect timeout.', format: 'positive-int', default: 3000 },
  maxConnections: {
    doc: 'Most upstream connections this route may hold (tcp: also the most downstream connections).',
    format: 'positive-int',
    default: 1024,
  },
  warmSpares: {
    doc: 'tcp: connected upstream spares kept ready (with keepalive) so a new downstream does not wait for a connect.',
    format: 'nat',
    default: 0,
  },
  maxAgeMs: {
    doc: 'Idle pooled connections (tcp spares, http keep-alive) older than this (+/-10% jitter) are retired with max_age.',
    format: 'positive-int',
    default: 300000,
  },
  http: {
    maxIdle: { doc: 'http: most idle keep-alive connections kept.', format: 'nat', default: 256 },
    idleTimeoutMs: {
      doc: 'http: idle keep-alive connections are retired after this (lowered to the upstream Keep-Alive: timeout hint minus 1 s).',
      format: 'positive-int',
      default: 60000,
    },
    maxPending: { doc: 'http: requests that may wait for a connection; more get 503 at once.', format: 'nat', default: 1024 },
    pendingTimeoutMs: {
      doc: 'http: longest a request waits in the pending queue for a connection (HAProxy `timeout queue`); then 503 with x-sidecar-error: pending_timeout. 0 = no bound.',
      format: 'nat',
      default: 5000,
    },
    // Hostile-input bounds (issue 11).
    maxHeaderCount: {
      doc: 'http: most header fields in a request (more: 431) or an upstream response (more: 502 protocol_error).',
      format: 'positive-int',
      default: 100,
    },
    maxInformationalResponses: {
      doc: 'http: most 1xx responses before the final one; more: 502 protocol_error and the connection is closed.',
      format: 'positive-int',
      default: 10,
    },
    responseTimeoutMs: {
      doc: 'http: time to wait for response headers, counted from the request\'s last byte (0 = off); on expiry 504 and the connection is destroyed.',
      format: 'nat',
      default: 0,
    },
    maxHeaderBytes: { doc: 'http: largest request header section; larger gets 431.', format: 'positive-int', default: 16384 },
    downstreamIdleTimeoutMs: {
      doc: 'http: how long an idle app (downstream) keep-alive connection is kept open. Longer than the usual client pool idle timeouts, so the app closes first and never reuses a connection we are closing (Node\'s own default of 5 s races with clients that keep connections longer).',
      format: 'positive-int',
      default: 75000,
    },
    downstreamWriteTimeoutMs: {
      doc: 'http: how long a response may stay blocked on an app that does not read it (its socket backed up, no drain) before the app connection is closed and the upstream connection with it (downstream_closed); 0 = never. Without it an app that stops reading holds an upstream connection for ever (nginx send_timeout is 60 s).',
      format: 'nat',
      default: 60000,
    },
    // Issue 11 (drain/slowloris/exhaustion) -------------------------------------------------------------
    requestHeadTimeoutMs: {
      doc: 'http: time an app connection may take to send a complete request head, counted from its first byte (or from accept for a new connection); past it the app gets 408 and the connection closes (within ~0.5 s). Idle keep-alive connections between requests are governed by downstreamIdleTimeoutMs, not this.',
      format: 'positive-int',
      default: 10000,
    },
    maxDownstreamConnections: {
      doc: 'http: most app (downstream) connections open at once on this route, keep-alive ones included; more are reset at accept and counted as downstream_rejected_total{reason="overflow"}.',
      format: 'positive-int',
      default: 4096,
    },
    // ------------------------------------------------------------------------------------------------------
    siblingEviction: {
      doc: 'http: when one connection to an upstream address dies of a dead-peer reason, retire the other idle ones to it.',
      format: Boolean,
      default: true,
    },
    retry: {
      attempts: { doc: 'http: retries of a safe request trapped on a dead connection.', format: 'nat', default: 2 },
      maxBodyBytes: {
        doc: 'http: a request body is buffered for replay up to this size; larger bodies are streamed and not retried.',
        format: 'nat',
        default: 65536,
      },
      budgetPercent: { doc: 'http: retries allowed as % of requests in the last 10 s.', format: 'nat', default: 20 },
      minPerSec: { doc: 'http: retries always allowed per second, whatever the budget.', format: 'nat', default: 10 },
    },
    earlyRetry: {
      enabled: {
        doc: 'http: retry a safe request early when TCP_INFO shows its connection got no ACK for afterMs.',
        format: Boolean,
        default: true,
      },
      afterMs: { doc: 'http: how long a written request may go unacknowledged before the early check (>= 250).', format: 'early-retry-ms', default: 300 },
    },
  },
  // Issue 13: h2 routes (h2c prior knowledge both sides). All ms.
  h2: {
    pingIdleMs: {
      doc: 'h2: ping-before-use: a session that read nothing for this long gets a PING before its next stream; new streams wait for the ACK (or any byte).',
      format: 'positive-int',
      default: 5000,
    },
    pingTimeoutMs: {
      doc: 'h2: a PING must be answered (ACK or any byte) within this, else the session is dead (ping_timeout) and streams held for it go to another session.',
      format: 'positive-int',
      default: 1000,
    },
    pingIntervalMs: {
      doc: 'h2: periodic PING while streams are open and nothing was read this long (jitter +0..10%, never below; doubled per route on GOAWAY too_many_pings). Default 5 min: the gRPC servers\' floor (gRFC A8); lower it only for upstreams that allow it.',
      format: 'ping-interval-ms',
      default: 300000,
    },
    maxConcurrentStreams: {
      doc: 'h2: most streams per upstream session (the lower of this and the server\'s SETTINGS_MAX_CONCURRENT_STREAMS): bounds what one dead session takes down.',
      format: 'positive-int',
      default: 100,
    },
    maxSessionMemoryMiB: { doc: 'h2: node:http2 maxSessionMemory, both sides (MiB).', format: 'positive-int', default: 10 },
    idleTimeoutMs: { doc: 'h2: an upstream session with no stream for this long is closed (idle_evicted).', format: 'positive-int', default: 60000 },
    retry: {
      attempts: { doc: 'h2: replays of a stream trapped on a dead session (unknown state, safe only).', format: 'nat', default: 1 },
      maxBodyBytes: { doc: 'h2: request body kept for a replay up to this size; larger bodies are not replayed.', format: 'nat', default: 65536 },
      budgetPercent: { doc: 'h2: replays allowed as % of streams in the last 10 s.', format: 'nat', default: 20 },
      minPerSec: { doc: 'h2: replays always allowed per second, whatever the budget.', format: 'nat', default: 10 },
      grpcIdempotentMethods: {
        doc: 'h2: gRPC methods safe to replay when trapped in an unknown state: exact "/pkg.Service/Method" or "/pkg.Service/*".',
        format: 'string-array',
        default: [] as string[],
      },
    },
  },
};
