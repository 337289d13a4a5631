/** The pino root logger: JSON lines to stdout. Created once, in main. */
import { pino } from 'pino';
import type { Logger } from 'pino';
import type { LogLevel } from '../config/index.js';

export type { Logger };

export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
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
