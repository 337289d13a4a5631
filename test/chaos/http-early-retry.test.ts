/**
 * Issue #8: ACK-evidence early retry. With a conservative TCP_USER_TIMEOUT (10 s, the http default), a safe
 * request trapped on a silently dead pooled connection is rescued in under a second: the listener's 100 ms
 * sweep reads TCP_INFO for requests older than earlyRetry.afterMs (300 ms) and finds no ACK since the write.
 * Both nft drop variants: output hook (the local stack cannot send) and input hook (packets vanish).
 * False-positive guards: a slow upstream that ACKs is not retried, one lost segment is not failed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import type { CloseInfo } from '../../src/pool/index.js';
import { httpUpstream, request } from '../fixtures/http-upstreams.js';
import type { HttpFixture } from '../fixtures/http-upstreams.js';
import { blackhole, dropFirstDataSegment, requireChaos } from '../helpers/chaos.js';
import type { Hook } from '../helpers/chaos.js';
import { warmIdle } from '../helpers/http-pool.js';
import { httpRoute, metricValue, startTestSidecar, waitFor } from '../helpers/sidecar.js';
import type { TestSidecar } from '../helpers/sidecar.js';

interface Rig {
  readonly up: HttpFixture;
  readonly sc: TestSidecar;
  readonly closes: Array<CloseInfo & { localPort: number }>;
}

/** Default http keepalive (UT 10 s) and early retry; `/delay` answers after 50 ms, `/slow` after 3 s. */
async function rig(t: TestContext, route: Record<string, unknown> = {}): Promise<Rig> {
  const up = await httpUpstream((req, res) => {
    // Long enough for the warm-up's concurrent requests to overlap on a loaded box (each its own connection).
    if (req.url === '/delay') setTimeout(() => res.end('ok'), 300);
    else if (req.url === '/slow') setTimeout(() => res.end('slow ok'), 3000);
    else res.end('ok');
  });
  const sc = await startTestSidecar({ routes: [httpRoute(up.port, route)] });
  const closes: Rig['closes'] = [];
  sc.sidecar.routes[0]!.pool.on('closed', (c, info) => closes.push({ ...info, localPort: c.localPort ?? 0 }));
  t.after(async () => {
    await sc.stop();
    await up.close();
  });
  return { up, sc, closes };
}

