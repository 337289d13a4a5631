/** Starts an in-process sidecar for tests, with logs captured in memory. */
import { Writable } from 'node:stream';
import { once } from 'node:events';
import net from 'node:net';
import type { Config } from '../../src/config/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/index.js';
import type { Sidecar } from '../../src/sidecar.js';
import { startSidecar } from '../../src/sidecar.js';

export interface TestSidecar {
  readonly sidecar: Sidecar;
  readonly config: Config;
  readonly logs: Array<Record<string, unknown>>;
  /** Listen port of route `name` (default: the first route). */
  port(name?: string): number;
  stop(): Promise<void>;
}

/** Builds a Config as if read from a file (so it goes through the same validation). */
export function configFrom(obj: unknown, env: Record<string, string> = {}): Config {
  return loadConfig({ env, configFile: 'test.json', readFile: () => JSON.stringify(obj) });
}

export async function startTestSidecar(obj: Record<string, unknown>): Promise<TestSidecar> {
  const config = configFrom({ admin: { port: 0 }, debug: { port: 0 }, shutdown: { drainTimeoutMs: 2000 }, ...obj });
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const logger = createLogger('debug', sink);
  const sidecar = await startSidecar(config, { logger });
  return {
    sidecar,
    config,
    logs,
    port(name) {
      const all = [...sidecar.routes, ...sidecar.h2Routes];
      const r = name === undefined ? all[0] : all.find((x) => x.name === name);
      if (r === undefined) throw new Error(`no route ${name}`);
      return r.address.port;
    },
    async stop() {
      await sidecar.stop();
    },
  };
}

/** An h2 route object for configFrom/startTestSidecar (issue 13). */
export function h2Route(upstreamPort: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'g1', mode: 'h2', listen: { port: 0 }, upstream: { host: '127.0.0.1', port: upstreamPort }, ...extra };
}

/** A tcp route object for configFrom/startTestSidecar. */
export function tcpRoute(upstreamPort: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'r1', mode: 'tcp', listen: { port: 0 }, upstream: { host: '127.0.0.1', port: upstreamPort }, ...extra };
}

/** Connects a client to 127.0.0.1:port and waits for the connection. */
export async function connectClient(port: number): Promise<net.Socket> {
  const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  await once(s, 'connect');
  return s;
}

/** Resolves with the error (or undefined) when the socket closes, and when. */
export function whenClosed(s: net.Socket): Promise<{ err: NodeJS.ErrnoException | undefined; at: number }> {
  return new Promise((resolve) => {
    let err: NodeJS.ErrnoException | undefined;
    s.on('error', (e: NodeJS.ErrnoException) => (err = e));
    s.once('close', () => resolve({ err, at: performance.now() }));
  });
}

/** Reads from the socket until `text` has arrived. */
export function readUntil(s: net.Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (c: Buffer): void => {
      got += c.toString();
      if (got.includes(text)) {
        s.off('data', onData);
        resolve(got);
      }
    };
    s.on('data', onData);
    s.once('close', () => reject(new Error(`closed before "${text}" arrived (got ${JSON.stringify(got)})`)));
  });
}

/** An http route object for configFrom/startTestSidecar. */
export function httpRoute(upstreamPort: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'h1', mode: 'http', listen: { port: 0 }, upstream: { host: '127.0.0.1', port: upstreamPort }, ...extra };
}

/** The value of one sample in a Prometheus scrape, or 0 when absent. `labels` must match exactly. */
export async function metricValue(sc: TestSidecar, name: string, labels: Record<string, string>): Promise<number> {
  const text = await sc.sidecar.registry.metrics();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(',');
  for (const line of text.split('\n')) {
    const m = /^([a-z0-9_]+)\{([^}]*)\} (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    if (m[2]!.split(',').sort().join(',') === want) return Number(m[3]);
  }
  return 0;
}

/** Waits until `cond()` holds, checking on each event-loop turn (bounded by `ms`); throws on timeout. */
export async function waitFor(cond: () => boolean, ms: number, what = 'condition'): Promise<void> {
  const until = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
