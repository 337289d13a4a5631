/**
 * The h2 scenario (issue 13): h2load -m 20 at a fixed request rate through the sidecar's h2 route, through
 * nghttpx 1.52 (Debian nghttp2-proxy, the reference) and direct, all to the same h2c upstream (a small
 * node:http2 server in its own process, bench/peers/h2-upstream.ts), in the same run, rounds interleaved with
 * the order rotated. Reported per target: CPU µs per request of the proxy process tree (every thread's run
 * time in ns around each run, proc.ts cpuBetween), its ratio to nghttpx in the same round, latency (h2load mean/max), and RSS per open
 * stream (N long-lived streams held open through a fresh proxy process: RSS delta / N).
 *   npm run bench -- --only h2 [--rounds N] [--seconds S] [--targets direct,nghttpx,sidecar-h2]
 * A/B: BENCH_BASE_SIDECAR_DIR=<built checkout> adds sidecar-h2-base; BENCH_SIDECAR_NODE_ARGS / BENCH_BASE_NODE_ARGS
 * add node flags (e.g. V8 heap sizes) to either (the HTTP targets sidecar-http / sidecar-base take them too).
 * The proxy is pinned to one CPU, h2load + upstream + this harness to the other (as the other scenarios).
 * nghttpx needs a port number in its command line: it gets one bind-probed a moment before (freePort), as
 * HAProxy and nginx do in this bench; tests never do that.
 */
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Proc } from './proc.js';
import { sidecarBin } from './peers.js';
import { cpuBetween, cpuSnapshot, freePort, rssKiB, sidecarNodeArgs, sleep, spawnProc, waitForPort } from './proc.js';
import type { Spread } from './stats.js';
import { fmt, fmtSpread, spread } from './stats.js';

const benchDist = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export type H2TargetName = 'direct' | 'nghttpx' | 'h2-self' | 'h2-minimal' | 'sidecar-h2' | 'sidecar-h2-base';
/** sidecar-h2-base: the h2 route of BENCH_BASE_SIDECAR_DIR, for an A/B in one run (listed only when that is set). */
export const H2_TARGETS: readonly H2TargetName[] = ['direct', 'nghttpx', 'h2-self', 'h2-minimal', ...(process.env.BENCH_BASE_SIDECAR_DIR !== undefined ? (['sidecar-h2-base'] as const) : []), 'sidecar-h2'];
const LABEL: Record<H2TargetName, string> = { direct: 'direct (no proxy)', nghttpx: 'nghttpx', 'h2-self': 'h2-self (node:http2 answers itself, floor)', 'h2-minimal': 'h2-minimal (bare node:http2 proxy, no features, floor)', 'sidecar-h2': 'sidecar (h2 route)', 'sidecar-h2-base': 'sidecar base (h2 route, BENCH_BASE_SIDECAR_DIR)' };


interface H2Target {
  readonly name: H2TargetName;
  readonly proc: Proc | undefined;
  readonly port: number;
  stop(): Promise<void>;
}

/** Thrown when the checkout's sidecar has no h2 mode (config rejected). */
export class H2Unavailable extends Error {}

export interface H2Options {
  readonly quick: boolean;
  readonly rounds: number;
  readonly seconds: number;
  /** Total request rates (h2load --rps per client x clients). */
  readonly rates: readonly number[];
  /** h2load -c (app connections); -m 20 each. */
  readonly clients: number;
  /** Streams held open for the RSS run. */
  readonly openStreams: number;
  readonly targets: readonly H2TargetName[];
  readonly dir: string;
  readonly proxyCpu: string | undefined;
  readonly loadCpu: string | undefined;
  readonly sidecarDir: string;
  readonly say: (s: string) => void;
}

export interface H2LoadSample {
  readonly round: number;
  readonly target: H2TargetName;
  readonly rate: number;
  readonly seconds: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly rps: number;
  readonly meanMs: number;
  readonly maxMs: number;
  /** Proxy CPU per request, µs (NaN for direct): per-thread schedstat, ns (proc.ts cpuBetween). */
  readonly cpuUsPerReq: number;
  /** The same from utime+stime clock ticks (10 ms each): the cross-check. */
  readonly cpuTickUsPerReq: number;
  /** False when a thread exited during the run and cpuUsPerReq fell back to ticks. */
  readonly cpuPrecise: boolean;
  /** Proxy CPU-seconds per wall second. */
  readonly cpuBusy: number;
  readonly rssKiB: number;
}

