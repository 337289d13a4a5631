/**
 * gRPC through an h2 route against a silently dead upstream connection (issue 13 acceptance), black box: a
 * grpc-js client -> the real CLI -> a grpc-js server that records the peer (the sidecar's upstream socket) of
 * every call. nftables drops only the established upstream flows seen so far (both directions, input hook: the
 * packets leave and vanish, as in a real partition; (a) and (b) also on the output hook: the local stack cannot
 * send); new connections to the same server keep working.
 *
 * With streams open, only a PING finds a dead session before TCP_USER_TIMEOUT (10 s by default): in-flight
 * streams get no event at all. The route's defaults are set for gRPC servers' ping policies (gRFC A8), so:
 *   (a) lowers pingIdleMs to 200 ms (and pingTimeoutMs to 500): with calls every 20 ms a live session is
 *       never silent that long, a dead one is after 200 ms, and the next call's ping-before-use finds it.
 *       Safe for ping-policing servers: such a PING always follows the server's last answer (see
 *       grpc-ping-policy.test.ts), so it is never a strike.
 *   (b) lowers pingIntervalMs to 1000 ms (the schema's floor; pingTimeoutMs 800): the periodic PING is what detects a dead session
 *       while a stream is open and nothing else happens; a user does this only for an upstream they know
 *       tolerates it (the grpc-js server here does not police PINGs).
 *   (c) uses the defaults: ping-before-use is what finds an idle dead session.
 *   (d) as (b), for the replay rules of calls the server already had: allow-listed and buffered -> replayed,
 *       body above retry.maxBodyBytes -> UNAVAILABLE.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import type { CallResult, GrpcServerFixture } from '../fixtures/grpc.js';
import { M, Status, grpcClient, grpcServer, unary } from '../fixtures/grpc.js';
import { blackhole, requireChaos } from '../helpers/chaos.js';
import type { Hook } from '../helpers/chaos.js';
import { h2Route, startH2Sidecar } from '../helpers/h2-sidecar.js';
import type { H2Sidecar } from '../helpers/h2-sidecar.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Kernel keepalive idle raised to 30 s: the kernel backstop (keepalive + TCP_USER_TIMEOUT 10 s) must not be
 * what finds these dead sessions within the test windows; the PINGs must.
 */
const KEEPALIVE = { idleMs: 30_000 };

async function rig(t: TestContext, h2: Record<string, unknown>): Promise<{ up: GrpcServerFixture; sc: H2Sidecar; port: number }> {
  const up = await grpcServer();
  t.after(() => up.close());
  const sc = await startH2Sidecar(t, [h2Route(up.port, h2, { keepalive: KEEPALIVE })]);
  t.after(() => sc.stop());
  return { up, sc, port: sc.port };
}

/** Blackholes every upstream flow the server has seen calls on so far. */
async function killUpstreamFlows(t: TestContext, up: GrpcServerFixture, hook: Hook = 'input'): Promise<number[]> {
  const ports = up.peerPorts();
  assert.ok(ports.length > 0, 'the server saw the sidecar connect');
  const hole = await blackhole(up.port, ports, hook);
  t.after(() => hole.remove());
  return ports;
}

async function deadDetections(sc: H2Sidecar): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const reason of ['ping_timeout', 'no_ack', 'user_timeout', 'keepalive_timeout']) {
    out[reason] = await sc.metric('keepalive_sidecar_upstream_connections_closed_total', { route: 'grpc', reason });
  }
  return out;
}

