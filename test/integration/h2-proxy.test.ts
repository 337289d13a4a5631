/**
 * h2 routes (issue 13) over real sockets: node:http2 and grpc-js clients -> sidecar h2 route -> node:http2 /
 * grpc-js upstreams. Proxying (headers, body, trailers, status; unary, server-streaming, bidi, 2 MiB each
 * way, deadlines), answers when the upstream is unreachable, GOAWAY replay of streams above lastStreamId,
 * socket options read back on the upstream sockets, and GOAWAY to the app on drain.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as httpServer } from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { MAX_PING_INTERVAL_MS } from '../../src/pool/h2-pool.js';
import { readSockopts } from '../../src/sockopts/index.js';
import { echoClient, grpcEchoServer, h2Request, h2Upstream, unary } from '../fixtures/h2-upstreams.js';
import { h2Route, metricValue, startTestSidecar, waitFor } from '../helpers/sidecar.js';
import type { TestSidecar } from '../helpers/sidecar.js';

function connect(port: number): http2.ClientHttp2Session {
  const c = http2.connect(`http://127.0.0.1:${port}`);
  c.on('error', () => {});
  return c;
}

/** Waits (bounded) until a metric reaches `value`: the app sees its stream end a moment before we count it. */
async function waitForMetric(sc: TestSidecar, name: string, labels: Record<string, string>, value: number, ms = 2000): Promise<void> {
  const until = performance.now() + ms;
  for (;;) {
    const v = await metricValue(sc, name, labels);
    if (v === value) return;
    if (performance.now() > until) assert.equal(v, value, `${name} ${JSON.stringify(labels)}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A port nothing listens on (bound then closed). */
async function deadPort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

describe('h2 route: plain HTTP/2', () => {
  it('forwards method, path, headers, body, status and trailers; strips nothing end-to-end', async (t) => {
    const up = await h2Upstream((s, h) => {
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('end', () => {
        const body = Buffer.concat(chunks);
        s.respond({ ':status': 201, 'x-up-method': String(h[':method']), 'x-up-path': String(h[':path']), 'x-up-te': String(h.te), 'x-up-custom': String(h['x-custom']) }, { waitForTrailers: true });
        s.on('wantTrailers', () => s.sendTrailers({ 'x-trailer': `len=${body.length}` }));
        s.end(body);
      });
    });
    const sc = await startTestSidecar({ routes: [h2Route(up.port)] });
    const c = connect(sc.port());
    t.after(async () => {
      c.close();
      await sc.stop();
      await up.close();
    });
    const body = Buffer.alloc(300_000, 7);
    const r = await h2Request(c, { ':method': 'PUT', ':path': '/a/b?c=1', te: 'trailers', 'x-custom': 'v' }, body);
    assert.equal(r.status, 201);
    assert.equal(r.headers['x-up-method'], 'PUT');
    assert.equal(r.headers['x-up-path'], '/a/b?c=1');
    assert.equal(r.headers['x-up-te'], 'trailers');
    assert.equal(r.headers['x-up-custom'], 'v');
    assert.equal(r.trailers?.['x-trailer'], 'len=300000');
    assert.ok(r.body.equals(body));
    // A GET without body and without trailers.
    const g = await h2Request(c, { ':path': '/g' });
    assert.equal(g.status, 201);
    assert.equal(g.body.length, 0);
    await waitForMetric(sc, 'keepalive_sidecar_h2_streams_total', { route: 'g1', outcome: 'ok' }, 2);
    assert.equal(await metricValue(sc, 'keepalive_sidecar_h2_sessions', { route: 'g1', state: 'ready' }), 1, 'both streams on one upstream session');
  });

  it('request trailers from the app reach the upstream (plain h2); a body without trailers ends as before', async (t) => {
    const up = await h2Upstream((s) => {
      let n = 0;
      let got = 'none';
      s.on('data', (c: Buffer) => (n += c.length));
      s.on('trailers', (tr) => (got = String(tr['x-checksum'])));
      s.on('end', () => {
        s.respond({ ':status': 200, 'x-got-trailer': got, 'x-len': String(n) });
        s.end();
      });
    });
    const sc = await startTestSidecar({ routes: [h2Route(up.port)] });
    const c = connect(sc.port());
    t.after(async () => {
      c.close();
      await sc.stop();
      await up.close();
    });
    const send = (trailers: Record<string, string> | undefined): Promise<Record<string, unknown>> =>
      new Promise((resolve, reject) => {
        const r = c.request({ ':method': 'POST', ':path': '/up' }, { waitForTrailers: true });
        r.on('wantTrailers', () => r.sendTrailers(trailers ?? {}));
        r.on('response', (h) => resolve(h as Record<string, unknown>));
        r.on('error', reject);
        r.resume();
        r.end(Buffer.alloc(70_000, 1));
      });
    const withT = await send({ 'x-checksum': 'abc123' });
    assert.equal(withT[':status'], 200);
    assert.equal(withT['x-got-trailer'], 'abc123');
    assert.equal(withT['x-len'], '70000');
    const without = await send(undefined);
    assert.equal(without['x-got-trailer'], 'none');
    assert.equal(without['x-len'], '70000');
  });

  it('unreachable upstream: plain 502 x-sidecar-error: connect_refused; gRPC trailers-only grpc-status 14', async (t) => {
    const sc = await startTestSidecar({ routes: [h2Route(await deadPort())] });
    const c = connect(sc.port());
    t.after(async () => {
      c.close();
      await sc.stop();
    });
    const r = await h2Request(c, { ':method': 'POST', ':path': '/x' }, 'body');
    assert.equal(r.status, 502);
    assert.equal(r.headers['x-sidecar-error'], 'connect_refused');
    const g = await h2Request(c, { ':method': 'POST', ':path': '/test.Echo/Unary', 'content-type': 'application/grpc', te: 'trailers' }, Buffer.alloc(5));
    assert.equal(g.status, 200);
    assert.equal(g.headers['grpc-status'], '14');
    assert.equal(g.headers['grpc-message'], 'sidecar: connect_refused');
    assert.equal(g.headers['x-sidecar-error'], 'connect_refused');
    // And what grpc-js makes of it.
    const client = echoClient(sc.port());
    t.after(() => client.close());
    const u = await unary(client, 'Unary', Buffer.from('x'));
    assert.equal(u.err?.code, grpc.status.UNAVAILABLE);
    assert.match(u.err?.details ?? '', /sidecar: connect_refused/);
  });

  it('upstream that speaks HTTP/1 only: 502 protocol_error / grpc-status 14, sessions closed with protocol_error', async (t) => {
    const h1 = httpServer((_q, r) => r.end('h1'));
    h1.listen(0, '127.0.0.1');
    await once(h1, 'listening');
    const sc = await startTestSidecar({ routes: [h2Route((h1.address() as net.AddressInfo).port)] });
    const c = connect(sc.port());
    t.after(async () => {
      c.close();
      await sc.stop();
      await new Promise<void>((resolve) => h1.close(() => resolve()));
    });
    const r = await h2Request(c, { ':path': '/' });
    assert.equal(r.status, 502);
    assert.equal(r.headers['x-sidecar-error'], 'protocol_error');
    const g = await h2Request(c, { ':method': 'POST', ':path': '/x.Y/Z', 'content-type': 'application/grpc' }, Buffer.alloc(5));
    assert.equal(g.headers['grpc-status'], '14');
    assert.equal(g.headers['grpc-message'], 'sidecar: protocol_error');
    // Two sessions per request: no stream is opened before the upstream's SETTINGS (which an HTTP/1 server
    // never sends), so the first session fails with nothing sent and the request is placed again once more.
    await waitForMetric(sc, 'keepalive_sidecar_upstream_connections_closed_total', { route: 'g1', reason: 'protocol_error' }, 4);
  });

  it('upstream that accepts and never sends SETTINGS: the session fails ping_timeout after pingTimeoutMs, nothing was sent on it, the app gets 502 ping_timeout', async (t) => {
    const silent = net.createServer((sock) => {
      sock.on('error', () => {});
      sock.resume();
    });
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const sc = await startTestSidecar({ routes: [h2Route((silent.address() as net.AddressInfo).port, { h2: { pingTimeoutMs: 200 } })] });
    const c = connect(sc.port());
    t.after(async () => {
      c.close();
      await sc.stop();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    });
    const r = await h2Request(c, { ':method': 'POST', ':path': '/' }, Buffer.from('x'));
    assert.equal(r.status, 502);
    assert.equal(r.headers['x-sidecar-error'], 'ping_timeout');
    assert.ok((await metricValue(sc, 'keepalive_sidecar_upstream_connections_closed_total', { route: 'g1', reason: 'ping_timeout' })) >= 1);
    // A POST placed again after its session failed: only streams that never left are (any method).
    assert.ok((await metricValue(sc, 'keepalive_sidecar_h2_streams_rescued_total', { route: 'g1', reason: 'ping_timeout' })) >= 1);
  });

  it('GOAWAY from the upstream: streams above lastStreamId are replayed on a fresh session (POST included)', async (t) => {
    let first: http2.ServerHttp2Session | undefined;
    const held: http2.ServerHttp2Stream[] = [];
    const up = await h2Upstream((s, _h, session) => {
      first ??= session;
      const respond = (st: http2.ServerHttp2Stream): void => {
        st.respond({ ':status': 200, 'x-session': session === first ? 'first' : 'other' });
        st.end('ok');
      };
      s.resume();
      if (session !== first) {
        s.on('end', () => respond(s));
        return;
      }
      held.push(s);
      if (held.length === 3) {
        // Processed only the first stream (RFC 9113 §6.8): the other two were never seen.
        session.goaway(http2.constants.NGHTTP2_NO_ERROR, held[0]!.id ?? 1);
        respond(held[0]!);
      }
    });
    const sc = await startTestSidecar({ routes: [h2Route(up.port)] });
    const c = connect(sc.port());
    t.after(async () => {
      c.close();
      await sc.stop();
      await up.close();
    });
    const rs = await Promise.all([0, 1, 2].map((i) => h2Request(c, { ':method': 'POST', ':path': `/p${i}` }, `b${i}`)));
    assert.deepEqual(rs.map((r) => r.status), [200, 200, 200]);
    assert.equal(rs.filter((r) => r.headers['x-session'] === 'other').length, 2, 'two streams replayed on another session');
    assert.equal(await metricValue(sc, 'keepalive_sidecar_h2_goaways_received_total', { route: 'g1', code: 'no_error' }), 1);
    assert.equal(await metricValue(sc, 'keepalive_sidecar_h2_streams_rescued_total', { route: 'g1', reason: 'goaway' }), 2);
    const closes: string[] = [];
    sc.sidecar.h2Routes[0]!.pool.on('closed', (_c, info) => closes.push(info.reason));
    await waitFor(() => closes.length >= 1 || sc.sidecar.h2Routes[0]!.pool.sessionCounts().draining === 0, 3000, 'the goaway session closed');
    assert.equal(await metricValue(sc, 'keepalive_sidecar_upstream_connections_closed_total', { route: 'g1', reason: 'goaway' }), 1);
    const line = sc.logs.find((l) => l.msg === 'h2 goaway received');
    assert.equal(line?.code, 'no_error');
    assert.equal(line?.lastStreamId, 1);
  });

  it('GOAWAY ENHANCE_YOUR_CALM too_many_pings: periodic PING interval doubled and counted; the killed GET is replayed, a POST gets 502 goaway', async (t) => {
    let n = 0;
    const up = await h2Upstream((s, _h, session) => {
      s.resume();
      if (n++ % 2 === 0) {
        // What a gRPC C-core server does to a client that pings too often (gRFC A8), killing the call in flight.
        session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, s.id ?? 1, Buffer.from('too_many_pings'));
        return;
      }
      s.respond({ ':status': 200 });
      s.end('ok');
    });
    const sc = await startTestSidecar({ routes: [h2Route(up.port, { h2: { pingIntervalMs: 2000, pingTimeoutMs: 500 } })] });
    const c = connect(sc.port());
    t.after(async () => {
      c.close();
      await sc.stop();
      await up.close();
    });
    const g = await h2Request(c, { ':path': '/get' });
    assert.equal(g.status, 200, 'GET replayed on a fresh session');
    assert.equal(sc.sidecar.h2Routes[0]!.pool.pingIntervalMsNow, 4000);
    const p = await h2Request(c, { ':method': 'POST', ':path': '/post' }, 'x');
    assert.equal(p.status, 502);
    assert.equal(p.headers['x-sidecar-error'], 'goaway');
    assert.equal(sc.sidecar.h2Routes[0]!.pool.pingIntervalMsNow, 8000);
    assert.equal(await metricValue(sc, 'keepalive_sidecar_h2_goaways_received_total', { route: 'g1', code: 'enhance_your_calm' }), 2);
    assert.equal(await metricValue(sc, 'keepalive_sidecar_h2_ping_backoffs_total', { route: 'g1' }), 2);
    const line = sc.logs.find((l) => l.msg === 'h2 goaway received');
    assert.equal(line?.code, 'enhance_your_calm');
    assert.equal(line?.debug, 'too_many_pings');
  });

  it('a draining session (GOAWAY NO_ERROR) with a silent long stream: no false ping_timeout, the stream completes', async (t) => {
    const up = await h2Upstream((s, _h, session) => {
      s.resume();
      s.respond({ ':status': 200 });
      s.write('a');
      // grpc-go's MaxConnectionAge: GOAWAY(NO_ERROR) keeping this stream; then 3.5 s of silence (past the
      // periodic PING's 2 s + its 0.5 s timeout), then the rest.
      session.goaway(http2.constants.NGHTTP2_NO_ERROR, s.id ?? 1);
      setTimeout(() => {
        if (!s.destroyed) s.end('b');
      }, 3500);
    });
    const sc = await startTestSidecar({ routes: [h2Route(up.port, { h2: { pingIntervalMs: 2000, pingTimeoutMs: 500 } })] });
    const c = connect(sc.port());
    t.after(async () => {
      c.close();
      await sc.stop();
      await up.close();
    });
    const r = await h2Request(c, { ':path': '/watch' });
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'ab', `rst ${r.rstCode}`);
    assert.equal(await metricValue(sc, 'keepalive_sidecar_upstream_connections_closed_total', { route: 'g1', reason: 'ping_timeout' }), 0);
  });

  it('the too_many_pings back-off is capped at 2 h, whatever a hostile upstream sends (no timer past 2^31-1 ms)', async (t) => {
    const up = await h2Upstream((s) => {
      s.resume();
      s.respond({ ':status': 200 });
      s.end('ok');
    });
    const sc = await startTestSidecar({ routes: [h2Route(up.port)] });
    const c = connect(sc.port());
    t.after(async () => {
      c.close();
      await sc.stop();
      await up.close();
    });
    assert.equal((await h2Request(c, { ':path': '/' })).status, 200);
    const pool = sc.sidecar.h2Routes[0]!.pool;
    const driver = [...pool.connections()][0]!.h2!;
    // 20 GOAWAYs would double 300 s past 2^31-1 ms (setTimeout then fires every 1 ms).
    for (let i = 0; i < 20; i++) pool.goawayReceived(driver, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, 1, 'too_many_pings');
    assert.equal(pool.pingIntervalMsNow, MAX_PING_INTERVAL_MS);
  });

  it('a complete response before the request ended (early 413 on an upload): the app stream is closed (RST_STREAM NO_ERROR), nothing stays in flight', async (t) => {
    const up = await h2Upstream((s) => {
      s.respond({ ':status': 413 }, { endStream: true });
    });
    const sc = await startTestSidecar({ routes: [h2Route(up.port)] });
    const c = connect(sc.port());
    t.after(async () => {
      c.close();
      await sc.stop();
      await up.close();
    });
    const req = c.request({ ':method': 'POST', ':path': '/upload' });
    const status = new Promise<number>((resolve) => req.on('response', (h) => resolve(Number(h[':status']))));
    req.on('error', () => {});
    req.resume();
    const chunk = Buffer.alloc(64 * 1024, 1);
    // Keep uploading (bounded: at most 64 chunks) until the stream closes.
    for (let i = 0; i < 64 && !req.closed && !req.destroyed; i++) {
      if (!req.write(chunk)) await Promise.race([once(req, 'drain'), once(req, 'close')]);
    }
    assert.equal(await status, 413);
    const closed = await Promise.race([once(req, 'close').then(() => true), new Promise<boolean>((r) => setTimeout(() => r(req.closed), 3000))]);
    assert.ok(closed, 'the app stream was closed by the sidecar');
    assert.equal(req.rstCode, http2.constants.NGHTTP2_NO_ERROR);
  });

  it('an early complete answer with RST_STREAM(NO_ERROR) to uploads (nginx `return` on a POST): the app streams and session are released', async (t) => {
    // nginx answers a POST from `return` at once and resets the rest of the upload with RST_STREAM(NO_ERROR).
    // The sidecar had paused the app's stream (upstream window full) and closed it with NO_ERROR, which
    // node:http2 never destroys while unread request data is buffered: every such stream stayed in flight and
    // the app's session and socket leaked (one fd per h2load run, found with h2load -m 20 -d 1MiB -> nginx).
    const up = await h2Upstream((s) => {
      s.pause();
      s.respond({ ':status': 200 });
      s.end('early\n', () => s.close(http2.constants.NGHTTP2_NO_ERROR));
    });
    const sc = await startTestSidecar({ routes: [h2Route(up.port)] });
    t.after(async () => {
      await sc.stop();
      await up.close();
    });
    const listener = sc.sidecar.h2Routes[0]!.listener;
    const c = connect(sc.port());
    const body = Buffer.alloc(1024 * 1024, 1);
    // Each stream gets the early 200 (or, depending on timing, node:http2's client closes its own stream first).
    await Promise.all(
      Array.from({ length: 20 }, () => {
        const req = c.request({ ':method': 'POST', ':path': '/post' });
        req.on('error', () => {});
        req.resume();
        req.end(body);
        return new Promise<number | string>((resolve) => {
          req.on('response', (h) => resolve(Number(h[':status'])));
          req.on('close', () => resolve(`closed ${req.rstCode}`));
        });
      }),
    );
    // As h2load does when it is done (a node:http2 client's own upload streams may never settle here).
    c.destroy();
    await waitFor(() => listener.streamCount === 0 && listener.activeCount === 0, 3000, `streams ${listener.streamCount}, app connections ${listener.activeCount}`).catch(() => {});
    assert.equal(listener.streamCount, 0, 'downstream streams still in flight');
    assert.equal(listener.activeCount, 0, 'app connections still open');
  });

  it('Expect: 100-continue: the upstream\'s 100 reaches the app, which then sends its body', async (t) => {
    const up = await h2Upstream((s, h) => {
      if (h.expect === '100-continue') s.additionalHeaders({ ':status': 100 });
      let n = 0;
      s.on('data', (c: Buffer) => (n += c.length));
      s.on('end', () => {
        s.respond({ ':status': 200, 'x-len': String(n) });
        s.end();
      });
    });
    const sc = await startTestSidecar({ routes: [h2Route(up.port)] });
    const c = connect(sc.port());
    t.after(async () => {
      c.close();
      await sc.stop();
      await up.close();
    });
    const t0 = performance.now();
    const req = c.request({ ':method': 'POST', ':path': '/upload', expect: '100-continue' });
    req.on('error', () => {});
    let infos = 0;
    req.on('headers', () => infos++);
    const gotContinue = await Promise.race([once(req, 'continue').then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 2000))]);
    assert.ok(gotContinue, 'no 100 Continue reached the app');
    assert.ok(performance.now() - t0 < 1000, `100 after ${(performance.now() - t0).toFixed(0)} ms`);
    const response = once(req, 'response') as Promise<[http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader]>;
    req.end(Buffer.alloc(300_000, 1));
    req.resume();
    const [h] = await response;
    assert.equal(h[':status'], 200);
    assert.equal(h['x-len'], '300000');
    assert.equal(infos, 1, 'exactly one 100 reaches the app');
  });

  it('Host without :authority (RFC 9113 §8.3.1) becomes the upstream :authority', async (t) => {
    let seen: string | undefined;
    const up = await h2Upstream((s, h) => {
      seen = h[':authority'];
      s.respond({ ':status': 200 });
      s.end();
    });
    const sc = await startTestSidecar({ routes: [h2Route(up.port)] });
    t.after(async () => {
      await sc.stop();
      await up.close();
    });
    // A raw HEADERS block without :authority (node's client always adds one): nghttp2's client API via a
    // session whose request headers we control is not enough, so send the frames by hand.
    const sock = net.connect(sc.port(), '127.0.0.1');
    t.after(() => sock.destroy());
    await once(sock, 'connect');
    const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    // HPACK, literal without indexing, new names: :method GET (static idx 2), :scheme http (6), :path / (4), host
    const lit = (name: string, value: string): Buffer => Buffer.concat([Buffer.from([0x00, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
    const block = Buffer.concat([Buffer.from([0x82, 0x86, 0x84]), lit('host', 'vhost.example:8080')]);
    const headers = Buffer.concat([Buffer.from([0, 0, block.length, 1, 0x05, 0, 0, 0, 1]), block]);
    sock.write(Buffer.concat([preface, settings, headers]));
    sock.resume();
    await waitFor(() => seen !== undefined, 3000, 'the upstream to see the request');
    assert.equal(seen, 'vhost.example:8080');
  });

  it("the app's PINGs stay on its hop; an upstream RST_STREAM on a live session is passed on and the session kept", async (t) => {
    let upstreamPings = 0;
    const up = await h2Upstream((s, h, session) => {
      if (!session.listenerCount('ping')) session.on('ping', () => upstreamPings++);
      s.resume();
      if (h[':path'] === '/rst') {
        s.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
        return;
      }
      s.respond({ ':status': 200 });
      s.end('ok');
    });
    const sc = await startTestSidecar({ routes: [h2Route(up.port)] });
    const c = connect(sc.port());
    t.after(async () => {
      c.close();
      await sc.stop();
      await up.close();
    });
    assert.equal((await h2Request(c, { ':path': '/ok' })).status, 200);
    for (let i = 0; i < 3; i++) await new Promise<void>((resolve, reject) => c.ping((err) => (err ? reject(err) : resolve())));
    const r = await h2Request(c, { ':path': '/rst' });
    assert.equal(r.rstCode, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, 'the upstream\'s RST code reaches the app');
    assert.equal((await h2Request(c, { ':path': '/ok2' })).status, 200);
    assert.equal(upstreamPings, 0, 'no PING reached the upstream');
    assert.equal(up.sessions.length, 1, 'one upstream session throughout');
    await waitForMetric(sc, 'keepalive_sidecar_h2_streams_reset_total', { route: 'g1', reason: 'peer_reset' }, 1);
  });

  it('pooling: maxConcurrentStreams per session respected, sessions up to maxConnections, the rest wait; idle sessions closed', async (t) => {
    let open = 0;
    let maxOpenPerSession = 0;
    const perSession = new Map<http2.ServerHttp2Session, number>();
    const up = await h2Upstream((s, _h, session) => {
      open++;
      const n = (perSession.get(session) ?? 0) + 1;
      perSession.set(session, n);
      maxOpenPerSession = Math.max(maxOpenPerSession, n);
      s.resume();
      setTimeout(() => {
        open--;
        perSession.set(session, (perSession.get(session) ?? 1) - 1);
        s.respond({ ':status': 200 });
        s.end('ok');
      }, 150);
    });
    const sc = await startTestSidecar({ routes: [h2Route(up.port, { maxConnections: 2, h2: { maxConcurrentStreams: 2, idleTimeoutMs: 300 } })] });
    const c = connect(sc.port());
    t.after(async () => {
      c.close();
      await sc.stop();
      await up.close();
    });
    const rs = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => h2Request(c, { ':path': `/s${i}` })));
    assert.deepEqual(rs.map((r) => r.status), [200, 200, 200, 200, 200, 200]);
    assert.equal(up.sessions.length, 2, 'maxConnections sessions');
    assert.equal(maxOpenPerSession, 2, 'never more than maxConcurrentStreams on one session');
    assert.ok(Math.max(...rs.map((r) => r.ms)) >= 250, 'the last two waited for a slot');
    await waitForMetric(sc, 'keepalive_sidecar_upstream_connections_closed_total', { route: 'g1', reason: 'idle_evicted' }, 2, 3000);
  });

  it('a slow upstream (2.5 s of silence) is not a stalled session: one empty SETTINGS check, answered, the call completes, the session kept', async (t) => {
    let remoteSettings = 0;
    const up = await h2Upstream((s) => {
      s.resume();
      setTimeout(() => {
        s.respond({ ':status': 200 });
        s.end('slow');
      }, 2500);
    });
    up.server.on('session', (session: http2.ServerHttp2Session) => session.on('remoteSettings', () => remoteSettings++));
    const sc = await startTestSidecar({ routes: [h2Route(up.port)] });
    const c = connect(sc.port());
    t.after(async () => {
      c.close();
      await sc.stop();
      await up.close();
    });
    const r = await h2Request(c, { ':path': '/slow' });
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'slow');
    assert.equal(up.sessions.length, 1);
    assert.equal(up.sessions[0]!.destroyed, false, 'the session is kept');
    // The connection preface's SETTINGS, then one check for the whole silence (not one per tick).
    assert.equal(remoteSettings, 2, `SETTINGS frames the upstream got: ${remoteSettings}`);
    assert.equal(await metricValue(sc, 'keepalive_sidecar_upstream_connections_closed_total', { route: 'g1', reason: 'protocol_error' }), 0);
  });

  for (const variant of ['ack-evidence', 'ping-behind-data'] as const) {
    const title =
      variant === 'ack-evidence'
        ? 'an upstream that stops reading during an upload (zero window, 2 s) is not a dead peer: the upload completes (earlyRetry on)'
        : 'a PING queued behind upload DATA to an upstream that stops reading gets more time, not ping_timeout: upload and the held GET complete';
    it(title, async (t) => {
      const PAUSE_MS = 2000;
      const frame = (type: number, flags: number, id: number, payload: Buffer = Buffer.alloc(0)): Buffer => {
        const h = Buffer.alloc(9);
        h.writeUIntBE(payload.length, 0, 3);
        h[3] = type;
        h[4] = flags;
        h.writeUInt32BE(id, 5);
        return Buffer.concat([h, payload]);
      };
      const u32 = (n: number): Buffer => {
        const b = Buffer.alloc(4);
        b.writeUInt32BE(n >>> 0);
        return b;
      };
      let got = 0;
      let paused = 0;
      // A raw h2 upstream with windows wide open: after the HEADERS it stops reading its socket for PAUSE_MS
      // (its receive window closes: the kernel zero-window probes a live peer), then reads the body and answers.
      const server = net.createServer((s) => {
        s.on('error', () => {});
        s.write(Buffer.concat([frame(4, 0, 0, Buffer.concat([Buffer.from([0, 4]), u32(0x7fffffff)])), frame(8, 0, 0, u32(0x7fffffff - 65535))]));
        let buf = Buffer.alloc(0);
        let isPrefaceSeen = false;
        s.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          if (!isPrefaceSeen) {
            if (buf.length < 24) return;
            buf = buf.subarray(24);
            isPrefaceSeen = true;
          }
          while (buf.length >= 9) {
            const len = buf.readUIntBE(0, 3);
            if (buf.length < 9 + len) return;
            const type = buf[3]!;
            const flags = buf[4]!;
            const id = buf.readUInt32BE(5) & 0x7fffffff;
            buf = buf.subarray(9 + len);
            if (type === 4 && (flags & 1) === 0) s.write(frame(4, 1, 0));
            if (type === 6 && (flags & 1) === 0) s.write(frame(6, 1, 0, Buffer.alloc(8)));
            if (type === 1 && paused > 0 && (flags & 1) !== 0) s.write(frame(1, 5, id, Buffer.from([0x88])));
            if (type === 1 && paused++ === 0) {
              s.pause();
              setTimeout(() => s.resume(), PAUSE_MS);
              return;
            }
            if (type === 0) {
              got += len;
              if ((flags & 1) !== 0) s.write(frame(1, 5, id, Buffer.from([0x88])));
            }
          }
        });
      });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      // ping-behind-data: a GET 600 ms in finds the session silent past pingIdleMs; its before_use PING is queued
      // behind MiBs of DATA the kernel cannot send (wq > 0, snd_wnd 0).
      const h2 = variant === 'ack-evidence' ? {} : { h2: { pingIdleMs: 200, pingTimeoutMs: 300 } };
      const sc = await startTestSidecar({ routes: [h2Route((server.address() as net.AddressInfo).port, h2)] });
      const c = connect(sc.port());
      t.after(async () => {
        c.destroy();
        await sc.stop();
        server.close();
      });
      const MIB = 32;
      const t0 = performance.now();
      const req = c.request({ ':path': '/up', ':method': 'POST' });
      const chunk = Buffer.alloc(64 * 1024);
      let n = 0;
      const pump = (): void => {
        while (n < MIB * 16) {
          n++;
          if (!req.write(chunk)) {
            req.once('drain', pump);
            return;
          }
        }
        req.end();
      };
      pump();
      req.resume();
      req.on('error', () => {});
      const get = variant === 'ping-behind-data' ? new Promise((res) => setTimeout(res, 600)).then(() => h2Request(c, { ':path': '/get' })) : undefined;
      const [h] = (await once(req, 'response')) as [http2.IncomingHttpHeaders];
      const ms = performance.now() - t0;
      assert.equal(h[':status'], 200, `status ${String(h[':status'])} ${String(h['x-sidecar-error'])} after ${ms.toFixed(0)} ms`);
      assert.equal(got, MIB * 1024 * 1024, 'the whole body arrived');
      assert.ok(ms >= PAUSE_MS, 'it did wait for the upstream');
      if (get !== undefined) assert.equal((await get).status, 200, 'the GET held for the PING');
      assert.equal(await metricValue(sc, 'keepalive_sidecar_upstream_connections_closed_total', { route: 'g1', reason: 'ping_timeout' }), 0);
    });
  }

  it('1xx: 103 Early Hints and 100 Continue reach the app before the final response; past 10 informational responses 502 protocol_error', async (t) => {
    const up = await h2Upstream((s, h) => {
      if (h[':path'] === '/hints') {
        s.additionalHeaders({ ':status': 103, link: '</style.css>; rel=preload; as=style' });
        s.respond({ ':status': 200 });
        s.end('page');
        return;
      }
      if (h[':path'] === '/upload') {
        assert.equal(h.expect, '100-continue');
        s.additionalHeaders({ ':status': 100 });
        const chunks: Buffer[] = [];
        s.on('data', (d: Buffer) => chunks.push(d));
        s.on('end', () => {
          s.respond({ ':status': 200 });
          s.end(Buffer.concat(chunks));
        });
        return;
      }
      for (let i = 0; i < 11; i++) s.additionalHeaders({ ':status': 103, link: `</${i}.js>; rel=preload` });
      s.respond({ ':status': 200 });
      s.end('late');
    });
    const sc = await startTestSidecar({ routes: [h2Route(up.port)] });
    const c = connect(sc.port());
    t.after(async () => {
      c.close();
      await sc.stop();
      await up.close();
    });
    const infos: http2.IncomingHttpHeaders[] = [];
    const req = c.request({ ':path': '/hints' });
    req.on('headers', (h) => infos.push(h));
    const [head] = (await once(req, 'response')) as [http2.IncomingHttpHeaders];
    req.resume();
    await once(req, 'close');
    assert.equal(infos.length, 1);
    assert.equal(infos[0]![':status'], 103);
    assert.equal(infos[0]!.link, '</style.css>; rel=preload; as=style');
    assert.equal(head[':status'], 200);

    // Expect: 100-continue: the body goes only after the upstream's 100 came back through the sidecar.
    const up2 = c.request({ ':path': '/upload', ':method': 'POST', expect: '100-continue' }, { endStream: false });
    await once(up2, 'continue');
    up2.end('the body');
    const chunks: Buffer[] = [];
    up2.on('data', (d: Buffer) => chunks.push(d));
    const [head2] = (await once(up2, 'response')) as [http2.IncomingHttpHeaders];
    await once(up2, 'close');
    assert.equal(head2[':status'], 200);
    assert.equal(Buffer.concat(chunks).toString(), 'the body');

    const flood = await h2Request(c, { ':path': '/flood' });
    assert.equal(flood.status, 502);
    assert.equal(flood.headers['x-sidecar-error'], 'protocol_error');
  });

  it('queue bound: streams the app cancels while queued leave the queue at once (new ones are queued, not refused)', async (t) => {
    let stalled: http2.ServerHttp2Stream | undefined;
    const up = await h2Upstream((s, h) => {
      s.resume();
      if (h[':path'] === '/stall') {
        stalled = s;
        return;
      }
      s.respond({ ':status': 200 });
      s.end('ok');
    });
    const sc = await startTestSidecar({ routes: [h2Route(up.port, { maxConnections: 1, h2: { maxConcurrentStreams: 1 } })] });
    const pool = sc.sidecar.h2Routes[0]!.pool;
    const a = connect(sc.port());
    const c = connect(sc.port());
    const bs = [connect(sc.port()), connect(sc.port())];
    t.after(async () => {
      for (const x of [a, c, ...bs]) x.destroy();
      await sc.stop();
      await up.close();
    });
    // The one slot is taken by a stream the upstream never answers.
    const stall = a.request({ ':path': '/stall' });
    stall.on('error', () => {});
    await waitFor(() => stalled !== undefined, 2000);
    // 1024 streams fill the queue (two app sessions: 1000 concurrent streams each at most).
    const queued = bs.flatMap((b, i) => Array.from({ length: 512 }, (_, k) => h2Request(b, { ':path': `/q${i}-${k}` })));
    await waitFor(() => pool.pendingCount === 1024, 5000);
    const over = await h2Request(c, { ':path': '/over' });
    assert.equal(over.status, 503, 'past the bound: refused');
    assert.equal(over.headers['x-sidecar-error'], 'overflow');
    // The app gives up on all of them: they leave the queue now, not after the 5 s pending timeout.
    for (const b of bs) b.destroy();
    await Promise.all(queued);
    await waitFor(() => pool.pendingCount === 0, 2000);
    const t0 = performance.now();
    const next = h2Request(c, { ':path': '/next' });
    await waitFor(() => pool.pendingCount === 1, 2000);
    stall.close(http2.constants.NGHTTP2_CANCEL);
    const r = await next;
    assert.equal(r.status, 200, 'queued, then served once the slot freed');
    assert.ok(performance.now() - t0 < 2000, 'served well before the pending timeout');
  });

  it('socket options are set and read back on h2 upstream sockets; /debug shows the session', async (t) => {
    const up = await h2Upstream((s) => {
      s.respond({ ':status': 200 });
      s.end('ok');
    });
    const keepalive = { idleMs: 2000, intervalMs: 1000, probes: 4, userTimeoutMs: 7000 };
    const sc = await startTestSidecar({ routes: [h2Route(up.port, { keepalive })] });
    const c = connect(sc.port());
    t.after(async () => {
      c.close();
      await sc.stop();
      await up.close();
    });
    assert.equal((await h2Request(c, { ':path': '/' })).status, 200);
    const conns = [...sc.sidecar.h2Routes[0]!.pool.connections()];
    assert.equal(conns.length, 1);
    const so = readSockopts(conns[0]!.socket);
    assert.deepEqual(
      { keepAlive: so?.keepAlive, idle: so?.keepIdleSec, intvl: so?.keepIntvlSec, cnt: so?.keepCnt, ut: so?.userTimeoutMs, nodelay: so?.noDelay },
      { keepAlive: true, idle: 2, intvl: 1, cnt: 4, ut: 7000, nodelay: true },
    );
    const res = await fetch(`http://127.0.0.1:${sc.sidecar.debug!.port}/debug/connections`);
    const page = (await res.json()) as { connections: Array<{ route: string; isSockoptsAsConfigured: boolean; h2?: { state: string; streamsOpen: number } }> };
    const view = page.connections.find((x) => x.route === 'g1');
    assert.equal(view?.isSockoptsAsConfigured, true);
    assert.equal(view?.h2?.state, 'ready');
    assert.equal(view?.h2?.streamsOpen, 0);
  });

  it('drain: the app session gets GOAWAY, the stream in flight finishes, then the sidecar stops (drained)', async (t) => {
    const up = await h2Upstream((s) => {
      setTimeout(() => {
        s.respond({ ':status': 200 });
        s.end('late');
      }, 300);
    });
    const sc = await startTestSidecar({ routes: [h2Route(up.port)] });
    const c = connect(sc.port());
    t.after(async () => {
      c.close();
      await up.close();
    });
    const goaway = once(c, 'goaway');
    const pending = h2Request(c, { ':path': '/slow' });
    await waitFor(() => sc.sidecar.h2Routes[0]!.listener.streamCount === 1, 2000, 'stream in flight');
    const stopped = sc.sidecar.stop();
    const [code] = (await goaway) as [number];
    assert.equal(code, http2.constants.NGHTTP2_NO_ERROR);
    const r = await pending;
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'late');
    assert.equal(await stopped, 'drained');
  });
});

