/**
 * The only code that reads real time or arms real timers. Everything else receives a Clock, so pure logic
 * can be tested with a fake one.
 */
export interface Timer {
  /** Stops the timer; idempotent. */
  clear(): void;
}

export interface Clock {
  /** Milliseconds on a monotonic clock (not wall time). */
  now(): number;
  /** Arms an unref'd timer: it never keeps the process alive by itself. */
  setTimeout(fn: () => void, ms: number): Timer;
}

/** Longest delay a Node timer takes as given (2^31-1 ms, ~24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

class RealTimer implements Timer {
  private handle: NodeJS.Timeout | undefined;
  constructor(fn: () => void, ms: number) {
    // setTimeout turns a delay above 2^31-1 ms into 1 ms (TimeoutOverflowWarning): clamp, never spin.
    this.handle = setTimeout(fn, Math.min(ms, MAX_TIMER_MS));
    this.handle.unref();
  }
  clear(): void {
    if (this.handle !== undefined) {
      clearTimeout(this.handle);
      this.handle = undefined;
    }
  }
}

/** The real clock: performance.now() and unref'd setTimeout. */
export const realClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => new RealTimer(fn, ms),
};
