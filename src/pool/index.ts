// Upstream pool: owns upstream sockets (connect, idle set, leases), applies socket options on connect,
// records each close's first cause. Emits typed events; never imports listeners, metrics, admin or log.
export { Lease, Pool } from './pool.js';
export type { AcquireOptions, CloseInfo, LeaseRequester, PoolEvents, PoolOptions, PoolStats } from './pool.js';
export { UpstreamConn } from './conn.js';
export { transition } from './state.js';
export type { ConnEvent, ConnState, Effect, StateName } from './state.js';
