import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classifyConnectError, classifyError } from './classify.js';

const err = (code: string): NodeJS.ErrnoException => Object.assign(new Error(code), { code });

describe('classifyError', () => {
  const idle = { hasDataInFlight: false, userTimeoutMs: 2000 };
  const inFlight = { hasDataInFlight: true, userTimeoutMs: 2000 };
  it('ETIMEDOUT with nothing in flight is keepalive_timeout', () => {
    assert.equal(classifyError(err('ETIMEDOUT'), idle), 'keepalive_timeout');
  });
  it('ETIMEDOUT with data in flight and a user timeout is user_timeout', () => {
    assert.equal(classifyError(err('ETIMEDOUT'), inFlight), 'user_timeout');
  });
  it('ETIMEDOUT with data in flight but no user timeout is keepalive_timeout', () => {
    assert.equal(classifyError(err('ETIMEDOUT'), { hasDataInFlight: true, userTimeoutMs: 0 }), 'keepalive_timeout');
  });
  it('ECONNRESET and EPIPE are peer_reset', () => {
    assert.equal(classifyError(err('ECONNRESET'), idle), 'peer_reset');
    assert.equal(classifyError(err('EPIPE'), inFlight), 'peer_reset');
  });
  it('anything else is other (the errno goes to the log, not a label)', () => {
    assert.equal(classifyError(err('EHOSTUNREACH'), idle), 'other');
    assert.equal(classifyError(new Error('no code'), idle), 'other');
    assert.equal(classifyError(undefined, idle), 'other');
  });
});

describe('classifyConnectError', () => {
  it('maps refused, timed out and the rest', () => {
    assert.equal(classifyConnectError(err('ECONNREFUSED'), false), 'connect_refused');
    assert.equal(classifyConnectError(err('ETIMEDOUT'), false), 'connect_timeout');
    assert.equal(classifyConnectError(undefined, true), 'connect_timeout');
    assert.equal(classifyConnectError(err('ENOTFOUND'), false), 'connect_error');
  });
});
