/** An upstream whose SYNs vanish: the app's connection is reset once connectTimeoutMs expires. */
import assert from 'node:assert/strict';
import net from 'node:net';
import { it } from 'node:test';
import { echoServer } from '../fixtures/upstreams.js';
import { dropSyns, requireChaos } from '../helpers/chaos.js';
import { startTestSidecar, tcpRoute, whenClosed } from '../helpers/sidecar.js';

it('tcp mode: connect timeout resets the client promptly (reason connect_timeout)', async (t) => {
  if (!(await requireChaos(t))) return;
  const up = await echoServer();
  const sc = await startTestSidecar({ routes: [tcpRoute(up.port, { connectTimeoutMs: 500 })] });
  const hole = await dropSyns(up.port);
  t.after(async () => {
    await hole.remove();
    await sc.stop();
    await up.close();
  });
  const t0 = performance.now();
  const client = net.connect(sc.port(), '127.0.0.1');
  const { err, at } = await whenClosed(client);
  const elapsed = at - t0;
  t.diagnostic(`reset after ${Math.round(elapsed)} ms`);
  assert.equal(err?.code, 'ECONNRESET');
  assert.ok(elapsed >= 450 && elapsed < 1000, `${Math.round(elapsed)} ms`);
  assert.ok((await hole.dropped()) > 0);
  const text = await sc.sidecar.registry.metrics();
  assert.match(text, /downstream_resets_total\{route="r1",reason="connect_timeout"\} 1/);
  assert.match(text, /upstream_connect_failures_total\{route="r1",reason="connect_timeout"\} 1/);
  assert.equal(sc.sidecar.routes[0]!.pool.stats().total, 0, 'the half-open connect was destroyed');
});

it('tcp mode: a client that resets while the upstream connect hangs cancels the connect (not counted as a failure)', async (t) => {
  if (!(await requireChaos(t))) return;
  const up = await echoServer();
  const sc = await startTestSidecar({ routes: [tcpRoute(up.port, { connectTimeoutMs: 5000 })] });
  const hole = await dropSyns(up.port);
  t.after(async () => {
    await hole.remove();
    await sc.stop();
    await up.close();
  });
  const pool = sc.sidecar.routes[0]!.pool;
  const client = net.connect(sc.port(), '127.0.0.1');
  client.on('error', () => {});
  await new Promise<void>((resolve) => client.once('connect', () => resolve()));
  while (pool.stats().connecting === 0) await new Promise((r) => setImmediate(r));
  // A RST, not a FIN: a FIN is only a half-close (the client may still wait for a reply), so it is passed on
  // to the upstream once connected rather than cancelling the connect.
  client.resetAndDestroy();
  while (pool.stats().total > 0) await new Promise((r) => setImmediate(r));
  const text = await sc.sidecar.registry.metrics();
  assert.doesNotMatch(text, /upstream_connect_failures_total\{route="r1",reason="[a-z_]+"\} [1-9]/);
});
