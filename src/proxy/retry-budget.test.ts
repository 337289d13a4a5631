import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RetryBudget } from './retry-budget.js';

describe('RetryBudget', () => {
  it('always allows minPerSec retries per second', () => {
    const b = new RetryBudget({ budgetPercent: 0, minPerSec: 2 });
    assert.equal(b.tryTake(0), true);
    assert.equal(b.tryTake(10), true);
    assert.equal(b.tryTake(20), false);
    assert.equal(b.tryTake(1000), true);
  });
  it('allows budgetPercent of the requests of the last 10 s beyond that', () => {
    const b = new RetryBudget({ budgetPercent: 20, minPerSec: 0 });
    for (let i = 0; i < 10; i++) b.noteRequest(i * 100);
    assert.equal(b.tryTake(1000), true);
    assert.equal(b.tryTake(1000), true);
    assert.equal(b.tryTake(1000), false);
    // Ten seconds later the old requests have left the window.
    assert.equal(b.tryTake(12000), false);
  });
});
