/**
 * Hostile HTTP/2 peers on both sides of an h2 route (the real CLI, real sockets): the sidecar process must
 * stay alive, its RSS bounded, and a well-behaved app on another connection keeps getting 200s throughout.
 * App side: raw bytes to the listen port (bad preface, HTTP/1.1, rapid reset CVE-2023-44487, SETTINGS /
 * PING floods, CONTINUATION flood CVE-2024-27316, huge header block, invalid frames, a stream whose app never
 * reads). Upstream side: a raw net server behind a second route (an oversized frame cut short then FIN, a
 * truncated frame then FIN, an upper-case response field name, RST_STREAM storm, GOAWAY above what we opened,
 * DATA beyond content-length, PING flood, an empty-DATA flood past maxSessionInvalidFrames) and a
 * node:http2 upstream with huge trailers. Frames are built by hand here (a test fixture, not product code).
 * Every loop is bounded in count and time.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import { h2Request, h2Upstream } from '../fixtures/h2-upstreams.js';
import { h2Route, startH2Sidecar } from '../helpers/h2-sidecar.js';
import type { H2Sidecar } from '../helpers/h2-sidecar.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const T = { DATA: 0, HEADERS: 1, RST: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 };

function frame(type: number, flags: number, id: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(id & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
/** HPACK literal without indexing, name by static index (< 15), value < 127 bytes. */
function lit(nameIdx: number, value: string): Buffer {
  return Buffer.concat([Buffer.from([nameIdx, value.length]), Buffer.from(value)]);
}
/** A GET /ok request block: :method GET, :scheme http, :path, :authority. */
function getBlock(path = '/ok'): Buffer {
  return Buffer.concat([Buffer.from([0x82, 0x86]), lit(4, path), lit(1, '127.0.0.1')]);
}

/** A raw socket to the port; resolves after connect. Errors swallowed; `closed` resolves on close. */
async function raw(port: number): Promise<{ s: net.Socket; closed: Promise<void>; got: () => Buffer }> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  const chunks: Buffer[] = [];
  let n = 0;
  s.on('data', (d: Buffer) => {
    if (n < 1 << 20) chunks.push(d);
    n += d.length;
  });
  // Not events.once: it rejects on 'error' (EPIPE when the sidecar closes mid-flood, the outcome we want).
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
  await once(s, 'connect');
  return { s, closed, got: () => Buffer.concat(chunks) };
}

