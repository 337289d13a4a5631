/**
 * Loads, validates and freezes the configuration. Takes its inputs as arguments (env, file path, a file
 * reader) so tests pass plain objects. Every problem is collected with its key path; nothing is bound
 * before this returns.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { ConfigError } from '../errors.js';
import { addFormats, routeSchema, topSchema } from './schema.js';
import type { Config, HostPort, Mode, RouteConfig } from './types.js';

// Required, not imported (a CommonJS package; see schema.ts).
const convict = createRequire(import.meta.url)('convict') as typeof import('convict');

export interface LoadInputs {
  /** Environment variables (pass process.env from main). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** --config FILE from the command line; wins over SIDECAR_CONFIG. */
  readonly configFile?: string | undefined;
  /** Reads a file as text; injectable for tests. */
  readonly readFile?: (path: string) => string;
  /** Accept a config without routes (used by `demo`, which adds its own). */
  readonly allowNoRoutes?: boolean;
}

/** TCP_USER_TIMEOUT defaults by mode when the route leaves it null (see README "Choosing the timeouts"). */
export const DEFAULT_USER_TIMEOUT_MS: Readonly<Record<Mode, number>> = { tcp: 5000, http: 10000, h2: 10000 };

/** Loads and validates; throws ConfigError listing every problem. */
export function loadConfig(inputs: LoadInputs): Config {
  addFormats();
  const problems: string[] = [];
  const env = inputs.env;
  const top = convict(topSchema, { env: env as NodeJS.ProcessEnv, args: [] });

  const file = inputs.configFile ?? (env.SIDECAR_CONFIG || undefined);
  if (file !== undefined) {
    const parsed = readConfigFile(file, inputs.readFile ?? ((p) => readFileSync(p, 'utf8')), problems);
    if (parsed !== undefined) {
      try {
        top.load(parsed);
      } catch (err) {
        problems.push(`${file}: ${(err as Error).message}`);
      }
    }
  }
  try {
    top.validate({ allowed: 'strict' });
  } catch (err) {
    problems.push(...splitConvictMessage((err as Error).message));
  }

  const rawRoutes: unknown[] = [];
  const fileRoutes = top.get('routes') as unknown;
  if (Array.isArray(fileRoutes)) rawRoutes.push(...fileRoutes);
  const shortcut = routeFromShortcut(env, problems);
  if (shortcut !== undefined) rawRoutes.push(shortcut);

  const routes: RouteConfig[] = [];
  rawRoutes.forEach((raw, i) => {
    const route = loadRoute(raw, `routes[${i}]`, problems);
    if (route !== undefined) routes.push(route);
  });
  if (rawRoutes.length === 0 && inputs.allowNoRoutes !== true) {
    problems.push('routes: no route configured: give --config FILE (or SIDECAR_CONFIG), or set SIDECAR_UPSTREAM=host:port and SIDECAR_LISTEN=port');
  }

  const config: Config = {
    admin: { enabled: top.get('admin.enabled'), host: top.get('admin.host'), port: top.get('admin.port') },
    debug: { host: top.get('debug.host'), port: top.get('debug.port') },
    log: { level: top.get('log.level') as Config['log']['level'] },
    shutdown: { drainTimeoutMs: top.get('shutdown.drainTimeoutMs') },
    routes,
  };
  problems.push(...checkRelations(config, rawRoutes));
  if (problems.length > 0) throw new ConfigError(problems);
  return deepFreeze(config);
}

