/**
 * Shutdown honours drainTimeoutMs: an app connection that stays open is reset with local_shutdown once the
 * drain window is over (regression: stop() used to wait for every downstream to end before the window even
 * started, because net.Server.close's callback waits for open connections).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import type { CloseInfo } from '../../src/pool/index.js';
import { echoServer } from '../fixtures/upstreams.js';
import type { Fixture } from '../fixtures/upstreams.js';
import { valueOf } from '../helpers/scrape.js';
import { connectClient, readUntil, startTestSidecar, tcpRoute, whenClosed } from '../helpers/sidecar.js';
import type { TestSidecar } from '../helpers/sidecar.js';

const DRAIN_MS = 300;

describe('shutdown with an app connection that never ends', () => {
  let upstream: Fixture;
  let sc: TestSidecar;

  before(async () => {
    upstream = await echoServer();
    sc = await startTestSidecar({ shutdown: { drainTimeoutMs: DRAIN_MS }, routes: [tcpRoute(upstream.port)] });
  });
  after(async () => {
    await sc.stop();
    await upstream.close();
  });

  it('stop() resets it with local_shutdown after drainTimeoutMs and resolves "forced"', async () => {
    const client = await connectClient(sc.port());
    client.write('x');
    await readUntil(client, 'x');
    const closed = whenClosed(client);
    const upstreamClosed = once(sc.sidecar.routes[0]!.pool, 'closed');
    const t0 = performance.now();
    const outcome = await sc.sidecar.stop();
    const elapsed = performance.now() - t0;
    assert.equal(outcome, 'forced');
    assert.ok(elapsed >= DRAIN_MS - 20 && elapsed < DRAIN_MS + 1000, `stopped after ${Math.round(elapsed)} ms`);
    const { err } = await closed;
    assert.equal(err?.code, 'ECONNRESET');
    const [, info] = (await upstreamClosed) as [unknown, CloseInfo];
    assert.equal(info.reason, 'local_shutdown');
    // The admin port is closed by now; the registry itself is still readable in-process.
    const text = await sc.sidecar.registry.metrics();
    assert.equal(valueOf(text, 'keepalive_sidecar_downstream_resets_total', { route: 'r1', reason: 'local_shutdown' }), 1);
    assert.equal(valueOf(text, 'keepalive_sidecar_upstream_connections_closed_total', { route: 'r1', reason: 'local_shutdown' }), 1);
  });
});
