/**
 * One command for issue 7's benchmarks.
 *   npm run bench                 throughput/cost matrix + idle-connection memory (peers installed when missing)
 *   npm run bench:fault           fault matrix (nftables blackhole) + latency timeline picture
 *   npm run bench -- --quick      smoke run (< 60 s, Node-only peers, no Debian packages needed); part of npm test
 * Options: --rounds N, --seconds S (HTTP run length), --sidecar-dir DIR (or BENCH_SIDECAR_DIR; default: this
 * checkout), --out DIR (default bench/results/<UTC date>, quick: bench/results/quick), --no-install,
 * --variants steady,burst,idle,early-resume, --hook input|output (nft hook of the blackhole), --targets a,b (subset), --skip-memory, --skip-tcp (throughput: HTTP only), --only throughput|memory,
 * --only h2: the HTTP/2 scenario (issue 13: h2load through the h2 route vs nghttpx and direct, CPU µs/request,
 * RSS per open stream); only when asked, never part of the default run.
 * --update-readme (put <out>/README.md into the repository README's Benchmarks section), --report-only (rebuild
 * summary, markdown and picture from <out>/raw without measuring).
 * Results: <out>/summary.json, <out>/README.md, <out>/timeline.svg/.png; raw samples in <out>/raw/ (git-ignored).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { runFault } from './lib/fault.js';
import type { H2Raw, H2TargetName } from './lib/h2.js';
import { H2_TARGETS, runH2, summarizeH2 } from './lib/h2.js';
import type { FaultVariant, Hook } from './lib/fault.js';
import { renderTimeline } from './lib/chart.js';
import { runMemory } from './lib/memory.js';
import type { TargetName } from './lib/peers.js';
import { ensureCommands, repoRoot } from './lib/peers.js';
import { cleanupAll, hasCommand, pinSelf, tempDir } from './lib/proc.js';
import { checkTargets, renderMarkdown, spliceReadme, summarize } from './lib/report.js';
import type { Summary } from './lib/report.js';
import { runThroughput } from './lib/throughput.js';

interface Args {
  quick: boolean;
  fault: boolean;
  rounds: number | undefined;
  seconds: number | undefined;
  sidecarDir: string;
  out: string | undefined;
  install: boolean;
  variants: FaultVariant[] | undefined;
  targets: TargetName[] | undefined;
  skipMemory: boolean;
  skipTcp: boolean;
  reportOnly: boolean;
  only: string[] | undefined;
  updateReadme: boolean;
  hook: Hook;
  /** iperf3 -b: every target carries the same Gbit/s, so CPU per GB compares like with like. */
  tcpRateGbps: number | undefined;
}

function parseArgs(argv: readonly string[]): Args {
  const a: Args = {
    quick: false,
    fault: false,
    rounds: undefined,
    seconds: undefined,
    sidecarDir: process.env.BENCH_SIDECAR_DIR ?? repoRoot,
    out: undefined,
    install: true,
    variants: undefined,
    targets: undefined,
    skipMemory: false,
    skipTcp: false,
    reportOnly: false,
    only: undefined,
    updateReadme: false,
    hook: 'input',
    tcpRateGbps: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${k} needs a value`);
      return v;
    };
    if (k === '--quick') a.quick = true;
    else if (k === '--fault') a.fault = true;
    else if (k === '--rounds') a.rounds = Number(next());
    else if (k === '--seconds') a.seconds = Number(next());
    else if (k === '--sidecar-dir') a.sidecarDir = resolve(next());
    else if (k === '--out') a.out = resolve(next());
    else if (k === '--no-install') a.install = false;
    else if (k === '--variants') a.variants = next().split(',') as FaultVariant[];
    else if (k === '--targets') a.targets = next().split(',') as TargetName[];
    else if (k === '--skip-memory') a.skipMemory = true;
    else if (k === '--skip-tcp') a.skipTcp = true;
    else if (k === '--report-only') a.reportOnly = true;
    else if (k === '--only') a.only = next().split(',');
    else if (k === '--update-readme') a.updateReadme = true;
    else if (k === '--tcp-rate') a.tcpRateGbps = Number(next());
    else if (k === '--hook') {
      const h = next();
      if (h !== 'input' && h !== 'output') throw new Error('--hook takes input or output');
      a.hook = h;
    }
    else throw new Error(`unknown option ${k}`);
  }
  return a;
}

function gitHead(dir: string): string | undefined {
  try {
    return execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    return undefined;
  }
}

/** First line of each peer's version output, for the record. */
function peerVersions(): Record<string, string> {
  const out: Record<string, string> = {};
  const probes: Array<[string, string[]]> = [
    ['haproxy', ['-v']],
    ['nginx', ['-v']],
    ['wrk', ['--version']],
    ['iperf3', ['--version']],
    ['nghttpx', ['--version']],
    ['h2load', ['--version']],
  ];
  for (const [cmd, a] of probes) {
    if (!hasCommand(cmd)) continue;
    // nginx -v prints to stderr, wrk --version exits 1: take both streams, whatever the exit code.
    const r = spawnSync(cmd, a, { encoding: 'utf8' });
    const line = `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0] ?? '';
    out[cmd] = line.replace(/ - https?:\S+$/, '').replace(/ Copyright.*$/, '').trim();
  }
  const np = join(repoRoot, 'node_modules', 'http-proxy', 'package.json');
  if (existsSync(np)) out['http-proxy'] = (JSON.parse(readFileSync(np, 'utf8')) as { version: string }).version;
  return out;
}

