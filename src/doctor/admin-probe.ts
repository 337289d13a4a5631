/** Asks a running sidecar's admin port for /ready and /debug/connections (GET, short timeout, no retries). */
import http from 'node:http';
import type { ConnectionView } from '../admin/index.js';
import type { AdminProbe } from './diagnose.js';

const TIMEOUT_MS = 2000;

function get(url: URL): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: TIMEOUT_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', reject);
  });
}

/** Never throws: a sidecar that does not answer is reported as such. */
export async function probeAdmin(base: string, isExplicit: boolean): Promise<AdminProbe> {
  let root: URL;
  try {
    root = new URL(base);
    if (root.protocol !== 'http:') throw new Error(`only http:// is served by the admin port, got ${root.protocol}`);
  } catch (err) {
    return { url: base, isExplicit, ok: false, error: (err as Error).message };
  }
  const at = (p: string): URL => new URL(p, root);
  try {
    const ready = await get(at('/ready'));
    const conns = await get(at('/debug/connections'));
    if (conns.status !== 200) throw new Error(`/debug/connections answered HTTP ${conns.status}`);
    const parsed: unknown = JSON.parse(conns.body);
    if (!Array.isArray(parsed)) throw new Error('/debug/connections did not answer a JSON array');
    return { url: base, isExplicit, ok: true, isReady: ready.status === 200, connections: parsed as ConnectionView[] };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { url: base, isExplicit, ok: false, error: e.code ?? e.message };
  }
}
