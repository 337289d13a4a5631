/**
 * Fault matrix: the README's incident. Open-loop GETs every 10 ms through each target (all targets at once,
 * each with its own upstream port); at t = faultAt the target's *established* upstream connections are
 * blackholed with nftables (matched by their ports, both directions; by default on the input hook so packets
 * leave and vanish as in a real network); new connections keep working. A request is "hit" when it failed (error or
 * non-2xx) or took longer than 100 ms.
 */
import { execFile, execFileSync } from 'node:child_process';
import http from 'node:http';
import type { HttpUpstream, Target, TargetName } from './peers.js';
import { TargetUnavailable, startNginxUpstream, startNodeUpstream, startTarget } from './peers.js';
import { onCleanup, run, sleep } from './proc.js';

export type FaultVariant = 'steady' | 'burst' | 'idle' | 'early-resume';

export const VARIANT_DOC: Record<FaultVariant, string> = {
  steady: 'one GET every 10 ms throughout',
  burst: '11 GETs at once every 100 ms (pools hold ~11 connections)',
  idle: 'one GET every 10 ms, traffic pauses 9.5–25 s (the blackhole hits idle pooled connections)',
  'early-resume': 'one GET every 10 ms, traffic pauses 9.5–11 s (resumes before anyone can have noticed)',
};

/** Slower than this counts as hit. */
export const SLOW_MS = 100;

/** One request: [sent ms since start, latency ms, outcome]. Outcome: HTTP status as a string, or an error code. */
export type RequestRecord = [number, number, string];

export interface FaultRun {
  readonly variant: FaultVariant;
  readonly faultAtMs: number;
  readonly clientTimeoutMs: number;
  /** Per target: upstream flows blackholed, and every request. */
  readonly targets: Record<string, { blackholed: number; requests: RequestRecord[] }>;
}

export interface FaultRaw {
  readonly runs: FaultRun[];
  readonly unavailable: Record<string, string>;
  readonly hook: Hook;
}

/** input: packets leave and vanish as in a real network; output: the local stack cannot send (FACTS.md). */
export type Hook = 'input' | 'output';

export interface FaultOptions {
  readonly quick: boolean;
  readonly variants: readonly FaultVariant[];
  readonly targets: readonly TargetName[];
  readonly dir: string;
  readonly sidecarDir: string;
  readonly hook: Hook;
  readonly say: (s: string) => void;
}

interface Timing {
  readonly faultAtMs: number;
  readonly sendEndMs: number;
  readonly clientTimeoutMs: number;
}

function timing(quick: boolean): Timing {
  // Full: run long enough after the fault for a 30 s read timeout to show, and bound every request by 40 s.
  return quick ? { faultAtMs: 1500, sendEndMs: 4000, clientTimeoutMs: 4000 } : { faultAtMs: 10000, sendEndMs: 42000, clientTimeoutMs: 40000 };
}

/** How many GETs are due at tick k (10 ms ticks) for a variant. */
function dueAt(variant: FaultVariant, k: number, quick: boolean): number {
  const ms = k * 10;
  const scale = quick ? 0.15 : 1;
  switch (variant) {
    case 'steady':
      return 1;
    case 'burst':
      return k % 10 === 0 ? 11 : 0;
    case 'idle':
      return ms >= 9500 * scale && ms < 25000 * scale ? 0 : 1;
    case 'early-resume':
      return ms >= 9500 * scale && ms < 11000 * scale ? 0 : 1;
  }
}

/** Local ports of established connections to 127.0.0.1:port (the client side: the proxy's upstream flows). */
async function upstreamFlows(port: number): Promise<number[]> {
  const { stdout } = await run('ss', ['-Htn', 'state', 'established', `( dport = :${port} )`]);
  const ports: number[] = [];
  for (const line of stdout.split('\n')) {
    const cols = line.trim().split(/\s+/);
    // With a state filter the columns are: Recv-Q Send-Q Local:Port Peer:Port.
    const local = cols[2];
    if (local === undefined) continue;
    const p = Number(local.slice(local.lastIndexOf(':') + 1));
    if (Number.isInteger(p)) ports.push(p);
  }
  return ports;
}

let tableCounter = 0;

/** One nft table dropping every flow given as [upstreamPort, clientPorts], both directions. Returns a remover. */
async function blackhole(flows: ReadonlyArray<[number, readonly number[]]>, hook: Hook): Promise<() => void> {
  const table = `ks_bench_${process.pid}_${++tableCounter}`;
  const rules: string[] = [];
  for (const [up, clients] of flows) {
    if (clients.length === 0) continue;
    const set = `{ ${clients.join(', ')} }`;
    rules.push(`    ip daddr 127.0.0.1 tcp dport ${up} tcp sport ${set} drop`, `    ip saddr 127.0.0.1 tcp sport ${up} tcp dport ${set} drop`);
  }
  const text = [`table inet ${table} {`, '  chain c {', `    type filter hook ${hook} priority filter; policy accept;`, ...rules, '  }', '}', ''].join('\n');
  let removed = false;
  const remove = (): void => {
    if (removed) return;
    removed = true;
    try {
      execFileSync('nft', ['delete', 'table', 'inet', table], { stdio: 'ignore' });
    } catch {
      // Already gone.
    }
  };
  onCleanup(remove);
  await new Promise<void>((resolve, reject) => {
    const child = execFile('nft', ['-f', '-'], (err) => (err ? reject(new Error(`nft: ${err.message}\n${text}`)) : resolve()));
    child.stdin?.end(text);
  });
  return remove;
}

