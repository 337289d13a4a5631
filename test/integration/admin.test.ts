/**
 * Admin server on real sockets: every endpoint, 404/405, /debug/connections showing the options read back
 * from the kernel and TCP_INFO, /debug/config redacted, /ready turning 503 while draining, configurable host.
 * The split (#11): /debug/* only on the loopback debug listener (404 naming it on the admin port), pages
 * of /debug/connections with `total` and at most `limit` entries, bad paging parameters 400.
 */
import assert from 'node:assert/strict';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { ConnectionsPage, ConnectionView } from '../../src/admin/index.js';
import { ADMIN_LIMITS } from '../../src/admin/index.js';
import { echoServer } from '../fixtures/upstreams.js';
import type { Fixture } from '../fixtures/upstreams.js';
import { request } from '../helpers/scrape.js';
import { connectClient, readUntil, startTestSidecar, tcpRoute, whenClosed } from '../helpers/sidecar.js';
import type { TestSidecar } from '../helpers/sidecar.js';

const KEEPALIVE = { idleMs: 2000, intervalMs: 1000, probes: 4, userTimeoutMs: 3000 };

describe('admin server', () => {
  let upstream: Fixture;
  let sc: TestSidecar;
  let port: number;
  let debugPort: number;
  const clients: net.Socket[] = [];

  before(async () => {
    upstream = await echoServer();
    sc = await startTestSidecar({ routes: [tcpRoute(upstream.port, { keepalive: KEEPALIVE, warmSpares: 1 })] });
    port = sc.sidecar.admin!.port;
    debugPort = sc.sidecar.debug!.port;
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await sc.stop();
    await upstream.close();
  });

  it('/live answers 200 and /ready 200 once every listener is bound', async () => {
    const live = await request(port, '/live');
    assert.equal(live.status, 200);
    assert.equal(live.body, 'ok\n');
    const ready = await request(port, '/ready');
    assert.equal(ready.status, 200);
  });

  it('/metrics answers Prometheus text with our prefix', async () => {
    const res = await request(port, '/metrics');
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    assert.match(res.body, /^keepalive_sidecar_build_info\{version="[^"]+",node="v\d+/m);
    assert.match(res.body, /^keepalive_sidecar_process_cpu_user_seconds_total /m);
  });

  it('unknown paths are 404, other methods than GET/HEAD are 405 with Allow', async () => {
    for (const path of ['/', '/nope', '/debug', '/metrics/x']) {
      const res = await request(port, path);
      assert.equal(res.status, 404, path);
      assert.match(res.body, /endpoints: \/live/);
    }
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      for (const [p, path] of [[port, '/live'], [port, '/metrics'], [debugPort, '/debug/connections']] as const) {
        const res = await request(p, path, method);
        assert.equal(res.status, 405, `${method} ${path}`);
        assert.equal(res.headers.allow, 'GET, HEAD');
      }
    }
    const head = await request(port, '/live', 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
  });

  it('the pod-facing admin port answers /debug/* with 404 naming the loopback debug listener', async () => {
    for (const path of ['/debug/connections', '/debug/config', '/debug/anything', '/debug']) {
      const res = await request(port, path);
      assert.equal(res.status, 404, path);
      assert.match(res.body, new RegExp(`loopback debug listener \\(debug\\.host:debug\\.port, here http://127\\.0\\.0\\.1:${debugPort}\\)`), res.body);
    }
    // And the debug port serves nothing but /debug/*.
    for (const path of ['/live', '/metrics', '/']) {
      const res = await request(debugPort, path);
      assert.equal(res.status, 404, path);
      assert.match(res.body, /endpoints: \/debug\/connections \/debug\/endpoints \/debug\/config/);
    }
  });

  it('the debug listener is bound to 127.0.0.1', () => {
    assert.equal(sc.sidecar.debug?.address, '127.0.0.1');
    assert.notEqual(sc.sidecar.debug.port, port);
  });

  it('/debug/config shows the effective configuration (redacted)', async () => {
    const res = await request(debugPort, '/debug/config');
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/json');
    const cfg = JSON.parse(res.body) as typeof sc.config;
    assert.deepEqual(cfg.routes[0]?.keepalive, KEEPALIVE);
    assert.deepEqual(cfg, JSON.parse(JSON.stringify(sc.config)), 'nothing in this config is secret, so nothing changes');
  });

  it('/debug/connections shows keepalive and user timeout as read back from the kernel, and a non-zero rtt', async () => {
    const client = await connectClient(sc.port());
    clients.push(client);
    client.write('ping\n');
    await readUntil(client, 'ping\n');
    const res = await request(debugPort, '/debug/connections');
    assert.equal(res.status, 200);
    const page = JSON.parse(res.body) as ConnectionsPage;
    assert.deepEqual([page.total, page.offset, page.limit, page.next], [page.connections.length, 0, ADMIN_LIMITS.connectionsDefaultLimit, null]);
    const conns = page.connections as ConnectionView[];
    const active = conns.filter((c) => c.state === 'active');
    assert.equal(active.length, 1, res.body);
    const c = active[0]!;
    assert.equal(c.route, 'r1');
    assert.equal(c.remote, `127.0.0.1:${upstream.port}`);
    assert.match(c.local ?? '', /^127\.0\.0\.1:\d+$/);
    assert.ok(c.bytesWritten >= 5 && c.bytesRead >= 5, `bytes ${c.bytesWritten}/${c.bytesRead}`);
    assert.ok(c.ageMs >= 0 && c.idleMs >= 0 && c.stateForMs >= 0);
    assert.deepEqual(c.sockopts, { noDelay: true, keepAlive: true, keepIdleSec: 2, keepIntvlSec: 1, keepCnt: 4, userTimeoutMs: 3000 });
    assert.deepEqual(c.configured, c.sockopts);
    assert.equal(c.isSockoptsAsConfigured, true);
    const ti = c.tcpInfo;
    assert.ok(ti !== null);
    assert.equal(ti.state, 'established');
    assert.ok(ti.rttUs > 0, `rtt ${ti.rttUs} µs`);
    assert.ok(ti.rttvarUs >= 0 && ti.rtoUs >= 200_000);
    for (const k of ['retransmits', 'probes', 'unacked', 'lost', 'lastDataRecvMs', 'lastAckRecvMs', 'totalRetrans'] as const) {
      assert.equal(typeof ti[k], 'number', k);
    }
    assert.equal(ti.unacked, 0);
    // Idle from here on: keepalive 2 s + ticks of 1 s until UT 3 s has passed = 3 s at most.
    assert.ok(c.timers.deadIfSilentWithinMs !== null && c.timers.deadIfSilentWithinMs <= 3000, `deadline ${c.timers.deadIfSilentWithinMs}`);
    assert.ok(c.timers.maxAgeInMs !== null && c.timers.maxAgeInMs > 0);
    // The warm spare is listed too, idle, with the same options.
    const idle = conns.filter((x) => x.state === 'idle');
    assert.equal(idle.length, 1, res.body);
    assert.equal(idle[0]!.isSockoptsAsConfigured, true);
  });

  it('/debug/connections pages: total of all sockets, at most `limit` entries, `next` to the rest; bad paging is 400', async () => {
    const client = await connectClient(sc.port());
    clients.push(client);
    client.write('page\n');
    await readUntil(client, 'page\n');
    // A finished page is reused for ADMIN_LIMITS.connectionsMaxAgeMs, so pages asked at different moments
    // may count different totals: only each page's own consistency is asserted.
    const first = JSON.parse((await request(debugPort, '/debug/connections?limit=1')).body) as ConnectionsPage;
    assert.ok(first.total >= 2, `total ${first.total}`);
    assert.deepEqual([first.limit, first.connections.length, first.next], [1, 1, '?offset=1&limit=1']);
    const second = JSON.parse((await request(debugPort, `/debug/connections${first.next}`)).body) as ConnectionsPage;
    assert.ok(second.total >= 2, `total ${second.total}`);
    assert.deepEqual([second.offset, second.connections.length], [1, 1]);
    assert.notEqual(second.connections[0]!.id, first.connections[0]!.id);
    const all = JSON.parse((await request(debugPort, '/debug/connections?limit=1000')).body) as ConnectionsPage;
    assert.deepEqual([all.connections.length, all.next], [all.total, null]);
    const past = JSON.parse((await request(debugPort, '/debug/connections?offset=1000')).body) as ConnectionsPage;
    assert.deepEqual([past.connections.length, past.next], [0, null]);
    assert.ok(past.total >= 2);
    for (const q of ['limit=0', `limit=${ADMIN_LIMITS.connectionsMaxLimit + 1}`, 'limit=x', 'offset=-1', 'offset=1.5']) {
      const res = await request(debugPort, `/debug/connections?${q}`);
      assert.equal(res.status, 400, q);
      assert.match(res.body, /must be an integer from/, q);
    }
  });

  it('/ready turns 503 while draining, /live stays 200', async () => {
    const client = await connectClient(sc.port());
    clients.push(client);
    client.write('hold\n');
    await readUntil(client, 'hold\n');
    const stopping = sc.sidecar.stop();
    const ready = await request(port, '/ready');
    assert.equal(ready.status, 503);
    assert.equal((await request(port, '/live')).status, 200);
    const closed = clients.map((c) => whenClosed(c));
    for (const c of clients) c.end();
    await Promise.all(closed);
    assert.equal(await stopping, 'drained');
  });
});

