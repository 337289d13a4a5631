import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../util/fake-clock.js';
import type { UpstreamConn } from './conn.js';
import { EJECT_MAX_MS, EndpointSet, SLOW_START_MS } from './endpoints.js';
import type { Endpoint, EndpointSetConfig } from './endpoints.js';
import type { ResolvedAddress } from './resolver.js';

/** A seeded uniform generator (mulberry32): deterministic spreads. */
function seeded(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A fake resolver whose answer the test sets; counts calls. */
class FakeDns {
  answer: ResolvedAddress[] | Error = [];
  calls = 0;
  readonly fn = async (): Promise<ResolvedAddress[]> => {
    this.calls++;
    if (this.answer instanceof Error) throw this.answer;
    return this.answer;
  };
  set(...addrs: string[]): void {
    this.answer = addrs.map((address) => ({ address, family: 4 as const, ttlSec: 30 }));
  }
}

const CFG: EndpointSetConfig = { host: 'svc.test', port: 80, resolve: 'all', resolveIntervalMs: 5000 };

async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

function make(cfg: Partial<EndpointSetConfig> = {}, seed = 1): { set: EndpointSet; dns: FakeDns; clock: FakeClock } {
  const clock = new FakeClock();
  const dns = new FakeDns();
  const set = new EndpointSet('r', { ...CFG, ...cfg }, clock, dns.fn, { random: seeded(seed) });
  return { set, dns, clock };
}

/** Puts `n` fake leased connections on an endpoint (what Pool.moveTo would do). */
function load(ep: Endpoint, n: number): void {
  for (let i = 0; i < n; i++) ep.conns.leased.add({} as UpstreamConn);
}

const byAddr = (set: EndpointSet, a: string): Endpoint => [...set.list()].find((e) => e.address === a)!;

describe('EndpointSet (fake clock, fake resolver)', () => {
  it('an IP literal is one endpoint at once: no DNS, no timer', () => {
    const clock = new FakeClock();
    let calls = 0;
    const set = new EndpointSet('r', { ...CFG, host: '127.0.0.3' }, clock, async () => (calls++, []));
    assert.equal(set.hasSet, true);
    assert.equal(set.pick()?.address, '127.0.0.3');
    void set.start();
    assert.equal(calls, 0);
    assert.equal(clock.pendingTimers, 0);
  });

  it('resolves every address; P2C spreads sequential picks over all three', async () => {
    const { set, dns } = make();
    dns.set('127.0.0.2', '127.0.0.3', '127.0.0.4');
    await set.start();
    const counts = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const a = set.pick()!.address;
      counts.set(a, (counts.get(a) ?? 0) + 1);
    }
    for (const [a, n] of counts) assert.ok(n > 800, `${a}: ${n}`);
    assert.equal(counts.size, 3);
  });

  it('P2C prefers the endpoint with fewer in-flight', async () => {
    const { set, dns } = make();
    dns.set('127.0.0.2', '127.0.0.3');
    await set.start();
    load(byAddr(set, '127.0.0.2'), 5);
    for (let i = 0; i < 50; i++) assert.equal(set.pick()!.address, '127.0.0.3');
  });

  it('a pool may define the load (HTTP/2: open streams): P2C then compares that', async () => {
    const clock = new FakeClock();
    const dns = new FakeDns();
    dns.set('127.0.0.2', '127.0.0.3');
    const streams = new Map<string, number>([['127.0.0.2', 0], ['127.0.0.3', 40]]);
    const set = new EndpointSet('r', CFG, clock, dns.fn, { random: seeded(3), load: (ep) => streams.get(ep.address) ?? 0 });
    await set.start();
    load(byAddr(set, '127.0.0.2'), 5);
    for (let i = 0; i < 50; i++) assert.equal(set.pick()!.address, '127.0.0.2');
  });

  it('avoid: a retry is sent elsewhere when another endpoint is eligible, else to the same one', async () => {
    const { set, dns } = make();
    dns.set('127.0.0.2', '127.0.0.3');
    await set.start();
    const a = byAddr(set, '127.0.0.2');
    for (let i = 0; i < 50; i++) assert.equal(set.pick(a)!.address, '127.0.0.3');
    const one = make({ host: '127.0.0.9' }).set;
    const only = one.pick()!;
    assert.equal(one.pick(only), only);
  });

  it('avoid a list: every endpoint an acquire tried is left out until all eligible ones were, then one of them comes back', async () => {
    const { set, dns } = make();
    dns.set('127.0.0.2', '127.0.0.3', '127.0.0.4');
    await set.start();
    const [a, b, c] = ['127.0.0.2', '127.0.0.3', '127.0.0.4'].map((x) => byAddr(set, x));
    for (let i = 0; i < 50; i++) assert.equal(set.pick([a!, b!]), c);
    for (let i = 0; i < 50; i++) assert.ok([a, b, c].includes(set.pick([a!, b!, c!])), 'all avoided: still an answer');
  });

  it('ejection: not picked for 1 s (+/-20 %), then a probe; a successful connect restores it with slow start', async () => {
    const { set, dns, clock } = make();
    dns.set('127.0.0.2', '127.0.0.3', '127.0.0.4');
    await set.start();
    const dead = byAddr(set, '127.0.0.3');
    const events: string[] = [];
    set.on('ejected', (_ep, reason, ms) => events.push(`ejected ${reason} ${ms}`));
    set.on('probe', () => events.push('probe'));
    set.on('restored', () => events.push('restored'));
    assert.equal(set.eject(dead, 'user_timeout'), true);
    assert.equal(set.eject(dead, 'user_timeout'), false, 'a second dying connection does not extend the back-off');
    assert.equal(dead.state, 'ejected');
    const backoff = dead.ejectedUntil! - clock.now();
    assert.ok(backoff >= 800 && backoff <= 1200, `${backoff}`);
    for (let i = 0; i < 200; i++) assert.notEqual(set.pick(), dead);
    set.noteConnected(dead);
    assert.equal(dead.state, 'ejected', 'a connect during the back-off does not restore');
    clock.advance(1200);
    assert.deepEqual(events.slice(1), ['probe']);
    set.noteConnected(dead);
    assert.equal(dead.state, 'active');
    assert.equal(dead.weightAt(clock.now()), 0.1);
    clock.advance(SLOW_START_MS / 2);
    assert.equal(dead.weightAt(clock.now()), 0.5);
    assert.equal(dead.ejections, 1);
    assert.match(dead.lastError ?? '', /user_timeout/);
  });

  it('slow start: a restored endpoint takes some traffic at once, a fair share once warm', async () => {
    const { set, dns, clock } = make();
    dns.set('127.0.0.2', '127.0.0.3');
    await set.start();
    const b = byAddr(set, '127.0.0.3');
    set.eject(b, 'no_ack');
    clock.advance(1300);
    set.noteConnected(b);
    const share = (): number => {
      let n = 0;
      for (let i = 0; i < 2000; i++) if (set.pick() === b) n++;
      return n / 2000;
    };
    const cold = share();
    assert.ok(cold > 0.02 && cold < 0.2, `cold share ${cold}`);
    clock.advance(SLOW_START_MS);
    const warm = share();
    assert.ok(warm > 0.4 && warm < 0.6, `warm share ${warm}`);
  });

  it('a failed probe doubles the back-off, up to 30 s; a long healthy spell forgives', async () => {
    const { set, dns, clock } = make();
    dns.set('127.0.0.2', '127.0.0.3', '127.0.0.4');
    await set.start();
    const ep = byAddr(set, '127.0.0.2');
    const backoffs: number[] = [];
    set.on('ejected', (_e, _r, ms) => backoffs.push(ms));
    set.on('probe', (e) => set.eject(e, 'connect_timeout'));
    set.eject(ep, 'keepalive_timeout');
    clock.advance(200_000);
    const bases = [1000, 2000, 4000, 8000, 16000, 30000, 30000];
    bases.forEach((b, i) => assert.ok(backoffs[i]! >= b * 0.8 && backoffs[i]! <= Math.min(EJECT_MAX_MS, b * 1.2), `#${i}: ${backoffs[i]} for base ${b}`));
    assert.equal(ep.ejections, backoffs.length, 'each back-off counted');
    set.removeAllListeners('probe');
    set.on('probe', (e) => set.noteConnected(e));
    clock.advance(40_000);
    assert.equal(ep.state, 'active');
    clock.advance(EJECT_MAX_MS + 1);
    backoffs.length = 0;
    set.eject(ep, 'no_ack');
    assert.ok(backoffs[0]! <= 1200, `forgiven: ${backoffs[0]}`);
  });

  it('panic threshold: with fewer than half active, ejected endpoints are picked again', async () => {
    const { set, dns } = make();
    dns.set('127.0.0.2', '127.0.0.3', '127.0.0.4');
    await set.start();
    set.eject(byAddr(set, '127.0.0.2'), 'user_timeout');
    assert.equal(set.isPanic, false);
    set.eject(byAddr(set, '127.0.0.3'), 'user_timeout');
    assert.equal(set.isPanic, true, '1 of 3 active < 50 %');
    const seen = new Set<string>();
    for (let i = 0; i < 300; i++) seen.add(set.pick()!.address);
    assert.equal(seen.size, 3);
    const single = make({ host: '127.0.0.5' }).set;
    const ep = single.pick()!;
    single.eject(ep, 'user_timeout');
    assert.equal(single.pick(), ep, 'one endpoint (a ClusterIP) keeps being used');
  });

  it('re-resolution: a removed address is never picked and forgotten once drained; a new one is added warming', async () => {
    const { set, dns, clock } = make({ resolveIntervalMs: 2000 });
    dns.answer = [{ address: '127.0.0.2', family: 4, ttlSec: 60 }, { address: '127.0.0.3', family: 4, ttlSec: 60 }];
    await set.start();
    const old = byAddr(set, '127.0.0.3');
    load(old, 1);
    const events: string[] = [];
    set.on('added', (e) => events.push(`+${e.address}`));
    set.on('removed', (e) => events.push(`-${e.address}`));
    const outcomes: string[] = [];
    set.on('resolved', (o) => outcomes.push(o));
    dns.set('127.0.0.2', '127.0.0.4');
    clock.advance(1999);
    await flush();
    assert.deepEqual(events, []);
    clock.advance(1);
    await flush();
    assert.deepEqual(events, ['+127.0.0.4', '-127.0.0.3']);
    assert.equal(old.state, 'removed');
    assert.equal([...set.list()].length, 3, 'removed but draining: still listed');
    for (let i = 0; i < 100; i++) assert.notEqual(set.pick(), old);
    assert.ok(byAddr(set, '127.0.0.4').weightAt(clock.now()) < 1, 'new endpoint warms up');
    old.conns.leased.clear();
    set.forget(old);
    assert.equal([...set.list()].length, 2);
    clock.advance(2000);
    await flush();
    assert.deepEqual(outcomes, ['changed', 'unchanged']);
  });

  it('the interval follows a lower TTL, bounded below by 1 s', async () => {
    const { set, dns, clock } = make({ resolveIntervalMs: 5000 });
    dns.answer = [{ address: '127.0.0.2', family: 4, ttlSec: 2 }];
    await set.start();
    assert.equal(dns.calls, 1);
    clock.advance(2000);
    await flush();
    assert.equal(dns.calls, 2);
    dns.answer = [{ address: '127.0.0.2', family: 4, ttlSec: 0 }];
    clock.advance(2000);
    await flush();
    assert.equal(dns.calls, 3);
    clock.advance(999);
    await flush();
    assert.equal(dns.calls, 3);
    clock.advance(1);
    await flush();
    assert.equal(dns.calls, 4, 'TTL 0 -> every 1 s');
  });

  it('resolution failure keeps the last good set; a name that never resolved has no set and retries soon', async () => {
    const { set, dns, clock } = make({ resolveIntervalMs: 5000 });
    dns.set('127.0.0.2');
    await set.start();
    const failed: boolean[] = [];
    set.on('resolveFailed', (_e, hasSet) => failed.push(hasSet));
    dns.answer = new Error('connect ECONNREFUSED');
    clock.advance(5000);
    await flush();
    assert.deepEqual(failed, [true]);
    assert.equal(set.pick()?.address, '127.0.0.2');
    assert.match(set.lastResolveError ?? '', /ECONNREFUSED/);

    const never = make({ resolveIntervalMs: 5000 });
    never.dns.answer = Object.assign(new Error('queryA ENOTFOUND nope.test'), { code: 'ENOTFOUND' });
    await never.set.start();
    assert.equal(never.set.hasSet, false);
    assert.equal(never.set.pick(), undefined);
    never.dns.set('127.0.0.7');
    never.clock.advance(1000);
    await flush();
    assert.equal(never.set.pick()?.address, '127.0.0.7', 'retried after 1 s, not the 5 s interval');
  });

  it('resolve: once never asks again', async () => {
    const { set, dns, clock } = make({ resolve: 'once' });
    dns.set('127.0.0.2', '127.0.0.3');
    await set.start();
    clock.advance(60_000);
    await flush();
    assert.equal(dns.calls, 1);
    assert.equal(clock.pendingTimers, 0);
  });

  it('spares go to the endpoint with the fewest', async () => {
    const { set, dns } = make();
    dns.set('127.0.0.2', '127.0.0.3');
    await set.start();
    byAddr(set, '127.0.0.2').conns.idle.add({} as UpstreamConn);
    assert.equal(set.pickForSpare()?.address, '127.0.0.3');
  });
});
