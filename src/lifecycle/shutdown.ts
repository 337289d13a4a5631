/**
 * Drain sequence: mark not ready; stop accepting; let open connections finish for up to drainTimeoutMs;
 * reset the rest with local_shutdown; close pools and admin.
 */
import type { Clock } from '../util/clock.js';

export interface Drainable {
  stopAccepting(): Promise<void>;
  whenIdle(): Promise<void>;
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
  parts.markNotReady();
  await Promise.all(parts.listeners.map((l) => l.stopAccepting()));
  let timer: { clear(): void } | undefined;
  const expired = new Promise<'forced'>((resolve) => {
    timer = parts.clock.setTimeout(() => resolve('forced'), parts.drainTimeoutMs);
  });
  const drained = Promise.all(parts.listeners.map((l) => l.whenIdle())).then(() => 'drained' as const);
  const outcome = await Promise.race([drained, expired]);
  timer?.clear();
  // Pools first: every upstream is retired with local_shutdown, and the pipes reset their downstreams with
  // that same reason. Then whatever downstream is left (e.g. still waiting for a connect) is reset.
  await parts.closePools();
  if (outcome === 'forced') for (const l of parts.listeners) l.resetAll('local_shutdown');
  await parts.closeAdmin();
  return outcome;
}
