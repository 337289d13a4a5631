/**
 * `--route name=pg,mode=tcp,listen=15432,upstream=postgres:5432` -> validated route objects. Validation goes
 * through config/loadConfig with an in-memory file, so `inject` accepts exactly what `run` will accept.
 *
 * `upstream` may be any name: a headless Service (`inventory.shop.svc.cluster.local` with `clusterIP: None`)
 * resolves to one address per pod, and each becomes an endpoint of the route (issue 14: P2C balancing,
 * per-pod ejection and sibling eviction, re-resolution every upstream.resolveIntervalMs); a ClusterIP
 * Service resolves to its VIP, one endpoint, and kube-proxy balances per connection as before.
 */
import { loadConfig, parseHostPort } from '../config/index.js';
import type { Mode } from '../config/index.js';
import { UsageError } from '../errors.js';

/** Keys a --route may carry. The first four fit the single-route environment shortcut; the rest need a file. */
const SHORTCUT_KEYS = ['name', 'mode', 'listen', 'upstream'] as const;
const FILE_KEYS = ['idleMs', 'intervalMs', 'probes', 'userTimeoutMs', 'connectTimeoutMs', 'maxConnections', 'warmSpares', 'maxAgeMs'] as const;
const NUMERIC_KEYS: ReadonlySet<string> = new Set(FILE_KEYS);
const KEEPALIVE_KEYS: ReadonlySet<string> = new Set(['idleMs', 'intervalMs', 'probes', 'userTimeoutMs']);

/** One route as inject renders it: the raw keys given (validated), in the config file's shape. */
export interface RouteSpec {
  readonly name: string;
  readonly mode: Mode;
  readonly listen: { readonly host: string; readonly port: number };
  readonly upstream: { readonly host: string; readonly port: number };
  /** Extra keys in config-file shape (keepalive.*, connectTimeoutMs, ...); empty when only shortcut keys were given. */
  readonly extra: Readonly<Record<string, unknown>>;
}

/** Parses one --route value. Throws UsageError on syntax problems (values are checked by validateRoutes). */
export function parseRouteSpec(text: string): RouteSpec {
  const fields = new Map<string, string>();
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UsageError(`--route "${text}": expected key=value pairs separated by commas (name=pg,mode=tcp,listen=15432,upstream=postgres:5432)`);
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (!(SHORTCUT_KEYS as readonly string[]).includes(key) && !NUMERIC_KEYS.has(key)) {
      throw new UsageError(`--route "${text}": unknown key "${key}" (known: ${[...SHORTCUT_KEYS, ...FILE_KEYS].join(', ')})`);
    }
    if (fields.has(key)) throw new UsageError(`--route "${text}": "${key}" given twice`);
    fields.set(key, value);
  }
  for (const key of ['name', 'listen', 'upstream'] as const) {
    if (!fields.has(key)) throw new UsageError(`--route "${text}": "${key}" is required`);
  }
  const listen = parseHostPort(fields.get('listen') ?? '', '127.0.0.1');
  if (listen === undefined) throw new UsageError(`--route "${text}": listen must be [host:]port`);
  const upstream = parseHostPort(fields.get('upstream') ?? '', undefined);
  if (upstream === undefined) throw new UsageError(`--route "${text}": upstream must be host:port`);
  const extra: Record<string, unknown> = {};
  const keepalive: Record<string, number> = {};
  for (const key of FILE_KEYS) {
    const raw = fields.get(key);
    if (raw === undefined) continue;
    if (!/^\d+$/.test(raw)) throw new UsageError(`--route "${text}": ${key} must be a whole number`);
    if (KEEPALIVE_KEYS.has(key)) keepalive[key] = Number(raw);
    else extra[key] = Number(raw);
  }
  if (Object.keys(keepalive).length > 0) extra.keepalive = keepalive;
  return { name: fields.get('name') ?? '', mode: (fields.get('mode') ?? 'tcp') as RouteSpec['mode'], listen, upstream, extra };
}

/** The routes as they go into a config file. */
export function routesForFile(routes: readonly RouteSpec[]): unknown[] {
  return routes.map((r) => ({ name: r.name, mode: r.mode, listen: { ...r.listen }, upstream: { ...r.upstream }, ...r.extra }));
}

/**
 * Validates the routes with the runtime's own loader (names, modes, ports, duplicates, clash with the admin
 * port). Throws ConfigError listing every problem.
 */
export function validateRoutes(routes: readonly RouteSpec[], adminPort: number): void {
  const file = { admin: { host: '0.0.0.0', port: adminPort }, routes: routesForFile(routes) };
  loadConfig({ env: {}, configFile: '--route', readFile: () => JSON.stringify(file) });
}
