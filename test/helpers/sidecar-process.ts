/** Runs the real CLI (`keepalive-sidecar run -c FILE`) as a child process, with its JSON log lines parsed. */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BIN = new URL('../../src/cli/bin.js', import.meta.url).pathname;

export interface SidecarProcess {
  readonly child: ReturnType<typeof spawn>;
  readonly lines: Array<Record<string, unknown>>;
  readonly exit: Promise<number | null>;
  /** Resolves with the first log line (past or future) matching `pred`. */
  waitLine(pred: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  /** Listen port of the first route, from its 'route listening' line. */
  routePort(): Promise<number>;
  stderr(): string;
}

/**
 * Starts `run` with `config` (an object written to a temp file). `wrap` runs it under another command, e.g.
 * `['prlimit', '--nofile=256', '--']`.
 */
export function spawnSidecar(config: unknown, wrap: readonly string[] = []): SidecarProcess {
  const dir = mkdtempSync(join(tmpdir(), 'ks-proc-'));
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(config));
  const argv = [...wrap, process.execPath, BIN, 'run', '-c', file];
  const child = spawn(argv[0]!, argv.slice(1), { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
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
  const waitLine = (pred: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => {
    const found = lines.find(pred);
    return found ? Promise.resolve(found) : new Promise((resolve) => waiters.push({ pred, resolve }));
  };
  return {
    child,
    lines,
    exit: once(child, 'exit').then(([code]) => code as number | null),
    waitLine,
    async routePort() {
      const l = await waitLine((x) => x.msg === 'route listening');
      return Number(String(l.listen).split(':').pop());
    },
    stderr: () => err,
  };
}
