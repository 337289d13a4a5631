/**
 * The bundled CLI (dist/bundle/bin.js, scripts/bundle.mjs): what `npm start`, the package's bin and the image
 * run. The other tests import dist/src; this one runs the bundle end to end: --version, a config error, a tcp
 * route and an http route (undici loaded from node_modules by its lazy chunk) to local upstreams, /metrics,
 * and the SIGTERM drain; an h2 route, `doctor` and `inject`, each of which loads its own lazy chunk; and a
 * static check that every chunk any bundle file imports (statically or by `import()`) is on disk.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { BUNDLE_BIN, spawnCli } from '../helpers/sidecar-process.js';
import { connectClient, readUntil } from '../helpers/sidecar.js';

const run = promisify(execFile);
const K8S = new URL('../../../test/fixtures/k8s/', import.meta.url);

/** One h2 request through `port`; resolves with the status and the body. */
function h2Request(port: number, method: string, path: string, body?: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const timer = setTimeout(() => session.destroy(new Error('h2 request timed out')), 5000);
    const req = session.request({ ':method': method, ':path': path });
    let status = 0;
    let text = '';
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      clearTimeout(timer);
      session.close();
      resolve({ status, body: text });
    });
    req.on('error', reject);
    req.end(body);
  });
}

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
  let h2up: http2.Http2Server;
  before(async () => {
    echo = net.createServer((s) => s.pipe(s));
    web = http.createServer((req, res) => res.end(`hello ${req.url}`));
    h2up = http2.createServer();
    h2up.on('stream', (stream, headers) => {
      let n = 0;
      stream.on('data', (c: Buffer) => (n += c.length));
      stream.on('end', () => {
        stream.respond({ ':status': 200 });
        stream.end(`h2 ${headers[':method']} ${headers[':path']} ${n}`);
      });
    });
    await Promise.all([echo, web, h2up].map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', r))));
  });
  after(() => {
    echo.close();
    web.close();
    h2up.close();
  });

  it('every chunk a bundle file imports (static or dynamic) exists, and the lazy parts are chunks of their own', () => {
    const dir = dirname(BUNDLE_BIN);
    const files = readdirSync(dir).filter((f) => f.endsWith('.js'));
    let imports = 0;
    for (const f of files) {
      const text = readFileSync(join(dir, f), 'utf8');
      for (const m of text.matchAll(/(?:from\s*|import\s*\(\s*|import\s*)["'](\.\/[^"']+)["']/g)) {
        imports++;
        assert.ok(existsSync(join(dir, m[1]!)), `${f} imports ${m[1]}, which is not in dist/bundle`);
      }
    }
    assert.ok(imports > 0, 'the import scan found no relative imports at all: the regexp no longer matches esbuild output');
    for (const lazy of ['h2', 'h2-pool', 'doctor', 'inject', 'h1-driver']) {
      assert.ok(files.some((f) => new RegExp(`^${lazy}-[A-Z0-9]+\\.js$`).test(f)), `no lazy chunk for ${lazy} in ${files.join(' ')}`);
    }
  });

  it('inject (its own chunk, yaml from node_modules) prints the golden manifest', async () => {
    const input = new URL('deployment.yaml', K8S).pathname;
    const route = 'name=pg,mode=tcp,listen=15432,upstream=postgres.db.svc:5432';
    const { stdout } = await run(process.execPath, [BUNDLE_BIN, 'inject', input, '--route', route, '--image', 'keepalive-sidecar:test']);
    assert.equal(stdout, readFileSync(new URL('deployment.injected.yaml', K8S), 'utf8'));
  });

  it('--version prints the package version; a bad config exits 3 listing the problem', async () => {
    const { stdout } = await run(process.execPath, [BUNDLE_BIN, '--version']);
    assert.match(stdout.trim(), /^\d+\.\d+\.\d+/);
    const bad = spawnCli(['run'], { SIDECAR_UPSTREAM: '127.0.0.1:1', SIDECAR_ADMIN_PORT: 'abc' }, [], BUNDLE_BIN);
    assert.equal(await bad.exit, 3);
    assert.match(bad.stderr, /admin\.port/);
  });

  it('serves a tcp, an http and an h2 route, /metrics, doctor against it, and drains on SIGTERM', async () => {
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
          { name: 'g', mode: 'h2', listen: { host: '127.0.0.1', port: 0 }, upstream: { host: '127.0.0.1', port: up(h2up) } },
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
      const h2Port = await portOf('g');
      const admin = await p.waitLine((x) => x.msg === 'admin listening');
      const adminPort = Number(String(admin.admin).split(':').pop());

      // The h2 route: its listener and pool are lazy chunks of their own.
      assert.deepEqual(await h2Request(h2Port, 'GET', '/g'), { status: 200, body: 'h2 GET /g 0' });
      assert.deepEqual(await h2Request(h2Port, 'POST', '/p', Buffer.alloc(100_000, 1)), { status: 200, body: 'h2 POST /p 100000' });
      // doctor (its own chunk) against this very process: exit 0 and the routes it found.
      const dr = await run(process.execPath, [BUNDLE_BIN, 'doctor', '--config', file, '--admin-url', String(admin.admin), '--debug-url', String(admin.debug)]);
      assert.match(dr.stdout, /route "g"/);
      assert.match(dr.stdout, /no problems found/);

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
