/**
 * HTTP drain keeps its timeout (issue 11, point 1), on a real sidecar process and real signals: the timer
 * starts at the signal, idle app keep-alive connections are closed at once, a response finished during the
 * drain carries `Connection: close`, what is still in flight at the timeout is reset, and the process exits 0
 * within drainTimeoutMs + 1 s even when the upstream never answers. SIGHUP is logged and ignored.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { spawnSidecar } from '../helpers/sidecar-process.js';
import type { SidecarProcess } from '../helpers/sidecar-process.js';

interface Upstream {
  readonly port: number;
  /** Requests seen per path. */
  readonly seen: Map<string, number>;
  /** Answers every held /during request. */
  releaseDuring(): void;
  close(): Promise<void>;
}

/** /fast answers at once; /slow after 20 s; /never never; /during when releaseDuring() is called. */
async function upstream(): Promise<Upstream> {
  const seen = new Map<string, number>();
  const held: http.ServerResponse[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const server = http.createServer((req, res) => {
    const path = req.url ?? '';
    seen.set(path, (seen.get(path) ?? 0) + 1);
    const body = `body of ${path} `.repeat(200);
    if (path === '/fast') res.end(body);
    else if (path === '/slow') {
      const t = setTimeout(() => res.end(body), 20_000);
      timers.add(t);
      res.on('close', () => clearTimeout(t));
    } else if (path === '/during') held.push(res);
    else if (path === '/streaming') {
      // The head and half the body go out at once; the rest when releaseDuring() is called.
      res.writeHead(200, { 'content-length': String(2 * 4096) });
      res.write('a'.repeat(4096));
      held.push(res);
    }
    // '/never': no answer at all.
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    releaseDuring: () => {
      for (const r of held.splice(0)) r.end(r.headersSent ? 'b'.repeat(4096) : `body of /during `.repeat(200));
    },
    close: async () => {
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections();
      server.close();
    },
  };
}

function config(upstreamPort: number, drainTimeoutMs: number): unknown {
  return {
    admin: { port: 0 },
    debug: { port: 0 },
    log: { level: 'info' },
    shutdown: { drainTimeoutMs },
    routes: [{ name: 'h1', mode: 'http', listen: { port: 0 }, upstream: { host: '127.0.0.1', port: upstreamPort } }],
  };
}

interface Answer {
  status?: number;
  body?: string;
  headers?: http.IncomingHttpHeaders;
  err?: NodeJS.ErrnoException;
  at: number;
}

function get(port: number, path: string, agent: http.Agent | false): Promise<Answer> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body, headers: res.headers, at: performance.now() }));
      res.on('error', (err: NodeJS.ErrnoException) => resolve({ err, at: performance.now() }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ err, at: performance.now() }));
  });
}

async function waitSeen(up: Upstream, path: string, n: number): Promise<void> {
  while ((up.seen.get(path) ?? 0) < n) await new Promise((r) => setImmediate(r));
}

