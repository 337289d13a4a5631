/**
 * The pool as policy over UpstreamConn objects, on real loopback sockets with a fake Clock: limits, the
 * pending queue (FIFO, abort, pendingTimeoutMs), timers cleared on close, and the HTTP/1 idle reader that
 * destroys a connection receiving unsolicited bytes with protocol_error. Plus the end-to-end 503
 * pending_timeout of an http route.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { RouteConfig } from '../../src/config/index.js';
import { AcquireError } from '../../src/errors.js';
import type { CloseInfo, Lease, PoolOptions, UpstreamConn } from '../../src/pool/index.js';
import { Pool } from '../../src/pool/index.js';
import { h1DriverFactory } from '../../src/pool/h1-driver.js';
import { FakeClock } from '../../src/util/fake-clock.js';
import { httpUpstream, request } from '../fixtures/http-upstreams.js';
import type { HttpFixture } from '../fixtures/http-upstreams.js';
import { echoServer } from '../fixtures/upstreams.js';
import type { Fixture } from '../fixtures/upstreams.js';
import { configFrom, httpRoute, startTestSidecar, tcpRoute, waitFor } from '../helpers/sidecar.js';

function routeFor(port: number, extra: Record<string, unknown> = {}): RouteConfig {
  return configFrom({ routes: [tcpRoute(port, { warmSpares: 0, ...extra })] }).routes[0]!;
}

async function rejection(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof AcquireError, String(err));
    return err.reason;
  }
  assert.fail('expected a rejection');
}

function closedWith(pool: Pool): Promise<[UpstreamConn, CloseInfo]> {
  return once(pool, 'closed') as Promise<[UpstreamConn, CloseInfo]>;
}

describe('pool policy (real loopback sockets, fake clock)', () => {
  let up: Fixture;
  const pools: Pool[] = [];
  before(async () => {
    up = await echoServer();
  });
  after(async () => {
    for (const p of pools) await p.close();
    await up.close();
  });

  function pool(clock: FakeClock, extra: Record<string, unknown>, opts: PoolOptions): Pool {
    const p = new Pool(routeFor(up.port, extra), clock, opts);
    pools.push(p);
    return p;
  }

  it('limits: maxConnections in use, then maxPending waiters in FIFO order, then overflow at once', async () => {
    const clock = new FakeClock();
    const p = pool(clock, { maxConnections: 1 }, { maxPending: 2, idleTimeoutMs: 60000 });
    const a = await p.acquire();
    const order: string[] = [];
    const b = p.acquire().then((l) => (order.push('b'), l));
    const c = p.acquire().then((l) => (order.push('c'), l));
    assert.equal(p.pendingCount, 2);
    assert.equal(await rejection(p.acquire()), 'overflow');
    a.release();
    const lb = await b;
    assert.equal(lb.conn, a.conn, 'the waiter gets the released connection');
    assert.deepEqual(order, ['b']);
    lb.release();
    const lc = await c;
    assert.deepEqual(order, ['b', 'c']);
    assert.deepEqual(p.stats(), { connecting: 0, idle: 0, leased: 1, total: 1 });
    lc.destroy('downstream_closed');
  });

  it('pending timeout: a waiter fails with pending_timeout after pendingTimeoutMs, not before', async () => {
    const clock = new FakeClock();
    const p = pool(clock, { maxConnections: 1 }, { maxPending: 4, pendingTimeoutMs: 5000 });
    const a = await p.acquire();
    let settled = false;
    const b = p.acquire().finally(() => (settled = true));
    clock.advance(4999);
    await new Promise((r) => setImmediate(r));
    assert.equal(settled, false);
    clock.advance(1);
    assert.equal(await rejection(b), 'pending_timeout');
    assert.equal(p.pendingCount, 0);
    a.destroy('downstream_closed');
  });

  it('abort: an aborted waiter leaves the queue (connect_error) and the next waiter is served', async () => {
    const clock = new FakeClock();
    const p = pool(clock, { maxConnections: 1 }, { maxPending: 4, idleTimeoutMs: 60000 });
    const a = await p.acquire();
    const ac = new AbortController();
    const b = p.acquire(ac.signal);
    const c = p.acquire();
    ac.abort();
    assert.equal(await rejection(b), 'connect_error');
    assert.equal(p.pendingCount, 1);
    a.release();
    const lc = await c;
    assert.equal(lc.conn, a.conn);
    lc.destroy('downstream_closed');
  });

  it('idle and max-age timers run on the injected clock and are all cleared when the pool closes', async () => {
    const clock = new FakeClock();
    const p = pool(clock, { maxConnections: 4, maxAgeMs: 600000 }, { idleTimeoutMs: 1000 });
    const a = await p.acquire();
    const b = await p.acquire();
    a.release();
    b.release();
    assert.equal(p.stats().idle, 2);
    const closed = closedWith(p);
    clock.advance(1000);
    const [, info] = await closed;
    assert.equal(info.reason, 'idle_evicted');
    await waitFor(() => p.stats().total === 0, 5000, 'both idle connections evicted');
    const c = await p.acquire();
    c.release();
    assert.ok(clock.pendingTimers > 0);
    await p.close();
    assert.equal(clock.pendingTimers, 0, 'no timer outlives the pool');
  });

  it('HTTP/1 driver: a connection idle in the pool that receives any byte is destroyed with protocol_error', async () => {
    const clock = new FakeClock();
    const p = pool(clock, { maxConnections: 2 }, { idleTimeoutMs: 60000, driver: h1DriverFactory(`http://127.0.0.1:${up.port}`) });
    const l: Lease = await p.acquire();
    l.release();
    assert.equal(p.stats().idle, 1);
    const closed = closedWith(p);
    // The upstream speaks unasked: here the echo fixture's server side writes a byte to our idle socket.
    const server = up.sockets.find((s: net.Socket) => s.remotePort === l.conn.localPort);
    assert.ok(server !== undefined);
    server.write('x');
    const [conn, info] = await closed;
    assert.equal(conn, l.conn);
    assert.equal(info.reason, 'protocol_error');
  });

  it('checkout validation sees bytes that arrive in the validation window: that connection is never handed out', async () => {
    const clock = new FakeClock();
    const p = pool(clock, { maxConnections: 2 }, { idleTimeoutMs: 60000, driver: h1DriverFactory(`http://127.0.0.1:${up.port}`) });
    const l: Lease = await p.acquire();
    l.release();
    const server = up.sockets.find((s: net.Socket) => s.remotePort === l.conn.localPort);
    assert.ok(server !== undefined);
    const closed = closedWith(p);
    // A stale "408, connection: close" from the upstream lands in our receive buffer with no poll phase between it
    // and the checkout (the checkout runs in the timers phase; the wait makes sure the kernel has the bytes), so
    // only the poll phase inside the validation window can see it: the idle reader must still be running there.
    server.write('HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    await new Promise((r) => setTimeout(r, 0));
    const next = await p.acquire();
    const [conn, info] = await closed;
    assert.equal(conn, l.conn);
    assert.equal(info.reason, 'protocol_error');
    assert.notEqual(next.conn, l.conn, 'a fresh connection, not the one that spoke unasked');
    next.destroy('downstream_closed');
  });

  it('warm spares never starve a waiter: a freed slot goes to the queued request, and a spare that connects serves it', async () => {
    const clock = new FakeClock();
    const p = pool(clock, { maxConnections: 1, warmSpares: 1 }, { maxPending: 4, idleTimeoutMs: 60000 });
    p.start();
    await waitFor(() => p.stats().idle === 1, 5000, 'the spare is up');
    const a = await p.acquire();
    const b = p.acquire();
    assert.equal(p.pendingCount, 1);
    a.destroy('downstream_closed');
    const lb = await b;
    assert.notEqual(lb.conn, a.conn);
    assert.equal(p.pendingCount, 0);
    lb.destroy('downstream_closed');
  });
});

describe('HTTP/1 driver handover', () => {
  let up: HttpFixture;
  before(async () => {
    up = await httpUpstream((_req, res) => res.end('fine'));
  });
  after(async () => {
    await up.close();
  });

  it('a connection read by the idle reader before its first request is handed to undici intact', async () => {
    const clock = new FakeClock();
    const p = new Pool(routeFor(up.port, { maxConnections: 1 }), clock, { idleTimeoutMs: 60000, driver: h1DriverFactory(`http://127.0.0.1:${up.port}`) });
    try {
      const first = await p.acquire();
      first.release(); // released without a request (the downstream went away): idle, read by the pool reader
      await new Promise((r) => setImmediate(r));
      const l = await p.acquire();
      assert.equal(l.conn, first.conn);
      const body = await new Promise<string>((resolve, reject) => {
        let text = '';
        l.h1.dispatch(
          { path: '/', method: 'GET', headers: [], headersTimeout: 0, bodyTimeout: 0 } as never,
          {
            onConnect() {},
            onHeaders: () => true,
            onData: (c: Buffer) => ((text += c.toString()), true),
            onComplete: () => resolve(text),
            onError: reject,
          } as never,
        );
      });
      l.h1.requestEnded();
      assert.equal(body, 'fine');
      l.release();
      await new Promise((r) => setImmediate(r));
      assert.equal(p.stats().idle, 1);
    } finally {
      await p.close();
    }
  });
});

describe('http route: unsolicited bytes after a response, and the pending queue bound', () => {
  let up: HttpFixture;
  let release: (() => void) | undefined;
  before(async () => {
    up = await httpUpstream((req, res) => {
      if (req.url === '/hold') {
        release = () => res.end('held');
        return;
      }
      if (req.url === '/garbage') {
        // A complete keep-alive response, then bytes nobody asked for on the same connection.
        res.end('ok', () => setImmediate(() => req.socket.write('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n')));
        return;
      }
      res.end('ok');
    });
  });
  after(async () => {
    await up.close();
  });

  it('a connection that received bytes while idle (undici owns it) closes with protocol_error and is not reused', async () => {
    const sc = await startTestSidecar({ routes: [httpRoute(up.port)] });
    try {
      const reasons: string[] = [];
      sc.sidecar.routes[0]!.pool.on('closed', (_c, info) => reasons.push(info.reason));
      const r = await request(sc.port(), { path: '/garbage' });
      assert.equal(r.status, 200);
      await waitFor(() => reasons.length === 1, 5000, 'the upstream connection to close');
      assert.deepEqual(reasons, ['protocol_error']);
      const r2 = await request(sc.port(), { path: '/' });
      assert.equal(r2.status, 200);
    } finally {
      await sc.stop();
    }
  });

  it('a request waiting longer than pendingTimeoutMs gets 503 with x-sidecar-error: pending_timeout', async (t) => {
    const sc = await startTestSidecar({ routes: [httpRoute(up.port, { maxConnections: 1, http: { pendingTimeoutMs: 200 } })] });
    try {
      const held = request(sc.port(), { path: '/hold' });
      await waitFor(() => release !== undefined, 5000, 'the first request to reach the upstream');
      const r = await request(sc.port(), { path: '/' });
      t.diagnostic(`queued request answered after ${Math.round(r.ms)} ms (pendingTimeoutMs 200)`);
      assert.equal(r.status, 503);
      assert.equal(r.headers['x-sidecar-error'], 'pending_timeout');
      assert.ok(r.ms >= 150 && r.ms < 5000, `${r.ms} ms`);
      release?.();
      assert.equal((await held).status, 200);
    } finally {
      await sc.stop();
    }
  });
});
