/**
 * A dead pod among several endpoints (issue 14): one of three endpoints (127.0.0.2-4, one port, names from
 * dnsmasq in a test namespace) has its flows blackholed AND its new SYNs dropped (nft, input hook: packets
 * leave and vanish). http under 100 req/s: no request fails, the endpoint is ejected fast, later requests
 * never wait on it, and the other endpoints' connections are untouched. tcp: its app connections are reset
 * as before, new app connections go only to the live endpoints.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import type { CloseInfo, UpstreamConn } from '../../src/pool/index.js';
import { firstEjection, httpEndpoints, tcpEchoEndpoints } from '../fixtures/endpoints.js';
import { request } from '../fixtures/http-upstreams.js';
import { blackholeEndpoint, requireChaos } from '../helpers/chaos.js';
import { requireDns, startDns } from '../helpers/dns.js';
import { connectClient, metricValue, readUntil, startTestSidecar, waitFor, whenClosed } from '../helpers/sidecar.js';

const NAME = 'pods.test';
const ADDRS = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
const DEAD = '127.0.0.3';
const UT = 2000;
const KEEPALIVE = { idleMs: 1000, intervalMs: 1000, probes: 2, userTimeoutMs: UT };

async function canRun(t: TestContext): Promise<boolean> {
  return (await requireChaos(t)) && (await requireDns(t));
}

interface Closed {
  readonly conn: UpstreamConn;
  readonly info: CloseInfo;
  readonly at: number;
}

describe('several endpoints: one dead pod (nft blackhole + SYN drop)', () => {
  it('http, 100 req/s: 0 failed GETs, ejected fast, later requests never wait on it, the other endpoints untouched', async (t) => {
    if (!(await canRun(t))) return;
    const up = await httpEndpoints(ADDRS);
    t.after(() => up.close());
    const dns = await startDns({ [NAME]: ADDRS });
    t.after(() => dns.stop());
    const sc = await startTestSidecar({
      routes: [{ name: 'h1', mode: 'http', listen: { port: 0 }, keepalive: KEEPALIVE, upstream: { host: NAME, port: up.port, dnsServers: [dns.server], resolveIntervalMs: 1000 } }],
    });
    t.after(() => sc.stop());
    const pool = sc.sidecar.routes[0]!.pool;
    const closes: Closed[] = [];
    pool.on('closed', (conn, info) => closes.push({ conn, info, at: performance.now() }));
    const ejection = firstEjection(pool.endpoints, DEAD);

    // 100 req/s for 4 s (400 requests, each bounded by a 10 s client timeout); the pod dies at 1 s.
    const results: Array<{ start: number; ms: number; status: number; body: string }> = [];
    const inflight: Array<Promise<void>> = [];
    let holeAt = 0;
    const t0 = performance.now();
    let liveConnsBefore: UpstreamConn[] = [];
    for (let i = 0; i < 400; i++) {
      const due = t0 + i * 10;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      if (i === 100) {
        liveConnsBefore = [...pool.connections()].filter((c) => c.endpoint.address !== DEAD);
        const hole = await blackholeEndpoint(DEAD, up.port, 'input');
        t.after(() => hole.remove());
        holeAt = performance.now();
      }
      const start = performance.now();
      inflight.push(
        request(sc.port(), { path: `/r${i}`, timeoutMs: 10_000 }).then(
          (r) => void results.push({ start, ms: r.ms, status: r.status, body: r.body.toString() }),
          (err: Error) => void results.push({ start, ms: performance.now() - start, status: 0, body: err.message }),
        ),
      );
    }
    await Promise.all(inflight);

    const failed = results.filter((r) => r.status !== 200);
    const after = ejection.at === undefined ? [] : results.filter((r) => r.start > ejection.at! + 5);
    const worstAfter = Math.max(0, ...after.map((r) => r.ms));
    const deadCloses = closes.filter((c) => c.conn.endpoint.address === DEAD);
    const firstEvidence = Math.min(...deadCloses.map((c) => c.at));
    t.diagnostic(
      `${results.length} requests, ${failed.length} failed; ejected (${ejection.reason}) ${Math.round((ejection.at ?? NaN) - holeAt)} ms after the blackhole, ` +
        `${Math.round((ejection.at ?? NaN) - firstEvidence)} ms after the first dead-connection close; ${after.length} requests after it, worst ${Math.round(worstAfter)} ms; ` +
        `dead endpoint's closes: ${[...new Set(deadCloses.map((c) => c.info.reason))].join(',')}; retries ${await metricValue(sc, 'keepalive_sidecar_http_retries_total', { route: 'h1', reason: 'no_ack' })} (no_ack)`,
    );
    assert.equal(failed.length, 0, `failed: ${failed.slice(0, 5).map((r) => `${r.status} ${r.body}`).join(' | ')}`);
    assert.ok(ejection.at !== undefined, 'the dead endpoint was ejected');
    assert.ok(ejection.at - holeAt <= 1000, `ejected ${Math.round(ejection.at - holeAt)} ms after the blackhole`);
    assert.ok(ejection.at - firstEvidence <= 1000, 'within 1 s of the first evidence');
    assert.ok(after.every((r) => r.body !== DEAD), 'nothing after the ejection was served by the dead endpoint');
    // Trapped would mean >= earlyRetry.afterMs (300 ms) on a dead connection, or connectTimeoutMs on a SYN.
    assert.ok(worstAfter < 300, `worst request after the ejection ${Math.round(worstAfter)} ms`);
    // The other two endpoints: not one of their connections closed (no sibling eviction across endpoints).
    const otherCloses = closes.filter((c) => c.conn.endpoint.address !== DEAD);
    assert.deepEqual(otherCloses.map((c) => `${c.conn.endpoint.address}:${c.conn.localPort} ${c.info.reason}`), []);
    assert.ok(liveConnsBefore.length > 0 && liveConnsBefore.every((c) => c.state.state !== 'closed'), 'their connections from before are all still open');
    for (const a of ADDRS.filter((x) => x !== DEAD)) assert.ok(up.byAddress.get(a)!.sockets.every((s) => !s.destroyed), `${a}: no server-side socket closed`);
    assert.ok((await metricValue(sc, 'keepalive_sidecar_upstream_endpoint_ejections_total', { route: 'h1', reason: ejection.reason! })) >= 1);
    assert.equal(await metricValue(sc, 'keepalive_sidecar_upstream_endpoints', { route: 'h1', state: 'ejected' }), 1);
    assert.ok(sc.logs.some((l) => l.msg === 'endpoint ejected' && l.endpoint === `${DEAD}:${up.port}`));
  });

  it('tcp: the dead endpoint\'s app connections are reset as before; new app connections go only to the live ones', async (t) => {
    if (!(await canRun(t))) return;
    const up = await tcpEchoEndpoints(ADDRS);
    t.after(() => up.close());
    const dns = await startDns({ [NAME]: ADDRS });
    t.after(() => dns.stop());
    const sc = await startTestSidecar({
      routes: [{ name: 't1', mode: 'tcp', listen: { port: 0 }, keepalive: KEEPALIVE, upstream: { host: NAME, port: up.port, dnsServers: [dns.server] } }],
    });
    t.after(() => sc.stop());
    const pool = sc.sidecar.routes[0]!.pool;
    /** Upstream connections already matched to an app connection. */
    const usedIds = new Set<number>();
    // App connections until at least two ride on the doomed endpoint (P2C by active connections; bounded).
    const apps: Array<{ s: net.Socket; ep: string; closed: ReturnType<typeof whenClosed> }> = [];
    for (let i = 0; i < 30 && apps.filter((a) => a.ep === DEAD).length < 2; i++) {
      const s = await connectClient(sc.port());
      const closed = whenClosed(s);
      s.write(`hello${i}`);
      await readUntil(s, `hello${i}`);
      const mine = [...pool.connections()].find((c) => c.state.state === 'leased' && !usedIds.has(c.id));
      assert.ok(mine);
      usedIds.add(mine.id);
      apps.push({ s, ep: mine.endpoint.address, closed });
    }
    t.after(() => apps.forEach((a) => a.s.destroy()));
    const spread = ADDRS.map((a) => `${a}: ${apps.filter((x) => x.ep === a).length}`).join(', ');
    assert.ok(apps.filter((a) => a.ep === DEAD).length >= 2, spread);
    const hole = await blackholeEndpoint(DEAD, up.port, 'input');
    t.after(() => hole.remove());
    const t0 = performance.now();
    // Data in flight on the dead endpoint's connections: TCP_USER_TIMEOUT ends them.
    for (const a of apps.filter((x) => x.ep === DEAD)) a.s.write('into the void');
    const dead = apps.filter((a) => a.ep === DEAD);
    const ends = await Promise.all(dead.map((a) => a.closed));
    const worst = Math.max(...ends.map((e) => e.at - t0));
    for (const e of ends) assert.equal(e.err?.code, 'ECONNRESET');
    assert.ok(worst <= KEEPALIVE.idleMs + UT + 1000, `${Math.round(worst)} ms`);
    assert.ok(pool.endpoints.counts().ejected === 1, 'the dead endpoint is ejected');
    // The live endpoints' app connections still echo.
    for (const a of apps.filter((x) => x.ep !== DEAD)) {
      a.s.write('still');
      await readUntil(a.s, 'still');
    }
    // New app connections: only the live endpoints.
    const fresh: string[] = [];
    for (let i = 0; i < 9; i++) {
      const s = await connectClient(sc.port());
      t.after(() => s.destroy());
      s.write(`new${i}`);
      await readUntil(s, `new${i}`);
      const mine = [...pool.connections()].find((c) => c.state.state === 'leased' && !usedIds.has(c.id));
      assert.ok(mine);
      usedIds.add(mine.id);
      fresh.push(mine.endpoint.address);
    }
    t.diagnostic(`before: ${spread}; dead endpoint's ${dead.length} app connections reset after ${Math.round(worst)} ms; 9 new app connections went to ${[...new Set(fresh)].sort().join(', ')}`);
    assert.ok(fresh.every((a) => a !== DEAD), fresh.join(','));
    assert.ok((await metricValue(sc, 'keepalive_sidecar_downstream_resets_total', { route: 't1', reason: 'user_timeout' })) >= 2);
  });
  it('http, several endpoints: an app that goes away while its request connects to an endpoint without idle connections frees the slot at once (the checkout has a signal)', async (t) => {
    if (!(await canRun(t))) return;
    const [live, dead] = ['127.0.0.2', '127.0.0.3'];
    const up = await httpEndpoints([live, dead]);
    t.after(() => up.close());
    const dns = await startDns({ [NAME]: [live, dead] });
    t.after(() => dns.stop());
    const sc = await startTestSidecar({
      routes: [{ name: 'h1', mode: 'http', listen: { port: 0 }, connectTimeoutMs: 5000, upstream: { host: NAME, port: up.port, dnsServers: [dns.server], resolveIntervalMs: 1000 } }],
    });
    t.after(() => sc.stop());
    const pool = sc.sidecar.routes[0]!.pool;
    for (let i = 0; i < 6; i++) assert.equal((await request(sc.port(), { timeoutMs: 5000 })).status, 200);
    // Sequential requests may all have gone to one endpoint (P2C prefers the one with an idle connection):
    // the live one must have an idle connection before its peer goes dark (bounded).
    const liveEp = [...pool.endpoints.list()].find((e) => e.address === live)!;
    for (let i = 0; i < 40 && liveEp.conns.idle.size === 0; i++) {
      await Promise.all(Array.from({ length: 4 }, async () => assert.equal((await request(sc.port(), { timeoutMs: 5000 })).status, 200)));
    }
    assert.ok(liveEp.conns.idle.size > 0, 'the live endpoint got an idle connection during the warm-up');
    // The dead pod's connects now hang; its idle connections are gone (not ejected: nothing died yet).
    const hole = await blackholeEndpoint(dead, up.port, 'input');
    t.after(() => hole.remove());
    const ep = [...pool.endpoints.list()].find((e) => e.address === dead)!;
    for (const c of [...ep.conns.idle]) pool.fail(c, 'idle_evicted');
    // P2C picks the dead endpoint (no idle connection: a connect) about every other time while the live one
    // has idle connections, so idleCount > 0. At most 12 tries, each bounded.
    let freedMs: number | undefined;
    for (let i = 0; i < 12 && freedMs === undefined; i++) {
      assert.ok(pool.idleCount > 0, `the live endpoint has idle connections (try ${i})`);
      const c = await connectClient(sc.port());
      c.on('error', () => {});
      c.write(`GET /try${i} HTTP/1.1\r\nHost: x\r\n\r\n`);
      await new Promise((resolve) => setTimeout(resolve, 150));
      if (ep.conns.connecting.size > 0) {
        const t0 = performance.now();
        c.destroy();
        await waitFor(() => ep.conns.connecting.size === 0, 1000, 'the connect to be given up when the app went away');
        freedMs = performance.now() - t0;
      } else {
        c.destroy();
      }
    }
    assert.ok(freedMs !== undefined, 'a request was sent to connect to the dead endpoint');
    t.diagnostic(`connect given up ${Math.round(freedMs)} ms after the app went away (connectTimeoutMs 5000)`);
    assert.equal(ep.state, 'active', 'a connect abandoned for a gone app is no evidence against the endpoint');
  });
});
