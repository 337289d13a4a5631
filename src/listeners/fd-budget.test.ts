import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FdBudget, RESERVE_FDS, readNofileLimit } from './fd-budget.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max processes             95000                95000                processes
Max open files            1024                 20000                files
`;

describe('fd budget', () => {
  it('reads the soft RLIMIT_NOFILE from /proc/self/limits text (unlimited or missing → undefined)', () => {
    assert.equal(readNofileLimit(LIMITS), 1024);
    assert.equal(readNofileLimit(LIMITS.replace('1024 ', 'unlimited ')), undefined);
    assert.equal(readNofileLimit('nothing here'), undefined);
  });

  it('charges two fds per app connection and keeps the reserve free', () => {
    const b = new FdBudget(200, 20);
    assert.equal(b.maxAdmitted, Math.floor((200 - 20 - RESERVE_FDS) / 2));
    for (let i = 0; i < b.maxAdmitted; i++) assert.equal(b.tryAdmit(), true);
    assert.equal(b.tryAdmit(), false);
    assert.equal(b.admittedCount, b.maxAdmitted);
    b.release();
    assert.equal(b.tryAdmit(), true);
  });

  it('idle pooled upstreams count against the same budget', () => {
    const b = new FdBudget(200, 20);
    let idle = 2 * b.maxAdmitted - 2;
    b.idleUpstreams = () => idle;
    assert.equal(b.tryAdmit(), true);
    assert.equal(b.tryAdmit(), false);
    idle = 0;
    assert.equal(b.tryAdmit(), true);
  });

  it('an unknown limit admits everything; a limit below the reserve admits nothing', () => {
    assert.equal(new FdBudget(Infinity, 10).maxAdmitted, Infinity);
    assert.equal(new FdBudget(50, 10).tryAdmit(), false);
  });
});
