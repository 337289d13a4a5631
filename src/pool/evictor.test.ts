import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import type { CloseReason } from '../errors.js';
import { FakeClock } from '../util/fake-clock.js';
import { UpstreamConn } from './conn.js';
import { Endpoint } from './endpoints.js';
import type { ConnOwner } from './conn.js';
import { Evictor } from './evictor.js';

const owner: ConnOwner = { connConnected: () => {}, connConnectFailed: () => {}, connEnded: () => {}, connClosed: () => {}, connFailed: () => {} };

function setup(idleTimeoutMs: number | undefined, maxAgeAt = Infinity) {
  const clock = new FakeClock();
  const evicted: Array<[number, CloseReason]> = [];
  const ev = new Evictor(clock, idleTimeoutMs, (c, r) => {
    evicted.push([clock.now(), r]);
    c.state = { state: 'closed', closeReason: r, closedAt: clock.now() };
    ev.clear(c);
  });
  const conn = new UpstreamConn(1, 'r', new net.Socket(), 0, false, owner, 0, undefined, new Endpoint('127.0.0.1', 1, 4, 0));
  conn.maxAgeAt = maxAgeAt;
  const idle = (): void => {
    conn.state = { state: 'idle', idleSince: clock.now() };
    ev.arm(conn, clock.now());
  };
  const lease = (): void => {
    conn.state = { state: 'leased', leasedAt: clock.now() };
  };
  return { clock, ev, conn, evicted, idle, lease };
}

describe('Evictor: lazy idle and max-age timers', () => {
  it('retires an idle connection at idleSince + idleTimeoutMs', () => {
    const { clock, evicted, idle } = setup(1000);
    idle();
    clock.advance(999);
    assert.deepEqual(evicted, []);
    clock.advance(1);
    assert.deepEqual(evicted, [[1000, 'idle_evicted']]);
  });

  it('a timer outliving its idle period re-checks when it fires: re-arms for what remains, one timer only', () => {
    const { clock, conn, evicted, idle, lease } = setup(1000);
    idle();
    clock.advance(400);
    lease();
    clock.advance(100);
    idle(); // new idle period from 500: deadline 1500; the timer armed for 1000 is kept (not re-armed)
    assert.equal(conn.idleTimerAt, 1000);
    assert.equal(clock.pendingTimers, 1); // that idle timer (no max-age timer: max age never comes first here)
    clock.advance(500); // t=1000: the old timer fires, finds 500 ms left, re-arms
    assert.deepEqual(evicted, []);
    assert.equal(conn.idleTimerAt, 1500);
    clock.advance(500);
    assert.deepEqual(evicted, [[1500, 'idle_evicted']]);
  });

  it('a timer that fires while leased drops itself; the next release arms again', () => {
    const { clock, conn, evicted, idle, lease } = setup(1000);
    idle();
    clock.advance(10);
    lease();
    clock.advance(2000);
    assert.deepEqual(evicted, []);
    assert.equal(conn.idleTimerAt, Infinity); // its heap entry was dropped
    idle();
    clock.advance(1000);
    assert.deepEqual(evicted, [[3010, 'idle_evicted']]);
  });

  it('a shorter Keep-Alive hint replaces a later timer', () => {
    const { clock, conn, evicted, idle } = setup(60000);
    idle();
    conn.state = { state: 'leased', leasedAt: 0 };
    conn.idleTimeoutHintMs = 2000;
    idle();
    clock.advance(2000);
    assert.deepEqual(evicted, [[2000, 'idle_evicted']]);
  });

  it('max age retires an idle connection; while leased its timer fires and does nothing', () => {
    const a = setup(undefined, 5000);
    a.idle();
    a.clock.advance(5000);
    assert.deepEqual(a.evicted, [[5000, 'max_age']]);
    const b = setup(undefined, 5000);
    b.idle();
    b.lease();
    b.clock.advance(6000);
    assert.deepEqual(b.evicted, []);
  });

  it('the max-age timer is armed only for an idle period that max age ends first', () => {
    const { clock, conn, evicted, idle, lease } = setup(1000, 2500);
    idle(); // deadline 1000 < max age 2500: the idle timer alone
    assert.equal(clock.pendingTimers, 1);
    assert.equal(conn.maxAgeTimer, undefined);
    clock.advance(900);
    lease();
    clock.advance(700);
    idle(); // t=1600: deadline 2600 > max age 2500: max age comes first, its timer is armed
    assert.notEqual(conn.maxAgeTimer, undefined);
    clock.advance(899);
    assert.deepEqual(evicted, []);
    clock.advance(1);
    assert.deepEqual(evicted, [[2500, 'max_age']]);
  });

  it('clear (destroy) clears every timer', () => {
    const { clock, ev, conn, idle } = setup(1000, 500);
    idle();
    assert.equal(clock.pendingTimers, 2);
    ev.clear(conn);
    assert.equal(clock.pendingTimers, 0);
  });
  it('many connections share one timer; each is retired at min(idle timeout, hint) after its last release', () => {
    const clock = new FakeClock();
    const off: number[] = [];
    const ev = new Evictor(clock, 1000, (c, r) => {
      assert.equal(r, 'idle_evicted');
      const since = c.state.state === 'idle' ? c.state.idleSince : NaN;
      off.push(clock.now() - since - Math.min(1000, c.idleTimeoutHintMs ?? Infinity));
      c.state = { state: 'closed', closeReason: r, closedAt: clock.now() };
      ev.clear(c);
    });
    const conns = Array.from({ length: 50 }, (_v, i) => {
      const c = new UpstreamConn(i, 'r', new net.Socket(), 0, false, owner, 0, undefined, new Endpoint('127.0.0.1', 1, 4, 0));
      c.state = { state: 'leased', leasedAt: 0 };
      return c;
    });
    let seed = 7;
    const rnd = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
    for (let t = 0; t < 5000; t += 7) {
      clock.advance(7);
      for (let k = 0; k < 3; k++) {
        const c = conns[rnd(conns.length)]!;
        if (c.state.state === 'closed') continue;
        if (c.state.state === 'idle') {
          c.state = { state: 'leased', leasedAt: clock.now() };
          continue;
        }
        if (rnd(5) === 0) c.idleTimeoutHintMs = 200 + rnd(1500);
        c.state = { state: 'idle', idleSince: clock.now() };
        ev.arm(c, clock.now());
        assert.ok(clock.pendingTimers <= 1, 'one shared idle timer');
      }
    }
    for (const c of conns) {
      if (c.state.state === 'leased') {
        c.state = { state: 'idle', idleSince: clock.now() };
        ev.arm(c, clock.now());
      }
    }
    clock.advance(2000);
    assert.equal(off.length, conns.length);
    assert.deepEqual(off.filter((d) => d !== 0), []);
    assert.equal(clock.pendingTimers, 0);
  });
});
