/** argv -> command. Pure; reports usage errors as UsageError. */
import { parseArgs } from 'node:util';
import { UsageError } from '../errors.js';

export const COMMANDS = ['run', 'check', 'print-config', 'demo', 'start', 'inject', 'doctor'] as const;
export type Command = (typeof COMMANDS)[number] | 'help' | 'version';

export interface ParsedArgs {
  readonly command: Command;
  readonly configFile: string | undefined;
  /** Set for `inject` only. */
  readonly inject?: InjectArgs;
  /** doctor: admin base URL of a running sidecar. */
  readonly adminUrl?: string | undefined;
  /** doctor: debug base URL (loopback) of a running sidecar. */
  readonly debugUrl?: string | undefined;
  /** doctor: root of the proc filesystem (default /proc). */
  readonly procRoot?: string | undefined;
}

/** `inject [FILE|-] --route SPEC [--route SPEC ...] [--legacy] [--image IMG] [--admin-port N]`. */
export interface InjectArgs {
  /** A file path, or '-' for standard input. */
  readonly input: string;
  readonly routes: readonly string[];
  readonly isLegacy: boolean;
  readonly image: string | undefined;
  readonly adminPort: number;
}

/** The admin port inject gives the sidecar unless --admin-port says otherwise (the config default). */
export const DEFAULT_ADMIN_PORT = 9901;

export const HELP = `keepalive-sidecar: a sidecar proxy that drops dead upstream connections the moment the kernel knows.

Usage: keepalive-sidecar [command] [--config FILE]
       keepalive-sidecar inject [FILE|-] --route name=pg,listen=15432,upstream=postgres:5432 [--route ...]
       keepalive-sidecar doctor [--config FILE] [--admin-url URL] [--debug-url URL] [--proc-root DIR]

Commands:
  run            serve the configured routes (the default)
  check          validate the configuration and socket options, then exit
  print-config   print the effective configuration as JSON
  demo           start a built-in upstream and a route to it, and print what to try
  start          "run" when a configuration is given, else "demo" (what npm start does)
  inject         add the sidecar to Kubernetes manifests (file or stdin, multi-document) and print them
  doctor         explain how long a dead peer goes unnoticed here, with and without the sidecar; check
                 the socket options; list a running sidecar's sockets and timers (exit 5 on a problem)

Options:
  -c, --config FILE   JSON or YAML configuration file (or SIDECAR_CONFIG)
  --admin-url URL     doctor: admin address of a running sidecar (default: the configured admin port)
  --debug-url URL     doctor: its loopback debug address for /debug/connections (default: the configured
                      debug.host and debug.port)
  --proc-root DIR     doctor: read sysctls from DIR/sys/net/ipv4 instead of /proc/sys/net/ipv4
  -h, --help          this help
  -v, --version       print the version

inject options:
  --route SPEC        name=N,mode=tcp|http|h2,listen=[host:]port,upstream=host:port (repeatable); optional
                      idleMs=,intervalMs=,probes=,userTimeoutMs=,connectTimeoutMs=,maxConnections=,warmSpares=,maxAgeMs=
                      upstream= a headless Service (name.ns.svc.cluster.local, clusterIP: None: one A record
                      per pod) makes every pod an endpoint: requests/connections balanced per pod (P2C),
                      a dead pod ejected alone (its idle connections only), the name re-resolved every
                      5 s or at its TTL. A ClusterIP Service name is one endpoint (the VIP), as before.
  --legacy            a regular container instead of a native sidecar (clusters before Kubernetes 1.29)
  --image IMG         sidecar image (default keepalive-sidecar:<version>)
  --admin-port N      admin port for probes and metrics (default 9901)

Single route without a file:
  SIDECAR_UPSTREAM=host:port SIDECAR_LISTEN=[host:]port SIDECAR_MODE=tcp keepalive-sidecar run

Exit codes: 0 ok, 1 runtime failure, 2 usage, 3 invalid configuration, 4 socket options unsupported,
5 doctor found a problem, 6 inject could not process its input.
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
        'debug-url': { type: 'string' },
        'proc-root': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
        route: { type: 'string', multiple: true },
        legacy: { type: 'boolean' },
        image: { type: 'string' },
        'admin-port': { type: 'string' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help === true) return { command: 'help', configFile: undefined };
  if (values.version === true) return { command: 'version', configFile: undefined };
  const command = positionals[0] ?? 'run';
  if (!(COMMANDS as readonly string[]).includes(command)) throw new UsageError(`unknown command "${command}" (try --help)`);
  const injectOnly = (['route', 'legacy', 'image', 'admin-port'] as const).filter((k) => values[k] !== undefined);
  if (command !== 'inject') {
    if (positionals.length > 1) throw new UsageError(`unexpected arguments: ${positionals.slice(1).join(' ')}`);
    if (injectOnly.length > 0) throw new UsageError(`--${injectOnly[0]} is an option of "inject" only`);
    if (command !== 'doctor') {
      for (const opt of ['admin-url', 'debug-url', 'proc-root'] as const) {
        if (values[opt] !== undefined) throw new UsageError(`--${opt} is only used by "doctor"`);
      }
    }
    return { command: command as Command, configFile: values.config, adminUrl: values['admin-url'], debugUrl: values['debug-url'], procRoot: values['proc-root'] };
  }
  if (positionals.length > 2) throw new UsageError(`inject takes one input (a file or -), got: ${positionals.slice(1).join(' ')}`);
  if (values.config !== undefined) throw new UsageError('inject takes its routes from --route, not --config');
  const routes = values.route ?? [];
  if (routes.length === 0) throw new UsageError('inject needs at least one --route name=N,listen=PORT,upstream=HOST:PORT');
  const portText = values['admin-port'];
  const adminPort = portText === undefined ? DEFAULT_ADMIN_PORT : Number(portText);
  if (!/^\d+$/.test(portText ?? '1') || !Number.isInteger(adminPort) || adminPort < 1 || adminPort > 65535) {
    throw new UsageError(`--admin-port must be a port 1-65535, got "${portText ?? ''}"`);
  }
  return {
    command: 'inject',
    configFile: undefined,
    inject: { input: positionals[1] ?? '-', routes, isLegacy: values.legacy === true, image: values.image, adminPort },
  };
}
