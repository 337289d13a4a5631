/**
 * ACK evidence for early retry (issue #8): decides from one TCP_INFO snapshot whether a connection that
 * carries a written, unanswered request has a live peer. Pure: no sockets, no timers.
 *
 * Why this is safe on Linux (tcp(7); include/uapi/linux/tcp.h; net/ipv4/tcp.c tcp_get_info):
 * - A live peer ACKs our request segments within RTT + its delayed-ACK timer, which Linux caps at
 *   TCP_DELACK_MAX = 200 ms (include/net/tcp.h); other stacks use <= 200 ms too (RFC 9293 §3.8.6.3 allows
 *   up to 500 ms, hence afterMs >= 250 and the checks below rather than time alone). Once ACKed,
 *   tcpi_unacked (packets_out) drops to 0 and the retransmit state clears.
 * - When the segments vanish in the network, they stay in flight: tcpi_unacked > 0, and after one RTO
 *   (>= TCP_RTO_MIN = 200 ms) tcpi_retransmits / tcpi_backoff become >= 1.
 * - When the local stack cannot send at all (e.g. an output-hook firewall drop makes the transmit fail),
 *   nothing counts as in flight (tcpi_unacked 0) but the zero-window/probe timer runs: tcpi_probes and
 *   tcpi_backoff rise (tcp_probe_timer in net/ipv4/tcp_timer.c).
 * - tcpi_last_ack_recv is the time since the last ACK arrived (ms): if it is at least as old as the request,
 *   the peer has not acknowledged anything we wrote for this request.
 * - A peer that stops reading its socket closes its receive window: we send zero-window probes (tcpi_probes,
 *   tcpi_backoff rise as for an output drop, unacked 0) and it ACKs each with window 0, but the probe interval
 *   backs off (RTO doubling), so tcpi_last_ack_recv can be old. tcpi_snd_wnd 0 (Linux 5.4+) tells it apart:
 *   that peer is alive (it advertised the zero window), never dead-peer evidence; a peer that dies meanwhile
 *   is ended by TCP_USER_TIMEOUT (the kernel applies it to zero-window probing too, Linux 5.11+).
 * A slow but live upstream (thinking for seconds) has ACKed the request: unacked 0, no backoff, no probes,
 * so it is never retried early. One lost segment is retransmitted after one RTO and then ACKed, which clears
 * the evidence before (or soon after) afterMs >= 250 ms; the last-ACK age check then also fails.
 */

/** The TCP_INFO fields the decision reads (a subset of sockopts' TcpInfo). */
export interface AckSnapshot {
  readonly state: string;
  readonly unacked: number;
  readonly retransmits: number;
  readonly probes: number;
  readonly backoff: number;
  readonly lastAckRecvMs: number;
  /** tcpi_snd_wnd; undefined when the kernel does not report it. */
  readonly sndWnd?: number | undefined;
}

/** Slack for the request's age versus tcpi_last_ack_recv (ms granularity, and the write is not instantaneous). */
const AGE_SLACK_MS = 20;

/**
 * True when the snapshot proves that no ACK arrived since the request was written `sinceWriteMs` ago and the
 * kernel is still trying to deliver (outstanding or unsendable data, or backoff): the peer is silently gone.
 */
export function hasNoAckEvidence(info: AckSnapshot, sinceWriteMs: number): boolean {
  if (info.state !== 'established' && info.state !== 'close_wait') return false;
  // Zero-window probing: the peer told us it is not reading; alive.
  if (info.sndWnd === 0) return false;
  const isStuck = info.unacked > 0 || info.retransmits > 0 || info.probes > 0 || info.backoff > 0;
  if (!isStuck) return false;
  const isAckOlderThanRequest = info.lastAckRecvMs + AGE_SLACK_MS >= sinceWriteMs;
  return isAckOlderThanRequest;
}
