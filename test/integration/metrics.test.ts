/**
 * The /metrics scrape on real sockets: it parses with a Prometheus text parser, every family has HELP and
 * TYPE, the issue's metric names and labels exist, counters follow traffic, gauges follow pool.stats(), and
 * the series count does not grow with 1 000 connections from 1 000 client ports.
 */
import assert from 'node:assert/strict';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { closedPort, echoServer } from '../fixtures/upstreams.js';
import type { Fixture } from '../fixtures/upstreams.js';
import { request, samples, valueOf } from '../helpers/scrape.js';
import { connectClient, readUntil, startTestSidecar, tcpRoute, whenClosed } from '../helpers/sidecar.js';
import type { TestSidecar } from '../helpers/sidecar.js';

const P = 'keepalive_sidecar_';

/** Families the issue asks for (HTTP ones come with http mode), with their type and labels. */
const EXPECTED: ReadonlyArray<[name: string, type: string, labels: readonly string[]]> = [
  ['upstream_connections', 'GAUGE', ['route', 'state']],
  ['upstream_connections_opened_total', 'COUNTER', ['route']],
  ['upstream_connections_closed_total', 'COUNTER', ['route', 'reason']],
  ['upstream_connect_duration_seconds', 'HISTOGRAM', ['route']],
  ['upstream_connect_failures_total', 'COUNTER', ['route', 'reason']],
  ['dead_peer_detection_seconds', 'HISTOGRAM', ['route', 'reason']],
  ['downstream_connections', 'GAUGE', ['route']],
  ['downstream_resets_total', 'COUNTER', ['route', 'reason']],
  ['bytes_total', 'COUNTER', ['route', 'direction']],
  ['sockopt_failures_total', 'COUNTER', ['option']],
  ['build_info', 'GAUGE', ['version', 'node']],
  // Issue 14: endpoints of a route.
  ['upstream_endpoints', 'GAUGE', ['route', 'state']],
  ['upstream_endpoint_ejections_total', 'COUNTER', ['route', 'reason']],
  ['upstream_resolutions_total', 'COUNTER', ['route', 'outcome']],
];
/** Label names our own families may use (bounded sets only); `le` belongs to histograms. */
const ALLOWED_LABELS = new Set(['route', 'state', 'reason', 'direction', 'option', 'version', 'node', 'code_class', 'outcome', 'le']);
/** Default process metrics (prom-client collectDefaultMetrics) carry their own labels (type, space, kind...). */
const isDefaultMetric = (name: string): boolean => name.startsWith(`${P}process_`) || name.startsWith(`${P}nodejs_`);

async function scrape(sc: TestSidecar): Promise<string> {
  const res = await request(sc.sidecar.admin!.port, '/metrics');
  assert.equal(res.status, 200);
  return res.body;
}

/** One full round trip through the route, then a clean close; resolves with the client's local port. */
async function roundTrip(port: number, text = 'x'): Promise<number> {
  const c = await connectClient(port);
  const local = c.localPort!;
  const closed = whenClosed(c);
  c.write(text);
  await readUntil(c, text);
  c.end();
  await closed;
  return local;
}

/** Resolves once the pool has emitted `n` more 'closed' events. */
function poolClosures(sc: TestSidecar, n: number): Promise<void> {
  const pool = sc.sidecar.routes[0]!.pool;
  let left = n;
  return new Promise((resolve) => {
    if (left <= 0) resolve();
    const on = (): void => {
      if (--left === 0) {
        pool.off('closed', on);
        resolve();
      }
    };
    pool.on('closed', on);
  });
}

