/**
 * The real CLI with `mode: "h2"` routes, driven as a user would (a config file, the route's listen port from
 * its 'route listening' line, /metrics from the admin port), plus the grpcio ping-policing server
 * (test/fixtures/grpc_ping_server.py under /usr/bin/python3) as a child process.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { request, valueOf } from './scrape.js';
import { spawnSidecar } from './sidecar-process.js';
import type { SidecarProcess } from './sidecar-process.js';

/** An h2 route object: listen 127.0.0.1:0, upstream 127.0.0.1:port, `h2` keys merged in. */
export function h2Route(upstreamPort: number, h2: Record<string, unknown> = {}, extra: Record<string, unknown> = {}, name = 'grpc'): Record<string, unknown> {
  return { name, mode: 'h2', listen: { host: '127.0.0.1', port: 0 }, upstream: { host: '127.0.0.1', port: upstreamPort }, h2, ...extra };
}

export interface H2Sidecar {
  readonly p: SidecarProcess;
  /** Listen port of each route, by name. */
  readonly ports: Map<string, number>;
  /** Listen port of the first route. */
  readonly port: number;
  readonly adminUrl: string;
  metrics(): Promise<string>;
  /** Sum of samples of `name` whose labels include `labels`. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  /** Log lines with this msg so far. */
  logs(msg: string): Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

/**
 * Spawns the sidecar with these routes (debug and admin on port 0) and waits for every route to listen.
 * A sidecar that exits first (e.g. a checkout without mode h2: config rejected) fails with its stderr.
 * Registered for SIGKILL in t.after.
 */
export async function startH2Sidecar(t: TestContext, routes: Array<Record<string, unknown>>, extra: Record<string, unknown> = {}): Promise<H2Sidecar> {
  const p = spawnSidecar({ admin: { host: '127.0.0.1', port: 0 }, debug: { port: 0 }, log: { level: 'debug' }, shutdown: { drainTimeoutMs: 1000 }, routes, ...extra });
  t.after(() => {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  });
  const exited = p.exit.then((code) => {
    throw new Error(`sidecar exited (${code}) before listening: ${p.stderr.trim().slice(0, 2000)}`);
  });
  const ready = (async () => {
    const ports = new Map<string, number>();
    for (const r of routes) {
      const l = await p.waitLine((x) => x.msg === 'route listening' && x.route === r.name);
      ports.set(String(r.name), Number(String(l.listen).split(':').pop()));
    }
    const admin = String((await p.waitLine((l) => l.msg === 'admin listening')).admin);
    return { ports, admin };
  })();
  const { ports, admin } = await Promise.race([ready, exited]);
  exited.catch(() => {});
  const metrics = async (): Promise<string> => (await request(Number(new URL(admin).port), '/metrics')).body;
  return {
    p,
    ports,
    port: ports.get(String(routes[0]!.name))!,
    adminUrl: admin,
    metrics,
    async metric(name, labels = {}) {
      return valueOf(await metrics(), name, labels);
    },
    logs: (msg) => p.lines.filter((l) => l.msg === msg),
    async stop() {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return;
      p.child.kill('SIGTERM');
      const timer = setTimeout(() => p.child.kill('SIGKILL'), 3000);
      await p.exit;
      clearTimeout(timer);
    },
  };
}

export const PYTHON = '/usr/bin/python3';
const SCRIPT = new URL('../../../test/fixtures/grpc_ping_server.py', import.meta.url).pathname;

/** Undefined when /usr/bin/python3 can import grpc, else why not. */
export function pythonGrpcMissing(): string | undefined {
  if (!existsSync(PYTHON)) return `${PYTHON} missing (Debian python3-grpcio)`;
  const r = spawnSync(PYTHON, ['-c', 'import grpc'], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `${PYTHON} cannot import grpc (Debian python3-grpcio): ${r.stderr.trim().split('\n').pop()}`;
}

/** Call first: false (after t.skip) when grpcio is missing locally; throws under CI=true. */
export function requirePythonGrpc(t: TestContext): boolean {
  const why = pythonGrpcMissing();
  if (why === undefined) return true;
  if (process.env.CI === 'true') throw new Error(`CI=true and this test cannot run: ${why}`);
  process.stderr.write(`\n*** SKIPPING "${t.name}": ${why} ***\n`);
  t.skip(why);
  return false;
}

/** Calls `f` with each JSON line a child process's stdout prints (the python fixtures' protocol). */
export function onJsonLines<T>(out: NodeJS.ReadableStream, f: (o: T) => void): void {
  let buf = '';
  out.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      f(JSON.parse(line) as T);
    }
  });
}

export interface PingPolicyServer {
  readonly port: number;
  /** Calls received, by method, in order. */
  readonly calls: string[];
  stop(): Promise<void>;
  /** Most Hold calls the server ran at once on one connection. */
  readonly maxActive: number;
}

export interface PingPolicy {
  /** grpc.http2.min_ping_interval_without_data_ms (grpcio default 300000). */
  readonly minPingIntervalMs?: number;
  /** grpc.http2.max_ping_strikes (default 2). */
  readonly maxPingStrikes?: number;
  /** grpc.max_concurrent_streams (SETTINGS_MAX_CONCURRENT_STREAMS; default unlimited). */
  readonly maxConcurrentStreams?: number;
  /** grpc.keepalive_permit_without_calls (default 0: 2 h between pings without calls). */
  readonly permitWithoutCalls?: boolean;
}

/** Starts the grpcio server with this ping policy (omitted keys: grpcio's defaults). Stopped by t.after. */
export async function startPingPolicyServer(t: TestContext, policy: PingPolicy = {}): Promise<PingPolicyServer> {
  const args: string[] = [];
  if (policy.minPingIntervalMs !== undefined) args.push('--min-ping-interval-ms', String(policy.minPingIntervalMs));
  if (policy.maxPingStrikes !== undefined) args.push('--max-ping-strikes', String(policy.maxPingStrikes));
  if (policy.maxConcurrentStreams !== undefined) args.push('--max-concurrent-streams', String(policy.maxConcurrentStreams));
  if (policy.permitWithoutCalls !== undefined) args.push('--permit-without-calls', policy.permitWithoutCalls ? '1' : '0');
  // stdin is a pipe we never write: the server exits when it closes (i.e. when this process dies).
  const child = spawn(PYTHON, [SCRIPT, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const calls: string[] = [];
  const server = { port: 0, calls, stop: async (): Promise<void> => stop(), maxActive: 0 };
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    onJsonLines<{ port?: number; call?: string; active?: number }>(child.stdout, (o) => {
      if (o.port !== undefined) resolve(o.port);
      if (o.call !== undefined) calls.push(o.call);
      if (o.active !== undefined) server.maxActive = Math.max(server.maxActive, o.active);
    });
    child.once('exit', (code) => reject(new Error(`grpc_ping_server.py exited (${code}): ${err}`)));
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
    await gone;
    clearTimeout(timer);
  };
  t.after(stop);
  server.port = port;
  return server;
}
