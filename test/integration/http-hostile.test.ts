/**
 * HTTP mode against a misbehaving upstream and a hostile app (issue 11, points 2, 3, 4, 7, 8), on real
 * loopback sockets; the upstream is a raw `net` server writing exact bytes. Each test is named after the
 * behaviour it pins down.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import type { CloseInfo } from '../../src/pool/index.js';
import { httpRoute, metricValue, startTestSidecar, waitFor } from '../helpers/sidecar.js';
import type { TestSidecar } from '../helpers/sidecar.js';

/** One request head as the raw upstream saw it. */
interface SeenRequest {
  readonly method: string;
  readonly path: string;
  readonly head: string;
  readonly conn: number;
}

type Responder = (sock: net.Socket, req: SeenRequest) => void;

/** A raw upstream: splits what it reads into request heads (bodies are ignored) and lets `respond` answer. */
async function rawUpstream(respond: Responder): Promise<{ port: number; seen: SeenRequest[]; conns: () => number; close: () => Promise<void> }> {
  const seen: SeenRequest[] = [];
  let conns = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    const conn = ++conns;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    let buf = '';
    sock.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      for (;;) {
        // Skip body bytes: a request line starts with an upper-case method.
        const start = buf.search(/(?:^|\r\n)[A-Z]+ \S+ HTTP\/1\.1\r\n/);
        if (start < 0) {
          if (buf.length > 1 << 20) buf = buf.slice(-4096);
          return;
        }
        buf = buf.slice(start).replace(/^\r\n/, '');
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        const [method, path] = head.split(' ') as [string, string];
        const req = { method, path, head, conn };
        seen.push(req);
        respond(sock, req);
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    conns: () => conns,
    async close() {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/** One request on its own app connection (agent: false), the whole response read. */
function get(port: number, opts: http.RequestOptions & { body?: string | Buffer } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, agent: false, ...opts }, (res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Raw bytes on a fresh app connection; resolves with everything received until `until` matches or close. */
async function raw(port: number, bytes: string, until?: RegExp): Promise<string> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  let got = '';
  const done = new Promise<void>((resolve) => {
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (until?.test(got) === true) resolve();
    });
    s.on('close', () => resolve());
  });
  s.write(bytes);
  await done;
  s.destroy();
  return got;
}

const GOOD = 'HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ngood';
/** A complete, well-formed response an attacker would like some other request to receive. */
const STRAY = 'HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nSTRAY';

async function withSidecar(port: number, extra: Record<string, unknown> = {}): Promise<{ sc: TestSidecar; closes: CloseInfo[] }> {
  const sc = await startTestSidecar({ routes: [httpRoute(port, extra)] });
  const closes: CloseInfo[] = [];
  sc.sidecar.routes[0]!.pool.on('closed', (_c, info) => closes.push(info));
  return { sc, closes };
}

describe('http mode: hostile upstreams and apps', () => {
  const cleanups: Array<() => Promise<void>> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });
  async function setup(respond: Responder, extra: Record<string, unknown> = {}) {
    const up = await rawUpstream(respond);
    const { sc, closes } = await withSidecar(up.port, extra);
    cleanups.push(() => up.close(), () => sc.stop());
    return { up, sc, closes };
  }

  it('a HEAD answered with a late body never leaks it into another app connection’s response', async () => {
    // The upstream sends a body after its HEAD response: 30 ms later, or at once when the next request on the
    // same connection comes first (as a server that writes the body before reading on would).
    const pending = new Map<net.Socket, NodeJS.Timeout>();
    let strayWritten = 0;
    const writeStray = (sock: net.Socket): void => {
      clearTimeout(pending.get(sock));
      pending.delete(sock);
      if (!sock.destroyed) sock.write(STRAY);
      strayWritten++;
    };
    const { up, sc } = await setup((sock, req) => {
      if (pending.has(sock)) writeStray(sock);
      if (req.method === 'HEAD') {
        sock.write('HTTP/1.1 200 OK\r\nconnection: keep-alive\r\ncontent-length: 5\r\n\r\n');
        pending.set(sock, setTimeout(() => writeStray(sock), 30));
      } else {
        sock.write(GOOD);
      }
    });
    const pool = sc.sidecar.routes[0]!.pool;
    // App 2's request goes out as soon as the HEAD's connection is back (before the late body), app 3's after it.
    const head = await get(sc.port(), { method: 'HEAD', path: '/h' });
    assert.equal(head.status, 200);
    await waitFor(() => pool.stats().leased === 0, 2000, 'the HEAD connection released or closed');
    const early = await get(sc.port(), { path: '/b1' });
    await waitFor(() => strayWritten === 1 || up.conns() > 1, 2000, 'the late HEAD body or a new connection');
    const late = await get(sc.port(), { path: '/b2' });
    assert.equal(early.body, 'good');
    assert.equal(late.body, 'good');
    assert.notEqual(up.seen.find((r) => r.path === '/b1')!.conn, up.seen.find((r) => r.path === '/h')!.conn, 'the HEAD connection was not reused');
  });

  for (const mode of ['late', 'same segment'] as const) {
    it(`bytes past Content-Length (${mode}) close the connection with protocol_error and never reach another request`, async () => {
      let strayWritten = false;
      const { up, sc, closes } = await setup((sock, req) => {
        if (req.path === '/a') {
          if (mode === 'same segment') {
            sock.write(`HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello${STRAY}`);
            strayWritten = true;
          } else {
            sock.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello');
            setTimeout(() => {
              sock.write(STRAY);
              strayWritten = true;
            }, 50);
          }
        } else {
          sock.write(GOOD);
        }
      });
      const a = await get(sc.port(), { path: '/a' });
      assert.equal(a.body, 'hello');
      await waitFor(() => strayWritten && closes.some((c) => c.reason === 'protocol_error'), 2000, 'protocol_error close');
      const b = await get(sc.port(), { path: '/b' });
      assert.equal(b.status, 200);
      assert.equal(b.body, 'good', 'the second app gets its own answer, never the stray bytes');
      assert.notEqual(up.seen.find((r) => r.path === '/b')!.conn, up.seen.find((r) => r.path === '/a')!.conn);
      assert.ok((await metricValue(sc, 'keepalive_sidecar_upstream_connections_closed_total', { route: 'h1', reason: 'protocol_error' })) >= 1);
    });
  }

  it('a 1xx flood to an app that does not read: 502 protocol_error after maxInformationalResponses, RSS bounded', async () => {
    let sent = 0;
    const hint = `HTTP/1.1 103 Early Hints\r\nlink: <${'/x'.repeat(2000)}>; rel=preload\r\n\r\n`;
    const { sc, closes } = await setup((sock) => {
      // Bounded: at most 20000 hints (~80 MB), stops as soon as the sidecar closes the connection.
      const pump = (): void => {
        while (!sock.destroyed && sent < 20000) {
          sent++;
          if (!sock.write(hint)) {
            sock.once('drain', pump);
            return;
          }
        }
      };
      pump();
    });
    const rssBefore = process.memoryUsage().rss;
    // The app writes its request and does not read until the sidecar has given up on the upstream.
    const s = net.connect(sc.port(), '127.0.0.1');
    s.on('error', () => {});
    await once(s, 'connect');
    s.pause();
    s.write('GET /flood HTTP/1.1\r\nhost: x\r\n\r\n');
    await waitFor(() => closes.some((c) => c.reason === 'protocol_error'), 5000, 'protocol_error close');
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    let got = '';
    s.on('data', (c: Buffer) => (got += c.toString('latin1')));
    s.resume();
    await waitFor(() => /x-sidecar-error: protocol_error/.test(got), 2000, '502 protocol_error');
    s.destroy();
    assert.match(got, /HTTP\/1\.1 502 /);
    assert.ok(sent < 20000, `the upstream was cut off (sent ${sent} hints)`);
    assert.ok(rssGrowth < 20 * 1024 * 1024, `RSS grew ${(rssGrowth / 1048576).toFixed(1)} MiB`);
    console.log(`# 1xx flood: upstream wrote ${sent} hints before the cut; RSS growth ${(rssGrowth / 1048576).toFixed(1)} MiB`);
  });

  it('an early 413 to an unfinished 5 MB upload: response forwarded, then the app connection closes cleanly (no hang)', async () => {
    const { sc } = await setup((sock, req) => {
      if (req.method === 'POST') sock.write('HTTP/1.1 413 Payload Too Large\r\ncontent-length: 3\r\n\r\nbig');
      else sock.write(GOOD);
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const t0 = performance.now();
      const body = Buffer.alloc(5 * 1024 * 1024, 0x61);
      const r = await new Promise<Answer>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: sc.port(), method: 'POST', path: '/up', agent, headers: { 'content-length': body.length } }, (res) => {
          let text = '';
          res.setEncoding('latin1');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
        });
        req.on('error', reject);
        req.end(body);
      });
      assert.equal(r.status, 413);
      assert.equal(r.body, 'big');
      assert.equal(r.headers.connection, 'close', 'the app is told the connection closes');
      const next = await get(sc.port(), { path: '/next', agent });
      assert.equal(next.body, 'good', 'the next request succeeds on a new connection');
      const ms = performance.now() - t0;
      assert.ok(ms < 5000, `took ${ms} ms`);
      console.log(`# early 413 to a 5 MB upload, then the next request: ${ms.toFixed(0)} ms`);
    } finally {
      agent.destroy();
    }
  });

  it('1500 request header fields: 431 from the sidecar, never a truncated request upstream', async () => {
    const { up, sc } = await setup((sock) => sock.write(GOOD));
    let head = 'GET /many HTTP/1.1\r\nhost: x\r\n';
    for (let i = 0; i < 1500; i++) head += `x-h${i}: v\r\n`;
    const got = await raw(sc.port(), `${head}\r\n`);
    assert.match(got, /^HTTP\/1\.1 431 /);
    assert.equal(up.seen.length, 0);
    // Exactly 100 fields (the default bound) still pass.
    let ok = 'GET /ok HTTP/1.1\r\nhost: x\r\nconnection: close\r\n';
    for (let i = 0; i < 98; i++) ok += `x-h${i}: v\r\n`;
    assert.match(await raw(sc.port(), `${ok}\r\n`), /^HTTP\/1\.1 200 /);
    assert.equal((up.seen[0]!.head.match(/\r\nx-h\d+: v/g) ?? []).length, 98, 'every field reached the upstream');
  });

  it('an upstream response with more header fields than maxHeaderCount: 502 protocol_error', async () => {
    let many = 'HTTP/1.1 200 OK\r\ncontent-length: 0\r\n';
    for (let i = 0; i < 150; i++) many += `x-r${i}: v\r\n`;
    const { sc } = await setup((sock) => sock.write(`${many}\r\n`));
    const r = await get(sc.port(), { path: '/' });
    assert.equal(r.status, 502);
    assert.equal(r.headers['x-sidecar-error'], 'protocol_error');
  });

  for (const [name, answer] of [
    ['100 Continue', 'HTTP/1.1 100 Continue\r\n\r\n'],
    ['101 Switching Protocols', 'HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n'],
  ] as const) {
    it(`${name} to a GET without Expect/Upgrade: 502 protocol_error once, never retried`, async () => {
      const { up, sc } = await setup((sock) => sock.write(answer));
      const r = await get(sc.port(), { path: '/once' });
      assert.equal(r.status, 502);
      assert.equal(r.headers['x-sidecar-error'], 'protocol_error');
      assert.equal(up.seen.length, 1, 'the GET reached the upstream exactly once');
    });
  }

  it('an invalid status line: 502 protocol_error', async () => {
    const { sc } = await setup((sock) => sock.write('HTTP/1.1 2x0 Nope\r\ncontent-length: 0\r\n\r\n'));
    const r = await get(sc.port(), { path: '/' });
    assert.equal(r.status, 502);
    assert.equal(r.headers['x-sidecar-error'], 'protocol_error');
  });

  it('two Host fields: 400 from the sidecar, the pooled connection stays healthy', async () => {
    const { up, sc, closes } = await setup((sock) => sock.write(GOOD));
    assert.equal((await get(sc.port(), { path: '/warm' })).body, 'good');
    const got = await raw(sc.port(), 'GET /two HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n');
    assert.match(got, /^HTTP\/1\.1 400 /);
    assert.equal((await get(sc.port(), { path: '/after' })).body, 'good');
    assert.equal(up.seen.filter((r) => r.path === '/two').length, 0);
    assert.equal(up.conns(), 1, 'the same upstream connection served before and after');
    assert.equal(closes.length, 0);
  });

  it('OPTIONS *: answered 501 by the sidecar on a kept-alive connection, no upstream connection touched', async () => {
    const { up, sc, closes } = await setup((sock) => sock.write(GOOD));
    const got = await raw(sc.port(), 'OPTIONS * HTTP/1.1\r\nhost: x\r\n\r\nGET /then HTTP/1.1\r\nhost: x\r\n\r\n', /good$/);
    assert.match(got, /^HTTP\/1\.1 501 /);
    assert.match(got, /good$/, 'the same app connection goes on');
    assert.equal(up.seen.length, 1);
    assert.equal(closes.length, 0);
  });

  it('CONNECT: a 501 response, not a bare FIN', async () => {
    const { up, sc } = await setup((sock) => sock.write(GOOD));
    const got = await raw(sc.port(), 'CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n');
    assert.match(got, /^HTTP\/1\.1 501 /);
    assert.equal(up.seen.length, 0);
  });

  it('Connection naming Host, Content-Length or Transfer-Encoding removes none of them', async () => {
    const { up, sc } = await setup((sock) => sock.write(GOOD));
    const r = await get(sc.port(), { method: 'POST', path: '/c', headers: { host: 'app.example', connection: 'host, content-length', 'content-length': '5' }, body: 'hello' });
    assert.equal(r.body, 'good');
    const head = up.seen[0]!.head.toLowerCase();
    assert.match(head, /\r\nhost: app\.example\r\n/);
    assert.match(head, /\r\ncontent-length: 5(\r\n|$)/);
  });
});

describe('http mode: an upstream name that does not resolve', () => {
  it('503 with x-sidecar-error resolve_failed', async () => {
    const sc = await startTestSidecar({ routes: [{ ...httpRoute(1), upstream: { host: 'no-such-host.invalid', port: 80 } }] });
    try {
      const r = await get(sc.port(), { path: '/' });
      assert.equal(r.status, 503);
      assert.equal(r.headers['x-sidecar-error'], 'resolve_failed');
    } finally {
      await sc.stop();
    }
  });
});
