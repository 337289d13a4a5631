import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../errors.js';
import { loadConfig, parseHostPort } from './load.js';

function load(file: unknown, env: Record<string, string> = {}) {
  return loadConfig({ env, configFile: 'c.yaml', readFile: () => (typeof file === 'string' ? file : JSON.stringify(file)) });
}
function problems(file: unknown, env: Record<string, string> = {}): string[] {
  try {
    load(file, env);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `ConfigError, got ${String(e)}`);
    return [...e.problems];
  }
  assert.fail('expected a ConfigError');
}
const route = (extra: Record<string, unknown> = {}) => ({ name: 'pg', listen: { port: 15432 }, upstream: { host: 'db', port: 5432 }, ...extra });

describe('loadConfig', () => {
  it('applies defaults and freezes', () => {
    const c = load({ routes: [route()] });
    assert.equal(c.admin.port, 9901);
    assert.equal(c.routes[0]?.mode, 'tcp');
    assert.deepEqual(c.routes[0]?.keepalive, { idleMs: 3000, intervalMs: 1000, probes: 3, userTimeoutMs: 5000 });
    assert.equal(c.routes[0]?.listen.host, '127.0.0.1');
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.routes[0]?.keepalive));
  });

  it('defaults TCP_USER_TIMEOUT by mode', () => {
    assert.equal(load({ routes: [route({ mode: 'http' })] }).routes[0]?.keepalive.userTimeoutMs, 10000);
    assert.equal(load({ routes: [route({ keepalive: { userTimeoutMs: 0 } })] }).routes[0]?.keepalive.userTimeoutMs, 0);
  });

  it('reads YAML', () => {
    const c = load('routes:\n  - name: redis\n    listen: { port: 16379 }\n    upstream: { host: redis, port: 6379 }\n');
    assert.equal(c.routes[0]?.upstream.port, 6379);
  });

  it('builds one route from the env shortcut', () => {
    const c = loadConfig({ env: { SIDECAR_UPSTREAM: 'postgres.db.svc:5432', SIDECAR_LISTEN: '15432', SIDECAR_MODE: 'tcp' } });
    assert.equal(c.routes.length, 1);
    assert.deepEqual(c.routes[0]?.upstream, { host: 'postgres.db.svc', port: 5432, resolve: 'all', resolveIntervalMs: 5000, dnsServers: [] });
    assert.deepEqual(c.routes[0]?.listen, { host: '127.0.0.1', port: 15432 });
    assert.equal(c.routes[0]?.name, 'default');
  });

  it('env overrides top-level file values', () => {
    assert.equal(load({ admin: { port: 9000 }, routes: [route()] }, { SIDECAR_ADMIN_PORT: '9100' }).admin.port, 9100);
  });

  // Table: each bad config and a fragment of the problem it must produce.
  const table: Array<[string, unknown, Record<string, string>, string[]]> = [
    ['unknown top-level key', { routes: [route()], bogus: 1 }, {}, ['bogus: unknown key']],
    ['unknown route key', { routes: [route({ extra: 1 })] }, {}, ['routes[0] (pg).extra: unknown key']],
    ['bad type', { routes: [route({ maxConnections: 'many' })] }, {}, ['routes[0] (pg).maxConnections']],
    ['port out of range', { routes: [route({ listen: { port: 70000 } })] }, {}, ['routes[0] (pg).listen.port']],
    ['upstream port 0', { routes: [route({ upstream: { host: 'db', port: 0 } })] }, {}, ['routes[0] (pg).upstream.port']],
    ['missing upstream host', { routes: [route({ upstream: { port: 1 } })] }, {}, ['routes[0] (pg).upstream.host']],
    ['idleMs < 1000', { routes: [route({ keepalive: { idleMs: 500 } })] }, {}, ['keepalive.idleMs']],
    ['idleMs not whole seconds', { routes: [route({ keepalive: { idleMs: 1500 } })] }, {}, ['keepalive.idleMs']],
    ['probes 0', { routes: [route({ keepalive: { probes: 0 } })] }, {}, ['keepalive.probes']],
    ['negative user timeout', { routes: [route({ keepalive: { userTimeoutMs: -1 } })] }, {}, ['keepalive.userTimeoutMs']],
    ['bad mode', { routes: [route({ mode: 'udp' })] }, {}, ['routes[0] (pg).mode']],
    ['bad route name', { routes: [route({ name: 'Bad Name' })] }, {}, ['routes[0] (Bad Name).name']],
    ['duplicate listen port', { routes: [route(), route({ name: 'pg2' })] }, {}, ['routes[1] (pg2).listen.port: 15432 is already used']],
    ['listen port = admin port', { routes: [route({ listen: { port: 9901 } })] }, {}, ['listen.port: 9901 is already used by admin.port']],
    ['debug.host not loopback (0.0.0.0)', { routes: [route()], debug: { host: '0.0.0.0' } }, {}, ['debug.host: "0.0.0.0" is not a loopback address']],
    ['debug.host not loopback (pod IP, env)', { routes: [route()] }, { SIDECAR_DEBUG_HOST: '10.1.2.3' }, ['debug.host: "10.1.2.3" is not a loopback address']],
    ['debug.host a name', { routes: [route()], debug: { host: 'pod.local' } }, {}, ['debug.host: "pod.local" is not a loopback address']],
    ['debug port = admin port', { routes: [route()], debug: { port: 9901 } }, {}, ['debug.port: 9901 is already used by admin.port']],
    ['listen port = debug port', { routes: [route({ listen: { port: 9902 } })] }, {}, ['listen.port: 9902 is already used by debug.port']],
    ['duplicate route name', { routes: [route(), route({ listen: { port: 2 } })] }, {}, ['duplicate route name']],
    ['no routes', {}, {}, ['routes: no route configured']],
    ['route not an object', { routes: [42] }, {}, ['routes[0]: must be an object']],
    ['bad admin port env', { routes: [route()] }, { SIDECAR_ADMIN_PORT: 'x' }, ['admin.port']],
    ['bad log level', { routes: [route()], log: { level: 'loud' } }, {}, ['log.level']],
    ['early retry below 250', { routes: [route({ mode: 'http', http: { earlyRetry: { afterMs: 100 } } })] }, {}, ['http.earlyRetry.afterMs']],
    ['http idle >= max age', { routes: [route({ mode: 'http', maxAgeMs: 1000, http: { idleTimeoutMs: 5000 } })] }, {}, ['http.idleTimeoutMs: must be lower than maxAgeMs']],
    ['resolve not all/once', { routes: [route({ upstream: { host: 'db', port: 1, resolve: 'sometimes' } })] }, {}, ['routes[0] (pg).upstream.resolve']],
    ['resolveIntervalMs below 1 s', { routes: [route({ upstream: { host: 'db', port: 1, resolveIntervalMs: 200 } })] }, {}, ['upstream.resolveIntervalMs: must be at least 1000']],
    ['dnsServers a name', { routes: [route({ upstream: { host: 'db', port: 1, dnsServers: ['dns.local:53', '10.0.0.10:53', '10.0.0.10'] } })] }, {}, ['upstream.dnsServers[0]: expected "ip:port"', 'upstream.dnsServers[2]: expected']],
    ['shortcut without listen', {}, { SIDECAR_UPSTREAM: 'db:5432' }, ['SIDECAR_LISTEN: required']],
    ['shortcut bad upstream', {}, { SIDECAR_UPSTREAM: 'db', SIDECAR_LISTEN: '1' }, ['SIDECAR_UPSTREAM: expected host:port']],
    ['not YAML', 'routes: [ {', {}, ['not valid JSON or YAML']],
  ];
  for (const [title, file, env, fragments] of table) {
    it(`rejects: ${title}`, () => {
      const got = problems(file, env);
      for (const f of fragments) assert.ok(got.some((p) => p.includes(f)), `"${f}" in ${JSON.stringify(got)}`);
    });
  }

  it('accepts loopback debug hosts and port 0', () => {
    for (const host of ['127.0.0.1', '127.0.0.9', '::1', 'localhost']) {
      assert.equal(load({ debug: { host, port: 0 }, routes: [route()] }).debug.host, host);
    }
    assert.deepEqual(load({ routes: [route()] }).debug, { host: '127.0.0.1', port: 9902 });
  });

  it('lists every problem at once', () => {
    const got = problems({ bogus: 1, admin: { port: -1 }, routes: [route({ keepalive: { idleMs: 10, probes: 500 } }), route()] });
    assert.ok(got.length >= 5, JSON.stringify(got));
  });

  it('reports an unreadable file', () => {
    assert.throws(
      () => loadConfig({ env: {}, configFile: '/nonexistent/x.yaml' }),
      (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.includes('cannot read it (ENOENT)')),
    );
  });
});

describe('parseHostPort', () => {
  it('parses host:port, [v6]:port and a bare port', () => {
    assert.deepEqual(parseHostPort('db:5432', undefined), { host: 'db', port: 5432 });
    assert.deepEqual(parseHostPort('[::1]:80', undefined), { host: '::1', port: 80 });
    assert.deepEqual(parseHostPort('15432', '127.0.0.1'), { host: '127.0.0.1', port: 15432 });
    assert.equal(parseHostPort('15432', undefined), undefined);
    assert.equal(parseHostPort('db:99999', undefined), undefined);
  });
});
