// Liveness: turns errors and events into close reasons (classify.ts is the only reader of errno strings).
// Pure functions only: no sockets, no timers, no logging.
export { classifyConnectError, classifyError, errnoOf } from './classify.js';
export type { ClassifyContext } from './classify.js';
