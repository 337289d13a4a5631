// Upstream pool: policy (sets per state, limits, pending queue, eviction) over UpstreamConn objects, each of
// which owns its socket, protocol driver (raw or HTTP/1), idle reader and the one decision of its close
// reason; and the route's endpoints (every address the host resolves to: P2C, ejection, re-resolution).
// Emits typed events; never imports listeners, metrics, admin or log.
export { Lease } from './lease.js';
export { Pool } from './pool.js';
export type { AcquireOptions, CloseInfo, LeaseRequester, PoolEvents, PoolOptions, PoolStats } from './pool.js';
export { UpstreamConn } from './conn.js';
export { Endpoint, EndpointSet, ENDPOINT_STATES, RESOLVE_OUTCOMES } from './endpoints.js';
export type { EjectReason, EndpointState, EndpointView, ResolveOutcome } from './endpoints.js';
export { createResolver } from './resolver.js';
export type { ResolvedAddress, ResolveFn } from './resolver.js';
export type { CloseCause } from './conn.js';
export type { H1Driver } from './h1-driver.js';
export { transition } from './state.js';
export type { ConnEvent, ConnState, Effect, StateName } from './state.js';
// h2 (issue 13): types only here, so a tcp-only sidecar never loads node:http2 code (sidecar.ts imports the
// h2 modules lazily, by file).
export type { H2Pool, H2PoolEvents } from './h2-pool.js';
export type { H2Driver, H2Requester, H2SessionState } from './h2-driver.js';
/** Any route's pool, as metrics, logs and /debug see it. */
export type AnyPool = import('./pool.js').Pool | import('./h2-pool.js').H2Pool;
