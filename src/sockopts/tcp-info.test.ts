import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeTcpInfo, TCP_INFO_MIN_BYTES } from './tcp-info.js';

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
    });
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
