/** Every exit code the CLI uses, in one table. */
export const EXIT = {
  ok: 0,
  /** A runtime failure (e.g. a port already in use). */
  runtime: 1,
  /** Bad command line. */
  usage: 2,
  /** Invalid configuration: every problem was printed. */
  config: 3,
  /** A configured socket option cannot be set on this system. */
  sockopt: 4,
  /** `doctor` found a problem. */
  problem: 5,
  /** `inject` could not process its input (not YAML, unknown kind, port clash); nothing was printed to stdout. */
  input: 6,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];
