/**
 * Process-wide file-descriptor budget for app connections (issue 11, point 10), so the admin port (/live,
 * /ready, /metrics), logs and DNS always find a free fd. Read once at startup: RLIMIT_NOFILE (soft) from
 * /proc/self/limits and the fds already open (stdio, epoll, listening sockets...). Each admitted app
 * connection is charged two fds: its own and at most one upstream partner (tcp: always one; http: pipelining
 * 1, so at most one leased upstream per app connection); idle pooled upstreams (http keep-alive, tcp
 * spares), which outlive their app connections, are counted as they are (`idleUpstreams`). An app
 * connection is admitted only while
 *   2 * (admitted + 1) + idle upstreams <= RLIMIT_NOFILE - open at startup - RESERVE_FDS,
 * so the process stays RESERVE_FDS below its limit and never reaches EMFILE by accepting app connections.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Kept free for the admin server, its scrapes, log flushes, DNS and the pools' idle connections. */
export const RESERVE_FDS = 64;

/** Soft RLIMIT_NOFILE of this process, or undefined when /proc is not there. */
export function readNofileLimit(limitsText?: string): number | undefined {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return undefined;
    }
  }
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(text);
  if (m === null || m[1] === 'unlimited') return undefined;
  return Number(m[1]);
}

function openFds(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return 0;
  }
}

export class FdBudget {
  private admitted = 0;
  /** App connections admitted at most (Infinity when the limit is unknown). */
  readonly maxAdmitted: number;

  private readonly fdsForApps: number;
  /** Idle pooled upstream connections of every route (set by the composition root once pools exist). */
  idleUpstreams: () => number = () => 0;

  constructor(nofile: number | undefined = readNofileLimit(), openAtStart: number = openFds()) {
    this.fdsForApps = nofile === undefined ? Infinity : Math.max(0, nofile - openAtStart - RESERVE_FDS);
    this.maxAdmitted = Math.floor(this.fdsForApps / 2);
  }

  /** Charges one app connection; false (nothing charged) when that would eat into the reserve. */
  tryAdmit(): boolean {
    // Unknown limit: nothing to check (and no walk over the pools on every accept).
    if (this.fdsForApps !== Infinity && 2 * (this.admitted + 1) + this.idleUpstreams() > this.fdsForApps) return false;
    this.admitted++;
    return true;
  }

  /** Returns the charge of one admitted app connection (on its 'close'). */
  release(): void {
    this.admitted--;
  }

  get admittedCount(): number {
    return this.admitted;
  }
}
