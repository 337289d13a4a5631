/** Helpers for HTTP chaos tests: open N pooled idle connections, list their local ports. */
import type { Pool } from '../../src/pool/index.js';
import { request } from '../fixtures/http-upstreams.js';
import { waitFor } from './sidecar.js';

/** Local ports of the idle pooled upstream connections. */
export function idlePorts(pool: Pool): number[] {
  return [...pool.connections()].filter((c) => c.state.state === 'idle').map((c) => c.socket.localPort!);
}

/**
 * Leaves exactly `n` idle pooled connections: `n` concurrent requests to a path the upstream answers after a
 * short delay (so each needs its own connection), then waits until all are back in the idle set.
 */
export async function warmIdle(pool: Pool, port: number, n: number, delayedPath = '/delay'): Promise<number[]> {
  const rs = await Promise.all(Array.from({ length: n }, () => request(port, { path: delayedPath })));
  for (const r of rs) if (r.status !== 200) throw new Error(`warm-up request got ${r.status}`);
  try {
    await waitFor(() => pool.stats().idle === n && pool.stats().leased === 0, 5000, `${n} idle connections`);
  } catch (err) {
    throw new Error(`${(err as Error).message} (pool: ${JSON.stringify(pool.stats())})`);
  }
  return idlePorts(pool);
}
