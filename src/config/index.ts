// Configuration: the one schema, the loader (env, argv and file in; frozen typed Config out).
// The only module that reads the environment. It binds nothing and starts nothing.
export { loadConfig, parseHostPort, DEFAULT_USER_TIMEOUT_MS } from './load.js';
export type { LoadInputs } from './load.js';
export { routeSchema, topSchema } from './schema.js';
export { redactConfig, REDACTED } from './redact.js';
export type * from './types.js';
