/** Typed, frozen configuration. Components receive only their own slice. */

export type Mode = 'tcp' | 'http' | 'h2';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Per-socket TCP keepalive and TCP_USER_TIMEOUT, as configured (milliseconds; idle and interval are whole seconds). */
export interface KeepaliveConfig {
  readonly idleMs: number;
  readonly intervalMs: number;
  readonly probes: number;
  /** 0 disables TCP_USER_TIMEOUT (the kernel then falls back to tcp_retries2 for data in flight). */
  readonly userTimeoutMs: number;
}

export interface RetryConfig {
  readonly attempts: number;
  readonly maxBodyBytes: number;
  /** Retries allowed as a percentage of recent requests (plus minPerSec), so a dead upstream is not hammered. */
  readonly budgetPercent: number;
  readonly minPerSec: number;
}

export interface EarlyRetryConfig {
  readonly enabled: boolean;
  readonly afterMs: number;
}

export interface HttpConfig {
  readonly maxIdle: number;
  readonly idleTimeoutMs: number;
  readonly maxPending: number;
  readonly pendingTimeoutMs: number;
  readonly maxHeaderCount: number;
  readonly maxInformationalResponses: number;
  readonly responseTimeoutMs: number;
  readonly maxHeaderBytes: number;
  readonly downstreamIdleTimeoutMs: number;
  readonly downstreamWriteTimeoutMs: number;
  readonly requestHeadTimeoutMs: number;
  readonly maxDownstreamConnections: number;
  readonly siblingEviction: boolean;
  readonly retry: RetryConfig;
  readonly earlyRetry: EarlyRetryConfig;
}

/** Where a route connects: a host name (every address it resolves to is an endpoint, issue 14) or an IP. */
export interface UpstreamConfig extends HostPort {
  /** "all": every A/AAAA address, re-resolved every resolveIntervalMs (or the TTL, if lower); "once": resolved once. */
  readonly resolve: 'all' | 'once';
  readonly resolveIntervalMs: number;
  /** "ip:port" resolvers to ask instead of the system's resolv.conf (empty = system). */
  readonly dnsServers: readonly string[];
}

/** h2 retry: RetryConfig plus the gRPC methods that are safe to replay (issue 13). */
export interface H2RetryConfig extends RetryConfig {
  /** Exact "/pkg.Service/Method" or "/pkg.Service/*". */
  readonly grpcIdempotentMethods: readonly string[];
}

/** h2 routes (issue 13): PING liveness, session pool and stream rescue. All ms. */
export interface H2Config {
  readonly pingIdleMs: number;
  readonly pingTimeoutMs: number;
  readonly pingIntervalMs: number;
  readonly maxConcurrentStreams: number;
  readonly maxSessionMemoryMiB: number;
  readonly idleTimeoutMs: number;
  readonly retry: H2RetryConfig;
}

export interface RouteConfig {
  readonly name: string;
  readonly mode: Mode;
  readonly listen: HostPort;
  readonly upstream: UpstreamConfig;
  readonly keepalive: KeepaliveConfig;
  readonly connectTimeoutMs: number;
  readonly maxConnections: number;
  readonly warmSpares: number;
  readonly maxAgeMs: number;
  readonly http: HttpConfig;
  readonly h2: H2Config;
}

/** The slice the upstream pool needs. */
export type PoolConfig = Pick<
  RouteConfig,
  'name' | 'upstream' | 'keepalive' | 'connectTimeoutMs' | 'maxConnections' | 'warmSpares' | 'maxAgeMs'
>;

export interface AdminConfig {
  readonly enabled: boolean;
  readonly host: string;
  readonly port: number;
}

/** The loopback-only /debug/* listener (#11); runs when admin.enabled. */
export interface DebugConfig {
  readonly host: string;
  readonly port: number;
}

export interface Config {
  readonly admin: AdminConfig;
  readonly debug: DebugConfig;
  readonly log: { readonly level: LogLevel };
  readonly shutdown: { readonly drainTimeoutMs: number };
  readonly routes: readonly RouteConfig[];
}
