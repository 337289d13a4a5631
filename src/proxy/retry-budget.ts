/**
 * Per-route retry budget (as Envoy's retry budgets and linkerd's): retries are allowed while they stay under
 * `budgetPercent` of the requests seen in the last 10 s, plus `minPerSec` always, so a dead upstream is not
 * hammered by retries of retries. Pure: the caller passes the clock's `now`.
 */
import type { RetryConfig } from '../config/index.js';

const BUCKETS = 10;
const BUCKET_MS = 1000;

export class RetryBudget {
  private readonly requests = new Array<number>(BUCKETS).fill(0);
  private readonly retries = new Array<number>(BUCKETS).fill(0);
  /** Index (in whole seconds of the clock) of the newest bucket. */
  private current = 0;

  constructor(private readonly config: Pick<RetryConfig, 'budgetPercent' | 'minPerSec'>) {}

  /** Counts one downstream request. */
  noteRequest(now: number): void {
    this.advance(now);
    this.requests[this.current % BUCKETS]!++;
  }

  /** Takes one retry from the budget if there is one; false = budget exhausted. */
  tryTake(now: number): boolean {
    this.advance(now);
    const i = this.current % BUCKETS;
    let requests = 0;
    let retries = 0;
    for (let k = 0; k < BUCKETS; k++) {
      requests += this.requests[k]!;
      retries += this.retries[k]!;
    }
    const isAllowed = this.retries[i]! < this.config.minPerSec || retries < (requests * this.config.budgetPercent) / 100;
    if (isAllowed) this.retries[i]!++;
    return isAllowed;
  }

  private advance(now: number): void {
    const sec = Math.floor(now / BUCKET_MS);
    if (sec <= this.current) return;
    const steps = Math.min(BUCKETS, sec - this.current);
    for (let k = 1; k <= steps; k++) {
      const i = (this.current + k) % BUCKETS;
      this.requests[i] = 0;
      this.retries[i] = 0;
    }
    this.current = sec;
  }
}
