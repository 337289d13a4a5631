/**
 * A manual Clock for tests: time moves only through `advance`, and due timers fire in deadline order.
 * Reads no real time and arms no real timers.
 */
import type { Clock, Timer } from './clock.js';

interface Entry {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
  isCleared: boolean;
}

export class FakeClock implements Clock {
  private t = 0;
  private seq = 0;
  private entries: Entry[] = [];

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const e: Entry = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, isCleared: false };
    this.entries.push(e);
    return {
      clear: () => {
        e.isCleared = true;
      },
    };
  }

  /** Timers armed and neither fired nor cleared. */
  get pendingTimers(): number {
    return this.entries.filter((e) => !e.isCleared).length;
  }

  /** Moves time forward by `ms`, firing every timer that falls due (including ones armed by fired timers). */
  advance(ms: number): void {
    const until = this.t + ms;
    for (;;) {
      const due = this.entries.filter((e) => !e.isCleared && e.at <= until).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (due === undefined) break;
      this.t = due.at;
      due.isCleared = true;
      due.fn();
    }
    this.t = until;
    this.entries = this.entries.filter((e) => !e.isCleared);
  }
}
