/**
 * HTTP mode pool behaviour on real loopback sockets: keep-alive reuse (10 000 sequential requests on at most
 * 2 upstream connections), no churn at c=200, each non-retried request seen exactly once by a counting
 * upstream, and the upstream's Keep-Alive hint lowering the idle timeout.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { CloseInfo } from '../../src/pool/index.js';
import { httpUpstream, request } from '../fixtures/http-upstreams.js';
import type { HttpFixture } from '../fixtures/http-upstreams.js';
import { httpRoute, metricValue, startTestSidecar, waitFor } from '../helpers/sidecar.js';
import type { TestSidecar } from '../helpers/sidecar.js';

/** Load run length for the c=200 test (the issue asks for 10 s; override for quick local runs). */
const LOAD_MS = Number(process.env.SIDECAR_TEST_LOAD_MS ?? 10000);

describe('http mode: pool reuse', () => {
  let up: HttpFixture;
  let sc: TestSidecar;

  before(async () => {
    up = await httpUpstream((_req, res) => res.end('ok'));
    sc = await startTestSidecar({ routes: [httpRoute(up.port)] });
  });
  after(async () => {
    await sc.stop();
    await up.close();
  });

  it('10 000 sequential keep-alive requests use at most 2 upstream connections', async (t) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const socketsBefore = up.sockets.length;
    const t0 = performance.now();
    try {
      for (let i = 0; i < 10000; i++) {
        const r = await request(sc.port(), { path: `/s${i}`, agent });
        if (r.status !== 200) assert.fail(`request ${i}: ${r.status}`);
      }
    } finally {
      agent.destroy();
    }
    const used = up.sockets.length - socketsBefore;
    t.diagnostic(`10000 requests in ${Math.round(performance.now() - t0)} ms on ${used} upstream connection(s)`);
    assert.ok(used <= 2, `${used} upstream connections`);
  });

  it(`c=200 for ${LOAD_MS / 1000} s: new upstream connections stay <= 2x concurrency; each request seen exactly once`, async (t) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 200 });
    const socketsBefore = up.sockets.length;
    const retriesBefore = await metricValue(sc, 'keepalive_sidecar_http_retries_total', { route: 'h1', reason: 'peer_closed' });
    const until = performance.now() + LOAD_MS;
    let done = 0;
    let failed = 0;
    const ids: string[] = [];
    const worker = async (w: number): Promise<void> => {
      // Bounded in time and in count.
      for (let i = 0; i < 100000 && performance.now() < until; i++) {
        const id = `c${w}-${i}`;
        ids.push(id);
        const r = await request(sc.port(), { path: '/c', headers: { 'x-req-id': id }, agent, timeoutMs: 10000 });
        if (r.status === 200) done++;
        else failed++;
      }
    };
    try {
      await Promise.all(Array.from({ length: 200 }, (_v, w) => worker(w)));
    } finally {
      agent.destroy();
    }
    const opened = up.sockets.length - socketsBefore;
    t.diagnostic(`c=200: ${done} requests in ${LOAD_MS} ms (${Math.round(done / (LOAD_MS / 1000))}/s), ${opened} new upstream connections, ${failed} failed`);
    assert.equal(failed, 0);
    assert.ok(opened <= 400, `${opened} new upstream connections (bound 400)`);
    // Counting upstream: every request arrived exactly once (none lost, none duplicated).
    const retries = (await metricValue(sc, 'keepalive_sidecar_http_retries_total', { route: 'h1', reason: 'peer_closed' })) - retriesBefore;
    assert.equal(retries, 0, 'no retries happened in this run');
    let notOnce = 0;
    for (const id of ids) if (up.byId.get(id) !== 1) notOnce++;
    assert.equal(notOnce, 0, `${notOnce} of ${ids.length} requests not seen exactly once`);
  });
});

describe('http mode: Keep-Alive hint', () => {
  it('the upstream Keep-Alive: timeout=2 lowers the idle timeout to 1 s (hint minus the 1 s margin)', async () => {
    const up = await httpUpstream((_req, res) => {
      res.setHeader('Keep-Alive', 'timeout=2');
      res.end('ok');
    });
    const sc = await startTestSidecar({ routes: [httpRoute(up.port)] });
    const closes: Array<CloseInfo & { at: number }> = [];
    sc.sidecar.routes[0]!.pool.on('closed', (_c, info) => closes.push({ ...info, at: performance.now() }));
    try {
      const r = await request(sc.port(), { path: '/' });
      const t0 = performance.now();
      assert.equal(r.status, 200);
      await waitFor(() => closes.length > 0, 3000, 'the idle connection to be retired');
      const elapsed = closes[0]!.at - t0;
      assert.equal(closes[0]!.reason, 'idle_evicted');
      assert.ok(elapsed >= 900 && elapsed < 1600, `retired after ${Math.round(elapsed)} ms`);
    } finally {
      await sc.stop();
      await up.close();
    }
  });
});

describe('http mode: shutdown', () => {
  it('stop() lets an in-flight request finish (drained), then closes the pool', async () => {
    const up = await httpUpstream((_req, res) => setTimeout(() => res.end('late ok'), 300));
    const sc = await startTestSidecar({ routes: [httpRoute(up.port)] });
    try {
      const pending = request(sc.port(), { path: '/slow' });
      await waitFor(() => up.sockets.length > 0, 2000, 'the request to reach the upstream');
      const outcome = await sc.sidecar.stop();
      const r = await pending;
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), 'late ok');
      assert.equal(outcome, 'drained');
      assert.equal(sc.sidecar.routes[0]!.pool.stats().total, 0);
    } finally {
      await up.close();
    }
  });
});
