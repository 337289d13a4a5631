/**
 * Several endpoints per route (issue 14), on real sockets: upstream servers on 127.0.0.2-127.0.0.5 sharing
 * one port, a real DNS server (dnsmasq in a test namespace, test/helpers/dns.ts) as upstream.dnsServers.
 * Spread (P2C), re-resolution (a removed address loses its idle connections with endpoint_removed, a new
 * one takes traffic), resolver down (the last good set serves), a name that never resolved (503 / reset).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import type { CloseInfo, Endpoint, Lease, PoolOptions, ResolvedAddress, UpstreamConn } from '../../src/pool/index.js';
import { AcquireError } from '../../src/errors.js';
import { createResolver, Pool } from '../../src/pool/index.js';
import { FakeClock } from '../../src/util/fake-clock.js';
import { httpEndpoints, tcpEchoEndpoints } from '../fixtures/endpoints.js';
import type { EndpointGroup } from '../fixtures/endpoints.js';
import { request } from '../fixtures/http-upstreams.js';
import { requireDns, startDns } from '../helpers/dns.js';
import type { TestDns } from '../helpers/dns.js';
import { configFrom, metricValue, startTestSidecar, tcpRoute, waitFor, whenClosed } from '../helpers/sidecar.js';
import type { TestSidecar } from '../helpers/sidecar.js';

const NAME = 'svc.test';

interface Rig {
  readonly dns: TestDns;
  readonly up: EndpointGroup;
  readonly sc: TestSidecar;
  readonly closes: Array<{ conn: UpstreamConn; info: CloseInfo; at: number }>;
}

async function rig(t: TestContext, addrs: string[], upAddrs: string[] = addrs, upstream: Record<string, unknown> = {}): Promise<Rig> {
  const up = await httpEndpoints(upAddrs);
  t.after(() => up.close());
  const dns = await startDns({ [NAME]: addrs });
  t.after(() => dns.stop());
  const sc = await startTestSidecar({
    routes: [{ name: 'h1', mode: 'http', listen: { port: 0 }, upstream: { host: NAME, port: up.port, dnsServers: [dns.server], resolveIntervalMs: 1000, ...upstream } }],
  });
  t.after(() => sc.stop());
  const closes: Rig['closes'] = [];
  sc.sidecar.routes[0]!.pool.on('closed', (conn, info) => closes.push({ conn, info, at: performance.now() }));
  return { dns, up, sc, closes };
}

/** `n` GETs, `concurrency` at a time, through a keep-alive agent; returns each body (the serving address). */
async function load(port: number, n: number, concurrency: number): Promise<string[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const out: string[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) {
      next++;
      const r = await request(port, { agent, timeoutMs: 5000 });
      assert.equal(r.status, 200, `status ${r.status} ${r.body.toString()}`);
      out.push(r.body.toString());
    }
  }));
  agent.destroy();
  return out;
}

function shares(bodies: readonly string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const b of bodies) m.set(b, (m.get(b) ?? 0) + 1 / bodies.length);
  return m;
}

async function debugEndpoints(sc: TestSidecar): Promise<Array<Record<string, unknown>>> {
  const d = sc.sidecar.debug!;
  const res = await fetch(`http://${d.address}:${d.port}/debug/endpoints`);
  const body = (await res.json()) as { routes: Array<{ endpoints: Array<Record<string, unknown>> }> };
  return body.routes[0]!.endpoints;
}

