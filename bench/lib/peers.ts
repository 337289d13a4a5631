/**
 * The targets under test and the upstreams behind them: HAProxy, nginx, node-http-proxy, the sidecar (tcp and
 * http routes) and `direct`; nginx or a Node server as the HTTP upstream, iperf3 or a Node server for TCP bulk.
 * Every process listens on 127.0.0.1 only.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Proc } from './proc.js';
import { freePort, hasCommand, sidecarNodeArgs, spawnProc, waitForPort } from './proc.js';
import { SIDECAR_NODE_FLAGS } from './sidecar-flags.js';

const here = dirname(fileURLToPath(import.meta.url));
/** dist/bench/lib -> repository root. */
export const repoRoot = resolve(here, '..', '..', '..');
const benchDist = resolve(here, '..');

/** Debian packages per command the full benchmark needs. */
const DEBIAN: Record<string, string[]> = {
  haproxy: ['haproxy'],
  nginx: ['nginx', 'libnginx-mod-stream'],
  wrk: ['wrk'],
  iperf3: ['iperf3'],
  'rsvg-convert': ['librsvg2-bin'],
  nft: ['nftables'],
  ss: ['iproute2'],
  h2load: ['nghttp2-client'],
  nghttpx: ['nghttp2-proxy'],
};

/** Installs the Debian packages for missing commands (apt-get update once first). Needs root. */
export function ensureCommands(cmds: readonly string[], say: (s: string) => void): void {
  const missing = cmds.filter((c) => !hasCommand(c) || (c === 'nginx' && !existsSync('/usr/lib/nginx/modules/ngx_stream_module.so')));
  if (missing.length === 0) return;
  const pkgs = [...new Set(missing.flatMap((c) => DEBIAN[c] ?? [c]))];
  say(`installing from Debian: ${pkgs.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { stdio: 'inherit', env });
  for (const c of missing) if (!hasCommand(c)) throw new Error(`${c} still missing after installing ${pkgs.join(' ')}`);
}

export type TargetName = 'direct' | 'haproxy' | 'nginx' | 'node-http-proxy' | 'minimal' | 'node-self' | 'relay' | 'llhttp-proto' | 'sidecar-http' | 'sidecar-base' | 'sidecar-tcp';

export const TARGET_LABEL: Record<TargetName, string> = {
  direct: 'direct (no proxy)',
  haproxy: 'HAProxy',
  nginx: 'nginx',
  'node-http-proxy': 'node-http-proxy',
  minimal: 'minimal node:http + undici',
  'node-self': 'node-self (node:http answers itself, floor)',
  relay: 'relay (net pipe, no HTTP, floor)',
  'llhttp-proto': 'prototype: llhttp binding + undici (research)',
  'sidecar-http': 'sidecar (http route)',
  'sidecar-base': 'sidecar (http route, BENCH_BASE_SIDECAR_DIR)',
  'sidecar-tcp': 'sidecar (tcp route)',
};

export interface Target {
  readonly name: TargetName;
  /** The proxy process (CPU, RSS); undefined for direct. */
  readonly proc: Proc | undefined;
  /** Where HTTP load goes, and the upstream port behind it (its own, so its flows can be found by port). */
  readonly http: { port: number; upstreamPort: number } | undefined;
  /** Where TCP bulk goes. */
  readonly tcp: { port: number } | undefined;
  /** The sidecar's admin port (/metrics), when it has one. */
  readonly adminPort?: number;
  stop(): Promise<void>;
}

export interface TargetPorts {
  /** The HTTP upstream port reserved for this target. */
  readonly httpUpstream: number | undefined;
  /** The TCP bulk upstream port (shared). */
  readonly tcpUpstream: number | undefined;
}

/** Peer timeouts, the same everywhere: what a typical production config has. */
export const READ_TIMEOUT_S = 30;

export interface StartContext {
  readonly dir: string;
  readonly proxyCpu: string | undefined;
  /** Checkout whose built CLI (see sidecarBin) is the sidecar under test. */
  readonly sidecarDir: string;
}

export async function startTarget(name: TargetName, ports: TargetPorts, ctx: StartContext): Promise<Target> {
  switch (name) {
    case 'direct':
      return {
        name,
        proc: undefined,
        http: ports.httpUpstream !== undefined ? { port: ports.httpUpstream, upstreamPort: ports.httpUpstream } : undefined,
        tcp: ports.tcpUpstream !== undefined ? { port: ports.tcpUpstream } : undefined,
        stop: async () => {},
      };
    case 'haproxy':
      return startHaproxy(ports, ctx);
    case 'nginx':
      return startNginx(ports, ctx);
    case 'node-http-proxy':
      return startNodeHttpProxy(ports, ctx);
    case 'minimal':
      return startNodePeer('minimal', 'minimal.js', ports, ctx);
    case 'node-self':
      return startNodePeer('node-self', 'node-self.js', ports, ctx);
    case 'relay':
      return startNodePeer('relay', 'relay.js', ports, ctx);
    case 'llhttp-proto':
      return startNodePeer('llhttp-proto', 'llhttp-proto.js', ports, ctx);
    case 'sidecar-http':
    case 'sidecar-tcp':
      return startSidecar(name, ports, ctx, { nodeArgs: sidecarNodeArgs(false) });
    case 'sidecar-base': {
      // A/B in one run: the http route of another built checkout (e.g. the commit before a change).
      const dir = process.env.BENCH_BASE_SIDECAR_DIR;
      if (dir === undefined) throw new TargetUnavailable('set BENCH_BASE_SIDECAR_DIR to a built checkout');
      return { ...(await startSidecar('sidecar-http', ports, { ...ctx, sidecarDir: dir }, { nodeArgs: sidecarNodeArgs(true) })), name };
    }
  }
}

/** Waits until a proxy peer listens on its ports, then describes it as a Target. */
async function listeningTarget(
  name: TargetName,
  proc: Proc,
  ports: TargetPorts,
  httpPort: number | undefined,
  tcpPort: number | undefined,
): Promise<Target> {
  for (const p of [httpPort, tcpPort]) if (p !== undefined) await waitForPort(p, 10000, proc);
  return {
    name,
    proc,
    http: httpPort !== undefined ? { port: httpPort, upstreamPort: ports.httpUpstream! } : undefined,
    tcp: tcpPort !== undefined ? { port: tcpPort } : undefined,
    stop: () => proc.stop(),
  };
}

async function startHaproxy(ports: TargetPorts, ctx: StartContext): Promise<Target> {
  const httpPort = ports.httpUpstream !== undefined ? await freePort() : undefined;
  const tcpPort = ports.tcpUpstream !== undefined ? await freePort() : undefined;
  const lines = [
    'global',
    '  maxconn 9000',
    '  nbthread 1',
    'defaults',
    '  timeout connect 5s',
    '  timeout client 60s',
    `  timeout server ${READ_TIMEOUT_S}s`,
  ];
  if (httpPort !== undefined) {
    lines.push(
      'frontend fh',
      '  mode http',
      `  bind 127.0.0.1:${httpPort}`,
      '  default_backend bh',
      'backend bh',
      '  mode http',
      '  http-reuse always',
      // srvtcpka 5s/2s/3 + tcp-ut 10s: HAProxy's own answer to silently dead servers.
      '  option srvtcpka',
      '  srvtcpka-idle 5s',
      '  srvtcpka-intvl 2s',
      '  srvtcpka-cnt 3',
      `  server s1 127.0.0.1:${ports.httpUpstream} tcp-ut 10s`,
    );
  }
  if (tcpPort !== undefined) {
    lines.push(
      'listen lt',
      '  mode tcp',
      `  bind 127.0.0.1:${tcpPort}`,
      '  option srvtcpka',
      '  srvtcpka-idle 5s',
      '  srvtcpka-intvl 2s',
      '  srvtcpka-cnt 3',
      `  server s1 127.0.0.1:${ports.tcpUpstream} tcp-ut 10s`,
    );
  }
  const cfg = join(ctx.dir, `haproxy-${httpPort ?? tcpPort}.cfg`);
  writeFileSync(cfg, lines.join('\n') + '\n');
  // -db: foreground, no master process: one pid carries all the CPU.
  const proc = spawnProc('haproxy', 'haproxy', ['-db', '-f', cfg], { cpu: ctx.proxyCpu, nofile: 65536 });
  return listeningTarget('haproxy', proc, ports, httpPort, tcpPort);
}

async function startNginx(ports: TargetPorts, ctx: StartContext): Promise<Target> {
  const httpPort = ports.httpUpstream !== undefined ? await freePort() : undefined;
  const tcpPort = ports.tcpUpstream !== undefined ? await freePort() : undefined;
  const prefix = join(ctx.dir, `nginx-proxy-${httpPort ?? tcpPort}`);
  execFileSync('mkdir', ['-p', prefix]);
  const lines = [
    'load_module /usr/lib/nginx/modules/ngx_stream_module.so;',
    'user root;',
    'worker_processes 1;',
    'daemon off;',
    `pid ${prefix}/nginx.pid;`,
    `error_log ${prefix}/error.log warn;`,
    'worker_rlimit_nofile 20000;',
    'events { worker_connections 9000; }',
  ];
  if (httpPort !== undefined) {
    lines.push(
      'http {',
      '  access_log off;',
      `  client_body_temp_path ${prefix}/cb; proxy_temp_path ${prefix}/pt; fastcgi_temp_path ${prefix}/ft; uwsgi_temp_path ${prefix}/ut; scgi_temp_path ${prefix}/st;`,
      '  keepalive_requests 10000000;',
      // nginx recycles an upstream keep-alive connection after 1000 requests by default (keepalive_requests in
      // upstream{}); raised so reuse is measured, and so the fault at t=10 s (request 1000 at 100/s) hits a flow.
      `  upstream u { server 127.0.0.1:${ports.httpUpstream}; keepalive 256; keepalive_requests 10000000; keepalive_timeout 300s; }`,
      `  server { listen 127.0.0.1:${httpPort}; location / {`,
      '    proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection "";',
      `    proxy_socket_keepalive on; proxy_read_timeout ${READ_TIMEOUT_S}s; } }`,
      '}',
    );
  }
  if (tcpPort !== undefined) {
    lines.push('stream {', `  server { listen 127.0.0.1:${tcpPort}; proxy_pass 127.0.0.1:${ports.tcpUpstream}; proxy_socket_keepalive on; }`, '}');
  }
  const cfg = join(prefix, 'nginx.conf');
  writeFileSync(cfg, lines.join('\n') + '\n');
  const proc = spawnProc('nginx', 'nginx', ['-p', prefix, '-c', cfg, '-e', `${prefix}/error.log`], { cpu: ctx.proxyCpu, nofile: 65536 });
  return listeningTarget('nginx', proc, ports, httpPort, tcpPort);
}

async function startNodeHttpProxy(ports: TargetPorts, ctx: StartContext): Promise<Target> {
  if (ports.httpUpstream === undefined) throw new Error('node-http-proxy is an HTTP target only');
  const proc = spawnProc('node-http-proxy', process.execPath, [join(benchDist, 'peers', 'node-http-proxy.js'), String(ports.httpUpstream), String(READ_TIMEOUT_S * 1000)], {
    cpu: ctx.proxyCpu,
    nofile: 65536,
  });
  const port = await proc.waitLine((l) => {
    const m = /^listening (\d+)$/.exec(l.trim());
    return m ? Number(m[1]) : undefined;
  });
  return { name: 'node-http-proxy', proc, http: { port, upstreamPort: ports.httpUpstream }, tcp: undefined, stop: () => proc.stop() };
}

/** A Node peer from bench/peers (argv: upstream port) that prints "listening PORT". */
async function startNodePeer(name: TargetName, file: string, ports: TargetPorts, ctx: StartContext): Promise<Target> {
  if (ports.httpUpstream === undefined) throw new Error(`${name} is an HTTP target only`);
  const proc = spawnProc(name, process.execPath, [join(benchDist, 'peers', file), String(ports.httpUpstream)], { cpu: ctx.proxyCpu, nofile: 65536 });
  const port = await proc.waitLine((l) => {
    const m = /^listening (\d+)$/.exec(l.trim());
    return m ? Number(m[1]) : undefined;
  });
  return { name, proc, http: { port, upstreamPort: ports.httpUpstream }, tcp: undefined, stop: () => proc.stop() };
}

/** Thrown when the checkout's sidecar does not implement a mode (e.g. http before issue 6 landed). */
export class TargetUnavailable extends Error {}

/** Sidecar route settings used by every run: production defaults except what a benchmark must change. */
export interface SidecarExtra {
  readonly warmSpares?: number;
  readonly http?: Record<string, unknown>;
  readonly maxConnections?: number;
  /** Preload bench/peers/gc-on-signal.js so SIGUSR2 runs a full GC (memory runs). */
  readonly gcOnSignal?: boolean;
  /** Node flags before the script (see sidecarNodeArgs); default SIDECAR_NODE_FLAGS, as production. */
  readonly nodeArgs?: readonly string[];
}

/** The CLI as shipped (the esbuild bundle), or the tsc output of a checkout that predates the bundle. */
export function sidecarBin(dir: string): string {
  const bundle = join(dir, 'dist', 'bundle', 'bin.js');
  return existsSync(bundle) ? bundle : join(dir, 'dist', 'src', 'cli', 'bin.js');
}

export async function startSidecar(name: 'sidecar-http' | 'sidecar-tcp', ports: TargetPorts, ctx: StartContext, extra: SidecarExtra = {}): Promise<Target> {
  const bin = sidecarBin(ctx.sidecarDir);
  if (!existsSync(bin)) throw new Error(`sidecar not built: ${bin} is missing (run npm run build in ${ctx.sidecarDir})`);
  const routes: Array<Record<string, unknown>> = [];
  const maxConnections = extra.maxConnections ?? 20000;
  if (ports.httpUpstream !== undefined) {
    routes.push({
      name: 'h',
      mode: name === 'sidecar-http' ? 'http' : 'tcp',
      listen: { host: '127.0.0.1', port: 0 },
      upstream: { host: '127.0.0.1', port: ports.httpUpstream },
      maxConnections,
      ...(extra.warmSpares !== undefined ? { warmSpares: extra.warmSpares } : {}),
      ...(name === 'sidecar-http' && extra.http !== undefined ? { http: extra.http } : {}),
    });
  }
  if (ports.tcpUpstream !== undefined && name === 'sidecar-tcp') {
    routes.push({ name: 't', mode: 'tcp', listen: { host: '127.0.0.1', port: 0 }, upstream: { host: '127.0.0.1', port: ports.tcpUpstream }, maxConnections });
  }
  const cfg = join(ctx.dir, `sidecar-${name}-${ports.httpUpstream ?? ports.tcpUpstream}.json`);
  writeFileSync(cfg, JSON.stringify({ admin: { host: '127.0.0.1', port: 0 }, debug: { port: 0 }, log: { level: 'info' }, shutdown: { drainTimeoutMs: 500 }, routes }, null, 2));
  const nodeArgs = [...(extra.nodeArgs ?? SIDECAR_NODE_FLAGS), ...(extra.gcOnSignal === true ? ['--expose-gc', '--import', pathToFileURL(join(benchDist, 'peers', 'gc-on-signal.js')).href] : [])];
  const proc = spawnProc(name, process.execPath, [...nodeArgs, bin, 'run', '--config', cfg], { cpu: ctx.proxyCpu, nofile: 65536, cwd: ctx.sidecarDir });
  const listen = new Map<string, number>();
  let adminPort: number | undefined;
  try {
    for (const r of routes) {
      const port = await proc.waitLine((l) => {
        if (!l.startsWith('{')) return undefined;
        try {
          const o = JSON.parse(l) as { msg?: string; route?: string; listen?: string };
          if (o.msg === 'route listening' && o.route === r.name && typeof o.listen === 'string') return Number(o.listen.split(':').pop());
        } catch {
          // Not a log line.
        }
        return undefined;
      });
      listen.set(r.name as string, port);
    }
    adminPort = await proc.waitLine((l) => {
      const m = /"msg":"admin listening"/.test(l) ? /"admin":"http:\/\/[^"]*:(\d+)"/.exec(l) : null;
      return m ? Number(m[1]) : undefined;
    });
  } catch (err) {
    await proc.stop('SIGKILL');
    const text = proc.output();
    if (/not implemented/i.test(text)) throw new TargetUnavailable(`this checkout's sidecar cannot run it (${/[^\n]*not implemented[^\n]*/i.exec(text)?.[0] ?? ''})`);
    throw err;
  }
  return {
    name,
    proc,
    http: listen.has('h') ? { port: listen.get('h')!, upstreamPort: ports.httpUpstream! } : undefined,
    tcp: listen.has('t') ? { port: listen.get('t')! } : undefined,
    adminPort,
    stop: () => proc.stop(),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Upstreams

/** GET http://127.0.0.1:port/path on a new connection (agent: false), body as text. */
export function httpGetText(port: number, path = '/'): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: 10000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('control query timed out')));
    req.on('error', reject);
  });
}