/** Resolves true if `p` settles within ms. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([p.then(() => true), new Promise<boolean>((res) => (timer = setTimeout(() => res(false), ms)))]);
  clearTimeout(timer);
  return r;
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? 0 : Number(m[1]) / 1024;
}

/** A well-behaved app: GET /ok every 20 ms on its own session until stopped; collects statuses. */
function goodClient(port: number): { stop: () => Promise<number[]> } {
  const c = http2.connect(`http://127.0.0.1:${port}`);
  c.on('error', () => {});
  const statuses: number[] = [];
  let running = true;
  const loop = (async () => {
    const until = performance.now() + 60_000;
    while (running && performance.now() < until) {
      const r = await h2Request(c, { ':path': '/ok' });
      statuses.push(r.status);
      await new Promise((res) => setTimeout(res, 20));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      c.close();
      return statuses;
    },
  };
}

/** Runs `attack` while a good client runs; asserts the good client saw only 200s and the sidecar is alive. */
async function underAttack(sc: H2Sidecar, attack: () => Promise<void>): Promise<void> {
  const good = goodClient(sc.ports.get('good')!);
  await new Promise((res) => setTimeout(res, 50));
  await attack();
  await new Promise((res) => setTimeout(res, 100));
  const statuses = await good.stop();
  assert.ok(statuses.length > 0, 'good client made requests');
  assert.deepEqual(statuses.filter((s) => s !== 200), [], 'good client only saw 200s');
  assert.equal(sc.p.child.exitCode, null, 'sidecar alive');
  assert.equal(sc.p.child.signalCode, null, 'sidecar alive');
  const rss = rssMiB(sc.p.child.pid!);
  assert.ok(rss < 400, `sidecar RSS ${rss.toFixed(0)} MiB`);
}

/** Upstream behaviours picked by :path. */
let upstreamWrites = { bytes: 0, sawFalse: false };
async function goodUpstream(): Promise<Awaited<ReturnType<typeof h2Upstream>>> {
  return h2Upstream((s, h) => {
    const path = String(h[':path']);
    if (path === '/big') {
      // Writes until back-pressured, then stops: the sidecar must not read it all into memory.
      s.respond({ ':status': 200 });
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      const until = performance.now() + 3000;
      const pump = (): void => {
        while (performance.now() < until && upstreamWrites.bytes < 256 * 1024 * 1024 && !s.destroyed) {
          upstreamWrites.bytes += chunk.length;
          if (!s.write(chunk)) {
            upstreamWrites.sawFalse = true;
            s.once('drain', pump);
            return;
          }
        }
      };
      pump();
      return;
    }
    if (path === '/hints') {
      // 500 ms in: 8 x 103 Early Hints, then the page.
      setTimeout(() => {
        if (s.destroyed) return;
        for (let i = 0; i < 8; i++) s.additionalHeaders({ ':status': 103, link: `</s${i}.css>; rel=preload; as=style` });
        s.respond({ ':status': 200 });
        s.end('page');
      }, 500);
      return;
    }
    if (path === '/trailers') {
      s.respond({ ':status': 200 }, { waitForTrailers: true });
      s.on('wantTrailers', () => {
        try {
          s.sendTrailers({ 'x-huge': 'x'.repeat(200 * 1024) });
        } catch {
          s.close();
        }
      });
      s.end('body');
      return;
    }
    s.respond({ ':status': 200 });
    s.end('ok');
  });
}

type Mode = 'garbage' | 'truncated' | 'badheaders' | 'badodd' | 'badafterlong' | 'rst' | 'goaway' | 'overlength' | 'pingflood' | 'emptydata' | 'garbageafter';

/** An upper-case field name (RFC 9113 §8.2.1: malformed), :status 200 (static index 8), END_STREAM. */
const BAD_HEADERS = Buffer.concat([Buffer.from([0x88]), Buffer.from([0x00, 8]), Buffer.from('Bad-Name'), Buffer.from([1]), Buffer.from('x')]);

/**
 * A raw upstream: reads the preface, sends SETTINGS (+ACK), then misbehaves per mode on each HEADERS.
 * `connections` counts the TCP connections it accepted.
 */
async function rawUpstream(t: TestContext, initial: Mode = 'garbage'): Promise<{ port: number; setMode: (m: Mode) => void; connections: () => number }> {
  let mode: Mode = initial;
  let connections = 0;
  const socks = new Set<net.Socket>();
  const server = net.createServer((s) => {
    const connNo = ++connections;
    let headersSeen = 0;
    socks.add(s);
    s.on('error', () => {});
    s.on('close', () => socks.delete(s));
    s.write(frame(T.SETTINGS, 0, 0));
    let buf = Buffer.alloc(0);
    let prefaceSeen = false;
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!prefaceSeen) {
        if (buf.length < PREFACE.length) return;
        buf = buf.subarray(PREFACE.length);
        prefaceSeen = true;
      }
      for (let i = 0; i < 10_000 && buf.length >= 9; i++) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) return;
        const type = buf[3]!;
        const flags = buf[4]!;
        const id = buf.readUInt32BE(5) & 0x7fffffff;
        buf = buf.subarray(9 + len);
        if (type === T.SETTINGS && (flags & 1) === 0) s.write(frame(T.SETTINGS, 1, 0));
        if (type !== T.HEADERS || s.destroyed) continue;
        headersSeen++;
        switch (mode) {
          case 'garbage':
            // A frame header declaring 65535 bytes (> SETTINGS_MAX_FRAME_SIZE 16384), its payload cut short, FIN.
            s.end(Buffer.from('\x00\xff\xffgarbage garbage garbage garbage'));
            break;
          case 'truncated':
            // A PING frame cut after 3 of its 8 payload bytes, then FIN.
            s.end(frame(T.PING, 0, 0, Buffer.alloc(8)).subarray(0, 9 + 3));
            break;
          case 'badheaders':
            s.write(frame(T.HEADERS, 0x5, id, BAD_HEADERS));
            break;
          case 'badodd':
            // The 1st, 3rd... stream of each connection gets the malformed head, the others a good 200.
            s.write(frame(T.HEADERS, 0x5, id, headersSeen % 2 === 1 ? BAD_HEADERS : Buffer.from([0x88])));
            break;
          case 'badafterlong':
            // The first stream of the first connection gets a 200 head and stays open (a long healthy stream),
            // every other one the malformed head.
            s.write(connNo === 1 && headersSeen === 1 ? frame(T.HEADERS, 0x4, id, Buffer.from([0x88])) : frame(T.HEADERS, 0x5, id, BAD_HEADERS));
            break;
          case 'garbageafter':
            // A good 200, then (the stream closed, the session idle) an oversized frame header: no FIN.
            s.write(frame(T.HEADERS, 0x5, id, Buffer.from([0x88])));
            setTimeout(() => s.write(Buffer.from('\x00\xff\xffgarbage garbage garbage garbage')), 20);
            break;
          case 'emptydata':
            // A 200 head, then 1100 empty DATA frames without END_STREAM (CVE-2019-9518, 9.9 KB), each an invalid
            // frame to node:http2: past the upstream side's maxSessionInvalidFrames (1000).
            s.write(Buffer.concat([frame(T.HEADERS, 0x4, id, Buffer.from([0x88])), ...Array.from({ length: 1100 }, () => frame(T.DATA, 0, id))]));
            break;
          case 'rst':
            for (let k = 0; k < 100; k++) s.write(frame(T.RST, 0, id, u32(2)));
            break;
          case 'goaway':
            s.end(frame(T.GOAWAY, 0, 0, Buffer.concat([u32(0x7fffffff), u32(0)])));
            break;
          case 'overlength':
            // content-length 2 (static index 28), then 10 bytes of DATA.
            s.write(frame(T.HEADERS, 0x4, id, Buffer.concat([Buffer.from([0x88, 0x0f, 0x0d, 1]), Buffer.from('2')])));
            s.write(frame(T.DATA, 0x1, id, Buffer.from('0123456789')));
            break;
          case 'pingflood': {
            const ping = frame(T.PING, 0, 0, Buffer.alloc(8));
            s.write(Buffer.concat(Array.from({ length: 20_000 }, () => ping)));
            break;
          }
        }
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    for (const s of socks) s.destroy();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, setMode: (m) => (mode = m), connections: () => connections };
}

