// node bench/results/2026-12-02-rss/per-conn-probe.mjs N [bin]   (run from the repository root, after npm run build)
// -> sidecar (http route) RSS KiB with N idle pooled conns: settled, after gc, after gc+malloc_trim
import http from 'node:http';
import { spawn } from 'node:child_process';
import { writeFileSync, readFileSync } from 'node:fs';
const N = Number(process.argv[2]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let open = 0;
const upstream = http.createServer((req, res) => setTimeout(() => res.end('ok'), 3000));
upstream.on('connection', (s) => { open++; s.on('close', () => open--); });
upstream.keepAliveTimeout = 600000;
await new Promise((r) => upstream.listen(0, '127.0.0.1', 20000, r));
const cfg = `/tmp/perconn-${process.pid}.json`;
writeFileSync(cfg, JSON.stringify({ admin: { host: '127.0.0.1', port: 0 }, debug: { port: 0 }, log: { level: 'info' }, routes: [{ name: 'h', mode: 'http', listen: { host: '127.0.0.1', port: 0 }, upstream: { host: '127.0.0.1', port: upstream.address().port }, maxConnections: N + 100, http: { maxIdle: N + 100, maxPending: N + 100 } }] }));
const child = spawn(process.execPath, [...(process.env.XFLAGS ? process.env.XFLAGS.split(' ') : []), '--expose-gc', '--import', process.env.PRELOAD ?? new URL('./gc-trim-preload.mjs', import.meta.url).pathname, process.argv[3] ?? 'dist/src/cli/bin.js', 'run', '--config', cfg], { stdio: ['ignore', 'pipe', 'inherit'] });
let out = '';
const port = await new Promise((resolve) => child.stdout.on('data', (d) => { out += d; const m = /"msg":"route listening"[^\n]*|"listen":"127\.0\.0\.1:(\d+)"[^\n]*route listening/.exec(out); const m2 = /"listen":"127\.0\.0\.1:(\d+)"[^\n]*"msg":"route listening"/.exec(out); if (m2) resolve(Number(m2[1])); }));
child.stdout.resume();
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))[1]);
if (N > 0) {
  const agent = new http.Agent({ keepAlive: false, maxSockets: N });
  await Promise.all(Array.from({ length: N }, () => new Promise((resolve) => { const req = http.get({ host: '127.0.0.1', port, path: '/', agent, timeout: 60000 }, (res) => { res.resume(); res.on('end', resolve); }); req.on('error', () => resolve()); })));
  agent.destroy();
}
const series = [];
for (const t of [5]) { await sleep((t - (series.at(-1)?.[0] ?? 0)) * 1000); series.push([t, rss()]); }
console.log(JSON.stringify(series));
const a = rss();
child.kill('SIGUSR2');
await sleep(700);
const b = rss();
await sleep(1500);
const c = rss();
console.log(JSON.stringify({ N, idleUpstreamConns: open, rssKiB: a, afterGcKiB: b, afterTrimKiB: c }));
child.kill('SIGKILL');
upstream.close(); process.exit(0);
