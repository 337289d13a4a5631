/** Runs the real CLI as a child process, with its JSON log lines parsed. */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BIN = new URL('../../src/cli/bin.js', import.meta.url).pathname;
/** The bundled CLI (scripts/bundle.mjs): what `npm start`, the package's bin and the image run. */
export const BUNDLE_BIN = new URL('../../bundle/bin.js', import.meta.url).pathname;

/** The CLI as a child process, its stdout JSON log lines parsed (other stdout lines, e.g. print-config, skipped). */
export interface CliProcess {
  readonly child: ReturnType<typeof spawn>;
  readonly lines: Array<Record<string, unknown>>;
  readonly exit: Promise<number | null>;
  /** Everything written to stderr so far. */
  readonly stderr: string;
  /** Resolves with the first log line (past or future) matching `pred`. */
  waitLine(pred: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
}

export interface SidecarProcess extends CliProcess {
  /** Listen port of the first route, from its 'route listening' line. */
  routePort(): Promise<number>;
}

/**
 * Runs `keepalive-sidecar ARGS` with only PATH plus `env`; `wrap` runs it under another command (e.g. prlimit);
 * `bin` is the compiled CLI (dist/src) unless given (BUNDLE_BIN).
 */
export function spawnCli(args: readonly string[], env: Record<string, string> = {}, wrap: readonly string[] = [], bin: string = BIN): CliProcess {
  const argv = [...wrap, process.execPath, bin, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<{ pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }> = [];
  let buf = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let obj: Record<string, unknown>;
      try {
        obj = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      lines.push(obj);
      for (const w of [...waiters]) {
        if (w.pred(obj)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(obj);
        }
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return {
    child,
    lines,
    exit: once(child, 'exit').then(([code]) => code as number | null),
    get stderr() {
      return err;
    },
    waitLine(pred) {
      const found = lines.find(pred);
      return found ? Promise.resolve(found) : new Promise((resolve) => waiters.push({ pred, resolve }));
    },
  };
}

/**
 * Starts `run` with `config` (an object written to a temp file). `wrap` runs it under another command, e.g.
 * `['prlimit', '--nofile=256', '--']`.
 */
export function spawnSidecar(config: unknown, wrap: readonly string[] = []): SidecarProcess {
  const dir = mkdtempSync(join(tmpdir(), 'ks-proc-'));
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(config));
  const p = spawnCli(['run', '-c', file], {}, wrap);
  return Object.assign(p, {
    async routePort(): Promise<number> {
      const l = await p.waitLine((x) => x.msg === 'route listening');
      return Number(String(l.listen).split(':').pop());
    },
  });
}