describe('/metrics scrape', () => {
  let upstream: Fixture;
  let sc: TestSidecar;

  before(async () => {
    upstream = await echoServer();
    const refused = await closedPort();
    sc = await startTestSidecar({
      routes: [tcpRoute(upstream.port), tcpRoute(refused, { name: 'dead' })],
    });
  });
  after(async () => {
    await sc.stop();
    await upstream.close();
  });

  it('parses, and every family has HELP and TYPE', async () => {
    const closing = poolClosures(sc, 1);
    await roundTrip(sc.port(), 'hello');
    await closing;
    const text = await scrape(sc);
    const families = parsePrometheusTextFormat(text);
    assert.ok(families.length > 20, `${families.length} families`);
    for (const f of families) {
      assert.ok(f.name.startsWith(P), `${f.name} has our prefix`);
      assert.ok(f.help.length > 0, `${f.name} has HELP`);
      assert.notEqual(f.type, 'UNTYPED', `${f.name} has TYPE`);
    }
    // The parser tolerates a missing TYPE before samples; check the raw text too.
    const helps = new Set([...text.matchAll(/^# HELP (\S+) /gm)].map((m) => m[1]));
    const types = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
    for (const s of samples(text)) {
      const family = [s.name, s.name.replace(/_(bucket|sum|count)$/, '')].find((n) => types.has(n));
      assert.ok(family !== undefined, `${s.name} has a TYPE line`);
      assert.ok(helps.has(family), `${family} has a HELP line`);
    }
  });

  it('has every metric of the issue with its type and labels, and no unbounded label', async () => {
    const text = await scrape(sc);
    const families = new Map(parsePrometheusTextFormat(text).map((f) => [f.name, f]));
    for (const [name, type, labels] of EXPECTED) {
      const f = families.get(P + name);
      assert.ok(f, `${P + name} exists`);
      assert.equal(f.type, type, name);
      const seen = samples(text).filter((s) => s.name.startsWith(P + name) && (s.name === P + name || /_(bucket|sum|count)$/.test(s.name)));
      assert.ok(seen.length > 0, `${name} has samples`);
      for (const s of seen) assert.deepEqual(Object.keys(s.labels).filter((l) => l !== 'le').sort(), [...labels].sort(), `${s.name} labels`);
    }
    for (const state of ['connecting', 'idle', 'active']) {
      assert.ok(samples(text).some((s) => s.name === `${P}upstream_connections` && s.labels.state === state), state);
    }
    for (const s of samples(text)) {
      if (isDefaultMetric(s.name)) continue;
      for (const [k, v] of Object.entries(s.labels)) {
        assert.ok(ALLOWED_LABELS.has(k), `${s.name}: label ${k} is from a bounded set`);
        assert.doesNotMatch(v, /^\d+\.\d+\.\d+\.\d+|:\d+$|^E[A-Z]+$/, `${s.name}{${k}="${v}"}: no address, port or errno`);
      }
    }
  });

  it('counts opens, closes by reason, bytes both ways, and connect failures', async () => {
    const before = samples(await scrape(sc));
    const closing = poolClosures(sc, 2);
    await roundTrip(sc.port(), 'a'.repeat(1000));
    await roundTrip(sc.port(), 'b'.repeat(1000));
    await closing;
    const after = samples(await scrape(sc));
    const d = (name: string, m: Record<string, string>): number => valueOf(after, P + name, m) - valueOf(before, P + name, m);
    assert.equal(d('upstream_connections_opened_total', { route: 'r1' }), 2);
    assert.equal(d('upstream_connections_closed_total', { route: 'r1' }), 2);
    assert.equal(d('upstream_connections_closed_total', { route: 'r1', reason: 'downstream_closed' }), 2);
    assert.equal(d('upstream_connect_duration_seconds_count', { route: 'r1' }), 2);
    assert.equal(d('bytes_total', { route: 'r1', direction: 'tx' }), 2000);
    assert.equal(d('bytes_total', { route: 'r1', direction: 'rx' }), 2000);

    // The route to a closed port: the app is reset at once, and both counters say why.
    const c = await connectClient(sc.port('dead'));
    const { err } = await whenClosed(c);
    assert.equal(err?.code, 'ECONNRESET');
    const later = samples(await scrape(sc));
    assert.equal(valueOf(later, `${P}upstream_connect_failures_total`, { route: 'dead', reason: 'connect_refused' }), 1);
    assert.equal(valueOf(later, `${P}downstream_resets_total`, { route: 'dead', reason: 'connect_refused' }), 1);
  });

  it('counts bytes of open connections at scrape time, and gauges follow pool.stats()', async () => {
    const pool = sc.sidecar.routes[0]!.pool;
    const before = samples(await scrape(sc));
    const open: net.Socket[] = [];
    for (let i = 0; i < 3; i++) {
      const c = await connectClient(sc.port());
      c.write('0123456789');
      await readUntil(c, '0123456789');
      open.push(c);
    }
    const during = samples(await scrape(sc));
    assert.equal(valueOf(during, `${P}upstream_connections`, { route: 'r1', state: 'active' }), pool.stats().leased);
    assert.equal(valueOf(during, `${P}upstream_connections`, { route: 'r1', state: 'active' }), 3);
    assert.equal(valueOf(during, `${P}downstream_connections`, { route: 'r1' }), 3);
    assert.equal(valueOf(during, `${P}bytes_total`, { route: 'r1', direction: 'tx' }) - valueOf(before, `${P}bytes_total`, { route: 'r1', direction: 'tx' }), 30);

    const closing = poolClosures(sc, 3);
    const closed = open.map((c) => whenClosed(c));
    for (const c of open) c.end();
    await Promise.all([closing, ...closed]);
    const afterwards = samples(await scrape(sc));
    assert.equal(valueOf(afterwards, `${P}upstream_connections`, { route: 'r1' }), 0);
    assert.equal(valueOf(afterwards, `${P}downstream_connections`, { route: 'r1' }), 0);
    // Bytes of closed connections are kept: the counter never goes down.
    assert.equal(valueOf(afterwards, `${P}bytes_total`, { route: 'r1', direction: 'tx' }), valueOf(during, `${P}bytes_total`, { route: 'r1', direction: 'tx' }));
  });

  it('label cardinality: 1 000 connections from 1 000 client ports do not add a series', async () => {
    const ours = (text: string): string[] =>
      samples(text)
        .filter((s) => !isDefaultMetric(s.name))
        .map((s) => `${s.name}{${Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(',')}}`)
        .sort();
    const seriesBefore = ours(await scrape(sc));
    const openedBefore = valueOf(await scrape(sc), `${P}upstream_connections_opened_total`, { route: 'r1' });
    const ports = new Set<number>();
    const TOTAL = 1000;
    const CONCURRENCY = 25;
    let next = 0;
    const closing = poolClosures(sc, TOTAL);
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < TOTAL) {
          next++;
          ports.add(await roundTrip(sc.port()));
        }
      }),
    );
    await closing;
    const text = await scrape(sc);
    assert.equal(ports.size, TOTAL, 'distinct client ports');
    assert.equal(valueOf(text, `${P}upstream_connections_opened_total`, { route: 'r1' }) - openedBefore, TOTAL);
    assert.deepEqual(ours(text), seriesBefore, 'the same series, no more');
    // And the whole scrape stays small.
    assert.ok(samples(text).length < 600, `${samples(text).length} samples`);
  });
});
