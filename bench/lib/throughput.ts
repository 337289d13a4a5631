/**
 * Throughput/cost matrix: HTTP keep-alive GETs at several concurrencies and TCP bulk both directions, through
 * every target in turn (interleaved, rotated each round), the proxy pinned to one CPU and load + upstream to
 * the other. Proxy CPU is the run time (ns) of every thread of its process tree around each run (proc.ts cpuBetween).
 */
import type { HttpLoadResult, BulkResult, Direction } from './load.js';
import { iperfLoad, nodeBulk, nodeLoad, wrkLoad } from './load.js';
import type { HttpUpstream, Target, TargetName } from './peers.js';
import { TargetUnavailable, startIperf, startNginxUpstream, startNodeUpstream, startTarget } from './peers.js';
import { cpuBetween, cpuSnapshot, rssKiB } from './proc.js';
import type { CpuDelta } from './proc.js';

const NO_CPU: CpuDelta = { seconds: NaN, user: NaN, sys: NaN, tickSeconds: NaN, precise: false };

export interface HttpSample {
  readonly round: number;
  readonly target: TargetName;
  readonly c: number;
  readonly rps: number;
  readonly requests: number;
  readonly errors: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Proxy CPU per request, µs (NaN for direct): per-thread schedstat, ns (proc.ts cpuBetween). */
  readonly cpuUsPerReq: number;
  /** The same from utime+stime clock ticks (10 ms each): the cross-check. */
  readonly cpuTickUsPerReq: number;
  /** False when a thread exited during the run and cpuUsPerReq fell back to ticks. */
  readonly cpuPrecise: boolean;
  /** Its user and system parts (split by the ticks' user:sys ratio), µs per request. */
  readonly userUsPerReq: number;
  readonly sysUsPerReq: number;
  /**
   * Proxy CPU-seconds per wall second (1 = its pinned CPU saturated). Per-request and per-GB costs depend on
   * it: a proxy with idle time between events pays a wake-up (epoll, scheduler) per few requests, a
   * saturated one batches. Compare targets' costs at similar busy fractions, or say they differ.
   */
  readonly cpuBusy: number;
  readonly newUpstreamConns: number;
  readonly rssKiB: number;
}

export interface TcpSample {
  readonly round: number;
  readonly target: TargetName;
  readonly dir: Direction;
  readonly gbps: number;
  readonly bytes: number;
  /** Proxy CPU-seconds per GB (NaN for direct). */
  readonly cpuSPerGB: number;
  /** Proxy CPU-seconds per wall second (see HttpSample.cpuBusy). */
  readonly cpuBusy: number;
  readonly rssKiB: number;
}

export interface ThroughputRaw {
  readonly http: HttpSample[];
  readonly tcp: TcpSample[];
  /** Targets that could not run, with why. */
  readonly unavailable: Record<string, string>;
  readonly tools: { http: string; tcp: string; upstream: string };
}

export interface ThroughputOptions {
  readonly quick: boolean;
  readonly rounds: number;
  readonly httpSeconds: number;
  readonly tcpSeconds: number;
  /** Fixed iperf3 rate (-b), Gbit/s; undefined = as fast as it goes (then CPU/GB depends on each target's rate). */
  readonly tcpRateGbps?: number | undefined;
  readonly concurrencies: readonly number[];
  readonly httpTargets: readonly TargetName[];
  readonly tcpTargets: readonly TargetName[];
  readonly dir: string;
  readonly proxyCpu: string | undefined;
  readonly loadCpu: string | undefined;
  readonly sidecarDir: string;
  readonly say: (s: string) => void;
}

function rotate<T>(xs: readonly T[], k: number): T[] {
  const n = xs.length;
  return n === 0 ? [] : xs.map((_, i) => xs[(i + k) % n]!);
}

