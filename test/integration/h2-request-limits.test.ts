/**
 * An app request over the h2 route with more header fields than http.maxHeaderCount (100, + the 4 request
 * pseudo-headers) gets a clear answer, as over HTTP/1 (431), instead of a bare RST_STREAM ENHANCE_YOUR_CALM
 * from nghttp2: plain h2 → 431 with a reason, gRPC → trailers-only RESOURCE_EXHAUSTED. Nothing is sent
 * upstream, the app's session goes on. Real CLI, real node:http2 upstream.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { it } from 'node:test';
import type { TestContext } from 'node:test';
import { h2Request, h2Upstream } from '../fixtures/h2-upstreams.js';
import { h2Route, startH2Sidecar } from '../helpers/h2-sidecar.js';

function withFields(n: number, base: http2.OutgoingHttpHeaders): http2.OutgoingHttpHeaders {
  const h: http2.OutgoingHttpHeaders = { ...base };
  // node:http2's client adds :method/:scheme/:authority/:path; base carries its own regular fields.
  const have = Object.keys(base).filter((k) => !k.startsWith(':')).length;
  for (let i = have; i < n; i++) h[`x-f${i}`] = 'v';
  return h;
}

it('h2 route: > 100 request header fields -> 431 (gRPC: RESOURCE_EXHAUSTED), nothing upstream; 100 pass', { timeout: 30_000 }, async (t: TestContext) => {
  const seen: string[] = [];
  const up = await h2Upstream((s, h) => {
    seen.push(String(h[':path']));
    s.resume();
    s.respond({ ':status': 200 });
    s.end('ok');
  });
  t.after(() => up.close());
  const sc = await startH2Sidecar(t, [h2Route(up.port, {}, {}, 'g')]);
  t.after(() => sc.stop());
  const c = http2.connect(`http://127.0.0.1:${sc.port}`);
  c.on('error', () => {});
  t.after(() => c.destroy());

  const ok = await h2Request(c, withFields(100, { ':path': '/hundred' }));
  assert.equal(ok.status, 200, '100 fields are forwarded');

  const plain = await h2Request(c, withFields(101, { ':path': '/plain' }));
  assert.equal(plain.status, 431);
  assert.match(plain.body.toString(), /more than 100 header fields/);
  assert.equal(plain.headers['x-sidecar-error'], 'protocol_error');

  const upload = await h2Request(c, withFields(150, { ':method': 'POST', ':path': '/upload' }), Buffer.alloc(256 * 1024, 0x61));
  assert.equal(upload.status, 431, 'with a body too; the rest of the upload is dropped');

  const grpc = await h2Request(c, withFields(120, { ':method': 'POST', ':path': '/pkg.Svc/M', 'content-type': 'application/grpc', te: 'trailers' }), Buffer.from([0, 0, 0, 0, 0]));
  assert.equal(grpc.status, 200);
  assert.equal(grpc.headers['grpc-status'], '8', 'RESOURCE_EXHAUSTED');
  assert.match(String(grpc.headers['grpc-message']), /more than 100 header fields/);

  assert.deepEqual(seen, ['/hundred'], 'the refused requests never reached the upstream');
  const after = await h2Request(c, { ':path': '/after' });
  assert.equal(after.status, 200, 'the app session goes on');
  assert.ok((await sc.metric('keepalive_sidecar_h2_streams_total', { route: 'g', outcome: 'failed' })) >= 3);
});
