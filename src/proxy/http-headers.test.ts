import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { absoluteToOriginForm, isRetrySafe, requestHeaders, responseHeaders, upgradeTokens } from './http-headers.js';

describe('http headers', () => {
  it('removes hop-by-hop request fields and the fields Connection names, keeps Host and case', () => {
    const out = requestHeaders([
      'Host', 'example.test', 'Connection', 'keep-alive, X-Hop', 'X-Hop', '1', 'Keep-Alive', 'timeout=5',
      'TE', 'trailers', 'Transfer-Encoding', 'chunked', 'Upgrade', 'h2c', 'Proxy-Connection', 'keep-alive',
      'Expect', '100-continue', 'X-End', '2',
    ]);
    assert.deepEqual(out, ['Host', 'example.test', 'X-End', '2']);
  });
  it('reads the Keep-Alive timeout hint and Connection: close from the response', () => {
    const r = responseHeaders(['Content-Length', '2', 'Keep-Alive', 'timeout=5, max=100', 'Connection', 'keep-alive'].map((s) => Buffer.from(s)));
    assert.deepEqual(r.headers, ['Content-Length', '2']);
    assert.equal(r.keepAliveTimeoutMs, 5000);
    assert.equal(r.isClosing, false);
    assert.equal(responseHeaders(['Connection', 'close'].map((s) => Buffer.from(s))).isClosing, true);
  });
  it('a Connection header naming only hop-by-hop fields (keep-alive) removes nothing else', () => {
    assert.deepEqual(requestHeaders(['Host', 'h', 'Connection', 'Keep-Alive', 'X-A', '1']), ['Host', 'h', 'X-A', '1']);
    const r = responseHeaders(['Connection', 'keep-alive', 'Keep-Alive', 'timeout=5', 'X-B', '2', 'Connection', 'x-b'].map((s) => Buffer.from(s)));
    assert.deepEqual(r.headers, []);
    assert.equal(r.keepAliveTimeoutMs, 5000);
    assert.equal(responseHeaders(['Keep-Alive', 'max=100'].map((s) => Buffer.from(s))).keepAliveTimeoutMs, undefined);
  });
  it('retry safety: idempotent methods (RFC 9110 §9.2.2) or an Idempotency-Key', () => {
    assert.equal(isRetrySafe('GET', []), true);
    assert.equal(isRetrySafe('PUT', []), true);
    assert.equal(isRetrySafe('POST', []), false);
    assert.equal(isRetrySafe('POST', ['Idempotency-Key', 'abc']), true);
    assert.equal(isRetrySafe('PATCH', ['X', 'y']), false);
  });
  it('upgrade tokens', () => {
    assert.deepEqual(upgradeTokens('WebSocket'), ['websocket']);
    assert.deepEqual(upgradeTokens('h2c, websocket/13'), ['h2c', 'websocket']);
    assert.deepEqual(upgradeTokens(undefined), []);
  });
  it('absolute-form targets become origin-form plus their authority as Host (RFC 9112 §3.2.2)', () => {
    assert.deepEqual(absoluteToOriginForm('http://a.example:8080/p?q=1'), { path: '/p?q=1', authority: 'a.example:8080' });
    assert.deepEqual(absoluteToOriginForm('HTTPS://a.example'), { path: '/', authority: 'a.example' });
    assert.deepEqual(absoluteToOriginForm('http://a.example?x'), { path: '/?x', authority: 'a.example' });
    assert.equal(absoluteToOriginForm('ftp://a.example/'), undefined);
    assert.equal(absoluteToOriginForm('http://user@a.example/'), undefined);
    assert.equal(absoluteToOriginForm('http:///p'), undefined);
    assert.equal(absoluteToOriginForm('http://a.example/p#frag'), undefined);
    assert.equal(absoluteToOriginForm('a.example:443'), undefined);
  });
  it('flags transfer-codings undici does not decode (anything but one plain chunked)', () => {
    const te = (...values: string[]) => responseHeaders(values.flatMap((v) => ['Transfer-Encoding', v]).map((x) => Buffer.from(x))).hasForeignTransferCoding;
    assert.equal(te(), false);
    assert.equal(te('chunked'), false);
    assert.equal(te(' Chunked '), false);
    assert.equal(te('gzip, chunked'), true);
    assert.equal(te('chunked', 'chunked'), true);
    assert.equal(te('chunked, chunked'), true);
    assert.equal(te('gzip'), true);
  });
});
