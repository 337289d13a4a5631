/**
 * Load generators: wrk (HTTP keep-alive GETs) and iperf3 (TCP bulk) for full runs; small Node equivalents for
 * the quick run, which must not need Debian packages. Every run is bounded in time.
 */
import http from 'node:http';
import net from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './proc.js';

export interface HttpLoadResult {
  readonly requests: number;
  readonly seconds: number;
  /** Connect/read/write/timeout errors plus non-2xx/3xx responses. */
  readonly errors: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

const WRK_LUA = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"errors":%d,"p50":%d,"p99":%d,"max":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
`;

/** wrk, one thread, c keep-alive connections, pinned to `cpu`. */
export async function wrkLoad(dir: string, port: number, c: number, seconds: number, cpu: string | undefined): Promise<HttpLoadResult> {
  const script = join(dir, 'report.lua');
  writeFileSync(script, WRK_LUA);
  const args = ['-t1', `-c${c}`, `-d${seconds}s`, '--timeout', '10s', '-s', script, `http://127.0.0.1:${port}/`];
  const { stdout } = cpu !== undefined ? await run('taskset', ['-c', cpu, 'wrk', ...args], { timeout: (seconds + 30) * 1000 }) : await run('wrk', args, { timeout: (seconds + 30) * 1000 });
  const m = /WRKJSON (\{.*\})/.exec(stdout);
  if (!m) throw new Error(`wrk printed no summary: ${stdout}`);
  const o = JSON.parse(m[1]!) as { requests: number; duration_us: number; errors: number; p50: number; p99: number; max: number };
  return { requests: o.requests, seconds: o.duration_us / 1e6, errors: o.errors, p50Ms: o.p50 / 1000, p99Ms: o.p99 / 1000, maxMs: o.max / 1000 };
}

/** A closed-loop Node load generator (quick runs): c keep-alive connections, GET / back to back. */
export async function nodeLoad(port: number, c: number, seconds: number): Promise<HttpLoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: c });
  const lat: number[] = [];
  let errors = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const t0 = performance.now();
      const req = http.get({ host: '127.0.0.1', port, path: '/', agent, timeout: 10000 }, (res) => {
        res.resume();
        res.on('end', () => {
          if ((res.statusCode ?? 0) >= 400) errors++;
          lat.push(performance.now() - t0);
          resolve();
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => {
        errors++;
        resolve();
      });
    });
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (performance.now() < end) await one();
    }),
  );
  const secs = (performance.now() - start) / 1000;
  agent.destroy();
  lat.sort((a, b) => a - b);
  const pct = (p: number): number => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] ?? 0;
  return { requests: lat.length, seconds: secs, errors, p50Ms: pct(50), p99Ms: pct(99), maxMs: lat[lat.length - 1] ?? 0 };
}

export type Direction = 'upload' | 'download';

export interface BulkResult {
  readonly bytes: number;
  readonly seconds: number;
}

/** iperf3 client, one stream; download = -R (server sends); rateGbps = -b (fixed rate). */
export async function iperfLoad(port: number, dir: Direction, seconds: number, cpu: string | undefined, rateGbps?: number): Promise<BulkResult> {
  const rate = rateGbps !== undefined ? ['-b', `${rateGbps}G`] : [];
  const args = ['-c', '127.0.0.1', '-p', String(port), '-t', String(seconds), '-J', ...rate, ...(dir === 'download' ? ['-R'] : [])];
  const { stdout } = cpu !== undefined ? await run('taskset', ['-c', cpu, 'iperf3', ...args], { timeout: (seconds + 30) * 1000 }) : await run('iperf3', args, { timeout: (seconds + 30) * 1000 });
  const o = JSON.parse(stdout) as { end?: { sum_received?: { bytes: number; seconds: number } }; error?: string };
  if (o.error !== undefined || o.end?.sum_received === undefined) throw new Error(`iperf3: ${o.error ?? 'no summary'}`);
  return { bytes: o.end.sum_received.bytes, seconds: o.end.sum_received.seconds };
}

/** Node bulk client for the Node upstream's bulk port (quick runs). */
export async function nodeBulk(port: number, dir: Direction, seconds: number): Promise<BulkResult> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  const start = performance.now();
  let bytes = 0;
  if (dir === 'download') {
    s.write('D');
    s.on('data', (d: Buffer) => (bytes += d.length));
  } else {
    s.write('U');
    const chunk = Buffer.alloc(256 * 1024, 0x62);
    const pump = (): void => {
      while (!s.destroyed && s.write(chunk)) bytes += chunk.length;
    };
    s.on('drain', () => {
      bytes += chunk.length;
      pump();
    });
    pump();
  }
  await new Promise((r) => setTimeout(r, seconds * 1000));
  s.destroy();
  return { bytes, seconds: (performance.now() - start) / 1000 };
}
