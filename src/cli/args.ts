/** argv -> command. Pure; reports usage errors as UsageError. */
import { parseArgs } from 'node:util';
import { UsageError } from '../errors.js';

export const COMMANDS = ['run', 'check', 'print-config', 'demo', 'start', 'doctor'] as const;
export type Command = (typeof COMMANDS)[number] | 'help' | 'version';

export interface ParsedArgs {
  readonly command: Command;
  readonly configFile: string | undefined;
  /** doctor: admin base URL of a running sidecar. */
  readonly adminUrl?: string | undefined;
  /** doctor: root of the proc filesystem (default /proc). */
  readonly procRoot?: string | undefined;
}

export const HELP = `keepalive-sidecar: a sidecar proxy that drops dead upstream connections the moment the kernel knows.

Usage: keepalive-sidecar [command] [--config FILE]
       keepalive-sidecar doctor [--config FILE] [--admin-url URL] [--proc-root DIR]

Commands:
  run            serve the configured routes (the default)
  check          validate the configuration and socket options, then exit
  print-config   print the effective configuration as JSON
  demo           start a built-in upstream and a route to it, and print what to try
  start          "run" when a configuration is given, else "demo" (what npm start does)
  doctor         explain how long a dead peer goes unnoticed here, with and without the sidecar; check
                 the socket options; list a running sidecar's sockets and timers (exit 5 on a problem)

Options:
  -c, --config FILE   JSON or YAML configuration file (or SIDECAR_CONFIG)
  --admin-url URL     doctor: admin address of a running sidecar (default: the configured admin port)
  --proc-root DIR     doctor: read sysctls from DIR/sys/net/ipv4 instead of /proc/sys/net/ipv4
  -h, --help          this help
  -v, --version       print the version

Single route without a file:
  SIDECAR_UPSTREAM=host:port SIDECAR_LISTEN=[host:]port SIDECAR_MODE=tcp keepalive-sidecar run

Exit codes: 0 ok, 1 runtime failure, 2 usage, 3 invalid configuration, 4 socket options unsupported,
5 doctor found a problem.
`;

export function parseCliArgs(argv: readonly string[]): ParsedArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: 'string', short: 'c' },
        'admin-url': { type: 'string' },
        'proc-root': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help === true) return { command: 'help', configFile: undefined };
  if (values.version === true) return { command: 'version', configFile: undefined };
  if (positionals.length > 1) throw new UsageError(`unexpected arguments: ${positionals.slice(1).join(' ')}`);
  const command = positionals[0] ?? 'run';
  if (!(COMMANDS as readonly string[]).includes(command)) throw new UsageError(`unknown command "${command}" (try --help)`);
  if (command !== 'doctor') {
    for (const opt of ['admin-url', 'proc-root'] as const) {
      if (values[opt] !== undefined) throw new UsageError(`--${opt} is only used by "doctor"`);
    }
  }
  return { command: command as Command, configFile: values.config, adminUrl: values['admin-url'], procRoot: values['proc-root'] };
}
