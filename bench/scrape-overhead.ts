/**
 * Scrape overhead benchmark (issue 5): throughput and sidecar CPU per request through one route, with and
 * without /metrics scraped every 100 ms, in interleaved rounds (A = no scrape, B = scrape) so drift on a
 * shared machine hits both alike.
 *
 *   node dist/bench/scrape-overhead.js [--mode tcp|http] [--rounds 4] [--duration-ms 5000]
 *                                      [--connections 50] [--scrape-ms 100] [--scrape-path /metrics]
 *                                      [--scraper-process] [--json FILE]
 *
 * The sidecar runs as its own process (dist/src/cli/bin.js run), the upstream too; this process only
 * generates load and scrapes.
 * - tcp: 50 connections, each a bounded request/response loop (64-byte write, wait for the 64-byte echo).
 * - http: wrk -c50 -t1 through an http route (needs http mode in the sidecar and wrk on the PATH).
 * Prints a table and a one-line summary; exits 1 if the sidecar cannot be started.
 */
import { spawn, execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { SIDECAR_NODE_FLAGS } from './lib/sidecar-flags.js';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../src/cli/bin.js', import.meta.url));
const CLK_TCK = 100;
const MSG = Buffer.alloc(64, 'x');

const { values: opt } = parseArgs({
  options: {
    mode: { type: 'string', default: 'tcp' },
    rounds: { type: 'string', default: '4' },
    'duration-ms': { type: 'string', default: '5000' },
    connections: { type: 'string', default: '50' },
    'scrape-ms': { type: 'string', default: '100' },
    /** Scrape from a separate process instead of this one (so the scraper cannot slow the load generator). */
    'scraper-process': { type: 'boolean', default: false },
    /** Control experiment: scrape /live instead, to separate the cost of /metrics from that of any request. */
    'scrape-path': { type: 'string', default: '/metrics' },
    json: { type: 'string' },
  },
});
const MODE = opt.mode === 'http' ? 'http' : 'tcp';
const ROUNDS = Math.max(1, Math.min(20, Number(opt.rounds)));
const DURATION_MS = Math.max(500, Math.min(60_000, Number(opt['duration-ms'])));
const CONNECTIONS = Math.max(1, Math.min(500, Number(opt.connections)));
const SCRAPE_MS = Math.max(10, Number(opt['scrape-ms']));
const SCRAPE_PATH = opt['scrape-path'] ?? '/metrics';

/** Starts a child that prints one line (its port) when listening. */
async function startUpstream(mode: 'tcp' | 'http'): Promise<{ child: ChildProcess; port: number }> {
  const code =
    mode === 'tcp'
      ? "const s=require('net').createServer(c=>{c.on('error',()=>{});c.pipe(c)});s.listen(0,'127.0.0.1',()=>console.log(s.address().port))"
      : "const s=require('http').createServer((q,r)=>{q.resume();q.on('end',()=>r.end('ok'))});s.keepAliveTimeout=60000;s.listen(0,'127.0.0.1',()=>console.log(s.address().port))";
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return { child, port: Number(line.toString().trim()) };
}

interface SidecarProc {
  readonly child: ChildProcess;
  readonly routePort: number;
  readonly adminPort: number;
}

/** Starts the sidecar (listen and admin on port 0) and reads the bound ports from its JSON log lines. */
async function startSidecar(mode: 'tcp' | 'http', upstreamPort: number, dir: string): Promise<SidecarProc> {
  const file = path.join(dir, 'bench.json');
  writeFileSync(file, JSON.stringify({
    admin: { host: '127.0.0.1', port: 0 },
    debug: { port: 0 },
    log: { level: 'info' },
    routes: [{ name: 'bench', mode, listen: { host: '127.0.0.1', port: 0 }, upstream: { host: '127.0.0.1', port: upstreamPort } }],
  }));
  const child = spawn(process.execPath, [...SIDECAR_NODE_FLAGS, BIN, 'run', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve, reject) => {
    let buf = '';
    let routePort: number | undefined;
    let adminPort: number | undefined;
    const onData = (c: Buffer): void => {
      buf += c.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const m1 = /"listen":"[^"]*:(\d+)"/.exec(line);
        const m2 = /"admin":"http:\/\/[^"]*:(\d+)"/.exec(line);
        if (m1 && line.includes('route listening')) routePort = Number(m1[1]);
        if (m2) adminPort = Number(m2[1]);
      }
      if (routePort !== undefined && adminPort !== undefined) {
        child.stdout!.off('data', onData);
        child.stdout!.resume(); // keep draining the log so the sidecar never blocks on a full pipe
        resolve({ child, routePort, adminPort });
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`sidecar exited (${code}): ${stderr.trim()}`)));
  });
}

