/**
 * Processes for the benchmark: spawn pinned to a CPU, read CPU time and RSS from /proc, find free ports,
 * and make sure every child, nft table and temp dir goes away, even when the run fails or is interrupted.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { SIDECAR_NODE_FLAGS } from './sidecar-flags.js';

export const run = promisify(execFile);

/** Clock ticks per second for /proc/<pid>/stat utime/stime (getconf CLK_TCK; 100 on every Linux we know). */
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** RLIMIT_NOFILE of this process (children inherit it). */
export const NOFILE = (() => {
  const [soft, hard] = execFileSync('sh', ['-c', 'ulimit -Sn; ulimit -Hn']).toString().trim().split('\n');
  const num = (x: string | undefined): number => (x === undefined || x === 'unlimited' ? Infinity : Number(x));
  return { soft: num(soft), hard: num(hard) };
})();

const children = new Set<ChildProcess>();
const cleanups: Array<() => void> = [];
let cleaned = false;

/** Runs every registered cleanup once (children get SIGKILL). Safe to call more than once. */
export function cleanupAll(): void {
  if (cleaned) return;
  cleaned = true;
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) killTree(c.pid, 'SIGKILL');
  }
  for (const f of cleanups.reverse()) {
    try {
      f();
    } catch {
      // Best effort: the next cleanup must still run.
    }
  }
}

/** Registers a synchronous cleanup (nft table delete, temp dir removal) for exit, signals and errors. */
export function onCleanup(f: () => void): void {
  cleanups.push(f);
}

process.on('exit', cleanupAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    cleanupAll();
    process.exit(130);
  });
}

/** A temp dir that is removed at exit. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Everything written to stdout and stderr so far (capped). */
  output(): string;
  /** Resolves with the first stdout line for which `match` returns a value. */
  waitLine<T>(match: (line: string) => T | undefined, timeoutMs?: number): Promise<T>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface SpawnOptions {
  /** CPU list for taskset (e.g. "0"); omitted = no pinning. */
  readonly cpu?: string;
  readonly env?: Record<string, string>;
  readonly cwd?: string;
  /** Raise RLIMIT_NOFILE (prlimit) for processes that hold many sockets. */
  readonly nofile?: number;
}

/** Spawns a command, pinned with taskset when asked. The pid is the command's own (taskset and prlimit exec). */
export function spawnProc(name: string, cmd: string, args: readonly string[], opts: SpawnOptions = {}): Proc {
  let argv = [cmd, ...args];
  if (opts.cpu !== undefined) argv = ['taskset', '-c', opts.cpu, ...argv];
  if (opts.nofile !== undefined && opts.nofile > NOFILE.soft) {
    // Raise the soft limit up to the hard one (raising the hard limit needs CAP_SYS_RESOURCE, not had here).
    const n = Math.min(opts.nofile, NOFILE.hard);
    if (n > NOFILE.soft) argv = ['prlimit', `--nofile=${n}:${NOFILE.hard}`, ...argv];
  }
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.on('exit', () => children.delete(child));
  child.on('error', () => {});
  let out = '';
  const lineWaiters: Array<(line: string) => boolean> = [];
  let partial = '';
  const append = (s: string): void => {
    out += s;
    if (out.length > 200_000) out = out.slice(-100_000);
  };
  child.stdout?.on('data', (d: Buffer) => {
    const s = d.toString();
    append(s);
    partial += s;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      for (let i = lineWaiters.length - 1; i >= 0; i--) if (lineWaiters[i]!(line)) lineWaiters.splice(i, 1);
    }
  });
  child.stderr?.on('data', (d: Buffer) => append(d.toString()));
  if (child.pid === undefined) throw new Error(`${name}: could not spawn ${cmd}`);
  const pid = child.pid;
  return {
    name,
    child,
    pid,
    output: () => out,
    waitLine<T>(match: (line: string) => T | undefined, timeoutMs = 15000): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`${name}: no expected output within ${timeoutMs} ms; output: ${out.slice(-2000)}`));
        }, timeoutMs);
        const onExit = (code: number | null): void => {
          cleanup();
          reject(new Error(`${name}: exited (${code}) before it was ready; output: ${out.slice(-2000)}`));
        };
        const waiter = (line: string): boolean => {
          const v = match(line);
          if (v === undefined) return false;
          cleanup();
          resolve(v);
          return true;
        };
        const cleanup = (): void => {
          clearTimeout(timer);
          child.off('exit', onExit);
          const i = lineWaiters.indexOf(waiter);
          if (i >= 0) lineWaiters.splice(i, 1);
        };
        for (const line of out.split('\n')) {
          const v = match(line);
          if (v !== undefined) {
            clearTimeout(timer);
            resolve(v);
            return;
          }
        }
        if (child.exitCode !== null) {
          onExit(child.exitCode);
          return;
        }
        lineWaiters.push(waiter);
        child.once('exit', onExit);
      });
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      // Remember the descendants now (nginx workers): once the parent is gone they are reparented.
      const tree = processTree(pid);
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
      for (const p of tree.slice(1)) killPid(p, 'SIGKILL');
    },
  };
}

function killPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

/** Signals a process and all its descendants (children first are found before anyone dies). */
export function killTree(pid: number, signal: NodeJS.Signals): void {
  for (const p of processTree(pid).reverse()) killPid(p, signal);
}

/** The pid and all its descendants (nginx master + worker, etc.). */
export function processTree(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(d), Number(rest[1]));
    } catch {
      // Process went away while we looked.
    }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) for (const [p, pp] of parent) if (pp === out[i]) out.push(p);
  return out;
}

