/**
 * What an operator sees when upstream peers die silently: /metrics scraped before and after an nftables
 * blackhole kills N established upstream connections (some idle, some with data in flight).
 * closed_total{reason} rises by exactly the killed count, dead_peer_detection_seconds gets that many
 * observations inside the bound the kernel timer model gives for this config, and the gauges come back to
 * the surviving connections (the warm spare). Before the deaths, /debug/connections and `doctor` already
 * show the in-flight sockets stuck (TCP_INFO). Both drop variants: output and input hook.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { ConnectionsPage, ConnectionView } from '../../src/admin/index.js';
import { cliMain, EXIT } from '../../src/cli/index.js';
import { idleDetectionMs } from '../../src/liveness/index.js';
import { echoServer } from '../fixtures/upstreams.js';
import type { Fixture } from '../fixtures/upstreams.js';
import { blackhole, requireChaos } from '../helpers/chaos.js';
import type { Hook } from '../helpers/chaos.js';
import { request, samples, valueOf } from '../helpers/scrape.js';
import type { Sample } from '../helpers/scrape.js';
import { connectClient, readUntil, startTestSidecar, tcpRoute, whenClosed } from '../helpers/sidecar.js';
import type { TestSidecar } from '../helpers/sidecar.js';

const KEEPALIVE = { idleMs: 1000, intervalMs: 1000, probes: 2, userTimeoutMs: 2000 };
const IDLE_N = 3;
const IN_FLIGHT_N = 2;
const P = 'keepalive_sidecar_';
/** Kernel timer model for this config (liveness/detection-time.ts): idle 1 s + ticks until UT 2 s = 2 s. */
const IDLE_BOUND_S = idleDetectionMs({ isKeepaliveOn: true, idleSec: 1, intvlSec: 1, probes: 2, userTimeoutMs: KEEPALIVE.userTimeoutMs }) / 1000;
/** In flight: UT after the write, which follows the last byte received by a few ms. */
const IN_FLIGHT_BOUND_S = KEEPALIVE.userTimeoutMs / 1000;
/** Timer slack (jiffies, RTO clamping, event loop) allowed over the model; also the histogram bucket we check. */
const BUCKET_S = 3;

