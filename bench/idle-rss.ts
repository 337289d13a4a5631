/**
 * Idle RSS of the sidecar (issue 12): one tcp route, one http route, and bare Node in the same run, interleaved
 * rounds, medians with spreads. Each sample is a fresh process: the real CLI as shipped (`dist/bundle/bin.js
 * run --config <json>`, see scripts/bundle.mjs; `--bin unbundled=dist/src/cli/bin.js` adds the tsc output) with
 * one route to an idle local upstream; RSS is read once the route logs 'route listening', after a settle time,
 * several times one second apart (VmRSS from /proc/<pid>/status, and Rss/Pss/Anonymous from
 * /proc/<pid>/smaps_rollup); the sample is the median of those reads.
 *
 *   npm run build && node dist/bench/idle-rss.js [--rounds 3] [--settle-ms 15000] [--reads 3] [--out DIR]
 *     [--variant name=--flag1,--flag2,ENV=V ...]  extra node flag sets / environment, each for tcp and http
 *     [--bin name=path/to/bin.js ...]             another build of the CLI (e.g. a baseline commit), A/B
 *     [--imports]                                 also RSS added by importing each runtime dependency
 *
 * The settle time matters: V8's memory reducer runs a GC ~8-10 s after start in an idle process and RSS
 * drops by 4-5 MiB then, so reads earlier than that overstate the idle figure.
 *
 * Also "after 1 request": the same, with one GET through the route before the settle time (the http route
 * then has compiled undici's llhttp WebAssembly parser and holds one idle pooled connection).
 *
 * Only loopback; every child is killed at the end (also on failure).
 */
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SIDECAR_NODE_FLAGS } from './lib/sidecar-flags.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
// What `npm start`, the package's bin and the image run (scripts/bundle.mjs).
const bin = join(root, 'dist', 'bundle', 'bin.js');

interface Args {
  rounds: number;
  settleMs: number;
  reads: number;
  out: string | undefined;
  variants: Array<{ name: string; flags: string[]; env: Record<string, string> }>;
  bins: Array<{ name: string; path: string }>;
  imports: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { rounds: 3, settleMs: 15000, reads: 3, out: undefined, variants: [{ name: 'default', flags: [], env: {} }], bins: [], imports: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${k} needs a value`);
      return v;
    };
    if (k === '--rounds') a.rounds = Number(next());
    else if (k === '--settle-ms') a.settleMs = Number(next());
    else if (k === '--reads') a.reads = Number(next());
    else if (k === '--out') a.out = next();
    else if (k === '--imports') a.imports = true;
    else if (k === '--bin') {
      const v = next();
      const eq = v.indexOf('=');
      a.bins.push({ name: v.slice(0, eq), path: v.slice(eq + 1) });
    }
    else if (k === '--variant') {
      // name=--flag1,--flag2,ENV=VALUE
      const v = next();
      const eq = v.indexOf('=');
      const parts = v.slice(eq + 1).split(',').filter(Boolean);
      const env: Record<string, string> = {};
      const flags: string[] = [];
      for (const p of parts) {
        if (p.startsWith('-')) flags.push(p);
        else {
          const e = p.indexOf('=');
          env[p.slice(0, e)] = p.slice(e + 1);
        }
      }
      a.variants.push({ name: v.slice(0, eq), flags, env });
    } else throw new Error(`unknown argument ${k}`);
  }
  return a;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Read {
  vmRssKiB: number;
  rssKiB: number;
  pssKiB: number;
  anonKiB: number;
}

function readMem(pid: number): Read {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const field = (text: string, name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { vmRssKiB: field(status, 'VmRSS'), rssKiB: field(rollup, 'Rss'), pssKiB: field(rollup, 'Pss'), anonKiB: field(rollup, 'Anonymous') };
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const children = new Set<ChildProcess>();
const killAll = (): void => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
};
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));

/** Spawns, waits until `ready` matches a stdout line (or at once when undefined), settles, reads, kills. */
/** One GET through the route on a fresh connection (works for a tcp route too: the upstream speaks HTTP). */
function oneRequest(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', resolve);
    });
    req.on('timeout', () => req.destroy(new Error('request through the route timed out')));
    req.on('error', reject);
  });
}

/**
 * Spawns, waits until `ready` matches a stdout line (or at once when undefined), optionally sends one request
 * through the route (`poke`: the port is read from the 'route listening' line), settles, reads, kills.
 */
async function sample(cmd: string, argv: string[], env: Record<string, string>, ready: RegExp | undefined, a: Args, poke = false): Promise<Read> {
  const child = spawn(cmd, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let output = '';
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not ready within 20 s: ${cmd} ${argv.join(' ')}\n${output}`)), 20000);
      const onData = (d: Buffer): void => {
        output += d.toString();
        if (ready === undefined || ready.test(output)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      child.on('exit', (code) => reject(new Error(`exited ${code}: ${output}`)));
      child.on('spawn', () => ready === undefined && onData(Buffer.alloc(0)));
    });
    if (poke) {
      const port = /"listen":"127\.0\.0\.1:(\d+)"[^\n]*"msg":"route listening"/.exec(output)?.[1];
      if (port === undefined) throw new Error(`no route port in: ${output}`);
      await oneRequest(Number(port));
    }
    await sleep(a.settleMs);
    const reads: Read[] = [];
    for (let i = 0; i < a.reads; i++) {
      if (i > 0) await sleep(1000);
      reads.push(readMem(child.pid!));
    }
    return {
      vmRssKiB: median(reads.map((r) => r.vmRssKiB)),
      rssKiB: median(reads.map((r) => r.rssKiB)),
      pssKiB: median(reads.map((r) => r.pssKiB)),
      anonKiB: median(reads.map((r) => r.anonKiB)),
    };
  } finally {
    child.kill('SIGKILL');
    children.delete(child);
  }
}

