/**
 * HTTP mode against hostile app clients (protocol audit, part 2), on real loopback sockets: a head dribbled
 * one byte at a time, hundreds of idle connections, an app that never reads a large response, and a request
 * body slower than the upstream's own timeout. Each test bounds its loops in count and time.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import type { CloseInfo } from '../../src/pool/index.js';
import { httpUpstream, request } from '../fixtures/http-upstreams.js';
import { httpRoute, startTestSidecar, waitFor } from '../helpers/sidecar.js';
import type { TestSidecar } from '../helpers/sidecar.js';

interface RawConn {
  readonly s: net.Socket;
  readonly got: () => string;
  readonly closed: Promise<number>;
}

async function rawConn(port: number): Promise<RawConn> {
  const s = net.connect(port, '127.0.0.1');
  let got = '';
  s.on('data', (c: Buffer) => (got += c.toString('latin1')));
  s.on('error', () => {
    // A reset counts as closed.
  });
  const closed = new Promise<number>((resolve) => s.once('close', () => resolve(performance.now())));
  await once(s, 'connect');
  return { s, got: () => got, closed };
}

describe('http mode: hostile app clients', () => {
  const cleanups: Array<() => Promise<void>> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });
  async function sidecar(upPort: number, http: Record<string, unknown> = {}): Promise<{ sc: TestSidecar; closes: CloseInfo[] }> {
    const sc = await startTestSidecar({ routes: [httpRoute(upPort, { http })] });
    const closes: CloseInfo[] = [];
    sc.sidecar.routes[0]!.pool.on('closed', (_c, info) => closes.push(info));
    cleanups.push(() => sc.stop());
    return { sc, closes };
  }

  it('slowloris: a head dribbled one byte every 100 ms is cut with 408 at requestHeadTimeoutMs (bytes do not extend it); others are served meanwhile', async () => {
    const up = await httpUpstream((_req, res) => res.end('ok'));
    cleanups.push(() => up.close());
    const HEAD_MS = 1000;
    const { sc } = await sidecar(up.port, { requestHeadTimeoutMs: HEAD_MS });
    const slow = await Promise.all(Array.from({ length: 20 }, () => rawConn(sc.port())));
    const t0 = performance.now();
    const head = 'GET /slow HTTP/1.1\r\nHost: x\r\nX-Dribble: ' + 'a'.repeat(200);
    let i = 0;
    // Bounded: at most 200 bytes, 100 ms apart (20 s), stops once every slow connection is closed.
    const dribble = setInterval(() => {
      for (const c of slow) if (!c.s.destroyed) c.s.write(head[i] ?? 'a');
      if (++i >= head.length) clearInterval(dribble);
    }, 100);
    try {
      // Served while the dribblers hold their connections.
      const ok = await request(sc.port(), { path: '/fast' });
      assert.equal(ok.status, 200);
      const closedAt = await Promise.all(slow.map((c) => c.closed));
      for (const c of slow) assert.match(c.got(), /^HTTP\/1\.1 408 /);
      const worst = Math.max(...closedAt) - t0;
      // Node checks heads every 500 ms (HEAD_CHECK_MS): closed within the bound + one check + slack.
      assert.ok(worst < HEAD_MS + 1500, `slowest dribbler closed after ${worst.toFixed(0)} ms`);
      assert.ok(i < head.length, 'cut before the dribble ended');
      console.log(`# slowloris: 20 dribblers all got 408, the last after ${worst.toFixed(0)} ms (${i} bytes dribbled)`);
    } finally {
      clearInterval(dribble);
      for (const c of slow) c.s.destroy();
    }
  });

  it('300 app connections that never send a byte: closed at requestHeadTimeoutMs, nothing upstream, a normal request served meanwhile', async () => {
    const up = await httpUpstream((_req, res) => res.end('ok'));
    cleanups.push(() => up.close());
    const { sc } = await sidecar(up.port, { requestHeadTimeoutMs: 1000 });
    const idle: RawConn[] = [];
    for (let k = 0; k < 300; k++) idle.push(await rawConn(sc.port()));
    try {
      const ok = await request(sc.port(), { path: '/fast' });
      assert.equal(ok.status, 200);
      const t0 = performance.now();
      await Promise.race([
        Promise.all(idle.map((c) => c.closed)),
        new Promise((_r, rej) => setTimeout(() => rej(new Error('idle connections still open after 5 s')), 5000).unref()),
      ]);
      console.log(`# 300 silent connections closed, the last ${(performance.now() - t0).toFixed(0)} ms after the probe request`);
      assert.equal(up.seen.length, 1, 'only the normal request reached the upstream');
      assert.equal(sc.sidecar.routes[0]!.listener.activeCount, 0);
    } finally {
      for (const c of idle) c.s.destroy();
    }
  });

  it('an app that never reads a large response: buffering stops at socket-buffer scale (upstream stalls), RSS bounded, upstream closed when the app leaves', async () => {
    let written = 0;
    let lastProgress = performance.now();
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const LIMIT = 512 * 1024 * 1024;
    const up = await httpUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      // Bounded: at most 512 MiB, and it stops as soon as the connection is closed.
      const pump = (): void => {
        while (!res.destroyed && written < LIMIT) {
          written += chunk.length;
          lastProgress = performance.now();
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        if (written >= LIMIT) res.end();
      };
      pump();
    });
    cleanups.push(() => up.close());
    const { sc, closes } = await sidecar(up.port);
    const rssBefore = process.memoryUsage().rss;
    const app = await rawConn(sc.port());
    app.s.pause();
    app.s.write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n');
    // Wait for the stall: 1 s without the upstream writing more (bounded by 15 s overall).
    const until = performance.now() + 15000;
    while (performance.now() - lastProgress < 1000 || written === 0) {
      assert.ok(performance.now() < until, `no stall after 15 s (${written} bytes written)`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    console.log(`# never-reading app: upstream stalled after ${(written / 1048576).toFixed(1)} MiB; RSS growth ${(rssGrowth / 1048576).toFixed(1)} MiB`);
    // Loopback socket buffers on the two hops (tcp_rmem/tcp_wmem autotuning) hold some MiB; user space adds
    // only stream high-water marks. Unbounded buffering would take all 512 MiB.
    assert.ok(written < 64 * 1024 * 1024, `upstream wrote ${written} bytes into a non-reading app`);
    assert.ok(rssGrowth < 64 * 1024 * 1024, `RSS grew ${(rssGrowth / 1048576).toFixed(1)} MiB`);
    app.s.destroy();
    await waitFor(() => closes.some((c) => c.reason === 'downstream_closed'), 3000, 'upstream closed with downstream_closed');
  });

  it('downstreamWriteTimeoutMs (default 60 s): an app that stops reading is closed after it, and the upstream connection it held with it', async () => {
    const chunk = Buffer.alloc(64 * 1024, 0x62);
    let written = 0;
    const up = await httpUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      // Bounded: at most 256 MiB; stops when the connection closes.
      const pump = (): void => {
        while (!res.destroyed && written < 256 * 1024 * 1024) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    cleanups.push(() => up.close());
    const dflt = await startTestSidecar({ routes: [httpRoute(up.port)] });
    assert.equal(dflt.config.routes[0]?.http.downstreamWriteTimeoutMs, 60000);
    await dflt.stop();
    const { sc, closes } = await sidecar(up.port, { downstreamWriteTimeoutMs: 800 });
    const app = await rawConn(sc.port());
    app.s.pause();
    const t0 = performance.now();
    app.s.write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor(() => closes.some((c) => c.reason === 'downstream_closed'), 10000, 'the upstream connection closed downstream_closed');
    console.log(`# stalled app: upstream connection closed ${(performance.now() - t0).toFixed(0)} ms after the request (${(written / 1048576).toFixed(1)} MiB written)`);
    assert.equal(sc.sidecar.routes[0]!.pool.stats().total, 0);
    app.s.destroy();
  });

  it('an app pipelining 2000 GETs in one write and never reading: requests go upstream one at a time, not 2000 connections', async () => {
    let seen = 0;
    const big = Buffer.alloc(1 << 20, 0x61);
    const up = await httpUpstream((_req, res) => {
      seen++;
      res.writeHead(200, { 'content-length': big.length });
      res.end(big);
    });
    cleanups.push(() => up.close());
    const { sc } = await sidecar(up.port);
    const pool = sc.sidecar.routes[0]!.pool;
    let most = 0;
    pool.on('connected', () => (most = Math.max(most, pool.stats().total)));
    const rssBefore = process.memoryUsage().rss;
    const app = await rawConn(sc.port());
    app.s.pause();
    app.s.write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(2000));
    // Give a runaway fan-out time to show (it reached ~1000 upstream requests within 6 s before the fix).
    await new Promise((r) => setTimeout(r, 1500));
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    console.log(`# non-reading pipeliner: ${seen} upstream requests, at most ${most} upstream connections, RSS growth ${(rssGrowth / 1048576).toFixed(1)} MiB`);
    // The first response fills the socket buffers (a few MiB on loopback), the rest wait their turn.
    assert.ok(seen <= 16, `${seen} of the 2000 pipelined requests went upstream`);
    assert.ok(pool.stats().total <= 2, `pool holds ${pool.stats().total} connections`);
    assert.ok(rssGrowth < 64 * 1024 * 1024, `RSS grew ${(rssGrowth / 1048576).toFixed(1)} MiB`);
    app.s.destroy();
    await waitFor(() => sc.sidecar.routes[0]!.listener.activeCount === 0, 3000, 'app connection gone');
  });

  for (const framing of ['content-length', 'chunked'] as const) {
    it(`responseTimeoutMs counts from the request's last byte: an upload (${framing}) slower than the bound is answered, a hung upstream after it still 504s`, async () => {
      const up = await httpUpstream((req, res, body) => {
        if (req.url === '/hang') return;
        res.end(`got ${body.length}`);
      });
      cleanups.push(() => up.close());
      const { sc } = await sidecar(up.port, { responseTimeoutMs: 500 });
      const upload = async (path: string): Promise<string> => {
        const app = await rawConn(sc.port());
        app.s.write(`POST ${path} HTTP/1.1\r\nHost: x\r\n${framing === 'chunked' ? 'Transfer-Encoding: chunked' : 'Content-Length: 150'}\r\n\r\n`);
        // 150 bytes over ~1.5 s: three times the response timeout. Bounded: 15 writes.
        for (let k = 0; k < 15; k++) {
          await new Promise((r) => setTimeout(r, 100));
          app.s.write(framing === 'chunked' ? 'a\r\nxxxxxxxxxx\r\n' : 'x'.repeat(10));
        }
        if (framing === 'chunked') app.s.write('0\r\n\r\n');
        await waitFor(() => /\r\n\r\n/.test(app.got()), 5000, 'an answer');
        await waitFor(() => /got 150$|response_timeout\n$/.test(app.got()), 2000, 'the body');
        app.s.destroy();
        return app.got();
      };
      const ok = await upload('/slow-upload');
      assert.match(ok, /^HTTP\/1\.1 200 /);
      assert.match(ok, /got 150$/);
      const hung = await upload('/hang');
      assert.match(hung, /^HTTP\/1\.1 504 /);
    });
  }

  for (const mode of ['408 then close', 'FIN', 'RST'] as const) {
    it(`a request body slower than the upstream's timeout (upstream: ${mode}): one clear answer, no retry of the POST, connection not reused`, async () => {
      let conns = 0;
      const socks = new Set<net.Socket>();
      const up = net.createServer((sock) => {
        conns++;
        socks.add(sock);
        sock.on('close', () => socks.delete(sock));
        sock.on('error', () => {});
        sock.once('data', () => {
          // The upstream's body timeout: 300 ms after the head, whatever arrived.
          setTimeout(() => {
            if (mode === 'RST') sock.resetAndDestroy();
            else if (mode === 'FIN') sock.end();
            else sock.end('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 7\r\n\r\ntoo slow');
          }, 300);
        });
      });
      up.listen(0, '127.0.0.1');
      await once(up, 'listening');
      cleanups.push(async () => {
        for (const s of socks) s.destroy();
        up.close();
      });
      const { sc, closes } = await sidecar((up.address() as net.AddressInfo).port);
      const app = await rawConn(sc.port());
      app.s.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n');
      // Bounded: 10 bytes every 100 ms, 10 times at most; stops when the app connection closes.
      let sent = 0;
      const drip = setInterval(() => {
        if (app.s.destroyed || sent >= 100) return clearInterval(drip);
        app.s.write('x'.repeat(10));
        sent += 10;
      }, 100);
      try {
        await waitFor(() => /\r\n\r\n/.test(app.got()), 5000, 'an answer');
        const status = app.got().split('\r\n')[0];
        if (mode === '408 then close') {
          assert.equal(status, 'HTTP/1.1 408 Request Timeout');
        } else {
          assert.equal(status, 'HTTP/1.1 502 Bad Gateway');
          assert.match(app.got(), /x-sidecar-error: peer_(closed|reset)/);
        }
        // Exactly one answer, and the app connection closes after it: the rest of the body has nowhere to go.
        await Promise.race([app.closed, new Promise((_r, rej) => setTimeout(() => rej(new Error('app connection left open')), 3000).unref())]);
        assert.equal(app.got().match(/HTTP\/1\.1 /g)?.length, 1);
        await waitFor(() => closes.length >= 1, 2000, 'upstream connection closed');
        assert.equal(conns, 1, 'a POST is never retried');
        // The sidecar still serves.
        const next = await new Promise<number>((resolve, reject) => {
          const r = http.get({ host: '127.0.0.1', port: sc.port(), path: '/x', agent: false }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          });
          r.on('error', reject);
        });
        assert.ok(next >= 400, 'answered');
      } finally {
        clearInterval(drip);
        app.s.destroy();
      }
    });
  }
});
