/**
 * TCP mode against a silently dead upstream: an nftables rule drops the established upstream flow (both
 * directions, matched on its ports) while new connections keep working. Both drop variants run: output hook
 * (the local stack cannot send) and input hook (packets leave and vanish, as in a real partition).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { CloseInfo } from '../../src/pool/index.js';
import { echoServer } from '../fixtures/upstreams.js';
import type { Fixture } from '../fixtures/upstreams.js';
import { blackhole, requireChaos } from '../helpers/chaos.js';
import type { Hook } from '../helpers/chaos.js';
import { connectClient, readUntil, startTestSidecar, tcpRoute, whenClosed } from '../helpers/sidecar.js';
import type { TestSidecar } from '../helpers/sidecar.js';

const KEEPALIVE = { idleMs: 1000, intervalMs: 1000, probes: 2, userTimeoutMs: 2000 };

describe('tcp mode: silent upstream death (nftables blackhole)', () => {
  let upstream: Fixture;
  let sc: TestSidecar;
  const closes: CloseInfo[] = [];

  before(async () => {
    upstream = await echoServer();
    sc = await startTestSidecar({ routes: [tcpRoute(upstream.port, { keepalive: KEEPALIVE })] });
    sc.sidecar.routes[0]!.pool.on('closed', (_c, info) => closes.push(info));
  });
  after(async () => {
    await sc.stop();
    await upstream.close();
  });

  /** Opens a client through the sidecar, proves the path with one echo, returns it and its upstream port. */
  async function openProxied(): Promise<{ client: import('node:net').Socket; upstreamLocalPort: number }> {
    const pool = sc.sidecar.routes[0]!.pool;
    const before = new Set([...pool.connections()].map((c) => c.id));
    const client = await connectClient(sc.port());
    client.write('ping\n');
    await readUntil(client, 'ping\n');
    const conn = [...pool.connections()].find((c) => !before.has(c.id) && c.state.state === 'leased');
    assert.ok(conn, 'the proxied connection has a leased upstream socket');
    return { client, upstreamLocalPort: conn.socket.localPort! };
  }

  async function assertNewConnectionWorks(): Promise<void> {
    const c = await connectClient(sc.port());
    c.write('again\n');
    await readUntil(c, 'again\n');
    c.destroy();
  }

  for (const hook of ['output', 'input'] as Hook[]) {
    it(`idle (${hook} hook): the client gets ECONNRESET within 4.5 s, reason keepalive_timeout`, async (t) => {
      if (!(await requireChaos(t))) return;
      const { client, upstreamLocalPort } = await openProxied();
      const closed = whenClosed(client);
      const hole = await blackhole(upstream.port, [upstreamLocalPort], hook);
      t.after(() => hole.remove());
      const t0 = performance.now();
      const seen = closes.length;
      const { err, at } = await closed;
      const elapsed = at - t0;
      t.diagnostic(`reset after ${Math.round(elapsed)} ms`);
      assert.equal(err?.code, 'ECONNRESET');
      assert.ok(elapsed <= 4500, `reset after ${Math.round(elapsed)} ms (bound 4500)`);
      const info = closes.slice(seen).find((c) => c.reason !== 'downstream_closed');
      assert.ok(info, 'the upstream close was recorded');
      // Idle: nothing of ours was in flight, so the keepalive timer (bounded by UT) declared it dead.
      assert.ok(['keepalive_timeout', 'user_timeout'].includes(info.reason), `reason ${info.reason}`);
      assert.equal(info.reason, 'keepalive_timeout');
      assert.ok((await hole.dropped()) > 0, 'the blackhole dropped the probes');
      await assertNewConnectionWorks();
      const line = sc.logs.find((l) => l.msg === 'dead upstream peer detected, connection dropped' && l.reason === 'keepalive_timeout');
      assert.ok(line, 'a warn line names the dead peer');
      assert.equal(line.level, 'warn');
    });

    it(`in flight (${hook} hook): reset within UT + 1 s with reason user_timeout; without the sidecar the client still hangs`, async (t) => {
      if (!(await requireChaos(t))) return;
      const { client, upstreamLocalPort } = await openProxied();
      // The comparison: the same client straight to the upstream, kernel defaults (no keepalive, no UT).
      const direct = await connectClient(upstream.port);
      direct.write('ping\n');
      await readUntil(direct, 'ping\n');
      const directClosed = whenClosed(direct);
      let directEnded = false;
      void directClosed.then(() => (directEnded = true));

      const closed = whenClosed(client);
      const hole = await blackhole(upstream.port, [upstreamLocalPort, direct.localPort!], hook);
      t.after(() => hole.remove());
      const seen = closes.length;
      const t0 = performance.now();
      client.write('data written after the peer died\n');
      direct.write('data written after the peer died\n');
      const { err, at } = await closed;
      const elapsed = at - t0;
      t.diagnostic(`reset after ${Math.round(elapsed)} ms`);
      assert.equal(err?.code, 'ECONNRESET');
      assert.ok(elapsed <= KEEPALIVE.userTimeoutMs + 1000, `reset after ${Math.round(elapsed)} ms (bound ${KEEPALIVE.userTimeoutMs + 1000})`);
      const info = closes.slice(seen).find((c) => c.reason !== 'downstream_closed');
      assert.equal(info?.reason, 'user_timeout');
      await assertNewConnectionWorks();

      // Without the sidecar: kernel defaults retransmit for ~15 minutes (tcp_retries2 = 15) and keepalive
      // (if anyone enabled it) would wait 7200 s. At the sidecar's bound the direct client is still hanging.
      const waitUntil = t0 + 4500;
      await new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, waitUntil - performance.now())));
      assert.equal(directEnded, false, 'the direct client noticed nothing');
      assert.equal(direct.destroyed, false);
      direct.destroy();
    });
  }
});