describe('http mode: early retry on ACK evidence (UT 10 s)', () => {
  for (const hook of ['output', 'input'] as Hook[]) {
    it(`trapped GET (${hook} hook): 200 in <= 1 s, connection retired with no_ack`, async (t) => {
      if (!(await requireChaos(t))) return;
      const { up, sc, closes } = await rig(t);
      assert.equal(sc.config.routes[0]!.keepalive.userTimeoutMs, 10000, 'the http default UT is 10 s');
      const [port] = await warmIdle(sc.sidecar.routes[0]!.pool, sc.port(), 1);
      const hole = await blackhole(up.port, [port!], hook);
      t.after(() => hole.remove());
      const r = await request(sc.port(), { path: '/t', headers: { 'x-req-id': 't' }, timeoutMs: 15000 });
      t.diagnostic(`200 after ${Math.round(r.ms)} ms`);
      assert.equal(r.status, 200);
      assert.ok(r.ms <= 1000, `${Math.round(r.ms)} ms (bound 1000)`);
      assert.ok((up.byId.get('t') ?? 0) <= 2);
      assert.equal(await metricValue(sc, 'keepalive_sidecar_http_retries_total', { route: 'h1', reason: 'no_ack' }), 1);
      await waitFor(() => closes.some((c) => c.localPort === port), 1000, 'the dead connection close');
      assert.equal(closes.find((c) => c.localPort === port)?.reason, 'no_ack');
      const line = sc.logs.find((l) => l.reason === 'no_ack' && l.msg === 'dead upstream peer detected, connection dropped');
      assert.ok(line, 'one warn line for the connection');
    });

    it(`burst of 8 trapped GETs (${hook} hook): all 200 in <= 1 s, each seen upstream at most twice`, async (t) => {
      if (!(await requireChaos(t))) return;
      const { up, sc } = await rig(t);
      const ports = await warmIdle(sc.sidecar.routes[0]!.pool, sc.port(), 8);
      const hole = await blackhole(up.port, ports, hook);
      t.after(() => hole.remove());
      const rs = await Promise.all(Array.from({ length: 8 }, (_v, i) => request(sc.port(), { path: `/b${i}`, headers: { 'x-req-id': `b${i}` }, timeoutMs: 15000 })));
      const worst = Math.max(...rs.map((r) => r.ms));
      t.diagnostic(`8 trapped GETs: worst ${Math.round(worst)} ms; no_ack retries ${await metricValue(sc, 'keepalive_sidecar_http_retries_total', { route: 'h1', reason: 'no_ack' })}`);
      assert.ok(rs.every((r) => r.status === 200), `statuses ${rs.map((r) => r.status).join(',')}`);
      assert.ok(worst <= 1000, `worst ${Math.round(worst)} ms (bound 1000)`);
      for (let i = 0; i < 8; i++) {
        const n = up.byId.get(`b${i}`) ?? 0;
        assert.ok(n >= 1 && n <= 2, `b${i} seen ${n} times`);
      }
    });

    it(`one dropped segment (${hook} hook) is retransmitted and not failed or retried`, async (t) => {
      if (!(await requireChaos(t))) return;
      const { up, sc } = await rig(t);
      const [port] = await warmIdle(sc.sidecar.routes[0]!.pool, sc.port(), 1);
      const drop = await dropFirstDataSegment(up.port, port!, hook);
      t.after(() => drop.remove());
      const r = await request(sc.port(), { path: '/once', headers: { 'x-req-id': 'once' }, timeoutMs: 15000 });
      const dropped = await drop.dropped();
      t.diagnostic(`200 after ${Math.round(r.ms)} ms; ${dropped} packet(s) dropped`);
      assert.equal(dropped, 1, 'exactly one segment was dropped');
      assert.equal(r.status, 200);
      assert.equal(up.byId.get('once'), 1, 'seen once: no early retry');
      assert.equal(await metricValue(sc, 'keepalive_sidecar_http_retries_total', { route: 'h1', reason: 'no_ack' }), 0);
    });
  }

  it('no_ack evidence also retires the idle siblings to that address (sibling eviction)', async (t) => {
    if (!(await requireChaos(t))) return;
    const { up, sc, closes } = await rig(t);
    const pool = sc.sidecar.routes[0]!.pool;
    const ports = await warmIdle(pool, sc.port(), 3);
    const hole = await blackhole(up.port, ports, 'input');
    t.after(() => hole.remove());
    const r = await request(sc.port(), { path: '/sib', timeoutMs: 15000 });
    assert.equal(r.status, 200);
    assert.ok(r.ms <= 1000, `${Math.round(r.ms)} ms`);
    await waitFor(() => ports.every((p) => closes.some((c) => c.localPort === p)), 1000, 'the dead connection and its siblings to close');
    const reasons = ports.map((p) => closes.find((c) => c.localPort === p)!.reason).sort();
    assert.deepEqual(reasons, ['no_ack', 'sibling_evicted', 'sibling_evicted']);
  });

  it('a slow upstream that ACKs (answers after 3 s) is not retried early', async (t) => {
    const { up, sc } = await rig(t);
    await warmIdle(sc.sidecar.routes[0]!.pool, sc.port(), 1);
    const r = await request(sc.port(), { path: '/slow', headers: { 'x-req-id': 'slow' }, timeoutMs: 15000 });
    t.diagnostic(`200 after ${Math.round(r.ms)} ms`);
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'slow ok');
    assert.ok(r.ms >= 2900);
    assert.equal(up.byId.get('slow'), 1);
    assert.equal(await metricValue(sc, 'keepalive_sidecar_http_retries_total', { route: 'h1', reason: 'no_ack' }), 0);
  });

  it('a trapped POST without Idempotency-Key is not retried early: it waits for UT and gets 502 user_timeout', async (t) => {
    if (!(await requireChaos(t))) return;
    const UT = 3000;
    const { up, sc } = await rig(t, { keepalive: { userTimeoutMs: UT } });
    const [port] = await warmIdle(sc.sidecar.routes[0]!.pool, sc.port(), 1);
    const hole = await blackhole(up.port, [port!], 'input');
    t.after(() => hole.remove());
    const r = await request(sc.port(), { method: 'POST', path: '/p', body: 'x', headers: { 'x-req-id': 'p' }, timeoutMs: 15000 });
    t.diagnostic(`502 after ${Math.round(r.ms)} ms`);
    assert.equal(r.status, 502);
    assert.equal(r.headers['x-sidecar-error'], 'user_timeout');
    assert.ok(r.ms >= UT - 100 && r.ms <= UT + 1000, `${Math.round(r.ms)} ms`);
  });
});
