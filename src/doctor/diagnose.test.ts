import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConnectionView } from '../admin/index.js';
import type { RouteConfig } from '../config/index.js';
import { loadConfig } from '../config/index.js';
import { diagnose } from './diagnose.js';
import type { DoctorInput } from './diagnose.js';
import { KERNEL_DEFAULTS } from './kernel.js';

function route(keepalive: Record<string, number>, name = 'pg'): RouteConfig {
  const cfg = loadConfig({
    env: {},
    configFile: 'x.json',
    readFile: () => JSON.stringify({ routes: [{ name, mode: 'tcp', listen: { port: 15432 }, upstream: { host: 'db', port: 5432 }, keepalive }] }),
  });
  return cfg.routes[0]!;
}

const ALL_READ = { keepaliveTimeSec: true, keepaliveIntvlSec: true, keepaliveProbes: true, retries2: true };

function input(over: Partial<DoctorInput> = {}): DoctorInput {
  return {
    procRoot: '/fake/proc',
    kernel: { settings: KERNEL_DEFAULTS, isRead: ALL_READ, problems: [] },
    configSource: 'test.json',
    routes: [route({ idleMs: 3000, intervalMs: 1000, probes: 3, userTimeoutMs: 5000 })],
    sockoptProblems: [],
    admin: undefined,
    ...over,
  };
}

function socket(over: Partial<ConnectionView> = {}): ConnectionView {
  const so = { noDelay: true, keepAlive: true, keepIdleSec: 3, keepIntvlSec: 1, keepCnt: 3, userTimeoutMs: 5000 };
  return {
    route: 'pg', id: 7, state: 'active', stateForMs: 10, local: '127.0.0.1:40000', remote: '127.0.0.1:5432', ageMs: 1500, idleMs: 200,
    bytesRead: 10, bytesWritten: 20, configured: so, sockopts: so, isSockoptsAsConfigured: true,
    tcpInfo: { state: 'established', retransmits: 0, probes: 0, backoff: 0, rtoUs: 204000, unacked: 0, lost: 0, lastDataSentMs: 200, lastDataRecvMs: 200, lastAckRecvMs: 200, rttUs: 45, rttvarUs: 20, totalRetrans: 0, sndWnd: 65535 },
    timers: { maxAgeInMs: 290_000, deadIfSilentWithinMs: 4800 },
    ...over,
  };
}

