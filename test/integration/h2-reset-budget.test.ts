/**
 * The app cancels many streams (a rapid-reset attacker, or a client whose calls time out en masse): the h2
 * route cancels their upstream partners with RST_STREAM, all on the pooled upstream session. Servers defend
 * against rapid reset (CVE-2023-44487) per connection: nghttp2 (node:http2, nghttpx, Apache) closes a session
 * with GOAWAY INTERNAL_ERROR after 1000 RST_STREAMs at once (33/s regenerated), Envoy after 250 early resets.
 * Relayed onto one upstream session, several app connections' cancels would reach that limit and the server
 * would kill every other stream on the session with it. The session is retired before (`reset_budget`):
 * it drains (its streams finish), new streams go to a fresh one. Real CLI, real node:http2 upstream (nghttp2
 * with its default limits), bounded counts.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { it } from 'node:test';
import type { TestContext } from 'node:test';
import { h2Request, h2Upstream } from '../fixtures/h2-upstreams.js';
import { h2Route, startH2Sidecar } from '../helpers/h2-sidecar.js';

const SLOW_MS = 1500;

it('app cancels 2400 streams over 4 connections: the upstream never sees enough resets to GOAWAY; slow POSTs on the same session all answered', { timeout: 60_000 }, async (t: TestContext) => {
  let opened = 0;
  const up = await h2Upstream((s, h) => {
    opened++;
    s.resume();
    if (h[':path'] === '/slow') {
      const timer = setTimeout(() => {
        if (!s.destroyed) s.respond({ ':status': 200 }, { endStream: true });
      }, SLOW_MS);
      s.once('close', () => clearTimeout(timer));
      return;
    }
    // Cancelled ones: never answered (the app resets them first).
  });
  t.after(() => up.close());
  const goaways: number[] = [];
  up.server.on('session', (s) => s.on('goaway', (code: number) => goaways.push(code)));
  const sc = await startH2Sidecar(t, [h2Route(up.port, {}, {}, 'g')]);
  t.after(() => sc.stop());

  const victim = http2.connect(`http://127.0.0.1:${sc.port}`);
  victim.on('error', () => {});
  t.after(() => victim.destroy());
  // Non-idempotent, in flight on the upstream session the cancels will share: a replay would not be allowed.
  const victims = Array.from({ length: 20 }, () => h2Request(victim, { ':method': 'POST', ':path': '/slow' }, 'x'));
  await new Promise((r) => setTimeout(r, 200));

  const hostile = Array.from({ length: 4 }, () => {
    const c = http2.connect(`http://127.0.0.1:${sc.port}`);
    c.on('error', () => {});
    return c;
  });
  t.after(() => {
    for (const c of hostile) c.destroy();
  });
  // 600 per app connection: under our own app-side limit (nghttp2's 1000), 2400 for the shared upstream.
  for (let i = 0; i < 600; i++) {
    for (const c of hostile) {
      if (c.destroyed || c.closed) continue;
      const s = c.request({ ':method': 'POST', ':path': '/cancelled' }, { endStream: false });
      s.on('error', () => {});
      s.write('x');
      // After our HEADERS reached the sidecar and it opened the upstream stream.
      setTimeout(() => s.close(http2.constants.NGHTTP2_CANCEL), 5);
    }
    if (i % 25 === 24) await new Promise((r) => setTimeout(r, 10));
  }
  const results = await Promise.all(victims);
  assert.deepEqual(
    results.map((r) => r.status),
    results.map(() => 200),
    `every slow POST answered 200 (got ${JSON.stringify(results.map((r) => [r.status, r.rstCode]))})`,
  );
  // Without the budget, these were enough for nghttp2 to GOAWAY the shared session (every POST above: 502).
  assert.ok(opened > 800, `the cancelled streams reached the upstream (${opened} opened)`);
  assert.deepEqual(goaways.filter((c) => c !== http2.constants.NGHTTP2_NO_ERROR), [], 'the sidecar sent the upstream only graceful GOAWAYs');
  const goawaysIn = await sc.metric('keepalive_sidecar_h2_goaways_received_total', { route: 'g' });
  const graceful = await sc.metric('keepalive_sidecar_h2_goaways_received_total', { route: 'g', code: 'no_error' });
  assert.equal(goawaysIn, graceful, 'the upstream sent only graceful GOAWAYs (its answer to our drain), never INTERNAL_ERROR');
  assert.ok((await sc.metric('keepalive_sidecar_upstream_connections_closed_total', { route: 'g', reason: 'reset_budget' })) >= 1, 'a session was retired for its reset budget');
  // Traffic still flows afterwards.
  const after = await h2Request(victim, { ':method': 'GET', ':path': '/slow' });
  assert.equal(after.status, 200);
});