describe('http drain', () => {
  const procs: SidecarProcess[] = [];
  const ups: Upstream[] = [];
  after(async () => {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    for (const u of ups) await u.close();
  });

  it('SIGTERM exits 0 within drainTimeoutMs + 1 s: idle keep-alive app connections closed at once, in-flight ones reset, a response finished during the drain carries Connection: close, earlier ones intact', async () => {
    const DRAIN_MS = 2000;
    const up = await upstream();
    ups.push(up);
    const p = spawnSidecar(config(up.port, DRAIN_MS));
    procs.push(p);
    const port = await p.routePort();

    // 50 idle keep-alive app connections, each having finished one request.
    const idleAgent = new http.Agent({ keepAlive: true, maxSockets: 50 });
    const sockets = new Set<Socket>();
    idleAgent.on('free', (s: Socket) => sockets.add(s));
    const before = await Promise.all(Array.from({ length: 50 }, () => get(port, '/fast', idleAgent)));
    for (const a of before) {
      assert.equal(a.status, 200, a.err?.message);
      assert.equal(a.body, 'body of /fast '.repeat(200));
    }
    assert.equal(sockets.size, 50);
    const idleClosedAt: number[] = [];
    for (const s of sockets) s.once('close', () => idleClosedAt.push(performance.now()));

    // 10 requests the upstream answers only after 20 s, one it answers during the drain.
    const slowAgent = new http.Agent({ keepAlive: true, maxSockets: 20 });
    const slow = Array.from({ length: 10 }, () => get(port, '/slow', slowAgent));
    const during = get(port, '/during', slowAgent);
    await waitSeen(up, '/slow', 10);
    await waitSeen(up, '/during', 1);

    const t0 = performance.now();
    p.child.kill('SIGTERM');
    await p.waitLine((l) => l.msg === 'shutting down: draining connections');
    up.releaseDuring();
    const d = await during;
    assert.equal(d.status, 200, d.err?.message);
    assert.equal(d.headers?.connection, 'close');
    assert.equal(d.body, 'body of /during '.repeat(200));

    const code = await p.exit;
    const exitMs = performance.now() - t0;
    assert.equal(code, 0);
    assert.ok(exitMs < DRAIN_MS + 1000, `exited ${Math.round(exitMs)} ms after SIGTERM`);
    assert.ok(exitMs >= DRAIN_MS - 100, `exited ${Math.round(exitMs)} ms after SIGTERM, before the drain window ended`);

    const slowAnswers = await Promise.all(slow);
    for (const a of slowAnswers) {
      assert.equal(a.status, undefined, `a request in flight got status ${a.status}`);
      assert.ok(['ECONNRESET'].includes(a.err?.code ?? ''), `${a.err?.code} ${a.err?.message}`);
      assert.ok(a.at - t0 < DRAIN_MS + 1000);
    }
    assert.equal(idleClosedAt.length, 50);
    const lastIdle = Math.max(...idleClosedAt) - t0;
    assert.ok(lastIdle < 500, `idle keep-alive connections closed ${Math.round(lastIdle)} ms after SIGTERM`);
    assert.equal(p.lines.find((l) => l.msg === 'stopped')?.outcome, 'forced');
    assert.ok(p.lines.some((l) => l.msg === 'upstream connection closed' && l.reason === 'local_shutdown'));
    console.log(`drain: exit ${Math.round(exitMs)} ms after SIGTERM, idle connections closed within ${Math.round(lastIdle)} ms`);
    idleAgent.destroy();
    slowAgent.destroy();
  });

  it('a response whose head was already out at SIGTERM finishes intact, then its connection closes; all done → exits at once ("drained")', async () => {
    const DRAIN_MS = 5000;
    const up = await upstream();
    ups.push(up);
    const p = spawnSidecar(config(up.port, DRAIN_MS));
    procs.push(p);
    const port = await p.routePort();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let sock: Socket | undefined;
    const headArrived = new Promise<void>((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/streaming', agent }, (res) => {
        sock = res.socket;
        resolve();
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => bodyDone(body));
      });
      req.on('error', () => bodyDone(''));
    });
    let bodyDone: (b: string) => void = () => undefined;
    const body = new Promise<string>((resolve) => (bodyDone = resolve));
    await headArrived;
    const sockClosed = once(sock!, 'close');
    const t0 = performance.now();
    p.child.kill('SIGTERM');
    await p.waitLine((l) => l.msg === 'shutting down: draining connections');
    up.releaseDuring();
    assert.equal(await body, 'a'.repeat(4096) + 'b'.repeat(4096));
    await sockClosed;
    assert.equal(await p.exit, 0);
    const exitMs = performance.now() - t0;
    assert.ok(exitMs < DRAIN_MS / 2, `exited ${Math.round(exitMs)} ms after SIGTERM`);
    assert.equal(p.lines.find((l) => l.msg === 'stopped')?.outcome, 'drained');
    agent.destroy();
  });

  it('SIGTERM with an upstream that never answers (responseTimeoutMs 0) still exits 0 within drainTimeoutMs + 1 s', async () => {
    const DRAIN_MS = 1000;
    const up = await upstream();
    ups.push(up);
    const p = spawnSidecar(config(up.port, DRAIN_MS));
    procs.push(p);
    const port = await p.routePort();
    const never = get(port, '/never', false);
    await waitSeen(up, '/never', 1);
    const t0 = performance.now();
    p.child.kill('SIGTERM');
    assert.equal(await p.exit, 0);
    const exitMs = performance.now() - t0;
    assert.ok(exitMs < DRAIN_MS + 1000, `exited ${Math.round(exitMs)} ms after SIGTERM`);
    const a = await never;
    assert.equal(a.err?.code, 'ECONNRESET');
  });

  it('SIGHUP is logged and ignored: the process keeps serving; a second SIGTERM during the drain is logged, not fatal', async () => {
    const up = await upstream();
    ups.push(up);
    const p = spawnSidecar(config(up.port, 1000));
    procs.push(p);
    const port = await p.routePort();
    p.child.kill('SIGHUP');
    await p.waitLine((l) => l.signal === 'SIGHUP' && typeof l.msg === 'string' && l.msg.includes('SIGHUP ignored'));
    const a = await get(port, '/fast', false);
    assert.equal(a.status, 200, a.err?.message);
    assert.equal(p.child.exitCode, null);
    const never = get(port, '/never', false);
    await waitSeen(up, '/never', 1);
    p.child.kill('SIGTERM');
    await p.waitLine((l) => l.msg === 'shutting down: draining connections');
    p.child.kill('SIGTERM');
    await p.waitLine((l) => l.msg === 'signal ignored: already draining');
    assert.equal(await p.exit, 0);
    await never;
  });
});
