/**
 * The h2 route with real gRPC stacks on both hops, driven as users would: grpcio's C-core client
 * (/usr/bin/python3, Debian python3-grpcio 1.51; test/fixtures/grpc_real.py) and grpc-js, against a grpcio
 * server and a grpc-js server, through the real CLI. Every case runs `direct` (client -> server) too and
 * asserts the sidecar changes nothing the app can see: statuses, percent-encoded messages, binary metadata,
 * grpc-status-details-bin, gzip both ways, 7 MiB messages, DEADLINE_EXCEEDED (not UNAVAILABLE), cancels that
 * reach the server; the C-core client's keepalive PINGs (answered by the sidecar, never forwarded); grpcio's
 * max_connection_age GOAWAYs under load (0 failed calls); 1000 calls in flight over an upstream limit of 100
 * streams per session; an upstream transport dying mid-stream (UNAVAILABLE, as direct); and odd upstreams (HTTP 404/503, no grpc-status, RST_STREAM codes, HTTP/1 only).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import { Status, grpcClient, grpcServer, serverStream, unary } from '../fixtures/grpc.js';
import { PYTHON, h2Route, onJsonLines, requirePythonGrpc, startH2Sidecar } from '../helpers/h2-sidecar.js';

const SCRIPT = new URL('../../../test/fixtures/grpc_real.py', import.meta.url).pathname;
const MIB7 = 7 * 1024 * 1024;

interface PyServer {
  readonly port: number;
  /** x-id of every call its client cancelled. */
  readonly cancelled: Set<string>;
  /** Calls received (method, x-id). */
  readonly calls: Array<{ call: string; id: string | null }>;
  /** server.stop(graceS); resolves once it returned. */
  stop(graceS: number): Promise<void>;
}

/** The grpcio server of grpc_real.py with these flags; killed in t.after. */
async function pyServer(t: TestContext, args: string[] = []): Promise<PyServer> {
  const child = spawn(PYTHON, [SCRIPT, 'server', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const cancelled = new Set<string>();
  const calls: PyServer['calls'] = [];
  let onStopped: (() => void) | undefined;
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    onJsonLines<{ port?: number; call?: string; id?: string | null; cancelled?: string; stopped?: number }>(child.stdout, (o) => {
      if (o.port !== undefined) resolve(o.port);
      if (o.call !== undefined) calls.push({ call: o.call, id: o.id ?? null });
      if (o.cancelled !== undefined) cancelled.add(o.cancelled);
      if (o.stopped !== undefined) onStopped?.();
    });
    child.once('exit', (code) => reject(new Error(`grpc_real.py server exited (${code}): ${err}`)));
  });
  return {
    port,
    cancelled,
    calls,
    stop: (graceS) =>
      new Promise<void>((resolve) => {
        onStopped = resolve;
        child.stdin.write(`stop ${graceS}\n`);
      }),
  };
}

