/**
 * Raw samples -> summary (medians, spreads, same-round ratios, the issue's targets met or missed) -> markdown.
 */
import type { FaultRaw, FaultVariant } from './fault.js';
import type { H2Summary } from './h2.js';
import { renderH2Markdown } from './h2.js';
import { SLOW_MS, VARIANT_DOC } from './fault.js';
import type { MemoryRaw } from './memory.js';
import type { TargetName } from './peers.js';
import { TARGET_LABEL } from './peers.js';
import type { Spread } from './stats.js';
import { fmt, fmtSpread, median, spread } from './stats.js';
import type { HttpSample, TcpSample, ThroughputRaw } from './throughput.js';

export interface HttpRow {
  readonly target: TargetName;
  readonly c: number;
  readonly rps: Spread;
  readonly vsDirect: Spread;
  readonly p50Ms: Spread;
  readonly p99Ms: Spread;
  readonly cpuUsPerReq: Spread;
  /** Proxy CPU-seconds per wall second (1 = its CPU saturated); absent in raw data from before it existed. */
  readonly cpuBusy: Spread;
  readonly vsHaproxy: Spread;
  readonly vsNodeHttpProxy: Spread;
  readonly newUpstreamConnsMax: number;
  readonly errors: number;
  readonly rssKiBMax: number;
}

export interface TcpRow {
  readonly target: TargetName;
  readonly dir: 'upload' | 'download';
  readonly gbps: Spread;
  readonly vsDirect: Spread;
  readonly cpuSPerGB: Spread;
  readonly cpuBusy: Spread;
  readonly vsHaproxy: Spread;
  readonly rssKiBMax: number;
}

export interface ThroughputSummary {
  readonly tools: ThroughputRaw['tools'];
  readonly rounds: number;
  readonly unavailable: Record<string, string>;
  readonly http: HttpRow[];
  readonly tcp: TcpRow[];
}

export interface MemorySummary {
  readonly unavailable: Record<string, string>;
  readonly rows: Array<{
    mode: 'tcp' | 'http';
    requested: number;
    idleConns: number;
    rssKiB: number;
    rssAfterGcKiB: number;
    /** RSS growth per connection as read: what the target is judged on. */
    kibPerConn: number;
    /** RSS growth per connection after a full GC (V8 rarely gives pages back, so close to kibPerConn). */
    kibPerConnAfterGc: number;
    /** V8 heap growth per connection after a full GC: the JS share. */
    heapKibPerConnAfterGc: number;
  }>;
}

export interface FaultRow {
  readonly target: TargetName;
  readonly requests: number;
  readonly blackholed: number;
  /** Failed (error or non-2xx) or slower than SLOW_MS. */
  readonly hit: number;
  /** Failed: error or non-2xx. */
  readonly failed: number;
  /** Slow 2xx requests that coincided with slow requests through most other targets: the box stalled, not the target. */
  readonly boxStalls: number;
  /** What the client got for the hit requests: outcome -> count and worst latency. */
  readonly got: Record<string, { count: number; maxMs: number }>;
  readonly maxLatencyMs: number;
  /** From the fault until every request sent afterwards was fine, box-wide stalls ignored (s); 0 = none was hit. */
  readonly fineAfterS: number;
}

export interface FaultSummary {
  readonly hook: string;
  readonly slowMs: number;
  readonly unavailable: Record<string, string>;
  readonly variants: Array<{ variant: FaultVariant; doc: string; faultAtMs: number; clientTimeoutMs: number; rows: FaultRow[] }>;
}

export interface TargetCheck {
  readonly target: string;
  readonly measured: string;
  /** true met, false missed, null could not be measured. */
  readonly met: boolean | null;
}

export interface Summary {
  readonly date: string;
  readonly env: Record<string, unknown>;
  readonly throughput: ThroughputSummary | undefined;
  readonly memory: MemorySummary | undefined;
  readonly fault: FaultSummary | undefined;
  /** The h2 scenario (issue 13), run with --only h2. */
  readonly h2?: H2Summary;
  readonly targets?: TargetCheck[];
}

