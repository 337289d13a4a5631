/** The CLI as a user runs it: a real process, real signals, exit codes. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { echoServer } from '../fixtures/upstreams.js';
import type { Fixture } from '../fixtures/upstreams.js';
import { connectClient, readUntil, whenClosed } from '../helpers/sidecar.js';
import { spawnCli } from '../helpers/sidecar-process.js';
import type { CliProcess } from '../helpers/sidecar-process.js';

const dir = mkdtempSync(join(tmpdir(), 'ks-cli-'));

function writeConfig(name: string, obj: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, typeof obj === 'string' ? obj : JSON.stringify(obj));
  return path;
}

function start(args: string[], env: Record<string, string> = {}): CliProcess {
  return spawnCli(args, env);
}

const listenPort = (l: Record<string, unknown>): number => Number(String(l.listen).split(':').pop());

describe('cli', () => {
  const fixtures: Fixture[] = [];
  after(async () => {
    for (const f of fixtures) await f.close();
  });

  it('--version and --help', async () => {
    const v = start(['--version']);
    assert.equal(await v.exit, 0);
    const h = start(['--help']);
    assert.equal(await h.exit, 0);
  });

  it('unknown command is a usage error (exit 2)', async () => {
    const p = start(['frobnicate']);
    assert.equal(await p.exit, 2);
    assert.match(p.stderr, /unknown command "frobnicate"/);
  });

  it('bad config: lists every problem with its key path, exits 3, binds nothing', async () => {
    // Hold a port: if the sidecar tried to bind its (valid) route, it would fail with EADDRINUSE (exit 1).
    const held = net.createServer().listen(0, '127.0.0.1');
    await once(held, 'listening');
    const heldPort = (held.address() as net.AddressInfo).port;
    const cfg = writeConfig('bad.yaml', [
      'admin: { port: 70000 }',
      'bogus: true',
      'routes:',
      `  - { name: ok, listen: { port: ${heldPort} }, upstream: { host: 127.0.0.1, port: 5432 } }`,
      '  - name: pg',
      '    listen: { port: 15432 }',
      '    upstream: { host: db, port: 0 }',
      '    keepalive: { idleMs: 500, probes: 0 }',
      '  - { name: pg, listen: { port: 15432 }, upstream: { host: db, port: 1 } }',
      '',
    ].join('\n'));
    const p = start(['run', '--config', cfg]);
    const code = await p.exit;
    held.close();
    assert.equal(code, 3, p.stderr);
    for (const fragment of [
      'admin.port',
      'bogus: unknown key',
      'routes[1] (pg).upstream.port',
      'routes[1] (pg).keepalive.idleMs',
      'routes[1] (pg).keepalive.probes',
      'routes[2] (pg).name: duplicate route name',
      'routes[2] (pg).listen.port: 15432 is already used',
    ]) {
      assert.ok(p.stderr.includes(fragment), `"${fragment}" in:\n${p.stderr}`);
    }
    assert.equal(p.lines.length, 0, 'nothing was logged as started');
  });

  it('check and print-config on a good config; env shortcut works', async () => {
    const c = start(['check'], { SIDECAR_UPSTREAM: '127.0.0.1:5432', SIDECAR_LISTEN: '15432' });
    assert.equal(await c.exit, 0);
    const p = start(['print-config'], { SIDECAR_UPSTREAM: '127.0.0.1:5432', SIDECAR_LISTEN: '15432' });
    let out = '';
    p.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    assert.equal(await p.exit, 0);
    const cfg = JSON.parse(out) as { routes: Array<{ keepalive: { userTimeoutMs: number } }> };
    assert.equal(cfg.routes[0]?.keepalive.userTimeoutMs, 5000);
  });

  it('check warns (exit 0) about an upstream name that does not resolve now', async () => {
    const c = start(['check'], { SIDECAR_UPSTREAM: 'no-such-host.invalid:5432', SIDECAR_LISTEN: '15432' });
    assert.equal(await c.exit, 0);
    assert.match(c.stderr, /warning: routes\.\S+\.upstream\.host: no-such-host\.invalid does not resolve now: resolve_failed/);
  });

  it('SIGTERM: stops accepting, lets an open connection finish inside the drain window, loses nothing, exits 0', async () => {
    const up = await echoServer();
    fixtures.push(up);
    const cfg = writeConfig('drain.json', {
      admin: { port: 0 }, debug: { port: 0 },
      shutdown: { drainTimeoutMs: 5000 },
      routes: [{ name: 'r1', listen: { port: 0 }, upstream: { host: '127.0.0.1', port: up.port } }],
    });
    const p = start(['run', '-c', cfg]);
    const port = listenPort(await p.waitLine((l) => l.msg === 'route listening'));
    const client = await connectClient(port);
    client.write('before\n');
    await readUntil(client, 'before\n');
    p.child.kill('SIGTERM');
    await p.waitLine((l) => l.msg === 'shutting down: draining connections');
    // New connections are refused once draining started (ECONNRESET if one raced into the accept backlog
    // just before the listening socket closed: the kernel resets those).
    const late = net.connect(port, '127.0.0.1');
    const lateClosed = await whenClosed(late);
    assert.ok(['ECONNREFUSED', 'ECONNRESET'].includes(lateClosed.err?.code ?? ''), lateClosed.err?.code);
    // The open one still works end to end, then finishes by itself.
    client.write('during the drain\n');
    await readUntil(client, 'during the drain\n');
    client.end();
    await once(client, 'close');
    assert.equal(await p.exit, 0);
    assert.equal(p.lines.find((l) => l.msg === 'stopped')?.outcome, 'drained');
  });

  it('SIGTERM: a connection still open after drainTimeoutMs is reset with local_shutdown', async () => {
    const up = await echoServer();
    fixtures.push(up);
    const cfg = writeConfig('forced.json', {
      admin: { port: 0 }, debug: { port: 0 },
      shutdown: { drainTimeoutMs: 300 },
      routes: [{ name: 'r1', listen: { port: 0 }, upstream: { host: '127.0.0.1', port: up.port } }],
    });
    const p = start(['run', '-c', cfg]);
    const port = listenPort(await p.waitLine((l) => l.msg === 'route listening'));
    const client = await connectClient(port);
    client.write('x');
    await readUntil(client, 'x');
    const closed = whenClosed(client);
    p.child.kill('SIGTERM');
    const { err } = await closed;
    assert.equal(err?.code, 'ECONNRESET');
    assert.equal(await p.exit, 0);
    assert.equal(p.lines.find((l) => l.msg === 'stopped')?.outcome, 'forced');
    assert.ok(p.lines.some((l) => l.msg === 'upstream connection closed' && l.reason === 'local_shutdown'));
  });

  it('start without a config runs the demo (the README\'s first command): echo through the route, SIGINT exits 0', async () => {
    const p = start(['start'], { SIDECAR_DEMO_PORT: '0', SIDECAR_ADMIN_PORT: '0', SIDECAR_DEBUG_PORT: '0' });
    const port = listenPort(await p.waitLine((l) => l.msg === 'route listening' && l.route === 'demo'));
    const client = await connectClient(port);
    await readUntil(client, 'hello from the demo upstream');
    client.write('ping\n');
    await readUntil(client, 'ping\n');
    client.end();
    await once(client, 'close');
    p.child.kill('SIGINT');
    assert.equal(await p.exit, 0);
    assert.match(p.stderr, /keepalive-sidecar demo is running/);
  });

  it('port already in use: clear message, exit 1', async () => {
    const held = net.createServer().listen(0, '127.0.0.1');
    await once(held, 'listening');
    const port = (held.address() as net.AddressInfo).port;
    const p = start(['run'], { SIDECAR_UPSTREAM: '127.0.0.1:5432', SIDECAR_LISTEN: String(port), SIDECAR_ADMIN_PORT: '0', SIDECAR_DEBUG_PORT: '0' });
    assert.equal(await p.exit, 1);
    held.close();
    assert.match(p.stderr, /address already in use/);
  });
});
