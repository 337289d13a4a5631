/**
 * Applies TCP_NODELAY, SO_KEEPALIVE + TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT to one
 * socket, then reads every one back with getsockopt. This is the only place socket options are set.
 *
 * Linux semantics we rely on (tcp(7); net/ipv4/tcp_timer.c, tcp_keepalive_timer and tcp_write_timeout):
 * - After TCP_KEEPIDLE seconds without traffic the kernel sends a probe every TCP_KEEPINTVL seconds. Without
 *   TCP_USER_TIMEOUT it gives up after TCP_KEEPCNT unanswered probes (ETIMEDOUT).
 * - With TCP_USER_TIMEOUT set, the probe count is ignored: the connection dies once the user timeout has
 *   elapsed since the last data received and at least one probe was sent (tcp_keepalive_timer checks
 *   `elapsed >= icsk_user_timeout && probes_out > 0`).
 * - Data written and not acknowledged for TCP_USER_TIMEOUT ms kills the connection (ETIMEDOUT) instead of
 *   the default ~15 min of retransmissions (tcp_retries2).
 * Node 20's socket.setKeepAlive(true, ms) sets SO_KEEPALIVE + TCP_KEEPIDLE (seconds, truncated) and libuv
 * also forces TCP_KEEPINTVL=1 and TCP_KEEPCNT=10, so ours are set after it.
 */
import type { Socket } from 'node:net';
import type { KeepaliveConfig } from '../config/index.js';
import {
  IPPROTO_TCP, SO_KEEPALIVE, SOL_SOCKET, TCP_KEEPCNT, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_NODELAY,
  TCP_USER_TIMEOUT, getIntSockopt, setIntSockopt, socketFd,
} from './native.js';

/**
 * TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT through our own setsockopt binding (native.ts), with the
 * values net-keepalive computed (seconds truncated; ints): net-keepalive's setters leak a native value
 * pointer per call (see setIntSockopt). Like its setters, a socket without an fd is an error.
 */
function setTcpInt(socket: Socket, name: number, value: number): void {
  const fd = socketFd(socket);
  if (fd === undefined) throw new Error('Unable to get socket fd');
  setIntSockopt(fd, IPPROTO_TCP, name, value);
}

/** Bounded set of option names, used as the `option` metric label. */
export const SOCKOPT_NAMES = ['nodelay', 'keepalive', 'keepidle', 'keepintvl', 'keepcnt', 'user_timeout'] as const;
export type SockoptName = (typeof SOCKOPT_NAMES)[number];

/** The values the kernel reports for a socket after we set them. */
export interface EffectiveSockopts {
  readonly noDelay: boolean;
  readonly keepAlive: boolean;
  readonly keepIdleSec: number;
  readonly keepIntvlSec: number;
  readonly keepCnt: number;
  readonly userTimeoutMs: number;
}

export interface SockoptFailure {
  readonly option: SockoptName;
  readonly message: string;
}

export interface ApplyResult {
  /** Undefined when the socket had no fd (already closed) and nothing could be read back. */
  readonly effective: EffectiveSockopts | undefined;
  readonly failures: readonly SockoptFailure[];
}

/** What we expect each option to read back as. */
export function expectedSockopts(ka: KeepaliveConfig): EffectiveSockopts {
  return {
    noDelay: true,
    keepAlive: true,
    keepIdleSec: Math.floor(ka.idleMs / 1000),
    keepIntvlSec: Math.floor(ka.intervalMs / 1000),
    keepCnt: ka.probes,
    userTimeoutMs: ka.userTimeoutMs,
  };
}

function attempt(failures: SockoptFailure[], option: SockoptName, fn: () => unknown): void {
  try {
    if (fn() === false) failures.push({ option, message: 'setter returned false (no fd)' });
  } catch (err) {
    failures.push({ option, message: (err as Error).message });
  }
}

/**
 * Sets every option, reads each back, and reports any that failed or read back differently. Never throws:
 * a failure on one socket is logged and counted by the caller, and the socket keeps serving.
 */
export function applySockopts(socket: Socket, ka: KeepaliveConfig): ApplyResult {
  const failures: SockoptFailure[] = [];
  attempt(failures, 'nodelay', () => socket.setNoDelay(true));
  attempt(failures, 'keepalive', () => socket.setKeepAlive(true, ka.idleMs));
  attempt(failures, 'keepintvl', () => setTcpInt(socket, TCP_KEEPINTVL, Math.trunc(ka.intervalMs / 1000)));
  attempt(failures, 'keepcnt', () => setTcpInt(socket, TCP_KEEPCNT, Math.trunc(ka.probes)));
  attempt(failures, 'user_timeout', () => setTcpInt(socket, TCP_USER_TIMEOUT, Math.trunc(ka.userTimeoutMs)));
  const effective = readSockopts(socket);
  if (effective === undefined) {
    return { effective, failures };
  }
  const want = expectedSockopts(ka);
  const compare: Array<[SockoptName, keyof EffectiveSockopts]> = [
    ['nodelay', 'noDelay'], ['keepalive', 'keepAlive'], ['keepidle', 'keepIdleSec'],
    ['keepintvl', 'keepIntvlSec'], ['keepcnt', 'keepCnt'], ['user_timeout', 'userTimeoutMs'],
  ];
  for (const [option, key] of compare) {
    if (effective[key] !== want[key] && !failures.some((f) => f.option === option)) {
      failures.push({ option, message: `reads back ${String(effective[key])}, wanted ${String(want[key])}` });
    }
  }
  return { effective, failures };
}

/** Reads the six options back from the kernel; undefined if the socket has no fd or a read fails. */
export function readSockopts(socket: Socket): EffectiveSockopts | undefined {
  const fd = socketFd(socket);
  if (fd === undefined) return undefined;
  try {
    return {
      noDelay: getIntSockopt(fd, IPPROTO_TCP, TCP_NODELAY) !== 0,
      keepAlive: getIntSockopt(fd, SOL_SOCKET, SO_KEEPALIVE) !== 0,
      keepIdleSec: getIntSockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE),
      keepIntvlSec: getIntSockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL),
      keepCnt: getIntSockopt(fd, IPPROTO_TCP, TCP_KEEPCNT),
      userTimeoutMs: getIntSockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT),
    };
  } catch {
    // The fd closed between the check and the read; the caller sees "nothing read back".
    return undefined;
  }
}
