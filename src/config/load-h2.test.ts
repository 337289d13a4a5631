import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../errors.js';
import { encodeGrpcTimeout, grpcMethodMatcher, grpcTimeoutMs } from '../proxy/h2-exchange.js';
import { loadConfig } from './load.js';

function load(file: unknown) {
  return loadConfig({ env: {}, configFile: 'c.json', readFile: () => JSON.stringify(file) });
}
function problems(file: unknown): string[] {
  try {
    load(file);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `ConfigError, got ${String(e)}`);
    return [...e.problems];
  }
  assert.fail('expected a ConfigError');
}
const route = (h2: Record<string, unknown> = {}) => ({ name: 'grpc', mode: 'h2', listen: { port: 0 }, upstream: { host: '127.0.0.1', port: 50051 }, h2 });

describe('loadConfig: h2 routes (issue 13)', () => {
  it('applies the h2 defaults (UT 10 s, PING timings safe for gRPC servers)', () => {
    const r = load({ routes: [route()] }).routes[0]!;
    assert.equal(r.mode, 'h2');
    assert.equal(r.keepalive.userTimeoutMs, 10000);
    assert.deepEqual(r.h2, {
      pingIdleMs: 5000,
      pingTimeoutMs: 1000,
      pingIntervalMs: 300000,
      maxConcurrentStreams: 100,
      maxSessionMemoryMiB: 10,
      idleTimeoutMs: 60000,
      retry: { attempts: 1, maxBodyBytes: 65536, budgetPercent: 20, minPerSec: 10, grpcIdempotentMethods: [] },
    });
    assert.ok(Object.isFrozen(r.h2.retry.grpcIdempotentMethods));
  });

  it('accepts exact methods and service wildcards', () => {
    const r = load({ routes: [route({ retry: { grpcIdempotentMethods: ['/pkg.Svc/Get', '/a.b.C/*'] } })] }).routes[0]!;
    assert.deepEqual(r.h2.retry.grpcIdempotentMethods, ['/pkg.Svc/Get', '/a.b.C/*']);
  });

  it('lists every problem: interval floor, timeout vs interval, method format, unknown key', () => {
    const p = problems({
      routes: [route({ pingIntervalMs: 500, pingTimeoutMs: 0, bogus: 1, retry: { grpcIdempotentMethods: ['pkg.Svc/Get'] } })],
    });
    assert.ok(p.some((x) => x.includes('h2.pingIntervalMs') && x.includes('1000')), p.join('\n'));
    assert.ok(p.some((x) => x.includes('h2.pingTimeoutMs')), p.join('\n'));
    assert.ok(p.some((x) => x.includes('h2.bogus')), p.join('\n'));
    const q = problems({ routes: [route({ pingIntervalMs: 1000, pingTimeoutMs: 1000, retry: { grpcIdempotentMethods: ['pkg.Svc/Get', '/x/*/y'] } })] });
    assert.ok(q.some((x) => x.includes('pingTimeoutMs: must be lower than h2.pingIntervalMs')), q.join('\n'));
    assert.ok(q.some((x) => x.includes('grpcIdempotentMethods[0]')), q.join('\n'));
    assert.ok(q.some((x) => x.includes('grpcIdempotentMethods[1]')), q.join('\n'));
  });
});

describe('grpcTimeoutMs', () => {
  it('parses the gRPC timeout units and refuses malformed values', () => {
    assert.equal(grpcTimeoutMs('5S'), 5000);
    assert.equal(grpcTimeoutMs('250m'), 250);
    assert.equal(grpcTimeoutMs('1H'), 3_600_000);
    assert.equal(grpcTimeoutMs('2M'), 120_000);
    assert.equal(grpcTimeoutMs('1000u'), 1);
    assert.equal(grpcTimeoutMs('123456789S'), undefined);
    assert.equal(grpcTimeoutMs('5s'), undefined);
    assert.equal(grpcTimeoutMs(undefined), undefined);
  });
});

describe('grpcMethodMatcher', () => {
  it('matches exact methods and whole services, nothing else', () => {
    const m = grpcMethodMatcher(['/pkg.Svc/Get', '/a.B/*']);
    assert.equal(m('/pkg.Svc/Get'), true);
    assert.equal(m('/pkg.Svc/Put'), false);
    assert.equal(m('/a.B/Anything'), true);
    assert.equal(m('/a.B/'), false);
    assert.equal(m('/a.B/x/y'), false);
    assert.equal(m('/a.BC/X'), false);
    assert.equal(grpcMethodMatcher([])('/pkg.Svc/Get'), false);
  });
});

describe('encodeGrpcTimeout', () => {
  it('fits 8 digits whatever the deadline (a replayed watch stream with days left) and never shortens it', () => {
    for (const ms of [1, 1500, 99_999_999, 100_000_000, 3 * 86_400_000, 2 ** 40]) {
      const v = encodeGrpcTimeout(ms);
      assert.match(v, /^[0-9]{1,8}[HMSm]$/);
      if (ms <= 99_999_999 * 3_600_000) assert.ok((grpcTimeoutMs(v) ?? 0) >= ms, `${v} >= ${ms} ms`);
    }
    assert.equal(encodeGrpcTimeout(1500), '1500m');
  });
});
