/**
 * One upstream connection: its socket, its state (pool/state.ts) and what we learned about it. Only the pool
 * changes `state`; the proxy updates the traffic fields (lastRecvAt, bytesSent) it alone observes.
 */
import type { Socket } from 'node:net';
import type { CloseReason, SocketSnapshot } from '../errors.js';
import type { EffectiveSockopts } from '../sockopts/index.js';
import type { Timer } from '../util/clock.js';
import type { ConnState } from './state.js';

export class UpstreamConn {
  state: ConnState;
  /** Options as read back from the kernel right after connect. */
  sockopts: EffectiveSockopts | undefined;
  connectedAt: number | undefined;
  /** When the last byte arrived from the upstream (clock ms); the connect time until then. */
  lastRecvAt: number;
  /** Bytes we sent to the upstream, and that count when the last byte arrived: more now = data in flight. */
  bytesSent = 0;
  sentAtLastRecv = 0;
  /** First cause of the close; never overwritten (the first error, timer or end wins). */
  closeReason: CloseReason | undefined;
  closeError: unknown;
  /** We sent FIN first (the downstream ended), so a later upstream FIN is not the peer's initiative. */
  hasLocalEnded = false;
  /** Bytes received while idle (e.g. a server greeting on a warm spare), handed to the next lease first. */
  idleData: Buffer[] = [];
  idleDataBytes = 0;
  /** Jittered deadline after which the connection is not reused. */
  maxAgeAt = Infinity;
  /**
   * Idle and max-age timers, armed lazily and kept across lease/release cycles (see Pool.armIdleTimers): each
   * re-checks the state when it fires. `idleTimerAt` is when the armed idle timer fires (Infinity: none armed),
   * `idleDeadline` when the current idle period ends.
   */
  idleTimer: Timer | undefined;
  idleTimerAt = Infinity;
  idleDeadline = Infinity;
  maxAgeTimer: Timer | undefined;
  /** The remote address actually connected to (after DNS), for sibling eviction and logs. */
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  /** Our local port, kept after close (the socket forgets it), to tie close events to flows in logs and tests. */
  localPort: number | undefined;
  /**
   * http: idle timeout learned from the upstream's `Keep-Alive: timeout=N` hint, already minus a safety
   * margin; the pool uses the lower of this and its configured idle timeout.
   */
  idleTimeoutHintMs: number | undefined;

  constructor(
    readonly id: number,
    readonly route: string,
    readonly socket: Socket,
    readonly openedAt: number,
    forLease: boolean,
  ) {
    this.state = { state: 'connecting', since: openedAt, forLease };
    this.lastRecvAt = openedAt;
  }

  /** Records the close reason unless one is already recorded. */
  recordReason(reason: CloseReason, err?: unknown): void {
    if (this.closeReason === undefined) {
      this.closeReason = reason;
      this.closeError = err;
    }
  }

  /** Called by the proxy for each chunk received from the upstream. */
  noteReceived(now: number): void {
    this.lastRecvAt = now;
    this.sentAtLastRecv = this.bytesSent;
  }

  get hasDataInFlight(): boolean {
    return this.bytesSent > this.sentAtLastRecv;
  }

  snapshot(): SocketSnapshot {
    const s = this.socket;
    return {
      localAddress: s.localAddress,
      localPort: s.localPort,
      remoteAddress: s.remoteAddress ?? this.remoteAddress,
      remotePort: s.remotePort,
      bytesRead: s.bytesRead,
      bytesWritten: s.bytesWritten,
    };
  }
}