export interface HttpUpstream {
  readonly proc: Proc;
  readonly ports: number[];
  /** Connections accepted so far on all ports (new upstream connections are deltas of this). */
  accepts(): Promise<number>;
  stop(): Promise<void>;
}

/** nginx answering 200 "ok" on several ports (one per target), with stub_status for the accept counter. */
export async function startNginxUpstream(n: number, dir: string, cpu: string | undefined): Promise<HttpUpstream> {
  const ports: number[] = [];
  for (let i = 0; i < n; i++) ports.push(await freePort());
  const statusPort = await freePort();
  const prefix = join(dir, 'nginx-upstream');
  execFileSync('mkdir', ['-p', prefix]);
  const conf = [
    'user root;',
    'worker_processes 1;',
    'daemon off;',
    `pid ${prefix}/nginx.pid;`,
    `error_log ${prefix}/error.log warn;`,
    'worker_rlimit_nofile 20000;',
    'events { worker_connections 9000; }',
    'http {',
    '  access_log off;',
    `  client_body_temp_path ${prefix}/cb; proxy_temp_path ${prefix}/pt; fastcgi_temp_path ${prefix}/ft; uwsgi_temp_path ${prefix}/ut; scgi_temp_path ${prefix}/st;`,
    // Never close a keep-alive connection ourselves during a run: new upstream connections are the proxy's doing.
    '  keepalive_requests 10000000;',
    '  keepalive_timeout 300s;',
    `  server { ${ports.map((p) => `listen 127.0.0.1:${p};`).join(' ')} location / { return 200 "ok\\n"; } }`,
    `  server { listen 127.0.0.1:${statusPort}; location / { stub_status; } }`,
    '}',
  ].join('\n');
  const cfg = join(prefix, 'nginx.conf');
  writeFileSync(cfg, conf + '\n');
  const proc = spawnProc('nginx-upstream', 'nginx', ['-p', prefix, '-c', cfg, '-e', `${prefix}/error.log`], { cpu, nofile: 65536 });
  await waitForPort(statusPort, 10000, proc);
  let calls = 0;
  return {
    proc,
    ports,
    async accepts() {
      // A fresh connection per query (no keep-alive), so our own queries are exactly `calls` accepts.
      calls++;
      const text = await httpGetText(statusPort);
      // "server accepts handled requests\n A H R".
      const m = /\n\s*(\d+)\s+(\d+)\s+(\d+)/.exec(text);
      if (!m) throw new Error(`unexpected stub_status: ${text}`);
      return Number(m[1]) - calls;
    },
    stop: () => proc.stop(),
  };
}

