/**
 * CLI entry: argv -> command -> exit code. The only place (with bin.ts) that installs signal handlers or
 * decides the process's exit code.
 */
import type { AddressInfo } from 'node:net';
import { isIP } from 'node:net';
import type { Config } from '../config/index.js';
import { loadConfig, redactConfig } from '../config/index.js';
import { ConfigError, InjectError, SockoptUnsupportedError, UsageError } from '../errors.js';
import { httpUrl } from '../util/url.js';
import { errnoOf } from '../liveness/index.js';
import { createLogger } from '../log/index.js';
import { createResolver } from '../pool/index.js';
import { startSidecar } from '../sidecar.js';
import { selfCheckSockopts } from '../sockopts/index.js';
import { VERSION } from '../version.js';
import type { InjectArgs } from './args.js';
import { HELP, parseCliArgs } from './args.js';
import type { ParsedArgs } from './args.js';
import { EXIT } from './exit-codes.js';

export interface CliIo {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  /** Reads standard input to the end (inject with `-`); defaults to process.stdin. */
  readonly readStdin?: () => Promise<string>;
}

/** Runs one command; resolves with the exit code (for `run`/`demo`, once the sidecar has stopped). */
export async function cliMain(argv: readonly string[], io: CliIo): Promise<number> {
  try {
    const args = parseCliArgs(argv);
    switch (args.command) {
      case 'help':
        io.out(HELP);
        return EXIT.ok;
      case 'version':
        io.out(`${VERSION}\n`);
        return EXIT.ok;
      case 'check': {
        const config = loadConfig({ env: io.env, configFile: args.configFile });
        await selfCheckSockopts(config.routes.map((r) => ({ name: `routes.${r.name}.keepalive`, keepalive: r.keepalive })));
        io.out(`configuration OK: ${config.routes.length} route(s): ${config.routes.map((r) => `${r.name} (${r.mode} ${r.listen.host}:${r.listen.port} -> ${r.upstream.host}:${r.upstream.port})`).join(', ')}\n`);
        // A name that does not resolve now is a warning, not a failure: DNS may be ready only once the pod is.
        for (const w of await unresolvedUpstreams(config)) io.err(`keepalive-sidecar check: warning: ${w}\n`);
        return EXIT.ok;
      }
      case 'print-config':
        io.out(`${JSON.stringify(redactConfig(loadConfig({ env: io.env, configFile: args.configFile })), null, 2)}\n`);
        return EXIT.ok;
      case 'run':
        return await serve(loadConfig({ env: io.env, configFile: args.configFile }), io);
      case 'start': {
        const hasConfig = args.configFile !== undefined || Boolean(io.env.SIDECAR_CONFIG) || Boolean(io.env.SIDECAR_UPSTREAM);
        return hasConfig ? await serve(loadConfig({ env: io.env, configFile: args.configFile }), io) : await demo(args.configFile, io);
      }
      case 'demo':
        return await demo(args.configFile, io);
      case 'inject':
        return await inject(args.inject as InjectArgs, io);
      case 'doctor':
        return await doctor(args, io);
    }
  } catch (err) {
    return report(err, io);
  }
}

/** Most time `check` waits for one upstream name to resolve. */
const CHECK_RESOLVE_TIMEOUT_MS = 3000;

/** One warning per route whose upstream host name does not resolve at this moment (IP literals skipped). */
async function unresolvedUpstreams(config: Config): Promise<string[]> {
  const warnings = await Promise.all(
    config.routes.map(async (r) => {
      if (isIP(r.upstream.host) !== 0) return undefined;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve(`no answer within ${CHECK_RESOLVE_TIMEOUT_MS} ms`), CHECK_RESOLVE_TIMEOUT_MS);
      });
      const problem = await Promise.race([
        // The route's own resolver (upstream.dnsServers or resolv.conf with its search list), as `run` uses it.
        createResolver({ dnsServers: r.upstream.dnsServers })(r.upstream.host).then(
          () => undefined,
          (err: unknown) => `resolve_failed (${errnoOf(err) ?? String(err)})`,
        ),
        timeout,
      ]);
      clearTimeout(timer);
      return problem === undefined ? undefined : `routes.${r.name}.upstream.host: ${r.upstream.host} does not resolve now: ${problem}`;
    }),
  );
  return warnings.filter((w): w is string => w !== undefined);
}

