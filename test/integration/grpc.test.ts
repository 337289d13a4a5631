/**
 * gRPC through an h2 route (issue 13 acceptance), black box: a @grpc/grpc-js client (insecure, h2c prior
 * knowledge, as an app points it at 127.0.0.1:<route port>) -> the real CLI -> a grpc-js server. Every case
 * also runs `direct` (client -> server, no sidecar) first, which proves the fixture and the assertion, so a
 * failure `via sidecar` is the sidecar's.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import net from 'node:net';
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import { M, Status, bidi, grpcClient, grpcServer, serverStream, unary } from '../fixtures/grpc.js';
import type { CallResult, GrpcServerFixture } from '../fixtures/grpc.js';
import { h2Route, startH2Sidecar } from '../helpers/h2-sidecar.js';
import type { H2Sidecar } from '../helpers/h2-sidecar.js';

const MIB2 = 2 * 1024 * 1024;
const MAX = 3 * 1024 * 1024;

type Via = 'direct' | 'sidecar';

interface Rig {
  readonly up: GrpcServerFixture;
  readonly client: grpc.Client;
  /** The sidecar, via 'sidecar'. */
  readonly sc: H2Sidecar | undefined;
}

/** Server (+ sidecar when `via` says so) + client, torn down by t.after. */
async function rig(t: TestContext, via: Via, h2: Record<string, unknown> = {}): Promise<Rig> {
  const up = await grpcServer({ maxMessageBytes: MAX });
  t.after(() => up.close());
  let port = up.port;
  let sc: H2Sidecar | undefined;
  if (via === 'sidecar') {
    sc = await startH2Sidecar(t, [h2Route(up.port, h2)]);
    t.after(() => sc!.stop());
    port = sc.port;
  }
  const client = grpcClient(port, { maxMessageBytes: MAX });
  t.after(() => client.close());
  return { up, client, sc };
}

async function closedPort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