export interface H2StreamSample {
  readonly round: number;
  readonly target: H2TargetName;
  readonly streams: number;
  /** Streams whose response headers arrived (all N, or the run says why not). */
  readonly opened: number;
  /** Streams the upstream held at the time (proof they go end to end). */
  readonly upstreamHeld: number;
  readonly rssBeforeKiB: number;
  readonly rssAfterKiB: number;
  readonly bytesPerStream: number;
}

export interface H2Raw {
  readonly load: H2LoadSample[];
  readonly streams: H2StreamSample[];
  readonly unavailable: Record<string, string>;
  readonly tools: Record<string, string>;
}

// ---------------------------------------------------------------------------------------------------------
// Peers

async function startUpstream(cpu: string | undefined): Promise<{ proc: Proc; port: number }> {
  const proc = spawnProc('h2-upstream', process.execPath, [join(benchDist, 'peers', 'h2-upstream.js')], { cpu, nofile: 65536 });
  const port = await proc.waitLine((l) => (l.startsWith('{"port"') ? (JSON.parse(l) as { port: number }).port : undefined));
  return { proc, port };
}

async function startNghttpx(upPort: number, cpu: string | undefined, dir: string): Promise<H2Target> {
  const port = await freePort();
  const proc = spawnProc(
    'nghttpx',
    'nghttpx',
    [
      '--conf=/dev/null',
      `--frontend=127.0.0.1,${port};no-tls`,
      `--backend=127.0.0.1,${upPort};;proto=h2`,
      '--workers=1',
      // One process carries all the CPU (no separate worker process to find).
      '--single-process',
      '--log-level=WARN',
      `--errorlog-file=${join(dir, `nghttpx-${port}.log`)}`,
      '--no-ocsp',
      '--frontend-http2-read-timeout=300s',
      '--backend-read-timeout=300s',
      '--stream-read-timeout=0',
    ],
    { cpu, nofile: 65536 },
  );
  await waitForPort(port, 10000, proc);
  return { name: 'nghttpx', proc, port, stop: () => proc.stop() };
}

async function startSidecarH2(upPort: number, cpu: string | undefined, dir: string, sidecarDir: string, name: 'sidecar-h2' | 'sidecar-h2-base' = 'sidecar-h2'): Promise<H2Target> {
  const bin = sidecarBin(sidecarDir);
  if (!existsSync(bin)) throw new Error(`sidecar not built: ${bin} is missing (run npm run build in ${sidecarDir})`);
  const cfg = join(dir, `${name}-${upPort}.json`);
  const config = {
    admin: { host: '127.0.0.1', port: 0 },
    debug: { port: 0 },
    log: { level: 'info' },
    shutdown: { drainTimeoutMs: 500 },
    // Production defaults: nothing under h2 is changed.
    routes: [{ name: 'grpc', mode: 'h2', listen: { host: '127.0.0.1', port: 0 }, upstream: { host: '127.0.0.1', port: upPort }, h2: {} }],
  };
  writeFileSync(cfg, JSON.stringify(config, null, 2));
  const proc = spawnProc(name, process.execPath, [...sidecarNodeArgs(name === 'sidecar-h2-base'), bin, 'run', '--config', cfg], { cpu, nofile: 65536, cwd: sidecarDir });
  try {
    const port = await proc.waitLine((l) => {
      const m = /"msg":"route listening"/.test(l) ? /"listen":"[^"]*:(\d+)"/.exec(l) : null;
      return m ? Number(m[1]) : undefined;
    });
    return { name, proc, port, stop: () => proc.stop() };
  } catch (err) {
    await proc.stop('SIGKILL');
    const text = proc.output();
    if (/invalid configuration/.test(text) && /h2/.test(text)) throw new H2Unavailable(`this checkout's sidecar has no h2 route (${text.split('\n').find((l) => /mode/.test(l))?.trim() ?? 'config rejected'})`);
    throw err;
  }
}

