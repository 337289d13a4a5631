/**
 * HTTP mode proxy correctness on real loopback sockets: methods and bodies (content-length and chunked,
 * streamed), HEAD, Expect: 100-continue, hop-by-hop removal (RFC 9110 §7.6.1), Host kept, WebSocket tunnel,
 * h2c never tunnelled, bad input (400/431) that never reaches the upstream, refused upstream (502), response
 * timeout (504, connection destroyed), pending overflow (503), safe retry after a reset.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { CloseInfo } from '../../src/pool/index.js';
import { addWebSocketEcho, httpUpstream, request, wsAccept } from '../fixtures/http-upstreams.js';
import type { HttpFixture } from '../fixtures/http-upstreams.js';
import { closedPort } from '../fixtures/upstreams.js';
import { httpRoute, metricValue, readUntil, startTestSidecar, waitFor } from '../helpers/sidecar.js';
import type { TestSidecar } from '../helpers/sidecar.js';

/** Sends raw bytes on a fresh connection and returns everything received until the sidecar closes it. */
async function rawExchange(port: number, bytes: string): Promise<string> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  let got = '';
  s.on('data', (c: Buffer) => (got += c.toString('latin1')));
  s.write(bytes);
  await once(s, 'close');
  return got;
}

describe('http mode: proxy correctness', () => {
  let up: HttpFixture;
  let sc: TestSidecar;
  const closes: CloseInfo[] = [];

  before(async () => {
    up = await httpUpstream((req, res, body) => {
      const path = req.url ?? '/';
      if (path.startsWith('/hang')) return; // never answers (response timeout test)
      if (path.startsWith('/hop')) {
        res.setHeader('Connection', 'X-Hop-Res');
        res.setHeader('X-Hop-Res', 'must go');
        res.setHeader('X-End-Res', 'stays');
        res.end('hop');
        return;
      }
      if (path.startsWith('/big')) {
        // Chunked response (no content-length) of 2 MiB, to check streaming downstream.
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        for (let i = 0; i < 32; i++) res.write(chunk);
        res.end();
        return;
      }
      if (path.startsWith('/trailers')) {
        res.setHeader('Trailer', 'x-checksum');
        res.write('body');
        res.addTrailers([['x-checksum', 'abc'], ['Connection', 'close'], ['x-also', '1']]);
        res.end();
        return;
      }
      if (path.startsWith('/sha')) {
        res.end(createHash('sha256').update(body).digest('hex'));
        return;
      }
      res.setHeader('x-seen-host', req.headers.host ?? '');
      res.setHeader('content-length', String(Buffer.byteLength(`${req.method} ${path} ${body.length}`)));
      res.end(req.method === 'HEAD' ? undefined : `${req.method} ${path} ${body.length}`);
    });
    addWebSocketEcho(up);
    sc = await startTestSidecar({ routes: [httpRoute(up.port, { http: { responseTimeoutMs: 500 } })] });
    sc.sidecar.routes[0]!.pool.on('closed', (_c, info) => closes.push(info));
  });
  after(async () => {
    await sc.stop();
    await up.close();
  });

  it('GET, POST, PUT, DELETE, HEAD: method, path, body and Host arrive unchanged', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (const method of ['GET', 'POST', 'PUT', 'DELETE', 'HEAD']) {
        const body = method === 'POST' || method === 'PUT' ? 'hello' : undefined;
        const r = await request(sc.port(), { method, path: '/p?q=1', headers: { host: 'app.example:8080' }, body, agent });
        assert.equal(r.status, 200, method);
        assert.equal(r.headers['x-seen-host'], 'app.example:8080', 'Host is kept');
        if (method === 'HEAD') {
          assert.equal(r.body.length, 0);
          assert.equal(r.headers['content-length'], String('HEAD /p?q=1 0'.length), 'HEAD keeps the content-length');
        } else {
          assert.equal(r.body.toString(), `${method} /p?q=1 ${body?.length ?? 0}`);
        }
      }
    } finally {
      agent.destroy();
    }
  });

  it('streams a 1 MiB chunked request body and a 2 MiB chunked response', async () => {
    const payload = randomBytes(1024 * 1024);
    const want = createHash('sha256').update(payload).digest('hex');
    const got = await new Promise<string>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: sc.port(), method: 'POST', path: '/sha', agent: false }, (res) => {
        let b = '';
        res.on('data', (c: Buffer) => (b += c.toString()));
        res.on('end', () => resolve(b));
      });
      req.on('error', reject);
      // No content-length: Node sends it chunked, 64 KiB at a time.
      for (let i = 0; i < payload.length; i += 65536) req.write(payload.subarray(i, i + 65536));
      req.end();
    });
    assert.equal(got, want);
    const seen = up.seen.find((s) => s.url === '/sha');
    assert.equal(seen?.headers['transfer-encoding'], 'chunked', 'the upstream got it chunked (streamed, not buffered to a length)');
    const big = await request(sc.port(), { path: '/big' });
    assert.equal(big.body.length, 2 * 1024 * 1024);
  });

  it('trailer fields of a chunked response reach the app (they were dropped while Trailer announced them); hop-by-hop ones do not; a Connection: close among them retires the connection', async () => {
    const got = await new Promise<{ body: string; trailers: NodeJS.Dict<string> }>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: sc.port(), path: '/trailers', agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ body, trailers: res.trailers }));
      }).on('error', reject);
    });
    assert.equal(got.body, 'body');
    assert.equal(got.trailers['x-checksum'], 'abc');
    assert.equal(got.trailers['x-also'], '1');
    assert.equal(got.trailers.connection, undefined);
    // llhttp honours that `Connection: close` in the trailers: the connection is retired, never reused for
    // the next request (which got 502 protocol_error, "Data after Connection: close").
    const next = await request(sc.port(), { path: '/after-trailers' });
    assert.equal(next.status, 200);
  });

  it('a content-length body within retry.maxBodyBytes is forwarded with its length', async () => {
    const r = await request(sc.port(), { method: 'PUT', path: '/sha', body: 'x'.repeat(1000), headers: { 'content-length': '1000' } });
    assert.equal(r.body.toString(), createHash('sha256').update('x'.repeat(1000)).digest('hex'));
    assert.equal(up.seen.at(-1)?.headers['content-length'], '1000');
  });

  it('removes hop-by-hop fields both ways, including those named by Connection', async () => {
    const r = await request(sc.port(), {
      path: '/hop',
      headers: { Connection: 'keep-alive, X-Hop-Req', 'X-Hop-Req': 'must go', 'Keep-Alive': 'timeout=9', TE: 'trailers', 'Proxy-Connection': 'keep-alive', 'X-End-Req': 'stays' },
    });
    assert.equal(r.status, 200);
    const seen = up.seen.at(-1)!;
    assert.equal(seen.headers['x-hop-req'], undefined);
    assert.equal(seen.headers['keep-alive'], undefined);
    assert.equal(seen.headers.te, undefined);
    assert.equal(seen.headers['proxy-connection'], undefined);
    assert.equal(seen.headers['x-end-req'], 'stays');
    assert.equal(r.headers['x-hop-res'], undefined);
    assert.equal(r.headers['x-end-res'], 'stays');
  });

  it('Expect: 100-continue: the client gets 100 then the response; Expect is not forwarded', async () => {
    const result = await new Promise<{ sawContinue: boolean; status: number; body: string }>((resolve, reject) => {
      let sawContinue = false;
      const req = http.request({ host: '127.0.0.1', port: sc.port(), method: 'POST', path: '/sha', agent: false, headers: { Expect: '100-continue', 'content-length': '5' } }, (res) => {
        let b = '';
        res.on('data', (c: Buffer) => (b += c.toString()));
        res.on('end', () => resolve({ sawContinue, status: res.statusCode ?? 0, body: b }));
      });
      req.on('continue', () => {
        sawContinue = true;
        req.end('hello');
      });
      req.on('error', reject);
      req.flushHeaders();
    });
    assert.equal(result.sawContinue, true);
    assert.equal(result.status, 200);
    assert.equal(result.body, createHash('sha256').update('hello').digest('hex'));
    assert.equal(up.seen.at(-1)?.headers.expect, undefined);
  });

  it('bad input gets 400/431 and the connection is closed; nothing reaches the upstream', async () => {
    const seenBefore = up.seen.length;
    const opened = await metricValue(sc, 'keepalive_sidecar_upstream_connections_opened_total', { route: 'h1' });
    const cases: Array<[string, string, string]> = [
      ['CL + TE', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', '400'],
      ['differing duplicate Content-Length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!', '400'],
      ['header section over maxHeaderBytes', `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`, '431'],
      ['invalid header bytes', 'GET / HTTP/1.1\r\nHost: a\r\nX-Bad: a\x01b\r\n\r\n', '400'],
      ['invalid header name', 'GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n', '400'],
    ];
    for (const [name, bytes, status] of cases) {
      const got = await rawExchange(sc.port(), bytes);
      assert.match(got, new RegExp(`^HTTP/1\\.1 ${status} `), `${name}: got ${JSON.stringify(got.slice(0, 40))}`);
    }
    assert.equal(up.seen.length, seenBefore, 'no bad request reached the upstream');
    assert.equal(await metricValue(sc, 'keepalive_sidecar_upstream_connections_opened_total', { route: 'h1' }), opened, 'no upstream connection was opened');
  });

  it('WebSocket: the upgrade is tunnelled and echoes', async () => {
    const s = net.connect(sc.port(), '127.0.0.1');
    s.on('error', () => {});
    await once(s, 'connect');
    const key = randomBytes(16).toString('base64');
    s.write(`GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    const head = await readUntil(s, '\r\n\r\n');
    assert.match(head, /^HTTP\/1\.1 101 /);
    assert.ok(head.includes(wsAccept(key)), 'Sec-WebSocket-Accept came through');
    s.write('frame-bytes-1');
    await readUntil(s, 'frame-bytes-1');
    s.destroy();
  });

  it('Upgrade: h2c is never tunnelled: served as plain HTTP/1.1 without Upgrade, then closed', async () => {
    const got = await rawExchange(sc.port(), 'GET /h2c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n');
    assert.match(got, /^HTTP\/1\.1 200 /);
    assert.ok(got.endsWith('GET /h2c 0'), got);
    const seen = up.seen.at(-1)!;
    assert.equal(seen.url, '/h2c');
    assert.equal(seen.headers.upgrade, undefined);
    assert.equal(seen.headers['http2-settings'], undefined, 'fields named by Connection are removed');
  });

  it('responseTimeoutMs: 504 with x-sidecar-error, and that upstream connection is destroyed, not reused', async () => {
    const seen = closes.length;
    const r = await request(sc.port(), { path: '/hang' });
    assert.equal(r.status, 504);
    assert.equal(r.headers['x-sidecar-error'], 'response_timeout');
    assert.ok(r.ms >= 450 && r.ms < 1000, `504 after ${Math.round(r.ms)} ms (responseTimeoutMs 500, sweep 100)`);
    await waitFor(() => closes.slice(seen).some((c) => c.reason === 'response_timeout'), 1000, 'a close with response_timeout');
    for (const c of sc.sidecar.routes[0]!.pool.connections()) assert.notEqual(c.closeReason, 'response_timeout');
    const again = await request(sc.port(), { path: '/after-timeout' });
    assert.equal(again.status, 200);
  });
});

describe('http mode: upstream failures', () => {
  it('refused upstream: 502 with x-sidecar-error: connect_refused, fast', async () => {
    const port = await closedPort();
    const sc = await startTestSidecar({ routes: [httpRoute(port)] });
    try {
      const r = await request(sc.port(), { path: '/' });
      assert.equal(r.status, 502);
      assert.equal(r.headers['x-sidecar-error'], 'connect_refused');
      assert.ok(r.ms < 500, `502 after ${Math.round(r.ms)} ms`);
    } finally {
      await sc.stop();
    }
  });

  it('maxPending overflow: 503 at once with x-sidecar-error: overflow', async () => {
    const held: http.ServerResponse[] = [];
    const up = await httpUpstream((_req, res) => held.push(res));
    const sc = await startTestSidecar({ routes: [httpRoute(up.port, { maxConnections: 1, http: { maxPending: 1 } })] });
    try {
      const first = request(sc.port(), { path: '/1' });
      await waitFor(() => held.length >= 1, 2000, 'the first request upstream');
      const second = request(sc.port(), { path: '/2' }); // waits in the pending queue
      await waitFor(() => sc.sidecar.routes[0]!.pool.pendingCount >= 1, 2000, 'a pending acquire');
      const third = await request(sc.port(), { path: '/3' });
      assert.equal(third.status, 503);
      assert.equal(third.headers['x-sidecar-error'], 'overflow');
      assert.ok(third.ms < 200, `503 after ${Math.round(third.ms)} ms`);
      held.shift()!.end('one');
      await waitFor(() => held.length >= 1, 2000, 'the second request upstream');
      held.shift()!.end('two');
      assert.equal((await first).status, 200);
      assert.equal((await second).body.toString(), 'two', 'the pending request was served on the released connection');
    } finally {
      await sc.stop();
      await up.close();
    }
  });

  it('reset before any response byte: GET is retried on a fresh connection (200), POST gets 502 peer_reset', async () => {
    const up = await httpUpstream((req, res) => {
      if (req.headers['x-reset-once'] === '1' && !resetDone.has(req.url ?? '')) {
        resetDone.add(req.url ?? '');
        req.socket.resetAndDestroy();
        return;
      }
      res.end('ok');
    });
    const resetDone = new Set<string>();
    const sc = await startTestSidecar({ routes: [httpRoute(up.port)] });
    try {
      const get = await request(sc.port(), { path: '/g', headers: { 'x-reset-once': '1', 'x-req-id': 'g' } });
      assert.equal(get.status, 200);
      assert.equal(up.byId.get('g'), 2, 'seen twice: the reset attempt and the retry');
      assert.equal(await metricValue(sc, 'keepalive_sidecar_http_retries_total', { route: 'h1', reason: 'peer_reset' }), 1);
      const post = await request(sc.port(), { method: 'POST', path: '/p', body: 'x', headers: { 'x-reset-once': '1', 'x-req-id': 'p' } });
      assert.equal(post.status, 502);
      assert.equal(post.headers['x-sidecar-error'], 'peer_reset');
      assert.equal(up.byId.get('p'), 1, 'a POST without Idempotency-Key is never sent twice');
      const keyed = await request(sc.port(), { method: 'POST', path: '/k', body: 'x', headers: { 'x-reset-once': '1', 'x-req-id': 'k', 'Idempotency-Key': 'abc' } });
      assert.equal(keyed.status, 200, 'a POST with Idempotency-Key is retried');
    } finally {
      await sc.stop();
      await up.close();
    }
  });
});
