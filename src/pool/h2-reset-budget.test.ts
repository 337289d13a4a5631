/** ResetBudget (h2-driver.ts): when an upstream session has sent enough RST_STREAMs to be retired. Fake clock. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../util/fake-clock.js';
import { RESET_BUCKET, RESET_MIN, RESET_REFILL_PER_S, ResetBudget } from './h2-driver.js';

function opened(n: number, clock = new FakeClock()): { b: ResetBudget; clock: FakeClock } {
  const b = new ResetBudget(clock);
  for (let i = 0; i < n; i++) b.noteStream();
  return { b, clock };
}

/** Resets until the budget says retire (or `max`); how many it took. */
function resetsUntilSpent(b: ResetBudget, max: number, clock?: FakeClock, everyMs = 0): number {
  for (let i = 1; i <= max; i++) {
    if (b.noteReset()) return i;
    if (clock !== undefined && everyMs > 0) clock.advance(everyMs);
  }
  return Infinity;
}

test('a rapid-reset burst: retired at RESET_MIN when nearly every stream is reset (Envoy: 250 early resets)', () => {
  // 100 long streams stay open beside streams opened and reset at once.
  const { b } = opened(100);
  let n = 0;
  for (; n < 10_000; n++) {
    b.noteStream();
    if (b.noteReset()) break;
  }
  assert.equal(n + 1, RESET_MIN);
});

test('below RESET_MIN, or under a quarter of the streams, the ratio rule does not fire', () => {
  const { b } = opened(1000);
  // 1000 streams: a quarter is 250, so the 120th..249th resets do not spend it (the bucket has 400).
  assert.equal(resetsUntilSpent(b, 10_000), 250);
});

test('a few cancels among many streams never spend it, however long the session lives', () => {
  const { b, clock } = opened(0);
  // 10 calls per second, 1 in 10 cancelled, for 10 minutes: 1 reset/s, under the 16/s refill and under a quarter.
  for (let s = 0; s < 600; s++) {
    for (let i = 0; i < 10; i++) b.noteStream();
    assert.equal(b.noteReset(), false, `second ${s}`);
    clock.advance(1000);
  }
});

test('steady cancels above the refill rate (nghttp2: 33/s) spend the bucket even when they are a small share', () => {
  const { b, clock } = opened(1_000_000);
  // 100 resets/s: net drain 84/s, the bucket of 400 is gone in ~4.8 s (nghttp2's 1000 at 67/s would last 15 s).
  const n = resetsUntilSpent(b, 10_000, clock, 10);
  const expected = RESET_BUCKET / (1 - RESET_REFILL_PER_S / 100);
  assert.ok(Math.abs(n - expected) < 5, `${n} resets (expected ~${expected.toFixed(0)})`);
  assert.ok(n < 1000 - 100, 'inside nghttp2 burst with room for a draining session\'s 100 streams');
});

test('the bucket refills at RESET_REFILL_PER_S, capped at RESET_BUCKET', () => {
  const { b, clock } = opened(1_000_000);
  for (let i = 0; i < RESET_BUCKET - 1; i++) assert.equal(b.noteReset(), false);
  // Spent on the next one, unless time gave tokens back: 1 s gives 16.
  clock.advance(1000);
  for (let i = 0; i < RESET_REFILL_PER_S; i++) assert.equal(b.noteReset(), false);
  assert.equal(b.noteReset(), true);
  // A long quiet time refills to the cap only.
  const fresh = opened(1_000_000);
  fresh.clock.advance(3_600_000);
  assert.equal(resetsUntilSpent(fresh.b, 10_000), RESET_BUCKET);
});
