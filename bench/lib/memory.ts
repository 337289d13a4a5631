/**
 * RSS per idle pooled upstream connection: the sidecar with 0, 1 000 and 10 000 of them, a fresh process per
 * count. tcp mode: warmSpares = N. http mode: N concurrent requests to a slow upstream force N upstream
 * connections; the clients then leave and the N keep-alive connections stay pooled, idle.
 */
import http from 'node:http';
import type { TargetName } from './peers.js';
import { TargetUnavailable, httpGetText, startNodeUpstream, startSidecar } from './peers.js';
import { NOFILE, rssKiB, sleep } from './proc.js';

export interface MemorySample {
  readonly mode: 'tcp' | 'http';
  readonly requested: number;
  /** Idle upstream connections the upstream saw when RSS was read. */
  readonly idleConns: number;
  readonly rssKiB: number;
  /** V8 heap in use (the sidecar's own nodejs_heap_size_used_bytes), KiB: the JS share of the RSS. */
  readonly heapUsedKiB: number;
  /** The same two after a full GC (SIGUSR2 to the preloaded gc-on-signal): what the connections retain. */
  readonly rssAfterGcKiB: number;
  readonly heapUsedAfterGcKiB: number;
}

export interface MemoryRaw {
  readonly samples: MemorySample[];
  readonly unavailable: Record<string, string>;
}

export interface MemoryOptions {
  readonly counts: readonly number[];
  readonly dir: string;
  readonly proxyCpu: string | undefined;
  readonly loadCpu: string | undefined;
  readonly sidecarDir: string;
  readonly say: (s: string) => void;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return true;
    await sleep(200);
  }
  return false;
}

/** Settle time before reading RSS: lets the connect storm's garbage get collected on the next idle GC. */
const SETTLE_MS = 5000;

export async function runMemory(o: MemoryOptions): Promise<MemoryRaw> {
  const samples: MemorySample[] = [];
  const unavailable: Record<string, string> = {};
  // 5 s per response: long enough that clients whose SYN was retried (listen backlog full) still overlap.
  const upstream = await startNodeUpstream(1, o.loadCpu, 5000);
  try {
    for (const mode of ['tcp', 'http'] as const) {
      const name: TargetName = mode === 'tcp' ? 'sidecar-tcp' : 'sidecar-http';
      // http holds a downstream and an upstream socket per connection while the pool fills: cap at the fd limit.
      const cap = mode === 'http' ? Math.floor((NOFILE.hard - 1000) / 2 / 1000) * 1000 : Infinity;
      for (const n of o.counts.map((c) => Math.min(c, cap))) {
        const ctx = { dir: o.dir, proxyCpu: o.proxyCpu, sidecarDir: o.sidecarDir };
        let t;
        try {
          t =
            mode === 'tcp'
              ? await startSidecar(name, { httpUpstream: upstream.holdPort, tcpUpstream: undefined }, ctx, { warmSpares: n, maxConnections: n + 100, gcOnSignal: true })
              : await startSidecar(name, { httpUpstream: upstream.ports[0], tcpUpstream: undefined }, ctx, {
                  maxConnections: n + 100,
                  http: { maxIdle: n + 100, maxPending: n + 100 },
                  gcOnSignal: true,
                });
        } catch (err) {
          if (!(err instanceof TargetUnavailable)) throw err;
          unavailable[name] = err.message;
          o.say(`  ${name}: unavailable: ${err.message}`);
          break;
        }
        try {
          let idle: number;
          if (mode === 'tcp') {
            await waitFor(async () => (await upstream.held()) >= n, 60000);
            idle = await upstream.held();
          } else {
            const open0 = await upstream.open();
            if (n > 0) {
              const agent = new http.Agent({ keepAlive: false, maxSockets: n });
              await Promise.all(
                Array.from(
                  { length: n },
                  () =>
                    new Promise<void>((resolve) => {
                      const req = http.get({ host: '127.0.0.1', port: t.http!.port, path: '/', agent, timeout: 60000 }, (res) => {
                        res.resume();
                        res.on('end', resolve);
                      });
                      req.on('timeout', () => req.destroy());
                      req.on('error', () => resolve());
                    }),
                ),
              );
              agent.destroy();
            }
            idle = (await upstream.open()) - open0;
          }
          await sleep(SETTLE_MS);
          const heapUsed = async (): Promise<number> => {
            if (t.adminPort === undefined) return NaN;
            const m = /^\w*nodejs_heap_size_used_bytes\s+([\d.e+]+)/m.exec(await httpGetText(t.adminPort, '/metrics'));
            return m ? Math.round(Number(m[1]) / 1024) : NaN;
          };
          const rss = rssKiB(t.proc!.pid);
          const heapUsedKiB = await heapUsed();
          process.kill(t.proc!.pid, 'SIGUSR2');
          await sleep(1500);
          const rssAfterGcKiB = rssKiB(t.proc!.pid);
          const heapUsedAfterGcKiB = await heapUsed();
          samples.push({ mode, requested: n, idleConns: idle, rssKiB: rss, heapUsedKiB, rssAfterGcKiB, heapUsedAfterGcKiB });
          o.say(`  ${mode} ${n}: ${idle} idle upstream conns, RSS ${rss} KiB (after GC ${rssAfterGcKiB}), JS heap used ${heapUsedKiB} KiB (after GC ${heapUsedAfterGcKiB})`);
        } finally {
          await t.stop();
          // Let the upstream see the closes before the next count.
          await waitFor(async () => (await upstream.held()) === 0, 10000);
        }
      }
    }
  } finally {
    await upstream.stop();
  }
  return { samples, unavailable };
}