export async function runThroughput(o: ThroughputOptions): Promise<ThroughputRaw> {
  const unavailable: Record<string, string> = {};
  const http: HttpSample[] = [];
  const tcp: TcpSample[] = [];
  const allNames = [...new Set([...o.httpTargets, ...o.tcpTargets])];
  const httpIndex = new Map(o.httpTargets.map((t, i) => [t, i]));

  let upstream: HttpUpstream;
  let tcpUpstreamPort: number;
  let stopTcpUpstream: () => Promise<void>;
  if (o.quick) {
    const u = await startNodeUpstream(o.httpTargets.length, o.loadCpu);
    upstream = u;
    tcpUpstreamPort = u.bulkPort;
    stopTcpUpstream = async () => {};
  } else {
    upstream = await startNginxUpstream(o.httpTargets.length, o.dir, o.loadCpu);
    const ip = await startIperf(o.loadCpu);
    tcpUpstreamPort = ip.port;
    stopTcpUpstream = () => ip.stop();
  }
  const targets = new Map<TargetName, Target>();
  try {
    for (const name of allNames) {
      const i = httpIndex.get(name);
      try {
        const t = await startTarget(
          name,
          { httpUpstream: i !== undefined ? upstream.ports[i] : undefined, tcpUpstream: o.tcpTargets.includes(name) ? tcpUpstreamPort : undefined },
          { dir: o.dir, proxyCpu: o.proxyCpu, sidecarDir: o.sidecarDir },
        );
        targets.set(name, t);
      } catch (err) {
        if (!(err instanceof TargetUnavailable)) throw err;
        unavailable[name] = err.message;
        o.say(`  ${name}: unavailable: ${err.message}`);
      }
    }

    const httpLoad = (port: number, c: number, secs: number): Promise<HttpLoadResult> =>
      o.quick ? nodeLoad(port, c, secs) : wrkLoad(o.dir, port, c, secs, o.loadCpu);
    const bulkLoad = (port: number, d: Direction, secs: number): Promise<BulkResult> =>
      o.quick ? nodeBulk(port, d, secs) : iperfLoad(port, d, secs, o.loadCpu, o.tcpRateGbps);

    const httpTs = o.httpTargets.map((n) => targets.get(n)).filter((t): t is Target => t?.http !== undefined);
    const tcpTs = o.tcpTargets.map((n) => targets.get(n)).filter((t): t is Target => t?.tcp !== undefined);

    // Warm-up: JIT, pools, page cache. Not recorded.
    for (const t of httpTs) await httpLoad(t.http!.port, o.concurrencies[0] ?? 50, o.quick ? 0.5 : 1);

    for (let round = 0; round < o.rounds; round++) {
      for (const c of o.concurrencies) {
        for (const t of rotate(httpTs, round)) {
          const pid = t.proc?.pid;
          const cpu0 = pid !== undefined ? cpuSnapshot(pid) : undefined;
          const acc0 = await upstream.accepts();
          const r = await httpLoad(t.http!.port, c, o.httpSeconds);
          const d: CpuDelta = pid !== undefined && cpu0 ? cpuBetween(cpu0, cpuSnapshot(pid)) : NO_CPU;
          const { user, sys } = d;
          const acc1 = await upstream.accepts();
          const s: HttpSample = {
            round,
            target: t.name,
            c,
            rps: r.requests / r.seconds,
            requests: r.requests,
            errors: r.errors,
            p50Ms: r.p50Ms,
            p99Ms: r.p99Ms,
            cpuUsPerReq: ((user + sys) * 1e6) / r.requests,
            cpuTickUsPerReq: (d.tickSeconds * 1e6) / r.requests,
            cpuPrecise: d.precise,
            userUsPerReq: (user * 1e6) / r.requests,
            sysUsPerReq: (sys * 1e6) / r.requests,
            cpuBusy: (user + sys) / r.seconds,
            newUpstreamConns: acc1 - acc0,
            rssKiB: pid !== undefined ? rssKiB(pid) : NaN,
          };
          http.push(s);
          o.say(`  http r${round} c=${c} ${t.name}: ${s.rps.toFixed(0)} req/s, p99 ${s.p99Ms.toFixed(2)} ms, ${s.cpuUsPerReq.toFixed(1)} µs/req (ticks ${s.cpuTickUsPerReq.toFixed(1)}${s.cpuPrecise || pid === undefined ? '' : ', a thread exited: ticks used'}; user ${s.userUsPerReq.toFixed(1)}, sys ${s.sysUsPerReq.toFixed(1)}; CPU ${(100 * s.cpuBusy).toFixed(0)}% busy), ${s.newUpstreamConns} new upstream conns, ${s.errors} errors`);
        }
      }
      for (const d of ['upload', 'download'] as const) {
        for (const t of rotate(tcpTs, round)) {
          const pid = t.proc?.pid;
          const c0 = pid !== undefined ? cpuSnapshot(pid) : undefined;
          const r = await bulkLoad(t.tcp!.port, d, o.tcpSeconds);
          const cpu = pid !== undefined && c0 ? cpuBetween(c0, cpuSnapshot(pid)).seconds : NaN;
          const s: TcpSample = {
            round,
            target: t.name,
            dir: d,
            gbps: (r.bytes * 8) / r.seconds / 1e9,
            bytes: r.bytes,
            cpuSPerGB: cpu / (r.bytes / 1e9),
            cpuBusy: cpu / r.seconds,
            rssKiB: pid !== undefined ? rssKiB(pid) : NaN,
          };
          tcp.push(s);
          o.say(`  tcp r${round} ${d} ${t.name}: ${s.gbps.toFixed(2)} Gbit/s, ${s.cpuSPerGB.toFixed(2)} CPU-s/GB (CPU ${(100 * s.cpuBusy).toFixed(0)}% busy)`);
        }
      }
    }
  } finally {
    for (const t of targets.values()) await t.stop();
    await upstream.stop();
    await stopTcpUpstream();
  }
  return {
    http,
    tcp,
    unavailable,
    tools: o.quick
      ? { http: 'built-in Node closed-loop client', tcp: 'built-in Node bulk client', upstream: 'built-in Node upstream' }
      : { http: 'wrk -t1 (keep-alive)', tcp: `iperf3, 1 stream${o.tcpRateGbps !== undefined ? `, fixed ${o.tcpRateGbps} Gbit/s (-b)` : ', unlimited rate'}`, upstream: 'nginx (return 200), iperf3 -s' },
  };
}