function gitCommit(): string {
  try {
    const h = execFileSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD']).toString().trim();
    const dirty = execFileSync('git', ['-C', root, 'status', '--porcelain', '--untracked-files=no']).toString().trim() !== '';
    return dirty ? `${h}+dirty` : h;
  } catch {
    return 'unknown';
  }
}

const RUNTIME_DEPS = ['prom-client', 'pino', 'convict', 'yaml', 'net-keepalive', 'koffi', 'undici'];

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const dir = mkdtempSync(join(tmpdir(), 'idle-rss-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  // An idle upstream: accepts and holds (no route connects before a client arrives, except warm spares: none).
  // The upstream answers HTTP (a tcp route pipes the same bytes); until a request comes no route connects to it.
  const upstream = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const upPort = (upstream.address() as net.AddressInfo).port;
  const cfgs: Record<'tcp' | 'http', string> = { tcp: '', http: '' };
  for (const mode of ['tcp', 'http'] as const) {
    cfgs[mode] = join(dir, `${mode}.json`);
    writeFileSync(
      cfgs[mode],
      JSON.stringify({
        admin: { host: '127.0.0.1', port: 0 },
        debug: { port: 0 },
        log: { level: 'info' },
        routes: [{ name: 'r', mode, listen: { host: '127.0.0.1', port: 0 }, upstream: { host: '127.0.0.1', port: upPort } }],
      }),
    );
  }
  const cases: Array<{ name: string; run: () => Promise<Read> }> = [];
  cases.push({ name: 'bare node', run: () => sample(process.execPath, ['-e', 'setInterval(()=>{},1e9)'], {}, undefined, a) });
  for (const v of a.variants) {
    for (const mode of ['tcp', 'http'] as const) {
      cases.push({
        name: `${mode} route${v.name === 'default' ? '' : ` [${v.name}]`}`,
        run: () => sample(process.execPath, [...SIDECAR_NODE_FLAGS, ...v.flags, bin, 'run', '--config', cfgs[mode]], v.env, /"msg":"route listening"/, a),
      });
    }
  }
  for (const v of a.variants) {
    for (const mode of ['tcp', 'http'] as const) {
      cases.push({
        name: `${mode} route, after 1 request${v.name === 'default' ? '' : ` [${v.name}]`}`,
        run: () => sample(process.execPath, [...SIDECAR_NODE_FLAGS, ...v.flags, bin, 'run', '--config', cfgs[mode]], v.env, /"msg":"route listening"/, a, true),
      });
    }
  }
  for (const b of a.bins) {
    for (const mode of ['tcp', 'http'] as const) {
      cases.push({ name: `${mode} route [${b.name}]`, run: () => sample(process.execPath, [...SIDECAR_NODE_FLAGS, b.path, 'run', '--config', cfgs[mode]], {}, /"msg":"route listening"/, a) });
    }
  }
  if (a.imports) {
    for (const dep of RUNTIME_DEPS) {
      cases.push({ name: `import ${dep}`, run: () => sample(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(dep)}); setInterval(()=>{},1e9)`], {}, undefined, a) });
    }
  }
  const results = new Map<string, Read[]>(cases.map((c) => [c.name, []]));
  for (let r = 0; r < a.rounds; r++) {
    for (const c of cases) {
      const x = await c.run();
      results.get(c.name)!.push(x);
      process.stderr.write(`round ${r + 1}/${a.rounds} ${c.name}: VmRSS ${(x.vmRssKiB / 1024).toFixed(1)} MiB (Pss ${(x.pssKiB / 1024).toFixed(1)}, anon ${(x.anonKiB / 1024).toFixed(1)})\n`);
    }
  }
  upstream.close();
  const mib = (k: number): string => (k / 1024).toFixed(1);
  const bare = median(results.get('bare node')!.map((x) => x.vmRssKiB));
  const lines = [
    `# Idle RSS, ${new Date().toISOString()}, commit ${gitCommit()}, ${process.version}`,
    '',
    `${a.rounds} interleaved rounds; each sample a fresh process, ${a.reads} reads 1 s apart after ${a.settleMs} ms settle (median of reads); table: median over rounds (min–max).`,
    '',
    '| case | VmRSS MiB | over bare node MiB | Pss MiB | anonymous MiB |',
    '|---|---:|---:|---:|---:|',
  ];
  for (const [name, xs] of results) {
    const v = xs.map((x) => x.vmRssKiB);
    const p = xs.map((x) => x.pssKiB);
    const an = xs.map((x) => x.anonKiB);
    lines.push(
      `| ${name} | ${mib(median(v))} (${mib(Math.min(...v))}–${mib(Math.max(...v))}) | ${name === 'bare node' ? '' : `+${mib(median(v) - bare)}`} | ${mib(median(p))} | ${mib(median(an))} |`,
    );
  }
  const text = `${lines.join('\n')}\n`;
  process.stdout.write(text);
  if (a.out !== undefined) {
    mkdirSync(a.out, { recursive: true });
    writeFileSync(join(a.out, 'idle-rss.md'), text);
    writeFileSync(join(a.out, 'idle-rss.json'), JSON.stringify({ date: new Date().toISOString(), commit: gitCommit(), node: process.version, args: a, samples: Object.fromEntries(results) }, null, 1));
  }
}

await main();