describe('h2 route: gRPC (grpc-js client and server)', () => {
  let fx: Awaited<ReturnType<typeof grpcEchoServer>>;
  let sc: Awaited<ReturnType<typeof startTestSidecar>>;
  let client: ReturnType<typeof echoClient>;
  const ready = (async () => {
    fx = await grpcEchoServer();
    sc = await startTestSidecar({ routes: [h2Route(fx.port)] });
    client = echoClient(sc.port());
  })();
  after(async () => {
    await ready;
    client.close();
    await sc.stop();
    await fx.close();
  });

  it('unary: metadata, response headers, trailers, status; a 2 MiB message each way', async () => {
    await ready;
    const md = new grpc.Metadata();
    md.set('x-app', 'a1');
    const big = Buffer.alloc(2 << 20, 3);
    const r = await unary(client, 'Unary', big, md, { deadline: Date.now() + 10000 });
    assert.equal(r.err, undefined);
    assert.ok(r.value?.equals(big));
    assert.equal(r.headers?.get('x-echo-len')[0], String(big.length));
    assert.equal(r.trailers?.get('x-trailer')[0], 'yes');
    assert.equal(fx.lastMetadata.get('Unary')?.get('x-app')[0], 'a1');
    const deadline = fx.lastDeadline.get('Unary');
    const at = deadline instanceof Date ? deadline.getTime() : Number(deadline);
    assert.ok(at > Date.now() && at <= Date.now() + 10000, `deadline propagated (grpc-timeout): ${String(deadline)}`);
  });

  it('unary error: status code, details and trailer metadata from the server reach the app', async () => {
    await ready;
    const md = new grpc.Metadata();
    md.set('x-fail', String(grpc.status.FAILED_PRECONDITION));
    const r = await unary(client, 'Unary', Buffer.from('x'), md);
    assert.equal(r.err?.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(r.err?.details, 'failed as asked');
    assert.equal(r.err?.metadata.get('x-why')[0], 'asked');
  });

  it('server streaming and bidi streaming', async () => {
    await ready;
    const got: string[] = [];
    const ss = (client as unknown as { ServerStream: (req: Buffer) => grpc.ClientReadableStream<Buffer> }).ServerStream(Buffer.from('50'));
    ss.on('data', (b: Buffer) => got.push(b.toString()));
    await once(ss, 'end');
    assert.equal(got.length, 50);
    assert.equal(got[49], 'msg-49');
    const bidi = (client as unknown as { Bidi: () => grpc.ClientDuplexStream<Buffer, Buffer> }).Bidi();
    const echoed: string[] = [];
    bidi.on('data', (b: Buffer) => {
      echoed.push(b.toString());
      if (echoed.length < 20) bidi.write(Buffer.from(`m${echoed.length}`));
      else bidi.end();
    });
    bidi.write(Buffer.from('m0'));
    await once(bidi, 'end');
    assert.equal(echoed.length, 20);
    assert.equal(echoed[19], 're:m19');
  });

  it('deadline exceeded while the upstream is slow: DEADLINE_EXCEEDED, upstream stream cancelled, session kept', async () => {
    await ready;
    fx.slowMs = 1000;
    const r = await unary(client, 'Slow', Buffer.from('x'), new grpc.Metadata(), { deadline: Date.now() + 200 });
    assert.equal(r.err?.code, grpc.status.DEADLINE_EXCEEDED);
    assert.ok(r.ms < 900, `${Math.round(r.ms)} ms`);
    const ok = await unary(client, 'Unary', Buffer.from('after'));
    assert.equal(ok.value?.toString(), 'after');
    assert.equal(await metricValue(sc, 'keepalive_sidecar_upstream_connections_closed_total', { route: 'g1', reason: 'downstream_closed' }), 0);
  });
});