/** Per-round ratio of each sample's value to the reference target's value in the same round and cell. */
function ratios<S extends { round: number; target: TargetName }>(cell: readonly S[], all: readonly S[], ref: TargetName, value: (s: S) => number, same: (a: S, b: S) => boolean): number[] {
  const out: number[] = [];
  for (const s of cell) {
    const r = all.find((x) => x.target === ref && x.round === s.round && same(s, x));
    if (r !== undefined) out.push(value(s) / value(r));
  }
  return out;
}

function summarizeThroughput(raw: ThroughputRaw): ThroughputSummary {
  const http: HttpRow[] = [];
  const sameC = (a: HttpSample, b: HttpSample): boolean => a.c === b.c;
  const cells = [...new Set(raw.http.map((s) => `${s.c}|${s.target}`))];
  for (const cell of cells) {
    const [cStr, target] = cell.split('|') as [string, TargetName];
    const c = Number(cStr);
    const xs = raw.http.filter((s) => s.c === c && s.target === target);
    http.push({
      target,
      c,
      rps: spread(xs.map((s) => s.rps)),
      vsDirect: spread(ratios(xs, raw.http, 'direct', (s) => s.rps, sameC)),
      p50Ms: spread(xs.map((s) => s.p50Ms)),
      p99Ms: spread(xs.map((s) => s.p99Ms)),
      cpuUsPerReq: spread(xs.map((s) => s.cpuUsPerReq)),
      cpuBusy: spread(xs.map((s) => s.cpuBusy ?? NaN)),
      vsHaproxy: spread(ratios(xs, raw.http, 'haproxy', (s) => s.cpuUsPerReq, sameC)),
      vsNodeHttpProxy: spread(ratios(xs, raw.http, 'node-http-proxy', (s) => s.cpuUsPerReq, sameC)),
      newUpstreamConnsMax: Math.max(...xs.map((s) => s.newUpstreamConns)),
      errors: xs.reduce((a, s) => a + s.errors, 0),
      rssKiBMax: Math.max(...xs.map((s) => s.rssKiB)),
    });
  }
  const tcp: TcpRow[] = [];
  const sameDir = (a: TcpSample, b: TcpSample): boolean => a.dir === b.dir;
  for (const cell of [...new Set(raw.tcp.map((s) => `${s.dir}|${s.target}`))]) {
    const [dir, target] = cell.split('|') as ['upload' | 'download', TargetName];
    const xs = raw.tcp.filter((s) => s.dir === dir && s.target === target);
    tcp.push({
      target,
      dir,
      gbps: spread(xs.map((s) => s.gbps)),
      vsDirect: spread(ratios(xs, raw.tcp, 'direct', (s) => s.gbps, sameDir)),
      cpuSPerGB: spread(xs.map((s) => s.cpuSPerGB)),
      cpuBusy: spread(xs.map((s) => s.cpuBusy ?? NaN)),
      vsHaproxy: spread(ratios(xs, raw.tcp, 'haproxy', (s) => s.cpuSPerGB, sameDir)),
      rssKiBMax: Math.max(...xs.map((s) => s.rssKiB)),
    });
  }
  const rounds = Math.max(0, ...raw.http.map((s) => s.round + 1), ...raw.tcp.map((s) => s.round + 1));
  return { tools: raw.tools, rounds, unavailable: raw.unavailable, http, tcp };
}

function summarizeMemory(raw: MemoryRaw): MemorySummary {
  const rows = raw.samples.map((s) => {
    const base = raw.samples.find((b) => b.mode === s.mode && b.requested === 0);
    const per = (a: number, b: number | undefined): number => (b !== undefined && s.idleConns > 0 ? (a - b) / s.idleConns : NaN);
    return {
      mode: s.mode,
      requested: s.requested,
      idleConns: s.idleConns,
      rssKiB: s.rssKiB,
      rssAfterGcKiB: s.rssAfterGcKiB,
      kibPerConn: per(s.rssKiB, base?.rssKiB),
      kibPerConnAfterGc: per(s.rssAfterGcKiB, base?.rssAfterGcKiB),
      heapKibPerConnAfterGc: per(s.heapUsedAfterGcKiB, base?.heapUsedAfterGcKiB),
    };
  });
  return { unavailable: raw.unavailable, rows };
}