function outcomeOf(err: NodeJS.ErrnoException): string {
  if (err.message === 'client-timeout') return 'client timeout';
  return err.code ?? err.message;
}

async function runVariant(variant: FaultVariant, o: FaultOptions, unavailable: Record<string, string>): Promise<FaultRun> {
  const tm = timing(o.quick);
  const upstream: HttpUpstream = o.quick ? await startNodeUpstream(o.targets.length, undefined) : await startNginxUpstream(o.targets.length, o.dir, undefined);
  const targets: Target[] = [];
  let removeBlackhole: (() => void) | undefined;
  try {
    for (const [i, name] of o.targets.entries()) {
      if (unavailable[name] !== undefined) continue;
      try {
        targets.push(await startTarget(name, { httpUpstream: upstream.ports[i], tcpUpstream: undefined }, { dir: o.dir, proxyCpu: undefined, sidecarDir: o.sidecarDir }));
      } catch (err) {
        if (!(err instanceof TargetUnavailable)) throw err;
        unavailable[name] = err.message;
        o.say(`  ${name}: unavailable: ${err.message}`);
      }
    }
    const records = new Map<string, RequestRecord[]>(targets.map((t) => [t.name, []]));
    const agents = new Map<string, http.Agent>(targets.map((t) => [t.name, new http.Agent({ keepAlive: true })]));
    const pending = new Set<Promise<void>>();
    const start = performance.now();
    const send = (t: Target): void => {
      const sent = performance.now() - start;
      const list = records.get(t.name)!;
      const p = new Promise<void>((resolve) => {
        let done = false;
        const finish = (outcome: string): void => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          list.push([Math.round(sent * 10) / 10, Math.round((performance.now() - start - sent) * 10) / 10, outcome]);
          resolve();
        };
        const req = http.get({ host: '127.0.0.1', port: t.http!.port, path: '/', agent: agents.get(t.name) }, (res) => {
          res.resume();
          res.on('end', () => finish(String(res.statusCode)));
          res.on('error', (e: NodeJS.ErrnoException) => finish(outcomeOf(e)));
        });
        req.on('error', (e: NodeJS.ErrnoException) => finish(outcomeOf(e)));
        // The client gives up after clientTimeoutMs in total, like an app with a request deadline.
        const timer = setTimeout(() => {
          finish('client timeout');
          req.destroy();
        }, tm.clientTimeoutMs);
      });
      pending.add(p);
      void p.then(() => pending.delete(p));
    };

    let blackholed: Record<string, number> = {};
    let faultDone = false;
    let k = 0;
    const lastTick = Math.ceil(tm.sendEndMs / 10);
    while (k <= lastTick) {
      const now = performance.now() - start;
      if (!faultDone && now >= tm.faultAtMs) {
        faultDone = true;
        const flows: Array<[number, number[]]> = [];
        for (const t of targets) {
          const ports = await upstreamFlows(t.http!.upstreamPort);
          flows.push([t.http!.upstreamPort, ports]);
          blackholed[t.name] = ports.length;
        }
        removeBlackhole = await blackhole(flows, o.hook);
        o.say(`  ${variant}: blackholed ${Object.entries(blackholed).map(([n, c]) => `${n}=${c}`).join(' ')}`);
      }
      // Open loop: send everything due by now, whatever is still outstanding.
      while (k <= lastTick && k * 10 <= now) {
        const n = dueAt(variant, k, o.quick);
        for (let j = 0; j < n; j++) for (const t of targets) send(t);
        k++;
      }
      await sleep(Math.max(1, k * 10 - (performance.now() - start)));
    }
    await Promise.all([...pending]);
    for (const a of agents.values()) a.destroy();
    blackholed = Object.fromEntries(targets.map((t) => [t.name, blackholed[t.name] ?? 0]));
    return {
      variant,
      faultAtMs: tm.faultAtMs,
      clientTimeoutMs: tm.clientTimeoutMs,
      targets: Object.fromEntries(targets.map((t) => [t.name, { blackholed: blackholed[t.name] ?? 0, requests: records.get(t.name)!.sort((a, b) => a[0] - b[0]) }])),
    };
  } finally {
    removeBlackhole?.();
    for (const t of targets) await t.stop();
    await upstream.stop();
  }
}

export async function runFault(o: FaultOptions): Promise<FaultRaw> {
  const runs: FaultRun[] = [];
  const unavailable: Record<string, string> = {};
  for (const v of o.variants) {
    o.say(`  variant ${v}: ${VARIANT_DOC[v]}`);
    runs.push(await runVariant(v, o, unavailable));
  }
  return { runs, unavailable, hook: o.hook };
}