describe('several endpoints per route (dnsmasq + 127.0.0.x)', () => {
  it('a name with 3 addresses: load spreads over all three (each >= 20 %), /debug/endpoints and metrics show them', async (t) => {
    if (!(await requireDns(t))) return;
    const addrs = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
    const { sc } = await rig(t, addrs);
    const bodies = await load(sc.port(), 600, 8);
    const s = shares(bodies);
    t.diagnostic(`shares of 600 requests: ${[...s].map(([a, v]) => `${a} ${(v * 100).toFixed(1)} %`).join(', ')}`);
    for (const a of addrs) assert.ok((s.get(a) ?? 0) >= 0.2, `${a}: ${((s.get(a) ?? 0) * 100).toFixed(1)} %`);
    const eps = await debugEndpoints(sc);
    assert.deepEqual(eps.map((e) => `${String(e.address)} ${String(e.state)}`).sort(), addrs.map((a) => `${a} active`));
    assert.ok(eps.every((e) => typeof e.connections === 'number' && (e.connections as number) > 0));
    assert.equal(await metricValue(sc, 'keepalive_sidecar_upstream_endpoints', { route: 'h1', state: 'active' }), 3);
    assert.ok((await metricValue(sc, 'keepalive_sidecar_upstream_resolutions_total', { route: 'h1', outcome: 'changed' })) >= 1);
    const text = await sc.sidecar.registry.metrics();
    assert.doesNotMatch(text.split('\n').filter((l) => l.includes('endpoint')).join('\n'), /127\.0\.0\./, 'no address in any endpoint metric');
  });

  it('an address removed from DNS and a new one added: within one re-resolve interval the new one takes traffic and the old one\'s idle connections are gone (endpoint_removed)', async (t) => {
    if (!(await requireDns(t))) return;
    const { dns, up, sc, closes } = await rig(t, ['127.0.0.2', '127.0.0.3'], ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
    await load(sc.port(), 100, 4);
    const pool = sc.sidecar.routes[0]!.pool;
    const oldConns = [...pool.connections()].filter((c) => c.endpoint.address === '127.0.0.3');
    assert.ok(oldConns.length > 0, 'connections to 127.0.0.3 exist');
    // The round that applies the change, timed by its own events: the first request to the new endpoint is
    // measured from there (slow start), the round itself from the DNS change (one interval).
    let addedAt: number | undefined;
    let removedEventAt: number | undefined;
    pool.endpoints.on('added', (e) => void (e.address === '127.0.0.4' && (addedAt = performance.now())));
    pool.endpoints.on('removed', (e) => void (e.address === '127.0.0.3' && (removedEventAt = performance.now())));
    const t0 = performance.now();
    await dns.setHosts({ [NAME]: ['127.0.0.2', '127.0.0.4'] });
    const newHits = up.byAddress.get('127.0.0.4')!;
    let firstNewAt: number | undefined;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    t.after(() => agent.destroy());
    // Bounded: at most 300 requests, 10 ms apart, 3 s.
    for (let i = 0; i < 300 && firstNewAt === undefined; i++) {
      const r = await request(sc.port(), { agent, timeoutMs: 5000 });
      assert.equal(r.status, 200);
      if (newHits.hits > 0) firstNewAt = performance.now();
      else await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok(firstNewAt !== undefined, 'the new endpoint took traffic');
    const takeMs = firstNewAt - t0;
    await waitFor(() => oldConns.every((c) => c.state.state === 'closed'), 2000, 'the old endpoint\'s connections to close');
    const removedAt = Math.max(...closes.filter((c) => oldConns.includes(c.conn)).map((c) => c.at)) - t0;
    assert.ok(addedAt !== undefined && removedEventAt !== undefined, 'one round added and removed');
    const roundMs = addedAt - t0;
    const sinceAddedMs = firstNewAt - addedAt;
    t.diagnostic(`new endpoint added ${Math.round(roundMs)} ms after the DNS change, its first request ${Math.round(sinceAddedMs)} ms later (${Math.round(takeMs)} ms in all); old endpoint's ${oldConns.length} idle connection(s) retired ${Math.round(removedAt)} ms after the change`);
    // The round: one interval (1 s, and the TTL is 1 s) plus scheduling on a busy box. The first request:
    // slow start begins at 10 % weight, so a few dozen requests at most (each one 10 ms apart).
    assert.ok(roundMs <= 2000, `round ${Math.round(roundMs)} ms after the change`);
    assert.ok(sinceAddedMs <= 2000, `first request ${Math.round(sinceAddedMs)} ms after the add`);
    // Retiring idle connections is part of the round itself (synchronous with its 'removed' event).
    assert.ok(removedAt - (removedEventAt - t0) <= 500, `retired ${Math.round(removedAt - (removedEventAt - t0))} ms after the round`);
    for (const c of oldConns) assert.equal(closes.find((x) => x.conn === c)?.info.reason, 'endpoint_removed');
    const eps = await debugEndpoints(sc);
    assert.deepEqual(eps.map((e) => e.address).sort(), ['127.0.0.2', '127.0.0.4'], 'the drained endpoint is forgotten');
    assert.ok(sc.logs.some((l) => l.msg === 'endpoint removed from DNS: idle connections retired, busy ones finish' && l.endpoint === `127.0.0.3:${up.port}`));
    assert.ok(sc.logs.some((l) => l.msg === 'endpoint added' && l.endpoint === `127.0.0.4:${up.port}`));
  });

  it('resolver down: the last good set keeps serving, with a warn and outcome="failed"', async (t) => {
    if (!(await requireDns(t))) return;
    const { dns, sc } = await rig(t, ['127.0.0.2', '127.0.0.3']);
    await load(sc.port(), 20, 2);
    await dns.kill();
    await waitFor(() => sc.logs.some((l) => l.msg === 'resolution failed: the last good endpoint set keeps serving'), 5000, 'the resolution failure log line');
    const bodies = await load(sc.port(), 60, 2);
    assert.deepEqual([...new Set(bodies)].sort(), ['127.0.0.2', '127.0.0.3']);
    assert.ok((await metricValue(sc, 'keepalive_sidecar_upstream_resolutions_total', { route: 'h1', outcome: 'failed' })) >= 1);
    const eps = await debugEndpoints(sc);
    assert.equal(eps.length, 2);
  });

  it('the resolver: A and AAAA with their TTL, and a short name found through resolv.conf\'s search list (ndots:5)', async (t) => {
    if (!(await requireDns(t))) return;
    const dns = await startDns({ 'svc.test': ['127.0.0.2', '127.0.0.3', '::1'] });
    t.after(() => dns.stop());
    const dir = mkdtempSync(path.join(tmpdir(), 'ks-resolv-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const conf = path.join(dir, 'resolv.conf');
    writeFileSync(conf, 'nameserver 192.0.2.1\nsearch nothere.test test\noptions ndots:5\n');
    const resolve = createResolver({ dnsServers: [dns.server], resolvConfPath: conf });
    const got = await resolve('svc');
    assert.deepEqual(got.map((a) => `${a.address}/${a.family}/${a.ttlSec}`).sort(), ['127.0.0.2/4/1', '127.0.0.3/4/1', '::1/6/1']);
    assert.deepEqual((await resolve('svc.test.')).map((a) => a.address).sort(), ['127.0.0.2', '127.0.0.3', '::1']);
    await assert.rejects(resolve('nope'), (err: NodeJS.ErrnoException) => err.code === 'ENOTFOUND' && /nope\.nothere\.test, nope\.test, nope/.test(err.message));
  });

  it('a name that never resolved: http 503 x-sidecar-error: resolve_failed, tcp reset, and a log line', async (t) => {
    if (!(await requireDns(t))) return;
    const dns = await startDns({ 'other.test': ['127.0.0.2'] });
    // nope.test: NXDOMAIN from the resolver.
    t.after(() => dns.stop());
    const upstream = { host: 'nope.test', port: 9, dnsServers: [dns.server] };
    const sc = await startTestSidecar({
      routes: [
        { name: 'h1', mode: 'http', listen: { port: 0 }, upstream },
        { name: 't1', mode: 'tcp', listen: { port: 0 }, upstream },
      ],
    });
    t.after(() => sc.stop());
    const r = await request(sc.port('h1'), { timeoutMs: 5000 });
    assert.equal(r.status, 503);
    assert.equal(r.headers['x-sidecar-error'], 'resolve_failed');
    assert.match(r.body.toString(), /resolve_failed/);
    const c = net.connect(sc.port('t1'), '127.0.0.1');
    const { err } = await whenClosed(c);
    assert.equal(err?.code, 'ECONNRESET');
    assert.equal(await metricValue(sc, 'keepalive_sidecar_downstream_resets_total', { route: 't1', reason: 'resolve_failed' }), 1);
    assert.ok(sc.logs.some((l) => l.msg === 'resolution failed: no endpoint set yet, requests fail with resolve_failed' && l.route === 'h1'));
  });
});

describe('pool over several endpoints (real sockets on 127.0.0.2-4, a fake resolver, a fake clock)', () => {
  const v4 = (...a: string[]): ResolvedAddress[] => a.map((address) => ({ address, family: 4 as const }));

  async function pool(t: TestContext, answer: () => ResolvedAddress[], port: number, extra: Record<string, unknown> = {}, opts: PoolOptions = {}): Promise<{ p: Pool; clock: FakeClock; closes: Array<{ conn: UpstreamConn; info: CloseInfo }> }> {
    const clock = new FakeClock();
    const route = configFrom({ routes: [tcpRoute(port, { upstream: { host: 'svc.test', port, resolveIntervalMs: 1000 }, ...extra })] }).routes[0]!;
    // A seeded generator: P2C's picks (and so the spread asserted below) are the same on every run.
    let seed = 42;
    const random = (): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const p = new Pool(route, clock, { idleTimeoutMs: 60_000, resolve: async () => answer(), random, ...opts });
    t.after(() => p.close());
    p.start();
    const closes: Array<{ conn: UpstreamConn; info: CloseInfo }> = [];
    p.on('closed', (conn, info) => closes.push({ conn, info }));
    await p.endpoints.start();
    return { p, clock, closes };
  }

  it('warm spares: an endpoint that hangs up on every spare backs off alone, the others keep their spares', async (t) => {
    // 127.0.0.2 accepts, writes an error and closes (redis at maxclients); 127.0.0.4 is healthy. The refill
    // back-off is per endpoint: before, the refusing endpoint's back-off timer held back every spare of the route.
    const up = await tcpEchoEndpoints(['127.0.0.4']);
    t.after(() => up.close());
    let refused = 0;
    const refuser = net.createServer((s) => {
      refused++;
      s.on('error', () => {});
      s.end('-ERR max number of clients reached\r\n');
    });
    refuser.listen(up.port, '127.0.0.2');
    await once(refuser, 'listening');
    t.after(() => refuser.close());
    const { p, clock, closes } = await pool(t, () => v4('127.0.0.2', '127.0.0.4'), up.port, { warmSpares: 2 });
    const at = (a: string): Endpoint => [...p.endpoints.list()].find((e) => e.address === a)!;
    await waitFor(() => closes.some((c) => c.conn.endpoint.address === '127.0.0.2') && at('127.0.0.4').conns.idle.size === 2, 3000, 'a refusal on .2 and two spares on .4');
    assert.ok(at('127.0.0.2').spareNotBefore > clock.now(), '.2 is in its spare back-off');
    // The fake clock stands still: .2's back-off never ends in this test. Leasing both spares of .4 must
    // still get .4 new spares at once.
    const leases = [await p.acquire(), await p.acquire()];
    assert.deepEqual(leases.map((l) => l.conn.endpoint.address), ['127.0.0.4', '127.0.0.4']);
    await waitFor(() => at('127.0.0.4').conns.idle.size === 2, 3000, 'two new spares on .4 while .2 backs off');
    const refusedBefore = refused;
    // .2's back-off ends: one new spare to it (it is refused again, and backs off longer).
    clock.advance(60_000);
    await waitFor(() => refused > refusedBefore, 3000, 'a spare to .2 after its back-off');
    assert.ok(refused <= refusedBefore + 2, `${refused - refusedBefore} connects to .2 after one back-off`);
    for (const l of leases) l.release();
  });

  it('a refused endpoint: every acquire still succeeds (the connect moves on), it is ejected once, later acquires avoid it; a probe restores it', async (t) => {
    // 127.0.0.3 has no server on the port: its connects are refused (RST), like a pod that is gone.
    const up = await tcpEchoEndpoints(['127.0.0.2', '127.0.0.4']);
    t.after(() => up.close());
    const fake = await pool(t, () => v4('127.0.0.2', '127.0.0.3', '127.0.0.4'), up.port);
    const { p } = fake;
    const leases = [];
    for (let i = 0; i < 30; i++) leases.push(await p.acquire());
    const used = new Set(leases.map((l) => l.conn.endpoint.address));
    assert.deepEqual([...used].sort(), ['127.0.0.2', '127.0.0.4']);
    const dead = [...p.endpoints.list()].find((e) => e.address === '127.0.0.3')!;
    assert.equal(dead.state, 'ejected');
    assert.equal(dead.ejections, 1);
    assert.match(dead.lastError ?? '', /connect_refused/);
    for (const l of leases) l.release();
    // The pod comes back: when the back-off (1 s +/-20 %) ends, one probe connect restores it (slow start).
    const back = net.createServer((c) => c.on('error', () => {}).pipe(c));
    t.after(() => back.close());
    back.listen(up.port, '127.0.0.3');
    await once(back, 'listening');
    const restored = once(p.endpoints, 'restored');
    const { clock } = fake;
    clock.advance(1200);
    await restored;
    assert.equal(dead.state, 'active');
    assert.ok(dead.weightAt(clock.now()) < 1, 'warming up');
    assert.equal(dead.conns.idle.size, 1, 'the probe connection stays as an idle connection');
  });

  it('sibling eviction is per endpoint: a dead-peer death retires the idle connections of its endpoint only', async (t) => {
    const up = await tcpEchoEndpoints(['127.0.0.2', '127.0.0.3']);
    t.after(() => up.close());
    const { p, closes } = await pool(t, () => v4('127.0.0.2', '127.0.0.3'), up.port);
    const leases = [];
    for (let i = 0; i < 12; i++) leases.push(await p.acquire());
    for (const l of leases) l.release();
    const idle = [...p.connections()];
    const onA = idle.filter((c) => c.endpoint.address === '127.0.0.2');
    const onB = idle.filter((c) => c.endpoint.address === '127.0.0.3');
    assert.ok(onA.length >= 2 && onB.length >= 1, `${onA.length} + ${onB.length}`);
    // A retry (a fresh connect) avoids the endpoint its request just failed on.
    for (let i = 0; i < 5; i++) {
      const retry = await p.acquire(undefined, { isFresh: true, avoid: onA[0]!.endpoint });
      assert.equal(retry.conn.endpoint.address, '127.0.0.3');
      retry.destroy('downstream_closed');
    }
    await waitFor(() => closes.length === 5, 2000, 'the retries\' connections to close');
    closes.length = 0;
    p.fail(onA[0]!, 'keepalive_timeout');
    await waitFor(() => onA.every((c) => closes.some((x) => x.conn === c)), 2000, 'the endpoint\'s idle connections to close');
    assert.deepEqual(closes.filter((c) => c.conn !== onA[0]).map((c) => `${c.conn.endpoint.address} ${c.info.reason}`), onA.slice(1).map(() => '127.0.0.2 sibling_evicted'));
    assert.ok(onB.every((c) => c.state.state === 'idle'), 'the other endpoint untouched');
    assert.equal(onA[0]!.endpoint.state, 'ejected');
  });

  it('a single endpoint (ClusterIP-like) keeps today\'s behaviour: tcp spares are not evicted, it stays in use', async (t) => {
    const up = await tcpEchoEndpoints(['127.0.0.2']);
    t.after(() => up.close());
    const { p, closes } = await pool(t, () => v4('127.0.0.2'), up.port);
    const leases = [await p.acquire(), await p.acquire(), await p.acquire()];
    for (const l of leases) l.release();
    const [first, ...rest] = [...p.connections()];
    p.fail(first!, 'user_timeout');
    await waitFor(() => closes.length === 1, 2000, 'the close');
    assert.ok(rest.every((c) => c.state.state === 'idle'), 'no sibling eviction for a tcp route with one endpoint');
    const again = await p.acquire();
    assert.equal(again.conn.endpoint.address, '127.0.0.2', 'panic threshold: the only endpoint is used');
    again.release();
  });

  it('an address gone from DNS: idle connections retired with endpoint_removed, a busy one finishes and is retired on release', async (t) => {
    const up = await tcpEchoEndpoints(['127.0.0.2', '127.0.0.3']);
    t.after(() => up.close());
    let answer = v4('127.0.0.2', '127.0.0.3');
    const { p, clock, closes } = await pool(t, () => answer, up.port);
    const leases = [];
    for (let i = 0; i < 10; i++) leases.push(await p.acquire());
    const busy = leases.find((l) => l.conn.endpoint.address === '127.0.0.3')!;
    for (const l of leases) if (l !== busy) l.release();
    const gone = [...p.connections()].filter((c) => c.endpoint.address === '127.0.0.3' && c !== busy.conn);
    answer = v4('127.0.0.2');
    clock.advance(1000);
    await waitFor(() => gone.every((c) => c.state.state === 'closed'), 2000, 'the removed endpoint\'s idle connections to go');
    assert.equal(busy.conn.state.state, 'leased', 'the busy one is left alone');
    busy.socket.write('still here');
    busy.release();
    await waitFor(() => closes.some((c) => c.conn === busy.conn), 2000, 'the busy one to be retired on release');
    const reasons = closes.filter((c) => c.conn.endpoint.address === '127.0.0.3').map((c) => c.info.reason);
    assert.ok(reasons.length === gone.length + 1 && reasons.every((r) => r === 'endpoint_removed'), `${reasons.join(',')} for ${gone.length} idle + 1 busy`);
    assert.deepEqual([...p.endpoints.list()].map((e) => e.address), ['127.0.0.2'], 'drained, then forgotten');
  });

  const ADDRS3 = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
  it('tcp warm spares are spread over the endpoints, and an app connection takes a spare rather than connecting', async (t) => {
    const up = await tcpEchoEndpoints(['127.0.0.2', '127.0.0.3', '127.0.0.4']);
    t.after(() => up.close());
    const { p } = await pool(t, () => v4('127.0.0.2', '127.0.0.3', '127.0.0.4'), up.port, { warmSpares: 3 });
    await waitFor(() => p.stats().idle === 3, 2000, '3 spares');
    assert.deepEqual([...p.endpoints.list()].map((e) => e.conns.idle.size), [1, 1, 1]);
    // A connect made for a waiting caller is leased the moment it connects; a spare goes idle first.
    let connectsForLease = 0;
    p.on('connected', (c) => void (c.state.state === 'leased' && connectsForLease++));
    const leases: Lease[] = [];
    for (let i = 0; i < 6; i++) {
      leases.push(await p.acquire());
      await waitFor(() => p.stats().idle + p.stats().connecting >= 3 && p.stats().connecting === 0, 2000, 'the spares to be refilled');
    }
    assert.equal(connectsForLease, 0, 'every app connection got a spare');
    const perEndpoint = ADDRS3.map((a) => leases.filter((l) => l.conn.endpoint.address === a).length);
    assert.ok(perEndpoint.every((n) => n >= 1), `spread: ${perEndpoint.join(', ')}`);
    for (const l of leases) l.destroy('downstream_closed');
  });
  const at = (p: Pool, address: string): Endpoint => [...p.endpoints.list()].find((e) => e.address === address)!;

  it('an endpoint ejected during a panic is probed once the panic ends (the skipped probe is deferred, not dropped)', async (t) => {
    const up = await tcpEchoEndpoints(ADDRS3);
    t.after(() => up.close());
    const { p, clock } = await pool(t, () => v4(...ADDRS3), up.port);
    const [a, b] = [at(p, '127.0.0.2'), at(p, '127.0.0.3')];
    p.endpoints.eject(a, 'keepalive_timeout');
    p.endpoints.eject(b, 'keepalive_timeout');
    assert.equal(p.endpoints.isPanic, true, '1 of 3 active');
    // Past the back-off (1 s +20 %): both probes fall due while both are eligible (panic), so none is opened.
    clock.advance(1300);
    assert.equal(a.conns.connecting.size + b.conns.connecting.size, 0, 'no probe while eligible');
    // An ordinary connect proved B: the panic is over, A is not eligible and only a probe can bring it back.
    p.endpoints.noteConnected(b);
    assert.equal(p.endpoints.isPanic, false);
    const restored = once(p.endpoints, 'restored');
    clock.advance(1000);
    assert.equal(a.conns.connecting.size, 1, 'A probed after the panic');
    const [ep] = (await restored) as [Endpoint];
    assert.equal(ep, a);
    assert.equal(a.state, 'active');
  });

  it('connect fail-over tries each endpoint once: with two of three refusing, the acquire lands on the live one (not A, B, A and a 502)', async (t) => {
    // Only 127.0.0.4 listens. random() = 0: P2C takes the first eligible each time, the order that used to
    // retry A after B (only the last endpoint tried was avoided) and give up.
    const up = await tcpEchoEndpoints(['127.0.0.4']);
    t.after(() => up.close());
    const { p } = await pool(t, () => v4(...ADDRS3), up.port, {}, { random: () => 0 });
    const lease = await p.acquire();
    assert.equal(lease.conn.endpoint.address, '127.0.0.4');
    assert.deepEqual(ADDRS3.map((x) => at(p, x).ejections), [1, 1, 0], 'each dead endpoint tried once');
    lease.release();
    // A retry that avoids C (its request just failed there) still falls back to C when A and B refuse.
    const retry = await p.acquire(undefined, { isFresh: true, avoid: at(p, '127.0.0.4') });
    assert.equal(retry.conn.endpoint.address, '127.0.0.4');
    retry.release();
  });

  it('idle connections of an ejected endpoint do not hold the slots: an acquire retires one (idle_evicted) rather than overflow', async (t) => {
    const up = await tcpEchoEndpoints(['127.0.0.2', '127.0.0.3']);
    t.after(() => up.close());
    const { p, closes } = await pool(t, () => v4('127.0.0.2', '127.0.0.3'), up.port, { maxConnections: 2 });
    const [l1, l2] = [await p.acquire(), await p.acquire()];
    assert.notEqual(l1.conn.endpoint, l2.conn.endpoint);
    l1.release();
    l2.release();
    // Ejected without its idle connection retired (as with siblingEviction: false): it keeps a slot.
    p.endpoints.eject(l1.conn.endpoint, 'keepalive_timeout');
    const x = await p.acquire();
    const y = await p.acquire();
    assert.equal(x.conn.endpoint, l2.conn.endpoint);
    assert.equal(y.conn.endpoint, l2.conn.endpoint, 'connected to the eligible endpoint in the freed slot');
    await waitFor(() => closes.some((c) => c.conn === l1.conn), 2000, 'the stranded idle connection to close');
    assert.equal(closes.find((c) => c.conn === l1.conn)?.info.reason, 'idle_evicted');
    x.release();
    y.release();
  });

  it('warm spares count only eligible endpoints\' idle connections: an ejected endpoint\'s spare is replaced on an eligible one', async (t) => {
    const up = await tcpEchoEndpoints(['127.0.0.2', '127.0.0.3']);
    t.after(() => up.close());
    const { p } = await pool(t, () => v4('127.0.0.2', '127.0.0.3'), up.port, { warmSpares: 1, maxConnections: 4 });
    await waitFor(() => p.stats().idle === 1, 2000, 'one spare');
    const spare = [...p.connections()][0]!;
    const other = [...p.endpoints.list()].find((e) => e !== spare.endpoint)!;
    p.endpoints.eject(spare.endpoint, 'keepalive_timeout');
    // A close makes the pool refill its spares; the ejected endpoint's spare does not count.
    const lease = await p.acquire();
    assert.equal(lease.conn.endpoint, other);
    lease.destroy('downstream_closed');
    await waitFor(() => other.conns.idle.size === 1, 2000, 'a spare on the eligible endpoint');
  });

  it('the first-resolution wait honours the caller: an aborted request leaves it (connect_error), pendingTimeoutMs bounds it (resolve_failed)', async (t) => {
    const clock = new FakeClock();
    const route = configFrom({ routes: [tcpRoute(9, { upstream: { host: 'svc.test', port: 9 } })] }).routes[0]!;
    const p = new Pool(route, clock, { resolve: () => new Promise<ResolvedAddress[]>(() => {}), pendingTimeoutMs: 500 });
    t.after(() => p.close());
    p.start();
    const ac = new AbortController();
    const aborted = p.acquire(ac.signal);
    let timedOut: unknown;
    const bounded = p.acquire().catch((err: unknown) => void (timedOut = err));
    ac.abort();
    await assert.rejects(aborted, (err: unknown) => err instanceof AcquireError && err.reason === 'connect_error');
    clock.advance(499);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(timedOut, undefined, 'not before pendingTimeoutMs');
    clock.advance(1);
    await bounded;
    const got = timedOut as unknown;
    assert.ok(got instanceof AcquireError && got.reason === 'resolve_failed', String(got));
    assert.match(got.message, /has not resolved yet/);
  });

  it('a single endpoint (ClusterIP VIP) is never marked ejected: no ejected state, warn or metric per dead connection or failed connect', async (t) => {
    const up = await tcpEchoEndpoints(['127.0.0.2']);
    t.after(() => up.close());
    const { p } = await pool(t, () => v4('127.0.0.2'), up.port);
    let ejected = 0;
    p.endpoints.on('ejected', () => ejected++);
    const lease = await p.acquire();
    lease.release();
    p.fail(lease.conn, 'keepalive_timeout');
    const ep = at(p, '127.0.0.2');
    await waitFor(() => ep.connections === 0, 2000, 'the close');
    await up.close();
    await assert.rejects(p.acquire(), (err: unknown) => err instanceof AcquireError && err.reason === 'connect_refused');
    assert.equal(ejected, 0);
    assert.equal(ep.state, 'active');
    assert.equal(ep.ejections, 0);
  });
});