function isFine(r: readonly [number, number, string]): boolean {
  return /^2\d\d$/.test(r[2]) && r[1] <= SLOW_MS;
}

/** A slow 2xx within this many ms of slow 2xx requests through most other targets is a box-wide stall. */
const STALL_WINDOW_MS = 250;

function summarizeFault(raw: FaultRaw): FaultSummary {
  return {
    hook: raw.hook,
    slowMs: SLOW_MS,
    unavailable: raw.unavailable,
    variants: raw.runs.map((run) => {
      const names = Object.keys(run.targets);
      const slowTimes = new Map(names.map((n) => [n, run.targets[n]!.requests.filter((r) => /^2\d\d$/.test(r[2]) && r[1] > SLOW_MS).map((r) => r[0])]));
      const isBoxStall = (target: string, sent: number): boolean => {
        const others = names.filter((n) => n !== target);
        const alsoSlow = others.filter((n) => slowTimes.get(n)!.some((t) => Math.abs(t - sent) <= STALL_WINDOW_MS)).length;
        return others.length >= 2 && alsoSlow * 2 > others.length;
      };
      return {
        variant: run.variant,
        doc: VARIANT_DOC[run.variant],
        faultAtMs: run.faultAtMs,
        clientTimeoutMs: run.clientTimeoutMs,
        rows: Object.entries(run.targets).map(([target, t]) => {
          const hits = t.requests.filter((r) => !isFine(r));
          const got: Record<string, { count: number; maxMs: number }> = {};
          let boxStalls = 0;
          let lastHitSent: number | undefined;
          for (const r of hits) {
            const ok = /^2\d\d$/.test(r[2]);
            const stall = ok && isBoxStall(target, r[0]);
            if (stall) boxStalls++;
            else lastHitSent = Math.max(lastHitSent ?? -Infinity, r[0]);
            const key = ok ? `${r[2]} slow` : r[2];
            const g = (got[key] ??= { count: 0, maxMs: 0 });
            g.count++;
            g.maxMs = Math.max(g.maxMs, r[1]);
          }
          return {
            target: target as TargetName,
            requests: t.requests.length,
            blackholed: t.blackholed,
            hit: hits.length,
            failed: t.requests.filter((r) => !/^2\d\d$/.test(r[2])).length,
            boxStalls,
            got,
            maxLatencyMs: Math.max(0, ...t.requests.map((r) => r[1])),
            fineAfterS: lastHitSent === undefined ? 0 : Math.max(0, (lastHitSent - run.faultAtMs) / 1000),
          };
        }),
      };
    }),
  };
}

export const summarize = { throughput: summarizeThroughput, memory: summarizeMemory, fault: summarizeFault };

/** The HTTP route's default TCP_USER_TIMEOUT (src/config/schema.ts): the fault target is UT + 0.5 s. */
const HTTP_USER_TIMEOUT_MS = 10000;

