import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, UsageError } from '../errors.js';
import { parseRouteSpec, validateRoutes } from './routes.js';
import { needsConfigMap } from './sidecar.js';

describe('inject --route', () => {
  it('parses the shortcut keys, with 127.0.0.1 as the default listen host', () => {
    const r = parseRouteSpec('name=pg,mode=tcp,listen=15432,upstream=postgres:5432');
    assert.deepEqual(r, { name: 'pg', mode: 'tcp', listen: { host: '127.0.0.1', port: 15432 }, upstream: { host: 'postgres', port: 5432 }, extra: {} });
    assert.equal(needsConfigMap([r]), false);
  });

  it('puts keepalive keys under keepalive and needs a ConfigMap for them', () => {
    const r = parseRouteSpec('name=pg,listen=1,upstream=a:2,userTimeoutMs=8000,idleMs=2000,maxConnections=10');
    assert.deepEqual(r.extra, { maxConnections: 10, keepalive: { idleMs: 2000, userTimeoutMs: 8000 } });
    assert.equal(r.mode, 'tcp');
    assert.equal(needsConfigMap([r]), true);
  });

  it('refuses bad syntax as a usage error', () => {
    for (const bad of ['pg', 'name=pg', 'name=pg,listen=1', 'name=pg,listen=1,upstream=a', 'name=pg,listen=x,upstream=a:1', 'name=pg,name=q,listen=1,upstream=a:1', 'name=pg,listen=1,upstream=a:1,probes=many', 'name=pg,listen=1,upstream=a:1,tls=on']) {
      assert.throws(() => parseRouteSpec(bad), UsageError, bad);
    }
  });

  it('validates values with the runtime config loader', () => {
    assert.throws(() => validateRoutes([parseRouteSpec('name=pg,listen=9901,upstream=a:1')], 9901), (e: unknown) => e instanceof ConfigError && /already used by admin.port/.test(e.message));
    assert.throws(() => validateRoutes([parseRouteSpec('name=pg,listen=1,upstream=a:1,idleMs=1500')], 9901), ConfigError);
    validateRoutes([parseRouteSpec('name=pg,mode=http,listen=1,upstream=a:1')], 9901);
  });
});