function readConfigFile(file: string, read: (p: string) => string, problems: string[]): unknown {
  let text: string;
  try {
    text = read(file);
  } catch (err) {
    problems.push(`config file ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    return undefined;
  }
  try {
    // YAML 1.2 is a superset of JSON, so one parser reads both; plain JSON skips loading it (~7 MiB RSS).
    const parsed: unknown = parseJsonOrYaml(text);
    if (parsed === null || parsed === undefined) return {};
    if (typeof parsed !== 'object' || Array.isArray(parsed)) {
      problems.push(`config file ${file}: must be an object at the top level`);
      return undefined;
    }
    return parsed;
  } catch (err) {
    problems.push(`config file ${file}: not valid JSON or YAML: ${(err as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

function splitConvictMessage(message: string): string[] {
  return message
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0)
    .map((l) => l.replace(/^configuration param '([^']+)' not declared in the schema$/, '$1: unknown key'));
}

/** SIDECAR_UPSTREAM=host:port SIDECAR_LISTEN=[host:]port SIDECAR_MODE=tcp|http|h2 [SIDECAR_ROUTE_NAME=name]. */
function routeFromShortcut(env: LoadInputs['env'], problems: string[]): unknown {
  const upstream = env.SIDECAR_UPSTREAM;
  if (upstream === undefined || upstream === '') {
    for (const key of ['SIDECAR_LISTEN', 'SIDECAR_MODE', 'SIDECAR_ROUTE_NAME']) {
      if (env[key]) problems.push(`${key}: only used together with SIDECAR_UPSTREAM`);
    }
    return undefined;
  }
  const up = parseHostPort(upstream, undefined);
  if (up === undefined) {
    problems.push(`SIDECAR_UPSTREAM: expected host:port, got "${upstream}"`);
    return undefined;
  }
  const listenRaw = env.SIDECAR_LISTEN;
  if (listenRaw === undefined || listenRaw === '') {
    problems.push('SIDECAR_LISTEN: required with SIDECAR_UPSTREAM ([host:]port)');
    return undefined;
  }
  const listen = parseHostPort(listenRaw, '127.0.0.1');
  if (listen === undefined) {
    problems.push(`SIDECAR_LISTEN: expected [host:]port, got "${listenRaw}"`);
    return undefined;
  }
  return {
    name: env.SIDECAR_ROUTE_NAME || 'default',
    mode: env.SIDECAR_MODE || 'tcp',
    listen,
    upstream: up,
  };
}

/** Parses "host:port", "[v6]:port" or (with a default host) "port". Returns undefined when malformed. */
export function parseHostPort(text: string, defaultHost: string | undefined): HostPort | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text) ?? (defaultHost !== undefined ? /^()()(\d{1,5})$/.exec(text) : null);
  if (m === null) return undefined;
  const host = m[1] || m[2] || defaultHost;
  const port = Number(m[3]);
  if (host === undefined || port > 65535) return undefined;
  return { host, port };
}

function loadRoute(raw: unknown, path: string, problems: string[]): RouteConfig | undefined {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    problems.push(`${path}: must be an object`);
    return undefined;
  }
  const label = typeof (raw as { name?: unknown }).name === 'string' ? `${path} (${(raw as { name: string }).name})` : path;
  const c = convict(routeSchema, { env: {}, args: [] });
  try {
    c.load(raw);
    c.validate({ allowed: 'strict' });
  } catch (err) {
    problems.push(...splitConvictMessage((err as Error).message).map((p) => `${label}.${p}`));
    return undefined;
  }
  const r = c.getProperties() as unknown as RouteConfig & { keepalive: { userTimeoutMs: number | null } };
  const userTimeoutMs = r.keepalive.userTimeoutMs ?? DEFAULT_USER_TIMEOUT_MS[r.mode];
  return { ...r, keepalive: { ...r.keepalive, userTimeoutMs } };
}

/** Checks across keys and routes. Names and ports are read from the raw routes too, so a duplicate is
 * reported even when one of the pair has other problems. */
function checkRelations(config: Config, rawRoutes: readonly unknown[]): string[] {
  const problems: string[] = [];
  const names = new Map<string, number>();
  const ports = new Map<number, string>();
  if (config.admin.enabled && config.admin.port !== 0) ports.set(config.admin.port, 'admin.port');
  if (config.admin.enabled && config.debug.port !== 0) {
    const other = ports.get(config.debug.port);
    if (other !== undefined) problems.push(`debug.port: ${config.debug.port} is already used by ${other}`);
    else ports.set(config.debug.port, 'debug.port');
  }
  if (!isLoopbackHost(config.debug.host)) {
    problems.push(`debug.host: "${config.debug.host}" is not a loopback address: /debug/* shows upstream addresses and config and must stay inside the pod (use 127.0.0.1, another 127.x address or ::1; probes and /metrics belong on admin.host)`);
  }
  rawRoutes.forEach((raw, i) => {
    const r = (raw ?? {}) as { name?: unknown; listen?: { port?: unknown } };
    const name = typeof r.name === 'string' ? r.name : undefined;
    const where = `routes[${i}]${name !== undefined ? ` (${name})` : ''}`;
    if (name !== undefined) {
      const seen = names.get(name);
      if (seen !== undefined) problems.push(`${where}.name: duplicate route name (also routes[${seen}])`);
      else names.set(name, i);
    }
    const port = r.listen?.port;
    if (typeof port === 'number' && port !== 0) {
      const other = ports.get(port);
      if (other !== undefined) problems.push(`${where}.listen.port: ${port} is already used by ${other}`);
      else ports.set(port, `${where}.listen.port`);
    }
  });
  config.routes.forEach((r, i) => {
    const where = `routes[${i}] (${r.name})`;
    if (r.mode === 'http' && r.http.idleTimeoutMs >= r.maxAgeMs) {
      problems.push(`${where}.http.idleTimeoutMs: must be lower than maxAgeMs (${r.maxAgeMs})`);
    }
    // Node refuses a headersTimeout above requestTimeout (ours stays at Node's 300 s so slow uploads live).
    if (r.mode === 'http' && r.http.requestHeadTimeoutMs > NODE_REQUEST_TIMEOUT_MS) {
      problems.push(`${where}.http.requestHeadTimeoutMs: must not exceed ${NODE_REQUEST_TIMEOUT_MS}`);
    }
    if (r.upstream.resolveIntervalMs < 1000) {
      problems.push(`${where}.upstream.resolveIntervalMs: must be at least 1000 (re-resolving more often only loads the resolver)`);
    }
    if (!Array.isArray(r.upstream.dnsServers)) {
      problems.push(`${where}.upstream.dnsServers: must be a list of "ip:port" strings`);
    } else {
      r.upstream.dnsServers.forEach((d, j) => {
        const hp = typeof d === 'string' ? parseHostPort(d, undefined) : undefined;
        if (hp === undefined || isIP(hp.host) === 0 || hp.port === 0) {
          problems.push(`${where}.upstream.dnsServers[${j}]: expected "ip:port" or "[ipv6]:port" (an address, not a name), got ${JSON.stringify(d)}`);
        }
      });
    }
    if (r.mode === 'h2') problems.push(...checkH2(r, where));
    if (r.mode === 'tcp' && r.warmSpares > r.maxConnections) {
      problems.push(`${where}.warmSpares: must not exceed maxConnections (${r.maxConnections})`);
    }
  });
  return problems;
}

/** gRPC method names on h2.retry.grpcIdempotentMethods: "/pkg.Service/Method" or "/pkg.Service/*". */
const GRPC_METHOD_PATTERN = /^\/[A-Za-z_][A-Za-z0-9_.]*\/(?:\*|[A-Za-z_][A-Za-z0-9_]*)$/;

/** Relations of the h2 keys (issue 13); every problem is listed. */
function checkH2(r: RouteConfig, where: string): string[] {
  const problems: string[] = [];
  const h2 = r.h2;
  h2.retry.grpcIdempotentMethods.forEach((m, i) => {
    if (typeof m !== 'string' || !GRPC_METHOD_PATTERN.test(m)) {
      problems.push(`${where}.h2.retry.grpcIdempotentMethods[${i}]: "${String(m)}" is not "/pkg.Service/Method" or "/pkg.Service/*"`);
    }
  });
  if (h2.pingTimeoutMs >= h2.pingIntervalMs) {
    problems.push(`${where}.h2.pingTimeoutMs: must be lower than h2.pingIntervalMs (${h2.pingIntervalMs}): one PING outstanding at a time`);
  }
  if (h2.idleTimeoutMs >= r.maxAgeMs) problems.push(`${where}.h2.idleTimeoutMs: must be lower than maxAgeMs (${r.maxAgeMs})`);
  return problems;
}

/** node:http's default requestTimeout (whole request, body included), kept as is. */
const NODE_REQUEST_TIMEOUT_MS = 300_000;

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** JSON.parse when the text is JSON; otherwise the yaml package, loaded only then (it costs ~7 MiB RSS). */
function parseJsonOrYaml(text: string): unknown {
  if (/^\s*[{[]/.test(text)) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      // Not strict JSON (comments, flow-style YAML): let the YAML parser read it and word the error.
    }
  }
  const yaml = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  return yaml.parse(text) as unknown;
}

/** 127.0.0.0/8, ::1, or localhost: what the debug listener may bind (#11). A name other than localhost is refused
 * rather than resolved: the check must not depend on DNS at startup. */
function isLoopbackHost(host: string): boolean {
  if (host === 'localhost' || host === '::1' || host === '[::1]') return true;
  const m = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  return m !== null && m.slice(1).every((o) => Number(o) <= 255);
}