for (const via of ['direct', 'sidecar'] as Via[]) {
  describe(`gRPC ${via === 'direct' ? 'direct (fixture check, no sidecar)' : 'via the sidecar h2 route'}`, () => {
    it('unary: payload, request metadata echoed as response headers and trailers, status OK', async (t) => {
      const { up, client } = await rig(t, via);
      const r = await unary(client, M.unary, 'hello', { md: { 'x-id': 'u1', 'x-tenant': 'acme', 'x-trace': 'abc-123' } });
      assert.equal(r.code, Status.OK, r.details);
      assert.equal(r.value?.toString(), 'hello');
      assert.equal(r.headers['x-tenant'], 'acme');
      assert.equal(r.headers['x-trace'], 'abc-123');
      assert.equal(r.trailers['t-x-tenant'], 'acme');
      assert.equal(r.trailers['t-x-trace'], 'abc-123');
      assert.equal(up.count('u1', M.unary), 1, 'processed exactly once');
      assert.equal(up.calls[0]!.metadata['x-tenant'], 'acme', 'request metadata reached the server');
    });

    it(':authority reaches the server as the app sent it (default 127.0.0.1:<port>, or grpc.default_authority)', async (t) => {
      const { up, client } = await rig(t, via);
      assert.equal((await unary(client, M.unary, 'a', { md: { 'x-id': 'auth-default' } })).code, Status.OK);
      const port = Number(client.getChannel().getTarget().split(':').pop());
      assert.equal(up.calls.find((c) => c.id === 'auth-default')?.authority, `127.0.0.1:${port}`);
      const named = grpcClient(port, { channel: { 'grpc.default_authority': 'payments.default.svc:50051' } });
      t.after(() => named.close());
      assert.equal((await unary(named, M.unary, 'a', { md: { 'x-id': 'auth-named' } })).code, Status.OK);
      assert.equal(up.calls.find((c) => c.id === 'auth-named')?.authority, 'payments.default.svc:50051');
    });

    it('unary: a non-OK status, its message and trailers reach the client intact', async (t) => {
      const { client } = await rig(t, via);
      // grpc-message is percent-encoded on the wire (non-ASCII, '%'): it must arrive decoded to the same text.
      const r = await unary(client, M.unary, 'no such thing: ü/% 100%', { md: { 'x-status': Status.NOT_FOUND, 'x-k': 'v' } });
      assert.equal(r.code, Status.NOT_FOUND);
      assert.equal(r.details, 'no such thing: ü/% 100%');
      assert.equal(r.trailers['t-x-k'], 'v');
      assert.equal(r.headers['x-k'], 'v');
    });

    it('server streaming: 50 messages in order, then trailers', async (t) => {
      const { client } = await rig(t, via);
      const r = await serverStream(client, M.serverStream, 'm', { md: { 'x-count': 50, 'x-s': 'yes' } });
      assert.equal(r.code, Status.OK, r.details);
      assert.deepEqual(
        r.messages.map((b) => b.toString()),
        Array.from({ length: 50 }, (_v, i) => `m-${i}`),
      );
      assert.equal(r.headers['x-s'], 'yes');
      assert.equal(r.trailers['t-x-s'], 'yes');
    });

    it('bidi: 20 interleaved round trips with metadata, then trailers on half-close', async (t) => {
      const { client } = await rig(t, via);
      const b = bidi(client, M.bidi, { md: { 'x-b': 'bidi' } });
      for (let i = 0; i < 20; i++) assert.equal((await b.roundTrip(`ping ${i}`)).toString(), `ping ${i}`);
      const r = await b.end();
      assert.equal(r.code, Status.OK, r.details);
      assert.equal(r.headers['x-b'], 'bidi');
      assert.equal(r.trailers['t-x-b'], 'bidi');
    });

    it('deadline propagates: the server sees grpc-timeout, the client gets DEADLINE_EXCEEDED on time, the server sees the cancel', async (t) => {
      const { up, client } = await rig(t, via);
      const ok = await unary(client, M.slow, '', { md: { 'x-id': 'dl-ok', 'x-delay-ms': 50 }, deadlineMs: 5000 });
      assert.equal(ok.code, Status.OK, ok.details);
      const seen = (JSON.parse(ok.value!.toString()) as { deadlineMs: number | null }).deadlineMs;
      assert.ok(seen !== null && seen > 4000 && seen <= 5000, `server saw ${seen} ms left of a 5000 ms deadline`);

      const late = await unary(client, M.slow, '', { md: { 'x-id': 'dl-late', 'x-delay-ms': 3000 }, deadlineMs: 500 });
      t.diagnostic(`DEADLINE_EXCEEDED after ${Math.round(late.ms)} ms`);
      assert.equal(late.code, Status.DEADLINE_EXCEEDED, late.details);
      assert.ok(late.ms >= 450 && late.ms <= 900, `${Math.round(late.ms)} ms for a 500 ms deadline`);
      const arrived = up.calls.find((c) => c.id === 'dl-late');
      assert.ok(arrived?.deadlineMs !== undefined && arrived.deadlineMs <= 500 && arrived.deadlineMs > 200, `server saw ${arrived?.deadlineMs} ms left`);
      // The client's RST_STREAM (CANCEL) at the deadline reaches the server (the server's own deadline timer
      // fires too, both within a few hundred ms).
      const until = performance.now() + 2000;
      while (!up.cancels.has('dl-late') && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
      assert.ok(up.cancels.has('dl-late'), 'the server saw the call end (cancelled / deadline) instead of answering 3 s later');
    });

    it('2 MiB message each way (unary) and 2 MiB per message in a bidi stream', async (t) => {
      const { client } = await rig(t, via);
      const big = randomBytes(MIB2);
      const r = await unary(client, M.unary, big);
      assert.equal(r.code, Status.OK, r.details);
      assert.equal(r.value?.length, MIB2);
      assert.ok(r.value?.equals(big), 'the 2 MiB echo is byte-identical');
      const b = bidi(client, M.bidi);
      for (let i = 0; i < 3; i++) {
        const m = randomBytes(MIB2);
        assert.ok((await b.roundTrip(m)).equals(m), `bidi message ${i} byte-identical`);
      }
      assert.equal((await b.end()).code, Status.OK);
    });

    it('50 concurrent unary calls on one client connection (multiplexed), all OK, each processed once', async (t) => {
      const { up, client } = await rig(t, via);
      const rs = await Promise.all(Array.from({ length: 50 }, (_v, i) => unary(client, M.unary, `c${i}`, { md: { 'x-id': `c${i}`, 'x-delay-ms': 20 } })));
      assert.ok(rs.every((r, i) => r.code === Status.OK && r.value?.toString() === `c${i}`), rs.map((r) => r.code).join(','));
      for (let i = 0; i < 50; i++) assert.equal(up.count(`c${i}`), 1);
    });
  });
}

describe('gRPC via the sidecar h2 route: upstream drains its connections (GOAWAY NO_ERROR)', () => {
  it('50 calls/s of a non-allow-listed method while the upstream drains every 500 ms: 0 failed calls, each processed exactly once, GOAWAYs counted', async (t) => {
    const { up, client, sc } = await rig(t, 'sidecar');
    const calls: Array<Promise<CallResult>> = [];
    const t0 = performance.now();
    let drains = 0;
    for (let i = 0; i < 150; i++) {
      const wait = t0 + i * 20 - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (i > 0 && i % 25 === 0) {
        up.drain(2000);
        drains++;
      }
      calls.push(unary(client, M.charge, `g${i}`, { md: { 'x-id': `g${i}`, 'x-delay-ms': 30 }, deadlineMs: 10_000 }));
    }
    const rs = await Promise.all(calls);
    const failed = rs.filter((r) => r.code !== Status.OK).map((r) => `${r.code} ${r.details}`);
    const peers = up.peerPorts().length;
    t.diagnostic(`${drains} drains, ${peers} upstream connections used, worst ${Math.round(Math.max(...rs.map((r) => r.ms)))} ms, failed ${JSON.stringify(failed)}`);
    assert.deepEqual(failed, [], '0 failed calls');
    for (let i = 0; i < 150; i++) assert.equal(up.count(`g${i}`), 1, `g${i} processed exactly once (Charge is not allow-listed)`);
    assert.ok(peers >= drains, `a fresh upstream session after each drain (${peers} connections, ${drains} drains)`);
    assert.ok((await sc!.metric('keepalive_sidecar_h2_goaways_received_total', { route: 'grpc', code: 'no_error' })) >= drains, 'every GOAWAY counted as no_error');
  });
});

describe('gRPC via the sidecar h2 route: upstream unreachable', () => {
  it('connection refused -> UNAVAILABLE "sidecar: connect_refused" (trailers-only, x-sidecar-error), within 1 s; the route keeps serving', async (t) => {
    const port = await closedPort();
    const sc = await startH2Sidecar(t, [h2Route(port)]);
    t.after(() => sc.stop());
    const client = grpcClient(sc.port);
    t.after(() => client.close());
    for (let i = 0; i < 3; i++) {
      const r = await unary(client, M.unary, 'x', { deadlineMs: 10000 });
      t.diagnostic(`${r.code} "${r.details}" after ${Math.round(r.ms)} ms`);
      assert.equal(r.code, Status.UNAVAILABLE);
      assert.equal(r.details, 'sidecar: connect_refused');
      assert.equal(r.trailers['x-sidecar-error'], 'connect_refused');
      assert.ok(r.ms <= 1000, `${Math.round(r.ms)} ms`);
    }
    // A plain (non-gRPC) h2 request to the same route: 502 with x-sidecar-error.
    const s = http2.connect(`http://127.0.0.1:${sc.port}`);
    s.on('error', () => {});
    t.after(() => s.destroy());
    const head = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      const req = s.request({ ':path': '/plain' });
      req.on('response', resolve);
      req.on('error', reject);
      req.resume();
      req.end();
    });
    assert.equal(head[':status'], 502);
    assert.equal(head['x-sidecar-error'], 'connect_refused');
  });
});
