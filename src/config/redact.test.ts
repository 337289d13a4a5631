import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { REDACTED, redactConfig } from './redact.js';

describe('redactConfig', () => {
  it('replaces secret-looking keys at any depth and leaves the rest alone', () => {
    const input = Object.freeze({
      admin: { host: '127.0.0.1', port: 9901 },
      routes: [{ name: 'pg', upstream: { host: 'db', port: 5432 }, auth: { password: 'hunter2', apiKey: 'k', token: '' } }],
    });
    assert.deepEqual(redactConfig(input), {
      admin: { host: '127.0.0.1', port: 9901 },
      routes: [{ name: 'pg', upstream: { host: 'db', port: 5432 }, auth: { password: REDACTED, apiKey: REDACTED, token: '' } }],
    });
  });

  it('strips credentials from URL-like strings', () => {
    assert.deepEqual(redactConfig({ upstream: 'http://user:pw@example.test:8080/x' }), { upstream: `http://${REDACTED}@example.test:8080/x` });
  });

  it('does not mistake keepalive settings for secrets', () => {
    const ka = { keepalive: { idleMs: 3000, intervalMs: 1000, probes: 3, userTimeoutMs: 5000 } };
    assert.deepEqual(redactConfig(ka), ka);
  });
});
