import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import { applySockopts, expectedSockopts } from './apply.js';
import { getIntSockopt, IPPROTO_TCP, setIntSockopt, socketFd, TCP_KEEPCNT, TCP_KEEPINTVL, TCP_USER_TIMEOUT } from './native.js';

async function loopbackPair(): Promise<{ client: net.Socket; close: () => void }> {
  const server = net.createServer((s) => s.on('error', () => {}));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  const client = net.connect({ host: '127.0.0.1', port });
  await once(client, 'connect');
  return { client, close: () => { client.destroy(); server.close(); } };
}

describe('applySockopts (our own setsockopt for TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT)', () => {
  it('sets every option on a real socket and reads each back as wanted (seconds truncated)', async () => {
    const { client, close } = await loopbackPair();
    try {
      const ka = { idleMs: 7500, intervalMs: 3999, probes: 4, userTimeoutMs: 12345 };
      const r = applySockopts(client, ka);
      assert.deepEqual(r.failures, []);
      assert.deepEqual(r.effective, expectedSockopts(ka));
      assert.equal(r.effective?.keepIntvlSec, 3);
      const fd = socketFd(client);
      assert.ok(fd !== undefined);
      assert.equal(getIntSockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 12345);
      assert.equal(getIntSockopt(fd, IPPROTO_TCP, TCP_KEEPCNT), 4);
    } finally {
      close();
    }
  });

  it('setIntSockopt throws with the errno on a bad value; applySockopts reports it and goes on', async () => {
    const { client, close } = await loopbackPair();
    try {
      const fd = socketFd(client);
      assert.ok(fd !== undefined);
      // TCP_KEEPINTVL must be 1..32767 (EINVAL otherwise).
      assert.throws(() => setIntSockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, 0), /setsockopt\(6, 5\) failed: errno 22/);
      const r = applySockopts(client, { idleMs: 5000, intervalMs: 0, probes: 3, userTimeoutMs: 1000 });
      assert.deepEqual(r.failures.map((f) => f.option), ['keepintvl']);
      assert.equal(r.effective?.userTimeoutMs, 1000);
    } finally {
      close();
    }
  });

  it('a socket without an fd: every option is a reported failure, nothing throws', async () => {
    const { client, close } = await loopbackPair();
    client.destroy();
    await once(client, 'close');
    try {
      const r = applySockopts(client, { idleMs: 5000, intervalMs: 1000, probes: 3, userTimeoutMs: 1000 });
      assert.equal(r.effective, undefined);
      assert.ok(r.failures.some((f) => f.option === 'user_timeout' && /fd/.test(f.message)));
    } finally {
      close();
    }
  });
});
