/**
 * The closed sets of reasons. They are the only values allowed in a `reason` label and in the `reason`
 * log field; everything else (errno strings, addresses) goes to the log under `err`, never into a label.
 */

/** Why an upstream (or downstream) connection ended. Decided once, by liveness/classify.ts or by our own timers. */
export const CLOSE_REASONS = [
  /** Kernel keepalive probes went unanswered (ETIMEDOUT with nothing of ours in flight). */
  'keepalive_timeout',
  /** TCP_USER_TIMEOUT expired with data of ours unacknowledged (ETIMEDOUT while in flight). */
  'user_timeout',
  /** No ACK for a written request within earlyRetry.afterMs, seen in TCP_INFO (HTTP early retry). */
  'no_ack',
  /** ECONNRESET / EPIPE: the peer (or a middlebox) reset the connection. */
  'peer_reset',
  /** The peer sent FIN. */
  'peer_closed',
  /** Our idle timer retired the connection. */
  'idle_evicted',
  /** Our max-age timer retired the connection. */
  'max_age',
  /** The sidecar is shutting down. */
  'local_shutdown',
  /** The downstream side ended or reset, so we closed its upstream partner. */
  'downstream_closed',
  /** The upstream did not answer within responseTimeoutMs (HTTP). */
  'response_timeout',
  /** The upstream spoke something we cannot frame (HTTP). */
  'protocol_error',
  /** A sibling to the same upstream address died of a dead-peer reason; this one was retired with it. */
  'sibling_evicted',
  /** The upstream address went out of DNS (issue 14): its idle connections are retired, busy ones finish. */
  'endpoint_removed',
  /** h2: a PING (before use or periodic) got no ACK and no byte within h2.pingTimeoutMs (issue 13). */
  'ping_timeout',
  /** h2: the upstream sent GOAWAY; the session drained and closed (issue 13). */
  'goaway',
  /**
   * h2: we reset so many of the session's streams (the app cancelled them) that the server's rapid-reset
   * defence would soon close it with every other stream on it; retired first (drains, closes when its streams end).
   */
  'reset_budget',
  /** Anything else; the raw error goes to the log. */
  'other',
] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number];

/** Why we could not obtain an upstream connection for a downstream. */
export const ACQUIRE_FAILURES = [
  'overflow',
  /** Waited in the pending queue longer than pendingTimeoutMs (HAProxy's `timeout queue`). */
  'pending_timeout',
  'connect_refused',
  'connect_timeout',
  'connect_error',
  /** The upstream host name did not resolve (ENOTFOUND, EAI_AGAIN, EAI_FAIL, ...). */
  'resolve_failed',
  'shutting_down',
] as const;
export type AcquireFailure = (typeof ACQUIRE_FAILURES)[number];

/** Why an app (downstream) connection was refused at accept (issue 11, point 10). */
export const DOWNSTREAM_REJECT_REASONS = [
  /** Over the route's cap (tcp: maxConnections, http: http.maxDownstreamConnections). */
  'overflow',
  /** Admitting it would eat into the fd reserve kept for /live and the admin port (listeners/fd-budget.ts). */
  'fd_reserve',
  /** accept() itself failed (EMFILE, ENFILE...); the raw error goes to the log. */
  'accept_error',
] as const;
export type DownstreamRejectReason = (typeof DOWNSTREAM_REJECT_REASONS)[number];

/** Reasons a downstream connection was reset by us: its upstream died, or none could be had. */
export type DownstreamResetReason = CloseReason | AcquireFailure;

/** Close reasons that mean "the peer is silently gone" (the kernel or our ACK check said so). */
export const DEAD_PEER_REASONS: ReadonlySet<CloseReason> = new Set<CloseReason>([
  'keepalive_timeout',
  'user_timeout',
  'no_ack',
  // h2: a PING (before use, periodic or confirming ACK evidence) got no answer within pingTimeoutMs.
  'ping_timeout',
]);

/** Where the socket stood when it failed; carried by errors and close events for logs. */
export interface SocketSnapshot {
  readonly localAddress: string | undefined;
  readonly localPort: number | undefined;
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  readonly bytesRead: number;
  readonly bytesWritten: number;
}

/** Base of every error the sidecar raises itself. Branch on `code`, never on the message. */
export class SidecarError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The configuration is invalid. `problems` lists every problem, each with its key path. */
export class ConfigError extends SidecarError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super('SIDECAR_ERR_CONFIG', `invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.problems = problems;
  }
}

/** A configured socket option cannot be set (or does not read back) on this kernel. */
export class SockoptUnsupportedError extends SidecarError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super('SIDECAR_ERR_SOCKOPT', `socket options cannot be set on this system:\n  - ${problems.join('\n  - ')}`);
    this.problems = problems;
  }
}

/** An upstream connection could not be obtained. */
export class AcquireError extends SidecarError {
  readonly reason: AcquireFailure;
  constructor(reason: AcquireFailure, message: string, options?: { cause?: unknown }) {
    super('SIDECAR_ERR_ACQUIRE', message, options);
    this.reason = reason;
  }
}

/** Command-line usage error. */
export class UsageError extends SidecarError {
  constructor(message: string) {
    super('SIDECAR_ERR_USAGE', message);
  }
}

/** `inject` cannot process its input (not YAML, unknown kind, port clash, ...). */
export class InjectError extends SidecarError {
  constructor(message: string) {
    super('SIDECAR_ERR_INJECT', message);
  }
}

/** Throws on a broken invariant; used at the end of exhaustive switches. */
export function assertNever(value: never, what = 'value'): never {
  throw new Error(`unexpected ${what}: ${String(value)}`);
}