/**
 * utime and stime of the process tree (all threads of each process: V8's GC and libuv's pool threads count),
 * in seconds. Tick-sampled (CLK_TCK, 10 ms): a run of nghttpx at 20 % busy for 10 s is only ~20 ticks, so
 * per-request figures from this move ±5–10 %. The bench measures with cpuSnapshot/cpuBetween (ns) and keeps
 * this for the user/sys split and as the cross-check.
 */
export function cpuTimes(pid: number): { user: number; sys: number } {
  let user = 0;
  let sys = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      // Fields after "(comm) ": state is field 3; utime and stime are fields 14 and 15 (proc(5)).
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      user += Number(rest[11]);
      sys += Number(rest[12]);
    } catch {
      // Exited.
    }
  }
  return { user: user / CLK_TCK, sys: sys / CLK_TCK };
}

/** utime+stime of the process tree, in seconds (see cpuTimes). */
export function cpuSeconds(pid: number): number {
  const t = cpuTimes(pid);
  return t.user + t.sys;
}

/** CPU time of a process tree at one moment: per-thread nanoseconds plus the tick totals (see cpuBetween). */
export interface CpuSnapshot {
  /** "pid/tid" -> sum_exec_runtime in ns (field 1 of /proc/<pid>/task/<tid>/schedstat). */
  readonly tasks: Map<string, number>;
  readonly ticks: { user: number; sys: number };
}

/** Reads every thread's schedstat of every process in the tree (ns), and the tick figures (cpuTimes). */
export function cpuSnapshot(pid: number): CpuSnapshot {
  const tasks = new Map<string, number>();
  for (const p of processTree(pid)) {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      try {
        const ns = Number(readFileSync(`/proc/${p}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
        if (Number.isFinite(ns)) tasks.set(`${p}/${tid}`, ns);
      } catch {
        // Thread exited while we looked.
      }
    }
  }
  return { tasks, ticks: cpuTimes(pid) };
}

export interface CpuDelta {
  /** CPU seconds between the snapshots: ns-precise, or the tick figure when `precise` is false. */
  readonly seconds: number;
  /** `seconds` split by the tick figures' user:sys ratio (schedstat has no split). */
  readonly user: number;
  readonly sys: number;
  /** The tick figure (utime+stime) for the same interval: the cross-check. */
  readonly tickSeconds: number;
  /**
   * False when a thread seen in the first snapshot had exited by the second: its run time since the first
   * snapshot is gone from schedstat (the process's utime/stime keep it), so `seconds` falls back to ticks.
   * Threads born between the snapshots count in full (all their run time is inside the interval).
   */
  readonly precise: boolean;
}

/** CPU used by the tree between two snapshots (see CpuDelta). */
export function cpuBetween(a: CpuSnapshot, b: CpuSnapshot): CpuDelta {
  const tickUser = b.ticks.user - a.ticks.user;
  const tickSys = b.ticks.sys - a.ticks.sys;
  const tickSeconds = tickUser + tickSys;
  let precise = true;
  for (const k of a.tasks.keys()) if (!b.tasks.has(k)) precise = false;
  let ns = 0;
  for (const [k, v] of b.tasks) ns += v - (a.tasks.get(k) ?? 0);
  const seconds = precise ? ns / 1e9 : tickSeconds;
  const userShare = tickSeconds > 0 ? tickUser / tickSeconds : 1;
  return { seconds, user: seconds * userShare, sys: seconds * (1 - userShare), tickSeconds, precise };
}

/** Extra node flags for the sidecar under test / the base (A/B of V8 flags): BENCH_SIDECAR_NODE_ARGS, BENCH_BASE_NODE_ARGS. */
export function sidecarNodeArgs(base: boolean): string[] {
  const v = process.env[base ? 'BENCH_BASE_NODE_ARGS' : 'BENCH_SIDECAR_NODE_ARGS'];
  // Production's flags first; V8 takes the last of a repeated flag, so these env flags override them.
  return [...SIDECAR_NODE_FLAGS, ...(v === undefined ? [] : v.split(/\s+/).filter((x) => x !== ''))];
}

/** VmRSS of the process tree, KiB. */
export function rssKiB(pid: number): number {
  let kib = 0;
  for (const p of processTree(pid)) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) kib += Number(m[1]);
    } catch {
      // Exited.
    }
  }
  return kib;
}

/**
 * A port that was free a moment ago, for peers whose config files need a number (HAProxy, nginx, iperf3).
 * Racy by nature; a peer that then fails to bind reports it and the run fails loudly.
 */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Polls until 127.0.0.1:port accepts a connection. */
export async function waitForPort(port: number, timeoutMs = 10000, proc?: Proc): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (proc !== undefined && proc.child.exitCode !== null) throw new Error(`${proc.name} exited (${proc.child.exitCode}): ${proc.output().slice(-2000)}`);
    if (Date.now() > until) throw new Error(`port ${port} not accepting after ${timeoutMs} ms${proc ? `: ${proc.output().slice(-2000)}` : ''}`);
    await sleep(50);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Whether a command is on PATH. */
export function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Pins the calling process (all threads) to a CPU list; the load generator side of the matrix. */
export function pinSelf(cpu: string): void {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', cpu, String(process.pid)], { stdio: 'ignore' });
  } catch {
    // No taskset: numbers are noisier, nothing breaks.
  }
}
