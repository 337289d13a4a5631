// Logging: the pino root, canonical field names, and subscribers that turn pool/listener events into lines.
// Nothing here changes state; nothing logs per chunk.
export { createLogger } from './logger.js';
export type { Logger } from './logger.js';
export { F } from './fields.js';
export { logHttpListenerEvents, logListenerEvents, logPoolEvents } from './subscribe.js';
