/**
 * `keepalive-sidecar doctor` end to end (cliMain in-process): on this machine's real /proc, on a fake /proc
 * root, against a running sidecar's admin port, and with an admin URL that does not answer.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cliMain, EXIT } from '../../src/cli/index.js';
import { closedPort, echoServer } from '../fixtures/upstreams.js';
import type { Fixture } from '../fixtures/upstreams.js';
import { connectClient, readUntil, startTestSidecar, tcpRoute } from '../helpers/sidecar.js';
import type { TestSidecar } from '../helpers/sidecar.js';

const KEEPALIVE = { idleMs: 2000, intervalMs: 1000, probes: 4, userTimeoutMs: 3000 };

async function doctor(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await cliMain(['doctor', ...args], { env: {}, out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

describe('doctor', () => {
  let upstream: Fixture;
  let sc: TestSidecar;
  let dir: string;
  let configFile: string;
  let adminUrl: string;
  let debugUrl: string;

  before(async () => {
    upstream = await echoServer();
    sc = await startTestSidecar({ routes: [tcpRoute(upstream.port, { keepalive: KEEPALIVE })] });
    adminUrl = `http://127.0.0.1:${sc.sidecar.admin!.port}`;
    debugUrl = `http://127.0.0.1:${sc.sidecar.debug!.port}`;
    dir = mkdtempSync(path.join(tmpdir(), 'ks-doctor-'));
    configFile = path.join(dir, 'config.json');
    writeFileSync(configFile, JSON.stringify({ admin: { port: 0 }, debug: { port: 0 }, routes: [tcpRoute(upstream.port, { keepalive: KEEPALIVE })] }));
  });
  after(async () => {
    await sc.stop();
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('on this machine: reads the real sysctls, checks the options, lists the running sidecar\'s sockets; exit 0', async () => {
    const client = await connectClient(sc.port());
    client.write('ping\n');
    await readUntil(client, 'ping\n');
    try {
      const r = await doctor(['--config', configFile, '--admin-url', adminUrl, '--debug-url', debugUrl]);
      assert.equal(r.code, EXIT.ok, r.out + r.err);
      const real = (name: string): string => readFileSync(`/proc/sys/net/ipv4/${name}`, 'utf8').trim();
      assert.match(r.out, new RegExp(`tcp_keepalive_time = ${real('tcp_keepalive_time')} s`));
      assert.match(r.out, new RegExp(`tcp_retries2 = ${real('tcp_retries2')}\\b`));
      assert.match(r.out, /route "r1" \(tcp 127\.0\.0\.1:0 -> 127\.0\.0\.1:\d+\): keepalive 2 s idle \/ 1 s interval \/ 4 probes, TCP_USER_TIMEOUT 3000 ms/);
      assert.match(r.out, /idle: declared dead at most 3 s after the last byte received/);
      assert.match(r.out, /OK: nodelay, SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT can be set/);
      assert.match(r.out, new RegExp(`Running sidecar at ${adminUrl}: ready, 1 upstream socket`));
      assert.match(r.out, /r1 #\d+ active 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+/);
      // Issue 14: the route's endpoints (an IP literal: one, never resolved).
      assert.match(r.out, /route "r1" endpoints of 127\.0\.0\.1:\d+ \(resolve all\): 1/);
      assert.match(r.out, /127\.0\.0\.1:\d+ active: 1 connection\(s\), 1 in flight, 0 ejection\(s\)/);
      assert.match(r.out, /read back: keepalive 2 s idle \/ 1 s interval \/ 4 probes, TCP_USER_TIMEOUT 3000 ms \(as configured\)/);
      assert.match(r.out, /tcp: established, rtt \d+\.\d+ ms/);
      assert.match(r.out, /timers: declared dead within [\d.]+ m?s if the peer stays silent/);
      assert.match(r.out, /Result: no problems found/);
    } finally {
      client.destroy();
    }
  });

  it('on a fake /proc root: its values are used (tcp_retries2 = 8 -> 102.2 s)', async () => {
    const proc = path.join(dir, 'proc');
    mkdirSync(path.join(proc, 'sys', 'net', 'ipv4'), { recursive: true });
    for (const [k, v] of Object.entries({ tcp_keepalive_time: 600, tcp_keepalive_intvl: 30, tcp_keepalive_probes: 5, tcp_retries2: 8 })) {
      writeFileSync(path.join(proc, 'sys', 'net', 'ipv4', k), `${v}\n`);
    }
    const r = await doctor(['--config', configFile, '--proc-root', proc, '--admin-url', adminUrl, '--debug-url', debugUrl]);
    assert.equal(r.code, EXIT.ok, r.out);
    assert.match(r.out, /hangs for about 102\.2 s \(1 min 42 s\): 8 retransmissions/);
    assert.match(r.out, /noticed after 750 s \(12 min 30 s\)/);
  });

  it('exits 5 (problem) when the sysctls cannot be read', async () => {
    const r = await doctor(['--config', configFile, '--proc-root', path.join(dir, 'nothing-here'), '--admin-url', adminUrl, '--debug-url', debugUrl]);
    assert.equal(r.code, EXIT.problem);
    assert.match(r.out, /Result: 4 problem\(s\) found/);
  });

  it('exits 5 (problem) when the given admin URL does not answer', async () => {
    const r = await doctor(['--config', configFile, '--admin-url', `http://127.0.0.1:${await closedPort()}`]);
    assert.equal(r.code, EXIT.problem);
    assert.match(r.out, /no answer \(ECONNREFUSED\)/);
  });

  it('without a configuration it explains the defaults', async () => {
    const r = await doctor(['--admin-url', adminUrl, '--debug-url', debugUrl]);
    assert.equal(r.code, EXIT.ok, r.out);
    assert.match(r.out, /configuration: none given, so the defaults of a tcp route/);
    assert.match(r.out, /keepalive 3 s idle \/ 1 s interval \/ 3 probes, TCP_USER_TIMEOUT 5000 ms/);
  });

  it('--admin-url and --proc-root belong to doctor only; help lists doctor', async () => {
    let err = '';
    const code = await cliMain(['check', '--admin-url', 'http://x'], { env: {}, out: () => {}, err: (t) => (err += t) });
    assert.equal(code, EXIT.usage);
    assert.match(err, /only used by "doctor"/);
    let out = '';
    await cliMain(['--help'], { env: {}, out: (t) => (out += t), err: () => {} });
    assert.match(out, /doctor \[--config FILE\] \[--admin-url URL\] \[--debug-url URL\] \[--proc-root DIR\]/);
  });
});