function report(err: unknown, io: CliIo): number {
  if (err instanceof UsageError) {
    io.err(`keepalive-sidecar: ${err.message}\n`);
    return EXIT.usage;
  }
  if (err instanceof ConfigError) {
    io.err(`keepalive-sidecar: ${err.message}\n`);
    return EXIT.config;
  }
  if (err instanceof InjectError) {
    io.err(`keepalive-sidecar inject: ${err.message}\n`);
    return EXIT.input;
  }
  if (err instanceof SockoptUnsupportedError) {
    io.err(`keepalive-sidecar: ${err.message}\n(the sidecar would not detect dead peers as configured, so it refuses to start)\n`);
    return EXIT.sockopt;
  }
  const e = err as NodeJS.ErrnoException;
  io.err(`keepalive-sidecar: ${e.code === 'EADDRINUSE' ? `address already in use: ${(e as { address?: string }).address ?? ''}:${(e as { port?: number }).port ?? ''}` : e.message ?? String(err)}\n`);
  return EXIT.runtime;
}

/** Reads the manifests, adds the sidecar, prints the result; nothing reaches stdout unless it all worked. */
async function inject(args: InjectArgs, io: CliIo): Promise<number> {
  // inject/, doctor/ and demo/ are loaded by their commands only (yaml alone is ~7 MiB of a running sidecar);
  // so is node:fs/promises (it loads node's readline code).
  const { injectManifests, parseRouteSpec, validateRoutes } = await import('../inject/index.js');
  const routes = args.routes.map(parseRouteSpec);
  validateRoutes(routes, args.adminPort);
  let text: string;
  try {
    text = args.input === '-' ? await (io.readStdin ?? readProcessStdin)() : await (await import('node:fs/promises')).readFile(args.input, 'utf8');
  } catch (err) {
    throw new InjectError(`cannot read ${args.input === '-' ? 'standard input' : args.input}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const result = injectManifests(text, { routes, image: args.image ?? `keepalive-sidecar:${VERSION}`, adminPort: args.adminPort, isLegacy: args.isLegacy });
  for (const w of result.warnings) io.err(`keepalive-sidecar inject: warning: ${w}\n`);
  io.out(result.output);
  return EXIT.ok;
}

async function readProcessStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Serves until SIGTERM or SIGINT, then drains. A second SIGTERM/SIGINT during the drain is logged and
 * ignored (the drain already has its bound). SIGHUP is logged and ignored: config reload is not supported,
 * restart the pod (Node's default for SIGHUP is to die at once, exit 129, resetting every request).
 */
async function serve(config: Config, io: CliIo, onStarted?: (admin: AddressInfo | undefined, routes: ReadonlyArray<{ name: string; address: AddressInfo }>, debug: AddressInfo | undefined) => void): Promise<number> {
  const logger = createLogger(config.log.level);
  // Handlers go in before the listeners start: a SIGTERM during startup (routes bind one by one, the HTTP path is
  // loaded lazily) is remembered and drains right after, instead of Node's default (death, nothing logged).
  const onHangup = (signal: NodeJS.Signals): void => {
    logger.warn({ signal }, 'SIGHUP ignored: config reload is not supported, restart the pod');
  };
  let isDraining = false;
  let wake: (() => void) | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (isDraining) {
      logger.warn({ signal, drainTimeoutMs: config.shutdown.drainTimeoutMs }, 'signal ignored: already draining');
      return;
    }
    isDraining = true;
    logger.info({ signal, drainTimeoutMs: config.shutdown.drainTimeoutMs }, 'shutting down: draining connections');
    wake?.();
  };
  process.on('SIGHUP', onHangup);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  const removeHandlers = (): void => {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    process.off('SIGHUP', onHangup);
  };
  let sidecar: Awaited<ReturnType<typeof startSidecar>>;
  try {
    sidecar = await startSidecar(config, { logger });
  } catch (err) {
    removeHandlers();
    throw err;
  }
  onStarted?.(sidecar.admin, sidecar.routes, sidecar.debug);
  if (!isDraining) await new Promise<void>((resolve) => (wake = resolve));
  const outcome = await sidecar.stop();
  logger.info({ outcome }, 'stopped');
  // The handlers stay installed until here, so a late signal never falls back to Node's default (death).
  removeHandlers();
  await new Promise<void>((resolve) => logger.flush(() => resolve()));
  void io;
  return EXIT.ok;
}

/** Port the demo route listens on when free (a fixed port so the printed commands work as typed). */
const DEMO_PORT = 15000;

async function demo(configFile: string | undefined, io: CliIo): Promise<number> {
  const { startDemoHttpUpstream, startDemoUpstream } = await import('../demo/upstream.js');
  const upstream = await startDemoUpstream();
  const httpUpstream = await startDemoHttpUpstream();
  const up = upstream.address() as AddressInfo;
  const httpUp = httpUpstream.address() as AddressInfo;
  const base = loadConfig({ env: io.env, configFile, allowNoRoutes: true });
  const port = Number(io.env.SIDECAR_DEMO_PORT ?? DEMO_PORT);
  const httpPort = port + 1;
  const config: Config = {
    ...base,
    routes: [
      {
        ...loadConfig({ env: { SIDECAR_UPSTREAM: `127.0.0.1:${up.port}`, SIDECAR_LISTEN: `127.0.0.1:${port}`, SIDECAR_ROUTE_NAME: 'demo' } }).routes[0]!,
      },
      {
        ...loadConfig({ env: { SIDECAR_UPSTREAM: `127.0.0.1:${httpUp.port}`, SIDECAR_LISTEN: `127.0.0.1:${httpPort}`, SIDECAR_ROUTE_NAME: 'demo-http', SIDECAR_MODE: 'http' } }).routes[0]!,
      },
    ],
  };
  try {
    return await serve(config, io, (admin, routes, debug) => {
      const r = routes[0];
      const h = routes[1];
      const lines = [
        '',
        'keepalive-sidecar demo is running.',
        `  route "demo" (tcp): 127.0.0.1:${r?.address.port} -> built-in echo upstream 127.0.0.1:${up.port}`,
        '  Try it (type a line, it comes back; Ctrl-D to end):',
        `    node -e "const s=require('net').connect(${r?.address.port},'127.0.0.1');process.stdin.pipe(s).pipe(process.stdout)"`,
        `  route "demo-http" (http): 127.0.0.1:${h?.address.port} -> built-in HTTP upstream 127.0.0.1:${httpUp.port}`,
        '  Try it (three requests on one client connection; note the same upstreamConnectionPort: the pool reuses it):',
        `    curl -s http://127.0.0.1:${h?.address.port}/hello http://127.0.0.1:${h?.address.port}/again http://127.0.0.1:${h?.address.port}/third`,
        ...(admin !== undefined
          ? [
              `  Metrics:      curl -s http://${admin.address}:${admin.port}/metrics | grep -E 'keepalive_sidecar_(upstream|http)'`,
              ...(debug !== undefined
                ? [
                    `  Connections:  curl -s http://${debug.address}:${debug.port}/debug/connections`,
                    `  Doctor:       npx keepalive-sidecar doctor --admin-url http://${admin.address}:${admin.port} --debug-url http://${debug.address}:${debug.port}`,
                  ]
                : []),
            ]
          : []),
        '  Stop with Ctrl-C.',
        '',
      ];
      io.err(`${lines.join('\n')}\n`);
    });
  } finally {
    upstream.close();
    httpUpstream.close();
  }
}