/** Sidecar CPU seconds so far (utime + stime from /proc/PID/stat). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** tcp load: CONNECTIONS bounded request/response loops until the deadline; resolves with requests done. */
async function tcpLoad(port: number, durationMs: number): Promise<number> {
  const deadline = performance.now() + durationMs;
  let done = 0;
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      const s = net.connect({ port, host: '127.0.0.1', noDelay: true });
      s.on('error', () => {});
      await once(s, 'connect');
      let got = 0;
      await new Promise<void>((resolve) => {
        s.on('data', (c: Buffer) => {
          got += c.length;
          while (got >= MSG.length) {
            got -= MSG.length;
            done++;
            if (performance.now() < deadline) s.write(MSG);
            else {
              s.end();
              resolve();
              return;
            }
          }
        });
        s.on('close', () => resolve());
        s.write(MSG);
      });
      s.destroy();
    }),
  );
  return done;
}

/** http load: wrk at CONNECTIONS connections; resolves with requests done. */
async function httpLoad(port: number, durationMs: number): Promise<number> {
  const { stdout } = await run('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${Math.round(durationMs / 1000)}s`, `http://127.0.0.1:${port}/`]);
  const m = /(\d+) requests in/.exec(stdout);
  if (m === null) throw new Error(`cannot read wrk output:\n${stdout}`);
  return Number(m[1]);
}

/** Scrapes /metrics every SCRAPE_MS (keep-alive, like Prometheus) until stopped. */
function startScraper(adminPort: number): { stop(): Promise<{ scrapes: number; bytes: number; maxMs: number }> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let scrapes = 0;
  let bytes = 0;
  let maxMs = 0;
  let isStopped = false;
  let inFlight: Promise<void> = Promise.resolve();
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const t0 = performance.now();
      http
        .get({ host: '127.0.0.1', port: adminPort, path: SCRAPE_PATH, agent }, (res) => {
          res.on('data', (c: Buffer) => (bytes += c.length));
          res.on('end', () => {
            scrapes++;
            maxMs = Math.max(maxMs, performance.now() - t0);
            resolve();
          });
        })
        .on('error', () => resolve());
    });
  const timer = setInterval(() => {
    if (!isStopped) inFlight = one();
  }, SCRAPE_MS);
  return {
    async stop() {
      isStopped = true;
      clearInterval(timer);
      await inFlight;
      agent.destroy();
      return { scrapes, bytes, maxMs };
    },
  };
}

/** Sidecar CPU per scrape, measured without load: `n` scrapes back to back over one keep-alive connection. */
async function scrapeCpuMs(sidecar: SidecarProc, n: number): Promise<{ cpuMs: number; bytes: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let bytes = 0;
  const cpu0 = cpuSeconds(sidecar.child.pid!);
  for (let i = 0; i < n; i++) {
    await new Promise<void>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: sidecar.adminPort, path: '/metrics', agent }, (res) => {
          bytes = 0;
          res.on('data', (c: Buffer) => (bytes += c.length));
          res.on('end', () => resolve());
        })
        .on('error', reject);
    });
  }
  const cpu = cpuSeconds(sidecar.child.pid!) - cpu0;
  agent.destroy();
  return { cpuMs: (cpu * 1000) / n, bytes };
}