/** Checks the issue's targets against whatever parts of the summary exist. */
export function checkTargets(s: Summary): TargetCheck[] {
  const out: TargetCheck[] = [];
  const tp = s.throughput;
  const side = 'sidecar-http';
  if (tp !== undefined) {
    const rows = tp.http.filter((r) => r.target === side);
    if (rows.length === 0) {
      out.push({ target: 'HTTP CPU/request ≤ 0.45× node-http-proxy (issue 12)', measured: `no sidecar http route in this run${tp.unavailable[side] ? ` (${tp.unavailable[side]})` : ''}`, met: null });
    } else {
      const vsN = rows.map((r) => `c=${r.c}: ${fmt(r.vsNodeHttpProxy.median)}×`).join(', ');
      // A ratio without its reference row in the run is not measured, not missed.
      const judge = (xs: Spread[], limit: number): boolean | null => (xs.every((x) => x.n > 0) ? xs.every((x) => x.median <= limit) : null);
      out.push({ target: 'HTTP CPU/request ≤ 0.45× node-http-proxy (issue 12)', measured: vsN, met: judge(rows.map((r) => r.vsNodeHttpProxy), 0.45) });
      const vsH = rows.map((r) => `c=${r.c}: ${fmt(r.vsHaproxy.median)}×`).join(', ');
      out.push({ target: 'HTTP CPU/request ≤ 2.0× HAProxy (issue 12)', measured: vsH, met: judge(rows.map((r) => r.vsHaproxy), 2.0) });
      out.push({ target: '(moonshot) HTTP CPU/request ≤ 1.0× HAProxy', measured: vsH, met: judge(rows.map((r) => r.vsHaproxy), 1.0) });
      const minimal = tp.http.filter((r) => r.target === 'minimal');
      if (minimal.length > 0) {
        // The floor in the same run: a featureless node:http + undici dispatch() proxy (bench/peers/minimal.ts).
        const vsMin = rows.map((r) => {
          const m = minimal.find((x) => x.c === r.c);
          return `c=${r.c}: ${m !== undefined ? fmt(r.cpuUsPerReq.median / m.cpuUsPerReq.median) : '—'}×`;
        }).join(', ');
        out.push({ target: '(reference) HTTP CPU/request × the minimal node:http + undici proxy', measured: vsMin, met: null });
      }
      const r200 = rows.find((r) => r.c === 200);
      const h200 = tp.http.find((r) => r.target === 'haproxy' && r.c === 200);
      if (r200 !== undefined && h200 !== undefined) {
        out.push({ target: 'p99 at c=200 no worse than HAProxy', measured: `${fmt(r200.p99Ms.median)} ms vs ${fmt(h200.p99Ms.median)} ms`, met: r200.p99Ms.median <= h200.p99Ms.median });
      }
      if (r200 !== undefined) {
        out.push({ target: 'new upstream connections at c=200 ≤ 2× concurrency (400)', measured: `${r200.newUpstreamConnsMax} (max per run)`, met: r200.newUpstreamConnsMax <= 400 });
      }
    }
    const tcpRows = tp.tcp.filter((r) => r.target === 'sidecar-tcp');
    if (tcpRows.length > 0 && tp.tcp.some((r) => r.target === 'haproxy')) {
      out.push({
        target: 'TCP CPU-s/GB ≤ 1.1× HAProxy',
        measured: tcpRows.map((r) => `${r.dir}: ${fmt(r.vsHaproxy.median)}×`).join(', '),
        met: tcpRows.every((r) => r.vsHaproxy.median <= 1.1),
      });
    }
  }
  if (s.fault !== undefined) {
    const rows = s.fault.variants.map((v) => ({ v: v.variant, r: v.rows.find((r) => r.target === side) }));
    if (rows.every((x) => x.r === undefined)) {
      out.push({ target: 'fault: sidecar 0 failed idempotent requests, max latency ≤ UT + 0.5 s', measured: 'no sidecar http route in this run', met: null });
    } else {
      const measured = rows.map((x) => (x.r ? `${x.v}: ${x.r.failed} failed, max ${fmt(x.r.maxLatencyMs / 1000)} s` : `${x.v}: —`)).join('; ');
      out.push({
        target: `fault: sidecar 0 failed idempotent requests, max latency ≤ ${(HTTP_USER_TIMEOUT_MS + 500) / 1000} s`,
        measured,
        met: rows.every((x) => x.r !== undefined && x.r.failed === 0 && x.r.maxLatencyMs <= HTTP_USER_TIMEOUT_MS + 500),
      });
    }
  }
  if (s.memory !== undefined) {
    for (const mode of ['tcp', 'http'] as const) {
      const rows = s.memory.rows.filter((r) => r.mode === mode && r.requested > 0);
      const big = rows.sort((a, b) => b.requested - a.requested)[0];
      if (big === undefined) {
        out.push({ target: `≤ 2 KiB RSS per idle pooled connection (${mode})`, measured: s.memory.unavailable[`sidecar-${mode}`] ?? 'not measured', met: null });
      } else {
        out.push({
          target: `≤ 2 KiB RSS per idle pooled connection (${mode})`,
          measured: `${fmt(big.kibPerConn)} KiB RSS at ${big.idleConns} (JS heap retained after a full GC: ${fmt(big.heapKibPerConnAfterGc)} KiB)`,
          met: big.kibPerConn <= 2,
        });
      }
    }
  }
  return out;
}

