// Lifecycle: the drain sequence on shutdown. It orders steps; it installs no signal handlers (main does).
export { shutdown } from './shutdown.js';
export type { Drainable, ShutdownParts } from './shutdown.js';
