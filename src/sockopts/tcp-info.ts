/**
 * struct tcp_info, decoded from the offsets in linux/tcp.h (stable ABI; fields are only ever appended).
 * Checked against /usr/include/linux/tcp.h on the build machine (Debian 12, kernel 6.x); the first 104 bytes
 * (up to and including total_retrans) exist since Linux 2.6, so we require at least that much:
 *   u8 state@0, ca_state@1, retransmits@2, probes@3, backoff@4, options@5
 *   u32 rto@8 (µs), ato@12, snd_mss@16, rcv_mss@20, unacked@24, sacked@28, lost@32, retrans@36, fackets@40
 *   u32 last_data_sent@44 (ms ago), last_ack_sent@48 (unused by Linux), last_data_recv@52, last_ack_recv@56
 *   u32 pmtu@60, rcv_ssthresh@64, rtt@68 (µs), rttvar@72 (µs), snd_ssthresh@76, snd_cwnd@80, advmss@84,
 *   reordering@88, rcv_rtt@92, rcv_space@96, total_retrans@100
 * and, when the kernel fills that far (Linux 5.4+): u32 snd_wnd@228 (the peer's advertised receive window).
 */
import type { Socket } from 'node:net';
import { getTcpInfoRaw, socketFd } from './native.js';

/** Linux TCP states (include/net/tcp_states.h), index = tcpi_state. */
const TCP_STATES = [
  'unknown', 'established', 'syn_sent', 'syn_recv', 'fin_wait1', 'fin_wait2', 'time_wait', 'close',
  'close_wait', 'last_ack', 'listen', 'closing', 'new_syn_recv',
] as const;

export interface TcpInfo {
  readonly state: string;
  readonly retransmits: number;
  readonly probes: number;
  readonly backoff: number;
  readonly rtoUs: number;
  readonly unacked: number;
  readonly lost: number;
  readonly lastDataSentMs: number;
  readonly lastDataRecvMs: number;
  readonly lastAckRecvMs: number;
  readonly rttUs: number;
  readonly rttvarUs: number;
  readonly totalRetrans: number;
  /** tcpi_snd_wnd (Linux 5.4+; undefined on older kernels): 0 = the peer is alive and not reading (zero window). */
  readonly sndWnd: number | undefined;
}

/** Bytes up to and including tcpi_total_retrans. */
export const TCP_INFO_MIN_BYTES = 104;
/** Bytes up to and including tcpi_snd_wnd. */
const TCP_INFO_SND_WND_END = 232;

const buf = Buffer.alloc(232);

/** Reads TCP_INFO for a live socket; undefined when the socket has no fd any more. */
export function readTcpInfo(socket: Socket): TcpInfo | undefined {
  const fd = socketFd(socket);
  if (fd === undefined) return undefined;
  const n = getTcpInfoRaw(fd, buf);
  return decodeTcpInfo(buf, n);
}

/** Decodes the first `filled` bytes of a struct tcp_info; undefined when the kernel filled too little. Pure. */
export function decodeTcpInfo(buf: Buffer, filled: number): TcpInfo | undefined {
  if (filled < TCP_INFO_MIN_BYTES || buf.length < TCP_INFO_MIN_BYTES) return undefined;
  return {
    state: TCP_STATES[buf.readUInt8(0)] ?? 'unknown',
    retransmits: buf.readUInt8(2),
    probes: buf.readUInt8(3),
    backoff: buf.readUInt8(4),
    rtoUs: buf.readUInt32LE(8),
    unacked: buf.readUInt32LE(24),
    lost: buf.readUInt32LE(32),
    lastDataSentMs: buf.readUInt32LE(44),
    lastDataRecvMs: buf.readUInt32LE(52),
    lastAckRecvMs: buf.readUInt32LE(56),
    rttUs: buf.readUInt32LE(68),
    rttvarUs: buf.readUInt32LE(72),
    totalRetrans: buf.readUInt32LE(100),
    sndWnd: filled >= TCP_INFO_SND_WND_END ? buf.readUInt32LE(228) : undefined,
  };
}
