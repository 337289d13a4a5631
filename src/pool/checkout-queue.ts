/**
 * The two queues of a pool's callers.
 * - `CheckoutBatch`: checkouts of one event-loop iteration that took an idle connection and wait for the one
 *   shared validation macrotask (STYLE §2). Every record's conn is leased and not yet handed out.
 * - `PendingQueue`: callers waiting for a slot when maxConnections are in use (FIFO, at most maxPending), each
 *   with an optional abort signal and a deadline (pendingTimeoutMs, like HAProxy's `timeout queue`).
 */
import type { Clock, Timer } from '../util/clock.js';
import type { UpstreamConn } from './conn.js';

export interface CheckoutRecord<R> {
  readonly conn: UpstreamConn;
  readonly requester: R;
  readonly signal: AbortSignal | undefined;
}

export class CheckoutBatch<R> {
  private records: Array<CheckoutRecord<R>> = [];

  constructor(private readonly validate: (records: ReadonlyArray<CheckoutRecord<R>>) => void) {}

  add(record: CheckoutRecord<R>): void {
    this.records.push(record);
    if (this.records.length === 1) setImmediate(this.run);
  }

  private readonly run = (): void => {
    const records = this.records;
    this.records = [];
    this.validate(records);
  };
}

/** How a pending wait ended. */
export type WaitOutcome = 'woken' | 'aborted' | 'timed_out';

interface Waiter {
  readonly done: (outcome: WaitOutcome) => void;
  timer: Timer | undefined;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: () => void;
}

export class PendingQueue {
  /** Every entry waits for a slot or an idle connection; FIFO. */
  private readonly waiters: Waiter[] = [];

  constructor(private readonly clock: Clock) {}

  get size(): number {
    return this.waiters.length;
  }

  /**
   * Queues a caller for at most `timeoutMs` (0 = no bound); `done` is called exactly once. `isFront`: a woken
   * waiter that lost its slot to a racing checkout goes back to the head of the line, not the tail.
   */
  wait(signal: AbortSignal | undefined, done: (outcome: WaitOutcome) => void, timeoutMs = 0, isFront = false): void {
    if (signal?.aborted === true) {
      done('aborted');
      return;
    }
    const waiter: Waiter = {
      done,
      timer: undefined,
      signal,
      onAbort: () => this.remove(waiter, 'aborted'),
    };
    if (timeoutMs > 0) waiter.timer = this.clock.setTimeout(() => this.remove(waiter, 'timed_out'), timeoutMs);
    signal?.addEventListener('abort', waiter.onAbort, { once: true });
    if (isFront) this.waiters.unshift(waiter);
    else this.waiters.push(waiter);
  }

  /** Wakes the first waiter, if any: a connection went idle or a slot was freed. */
  wakeOne(): void {
    const w = this.waiters.shift();
    if (w !== undefined) this.settle(w, 'woken');
  }

  wakeAll(): void {
    while (this.waiters.length > 0) this.wakeOne();
  }

  private remove(waiter: Waiter, outcome: WaitOutcome): void {
    const i = this.waiters.indexOf(waiter);
    if (i < 0) return;
    this.waiters.splice(i, 1);
    this.settle(waiter, outcome);
  }

  private settle(w: Waiter, outcome: WaitOutcome): void {
    w.timer?.clear();
    w.signal?.removeEventListener('abort', w.onAbort);
    w.done(outcome);
  }
}
