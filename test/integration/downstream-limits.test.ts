/**
 * Resource exhaustion is visible (issue 11, point 10): an http route caps its app connections
 * (http.maxDownstreamConnections: over it → reset, counted as downstream_rejected_total{reason="overflow"},
 * one rate-limited warn), and at a real low fd limit (prlimit) the fd reserve keeps /live answering while the
 * app connections past the budget are refused and counted (reason="fd_reserve").
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { httpUpstream } from '../fixtures/http-upstreams.js';
import type { HttpFixture } from '../fixtures/http-upstreams.js';
import { valueOf } from '../helpers/scrape.js';
import { httpRoute, metricValue, startTestSidecar, waitFor } from '../helpers/sidecar.js';
import { spawnSidecar } from '../helpers/sidecar-process.js';
import type { SidecarProcess } from '../helpers/sidecar-process.js';

interface Conn {
  s: net.Socket;
  closed: Promise<string | undefined>;
}

async function openConn(port: number): Promise<Conn> {
  const s = net.connect(port, '127.0.0.1');
  let code: string | undefined;
  s.on('error', (e: NodeJS.ErrnoException) => (code = e.code));
  const closed = new Promise<string | undefined>((resolve) => s.once('close', () => resolve(code)));
  // A refused connection may be reset before the client even sees 'connect'.
  await new Promise<void>((resolve) => {
    s.once('connect', resolve);
    s.once('close', () => resolve());
  });
  return { s, closed };
}

/** One GET on an open raw connection; resolves with the status line, or undefined when it closed first. */
function getOn(c: Conn, path: string): Promise<string | undefined> {
  if (c.s.destroyed) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    let got = '';
    const onData = (d: Buffer): void => {
      got += d.toString();
      if (got.includes('\r\n\r\n')) {
        c.s.off('data', onData);
        resolve(got.split('\r\n')[0]);
      }
    };
    c.s.on('data', onData);
    c.s.once('close', () => resolve(undefined));
    c.s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
  });
}

function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

describe('downstream connection limits', () => {
  const ups: HttpFixture[] = [];
  const procs: SidecarProcess[] = [];
  after(async () => {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    for (const u of ups) await u.close();
  });

  it('http.maxDownstreamConnections: connections over the cap are reset, counted as overflow and logged once per second', async () => {
    const up = await httpUpstream((_req, res) => res.end('ok'));
    ups.push(up);
    const sc = await startTestSidecar({ routes: [httpRoute(up.port, { http: { maxDownstreamConnections: 5 } })] });
    try {
      assert.equal(await metricValue(sc, 'keepalive_sidecar_downstream_rejected_total', { route: 'h1', reason: 'overflow' }), 0);
      const conns: Conn[] = [];
      for (let i = 0; i < 8; i++) conns.push(await openConn(sc.port()));
      const extra = conns.slice(5);
      for (const c of extra) assert.equal(await c.closed, 'ECONNRESET');
      for (const c of conns.slice(0, 5)) assert.match((await getOn(c, '/x')) ?? 'closed', /^HTTP\/1\.1 200/);
      assert.equal(await metricValue(sc, 'keepalive_sidecar_downstream_rejected_total', { route: 'h1', reason: 'overflow' }), 3);
      const warns = sc.logs.filter((l) => l.msg === 'app connections refused');
      assert.equal(warns.length, 1, 'three refusals within a second make one warn line');
      assert.deepEqual(warns[0]?.rejected, { overflow: 1 });
      for (const c of conns) c.s.destroy();
    } finally {
      await sc.stop();
    }
  });

  it('at a real low fd limit (prlimit --nofile=200) /live keeps answering; app connections past the fd budget are refused and counted', async () => {
    const up = await httpUpstream((_req, res) => res.end('ok'));
    ups.push(up);
    const p = spawnSidecar(
      {
        admin: { port: 0 },
        debug: { port: 0 },
        log: { level: 'info' },
        routes: [{ name: 'h1', mode: 'http', listen: { port: 0 }, upstream: { host: '127.0.0.1', port: up.port } }],
      },
      ['prlimit', '--nofile=200', '--'],
    );
    procs.push(p);
    const port = await p.routePort();
    const adminUrl = String((await p.waitLine((l) => l.msg === 'admin listening')).admin);
    const budget = Number((await p.waitLine((l) => l.msg === 'fd budget')).maxAppConnections);
    assert.ok(budget > 10 && budget < 100, `budget ${budget}`);
    const conns: Conn[] = [];
    for (let i = 0; i < 300; i++) conns.push(await openConn(port));
    // Every admitted connection serves a request (each also holds one upstream fd meanwhile).
    const statuses = await Promise.all(conns.map((c) => getOn(c, '/x')));
    const served = statuses.filter((s) => s !== undefined && s.startsWith('HTTP/1.1 200')).length;
    const other = statuses.filter((s) => s !== undefined && !s.startsWith("HTTP/1.1 200")).map((s) => String(s).split("\r\n").find((l) => l.startsWith("x-sidecar-error")) ?? String(s).split("\r\n")[0]);
    const live = await httpGet(`${adminUrl}/live`);
    assert.equal(live.status, 200);
    const metrics = await httpGet(`${adminUrl}/metrics`);
    assert.equal(metrics.status, 200);
    const refused = valueOf(metrics.body, 'keepalive_sidecar_downstream_rejected_total', { route: 'h1', reason: 'fd_reserve' });
    // Every admitted connection is served, give or take the few whose upstream connect meets the fd limit under
    // a loaded box (seen once in CI: 42 of 57); the bound under test is /live and the counted refusals.
    assert.ok(served >= Math.floor(budget * 0.7), `${served} of ${budget} served; others: ${JSON.stringify(other.slice(0, 5))} (${other.length})`);
    assert.equal(refused, 300 - budget);
    await waitFor(() => p.lines.some((l) => l.msg === 'app connections refused'), 2000, 'a refusal warn line');
    console.log(`nofile 200: budget ${budget} app connections, ${served} served, ${refused} refused (fd_reserve), /live 200`);
    for (const c of conns) c.s.destroy();
    p.child.kill('SIGTERM');
    assert.equal(await p.exit, 0);
  });
});
