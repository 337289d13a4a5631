/** Asks a running sidecar's admin port for /ready and its loopback debug port for /debug/connections and
 * /debug/endpoints (GET,
 * short timeout, no retries; pages followed up to MAX_PAGES). */
import http from 'node:http';
import type { ConnectionsPage, ConnectionView, EndpointsReport } from '../admin/index.js';
import type { AdminProbe } from './diagnose.js';

const TIMEOUT_MS = 2000;
/** Pages of /debug/connections read at most (1000 sockets each). */
const MAX_PAGES = 10;

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

/** Never throws: a sidecar that does not answer is reported as such. `base` is the admin URL (/ready),
 * `debugBase` the debug URL (/debug/connections, loopback only since #11). */
export async function probeAdmin(base: string, debugBase: string, isExplicit: boolean): Promise<AdminProbe> {
  let root: URL;
  let debugRoot: URL;
  try {
    root = new URL(base);
    debugRoot = new URL(debugBase);
    for (const u of [root, debugRoot]) {
      if (u.protocol !== 'http:') throw new Error(`only http:// is served by the admin and debug ports, got ${u.protocol}`);
    }
  } catch (err) {
    return { url: base, isExplicit, ok: false, error: (err as Error).message };
  }
  try {
    const ready = await get(new URL('/ready', root));
    const connections: ConnectionView[] = [];
    let total = 0;
    let next: string | null = '?limit=1000';
    for (let i = 0; i < MAX_PAGES && next !== null; i++) {
      const conns = await get(new URL(`/debug/connections${next}`, debugRoot));
      if (conns.status !== 200) throw new Error(`${debugBase}/debug/connections answered HTTP ${conns.status}`);
      const page = JSON.parse(conns.body) as Partial<ConnectionsPage>;
      if (!Array.isArray(page.connections) || typeof page.total !== 'number') throw new Error('/debug/connections did not answer a page ({ total, connections })');
      connections.push(...page.connections);
      total = page.total;
      next = page.next ?? null;
    }
    // /debug/endpoints (issue 14); a sidecar from before it answers 404, which is not a problem.
    let endpoints: EndpointsReport['routes'] | undefined;
    const eps = await get(new URL('/debug/endpoints', debugRoot));
    if (eps.status === 200) {
      const report = JSON.parse(eps.body) as Partial<EndpointsReport>;
      if (Array.isArray(report.routes)) endpoints = report.routes;
    }
    return { url: base, isExplicit, ok: true, isReady: ready.status === 200, connections, total, ...(endpoints !== undefined ? { endpoints } : {}) };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { url: base, isExplicit, ok: false, error: e.code ?? e.message };
  }
}