async function startH2Target(name: H2TargetName, upPort: number, o: H2Options): Promise<H2Target> {
  if (name === 'direct') return { name, proc: undefined, port: upPort, stop: async () => {} };
  if (name === 'nghttpx') return startNghttpx(upPort, o.proxyCpu, o.dir);
  if (name === 'h2-self') {
    // The floor: node:http2 answering the upstream's response itself (a second h2-upstream process, pinned
    // where the proxies run). No streams are held through it: it has no upstream (openStreams skips it).
    const u = await startUpstream(o.proxyCpu);
    return { name, proc: u.proc, port: u.port, stop: () => u.proc.stop() };
  }
  if (name === 'h2-minimal') {
    // The floor of a proxy on node:http2 both sides (bench/peers/h2-minimal.ts: one upstream session, pipes).
    const proc = spawnProc('h2-minimal', process.execPath, [join(benchDist, 'peers', 'h2-minimal.js'), String(upPort)], { cpu: o.proxyCpu, nofile: 65536 });
    const port = await proc.waitLine((l) => (l.startsWith('{"port"') ? (JSON.parse(l) as { port: number }).port : undefined));
    return { name, proc, port, stop: () => proc.stop() };
  }
  if (name === 'sidecar-h2-base') {
    const base = process.env.BENCH_BASE_SIDECAR_DIR;
    if (base === undefined) throw new H2Unavailable('set BENCH_BASE_SIDECAR_DIR to a built checkout');
    return startSidecarH2(upPort, o.proxyCpu, o.dir, base, name);
  }
  return startSidecarH2(upPort, o.proxyCpu, o.dir, o.sidecarDir);
}

// ---------------------------------------------------------------------------------------------------------
// Load

interface H2loadResult {
  readonly succeeded: number;
  readonly failed: number;
  readonly rps: number;
  readonly meanMs: number;
  readonly maxMs: number;
  readonly output: string;
}

function toMs(s: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(s);
  if (m === null) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 'ms' ? v : v * 1000;
}

/** Parses h2load's summary (nghttp2 1.52 format). */
export function parseH2load(out: string): H2loadResult {
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  const fin = /finished in [\d.]+s, ([\d.]+) req\/s/.exec(out);
  const t = /time for request:\s+(\S+)\s+(\S+)\s+(\S+)/.exec(out);
  if (req === null || fin === null) throw new Error(`h2load output not understood: ${out.slice(-1500)}`);
  return {
    succeeded: Number(req[4]),
    failed: Number(req[5]) + Number(req[6]) + Number(req[7]),
    rps: Number(fin[1]),
    meanMs: t ? toMs(t[3]!) : NaN,
    maxMs: t ? toMs(t[2]!) : NaN,
    output: out,
  };
}

/** h2load -c C -m 20 --rps rate/C -D seconds against 127.0.0.1:port (h2c prior knowledge), pinned to `cpu`. */
function h2load(port: number, rate: number, clients: number, seconds: number, cpu: string | undefined): Promise<H2loadResult> {
  const args = ['-c', String(clients), '-m', '20', '--rps', String(Math.max(1, Math.round(rate / clients))), '-D', String(seconds), `http://127.0.0.1:${port}/`];
  const argv = cpu !== undefined ? ['taskset', '-c', cpu, 'h2load', ...args] : ['h2load', ...args];
  return new Promise((resolveRun, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000);
    child.on('error', reject);
    child.on('exit', () => {
      clearTimeout(timer);
      try {
        resolveRun(parseH2load(out));
      } catch (err) {
        reject(err as Error);
      }
    });
  });
}

async function upstreamHeld(upPort: number): Promise<number> {
  const s = http2.connect(`http://127.0.0.1:${upPort}`);
  s.on('error', () => {});
  try {
    const body = await new Promise<string>((res, rej) => {
      const r = s.request({ ':path': '/stats' });
      let b = '';
      r.setEncoding('utf8');
      r.on('data', (d: string) => (b += d));
      r.on('end', () => res(b));
      r.on('error', rej);
      r.end();
    });
    return (JSON.parse(body) as { open: number }).open;
  } finally {
    s.destroy();
  }
}

/**
 * Holds `n` streams open through the target (sessions of 90 streams: below the usual 100 cap), measures the
 * proxy's RSS with the sessions connected and idle, then with every stream open (response headers received),
 * then closes everything.
 */