describe('doctor diagnose (pure)', () => {
  it('says how long a dead peer goes unnoticed without the sidecar: never / 7875 s idle, 924.6 s in flight', () => {
    const r = diagnose(input());
    assert.match(r.text, /tcp_keepalive_time = 7200 s, tcp_keepalive_intvl = 75 s, tcp_keepalive_probes = 9, tcp_retries2 = 15/);
    assert.match(r.text, /idle connection: never noticed/);
    assert.match(r.text, /noticed after 7875 s \(2 h 11 min 15 s\)/);
    assert.match(r.text, /hangs for about 924\.6 s \(15 min 25 s\): 15 retransmissions/);
    assert.deepEqual(r.problems, []);
    assert.match(r.text, /Result: no problems found\./);
  });

  it('uses the node\'s sysctls: tcp_retries2 = 8 is 102.2 s, keepalive 600/30/5 is 750 s', () => {
    const r = diagnose(input({ kernel: { settings: { keepaliveTimeSec: 600, keepaliveIntvlSec: 30, keepaliveProbes: 5, retries2: 8 }, isRead: ALL_READ, problems: [] } }));
    assert.match(r.text, /hangs for about 102\.2 s \(1 min 42 s\): 8 retransmissions/);
    assert.match(r.text, /noticed after 750 s \(12 min 30 s\)/);
  });

  it('says what the configured route does: idle and in flight', () => {
    const r = diagnose(input());
    assert.match(r.text, /route "pg" \(tcp 127\.0\.0\.1:15432 -> db:5432\): keepalive 3 s idle \/ 1 s interval \/ 3 probes, TCP_USER_TIMEOUT 5000 ms/);
    assert.match(r.text, /idle: declared dead at most 5 s after the last byte received/);
    assert.match(r.text, /data in flight: declared dead 5 s after the first unacknowledged write/);
  });

  it('warns (exit 0) when a route has no user timeout: in flight falls back to tcp_retries2', () => {
    const r = diagnose(input({ routes: [route({ idleMs: 2000, intervalMs: 1000, probes: 4, userTimeoutMs: 0 }, 'nout')] }));
    assert.match(r.text, /idle: declared dead at most 6 s/);
    assert.match(r.text, /TCP_USER_TIMEOUT is off, so the kernel's 924\.6 s \(15 min 25 s\) \(tcp_retries2\) applies/);
    assert.deepEqual(r.problems, []);
    assert.equal(r.warnings.length, 1);
  });

  it('an option that cannot be set, or an unreadable sysctl, is a problem', () => {
    const r = diagnose(input({
      sockoptProblems: ['routes.pg.keepalive: user_timeout: Protocol not available'],
      kernel: { settings: KERNEL_DEFAULTS, isRead: { ...ALL_READ, retries2: false }, problems: ['cannot read /fake/proc/sys/net/ipv4/tcp_retries2 (ENOENT); assuming the Linux default 15'] },
    }));
    assert.equal(r.problems.length, 2);
    assert.match(r.text, /FAILED routes\.pg\.keepalive: user_timeout/);
    assert.match(r.text, /tcp_retries2 = 15 \(unreadable: Linux default assumed\)/);
    assert.match(r.text, /Result: 2 problem\(s\) found\./);
  });

  it('an explicit admin URL that does not answer is a problem; the implicit default is only reported', () => {
    const explicit = diagnose(input({ admin: { url: 'http://127.0.0.1:1', isExplicit: true, ok: false, error: 'ECONNREFUSED' } }));
    assert.equal(explicit.problems.length, 1);
    const implicit = diagnose(input({ admin: { url: 'http://127.0.0.1:9901', isExplicit: false, ok: false, error: 'ECONNREFUSED' } }));
    assert.deepEqual(implicit.problems, []);
    assert.match(implicit.text, /Running sidecar at http:\/\/127\.0\.0\.1:9901: no answer \(ECONNREFUSED\)/);
  });

  it('lists a running sidecar\'s sockets with read-back options, TCP_INFO and timers', () => {
    const r = diagnose(input({ admin: { url: 'http://127.0.0.1:9901', isExplicit: true, ok: true, isReady: true, connections: [socket()] } }));
    assert.match(r.text, /ready, 1 upstream socket\(s\)/);
    assert.match(r.text, /pg #7 active 127\.0\.0\.1:40000 -> 127\.0\.0\.1:5432/);
    assert.match(r.text, /read back: keepalive 3 s idle \/ 1 s interval \/ 3 probes, TCP_USER_TIMEOUT 5000 ms \(as configured\)/);
    assert.match(r.text, /tcp: established, rtt 0\.04 ms/);
    assert.match(r.text, /timers: declared dead within 4\.8 s if the peer stays silent; max age reached in 290 s/);
    assert.deepEqual(r.problems, []);
  });

  it('a socket whose options read back differently is a problem; a silent peer is a warning', () => {
    const wrong = { noDelay: true, keepAlive: true, keepIdleSec: 7200, keepIntvlSec: 75, keepCnt: 9, userTimeoutMs: 0 };
    const base = socket();
    const r = diagnose(input({
      admin: {
        url: 'http://x', isExplicit: true, ok: true, isReady: false,
        connections: [socket({ sockopts: wrong, isSockoptsAsConfigured: false }), socket({ id: 8, tcpInfo: { ...base.tcpInfo!, probes: 2 } })],
      },
    }));
    assert.equal(r.problems.length, 1);
    assert.match(r.problems[0]!, /pg #7: socket options read back differ/);
    assert.match(r.text, /CONFIGURED keepalive 3 s idle/);
    assert.ok(r.warnings.some((w) => /pg #8: the peer is not answering right now \(probes out 2/.test(w)));
    assert.ok(r.warnings.some((w) => /not ready/.test(w)));
  });

  it('lists the endpoints of a running sidecar; an ejected one and a failing resolver warn', () => {
    const ep = (address: string, over: Record<string, unknown> = {}) => ({ address, port: 8080, state: 'active' as const, connections: 3, inFlight: 1, idle: 2, ejections: 0, lastError: null, ejectedForMs: null, weight: 1, ...over });
    const r = diagnose(input({
      admin: {
        url: 'http://x', isExplicit: true, ok: true, isReady: true, connections: [],
        endpoints: [{
          route: 'pg', host: 'inventory.shop.svc.cluster.local', port: 8080, resolve: 'all', isPanic: false, lastResolvedMsAgo: 1200, lastResolveError: 'resolve_failed: ETIMEOUT queryA ETIMEOUT',
          endpoints: [ep('10.1.0.4'), ep('10.1.0.5', { state: 'ejected', ejections: 2, lastError: 'user_timeout', ejectedForMs: 1500, connections: 0, inFlight: 0 }), ep('10.1.0.6', { weight: 0.3 })],
        }],
      },
    }));
    assert.match(r.text, /route "pg" endpoints of inventory\.shop\.svc\.cluster\.local:8080 \(resolve all, resolved 1\.2 s ago\): 3/);
    assert.match(r.text, /10\.1\.0\.4:8080 active: 3 connection\(s\), 1 in flight, 0 ejection\(s\)/);
    assert.match(r.text, /10\.1\.0\.5:8080 ejected: 0 connection\(s\), 0 in flight, 2 ejection\(s\), back in 1\.5 s after a probe, last error user_timeout/);
    assert.match(r.text, /10\.1\.0\.6:8080 active: .*slow start 30 %/);
    assert.ok(r.warnings.some((w) => /endpoint 10\.1\.0\.5:8080 is ejected/.test(w)));
    assert.ok(r.warnings.some((w) => /the last good set keeps serving/.test(w)));
    assert.deepEqual(r.problems, []);
  });
});