const say = (s: string): void => {
  process.stderr.write(`${s}\n`);
};

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const date = new Date().toISOString().slice(0, 10);
  const out = args.out ?? join(repoRoot, 'bench', 'results', args.quick ? 'quick' : date);
  mkdirSync(join(out, 'raw'), { recursive: true });
  const work = tempDir('ks-bench-');
  // Quick runs do not pin: they check that the harness works, not how fast anything is.
  const twoCpus = !args.quick && (await import('node:os')).availableParallelism() >= 2 && hasCommand('taskset');
  const proxyCpu = twoCpus ? '0' : undefined;
  const loadCpu = twoCpus ? '1' : undefined;
  // The harness itself (Node load generator) runs beside the load generator. Not for fault runs: there the
  // open-loop client's timing matters more than placement, so it goes wherever the scheduler has room.
  if (loadCpu !== undefined && !args.fault) pinSelf(loadCpu);
  say(`bench: results -> ${out}; sidecar from ${args.sidecarDir}; proxy on CPU ${proxyCpu ?? 'any'}, load+upstream on CPU ${loadCpu ?? 'any'}`);

  const canFault = hasCommand('nft') && hasCommand('ss') && process.getuid?.() === 0;
  const h2Only = args.only !== undefined && args.only.every((x) => x === 'h2');
  if (!args.quick && args.install && !h2Only) ensureCommands(args.fault ? ['haproxy', 'nginx', 'nft', 'ss', 'rsvg-convert'] : ['haproxy', 'nginx', 'wrk', 'iperf3', 'ss'], say);
  if (args.install && args.only?.includes('h2') === true) ensureCommands(['h2load', 'nghttpx'], say);

  const summaryPath = join(out, 'summary.json');
  const previous = existsSync(summaryPath) ? (JSON.parse(readFileSync(summaryPath, 'utf8')) as Summary) : undefined;
  const env = {
    node: process.version,
    cpus: (await import('node:os')).cpus().length,
    kernel: (await import('node:os')).release(),
    sidecarDir: args.sidecarDir,
    // Which sidecar was measured: the checkout's HEAD, or BENCH_SIDECAR_REV for an exported tree.
    sidecarRev: process.env.BENCH_SIDECAR_REV ?? gitHead(args.sidecarDir),
    peers: args.quick ? undefined : peerVersions(),
  };

  const allHttp: TargetName[] = ['direct', 'haproxy', 'nginx', 'node-http-proxy', 'node-self', 'relay', 'minimal', 'sidecar-http', 'sidecar-tcp'];
  // The llhttp-binding prototype (research, bench/peers/llhttp-proto.ts) runs only when named in --targets.
  if (args.targets?.includes('llhttp-proto') === true) allHttp.splice(allHttp.indexOf('minimal'), 0, 'llhttp-proto');
  // A/B of two sidecar builds in one run: BENCH_BASE_SIDECAR_DIR=<built checkout> --targets sidecar-base,sidecar-http.
  if (process.env.BENCH_BASE_SIDECAR_DIR !== undefined) allHttp.splice(allHttp.indexOf('sidecar-http'), 0, 'sidecar-base');
  const allTcp: TargetName[] = ['direct', 'haproxy', 'nginx', 'sidecar-tcp'];
  const pick = (xs: TargetName[]): TargetName[] => (args.targets ? xs.filter((x) => args.targets!.includes(x)) : xs);

  let summary: Summary = previous ?? { date, env, throughput: undefined, memory: undefined, fault: undefined };
  if (!args.reportOnly) summary = { ...summary, date, env };

  if (args.reportOnly) {
    const raw = (f: string): unknown => (existsSync(join(out, 'raw', f)) ? JSON.parse(readFileSync(join(out, 'raw', f), 'utf8')) : undefined);
    const tp = raw('throughput.json') as Parameters<typeof summarize.throughput>[0] | undefined;
    const mem = raw('memory.json') as Parameters<typeof summarize.memory>[0] | undefined;
    const f = raw('fault.json') as Parameters<typeof summarize.fault>[0] | undefined;
    const h2 = raw('h2.json') as H2Raw | undefined;
    summary = { ...summary, date: previous?.date ?? date, throughput: tp && summarize.throughput(tp), memory: mem && summarize.memory(mem), fault: f && summarize.fault(f), ...(h2 ? { h2: summarizeH2(h2) } : {}) };
    if (f !== undefined) await renderTimeline(f, out);
  } else if (!args.fault) {
    const wants = (part: string): boolean => args.only === undefined || args.only.includes(part);
    if (wants('throughput')) {
    say('throughput/cost matrix');
    const tp = await runThroughput({
      quick: args.quick,
      rounds: args.rounds ?? (args.quick ? 1 : 3),
      httpSeconds: args.seconds ?? (args.quick ? 1 : 5),
      tcpSeconds: args.quick ? 1 : 4,
      tcpRateGbps: args.tcpRateGbps,
      concurrencies: args.quick ? [50] : [50, 200],
      httpTargets: pick(args.quick ? ['direct', 'sidecar-http', 'sidecar-tcp'] : allHttp),
      tcpTargets: args.skipTcp ? [] : pick(args.quick ? ['direct', 'sidecar-tcp'] : allTcp),
      dir: work,
      proxyCpu,
      loadCpu,
      sidecarDir: args.sidecarDir,
      say,
    });
    writeFileSync(join(out, 'raw', 'throughput.json'), JSON.stringify(tp, null, 1));
    summary = { ...summary, throughput: summarize.throughput(tp) };
    }
    if (args.only?.includes('h2') === true) {
      say('h2: h2load through the h2 route vs nghttpx and direct');
      const h2 = await runH2({
        quick: args.quick,
        rounds: args.rounds ?? (args.quick ? 1 : 3),
        // 10 s at 1000 req/s: nghttpx uses ~0.2 CPU-s (20 clock ticks; CPU is read in ns from schedstat now).
        seconds: args.seconds ?? (args.quick ? 1 : 10),
        rates: [1000],
        clients: 1,
        openStreams: args.quick ? 200 : 2000,
        targets: H2_TARGETS.filter((x) => args.targets === undefined || (args.targets as string[]).includes(x)) as H2TargetName[],
        dir: work,
        proxyCpu,
        loadCpu,
        sidecarDir: args.sidecarDir,
        say,
      });
      writeFileSync(join(out, 'raw', 'h2.json'), JSON.stringify(h2, null, 1));
      summary = { ...summary, h2: summarizeH2(h2) };
    }
    if (!args.skipMemory && wants('memory')) {
      say('idle pooled connections: memory');
      const mem = await runMemory({ counts: args.quick ? [0, 100] : [0, 1000, 10000], dir: work, proxyCpu, loadCpu, sidecarDir: args.sidecarDir, say });
      writeFileSync(join(out, 'raw', 'memory.json'), JSON.stringify(mem, null, 1));
      summary = { ...summary, memory: summarize.memory(mem) };
    }
  }
  if (!args.reportOnly && (args.fault || (args.quick && (args.only === undefined || args.only.includes('fault'))))) {
    if (!canFault) {
      if (!args.quick) throw new Error('the fault matrix needs root, nft and ss');
      say('fault matrix skipped: needs root, nft and ss');
    } else {
      say('fault matrix');
      const faultTargets = pick(args.quick ? ['direct', 'sidecar-http', 'sidecar-tcp'] : allHttp.filter((t) => t !== 'minimal' && t !== 'node-self' && t !== 'relay' && t !== 'llhttp-proto'));
      const f = await runFault({
        quick: args.quick,
        variants: args.variants ?? (args.quick ? ['steady'] : ['steady', 'burst', 'idle', 'early-resume']),
        targets: faultTargets,
        dir: work,
        sidecarDir: args.sidecarDir,
        hook: args.hook,
        say,
      });
      writeFileSync(join(out, 'raw', 'fault.json'), JSON.stringify(f, null, 0));
      summary = { ...summary, fault: summarize.fault(f) };
      const pics = await renderTimeline(f, out);
      say(`picture: ${pics.join(', ')}`);
    }
  }
  summary = { ...summary, targets: checkTargets(summary) };
  writeFileSync(summaryPath, JSON.stringify(summary, null, 2) + '\n');
  writeFileSync(join(out, 'README.md'), renderMarkdown(summary));
  say(`bench: wrote ${summaryPath} and ${join(out, 'README.md')}`);
  if (args.updateReadme) {
    const readme = join(repoRoot, 'README.md');
    writeFileSync(readme, spliceReadme(readFileSync(readme, 'utf8'), renderMarkdown(summary), relative(repoRoot, out)));
    say(`bench: updated the Benchmarks section of ${readme}`);
  }
}

main()
  .then(() => {
    cleanupAll();
    process.exit(0);
  })
  .catch((err: unknown) => {
    say(`bench failed: ${(err as Error).stack ?? String(err)}`);
    cleanupAll();
    process.exit(1);
  });