export interface NodeUpstream extends HttpUpstream {
  /** TCP bulk port: first byte "U" = upload (discarded), "D" = download (sent until closed). */
  readonly bulkPort: number;
  /** TCP port that accepts and holds connections (memory runs); count() = open ones. */
  readonly holdPort: number;
  held(): Promise<number>;
  /** Open connections on the HTTP ports. */
  open(): Promise<number>;
}

/** The Node upstream (bench/peers/node-upstream.ts): needs nothing from Debian. */
export async function startNodeUpstream(n: number, cpu: string | undefined, delayMs = 0): Promise<NodeUpstream> {
  const proc = spawnProc('node-upstream', process.execPath, [join(benchDist, 'peers', 'node-upstream.js'), String(n), String(delayMs)], { cpu, nofile: 65536 });
  const info = await proc.waitLine((l) => {
    if (!l.startsWith('{')) return undefined;
    return JSON.parse(l) as { http: number[]; bulk: number; hold: number; control: number };
  });
  const control = async (): Promise<{ accepts: number; held: number; open: number }> => JSON.parse(await httpGetText(info.control)) as { accepts: number; held: number; open: number };
  return {
    proc,
    ports: info.http,
    bulkPort: info.bulk,
    holdPort: info.hold,
    accepts: async () => (await control()).accepts,
    held: async () => (await control()).held,
    open: async () => (await control()).open,
    stop: () => proc.stop(),
  };
}

/** iperf3 server for TCP bulk. */
export async function startIperf(cpu: string | undefined): Promise<{ proc: Proc; port: number; stop(): Promise<void> }> {
  const port = await freePort();
  const proc = spawnProc('iperf3-server', 'iperf3', ['-s', '-B', '127.0.0.1', '-p', String(port), '--forceflush'], { cpu });
  await proc.waitLine((l) => (/Server listening/.test(l) ? true : undefined));
  return { proc, port, stop: () => proc.stop() };
}