describe('h2 route: gRPC calls vs a silently dead upstream connection (nftables, input hook)', () => {
  it('control, direct (no sidecar): a call on a blackholed grpc-js connection gets no answer at all for 3 s (what the sidecar must fix)', async (t) => {
    if (!(await requireChaos(t))) return;
    const up = await grpcServer();
    t.after(() => up.close());
    const client = grpcClient(up.port);
    t.after(() => client.close());
    assert.equal((await unary(client, M.unary, 'warm', { deadlineMs: 5000 })).code, Status.OK);
    const ports = await killUpstreamFlows(t, up);
    const r = await unary(client, M.unary, 'lost', { md: { 'x-id': 'lost' }, deadlineMs: 3000 });
    t.diagnostic(`blackholed client port ${ports.join(',')}: ${r.code} "${r.details}" after ${Math.round(r.ms)} ms`);
    assert.equal(r.code, Status.DEADLINE_EXCEEDED, 'only the deadline ended it');
    assert.ok(r.ms >= 2900);
    assert.equal(up.count('lost'), 0, 'the call never reached the server');
  });

  for (const hook of ['input', 'output'] as Hook[]) {
    it(`(a, ${hook} hook) 50 unary calls/s of an allow-listed method, upstream flow blackholed mid-run: 0 failed calls, worst <= 1.5 s, each processed once`, async (t) => {
      if (!(await requireChaos(t))) return;
      // pingIdleMs 200 / pingTimeoutMs 500: the first call >= 200 ms after the blackhole sends a PING and waits;
      // ~700 ms after the blackhole the session is dead, the held calls go to a fresh session and the
      // allow-listed calls written on the dead one meanwhile are replayed there.
      const { up, sc, port } = await rig(t, { pingIdleMs: 200, pingTimeoutMs: 500, retry: { grpcIdempotentMethods: [M.unary] } });
      const client = grpcClient(port);
      t.after(() => client.close());
      // Open loop, bounded: 200 calls, one every 20 ms (4 s); the blackhole goes on at 1.5 s.
      const calls: Array<Promise<CallResult>> = [];
      const t0 = performance.now();
      let holed: number[] = [];
      for (let i = 0; i < 200; i++) {
        const due = t0 + i * 20;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        if (i === 75) holed = await killUpstreamFlows(t, up, hook);
        calls.push(unary(client, M.unary, `a${i}`, { md: { 'x-id': `a${i}` }, deadlineMs: 10_000 }));
      }
      const rs = await Promise.all(calls);
      const failed = rs.filter((r) => r.code !== Status.OK);
      const worst = Math.max(...rs.map((r) => r.ms));
      const rescued = await sc.metric('keepalive_sidecar_h2_streams_rescued_total', { route: 'grpc' });
      t.diagnostic(`blackholed ${holed.join(',')}; ${rs.length} calls, ${failed.length} failed, worst ${Math.round(worst)} ms, rescued ${rescued}, closes ${JSON.stringify(await deadDetections(sc))}`);
      assert.deepEqual(failed.map((r) => `${r.code} ${r.details}`), [], '0 failed calls');
      assert.ok(worst <= 1500, `worst ${Math.round(worst)} ms (bound 1500)`);
      // Calls written after the blackhole never reached the server (dropped on its input hook); the one or two
      // the server had already answered when the flow went dark may be processed twice (allow-listed: allowed,
      // retry.attempts 1 bounds it).
      const counts = Array.from({ length: 200 }, (_v, i) => up.count(`a${i}`));
      assert.ok(counts.every((c) => c >= 1 && c <= 2), `each call processed once or (answer lost) twice: ${counts.join('')}`);
      assert.ok(counts.filter((c) => c === 2).length <= 3, `at most a few answers lost in flight: ${counts.join('')}`);
      assert.ok(rescued >= 1, 'calls were trapped on the dead session and rescued (the test hit what it claims)');
      const d = await deadDetections(sc);
      assert.ok(d.ping_timeout! + d.no_ack! >= 1, `the dead session was found by the sidecar (PING or ACK evidence), not the kernel: ${JSON.stringify(d)}`);
    });

    it(`(b, ${hook} hook) a non-allow-listed call trapped on the dead session: UNAVAILABLE "sidecar: ping_timeout" within pingTimeoutMs + 1 s, never replayed`, async (t) => {
      if (!(await requireChaos(t))) return;
      // pingIntervalMs 1000 (the schema's floor), pingTimeoutMs 800 (it must stay below the interval): the
      // periodic PING is what detects a dead session while a stream is open. It is due 1000-1100 ms after the
      // session's last read (the warm call's answer, 600 ms before the blackhole), so about 1.2-1.3 s after
      // the blackhole the session is dead.
      const PING_TIMEOUT = 800;
      const { up, port } = await rig(t, { pingIntervalMs: 1000, pingTimeoutMs: PING_TIMEOUT, retry: { grpcIdempotentMethods: [M.unary] } });
      const client = grpcClient(port);
      t.after(() => client.close());
      assert.equal((await unary(client, M.charge, 'warm', { deadlineMs: 5000 })).code, Status.OK);
      await sleep(600);
      // The server holds its answer 5 s; once it has the call, the flow goes dark.
      const trapped = unary(client, M.charge, 'trapped', { md: { 'x-id': 'trapped', 'x-delay-ms': 5000 }, deadlineMs: 20_000 });
      for (let i = 0; i < 200 && up.count('trapped') === 0; i++) await sleep(5);
      assert.equal(up.count('trapped'), 1, 'the server has the call');
      await killUpstreamFlows(t, up, hook);
      const tHole = performance.now();
      const r = await trapped;
      const after = performance.now() - tHole;
      t.diagnostic(`${r.code} "${r.details}" ${Math.round(after)} ms after the blackhole`);
      assert.equal(r.code, Status.UNAVAILABLE);
      assert.equal(r.details, 'sidecar: ping_timeout');
      assert.equal(r.trailers['x-sidecar-error'], 'ping_timeout');
      assert.ok(after <= PING_TIMEOUT + 1000, `${Math.round(after)} ms after the blackhole (bound ${PING_TIMEOUT + 1000}; TCP_USER_TIMEOUT would be 10 s)`);
      // Not on the allow-list and the server had it: never sent twice.
      await sleep(200);
      assert.equal(up.count('trapped'), 1, 'never replayed');
      // The route keeps serving, on a fresh session.
      const next = await unary(client, M.charge, 'next', { md: { 'x-id': 'next' }, deadlineMs: 5000 });
      assert.equal(next.code, Status.OK, next.details);
    });
  }

  it('(d) allow-listed calls trapped while the server holds its answer: replayed on a fresh session when the body was buffered (<= retry.maxBodyBytes), UNAVAILABLE when it was not', async (t) => {
    if (!(await requireChaos(t))) return;
    // Same detection as (b); both calls reached the server before the blackhole (unknown state to the sidecar).
    const { up, port } = await rig(t, { pingIntervalMs: 1000, pingTimeoutMs: 800, retry: { grpcIdempotentMethods: [M.unary], maxBodyBytes: 65536 } });
    const client = grpcClient(port);
    t.after(() => client.close());
    assert.equal((await unary(client, M.unary, 'warm', { deadlineMs: 5000 })).code, Status.OK);
    await sleep(600);
    const small = unary(client, M.unary, 'small', { md: { 'x-id': 'small', 'x-delay-ms': 1500 }, deadlineMs: 20_000 });
    const big = unary(client, M.unary, Buffer.alloc(100_000, 0x62), { md: { 'x-id': 'big', 'x-delay-ms': 1500 }, deadlineMs: 20_000 });
    for (let i = 0; i < 200 && (up.count('small') === 0 || up.count('big') === 0); i++) await sleep(5);
    assert.equal(up.count('small') + up.count('big'), 2, 'the server has both calls');
    await killUpstreamFlows(t, up);
    const [s, b] = await Promise.all([small, big]);
    t.diagnostic(`small: ${s.code} after ${Math.round(s.ms)} ms (server saw it ${up.count('small')}x); big: ${b.code} "${b.details}" after ${Math.round(b.ms)} ms`);
    assert.equal(s.code, Status.OK, `the buffered allow-listed call was replayed: ${s.details}`);
    assert.equal(s.value?.toString(), 'small');
    assert.equal(up.count('small'), 2, 'processed on the dead session and again on the fresh one (allow-listed: allowed)');
    assert.equal(b.code, Status.UNAVAILABLE);
    assert.equal(b.details, 'sidecar: ping_timeout');
    assert.equal(up.count('big'), 1, 'a body larger than retry.maxBodyBytes is never replayed');
  });

  it('(c) idle session blackholed, traffic resumes 10 s later (defaults): the first calls succeed, <= pingTimeoutMs + 0.5 s extra, whatever the method', async (t) => {
    if (!(await requireChaos(t))) return;
    const PING_TIMEOUT = 1000; // default
    const { up, sc, port } = await rig(t, {});
    const client = grpcClient(port);
    t.after(() => client.close());
    const warm: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await unary(client, M.charge, `w${i}`, { deadlineMs: 5000 });
      assert.equal(r.code, Status.OK);
      warm.push(r.ms);
    }
    const base = [...warm].sort((x, y) => x - y)[2]!;
    await killUpstreamFlows(t, up);
    await sleep(10_000);
    // Ping-before-use (idle > pingIdleMs 5 s): the PING goes unanswered, the held streams (never sent: any
    // method, here the non-allow-listed Charge) go to a fresh session.
    const first = await Promise.all(Array.from({ length: 5 }, (_v, i) => unary(client, M.charge, `r${i}`, { md: { 'x-id': `r${i}` }, deadlineMs: 10_000 })));
    const extra = Math.max(...first.map((r) => r.ms)) - base;
    t.diagnostic(`baseline ${base.toFixed(1)} ms; first calls ${first.map((r) => `${r.code}/${Math.round(r.ms)}ms`).join(' ')}; closes ${JSON.stringify(await deadDetections(sc))}`);
    assert.ok(first.every((r) => r.code === Status.OK), first.map((r) => `${r.code} ${r.details}`).join('; '));
    assert.ok(extra <= PING_TIMEOUT + 500, `extra latency ${Math.round(extra)} ms (bound ${PING_TIMEOUT + 500})`);
    for (let i = 0; i < 5; i++) assert.equal(up.count(`r${i}`), 1, `r${i} processed exactly once`);
    const d = await deadDetections(sc);
    assert.equal(d.ping_timeout, 1, `the idle dead session was found by ping-before-use: ${JSON.stringify(d)}`);
    assert.ok((await sc.metric('keepalive_sidecar_h2_pings_sent_total', { route: 'grpc', kind: 'before_use' })) >= 1);
    // And after it, calls are fast again.
    const later = await unary(client, M.charge, 'later', { deadlineMs: 5000 });
    assert.equal(later.code, Status.OK);
    assert.ok(later.ms < 200, `${Math.round(later.ms)} ms`);
  });
});