async function openStreams(t: H2Target, upPort: number, n: number, round: number): Promise<H2StreamSample> {
  const per = 90;
  const sessions: http2.ClientHttp2Session[] = [];
  try {
    for (let i = 0; i < Math.ceil(n / per); i++) {
      const s = http2.connect(`http://127.0.0.1:${t.port}`);
      s.on('error', () => {});
      sessions.push(s);
      // One request per session first, so the session (and the proxy's upstream session) is established.
      await new Promise<void>((res, rej) => {
        const r = s.request({ ':path': '/' });
        r.on('response', () => r.resume());
        r.on('end', res);
        r.on('close', res);
        r.on('error', rej);
        r.end();
      });
    }
    await sleep(500);
    const before = rssKiB(t.proc!.pid);
    let opened = 0;
    const streams: http2.ClientHttp2Stream[] = [];
    const all: Array<Promise<void>> = [];
    for (let i = 0; i < n; i++) {
      const s = sessions[Math.floor(i / per)]!;
      const r = s.request({ ':path': '/hold' });
      streams.push(r);
      r.on('error', () => {});
      all.push(
        new Promise<void>((res) => {
          r.once('response', () => {
            opened++;
            res();
          });
          r.once('close', () => res());
        }),
      );
    }
    await Promise.race([Promise.all(all), sleep(30_000)]);
    await sleep(500);
    const after = rssKiB(t.proc!.pid);
    const held = await upstreamHeld(upPort);
    for (const r of streams) r.close();
    return { round, target: t.name, streams: n, opened, upstreamHeld: held, rssBeforeKiB: before, rssAfterKiB: after, bytesPerStream: ((after - before) * 1024) / n };
  } finally {
    for (const s of sessions) s.destroy();
    await sleep(300);
  }
}

function rotate<T>(xs: readonly T[], k: number): T[] {
  return xs.length === 0 ? [] : xs.map((_, i) => xs[(i + k) % xs.length]!);
}

export async function runH2(o: H2Options): Promise<H2Raw> {
  const unavailable: Record<string, string> = {};
  const load: H2LoadSample[] = [];
  const streams: H2StreamSample[] = [];
  const up = await startUpstream(o.loadCpu);
  const targets: H2Target[] = [];
  try {
    for (const name of o.targets) {
      try {
        targets.push(await startH2Target(name, up.port, o));
      } catch (err) {
        if (!(err instanceof H2Unavailable)) throw err;
        unavailable[name] = err.message;
        o.say(`  ${name}: unavailable: ${err.message}`);
      }
    }
    for (let round = 0; round < o.rounds; round++) {
      for (const t of rotate(targets, round)) {
        for (const rate of o.rates) {
          // Warm-up (unmeasured): sessions to the upstream exist, JIT is warm.
          await h2load(t.port, rate, o.clients, 1, o.loadCpu);
          const cpu0 = t.proc ? cpuSnapshot(t.proc.pid) : undefined;
          const w0 = performance.now();
          const r = await h2load(t.port, rate, o.clients, o.seconds, o.loadCpu);
          const wall = (performance.now() - w0) / 1000;
          const d = t.proc && cpu0 ? cpuBetween(cpu0, cpuSnapshot(t.proc.pid)) : undefined;
          const cpu = d?.seconds ?? NaN;
          const s: H2LoadSample = {
            round,
            target: t.name,
            rate,
            seconds: o.seconds,
            succeeded: r.succeeded,
            failed: r.failed,
            rps: r.rps,
            meanMs: r.meanMs,
            maxMs: r.maxMs,
            cpuUsPerReq: (cpu * 1e6) / r.succeeded,
            cpuTickUsPerReq: ((d?.tickSeconds ?? NaN) * 1e6) / r.succeeded,
            cpuPrecise: d?.precise ?? false,
            cpuBusy: cpu / wall,
            rssKiB: t.proc ? rssKiB(t.proc.pid) : NaN,
          };
          load.push(s);
          o.say(`  round ${round} ${t.name} ${rate}/s: ${s.rps.toFixed(0)} req/s, ${s.failed} failed, mean ${fmt(s.meanMs)} ms, max ${fmt(s.maxMs)} ms, CPU ${fmt(s.cpuUsPerReq)} µs/req (ticks ${fmt(s.cpuTickUsPerReq)}${s.cpuPrecise || t.proc === undefined ? '' : ', a thread exited: ticks used'})`);
        }
        if (t.proc !== undefined && t.name !== 'h2-self' && o.openStreams > 0) {
          // A fresh process each time: one that already held streams keeps that memory (malloc, V8 heap) and
          // would report less than a stream costs.
          const fresh = await startH2Target(t.name, up.port, o);
          let st: H2StreamSample;
          try {
            st = await openStreams(fresh, up.port, o.openStreams, round);
          } finally {
            await fresh.stop();
          }
          streams.push(st);
          o.say(`  round ${round} ${t.name}: ${st.opened}/${st.streams} streams open (upstream holds ${st.upstreamHeld}), RSS +${st.rssAfterKiB - st.rssBeforeKiB} KiB = ${fmt(st.bytesPerStream)} B/stream`);
        }
      }
    }
  } finally {
    for (const t of targets) await t.stop();
    await up.proc.stop();
  }
  return { load, streams, unavailable, tools: { load: 'h2load (nghttp2 1.52) -m 20 --rps', upstream: 'node:http2 h2c (bench/peers/h2-upstream.ts)' } };
}

