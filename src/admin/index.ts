// Admin: /live, /ready, /metrics and /debug/* on their own port. Read-only views of pools and config;
// it must never change connection state.
export { ADMIN_PATHS, AdminServer } from './server.js';
export type { AdminDeps, ConnectionView } from './server.js';
