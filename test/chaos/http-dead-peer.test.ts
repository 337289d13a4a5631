/**
 * HTTP mode against silently dead upstream connections (issue #4), with early retry off so the kernel's
 * TCP_USER_TIMEOUT / keepalive path is what is tested (issue #8's early retry has its own file). nftables
 * drops established flows by port, on the output hook (the local stack cannot send) and on the input hook
 * (packets leave and vanish, as in a real partition).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import type { CloseInfo } from '../../src/pool/index.js';
import { addWebSocketEcho, httpUpstream, request } from '../fixtures/http-upstreams.js';
import type { HttpFixture } from '../fixtures/http-upstreams.js';
import { blackhole, requireChaos } from '../helpers/chaos.js';
import type { Hook } from '../helpers/chaos.js';
import { warmIdle } from '../helpers/http-pool.js';
import { httpRoute, metricValue, readUntil, startTestSidecar, waitFor, whenClosed } from '../helpers/sidecar.js';
import type { TestSidecar } from '../helpers/sidecar.js';

const UT = 2000;
const KEEPALIVE = { idleMs: 1000, intervalMs: 1000, probes: 2, userTimeoutMs: UT };

interface Rig {
  readonly up: HttpFixture;
  readonly sc: TestSidecar;
  readonly closes: Array<CloseInfo & { at: number; localPort: number }>;
}

/** Upstream + sidecar for one test, torn down by t.after. `/delay` answers after 50 ms. */
async function rig(t: TestContext, http: Record<string, unknown> = {}): Promise<Rig> {
  const up = await httpUpstream((req, res) => {
    // Long enough for the warm-up's concurrent requests to overlap on a loaded box (each its own connection).
    if (req.url === '/delay') setTimeout(() => res.end('ok'), 300);
    else res.end('ok');
  });
  const sc = await startTestSidecar({ routes: [httpRoute(up.port, { keepalive: KEEPALIVE, http: { earlyRetry: { enabled: false }, ...http } })] });
  const closes: Rig['closes'] = [];
  sc.sidecar.routes[0]!.pool.on('closed', (c, info) => closes.push({ ...info, at: performance.now(), localPort: c.localPort ?? 0 }));
  t.after(async () => {
    await sc.stop();
    await up.close();
  });
  return { up, sc, closes };
}

