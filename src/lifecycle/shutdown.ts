/**
 * Drain sequence: mark not ready; stop accepting; let open connections finish for up to drainTimeoutMs,
 * counted from the signal (the timer is armed before anything else); reset the rest with local_shutdown;
 * close pools and admin.
 */
import type { Clock } from '../util/clock.js';

export interface Drainable {
  /** Closes the listening socket and starts draining; must not wait for open connections (issue 11). */
  stopAccepting(): Promise<void>;
  whenIdle(): Promise<void>;
  /**
   * Optional, called at the timeout in the same tick as, and just before, the pools close: resets the
   * downstreams of requests still in flight, so they see a reset (not a generated 502) while their
   * upstreams still record local_shutdown (first cause wins in the pool).
   */
  resetInFlight?(reason: 'local_shutdown'): void;
  resetAll(reason: 'local_shutdown'): void;
}

export interface ShutdownParts {
  readonly markNotReady: () => void;
  readonly listeners: readonly Drainable[];
  readonly closePools: () => Promise<void>;
  readonly closeAdmin: () => Promise<void>;
  readonly drainTimeoutMs: number;
  readonly clock: Clock;
}

/** Returns 'drained' when every connection finished in time, 'forced' when some were reset. */
export async function shutdown(parts: ShutdownParts): Promise<'drained' | 'forced'> {
  let timer: { clear(): void } | undefined;
  const expired = new Promise<'forced'>((resolve) => {
    timer = parts.clock.setTimeout(() => resolve('forced'), parts.drainTimeoutMs);
  });
  parts.markNotReady();
  await Promise.all(parts.listeners.map((l) => l.stopAccepting()));
  const drained = Promise.all(parts.listeners.map((l) => l.whenIdle())).then(() => 'drained' as const);
  const outcome = await Promise.race([drained, expired]);
  timer?.clear();
  if (outcome === 'forced') for (const l of parts.listeners) l.resetInFlight?.('local_shutdown');
  // Pools next (synchronously after resetInFlight: no await between them): every upstream is retired with
  // local_shutdown, and the tcp pipes reset their downstreams with that same reason. Then whatever downstream
  // is left (e.g. still waiting for a connect) is reset.
  await parts.closePools();
  if (outcome === 'forced') for (const l of parts.listeners) l.resetAll('local_shutdown');
  await parts.closeAdmin();
  return outcome;
}
