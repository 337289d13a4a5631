/**
 * Request-head time bound (issue 11, point 6 slowloris): a head not complete within http.requestHeadTimeoutMs
 * gets 408 within ~1 s of the bound; an idle keep-alive connection between requests is governed by
 * downstreamIdleTimeoutMs, not by the head bound; 500 slow heads at once are all answered and do not stop a
 * normal request.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { httpUpstream, request } from '../fixtures/http-upstreams.js';
import type { HttpFixture } from '../fixtures/http-upstreams.js';
import { httpRoute, startTestSidecar } from '../helpers/sidecar.js';
import type { TestSidecar } from '../helpers/sidecar.js';

const HEAD_MS = 1000;
const IDLE_MS = 2500;

interface Outcome {
  data: string;
  closedAt: number;
}

async function openRaw(port: number): Promise<{ s: net.Socket; done: Promise<Outcome> }> {
  const s = net.connect(port, '127.0.0.1');
  let data = '';
  s.on('data', (d: Buffer) => (data += d.toString()));
  s.on('error', () => {
    // A reset counts as closed; the outcome carries what arrived before.
  });
  const done = new Promise<Outcome>((resolve) => s.once('close', () => resolve({ data, closedAt: performance.now() })));
  await once(s, 'connect');
  return { s, done };
}

describe('http request head timeout', () => {
  let up: HttpFixture;
  let sc: TestSidecar;
  before(async () => {
    up = await httpUpstream((_req, res) => res.end('ok'));
    sc = await startTestSidecar({
      routes: [httpRoute(up.port, { http: { requestHeadTimeoutMs: HEAD_MS, downstreamIdleTimeoutMs: IDLE_MS } })],
    });
  });
  after(async () => {
    await sc.stop();
    await up.close();
  });

  it('defaults to 10 s', async () => {
    const dflt = await startTestSidecar({ routes: [httpRoute(up.port)] });
    assert.equal(dflt.config.routes[0]?.http.requestHeadTimeoutMs, 10000);
    await dflt.stop();
  });

  it('a half-written request head gets 408 and the connection closes within ~1 s of requestHeadTimeoutMs', async () => {
    const { s, done } = await openRaw(sc.port());
    const t0 = performance.now();
    s.write('GET /slow HTTP/1.1\r\nHost: x\r\nX-Partial: ');
    const { data, closedAt } = await done;
    const ms = closedAt - t0;
    assert.match(data, /^HTTP\/1\.1 408 /);
    assert.ok(ms >= HEAD_MS - 50 && ms < HEAD_MS + 1000, `closed ${Math.round(ms)} ms after the first byte`);
    assert.equal(up.seen.filter((r) => r.url === '/slow').length, 0);
  });

  it('an idle keep-alive connection is not cut at requestHeadTimeoutMs but at downstreamIdleTimeoutMs', async () => {
    const { s, done } = await openRaw(sc.port());
    s.write('GET /one HTTP/1.1\r\nHost: x\r\n\r\n');
    // The idle wait starts when the response has arrived.
    await once(s, 'data');
    const t0 = performance.now();
    const { data, closedAt } = await done;
    const ms = closedAt - t0;
    assert.match(data, /^HTTP\/1\.1 200 /);
    assert.doesNotMatch(data, /408/);
    console.log(`idle keep-alive connection closed ${Math.round(ms)} ms after its response (head bound ${HEAD_MS}, idle bound ${IDLE_MS})`);
    assert.ok(ms >= IDLE_MS - 200 && ms < IDLE_MS + 1500, `idle connection closed after ${Math.round(ms)} ms`);
  });

  it('500 half-written heads all get 408 (or close) within the bound + ~1 s, and a normal request is served meanwhile', async () => {
    const conns = await Promise.all(Array.from({ length: 500 }, () => openRaw(sc.port())));
    const t0 = performance.now();
    for (const { s } of conns) s.write('GET /loris HTTP/1.1\r\nHost: x\r\n');
    const normal = await request(sc.port(), { path: '/normal', agent: false });
    assert.equal(normal.status, 200);
    assert.ok(normal.ms < HEAD_MS, `normal request took ${Math.round(normal.ms)} ms`);
    const outcomes = await Promise.all(conns.map((c) => c.done));
    const last = Math.max(...outcomes.map((o) => o.closedAt)) - t0;
    const with408 = outcomes.filter((o) => /^HTTP\/1\.1 408 /.test(o.data)).length;
    assert.ok(last < HEAD_MS + 1000, `last slow head closed ${Math.round(last)} ms after it started`);
    assert.equal(with408, 500);
    console.log(`500 slow heads: all 408, last closed ${Math.round(last)} ms after the heads started (bound ${HEAD_MS} ms)`);
  });
});