const label = (t: TargetName): string => TARGET_LABEL[t] ?? t;
const ms = (x: number): string => (x >= 1000 ? `${fmt(x / 1000)} s` : `${fmt(x)} ms`);

export function renderMarkdown(s: Summary): string {
  const L: string[] = [];
  L.push(`# Benchmark results ${s.date}`, '');
  L.push(`Sidecar ${s.env.sidecarRev !== undefined ? `commit ${String(s.env.sidecarRev)}` : `from ${String(s.env.sidecarDir)}`}; Node ${String(s.env.node)}, ${String(s.env.cpus)} CPUs, kernel ${String(s.env.kernel)}. ${s.env.peers !== undefined ? `Peers: ${Object.entries(s.env.peers as Record<string, string>).map(([k, v]) => `${k}: \`${v}\``).join('; ')}. ` : ''}Figures are medians over rounds, (min–max) in brackets; ratios are computed per round against the reference run in the same round, then the median is taken.`, '');
  const checks = checkTargets(s);
  if (checks.length > 0) {
    L.push('## Targets (issue 7)', '', '| target | measured | met |', '|---|---|---|');
    for (const c of checks) L.push(`| ${c.target} | ${c.measured} | ${c.met === null ? 'not measured' : c.met ? 'yes' : '**no**'} |`);
    L.push('');
  }
  const tp = s.throughput;
  if (tp !== undefined) {
    L.push('## HTTP keep-alive GETs', '');
    L.push(`Load: ${tp.tools.http}; upstream: ${tp.tools.upstream}; ${tp.rounds} interleaved rounds. Proxy pinned to CPU 0, load and upstream to CPU 1. CPU = proxy run time of every thread of its process tree, ns (sum of field 1 of /proc/<pid>/task/*/schedstat around each run; utime+stime ticks kept in raw/ as the cross-check, and used instead if a thread exited mid-run); busy = proxy CPU-s per wall second. Per-request cost depends on busy: a proxy idling between events pays wake-ups a saturated one batches away, so compare costs at similar busy figures.`, '');
    L.push('| target | c | req/s | × direct | p50 ms | p99 ms | proxy CPU µs/req | busy % | × HAProxy | × node-http-proxy | new upstream conns (max/run) | errors | RSS MiB |');
    L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of [...tp.http].sort((a, b) => a.c - b.c)) {
      L.push(
        `| ${label(r.target)} | ${r.c} | ${fmtSpread(r.rps, 0)} | ${fmt(r.vsDirect.median)} | ${fmtSpread(r.p50Ms)} | ${fmtSpread(r.p99Ms)} | ${fmtSpread(r.cpuUsPerReq)} | ${fmt(100 * r.cpuBusy.median, 0)} | ${fmt(r.vsHaproxy.median)} | ${fmt(r.vsNodeHttpProxy.median)} | ${r.newUpstreamConnsMax} | ${r.errors} | ${fmt(r.rssKiBMax / 1024, 1)} |`,
      );
    }
    L.push('');
    if (tp.tcp.length > 0) {
      L.push('## TCP bulk', '', `Load: ${tp.tools.tcp}.`, '');
      L.push('| target | direction | Gbit/s | × direct | proxy CPU-s/GB | busy % | × HAProxy | RSS MiB |', '|---|---|---:|---:|---:|---:|---:|---:|');
      for (const r of tp.tcp) {
        L.push(`| ${label(r.target)} | ${r.dir} | ${fmtSpread(r.gbps)} | ${fmt(r.vsDirect.median)} | ${fmtSpread(r.cpuSPerGB)} | ${fmt(100 * r.cpuBusy.median, 0)} | ${fmt(r.vsHaproxy.median)} | ${fmt(r.rssKiBMax / 1024, 1)} |`);
      }
      L.push('');
    }
    for (const [t, why] of Object.entries(tp.unavailable)) L.push(`- not run: ${t}: ${why}`);
    if (Object.keys(tp.unavailable).length > 0) L.push('');
  }
  if (s.memory !== undefined) {
    L.push('## Memory per idle pooled upstream connection (sidecar)', '');
    L.push('tcp: `warmSpares` = N. http: N concurrent requests to a slow upstream, then the clients leave and N keep-alive connections stay pooled. A fresh process per N; RSS read 5 s after the pool settled. Then a full GC (for these runs only the sidecar starts with `--expose-gc` and a preload that runs `gc()` on SIGUSR2) and the V8 heap still in use is read from the sidecar’s `/metrics`: the JS objects the connections retain. Per conn = growth over N = 0, divided by the connections seen.', '');
    L.push('| mode | N | idle upstream conns seen | RSS KiB | RSS KiB per conn | JS heap retained after full GC, KiB per conn |', '|---|---:|---:|---:|---:|---:|');
    for (const r of s.memory.rows) {
      L.push(`| ${r.mode} | ${r.requested} | ${r.idleConns} | ${r.rssKiB} | ${fmt(r.kibPerConn)} | ${fmt(r.heapKibPerConnAfterGc)} |`);
    }
    for (const [t, why] of Object.entries(s.memory.unavailable)) L.push('', `- not run: ${t}: ${why}`);
    L.push('');
  }
  if (s.fault !== undefined) {
    L.push('## Fault matrix: silent upstream death', '');
    L.push(
      `Open-loop GETs every 10 ms through every target at once; at t = fault the target's established upstream connections are blackholed with nftables (${s.fault.hook} hook, both directions; new connections keep working). Hit = error, non-2xx, or slower than ${s.fault.slowMs} ms. "box-wide stalls" = slow 2xx requests that coincided (±${STALL_WINDOW_MS} ms) with slow requests through most other targets, i.e. the machine stalled, not the target. "fine after" = from the fault until every request sent later was fine (box-wide stalls ignored).`,
      '',
    );
    for (const v of s.fault.variants) {
      L.push(`### ${v.variant}: ${v.doc}`, '', `Fault at ${v.faultAtMs / 1000} s, client deadline ${v.clientTimeoutMs / 1000} s.`, '');
      L.push('| target | requests | upstream flows blackholed | hit | failed | of the hits, box-wide stalls | what the client got (hit requests) | max latency | fine after |', '|---|---:|---:|---:|---:|---:|---|---:|---:|');
      for (const r of v.rows) {
        const got = Object.entries(r.got)
          .sort((a, b) => b[1].count - a[1].count)
          .map(([k, g]) => `${g.count}× ${k} (≤ ${ms(g.maxMs)})`)
          .join(', ');
        L.push(`| ${label(r.target)} | ${r.requests} | ${r.blackholed} | ${r.hit} | ${r.failed} | ${r.boxStalls} | ${got || '—'} | ${ms(r.maxLatencyMs)} | ${fmt(r.fineAfterS, 1)} s |`);
      }
      L.push('');
    }
    for (const [t, why] of Object.entries(s.fault.unavailable)) L.push(`- not run: ${t}: ${why}`);
    L.push('', '![latency around the fault](timeline.png)', '');
  }
  if (s.h2 !== undefined) L.push(renderH2Markdown(s.h2));
  return L.join('\n') + '\n';
}

const BEGIN = '<!-- bench:begin (generated by npm run bench -- --update-readme) -->';
const END = '<!-- bench:end -->';

/**
 * Puts a results report into the README between the bench markers (appended with a "## Benchmarks" heading
 * when the markers are missing): headings demoted two levels, the picture linked from the results dir.
 */
export function spliceReadme(readme: string, report: string, resultsDir: string): string {
  const body = report
    .split('\n')
    .map((l) => (l.startsWith('#') ? `##${l}` : l))
    .join('\n')
    .replace(/\]\(timeline\.png\)/g, `](${resultsDir}/timeline.png)`)
    .replace(/^### Benchmark results (\S+)/m, `### Results of $1 ([${resultsDir}](${resultsDir}/README.md))`);
  const block = `${BEGIN}\n${body.trim()}\n${END}`;
  const i = readme.indexOf(BEGIN);
  const j = readme.indexOf(END);
  if (i >= 0 && j > i) return readme.slice(0, i) + block + readme.slice(j + END.length);
  return `${readme.trimEnd()}\n\n## Benchmarks\n\n${block}\n`;
}

export { median };
