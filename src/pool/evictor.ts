/**
 * Idle and max-age eviction, with lazy timers. A keep-alive connection goes idle once per request; arming two
 * fresh timers on every release and clearing them at the next lease cost ~2-3 µs per request (Node's timer
 * list insertion). So a connection keeps at most one idle and one max-age timer across lease/release cycles,
 * and each re-checks the state when it fires: an idle connection whose idle period is over is retired, one
 * still inside it re-arms for what remains, a leased one drops the timer (the next release arms it again).
 * What is observable: eviction at idleSince + idle timeout, or at maxAgeAt while idle (release retires a
 * leased connection past its max age); the max-age timer is armed only for an idle period that max age ends
 * first. `clear` (on destroy) clears both.
 */
import type { CloseReason } from '../errors.js';
import type { Clock } from '../util/clock.js';
import type { UpstreamConn } from './conn.js';

export class Evictor {
  constructor(
    private readonly clock: Clock,
    /** Configured idle timeout; undefined = only max age. */
    private readonly idleTimeoutMs: number | undefined,
    private readonly evict: (conn: UpstreamConn, reason: CloseReason) => void,
  ) {}

  /** The connection just went idle at `now`. */
  arm(conn: UpstreamConn, now: number): void {
    // The lower of the configured idle timeout and the upstream's Keep-Alive hint (already minus a margin):
    // we retire the socket before the upstream closes it, so a request never races the upstream's FIN.
    const idleMs = Math.min(this.idleTimeoutMs ?? Infinity, conn.idleTimeoutHintMs ?? Infinity);
    conn.idleDeadline = now + idleMs;
    // A max-age timer only when max age comes first in this idle period: otherwise the idle timer retires the
    // connection before it, and the next release decides again. Most idle HTTP connections then hold one
    // timer, not two (a Timeout, its wrapper and closure, often its own timer list: ~0.25 KiB each).
    if (conn.maxAgeAt < conn.idleDeadline) conn.maxAgeTimer ??= this.clock.setTimeout(() => this.onMaxAge(conn), Math.max(0, conn.maxAgeAt - now));
    // A timer already armed to fire before the new deadline is kept (it re-arms for the rest when it fires).
    if (idleMs !== Infinity && conn.idleDeadline < conn.idleTimerAt) {
      conn.idleTimer?.clear();
      this.armIdle(conn, idleMs, now);
    }
  }

  /** Destroyed: clear every timer. */
  clear(conn: UpstreamConn): void {
    conn.idleTimer?.clear();
    conn.idleTimer = undefined;
    conn.idleTimerAt = Infinity;
    conn.maxAgeTimer?.clear();
    conn.maxAgeTimer = undefined;
  }

  private armIdle(conn: UpstreamConn, ms: number, now: number): void {
    conn.idleTimerAt = now + ms;
    conn.idleTimer = this.clock.setTimeout(() => this.onIdle(conn), ms);
  }

  private onIdle(conn: UpstreamConn): void {
    conn.idleTimer = undefined;
    conn.idleTimerAt = Infinity;
    if (conn.state.state !== 'idle') return;
    const now = this.clock.now();
    const leftMs = conn.idleDeadline - now;
    // Under 1 ms left is due: timers have 1 ms granularity, and the old per-period timer fired just as early.
    if (leftMs < 1) this.evict(conn, 'idle_evicted');
    else this.armIdle(conn, leftMs, now);
  }

  private onMaxAge(conn: UpstreamConn): void {
    conn.maxAgeTimer = undefined;
    if (conn.state.state === 'idle') this.evict(conn, 'max_age');
  }
}
