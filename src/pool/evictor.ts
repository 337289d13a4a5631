/**
 * Idle and max-age eviction, with lazy timers. A keep-alive connection goes idle once per request; arming two
 * fresh timers on every release and clearing them at the next lease cost ~2-3 µs per request (Node's timer
 * list insertion). So a connection keeps at most one idle and one max-age timer across lease/release cycles,
 * and each re-checks the state when it fires: an idle connection whose idle period is over is retired, one
 * still inside it re-arms for what remains, a leased one drops the timer (the next release arms it again).
 * What is observable: eviction at idleSince + idle timeout, or at maxAgeAt while idle (release retires a
 * leased connection past its max age); the max-age timer is armed only for an idle period that max age ends
 * first. `clear` (on destroy) clears both.
 *
 * The idle "timers" are entries in one min-heap per pool under one shared timer armed for the earliest entry
 * (Envoy and HAProxy keep idle connections on one timer/queue the same way): an idle pooled connection holds
 * two array slots (~16 bytes) instead of a Timeout, its wrapper and a closure with its context (~0.25 KiB).
 * A connection has at most one live entry, the one whose key equals its `idleTimerAt`; an entry a shorter
 * Keep-Alive hint replaced, or of a destroyed connection, is dropped when it comes up (or when no live entry
 * is left, with the whole heap). The max-age timer stays per connection: it is armed only for an idle period
 * max age ends first.
 */
import type { CloseReason } from '../errors.js';
import type { Clock, Timer } from '../util/clock.js';
import type { UpstreamConn } from './conn.js';

export class Evictor {
  /** Min-heap of idle entries: `keys[i]` is when `conns[i]` is to be checked (parallel arrays: no object per entry). */
  private keys: number[] = [];
  private conns: UpstreamConn[] = [];
  /** Connections with a live entry. At 0 the heap (stale entries only) and the timer are dropped. */
  private armed = 0;
  private timer: Timer | undefined;
  private timerAt = Infinity;

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
    // A max-age timer only when max age comes first in this idle period: otherwise the idle entry retires the
    // connection before it, and the next release decides again.
    if (conn.maxAgeAt < conn.idleDeadline) conn.maxAgeTimer ??= this.clock.setTimeout(() => this.onMaxAge(conn), Math.max(0, conn.maxAgeAt - now));
    // An entry already due before the new deadline is kept (it re-schedules for the rest when it comes up).
    if (idleMs !== Infinity && conn.idleDeadline < conn.idleTimerAt) {
      this.schedule(conn, conn.idleDeadline);
      if (conn.idleDeadline < this.timerAt) this.armTimer(now);
    }
  }

  /** Destroyed: clear every timer. */
  clear(conn: UpstreamConn): void {
    if (conn.idleTimerAt !== Infinity) {
      conn.idleTimerAt = Infinity;
      if (--this.armed === 0) this.drop();
    }
    conn.maxAgeTimer?.clear();
    conn.maxAgeTimer = undefined;
  }

  /** Gives `conn` a (new) live entry at `at`; an older one it had goes stale. */
  private schedule(conn: UpstreamConn, at: number): void {
    if (conn.idleTimerAt === Infinity) this.armed++;
    conn.idleTimerAt = at;
    this.push(at, conn);
  }

  /** (Re)arms the shared timer for the earliest entry. */
  private armTimer(now: number): void {
    this.timer?.clear();
    this.timerAt = this.keys[0] ?? Infinity;
    this.timer = this.timerAt === Infinity ? undefined : this.clock.setTimeout(this.onTimer, Math.max(0, this.timerAt - now));
  }

  private drop(): void {
    this.keys = [];
    this.conns = [];
    this.timer?.clear();
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  /** What each per-connection idle timer did when it fired, for every entry that is due (< 1 ms left). */
  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = this.clock.now();
    while (this.keys.length > 0 && this.keys[0]! < now + 1) {
      const at = this.keys[0]!;
      const conn = this.conns[0]!;
      this.pop();
      if (conn.idleTimerAt !== at) continue; // stale: replaced by an earlier entry, or destroyed
      conn.idleTimerAt = Infinity;
      this.armed--;
      if (conn.state.state !== 'idle') continue; // leased: the next release arms again
      if (conn.idleDeadline - now < 1) this.evict(conn, 'idle_evicted');
      else this.schedule(conn, conn.idleDeadline); // idle again since the entry was made: what remains
    }
    if (this.armed === 0) this.drop();
    else if (this.timer === undefined || this.keys[0]! < this.timerAt) this.armTimer(now);
  };

  private push(key: number, conn: UpstreamConn): void {
    const keys = this.keys;
    const conns = this.conns;
    let i = keys.length;
    keys.push(key);
    conns.push(conn);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (keys[parent]! <= key) break;
      keys[i] = keys[parent]!;
      conns[i] = conns[parent]!;
      i = parent;
    }
    keys[i] = key;
    conns[i] = conn;
  }

  /** Removes the root. */
  private pop(): void {
    const keys = this.keys;
    const conns = this.conns;
    const key = keys.pop()!;
    const conn = conns.pop()!;
    const n = keys.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && keys[child + 1]! < keys[child]!) child++;
      if (keys[child]! >= key) break;
      keys[i] = keys[child]!;
      conns[i] = conns[child]!;
      i = child;
    }
    keys[i] = key;
    conns[i] = conn;
  }

  private onMaxAge(conn: UpstreamConn): void {
    conn.maxAgeTimer = undefined;
    if (conn.state.state === 'idle') this.evict(conn, 'max_age');
  }
}
