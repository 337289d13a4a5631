/** The pino root logger: JSON lines to stdout. Created once, in main. */
import { createRequire } from 'node:module';
import type { Logger } from 'pino';
import type * as Pino from 'pino';

// Required, not imported: pino is CommonJS, and an ESM import makes Node scan its source for named exports.
const { pino } = createRequire(import.meta.url)('pino') as typeof Pino;
import type { LogLevel } from '../config/index.js';

export type { Logger };

export function createLogger(level: LogLevel, destination?: Pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
