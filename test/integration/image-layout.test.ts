/**
 * The container image without a container engine: the Dockerfile is linted (dockerfile-utils, the linter
 * behind the VS Code Docker extension, plus the policy of STYLE.md §8 that it does not check), then the
 * runtime stage is replayed instruction by instruction into a temporary root (WORKDIR, COPY, RUN, ENV,
 * USER, ENTRYPOINT/CMD), and the result is started the way the image would start: `keepalive-sidecar
 * --version`, then `keepalive-sidecar run` as a TCP proxy to a local echo server, stopped with SIGTERM.
 * The npm ci of production dependencies uses the registry and npm's own cache; nothing else is kept.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { validate as lintDockerfile } from 'dockerfile-utils';
import { echoServer } from '../fixtures/upstreams.js';
import type { Fixture } from '../fixtures/upstreams.js';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const DOCKERFILE = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
const PKG = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string>; devDependencies: Record<string, string>; engines: { node: string } };

interface Instruction {
  readonly keyword: string;
  readonly args: string;
  readonly line: number;
}
interface Stage {
  readonly from: string;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

/** Instructions by stage (continuation lines joined, comments dropped). Enough for this Dockerfile's syntax. */
function parseDockerfile(text: string): { args: Instruction[]; stages: Stage[] } {
  const lines = text.split('\n');
  const args: Instruction[] = [];
  const stages: Stage[] = [];
  for (let i = 0; i < lines.length; i++) {
    const startLine = i + 1;
    let l = lines[i] ?? '';
    if (/^\s*(#|$)/.test(l)) continue;
    while (l.endsWith('\\') && i + 1 < lines.length) {
      i++;
      const next = lines[i] ?? '';
      if (/^\s*#/.test(next)) continue;
      l = `${l.slice(0, -1)} ${next.trim()}`;
    }
    const m = /^\s*(\w+)\s+(.*)$/.exec(l);
    assert.ok(m !== null, `Dockerfile:${startLine}: cannot read "${l}"`);
    const ins = { keyword: (m[1] ?? '').toUpperCase(), args: (m[2] ?? '').trim(), line: startLine };
    if (ins.keyword === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      stages.push({ from: f?.[1] ?? '', name: f?.[2], instructions: [] });
    } else if (stages.length === 0) {
      args.push(ins);
    } else {
      stages[stages.length - 1]?.instructions.push(ins);
    }
  }
  return { args, stages };
}

const PARSED = parseDockerfile(DOCKERFILE);
const RUNTIME = PARSED.stages[PARSED.stages.length - 1] as Stage;
const BUILD = PARSED.stages[0] as Stage;
const jsonArray = (s: string): string[] => JSON.parse(s) as string[];
const all = (stage: Stage, keyword: string): Instruction[] => stage.instructions.filter((i) => i.keyword === keyword);

describe('Dockerfile lint', () => {
  it('dockerfile-utils reports no problems', () => {
    const problems = lintDockerfile(DOCKERFILE).map((d) => `Dockerfile:${d.range.start.line + 1}: ${d.message}`);
    assert.deepEqual(problems, []);
  });

  it('follows the packaging rules (STYLE.md §8) that a generic linter does not know', () => {
    assert.equal(PARSED.stages.length, 2, 'two stages: build, runtime');
    assert.equal(BUILD.name, 'build');
    const nodeVersion = PARSED.args.find((a) => a.keyword === 'ARG' && a.args.startsWith('NODE_VERSION='));
    const major = Number(/^NODE_VERSION=(\d+)$/.exec(nodeVersion?.args ?? '')?.[1]);
    assert.ok(major >= 20 && major % 2 === 0, `an LTS (even) Node major, compatible with engines ${PKG.engines.node}: ${major}`);
    for (const s of PARSED.stages) {
      assert.match(s.from, /^node:\$\{NODE_VERSION\}-[a-z]+-slim$/, `${s.from}: a glibc (Debian) slim base, tagged`);
      assert.doesNotMatch(s.from, /alpine|:latest$/);
      for (const w of all(s, 'WORKDIR')) assert.ok(isAbsolute(w.args), `Dockerfile:${w.line}: WORKDIR must be absolute`);
      assert.deepEqual(all(s, 'ADD'), [], 'COPY, not ADD');
      for (const r of all(s, 'RUN')) {
        if (/apt-get install/.test(r.args)) assert.match(r.args, /--no-install-recommends/, `Dockerfile:${r.line}`);
      }
    }
    assert.ok(all(BUILD, 'RUN').some((r) => /^npm ci\b/.test(r.args) && !r.args.includes('--omit=dev')), 'build stage installs dev dependencies');
    assert.ok(all(RUNTIME, 'RUN').some((r) => /^npm ci --omit=dev\b/.test(r.args)), 'runtime stage installs production dependencies only');
    const users = all(RUNTIME, 'USER');
    assert.equal(users.length, 1);
    assert.match(users[0]?.args ?? '', /^[1-9]\d*:[1-9]\d*$/, 'a numeric non-root UID:GID (runAsNonRoot can check it)');
    assert.deepEqual(jsonArray(all(RUNTIME, 'ENTRYPOINT')[0]?.args ?? 'null'), ['keepalive-sidecar'], 'exec-form ENTRYPOINT');
    assert.deepEqual(jsonArray(all(RUNTIME, 'CMD')[0]?.args ?? 'null'), ['run'], 'exec-form CMD');
    const labels = all(RUNTIME, 'LABEL').map((l) => l.args).join(' ');
    for (const k of ['title', 'description', 'licenses', 'version', 'revision', 'source']) assert.match(labels, new RegExp(`org\\.opencontainers\\.image\\.${k}=`), `OCI label ${k}`);
  });

  it('.dockerignore keeps node_modules, dist and tests out of the build context', () => {
    const ignore = readFileSync(join(REPO, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    assert.equal(ignore[0], '*', 'deny by default');
    const allowed = ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, ''));
    for (const s of PARSED.stages) {
      for (const c of all(s, 'COPY').filter((x) => !x.args.startsWith('--from='))) {
        for (const src of c.args.split(/\s+/).slice(0, -1)) assert.ok(allowed.includes(src.replace(/\/$/, '')), `COPY ${src} is in the context`);
      }
    }
    assert.ok(!allowed.includes('node_modules') && !allowed.includes('dist') && !allowed.includes('test'));
  });
});

/** Replays the runtime stage into `root` (an empty directory standing for the image's filesystem). */
async function replayRuntimeStage(root: string): Promise<{ env: Record<string, string>; user: string; argv: string[] }> {
  const buildWorkdir = all(BUILD, 'WORKDIR').at(-1)?.args ?? '/';
  const env: Record<string, string> = {};
  let cwd = root;
  let entrypoint: string[] = [];
  let cmd: string[] = [];
  let user = '0';
  const inRoot = (p: string): string => (isAbsolute(p) ? join(root, p) : join(cwd, p));
  for (const ins of RUNTIME.instructions) {
    switch (ins.keyword) {
      case 'ARG':
      case 'LABEL':
      case 'EXPOSE':
        break;
      case 'ENV': {
        const m = /^(\w+)=(\S+)$/.exec(ins.args);
        assert.ok(m !== null, `Dockerfile:${ins.line}: ENV key=value`);
        env[m[1] as string] = m[2] as string;
        break;
      }
      case 'WORKDIR':
        cwd = inRoot(ins.args);
        mkdirSync(cwd, { recursive: true });
        break;
      case 'USER':
        user = ins.args;
        break;
      case 'ENTRYPOINT':
        entrypoint = jsonArray(ins.args);
        break;
      case 'CMD':
        cmd = jsonArray(ins.args);
        break;
      case 'COPY': {
        const parts = ins.args.split(/\s+/);
        const fromBuild = parts[0] === '--from=build';
        const paths = fromBuild ? parts.slice(1) : parts;
        const dest = paths.pop() as string;
        for (const src of paths) {
          // The build stage ran `npm run build` in its WORKDIR on this repository, as `npm test` did here.
          const from = fromBuild ? join(REPO, src.replace(new RegExp(`^${buildWorkdir}/?`), '')) : join(REPO, src);
          const to = dest.endsWith('/') ? join(inRoot(dest), basename(src)) : inRoot(dest);
          mkdirSync(dirname(to), { recursive: true });
          // .dockerignore keeps src/**/*.test.ts out of the build context, so the build stage has no compiled tests.
          cpSync(from, to, { recursive: true, filter: (f) => !/\.test\.js(\.map)?$/.test(f) });
        }
        break;
      }
      case 'RUN':
        for (const command of ins.args.split('&&').map((c) => c.trim())) {
          const words = command.split(/\s+/);
          if (words[0] === 'npm' && words[1] === 'ci') {
            // --prefer-offline: npm's own cache may answer (the image build would fetch the same tarballs).
            // No HOME: npm then finds the user's home from the password database and uses its usual
            // configuration and cache, as the ordinary client set up on this machine.
            await run('npm', [...words.slice(1), '--prefer-offline', '--no-audit', '--no-fund'], { cwd, env: { ...env, PATH: nodePath() }, timeout: 300_000 });
          } else if (words[0] === 'npm' && words[1] === 'cache' && words[2] === 'clean') {
            // Only trims the image layer; here it would empty the developer's npm cache.
          } else if (words[0] === 'chmod' && words.length === 3) {
            chmodSync(inRoot(words[2] as string), parseInt(words[1] as string, 8));
          } else if (words[0] === 'ln' && words[1] === '-s' && words.length === 4) {
            mkdirSync(dirname(inRoot(words[3] as string)), { recursive: true });
            symlinkSync(inRoot(words[2] as string), inRoot(words[3] as string));
          } else if (words[0] === 'mkdir') {
            for (const d of words.slice(1).filter((w) => !w.startsWith('-'))) mkdirSync(inRoot(d), { recursive: true });
          } else {
            assert.fail(`Dockerfile:${ins.line}: this test cannot replay "${command}"; teach replayRuntimeStage or simplify the RUN`);
          }
        }
        break;
      default:
        assert.fail(`Dockerfile:${ins.line}: this test cannot replay ${ins.keyword}`);
    }
  }
  return { env, user, argv: [...entrypoint, ...cmd] };
}

const nodePath = (): string => `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`;

describe('image layout: the runtime stage replayed into a temporary root', () => {
  let root: string;
  let image: { env: Record<string, string>; user: string; argv: string[] };
  let upstream: Fixture;
  const children: ChildProcess[] = [];

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'keepalive-sidecar-image-'));
    chmodSync(root, 0o755); // the image user must be able to reach /app
    image = await replayRuntimeStage(root);
    upstream = await echoServer();
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await upstream?.close();
    if (root !== undefined) rmSync(root, { recursive: true, force: true });
  });

  /** Environment and identity the container would have; on a root test host the image's UID/GID are used. */
  function containerOptions(extraEnv: Record<string, string>): { env: Record<string, string>; uid?: number; gid?: number; cwd: string } {
    const [uid, gid] = image.user.split(':').map(Number);
    const asImageUser = typeof process.getuid === 'function' && process.getuid() === 0;
    return {
      env: { ...image.env, PATH: `${join(root, 'usr/local/bin')}:${nodePath()}`, ...extraEnv },
      ...(asImageUser ? { uid: uid as number, gid: gid as number } : {}),
      cwd: join(root, 'app'),
    };
  }

  it('holds production dependencies only, the bundled CLI (dist/bundle) and config/', () => {
    const modules = join(root, 'app/node_modules');
    for (const dep of Object.keys(PKG.dependencies)) assert.ok(existsSync(join(modules, dep)), `dependency ${dep}`);
    for (const dev of Object.keys(PKG.devDependencies)) assert.ok(!existsSync(join(modules, dev)), `no dev dependency ${dev}`);
    assert.ok(existsSync(join(root, 'app/dist/bundle/bin.js')));
    assert.ok(!existsSync(join(root, 'app/dist/src')), 'the bundle, not the unbundled modules');
    assert.ok(existsSync(join(root, 'app/config/example.yaml')));
    assert.ok(!existsSync(join(root, 'app/dist/test')), 'no tests in the image');
    assert.deepEqual(image.argv, ['keepalive-sidecar', 'run']);
  });

  it('`keepalive-sidecar --version` prints the package version', async () => {
    const entry = image.argv[0] as string;
    const { stdout } = await run(entry, ['--version'], { ...containerOptions({}), timeout: 30_000 });
    assert.equal(stdout.trim(), PKG.version);
  });

  it('`keepalive-sidecar run` proxies TCP to a local upstream, serves /ready and /metrics, and drains on SIGTERM', async () => {
    const [entry, ...args] = image.argv as [string, ...string[]];
    const child = spawn(entry, args, {
      ...containerOptions({
        SIDECAR_UPSTREAM: `127.0.0.1:${upstream.port}`,
        SIDECAR_LISTEN: '127.0.0.1:0',
        SIDECAR_ADMIN_PORT: '0',
        SIDECAR_DEBUG_PORT: '0',
        SIDECAR_DRAIN_TIMEOUT_MS: '2000',
      }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = once(child, 'exit');
    const lines: Array<Record<string, unknown>> = [];
    const waiters: Array<{ msg: string; resolve: (l: Record<string, unknown>) => void }> = [];
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (text) => {
      const line = JSON.parse(text) as Record<string, unknown>;
      lines.push(line);
      for (const w of waiters.filter((x) => x.msg === line.msg)) w.resolve(line);
    });
    const logLine = (msg: string): Promise<Record<string, unknown>> => {
      const seen = lines.find((l) => l.msg === msg);
      if (seen !== undefined) return Promise.resolve(seen);
      return Promise.race([
        new Promise<Record<string, unknown>>((resolve) => waiters.push({ msg, resolve })),
        exited.then(([code]) => assert.fail(`exited (${String(code)}) before logging "${msg}": ${stderr}`)),
      ]);
    };

    const listening = await logLine('route listening');
    const port = Number(/:(\d+)$/.exec(String(listening.listen))?.[1]);
    assert.ok(port > 0, `listen: ${String(listening.listen)}`);
    const admin = await logLine('admin listening');
    const adminUrl = String(admin.admin);

    const client = net.connect({ port, host: '127.0.0.1' });
    client.on('error', () => {});
    await once(client, 'connect');
    client.write('hello through the image\n');
    let echoed = '';
    for await (const chunk of client) {
      echoed += (chunk as Buffer).toString();
      if (echoed.includes('\n')) break;
    }
    assert.equal(echoed, 'hello through the image\n');
    client.destroy();

    assert.equal((await fetch(`${adminUrl}/ready`)).status, 200);
    const metrics = await (await fetch(`${adminUrl}/metrics`)).text();
    assert.match(metrics, /^keepalive_sidecar_upstream_connections_opened_total\{route="default"\} 1$/m);
    assert.match(metrics, new RegExp(`^keepalive_sidecar_build_info\\{version="${PKG.version.replace(/\./g, '\\.')}"`, 'm'));

    child.kill('SIGTERM');
    const [code] = await exited;
    assert.equal(code, 0, stderr);
    assert.ok(lines.some((l) => l.msg === 'stopped'), 'logged "stopped" after draining');
  });
});
