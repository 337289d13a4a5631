/**
 * How long Linux takes to declare a silently dead peer dead, as a pure function of the socket options and
 * sysctls. Used by `doctor` (to say it in plain words), by /debug/connections (the per-socket deadline) and by
 * the chaos tests (as their bound). No sockets, no clock.
 *
 * Two cases, because the kernel runs two different timers (net/ipv4/tcp_timer.c):
 * - idle (nothing of ours unacknowledged): tcp_keepalive_timer. Only with SO_KEEPALIVE. The first probe goes
 *   out keepalive_time after the last segment received, then one every keepalive_intvl. Without
 *   TCP_USER_TIMEOUT the connection dies when keepalive_probes probes are out and unanswered; with it, at the
 *   first timer run where `elapsed >= user_timeout && probes_out > 0` (the probe count is then ignored;
 *   tcp(7), TCP_USER_TIMEOUT). Without SO_KEEPALIVE an idle dead connection is never noticed.
 * - in flight (data written, not acknowledged): tcp_retransmit_timer -> tcp_write_timeout ->
 *   retransmits_timed_out. With TCP_USER_TIMEOUT the limit is the user timeout (the RTO is clamped to it by
 *   tcp_clamp_rto_to_user_timeout); without it, tcp_retries2 retransmissions "modelled" by
 *   tcp_model_timeout(): the RTO starts at TCP_RTO_MIN (200 ms) and doubles up to TCP_RTO_MAX (120 s).
 *   Documentation/networking/ip-sysctl.rst: "The default value of 15 yields a hypothetical timeout of 924.6
 *   seconds". Keepalive probes are not sent while data is in flight (tcp_keepalive_timer returns early when
 *   packets_out is non-zero), so keepalive does not help this case.
 */

/** include/net/tcp.h: TCP_RTO_MIN = HZ/5, TCP_RTO_MAX = 120*HZ. */
export const TCP_RTO_MIN_MS = 200;
export const TCP_RTO_MAX_MS = 120_000;

/** Keepalive and user timeout as the kernel sees them (whole seconds for the keepalive timers). */
export interface KeepaliveTimers {
  readonly isKeepaliveOn: boolean;
  readonly idleSec: number;
  readonly intvlSec: number;
  readonly probes: number;
  /** 0 = TCP_USER_TIMEOUT not set. */
  readonly userTimeoutMs: number;
}

/**
 * tcp_model_timeout(): total time of `retries` retransmissions with the RTO starting at `rtoBaseMs`,
 * doubling, capped at `rtoMaxMs`. linear_backoff_thresh = ilog2(TCP_RTO_MAX / rto_base).
 */
export function retransmitTimeoutMs(retries: number, rtoBaseMs = TCP_RTO_MIN_MS, rtoMaxMs = TCP_RTO_MAX_MS): number {
  const thresh = Math.floor(Math.log2(rtoMaxMs / rtoBaseMs));
  if (retries <= thresh) return (2 ** (retries + 1) - 1) * rtoBaseMs;
  return (2 ** (thresh + 1) - 1) * rtoBaseMs + (retries - thresh) * rtoMaxMs;
}

/**
 * Time from the last segment received to the kernel's ETIMEDOUT on an idle connection whose peer vanished,
 * or Infinity when keepalive is off (nothing ever probes the peer).
 */
export function idleDetectionMs(t: KeepaliveTimers): number {
  if (!t.isKeepaliveOn) return Infinity;
  const idleMs = t.idleSec * 1000;
  const intvlMs = t.intvlSec * 1000;
  if (t.userTimeoutMs <= 0) return idleMs + intvlMs * t.probes;
  // The timer runs at idle, idle + intvl, idle + 2*intvl, ...; death needs one probe out and elapsed >= UT.
  const rounds = Math.max(1, Math.ceil((t.userTimeoutMs - idleMs) / intvlMs));
  return idleMs + intvlMs * rounds;
}

/** Time from the first unacknowledged write to ETIMEDOUT when the peer vanished with our data in flight. */
export function inFlightDetectionMs(t: Pick<KeepaliveTimers, 'userTimeoutMs'>, tcpRetries2: number): number {
  return t.userTimeoutMs > 0 ? t.userTimeoutMs : retransmitTimeoutMs(tcpRetries2);
}

/** Human wording of a duration: "350 ms", "2 s", "924.6 s (15 min 25 s)", "never". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return 'never';
  if (Math.abs(ms) < 1000) return `${Math.round(ms)} ms`;
  const totalSec = ms / 1000;
  const exact = Number.isInteger(totalSec) ? `${totalSec} s` : `${totalSec.toFixed(1)} s`;
  if (totalSec < 60) return exact;
  const s = Math.round(totalSec);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const parts = [h > 0 ? `${h} h` : '', m > 0 ? `${m} min` : '', sec > 0 ? `${sec} s` : ''].filter((p) => p !== '');
  return `${exact} (${parts.join(' ')})`;
}
