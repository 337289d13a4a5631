import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../util/fake-clock.js';
import { PendingQueue } from './checkout-queue.js';

describe('PendingQueue', () => {
  it('wakes waiters in FIFO order, each exactly once', () => {
    const q = new PendingQueue(new FakeClock());
    const seen: string[] = [];
    for (const name of ['a', 'b', 'c']) q.wait(undefined, (o) => seen.push(`${name}:${o}`));
    q.wakeOne();
    q.wakeOne();
    assert.deepEqual(seen, ['a:woken', 'b:woken']);
    assert.equal(q.size, 1);
    q.wakeAll();
    q.wakeAll();
    assert.deepEqual(seen, ['a:woken', 'b:woken', 'c:woken']);
  });

  it('an aborted waiter leaves the queue and the next one is woken instead', () => {
    const q = new PendingQueue(new FakeClock());
    const seen: string[] = [];
    const ac = new AbortController();
    q.wait(ac.signal, (o) => seen.push(`a:${o}`));
    q.wait(undefined, (o) => seen.push(`b:${o}`));
    ac.abort();
    q.wakeOne();
    assert.deepEqual(seen, ['a:aborted', 'b:woken']);
    const pre = new AbortController();
    pre.abort();
    q.wait(pre.signal, (o) => seen.push(`c:${o}`));
    assert.equal(seen.at(-1), 'c:aborted');
    assert.equal(q.size, 0);
  });

  it('times out a waiter after timeoutMs (not before), and clears the timer of a woken one', () => {
    const clock = new FakeClock();
    const q = new PendingQueue(clock);
    const seen: string[] = [];
    const push = (o: string): void => {
      seen.push(o);
    };
    q.wait(undefined, push, 5000);
    clock.advance(4999);
    assert.deepEqual(seen, []);
    clock.advance(1);
    assert.deepEqual(seen, ['timed_out']);
    q.wait(undefined, push, 5000);
    q.wakeOne();
    assert.equal(clock.pendingTimers, 0);
    clock.advance(10000);
    assert.deepEqual(seen, ['timed_out', 'woken']);
  });

  it('puts a woken waiter that lost its slot back at the head of the line (FIFO survives a re-wait)', () => {
    const q = new PendingQueue(new FakeClock());
    const seen: string[] = [];
    q.wait(undefined, () => seen.push('b'));
    q.wait(undefined, () => seen.push('a-again'), 0, true);
    q.wakeOne();
    q.wakeOne();
    assert.deepEqual(seen, ['a-again', 'b']);
  });
});
