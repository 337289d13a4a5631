// Liveness: turns errors and events into close reasons (classify.ts is the only reader of errno strings),
// and TCP_INFO snapshots into a dead/alive verdict (ack-evidence.ts). Pure functions only: no sockets, no
// timers, no logging.
export { classifyConnectError, classifyError, errnoOf } from './classify.js';
export type { ClassifyContext } from './classify.js';
export { hasNoAckEvidence } from './ack-evidence.js';
export type { AckSnapshot } from './ack-evidence.js';
