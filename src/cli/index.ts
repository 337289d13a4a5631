// CLI: argv -> command -> exit code (one table in exit-codes.ts). Only bin.ts and main.ts here touch the
// process (signals, exit); everything they run is built by sidecar.ts.
export { cliMain } from './main.js';
export type { CliIo } from './main.js';
export { EXIT } from './exit-codes.js';
export { parseCliArgs } from './args.js';
