// Liveness: turns errors and events into close reasons (classify.ts is the only reader of errno strings),
// and models how long the kernel takes to declare a silent peer dead (detection-time.ts).
// Pure functions only: no sockets, no timers, no logging.
export { classifyConnectError, classifyError, errnoOf } from './classify.js';
export type { ClassifyContext } from './classify.js';
export { formatDuration, idleDetectionMs, inFlightDetectionMs, retransmitTimeoutMs, TCP_RTO_MAX_MS, TCP_RTO_MIN_MS } from './detection-time.js';
export type { KeepaliveTimers } from './detection-time.js';
export { hasNoAckEvidence } from './ack-evidence.js';
export type { AckSnapshot } from './ack-evidence.js';
