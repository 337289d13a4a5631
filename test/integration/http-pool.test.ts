/**
 * HTTP mode pool behaviour on real loopback sockets: keep-alive reuse (10 000 sequential requests on at most
 * 2 upstream connections), no churn at c=200, each non-retried request seen exactly once by a counting
 * upstream, and the upstream's Keep-Alive hint lowering the idle timeout.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
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

describe('downstream keep-alive', () => {
  it('keeps an idle app connection for downstreamIdleTimeoutMs (default 75 s, not Node\'s 5 s), then closes it', async () => {
    const up = await httpUpstream();
    const sc = await startTestSidecar({ routes: [httpRoute(up.port, { http: { downstreamIdleTimeoutMs: 400 } })] });
    const dflt = await startTestSidecar({ routes: [httpRoute(up.port)] });
    try {
      assert.equal(dflt.config.routes[0]?.http.downstreamIdleTimeoutMs, 75000);
      const open = async (port: number): Promise<net.Socket> => {
        const s = net.connect(port, '127.0.0.1');
        await once(s, 'connect');
        s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
        await once(s, 'data');
        return s;
      };
      const short = await open(sc.port());
      const t0 = performance.now();
      await once(short, 'end');
      const idleMs = performance.now() - t0;
      assert.ok(idleMs >= 300 && idleMs < 2000, `closed after ${Math.round(idleMs)} ms`);
      short.destroy();
      // With the default the connection stays open (checked after 1 s, to keep the test short) and is reused.
      const long = await open(dflt.port());
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(long.readableEnded, false);
      long.write('GET /again HTTP/1.1\r\nHost: x\r\n\r\n');
      const [chunk] = (await once(long, 'data')) as [Buffer];
      assert.match(chunk.toString(), /^HTTP\/1\.1 200/);
      long.destroy();
    } finally {
      await sc.stop();
      await dflt.stop();
      await up.close();
    }
  });
});