describe('admin server: bounded against slow and many clients (#11)', () => {
  let upstream: Fixture;
  let sc: TestSidecar;
  before(async () => {
    upstream = await echoServer();
    sc = await startTestSidecar({ routes: [tcpRoute(upstream.port)] });
  });
  after(async () => {
    await sc.stop();
    await upstream.close();
  });

  it('a request head that never finishes is answered 408 with Connection: close within headersTimeout (+1 s check interval)', async () => {
    const s = await connectClient(sc.sidecar.admin!.port);
    const t0 = performance.now();
    s.write('GET /live HTTP/1.1\r\nHost: x\r\n');
    const got = await readUntil(s, '\r\n\r\n');
    const ms = performance.now() - t0;
    s.destroy();
    assert.match(got, /^HTTP\/1\.1 408 Request Timeout\r\nConnection: close/);
    assert.ok(ms >= ADMIN_LIMITS.headersTimeoutMs - 100 && ms < ADMIN_LIMITS.headersTimeoutMs + 1500, `closed after ${Math.round(ms)} ms`);
  });

  it('past adminMaxConnections a new connection is closed at once; /live answers again once they go', async () => {
    const held: net.Socket[] = [];
    try {
      for (let i = 0; i < ADMIN_LIMITS.adminMaxConnections; i++) held.push(await connectClient(sc.sidecar.admin!.port));
      // The server counts a connection when it accepts it: wait until the last one held is answered.
      held.at(-1)!.write('GET /live HTTP/1.1\r\nHost: x\r\n\r\n');
      await readUntil(held.at(-1)!, 'ok\n');
      await assert.rejects(request(sc.sidecar.admin!.port, '/live'), /ECONNRESET|socket hang up/);
    } finally {
      await Promise.all(held.map((h) => {
        const closed = whenClosed(h);
        h.destroy();
        return closed;
      }));
    }
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) status = await request(sc.sidecar.admin!.port, '/live').then((r) => r.status, () => 0);
    assert.equal(status, 200);
  });
});

describe('admin server: configurable host', () => {
  it('binds the configured admin host (127.0.0.2) and serves there', async () => {
    const upstream = await echoServer();
    const sc = await startTestSidecar({ admin: { host: '127.0.0.2', port: 0 }, routes: [tcpRoute(upstream.port)] });
    try {
      assert.equal(sc.sidecar.admin?.address, '127.0.0.2');
      assert.equal((await request(sc.sidecar.admin.port, '/live', 'GET', '127.0.0.2')).status, 200);
      await assert.rejects(request(sc.sidecar.admin.port, '/live', 'GET', '127.0.0.1'), /ECONNREFUSED/);
    } finally {
      await sc.stop();
      await upstream.close();
    }
  });
});
