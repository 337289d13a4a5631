import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classifyConnectError, classifyError } from './classify.js';

const err = (code: string): Error => Object.assign(new Error(code), { code });
const idle = { hasDataInFlight: false, userTimeoutMs: 2000 };
const busy = { hasDataInFlight: true, userTimeoutMs: 2000 };

describe('classifyError', () => {
  it('ETIMEDOUT: user_timeout with data in flight and a UT set, else keepalive_timeout', () => {
    assert.equal(classifyError(err('ETIMEDOUT'), busy), 'user_timeout');
    assert.equal(classifyError(err('ETIMEDOUT'), idle), 'keepalive_timeout');
    assert.equal(classifyError(err('ETIMEDOUT'), { hasDataInFlight: true, userTimeoutMs: 0 }), 'keepalive_timeout');
  });
  it('resets and broken pipes are peer_reset', () => {
    assert.equal(classifyError(err('ECONNRESET'), idle), 'peer_reset');
    assert.equal(classifyError(err('EPIPE'), idle), 'peer_reset');
  });
  it('undici errors (http mode) map to the peer closing, a response timeout or a protocol error', () => {
    assert.equal(classifyError(err('UND_ERR_SOCKET'), busy), 'peer_closed');
    assert.equal(classifyError(err('UND_ERR_INFO'), idle), 'peer_closed');
    assert.equal(classifyError(err('UND_ERR_HEADERS_TIMEOUT'), busy), 'response_timeout');
    assert.equal(classifyError(err('HPE_INVALID_CONSTANT'), busy), 'protocol_error');
    assert.equal(classifyError(err('UND_ERR_RES_CONTENT_LENGTH_MISMATCH'), busy), 'protocol_error');
    assert.equal(classifyError(err('ERR_HTTP2_ERROR'), busy), 'protocol_error', 'node:http2 session error (issue 13)');
  });
  it('undici framing guards (bytes on an idle connection, a 100 or 101 nobody asked for) are protocol_error', () => {
    const socketError = (message: string): Error => Object.assign(new Error(message), { code: 'UND_ERR_SOCKET' });
    assert.equal(classifyError(socketError('bad response'), idle), 'protocol_error');
    assert.equal(classifyError(socketError('bad upgrade'), busy), 'protocol_error');
    assert.equal(classifyError(socketError('other side closed'), busy), 'peer_closed');
  });
  it('anything else is other (the errno goes to the log, never into a label)', () => {
    assert.equal(classifyError(err('EWHATEVER'), idle), 'other');
    assert.equal(classifyError(new Error('no code'), idle), 'other');
  });
});

describe('classifyConnectError', () => {
  it('maps refused, timed out and the rest', () => {
    assert.equal(classifyConnectError(err('ECONNREFUSED'), false), 'connect_refused');
    assert.equal(classifyConnectError(err('ETIMEDOUT'), false), 'connect_timeout');
    assert.equal(classifyConnectError(undefined, true), 'connect_timeout');
    assert.equal(classifyConnectError(err('EHOSTUNREACH'), false), 'connect_error');
  });
  it('a name that does not resolve is resolve_failed', () => {
    for (const code of ['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL']) assert.equal(classifyConnectError(err(code), false), 'resolve_failed', code);
  });
});
