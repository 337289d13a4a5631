import assert from 'node:assert/strict';
import { AsyncResource, executionAsyncId } from 'node:async_hooks';
import { once } from 'node:events';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { requestStream, scopeBind } from './h2-driver.js';

describe('h2 driver: session.request() without the per-call bind cost', () => {
  it('scopeBind runs fn in the resource async scope with the caller this and arguments', () => {
    const r = new AsyncResource('Test');
    const seen: unknown[] = [];
    const bound = scopeBind.call(r, function (this: unknown, ...args: unknown[]) {
      seen.push(this, args, executionAsyncId());
      return 42;
    });
    const self = { me: 1 };
    assert.equal(bound.call(self, 'a', 2), 42);
    assert.deepEqual(seen, [self, ['a', 2], r.asyncId()]);
    const withThis = scopeBind.call(r, function (this: unknown) {
      return this;
    }, self);
    assert.equal(withThis(), self);
  });

  it('requests over a real h2c session (connecting and connected), restoring node bind each time', async () => {
    const nodeBind = AsyncResource.prototype.bind;
    const server = http2.createServer();
    server.on('stream', (stream, headers) => {
      stream.respond({ ':status': 200, 'x-method': headers[':method'] ?? '' });
      stream.resume();
      stream.end(`ok ${headers[':path'] ?? ''}`);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const fetch = async (path: string, isBodyless: boolean): Promise<string> => {
        const s = requestStream(session, { ':method': isBodyless ? 'GET' : 'POST', ':path': path }, isBodyless);
        assert.equal(AsyncResource.prototype.bind, nodeBind);
        if (!isBodyless) s.end('body');
        let text = '';
        s.setEncoding('utf8');
        s.on('data', (c: string) => (text += c));
        await once(s, 'end');
        return text;
      };
      // The first request is made while the session is still connecting (node runs the bound callback later).
      assert.equal(session.connecting, true);
      assert.deepEqual(await Promise.all([fetch('/a', true), fetch('/b', false)]), ['ok /a', 'ok /b']);
      assert.equal(await fetch('/c', true), 'ok /c');
      session.destroy();
      assert.throws(() => requestStream(session, { ':path': '/' }, true));
      assert.equal(AsyncResource.prototype.bind, nodeBind);
    } finally {
      session.destroy();
      server.close();
    }
  });
});
