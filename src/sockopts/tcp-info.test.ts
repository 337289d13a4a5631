import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import { getIntSockopt, IPPROTO_TCP, TCP_KEEPIDLE } from './native.js';
import { decodeTcpInfo, readTcpInfo, TCP_INFO_MIN_BYTES } from './tcp-info.js';

/** A struct tcp_info with a distinct value in every field we decode, at the linux/tcp.h offsets. */
function fakeTcpInfo(): Buffer {
  const b = Buffer.alloc(232);
  b.writeUInt8(1, 0); // state: TCP_ESTABLISHED
  b.writeUInt8(2, 2); // retransmits
  b.writeUInt8(3, 3); // probes
  b.writeUInt8(4, 4); // backoff
  b.writeUInt32LE(204000, 8); // rto µs
  b.writeUInt32LE(24, 24); // unacked
  b.writeUInt32LE(32, 32); // lost
  b.writeUInt32LE(4400, 44); // last_data_sent
  b.writeUInt32LE(999, 48); // last_ack_sent (not remembered by Linux; must not leak into another field)
  b.writeUInt32LE(5200, 52); // last_data_recv
  b.writeUInt32LE(5600, 56); // last_ack_recv
  b.writeUInt32LE(68, 68); // rtt µs
  b.writeUInt32LE(72, 72); // rttvar µs
  b.writeUInt32LE(100, 100); // total_retrans
  b.writeUInt32LE(228, 228); // snd_wnd
  return b;
}

describe('decodeTcpInfo (linux/tcp.h struct tcp_info offsets)', () => {
  it('decodes every field at its documented offset', () => {
    assert.deepEqual(decodeTcpInfo(fakeTcpInfo(), 232), {
      state: 'established',
      retransmits: 2,
      probes: 3,
      backoff: 4,
      rtoUs: 204000,
      unacked: 24,
      lost: 32,
      lastDataSentMs: 4400,
      lastDataRecvMs: 5200,
      lastAckRecvMs: 5600,
      rttUs: 68,
      rttvarUs: 72,
      totalRetrans: 100,
      sndWnd: 228,
    });
    assert.equal(decodeTcpInfo(fakeTcpInfo(), 228)?.sndWnd, undefined, 'snd_wnd only when the kernel filled it');
  });

  it('maps tcpi_state through include/net/tcp_states.h', () => {
    const b = fakeTcpInfo();
    b.writeUInt8(8, 0);
    assert.equal(decodeTcpInfo(b, 232)?.state, 'close_wait');
    b.writeUInt8(200, 0);
    assert.equal(decodeTcpInfo(b, 232)?.state, 'unknown');
  });

  it('refuses a struct shorter than total_retrans (a kernel that filled less, or a failed call)', () => {
    assert.equal(decodeTcpInfo(fakeTcpInfo(), TCP_INFO_MIN_BYTES - 1), undefined);
    assert.equal(decodeTcpInfo(fakeTcpInfo(), -1), undefined);
    assert.ok(decodeTcpInfo(fakeTcpInfo(), TCP_INFO_MIN_BYTES) !== undefined);
  });
});

describe('readTcpInfo and getIntSockopt on a real loopback socket (ffi-rs getsockopt)', () => {
  it('reads an established socket, its keepidle, and nothing once it is closed', async () => {
    const server = net.createServer((s) => s.on('error', () => {}).resume());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    try {
      await once(socket, 'connect');
      socket.setKeepAlive(true, 7000);
      socket.write('x');
      const info = readTcpInfo(socket);
      assert.equal(info?.state, 'established');
      assert.ok(info.rtoUs > 0, `rto ${info.rtoUs}`);
      const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
      assert.equal(getIntSockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE), 7);
      // Many calls reuse the same native out-buffers: the values stay right.
      for (let i = 0; i < 1000; i++) assert.equal(readTcpInfo(socket)?.state, 'established');
      assert.throws(() => getIntSockopt(1_000_000, IPPROTO_TCP, TCP_KEEPIDLE), /errno 9/);
    } finally {
      socket.destroy();
      server.close();
    }
    assert.equal(readTcpInfo(socket), undefined);
  });
});