describe('http mode: silent upstream death (nftables blackhole), early retry off', () => {
  for (const hook of ['output', 'input'] as Hook[]) {
    it(`trapped GET (${hook} hook): 200 from a retry on a fresh connection within UT + 1 s`, async (t) => {
      if (!(await requireChaos(t))) return;
      const { up, sc, closes } = await rig(t);
      const pool = sc.sidecar.routes[0]!.pool;
      const [port] = await warmIdle(pool, sc.port(), 1);
      const hole = await blackhole(up.port, [port!], hook);
      t.after(() => hole.remove());
      const r = await request(sc.port(), { path: '/trapped', headers: { 'x-req-id': 'trapped' }, timeoutMs: 10000 });
      t.diagnostic(`200 after ${Math.round(r.ms)} ms`);
      assert.equal(r.status, 200);
      assert.ok(r.ms <= UT + 1000, `${Math.round(r.ms)} ms (bound ${UT + 1000})`);
      assert.equal(up.byId.get('trapped'), 1, 'the dead attempt never arrived; the retry did, once');
      assert.equal(await metricValue(sc, 'keepalive_sidecar_http_retries_total', { route: 'h1', reason: 'user_timeout' }), 1);
      await waitFor(() => closes.some((c) => c.localPort === port), 1000, 'the dead connection close');
      assert.equal(closes.find((c) => c.localPort === port)?.reason, 'user_timeout');
    });

    it(`trapped POST without Idempotency-Key (${hook} hook): 502 x-sidecar-error: user_timeout within UT + 1 s`, async (t) => {
      if (!(await requireChaos(t))) return;
      const { up, sc } = await rig(t);
      const pool = sc.sidecar.routes[0]!.pool;
      const [port] = await warmIdle(pool, sc.port(), 1);
      const hole = await blackhole(up.port, [port!], hook);
      t.after(() => hole.remove());
      const r = await request(sc.port(), { method: 'POST', path: '/p', body: 'payload', headers: { 'x-req-id': 'post' }, timeoutMs: 10000 });
      t.diagnostic(`502 after ${Math.round(r.ms)} ms`);
      assert.equal(r.status, 502);
      assert.equal(r.headers['x-sidecar-error'], 'user_timeout');
      assert.ok(r.ms <= UT + 1000, `${Math.round(r.ms)} ms (bound ${UT + 1000})`);
      assert.equal(up.byId.get('post'), undefined, 'never sent twice (here: never arrived at all)');
    });

    it(`8 dead idle connections, early resume after 1 s (${hook} hook): 0 failures, each request <= UT + 1 s`, async (t) => {
      if (!(await requireChaos(t))) return;
      const { up, sc } = await rig(t);
      const pool = sc.sidecar.routes[0]!.pool;
      const ports = await warmIdle(pool, sc.port(), 8);
      const hole = await blackhole(up.port, ports, hook);
      t.after(() => hole.remove());
      await new Promise((resolve) => setTimeout(resolve, 1000));
      // 8 concurrent requests land on the 8 dead connections, then 8 more follow on whatever is pooled.
      const first = await Promise.all(Array.from({ length: 8 }, (_v, i) => request(sc.port(), { path: `/r${i}`, timeoutMs: 10000 })));
      const second = await Promise.all(Array.from({ length: 8 }, (_v, i) => request(sc.port(), { path: `/s${i}`, timeoutMs: 10000 })));
      const all = [...first, ...second];
      const worst = Math.max(...all.map((r) => r.ms));
      t.diagnostic(`16 requests, worst ${Math.round(worst)} ms, statuses ${[...new Set(all.map((r) => r.status))].join(',')}`);
      assert.ok(all.every((r) => r.status === 200), 'every request succeeded');
      assert.ok(worst <= UT + 1000, `worst ${Math.round(worst)} ms (bound ${UT + 1000})`);
    });

    it(`8 dead idle connections, late resume (${hook} hook): no request touches a dead socket; closes are keepalive_timeout`, async (t) => {
      if (!(await requireChaos(t))) return;
      // Sibling eviction off: each connection must be found dead by its own keepalive.
      const { up, sc, closes } = await rig(t, { siblingEviction: false });
      const pool = sc.sidecar.routes[0]!.pool;
      const ports = await warmIdle(pool, sc.port(), 8);
      const hole = await blackhole(up.port, ports, hook);
      t.after(() => hole.remove());
      const t0 = performance.now();
      // Keepalive bound: idle 1 s, then probes every 1 s; with UT 2 s the kernel gives up ~idle + UT after the last ACK.
      await waitFor(() => ports.every((p) => closes.some((c) => c.localPort === p)), 6000, 'all 8 dead connections to be dropped');
      t.diagnostic(`all 8 dropped ${Math.round(Math.max(...closes.map((c) => c.at)) - t0)} ms after the blackhole`);
      for (const p of ports) assert.equal(closes.find((c) => c.localPort === p)?.reason, 'keepalive_timeout');
      assert.ok((await metricValue(sc, 'keepalive_sidecar_upstream_connections_closed_total', { route: 'h1', reason: 'keepalive_timeout' })) >= 8);
      const rs = await Promise.all(Array.from({ length: 8 }, (_v, i) => request(sc.port(), { path: `/late${i}`, timeoutMs: 10000 })));
      assert.ok(rs.every((r) => r.status === 200 && r.ms < 500), `fast 200s: ${rs.map((r) => `${r.status}/${Math.round(r.ms)}ms`).join(' ')}`);
      for (const reason of ['user_timeout', 'keepalive_timeout', 'peer_reset', 'peer_closed']) {
        assert.equal(await metricValue(sc, 'keepalive_sidecar_http_retries_total', { route: 'h1', reason }), 0, `no retry (${reason}): no request touched a dead socket`);
      }
    });
  }

  it('sibling eviction: one detected death retires the other idle connections to that address within 1 s', async (t) => {
    if (!(await requireChaos(t))) return;
    const { up, sc, closes } = await rig(t);
    const pool = sc.sidecar.routes[0]!.pool;
    const ports = await warmIdle(pool, sc.port(), 4);
    const hole = await blackhole(up.port, [ports[0]!], 'input');
    t.after(() => hole.remove());
    await waitFor(() => closes.some((c) => c.localPort === ports[0]), 6000, 'the blackholed connection to die');
    const death = closes.find((c) => c.localPort === ports[0])!;
    assert.equal(death.reason, 'keepalive_timeout');
    await waitFor(() => ports.slice(1).every((p) => closes.some((c) => c.localPort === p)), 1000, 'the siblings to be retired');
    const lag = Math.max(...ports.slice(1).map((p) => closes.find((c) => c.localPort === p)!.at)) - death.at;
    t.diagnostic(`siblings retired ${lag.toFixed(1)} ms after the death`);
    for (const p of ports.slice(1)) assert.equal(closes.find((c) => c.localPort === p)?.reason, 'sibling_evicted');
    assert.ok(lag <= 1000);
  });
});

describe('http mode: WebSocket tunnel liveness', () => {
  it('a blackholed tunnel upstream resets the app connection within keepalive idle + UT + 1 s', async (t) => {
    if (!(await requireChaos(t))) return;
    const { up, sc } = await rig(t);
    addWebSocketEcho(up);
    const s = net.connect(sc.port(), '127.0.0.1');
    await once(s, 'connect');
    const closed = whenClosed(s);
    s.write('GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    await readUntil(s, '\r\n\r\n');
    s.write('ping');
    await readUntil(s, 'ping');
    const conn = [...sc.sidecar.routes[0]!.pool.connections()].find((c) => c.state.state === 'leased');
    assert.ok(conn, 'the tunnel holds a leased upstream connection');
    const hole = await blackhole(up.port, [conn.localPort!], 'input');
    t.after(() => hole.remove());
    const t0 = performance.now();
    const { err, at } = await closed;
    t.diagnostic(`app connection reset after ${Math.round(at - t0)} ms`);
    assert.equal(err?.code, 'ECONNRESET');
    assert.ok(at - t0 <= KEEPALIVE.idleMs + UT + 1000, `${Math.round(at - t0)} ms`);
    assert.equal(await metricValue(sc, 'keepalive_sidecar_downstream_resets_total', { route: 'h1', reason: 'keepalive_timeout' }), 1);
  });
});