/** One scenario of grpc_real.py's C-core client against 127.0.0.1:port; its JSON answer. */
async function pyClient<T = Record<string, unknown>>(port: number, scenario: string, args: Record<string, unknown> = {}): Promise<T> {
  const child = spawn(PYTHON, [SCRIPT, 'client', String(port), scenario, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearTimeout(timer);
  const line = out.trim().split('\n').pop() ?? '';
  assert.equal(code, 0, `grpc_real.py client ${scenario} exited ${code}: ${err.slice(-2000)}`);
  return JSON.parse(line) as T;
}

/** Status code (and details) of one C-core unary call. */
interface PyUnary {
  code: number;
  details?: string;
  same?: boolean;
  len?: number;
  trailers?: Record<string, string>;
}

const hex = (s: string): string => Buffer.from(s, 'latin1').toString('hex');

describe('gRPC with real C-core (grpcio) and grpc-js stacks through the h2 route', () => {
  it('C-core client -> grpcio server: statuses, binary metadata, details-bin, gzip both ways, 7 MiB, deadline, streams, cancel: as direct', async (t) => {
    if (!requirePythonGrpc(t)) return;
    const up = await pyServer(t);
    const sc = await startH2Sidecar(t, [h2Route(up.port)]);
    t.after(() => sc.stop());
    for (const [via, port] of [['direct', up.port], ['sidecar', sc.port]] as const) {
      const msg = 'no such: ü/% 100%\n';
      const err = await pyClient<PyUnary>(port, 'unary', { message: msg, md: { 'x-status': '5', 'x-details-bin': 'DET\u0000\u00ffbin', 'a-bin': '\u0000\u0001\u00ff' } });
      assert.equal(err.code, Status.NOT_FOUND, via);
      assert.equal(err.details, msg, `${via}: grpc-message percent-encoded on the wire, decoded the same`);
      assert.equal(err.trailers?.['grpc-status-details-bin'], hex('DET\u0000\u00ffbin'), `${via}: details-bin intact`);
      assert.equal(err.trailers?.['a-bin'], hex('\u0000\u0001\u00ff'), `${via}: binary trailer intact`);
      for (const gzip of [false, true]) {
        const big = await pyClient<PyUnary>(port, 'unary', { bytes: MIB7, gzip, md: gzip ? { 'x-compress': '1' } : {} });
        assert.deepEqual([big.code, big.same, big.len], [Status.OK, true, MIB7], `${via}: 7 MiB echoed (gzip ${gzip})`);
      }
      const late = await pyClient<PyUnary>(port, 'unary', { method: '/test.Echo/Slow', md: { 'x-delay-ms': '3000' }, timeout: 0.5 });
      assert.equal(late.code, Status.DEADLINE_EXCEEDED, `${via}: ${late.details}`);
      const s = await pyClient<Record<string, { code: number; ok?: boolean }>>(port, 'streams', { n: 30, bytes: 200_000 });
      for (const kind of ['server', 'client', 'bidi']) assert.deepEqual(s[kind], { code: 0, ok: true }, `${via}: ${kind} streaming`);
      const c = await pyClient<PyUnary & { first: string }>(port, 'cancel', { id: `cancel-${via}`, after_ms: 200 });
      assert.deepEqual([c.first, c.code], ['c-0', Status.CANCELLED], via);
    }
    // The server saw both cancels (RST_STREAM CANCEL reached it through the sidecar).
    const deadline = Date.now() + 5000;
    while (up.cancelled.size < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual([...up.cancelled].sort(), ['cancel-direct', 'cancel-sidecar']);
  });

  it('C-core client -> grpc-js server: status with message, 7 MiB gzip, deadline, cancel: as direct', async (t) => {
    if (!requirePythonGrpc(t)) return;
    const up = await grpcServer({ maxMessageBytes: 16 * 1024 * 1024 });
    t.after(() => up.close());
    const sc = await startH2Sidecar(t, [h2Route(up.port)]);
    t.after(() => sc.stop());
    for (const [via, port] of [['direct', up.port], ['sidecar', sc.port]] as const) {
      const err = await pyClient<PyUnary>(port, 'unary', { md: { 'x-status': '9', 'x-message': 'precondition 100% failed', 'x-a': 'b' } });
      assert.deepEqual([err.code, err.details, err.trailers?.['t-x-a']], [Status.FAILED_PRECONDITION, 'precondition 100% failed', 'b'], via);
      const big = await pyClient<PyUnary>(port, 'unary', { bytes: MIB7, gzip: true });
      assert.deepEqual([big.code, big.same], [Status.OK, true], via);
      const late = await pyClient<PyUnary>(port, 'unary', { method: '/test.Echo/Slow', md: { 'x-delay-ms': '3000' }, timeout: 0.5 });
      assert.equal(late.code, Status.DEADLINE_EXCEEDED, `${via}: ${late.details}`);
      const c = await pyClient<PyUnary & { first: string }>(port, 'cancel', { id: `js-cancel-${via}`, after_ms: 200 });
      assert.equal(c.code, Status.CANCELLED, via);
    }
    const deadline = Date.now() + 5000;
    while (up.cancels.size < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual([...up.cancels.keys()].sort(), ['js-cancel-direct', 'js-cancel-sidecar']);
  });

  it('C-core client keepalive PINGs (100 ms, without calls too): answered by the sidecar, never forwarded, no GOAWAY', async (t) => {
    if (!requirePythonGrpc(t)) return;
    // A grpcio upstream with the default ping policy (5 min with calls, 2 strikes): forwarded PINGs at this
    // rate would draw GOAWAY too_many_pings within a second.
    const up = await pyServer(t);
    const sc = await startH2Sidecar(t, [h2Route(up.port)]);
    t.after(() => sc.stop());
    const channel = {
      'grpc.keepalive_time_ms': 100,
      'grpc.keepalive_timeout_ms': 5000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.max_pings_without_data': 0,
    };
    const r = await pyClient<Record<string, PyUnary>>(sc.port, 'idle_keepalive', { idle_ms: 1500, channel });
    assert.deepEqual([r.before?.code, r.slow?.code, r.after?.code], [0, 0, 0], JSON.stringify(r));
    assert.equal(await sc.metric('keepalive_sidecar_h2_goaways_received_total'), 0);
    assert.equal(sc.logs('h2 goaway received').length, 0);
    // The sidecar's own PINGs upstream: none is due within pingIdleMs (5 s) of the last stream.
    assert.equal(await sc.metric('keepalive_sidecar_h2_pings_sent_total'), 0);
  });

  it('grpcio max_connection_age GOAWAYs every 1.5 s under 30 calls/s: 0 failed; stop(grace) finishes calls in flight; a new server on the port serves', async (t) => {
    if (!requirePythonGrpc(t)) return;
    const up = await pyServer(t, ['--max-age-ms', '1500', '--max-age-grace-ms', '3000']);
    const sc = await startH2Sidecar(t, [h2Route(up.port)]);
    t.after(() => sc.stop());
    const load = await pyClient<{ codes: Record<string, number>; errors: string[] }>(sc.port, 'load', { rate: 30, seconds: 6, delay_ms: 100 });
    assert.deepEqual(load.codes, { '0': 180 }, load.errors.join('; '));
    assert.ok(sc.logs('h2 goaway received').length >= 3, `GOAWAYs: ${sc.logs('h2 goaway received').length}`);

    // Graceful stop: calls in flight when it starts (1 s of work, grace 3 s) complete.
    const inflight = pyClient<{ codes: Record<string, number>; errors: string[] }>(sc.port, 'load', { rate: 20, seconds: 0.5, delay_ms: 1000 });
    while (up.calls.filter((c) => c.call === '/test.Echo/Unary').length < 190) await new Promise((r) => setTimeout(r, 20));
    await up.stop(3);
    assert.deepEqual((await inflight).codes, { '0': 10 }, 'calls in flight at stop(grace) finished');
    const next = await pyServer(t, ['--port', String(up.port)]);
    const after = await pyClient<PyUnary>(sc.port, 'unary', {});
    assert.equal(after.code, Status.OK, `a new server on the same port: ${after.details}`);
    assert.ok(next.calls.length >= 1);
  });

  it('1000 calls in flight from one grpc-js channel, upstream max_concurrent_streams 100: all OK, sessions bounded', async (t) => {
    if (!requirePythonGrpc(t)) return;
    const up = await pyServer(t, ['--max-concurrent-streams', '100']);
    // The route would allow 1000 streams per session: the server's SETTINGS (100) is what bounds them.
    const sc = await startH2Sidecar(t, [h2Route(up.port, { maxConcurrentStreams: 1000 })]);
    t.after(() => sc.stop());
    const client = grpcClient(sc.port);
    t.after(() => client.close());
    const rs = await Promise.all(Array.from({ length: 1000 }, (_v, i) => unary(client, '/test.Echo/Unary', `m${i}`, { md: { 'x-delay-ms': 100 }, deadlineMs: 30_000 })));
    assert.deepEqual(
      rs.flatMap((r, i) => (r.code === Status.OK && r.value?.toString() === `m${i}` ? [] : [`${i}: ${r.code} ${r.details}`])),
      [],
    );
    const opened = await sc.metric('keepalive_sidecar_upstream_connections_opened_total');
    assert.ok(opened >= 10 && opened <= 12, `sessions opened: ${opened} (1000 streams / 100 per session)`);
  });

  it('the upstream transport dies mid-stream (after the head, mid-message): both clients see UNAVAILABLE, as direct (not INTERNAL)', async (t) => {
    if (!requirePythonGrpc(t)) return;
    // A server stream: the head, one whole message, 2 bytes of the next, then the server's socket goes (as a
    // crashed or force-stopped server, or max_connection_age_grace running out on a long stream).
    const up = http2.createServer();
    let last: Socket | undefined;
    up.on('connection', (c: Socket) => (last = c));
    up.on('stream', (st) => {
      st.on('error', () => {});
      st.resume();
      st.respond({ ':status': 200, 'content-type': 'application/grpc' });
      st.write(Buffer.from([0, 0, 0, 0, 2, 65, 66, 0, 0, 0, 0, 10, 1, 2]));
      const sock = last;
      setTimeout(() => sock?.destroy(), 100);
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    t.after(() => up.close());
    const upPort = (up.address() as AddressInfo).port;
    const sc = await startH2Sidecar(t, [h2Route(upPort)]);
    t.after(() => sc.stop());
    for (const [via, port] of [['direct', upPort], ['sidecar', sc.port]] as const) {
      const py = await pyClient<PyUnary & { got: number }>(port, 'stream_until_error', {});
      assert.deepEqual([py.got, py.code], [1, Status.UNAVAILABLE], `${via} C-core: ${py.details}`);
      const js = grpcClient(port);
      t.after(() => js.close());
      const r = await serverStream(js, '/test.Echo/ServerStream', 's', { deadlineMs: 10_000 });
      assert.deepEqual([r.messages.length, r.code], [1, Status.UNAVAILABLE], `${via} grpc-js: ${r.details}`);
      if (via === 'sidecar') assert.deepEqual([r.details, r.trailers['x-sidecar-error']], ['sidecar: peer_closed', 'peer_closed']);
    }
  });

  it('odd upstreams: HTTP 404/503, no grpc-status, RST_STREAM codes: both clients see what they see direct; HTTP/1-only: UNAVAILABLE', async (t) => {
    if (!requirePythonGrpc(t)) return;
    const odd = http2.createServer();
    odd.on('stream', (st, h) => {
      st.on('error', () => {});
      st.resume();
      const [, kind, n] = /^\/(\w+)-(\d+)$/.exec(String(h[':path'])) ?? [];
      const code = Number(n);
      if (kind === 'status') {
        st.respond({ ':status': code, 'content-type': 'text/plain' });
        st.end('nope');
      } else if (kind === 'nostatus') {
        st.respond({ ':status': 200, 'content-type': 'application/grpc' });
        st.end(Buffer.from([0, 0, 0, 0, 1, 65]));
      } else {
        st.close(code);
      }
    });
    await new Promise<void>((r) => odd.listen(0, '127.0.0.1', r));
    t.after(() => odd.close());
    const h1 = http.createServer((_q, res) => res.end('h1 only\n'));
    await new Promise<void>((r) => h1.listen(0, '127.0.0.1', r));
    t.after(() => h1.close());
    const oddPort = (odd.address() as AddressInfo).port;
    const sc = await startH2Sidecar(t, [h2Route(oddPort), h2Route((h1.address() as AddressInfo).port, {}, {}, 'h1')]);
    t.after(() => sc.stop());
    const paths = ['/status-404', '/status-503', '/status-200', '/nostatus-0', '/rst-8', '/rst-2', '/rst-7'];
    for (const [via, port] of [['direct', oddPort], ['sidecar', sc.port]] as const) {
      const js = grpcClient(port);
      t.after(() => js.close());
      const got: Record<string, [number, number]> = {};
      for (const p of paths) got[p] = [(await pyClient<PyUnary>(port, 'unary', { method: p, timeout: 5 })).code, (await unary(js, p, 'x', { deadlineMs: 5000 })).code];
      // [C-core, grpc-js]: the gRPC HTTP-to-status mapping and each stack's reading of a missing status / RST code.
      assert.deepEqual(
        got,
        {
          '/status-404': [Status.UNIMPLEMENTED, Status.UNIMPLEMENTED],
          '/status-503': [Status.UNAVAILABLE, Status.UNAVAILABLE],
          '/status-200': [Status.UNKNOWN, Status.INTERNAL],
          '/nostatus-0': [Status.UNKNOWN, Status.INTERNAL],
          '/rst-8': [Status.CANCELLED, Status.CANCELLED],
          '/rst-2': [Status.INTERNAL, Status.INTERNAL],
          '/rst-7': [Status.UNAVAILABLE, Status.UNAVAILABLE],
        },
        via,
      );
    }
    const h1r = await pyClient<PyUnary>(sc.ports.get('h1')!, 'unary', { timeout: 5 });
    assert.deepEqual([h1r.code, h1r.details], [Status.UNAVAILABLE, 'sidecar: protocol_error']);
  });
});
