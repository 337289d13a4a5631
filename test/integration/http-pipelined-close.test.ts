/**
 * Pipelined requests on an app connection that goes away before their responses: Node emits 'close' only on
 * the response attached to the socket, never on the ones queued behind it, so those exchanges used to stay
 * "in flight" for ever (found driving `printf 'GET..GET..' | nc -N`): their upstream attempts ran on and
 * SIGTERM's drain waited the whole drainTimeoutMs, ending 'forced'. Now each queued request's 'close' (socket
 * destroyed) ends its exchange too.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { httpRoute, startTestSidecar } from '../helpers/sidecar.js';

describe('http route: pipelined requests, app connection gone before the answers', () => {
  let up: http.Server;
  const seen: string[] = [];
  const cancelled: string[] = [];
  before(async () => {
    // Answers after 300 ms, so the second and third requests queue behind the first one's response.
    up = http.createServer((req, res) => {
      seen.push(req.url ?? '');
      const t = setTimeout(() => res.end('late'), 300);
      res.on('close', () => {
        if (!res.writableFinished) {
          clearTimeout(t);
          cancelled.push(req.url ?? '');
        }
      });
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
  });
  after(() => up.close());

  for (const how of ['half-close (FIN after the requests)', 'destroy after the first reached the upstream'] as const) {
    it(`${how}: every exchange ends, the drain finishes 'drained' at once`, async () => {
      seen.length = 0;
      cancelled.length = 0;
      const sc = await startTestSidecar({
        shutdown: { drainTimeoutMs: 3000 },
        routes: [httpRoute((up.address() as AddressInfo).port)],
      });
      let stopped = false;
      try {
        const c = net.connect(sc.port(), '127.0.0.1');
        c.on('error', () => {});
        c.on('data', () => {});
        await new Promise<void>((r) => c.once('connect', () => r()));
        c.write('GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n');
        if (how.startsWith('half')) {
          c.end();
        } else {
          const deadline = Date.now() + 3000;
          while (seen.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
          assert.ok(seen.length > 0, 'the first request reached the upstream');
          c.destroy();
        }
        await new Promise<void>((r) => (c.destroyed ? r() : c.once('close', () => r())));
        const t0 = performance.now();
        const outcome = await sc.sidecar.stop();
        stopped = true;
        const ms = performance.now() - t0;
        assert.equal(outcome, 'drained', `drain outcome after ${ms.toFixed(0)} ms (forced = a queued exchange never ended)`);
        assert.ok(ms < 2500, `drain took ${ms.toFixed(0)} ms`);
        console.log(`# ${how}: upstream saw ${seen.join(',')}, cancelled ${cancelled.join(',') || 'none'}; drained in ${ms.toFixed(0)} ms`);
      } finally {
        if (!stopped) await sc.stop();
      }
    });
  }
});