/** The same scraper in a child process; stop() returns what it counted. */
function startScraperProcess(adminPort: number): { stop(): Promise<{ scrapes: number; bytes: number; maxMs: number }> } {
  const code = `
    const http = require('http');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let scrapes = 0, bytes = 0, maxMs = 0;
    setInterval(() => {
      const t0 = performance.now();
      http.get({ host: '127.0.0.1', port: ${adminPort}, path: ${JSON.stringify(SCRAPE_PATH)}, agent }, (res) => {
        res.on('data', (c) => (bytes += c.length));
        res.on('end', () => { scrapes++; maxMs = Math.max(maxMs, performance.now() - t0); });
      }).on('error', () => {});
    }, ${SCRAPE_MS});
    process.on('SIGTERM', () => { process.stdout.write(JSON.stringify({ scrapes, bytes, maxMs })); process.exit(0); });`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  return {
    async stop() {
      child.kill('SIGTERM');
      await once(child, 'exit');
      return JSON.parse(out || '{"scrapes":0,"bytes":0,"maxMs":0}') as { scrapes: number; bytes: number; maxMs: number };
    },
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

async function main(): Promise<number> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ks-bench-'));
  const upstream = await startUpstream(MODE);
  let sidecar: SidecarProc | undefined;
  try {
    sidecar = await startSidecar(MODE, upstream.port, dir);
    const load = MODE === 'tcp' ? tcpLoad : httpLoad;
    await load(sidecar.routePort, 1000); // warm-up (JIT, pools)
    const rows: Array<{ round: number; scraped: boolean; rps: number; cpuUsPerReq: number; scrapes: number; scrapeBytes: number; scrapeMaxMs: number }> = [];
    process.stdout.write(`scrape overhead: mode ${MODE}, c=${CONNECTIONS}, ${ROUNDS} x 2 rounds of ${DURATION_MS} ms, ${SCRAPE_PATH} every ${SCRAPE_MS} ms\n`);
    process.stdout.write('round  scrape     req/s   sidecar µs CPU/req  scrapes  bytes/scrape  max scrape ms\n');
    for (let round = 1; round <= ROUNDS; round++) {
      // Alternate which variant goes first so neither always runs on a warmer or quieter machine.
      const order = round % 2 === 1 ? [false, true] : [true, false];
      for (const scraped of order) {
        const scraper = scraped ? (opt['scraper-process'] === true ? startScraperProcess(sidecar.adminPort) : startScraper(sidecar.adminPort)) : undefined;
        const cpu0 = cpuSeconds(sidecar.child.pid!);
        const t0 = performance.now();
        const n = await load(sidecar.routePort, DURATION_MS);
        const secs = (performance.now() - t0) / 1000;
        const cpu = cpuSeconds(sidecar.child.pid!) - cpu0;
        const s = scraper !== undefined ? await scraper.stop() : { scrapes: 0, bytes: 0, maxMs: 0 };
        const row = { round, scraped, rps: n / secs, cpuUsPerReq: (cpu * 1e6) / n, scrapes: s.scrapes, scrapeBytes: s.scrapes > 0 ? s.bytes / s.scrapes : 0, scrapeMaxMs: s.maxMs };
        rows.push(row);
        process.stdout.write(
          `${String(round).padStart(5)}  ${(scraped ? 'yes' : 'no').padEnd(6)} ${row.rps.toFixed(0).padStart(9)}  ${row.cpuUsPerReq.toFixed(1).padStart(18)}  ${String(row.scrapes).padStart(7)}  ${row.scrapeBytes.toFixed(0).padStart(12)}  ${row.scrapeMaxMs.toFixed(1).padStart(13)}\n`,
        );
      }
    }
    const a = rows.filter((r) => !r.scraped);
    const b = rows.filter((r) => r.scraped);
    const rpsA = median(a.map((r) => r.rps));
    const rpsB = median(b.map((r) => r.rps));
    const cpuA = median(a.map((r) => r.cpuUsPerReq));
    const cpuB = median(b.map((r) => r.cpuUsPerReq));
    // Paired per round (A and B ran back to back), then the median: cancels most of the machine's drift.
    const pairs = Array.from({ length: ROUNDS }, (_, i) => {
      const ra = a[i]!;
      const rb = b[i]!;
      return { rps: ((ra.rps - rb.rps) / ra.rps) * 100, cpu: ((rb.cpuUsPerReq - ra.cpuUsPerReq) / ra.cpuUsPerReq) * 100 };
    });
    const pairedRps = median(pairs.map((x) => x.rps));
    const pairedCpu = median(pairs.map((x) => x.cpu));
    // The deterministic part: what one scrape costs the sidecar, and that cost at SCRAPE_MS against the CPU
    // the sidecar spent per second under load (the throughput cost when the sidecar is the bottleneck).
    const perScrape = await scrapeCpuMs(sidecar, 500);
    const impliedCostPercent = ((perScrape.cpuMs * (1000 / SCRAPE_MS)) / ((cpuA * rpsA) / 1000)) * 100;
    const summary = {
      scrapeCpuMs: Number(perScrape.cpuMs.toFixed(3)), scrapeBytes: perScrape.bytes, impliedCostPercent: Number(impliedCostPercent.toFixed(2)),
      mode: MODE, connections: CONNECTIONS, rounds: ROUNDS, durationMs: DURATION_MS, scrapeMs: SCRAPE_MS,
      rpsNoScrape: Math.round(rpsA), rpsScrape: Math.round(rpsB), throughputCostPercent: Number((((rpsA - rpsB) / rpsA) * 100).toFixed(2)),
      cpuUsPerReqNoScrape: Number(cpuA.toFixed(2)), cpuUsPerReqScrape: Number(cpuB.toFixed(2)), cpuCostPercent: Number((((cpuB - cpuA) / cpuA) * 100).toFixed(2)),
      pairedThroughputCostPercent: Number(pairedRps.toFixed(2)), pairedCpuCostPercent: Number(pairedCpu.toFixed(2)),
      rows,
    };
    process.stdout.write(
      `summary: median ${summary.rpsNoScrape} req/s without scraping, ${summary.rpsScrape} with: throughput cost ${summary.throughputCostPercent}% ` +
        `(sidecar CPU/request ${summary.cpuUsPerReqNoScrape} -> ${summary.cpuUsPerReqScrape} µs, ${summary.cpuCostPercent}%); ` +
        `paired per round: throughput ${summary.pairedThroughputCostPercent}%, CPU/request ${summary.pairedCpuCostPercent}%; ` +
        `one scrape = ${summary.scrapeCpuMs} ms sidecar CPU (${summary.scrapeBytes} B), i.e. ${summary.impliedCostPercent}% of the sidecar's CPU under this load; budget < 5%\n`,
    );
    if (opt.json !== undefined) writeFileSync(opt.json, `${JSON.stringify(summary, null, 2)}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`scrape-overhead: ${(err as Error).message}\n`);
    return 1;
  } finally {
    if (sidecar !== undefined && sidecar.child.exitCode === null) {
      sidecar.child.kill('SIGTERM');
      await once(sidecar.child, 'exit');
    }
    upstream.child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

process.exitCode = await main();
