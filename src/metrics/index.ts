// Metrics: one prom-client Registry (never the global one) and subscribers that count pool/listener events.
// Labels only from bounded sets; never addresses, ports or errno. Owns no sockets.
export { createRegistry, PREFIX } from './registry.js';
export { createMetrics } from './pool-metrics.js';
export type { ObservedListener, SidecarMetrics } from './pool-metrics.js';
export { createHttpMetrics } from './http-metrics.js';
export type { HttpMetrics } from './http-metrics.js';