describe('metrics under silent upstream death (nftables blackhole)', () => {
  let upstream: Fixture;
  let sc: TestSidecar;

  before(async () => {
    upstream = await echoServer();
    sc = await startTestSidecar({ routes: [tcpRoute(upstream.port, { keepalive: KEEPALIVE, warmSpares: 1 })] });
  });
  after(async () => {
    await sc.stop();
    await upstream.close();
  });

  async function scrape(): Promise<Sample[]> {
    const res = await request(sc.sidecar.admin!.port, '/metrics');
    assert.equal(res.status, 200);
    return samples(res.body);
  }

  /** Waits (on pool events) until the warm spare is connected and idle again. */
  async function spareReady(): Promise<void> {
    const pool = sc.sidecar.routes[0]!.pool;
    for (let i = 0; i < 20 && !(pool.stats().idle === 1 && pool.stats().connecting === 0); i++) await once(pool, 'connected');
    assert.equal(pool.stats().idle, 1, 'the warm spare is idle');
  }

  const claimed = new Set<number>();
  async function openProxied(): Promise<{ client: net.Socket; upstreamLocalPort: number }> {
    const pool = sc.sidecar.routes[0]!.pool;
    const client = await connectClient(sc.port());
    client.write('ping\n');
    await readUntil(client, 'ping\n');
    const conn = [...pool.connections()].find((c) => c.state.state === 'leased' && !claimed.has(c.id));
    assert.ok(conn, 'the proxied connection has a leased upstream socket');
    claimed.add(conn.id);
    return { client, upstreamLocalPort: conn.socket.localPort! };
  }

  /**
   * Polls /debug/connections (every 50 ms, at most 1.5 s) until every socket on `ports` shows in TCP_INFO
   * that the peer is not answering: retransmissions, backoff or probes out.
   */
  async function whenVisiblyStuck(ports: readonly number[]): Promise<ConnectionView[]> {
    let last: ConnectionView[] = [];
    for (let i = 0; i < 30; i++) {
      const res = await request(sc.sidecar.debug!.port, '/debug/connections');
      last = (JSON.parse(res.body) as ConnectionsPage).connections.filter((c) => ports.some((p) => c.local?.endsWith(`:${p}`)));
      // Unacknowledged data alone is normal; a retransmission, backoff or a probe out means no answer came.
      const stuck = (c: ConnectionView): boolean => c.tcpInfo !== null && (c.tcpInfo.retransmits > 0 || c.tcpInfo.backoff > 0 || c.tcpInfo.probes > 0);
      if (last.length === ports.length && last.every(stuck)) return last;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.fail(`the in-flight sockets never looked stuck: ${JSON.stringify(last.map((c) => c.tcpInfo))}`);
  }

  for (const hook of ['output', 'input'] as Hook[]) {
    it(`${hook} hook: ${IDLE_N} idle + ${IN_FLIGHT_N} in-flight deaths are counted, timed and cleared from the gauges`, async (t) => {
      if (!(await requireChaos(t))) return;
      const idle = await Promise.all(Array.from({ length: IDLE_N }, () => openProxied()));
      const busy = await Promise.all(Array.from({ length: IN_FLIGHT_N }, () => openProxied()));
      await spareReady();
      const before = await scrape();
      const g = (s: Sample[], state: string): number => valueOf(s, `${P}upstream_connections`, { route: 'r1', state });
      assert.equal(g(before, 'active'), IDLE_N + IN_FLIGHT_N);
      assert.equal(g(before, 'idle'), 1);
      assert.equal(valueOf(before, `${P}downstream_connections`, { route: 'r1' }), IDLE_N + IN_FLIGHT_N);

      const all = [...idle, ...busy];
      t.after(() => {
        for (const c of all) c.client.destroy();
      });
      const closed = all.map((c) => whenClosed(c.client));
      const hole = await blackhole(upstream.port, all.map((c) => c.upstreamLocalPort), hook);
      t.after(() => hole.remove());
      const t0 = performance.now();
      for (const b of busy) b.client.write('written after the peer died\n');

      // Visible before it is declared dead: TCP_INFO in /debug/connections, and doctor's listing (a warning,
      // not a problem: the sidecar is doing its job).
      const stuck = await whenVisiblyStuck(busy.map((b) => b.upstreamLocalPort));
      t.diagnostic(`in-flight TCP_INFO before death: ${stuck.map((c) => `unacked ${c.tcpInfo!.unacked} retransmits ${c.tcpInfo!.retransmits} backoff ${c.tcpInfo!.backoff} probes ${c.tcpInfo!.probes}`).join('; ')}`);
      let out = '';
      const code = await cliMain(['doctor', '--admin-url', `http://127.0.0.1:${sc.sidecar.admin!.port}`, '--debug-url', `http://127.0.0.1:${sc.sidecar.debug!.port}`], { env: {}, out: (x) => (out += x), err: () => {} });
      assert.equal(code, EXIT.ok, out);
      assert.match(out, /the peer is not answering right now/);

      const results = await Promise.all(closed);
      for (const r of results) assert.equal(r.err?.code, 'ECONNRESET');
      t.diagnostic(`app connections reset after ${results.map((r) => Math.round(r.at - t0)).join(', ')} ms`);

      const afterwards = await scrape();
      const d = (name: string, m: Record<string, string>): number => valueOf(afterwards, P + name, m) - valueOf(before, P + name, m);
      const cases = [
        { reason: 'keepalive_timeout', n: IDLE_N, bound: IDLE_BOUND_S },
        { reason: 'user_timeout', n: IN_FLIGHT_N, bound: IN_FLIGHT_BOUND_S },
      ];
      for (const { reason, n, bound } of cases) {
        const m = { route: 'r1', reason };
        assert.equal(d('upstream_connections_closed_total', m), n, `closed_total{reason=${reason}}`);
        assert.equal(d('dead_peer_detection_seconds_count', m), n, `detection observations for ${reason}`);
        assert.equal(d('dead_peer_detection_seconds_bucket', { ...m, le: String(BUCKET_S) }), n, `every ${reason} detection <= ${BUCKET_S} s`);
        assert.equal(d('dead_peer_detection_seconds_bucket', { ...m, le: '1' }), 0, `no ${reason} detection before 1 s`);
        assert.equal(d('downstream_resets_total', m), n, `downstream_resets_total{reason=${reason}}`);
        const mean = d('dead_peer_detection_seconds_sum', m) / n;
        t.diagnostic(`${reason}: ${n} detections, mean ${mean.toFixed(2)} s (model ${bound} s)`);
        assert.ok(mean >= bound - 0.1 && mean <= bound + 1, `mean detection ${mean.toFixed(2)} s vs model ${bound} s`);
      }
      assert.equal(d('upstream_connections_closed_total', { route: 'r1', reason: 'no_ack' }), 0);
      assert.ok((await hole.dropped()) > 0, 'the blackhole dropped packets');

      // Gauges: the killed ones are gone, the untouched spare is still there.
      assert.equal(g(afterwards, 'active'), 0);
      assert.equal(g(afterwards, 'connecting'), 0);
      assert.equal(g(afterwards, 'idle'), 1);
      assert.equal(valueOf(afterwards, `${P}downstream_connections`, { route: 'r1' }), 0);
      await hole.remove();
    });
  }
});
