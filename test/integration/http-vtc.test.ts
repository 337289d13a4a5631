/**
 * HTTP mode against varnishtest (issue: third-party protocol audit). Each test/fixtures/vtc/*.vtc is one
 * script: `s1` is the upstream (varnishtest's server, on a port only varnishtest knows), `c1` talks to the
 * sidecar (`${sidecar_port}`). The sidecar runs in this process, started before varnishtest, so its port is
 * passed in with -D; its upstream is a byte relay here that learns s1's port from a file the script writes
 * first (`shell {echo ${s1_port} > ${portfile}}`), so neither side needs a fixed port. The relay is a plain
 * pipe (FIN and RST passed on), one relay connection per sidecar connection: what s1 sees of connection reuse
 * is what the sidecar does.
 *
 * A script may start with `#route {json}`: extra keys merged into the route config.
 * Under CI=true a missing varnishtest fails (never skips); locally the suite skips with a visible message.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, it } from 'node:test';
import type { CloseInfo } from '../../src/pool/index.js';
import { httpRoute, startTestSidecar } from '../helpers/sidecar.js';

const VTC_DIR = resolve(import.meta.dirname, '../../../test/fixtures/vtc');

function varnishtestMissing(): string | undefined {
  try {
    execFileSync('varnishtest', [], { stdio: 'ignore' });
  } catch (err) {
    // varnishtest without a file prints its usage and exits non-zero; only ENOENT means it is missing.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'varnishtest not found (apt package varnish)';
  }
  return undefined;
}

/** A byte relay to the port written in `portfile` (read per connection, polled up to 5 s). */
async function relay(portfile: string): Promise<{ port: number; close: () => Promise<void> }> {
  const socks = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (down) => {
    socks.add(down);
    down.on('close', () => socks.delete(down));
    down.on('error', () => {});
    down.pause();
    const until = performance.now() + 5000;
    const dial = (): void => {
      let port = NaN;
      try {
        port = Number(readFileSync(portfile, 'utf8').trim());
      } catch {
        // not written yet
      }
      if (!(port > 0)) {
        if (performance.now() > until || down.destroyed) return void down.destroy();
        return void setTimeout(dial, 10);
      }
      const up = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      socks.add(up);
      up.on('close', () => socks.delete(up));
      // A reset on one side becomes a reset on the other; a FIN a FIN.
      up.on('error', () => down.resetAndDestroy());
      down.on('error', () => up.resetAndDestroy());
      up.on('connect', () => {
        down.pipe(up);
        up.pipe(down);
        down.resume();
      });
    };
    dial();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    async close() {
      for (const s of socks) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

function runVarnishtest(file: string, macros: Record<string, string>): Promise<{ code: number; out: string }> {
  const args = ['-t', '30', '-v', ...Object.entries(macros).flatMap(([k, v]) => ['-D', `${k}=${v}`]), file];
  return new Promise((res) => {
    execFile('varnishtest', args, { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      res({ code, out: `${stdout}${stderr}` });
    });
  });
}

/** The last lines of a varnishtest log, where the failing expectation is. */
function tail(out: string, n = 60): string {
  return out.split('\n').slice(-n).join('\n');
}

const missing = varnishtestMissing();
if (missing !== undefined && process.env.CI === 'true') throw new Error(`CI=true and the varnishtest suite cannot run: ${missing}`);

describe('http mode under varnishtest', { skip: missing }, () => {
  const files = readdirSync(VTC_DIR).filter((f) => f.endsWith('.vtc')).sort();
  const only = process.env.VTC_ONLY;
  const work = mkdtempSync(join(tmpdir(), 'sidecar-vtc-'));
  after(() => rmSync(work, { recursive: true, force: true }));
  it('has scripts', () => assert.ok(files.length > 0, `no .vtc in ${VTC_DIR}`));
  for (const f of files) {
    if (only !== undefined && !f.includes(only)) continue;
    it(f.replace(/\.vtc$/, ''), async () => {
      const path = join(VTC_DIR, f);
      const first = readFileSync(path, 'utf8').split('\n').find((l) => l.startsWith('#route '));
      const extra = first === undefined ? {} : (JSON.parse(first.slice(7)) as Record<string, unknown>);
      const portfile = join(work, `${f}.port`);
      rmSync(portfile, { force: true });
      const r = await relay(portfile);
      const sc = await startTestSidecar({ routes: [httpRoute(r.port, extra)] });
      const closes: CloseInfo[] = [];
      sc.sidecar.routes[0]!.pool.on('closed', (_c, info) => closes.push(info));
      try {
        const { code, out } = await runVarnishtest(path, { sidecar_port: String(sc.port()), portfile });
        assert.equal(code, 0, `varnishtest ${f} failed:\n${tail(out)}\nupstream closes: ${JSON.stringify(closes.map((c) => c.reason))}`);
      } finally {
        await sc.stop();
        await r.close();
      }
    });
  }
});