/** `doctor`: prints its report; EXIT.problem when it found one. Config problems exit as usual (3). */
async function doctor(args: ParsedArgs, io: CliIo): Promise<number> {
  const hasConfig = args.configFile !== undefined || Boolean(io.env.SIDECAR_CONFIG) || Boolean(io.env.SIDECAR_UPSTREAM);
  let config: Config;
  let source: string;
  if (hasConfig) {
    config = loadConfig({ env: io.env, configFile: args.configFile });
    source = args.configFile ?? io.env.SIDECAR_CONFIG ?? 'SIDECAR_UPSTREAM/SIDECAR_LISTEN environment';
  } else {
    // No configuration: explain what the defaults would do (listen and upstream are placeholders).
    const base = loadConfig({ env: io.env, allowNoRoutes: true });
    const defaults = loadConfig({ env: { SIDECAR_UPSTREAM: 'upstream:1', SIDECAR_LISTEN: '127.0.0.1:0', SIDECAR_ROUTE_NAME: 'defaults' } }).routes;
    config = { ...base, routes: defaults };
    source = 'none given, so the defaults of a tcp route; listen and upstream are placeholders';
  }
  let adminUrl = args.adminUrl;
  if (adminUrl === undefined && config.admin.enabled && config.admin.port !== 0) {
    const h = ['0.0.0.0', '::', ''].includes(config.admin.host) ? '127.0.0.1' : config.admin.host;
    adminUrl = httpUrl(h, config.admin.port);
  }
  const { runDoctor } = await import('../doctor/index.js');
  let debugUrl = args.debugUrl;
  if (debugUrl === undefined && config.debug.port !== 0) {
    const h = config.debug.host;
    debugUrl = httpUrl(h, config.debug.port);
  }
  const report = await runDoctor({
    procRoot: args.procRoot ?? '/proc',
    routes: config.routes,
    configSource: source,
    adminUrl,
    isAdminUrlExplicit: args.adminUrl !== undefined,
    debugUrl,
  });
  io.out(report.text);
  return report.problems.length > 0 ? EXIT.problem : EXIT.ok;
}