describe('h2 route under hostile peers (real CLI)', { timeout: 120_000 }, () => {
  it('hostile apps cannot crash it, grow it without bound, or disturb another app', async (t) => {
    const up = await goodUpstream();
    t.after(() => up.close());
    const sc = await startH2Sidecar(t, [h2Route(up.port, {}, {}, 'good')]);
    const port = sc.ports.get('good')!;

    await t.test('HTTP/1.1 request to the h2 port: closed, no crash', () =>
      underAttack(sc, async () => {
        const r = await raw(port);
        r.s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
        assert.ok(await within(r.closed, 3000), 'connection closed within 3 s');
      }));

    await t.test('bad connection preface: closed', () =>
      underAttack(sc, async () => {
        const r = await raw(port);
        r.s.write(Buffer.alloc(64, 0xff));
        assert.ok(await within(r.closed, 3000), 'connection closed within 3 s');
      }));

    await t.test('rapid reset (CVE-2023-44487): bounded, upstream streams cancelled', () =>
      underAttack(sc, async () => {
        const r = await raw(port);
        const parts: Buffer[] = [PREFACE, frame(T.SETTINGS, 0, 0)];
        for (let i = 0, id = 1; i < 20_000; i++, id += 2) {
          parts.push(frame(T.HEADERS, 0x5, id, getBlock('/ok')), frame(T.RST, 0, id, u32(8)));
        }
        r.s.write(Buffer.concat(parts));
        // Either nghttp2's rapid-reset mitigation closes the session, or it keeps up: bounded in time either way.
        await within(r.closed, 5000);
        r.s.destroy();
      }));

    await t.test('SETTINGS flood and PING flood (never reading the ACKs): closed, bounded', () =>
      underAttack(sc, async () => {
        for (const f of [frame(T.SETTINGS, 0, 0), frame(T.PING, 0, 0, Buffer.alloc(8))]) {
          const r = await raw(port);
          r.s.pause();
          r.s.write(Buffer.concat([PREFACE, frame(T.SETTINGS, 0, 0), ...Array.from({ length: 100_000 }, () => f)]));
          // Closed by nghttp2's flood limits, or stalled by TCP backpressure (we never read): bounded either way.
          await within(r.closed, 3000);
          r.s.destroy();
        }
      }));

    // The sidecar closes mid-flood, so our write gets EPIPE: the 'close' promise above tolerates that.
    await t.test('CONTINUATION flood without END_HEADERS (CVE-2024-27316): closed', () =>
      underAttack(sc, async () => {
        const [maj, min] = process.versions.node.split('.').map(Number) as [number, number];
        assert.ok(maj > 20 || (maj === 20 && min >= 12), `node ${process.versions.node} has the CONTINUATION mitigation`);
        const r = await raw(port);
        const cont = frame(T.CONTINUATION, 0, 1, Buffer.concat([Buffer.from([0x00, 3]), Buffer.from('x-a'), Buffer.from([100]), Buffer.alloc(100, 0x61)]));
        const parts: Buffer[] = [PREFACE, frame(T.SETTINGS, 0, 0), frame(T.HEADERS, 0x1, 1, getBlock())];
        for (let i = 0; i < 50_000; i++) parts.push(cont);
        r.s.write(Buffer.concat(parts), () => {});
        assert.ok(await within(r.closed, 5000), 'closed within 5 s');
      }));

    await t.test('huge header block: 431 or a stream/session error, bounded', () =>
      underAttack(sc, async () => {
        const c = http2.connect(`http://127.0.0.1:${port}`);
        c.on('error', () => {});
        const r = await Promise.race([
          h2Request(c, { ':path': '/ok', 'x-huge': 'x'.repeat(60 * 1024), 'x-huge2': 'y'.repeat(60 * 1024) }),
          new Promise<undefined>((res) => setTimeout(() => res(undefined), 5000)),
        ]);
        c.destroy();
        assert.ok(r !== undefined, 'answered within 5 s');
        assert.ok(r.status === 431 || r.status === 0 || r.rstCode !== 0, `status ${r.status} rst ${r.rstCode}`);
      }));

    await t.test('an oversized frame header (nghttp2 ends the session without a word to node:http2): the connection is closed within 3 s', () =>
      underAttack(sc, async () => {
        const r = await raw(port);
        // Not ended by the app: only the sidecar's stall check can close it (nghttp2 stops reading it).
        r.s.write(Buffer.concat([PREFACE, frame(T.SETTINGS, 0, 0), Buffer.from('\x00\xff\xffgarbage garbage garbage garbage')]));
        const t0 = performance.now();
        assert.ok(await within(r.closed, 3000), 'closed within 3 s');
        const got = r.got();
        let sawGoaway = false;
        for (let o = 0, i = 0; i < 100 && o + 9 <= got.length; i++, o += 9 + got.readUIntBE(o, 3)) if (got[o + 3] === T.GOAWAY) sawGoaway = true;
        assert.ok(sawGoaway, "nghttp2's GOAWAY came first");
        assert.ok(performance.now() - t0 < 3000);
      }));

    await t.test('invalid frames (DATA on stream 0, WINDOW_UPDATE 0): closed', () =>
      underAttack(sc, async () => {
        for (const bad of [frame(T.DATA, 0, 0, Buffer.from('x')), frame(T.WINDOW_UPDATE, 0, 0, u32(0)), frame(T.HEADERS, 0x5, 2, getBlock())]) {
          const r = await raw(port);
          r.s.write(Buffer.concat([PREFACE, frame(T.SETTINGS, 0, 0), bad]));
          await within(r.closed, 3000);
          // A GOAWAY (frame type 7) or a close: the session is refused either way.
          const got = r.got();
          let sawGoaway = false;
          for (let o = 0, i = 0; i < 100 && o + 9 <= got.length; i++, o += 9 + got.readUIntBE(o, 3)) if (got[o + 3] === T.GOAWAY) sawGoaway = true;
          assert.ok(sawGoaway || r.s.destroyed, 'GOAWAY or closed');
          r.s.destroy();
        }
      }));

    await t.test('more concurrent streams than advertised: the excess refused, others unaffected', () =>
      underAttack(sc, async () => {
        const r = await raw(port);
        const parts: Buffer[] = [PREFACE, frame(T.SETTINGS, 0, 0)];
        // /big never ends on its own (bounded by the upstream's 3 s pump): 1100 open streams > 1000 advertised.
        for (let i = 0, id = 1; i < 1100; i++, id += 2) parts.push(frame(T.HEADERS, 0x5, id, getBlock('/nothing-big')));
        r.s.write(Buffer.concat(parts));
        await new Promise((res) => setTimeout(res, 1000));
        r.s.destroy();
      }));

    await t.test('an app that never reads the response: the upstream is back-pressured', () =>
      underAttack(sc, async () => {
        upstreamWrites = { bytes: 0, sawFalse: false };
        const c = http2.connect(`http://127.0.0.1:${port}`);
        c.on('error', () => {});
        const req = c.request({ ':path': '/big' });
        req.on('error', () => {});
        req.pause();
        await new Promise((res) => setTimeout(res, 2000));
        const written = upstreamWrites.bytes;
        c.destroy();
        assert.ok(upstreamWrites.sawFalse, 'upstream write() returned false');
        assert.ok(written < 64 * 1024 * 1024, `upstream wrote ${written} bytes while the app read nothing`);
      }));
  });

  it('hostile upstreams get the affected stream a 502 / RST; others and the process unaffected', async (t) => {
    const up = await goodUpstream();
    t.after(() => up.close());
    const evil = await rawUpstream(t);
    const sc = await startH2Sidecar(t, [h2Route(up.port, {}, {}, 'good'), h2Route(evil.port, { pingIdleMs: 60_000 }, {}, 'evil')]);
    const evilPort = sc.ports.get('evil')!;

    const oneEvil = async (port: number, path = '/ok', grpc = false): Promise<{ status: number; rstCode: number; headers: http2.IncomingHttpHeaders; trailers?: http2.IncomingHttpHeaders | undefined; ms: number }> => {
      const c = http2.connect(`http://127.0.0.1:${port}`);
      c.on('error', () => {});
      const headers: http2.OutgoingHttpHeaders = { ':path': path, ':method': 'POST' };
      if (grpc) headers['content-type'] = 'application/grpc';
      const answer = h2Request(c, headers, 'x');
      // Destroying the session below rejects a still-pending request: handled, it is the 8 s case asserted.
      answer.catch(() => {});
      const r = await Promise.race([answer, new Promise<undefined>((res) => setTimeout(() => res(undefined), 8000))]);
      c.destroy();
      assert.ok(r !== undefined, 'the app stream ended within 8 s');
      return r;
    };

    // A frame nghttp2 refuses as a connection error (garbage: a frame header over SETTINGS_MAX_FRAME_SIZE, its
    // payload cut, FIN) ends the session inside nghttp2 without a word to node:http2's JS (no error, no close,
    // the FIN is not even read): the driver's stall check sees that node:http2 stopped writing and fails the
    // session protocol_error after 0.5-1 s of silence. A truncated frame then FIN: 'end' is read, peer_closed.
    for (const mode of ['garbage', 'truncated'] as const) {
      await t.test(`upstream ${mode}: the session is failed, the app answered within 2 s`, () =>
        underAttack(sc, async () => {
          evil.setMode(mode);
          const reasons = new Set(['protocol_error', 'peer_closed']);
          const r = await oneEvil(evilPort);
          assert.equal(r.status, 502, `${mode}: status ${r.status} rst ${r.rstCode}`);
          assert.ok(reasons.has(String(r.headers['x-sidecar-error'])), `${mode}: x-sidecar-error ${String(r.headers['x-sidecar-error'])}`);
          assert.ok(r.ms < 2000, `${mode}: answered after ${r.ms.toFixed(0)} ms`);
          const g = await oneEvil(evilPort, '/ok', true);
          assert.equal(g.headers['grpc-status'], '14', `${mode} gRPC: status ${g.status} grpc-status ${String(g.headers['grpc-status'])} rst ${g.rstCode}`);
          assert.ok(reasons.has(String(g.headers['x-sidecar-error'])), `${mode} gRPC: ${String(g.headers['grpc-message'])}`);
          assert.ok(g.ms < 2000, `${mode} gRPC: answered after ${g.ms.toFixed(0)} ms`);
        }));
    }
    const closedBy = (reason: string): number => sc.logs('upstream connection closed').filter((l) => l.route === 'evil' && l.reason === reason).length;
    assert.ok(closedBy('protocol_error') >= 2, 'garbage: sessions closed protocol_error (the stall check)');

    for (const mode of ['badheaders', 'rst', 'goaway', 'overlength', 'pingflood'] as const) {
      // goaway + FIN used to hang the same way: fixed, H2Pool.connEnded ends the session on the upstream's FIN.
      await t.test(`upstream ${mode}`, () =>
        underAttack(sc, async () => {
          evil.setMode(mode);
          const r = await oneEvil(evilPort);
          assert.ok(r.status === 502 || r.rstCode !== 0, `${mode}: status ${r.status} rst ${r.rstCode} ${String(r.headers['x-sidecar-error'])}`);
          const g = await oneEvil(evilPort, '/ok', true);
          assert.ok((g.status === 200 && g.headers['grpc-status'] === '14') || g.rstCode !== 0, `${mode} gRPC: status ${g.status} grpc-status ${String(g.headers['grpc-status'])} rst ${g.rstCode}`);
        }));
    }

    await t.test('upstream empty-DATA flood: maxSessionInvalidFrames bites, session failed protocol_error, app reset at once', () =>
      underAttack(sc, async () => {
        evil.setMode('emptydata');
        const before = closedBy('protocol_error');
        for (const grpc of [false, true]) {
          const r = await oneEvil(evilPort, '/ok', grpc);
          // The head (200) was forwarded before the flood: the app's stream is reset; a gRPC one is ended with
          // trailers grpc-status 14 instead (UNAVAILABLE, what a direct client sees when a transport drops).
          assert.equal(r.status, 200);
          if (grpc) assert.deepEqual([r.trailers?.['grpc-status'], r.trailers?.['x-sidecar-error']], ['14', 'protocol_error'], `rst ${r.rstCode}`);
          else assert.notEqual(r.rstCode, 0, `rst ${r.rstCode}`);
          assert.ok(r.ms < 1000, `reset after ${r.ms.toFixed(0)} ms`);
        }
        await new Promise((res) => setTimeout(res, 100));
        const closed = sc.logs('upstream connection closed').filter((l) => l.route === 'evil' && l.reason === 'protocol_error').slice(before);
        assert.equal(closed.length, 2, 'both sessions closed protocol_error');
        for (const l of closed) assert.match(JSON.stringify(l.err), /ERR_HTTP2_TOO_MANY_INVALID_FRAMES/);
      }));

    await t.test('upstream upper-case response field name: that stream 502 protocol_error, the session lives on', async () => {
      const odd = await rawUpstream(t, 'badodd');
      const sc2 = await startH2Sidecar(t, [h2Route(up.port, {}, {}, 'good'), h2Route(odd.port, {}, {}, 'odd')]);
      await underAttack(sc2, async () => {
        const port = sc2.ports.get('odd')!;
        // Sequential on one upstream session: 1st and 3rd streams get the malformed head, 2nd and 4th a 200.
        const r1 = await oneEvil(port);
        assert.equal(r1.status, 502);
        assert.equal(r1.headers['x-sidecar-error'], 'protocol_error');
        assert.ok(r1.ms < 1000, `answered after ${r1.ms.toFixed(0)} ms`);
        const r2 = await oneEvil(port);
        assert.equal(r2.status, 200, 'the next stream on the same session is unaffected');
        const g = await oneEvil(port, '/ok', true);
        assert.equal(g.status, 200);
        assert.equal(g.headers['grpc-status'], '14');
        assert.equal(g.headers['grpc-message'], 'sidecar: protocol_error');
        const r4 = await oneEvil(port);
        assert.equal(r4.status, 200);
        assert.equal(odd.connections(), 1, 'one upstream session for all four');
      });
      await sc2.stop();
    });

    await t.test('malformed response heads on a long-lived session: each 502, the healthy stream beside them kept past 100 (maxSessionInvalidFrames 1000 upstream)', async () => {
      const buggy = await rawUpstream(t, 'badafterlong');
      const sc5 = await startH2Sidecar(t, [h2Route(up.port, {}, {}, 'good'), h2Route(buggy.port, {}, {}, 'buggy')]);
      await underAttack(sc5, async () => {
        const c = http2.connect(`http://127.0.0.1:${sc5.ports.get('buggy')!}`);
        c.on('error', () => {});
        const long = c.request({ ':path': '/long' });
        long.on('error', () => {});
        await once(long, 'response');
        long.resume();
        let longClosedAfter: number | undefined;
        let n = 0;
        long.on('close', () => (longClosedAfter = n));
        // Until the session's invalid-frame limit (1000) ends it, bounded at 1010 sequential streams.
        let bad = 0;
        for (; n < 1010 && longClosedAfter === undefined; n++) {
          const r = await Promise.race([h2Request(c, { ':path': '/bad' }), new Promise<undefined>((res) => setTimeout(() => res(undefined), 5000))]);
          assert.ok(r !== undefined, `stream ${n} answered within 5 s`);
          if (r.status === 502) bad++;
        }
        c.destroy();
        assert.ok(longClosedAfter !== undefined && longClosedAfter >= 990, `the healthy stream lived past ${String(longClosedAfter)} malformed heads (the old limit killed it at 101)`);
        assert.ok(bad >= 990, `malformed heads answered 502: ${bad}`);
        assert.equal(buggy.connections(), 2, 'one session until the limit, then a fresh one');
        const first = await sc5.p.waitLine((l) => l.route === 'buggy' && l.msg === 'upstream connection closed');
        assert.equal(first.reason, 'protocol_error');
        assert.match(JSON.stringify(first.err), /ERR_HTTP2_TOO_MANY_INVALID_FRAMES/, "the session's own error is logged, not a stream's");
      });
      await sc5.stop();
    });

    await t.test('session ended by nghttp2 while idle: the ping-before-use PING never leaves, protocol_error (not ping_timeout), the stream replayed', async () => {
      const idle = await rawUpstream(t, 'garbageafter');
      const sc3 = await startH2Sidecar(t, [h2Route(up.port, {}, {}, 'good'), h2Route(idle.port, { pingIdleMs: 200, pingTimeoutMs: 300 }, {}, 'idle')]);
      await underAttack(sc3, async () => {
        const port = sc3.ports.get('idle')!;
        assert.equal((await oneEvil(port)).status, 200);
        // The garbage arrives 20 ms later; the session looks usable until it is used after pingIdleMs.
        await new Promise((res) => setTimeout(res, 400));
        const r = await oneEvil(port);
        assert.equal(r.status, 200, 'held for the PING, never sent: replayed on a fresh session (any method)');
        assert.ok(r.ms < 1500, `answered after ${r.ms.toFixed(0)} ms`);
        // Dead-peer closes are logged as 'dead upstream peer detected, connection dropped', the others as
        // 'upstream connection closed': the first close of this route, whichever.
        const isClose = (l: Record<string, unknown>): boolean => l.route === 'idle' && (l.msg === 'upstream connection closed' || l.msg === 'dead upstream peer detected, connection dropped');
        const first = await sc3.p.waitLine(isClose);
        assert.equal(first.reason, 'protocol_error', `not ping_timeout: ${JSON.stringify(first)}`);
        assert.equal(idle.connections(), 2);
      });
      await sc3.stop();
    });

    await t.test('stream placed on a session nghttp2 already ended (default pingIdleMs): never written, replayed (any method)', async () => {
      const zombie = await rawUpstream(t, 'garbageafter');
      const sc4 = await startH2Sidecar(t, [h2Route(up.port, {}, {}, 'good'), h2Route(zombie.port, {}, {}, 'zombie')]);
      await underAttack(sc4, async () => {
        const port = sc4.ports.get('zombie')!;
        assert.equal((await oneEvil(port)).status, 200);
        // The garbage arrives 20 ms after each 200: the session read recently, so it still looks usable and
        // P2C prefers it (0 streams open); the next stream is submitted but its HEADERS are never written. The
        // stall verdict fails the session 0.5-1 s later; bytesWritten unmoved since the stream opened = it
        // provably never reached the upstream: replayed on a fresh session, POST and non-allow-listed gRPC alike.
        for (const grpc of [false, true]) {
          await new Promise((res) => setTimeout(res, 100));
          const r = await oneEvil(port, '/ok', grpc);
          assert.equal(r.status, 200, `grpc ${grpc}: status ${r.status} ${String(r.headers['x-sidecar-error'])}`);
          assert.equal(r.headers['grpc-status'], undefined, `grpc ${grpc}: grpc-status ${String(r.headers['grpc-status'])} ${String(r.headers['grpc-message'])}`);
          assert.ok(r.ms < 2500, `grpc ${grpc}: answered after ${r.ms.toFixed(0)} ms`);
        }
        assert.equal(zombie.connections(), 3, 'one fresh session per replay');
        const closed = (): number => sc4.logs('upstream connection closed').filter((l) => l.route === 'zombie' && l.reason === 'protocol_error').length;
        // The second session's close is logged as its replay is answered: bounded poll for the line.
        for (let i = 0; i < 40 && closed() < 2; i++) await new Promise((res) => setTimeout(res, 50));
        assert.equal(closed(), 2, 'both used sessions failed protocol_error by the stall verdict');
      });
      await sc4.stop();
    });

    await t.test('103 Early Hints toward an app that does not read are dropped while its connection is backlogged', () =>
      underAttack(sc, async () => {
        // A raw app with windows wide open asks for /big (the upstream writes until back-pressured) and /hints,
        // then does not read its socket for 1.5 s: the sidecar's write queue toward it fills.
        const s = net.connect(sc.ports.get('good')!, '127.0.0.1');
        s.on('error', () => {});
        await once(s, 'connect');
        const wide = Buffer.concat([Buffer.from([0, 4]), u32(0x7fffffff)]);
        s.write(Buffer.concat([PREFACE, frame(T.SETTINGS, 0, 0, wide), frame(T.WINDOW_UPDATE, 0, 0, u32(0x7fffffff - 65535)), frame(T.HEADERS, 0x5, 1, getBlock('/big')), frame(T.HEADERS, 0x5, 3, getBlock('/hints'))]));
        await new Promise((res) => setTimeout(res, 1500));
        let buf: Buffer = Buffer.alloc(0);
        let headers3 = 0;
        const done = new Promise<void>((resolve) => {
          s.on('data', (d: Buffer) => {
            buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
            while (buf.length >= 9) {
              const len = buf.readUIntBE(0, 3);
              if (buf.length < 9 + len) break;
              const type = buf[3]!;
              const flags = buf[4]!;
              const id = buf.readUInt32BE(5) & 0x7fffffff;
              buf = buf.subarray(9 + len);
              if (id === 3 && type === T.HEADERS) headers3++;
              if (id === 3 && (flags & 1) !== 0) resolve();
            }
          });
          s.once('close', () => resolve());
        });
        assert.ok(await within(done, 10_000), 'the page ended within 10 s of reading again');
        s.destroy();
        // The 200's HEADERS only: the 8 hints met a backlogged connection (before, all 8 were queued).
        assert.equal(headers3, 1, `HEADERS frames on the page's stream: ${headers3}`);
      }));

    await t.test('upstream sends a huge trailers block: that stream fails, bounded', () =>
      underAttack(sc, async () => {
        const r = await oneEvil(sc.ports.get('good')!, '/trailers');
        assert.ok(r.status === 502 || r.rstCode !== 0 || r.status === 200, `status ${r.status} rst ${r.rstCode}`);
      }));
  });
});
