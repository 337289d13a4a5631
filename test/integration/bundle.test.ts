/**
 * The bundled CLI (dist/bundle/bin.js, scripts/bundle.mjs): what `npm start`, the package's bin and the image
 * run. The other tests import dist/src; this one runs the bundle end to end: --version, a config error, a tcp
 * route and an http route (undici loaded from node_modules by its lazy chunk) to local upstreams, /metrics,
 * and the SIGTERM drain.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { BUNDLE_BIN, spawnCli } from '../helpers/sidecar-process.js';
import { connectClient, readUntil } from '../helpers/sidecar.js';

const run = promisify(execFile);

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

describe('bundled CLI (dist/bundle/bin.js)', () => {
  let echo: net.Server;
  let web: http.Server;
  before(async () => {
    echo = net.createServer((s) => s.pipe(s));
    web = http.createServer((req, res) => res.end(`hello ${req.url}`));
    await Promise.all([new Promise<void>((r) => echo.listen(0, '127.0.0.1', r)), new Promise<void>((r) => web.listen(0, '127.0.0.1', r))]);
  });
  after(() => {
    echo.close();
    web.close();
  });

  it('--version prints the package version; a bad config exits 3 listing the problem', async () => {
    const { stdout } = await run(process.execPath, [BUNDLE_BIN, '--version']);
    assert.match(stdout.trim(), /^\d+\.\d+\.\d+/);
    const bad = spawnCli(['run'], { SIDECAR_UPSTREAM: '127.0.0.1:1', SIDECAR_ADMIN_PORT: 'abc' }, [], BUNDLE_BIN);
    assert.equal(await bad.exit, 3);
    assert.match(bad.stderr, /admin\.port/);
  });

  it('serves a tcp and an http route, /metrics, and drains on SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ks-bundle-'));
    const file = join(dir, 'config.json');
    const up = (s: net.Server | http.Server): number => (s.address() as net.AddressInfo).port;
    writeFileSync(
      file,
      JSON.stringify({
        admin: { host: '127.0.0.1', port: 0 },
        debug: { port: 0 },
        routes: [
          { name: 't', mode: 'tcp', listen: { host: '127.0.0.1', port: 0 }, upstream: { host: '127.0.0.1', port: up(echo) } },
          { name: 'h', mode: 'http', listen: { host: '127.0.0.1', port: 0 }, upstream: { host: '127.0.0.1', port: up(web) } },
        ],
      }),
    );
    const p = spawnCli(['run', '--config', file], {}, [], BUNDLE_BIN);
    try {
      const portOf = async (route: string): Promise<number> => {
        const l = await p.waitLine((x) => x.msg === 'route listening' && x.route === route);
        return Number(String(l.listen).split(':').pop());
      };
      const tcpPort = await portOf('t');
      const httpPort = await portOf('h');
      const admin = await p.waitLine((x) => x.msg === 'admin listening');
      const adminPort = Number(String(admin.admin).split(':').pop());

      const c = await connectClient(tcpPort);
      c.write('ping through the bundle');
      assert.match(await readUntil(c, 'bundle'), /ping through the bundle/);
      c.destroy();

      for (let i = 0; i < 3; i++) assert.deepEqual(await get(httpPort, `/x${i}`), { status: 200, body: `hello /x${i}` });
      const metrics = await get(adminPort, '/metrics');
      assert.equal(metrics.status, 200);
      assert.match(metrics.body, /nodejs_eventloop_lag_seconds/);
      assert.match(metrics.body, /process_cpu_user_seconds_total/);

      p.child.kill('SIGTERM');
      assert.equal(await p.exit, 0);
    } finally {
      if (p.child.exitCode === null && p.child.signalCode === null) {
        p.child.kill('SIGKILL');
        await p.exit;
      }
    }
  });
});