// ---------------------------------------------------------------------------------------------------------
// Summary and markdown

export interface H2Summary {
  readonly load: Array<{
    target: H2TargetName;
    rate: number;
    rps: Spread;
    failed: number;
    meanMs: Spread;
    maxMs: Spread;
    cpuUsPerReq: Spread;
    cpuBusy: Spread;
    /** Per-round ratio of CPU µs/request to nghttpx's in the same round and rate. */
    vsNghttpx: Spread;
  }>;
  readonly streams: Array<{ target: H2TargetName; streams: number; bytesPerStream: Spread; allOpen: boolean }>;
  readonly unavailable: Record<string, string>;
}

export function summarizeH2(raw: H2Raw): H2Summary {
  const load: H2Summary['load'] = [];
  const targets = [...new Set(raw.load.map((s) => s.target))];
  const rates = [...new Set(raw.load.map((s) => s.rate))];
  for (const target of targets) {
    for (const rate of rates) {
      const cell = raw.load.filter((s) => s.target === target && s.rate === rate);
      if (cell.length === 0) continue;
      const ratios = cell.map((s) => {
        const ref = raw.load.find((x) => x.target === 'nghttpx' && x.rate === rate && x.round === s.round);
        return ref ? s.cpuUsPerReq / ref.cpuUsPerReq : NaN;
      });
      load.push({
        target,
        rate,
        rps: spread(cell.map((s) => s.rps)),
        failed: cell.reduce((a, s) => a + s.failed, 0),
        meanMs: spread(cell.map((s) => s.meanMs)),
        maxMs: spread(cell.map((s) => s.maxMs)),
        cpuUsPerReq: spread(cell.map((s) => s.cpuUsPerReq)),
        cpuBusy: spread(cell.map((s) => s.cpuBusy)),
        vsNghttpx: spread(ratios),
      });
    }
  }
  const streams: H2Summary['streams'] = [];
  for (const target of [...new Set(raw.streams.map((s) => s.target))]) {
    const cell = raw.streams.filter((s) => s.target === target);
    streams.push({ target, streams: cell[0]!.streams, bytesPerStream: spread(cell.map((s) => s.bytesPerStream)), allOpen: cell.every((s) => s.opened === s.streams && s.upstreamHeld >= s.streams) });
  }
  return { load, streams, unavailable: raw.unavailable };
}

export function renderH2Markdown(s: H2Summary): string {
  const L: string[] = ['## HTTP/2 (h2 route, issue 13)', ''];
  L.push(
    'h2load `-m 20` at a fixed rate (`--rps`) through each target to the same node:http2 h2c upstream, rounds interleaved; medians (min–max). CPU is the run time of every thread of the proxy process tree around the run, ns (field 1 of /proc/<pid>/task/*/schedstat; the 10 ms utime+stime ticks are in raw/ as the cross-check); the ratio is per round against nghttpx at the same rate. Issue 13\'s bar: ≤ 4× nghttpx.',
    '',
    '| target | rate | req/s | failed | mean ms | max ms | proxy CPU µs/req | × nghttpx | CPU busy |',
    '|---|---|---|---|---|---|---|---|---|',
  );
  for (const r of s.load) {
    L.push(`| ${LABEL[r.target]} | ${r.rate}/s | ${fmtSpread(r.rps, 0)} | ${r.failed} | ${fmtSpread(r.meanMs)} | ${fmtSpread(r.maxMs)} | ${fmtSpread(r.cpuUsPerReq)} | ${r.target === 'nghttpx' || r.target === 'direct' ? '—' : fmtSpread(r.vsNghttpx)} | ${fmtSpread(r.cpuBusy)} |`);
  }
  L.push('');
  if (s.streams.length > 0) {
    L.push('RSS per open stream: N long-lived streams (`/hold`, response headers received, the upstream holding every one) through a fresh proxy process; (RSS with them open − RSS with the same sessions idle) / N.', '', '| target | streams | bytes per open stream | all open end to end |', '|---|---|---|---|');
    for (const r of s.streams) L.push(`| ${LABEL[r.target]} | ${r.streams} | ${fmtSpread(r.bytesPerStream, 0)} | ${r.allOpen ? 'yes' : '**no**'} |`);
    L.push('');
  }
  for (const [k, v] of Object.entries(s.unavailable)) L.push(`- ${k}: not measured: ${v}`);
  if (Object.keys(s.unavailable).length > 0) L.push('');
  return L.join('\n');
}

