// Admin: /live, /ready, /metrics on the pod-facing admin port; /debug/* on the loopback debug port. Read-only
// views of pools and config, bounded in connections, time and work per request; it must never change
// connection state.
export { ADMIN_LIMITS, ADMIN_PATHS, AdminServer, DebugServer } from './server.js';
export type { AdminDeps, ConnectionsPage, ConnectionView, EndpointsReport } from './server.js';
