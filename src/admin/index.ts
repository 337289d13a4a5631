// Admin: /live, /ready, /metrics and /debug/* on their own port. Read-only views of pools and config;
// it must never change connection state.
export { AdminServer } from './server.js';
export type { AdminDeps } from './server.js';
