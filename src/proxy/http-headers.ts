/**
 * Header rewriting for the HTTP proxy: hop-by-hop fields are removed in both directions (RFC 9110 §7.6.1:
 * Connection, the fields it names, Proxy-Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade), Host is
 * kept as the app sent it, and framing is redone by each side (Node's server downstream, undici upstream).
 * Pure functions over flat [name, value, ...] arrays; no sockets.
 */

/** RFC 9110 §7.6.1 hop-by-hop fields, plus Proxy-Connection (a common non-standard alias). */
const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection', 'proxy-connection', 'keep-alive', 'te', 'transfer-encoding', 'upgrade',
  // Expect is answered by the sidecar itself (see requestHeaders) and must not reach undici, which refuses it.
  'expect',
]);

/** Methods whose retry is safe (RFC 9110 §9.2.2 idempotent methods). */
const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** True when a failed request may be sent again: an idempotent method or an `Idempotency-Key` header. */
export function isRetrySafe(method: string, rawHeaders: readonly string[]): boolean {
  if (IDEMPOTENT.has(method)) return true;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.length === 15 && rawHeaders[i]!.toLowerCase() === 'idempotency-key') return true;
  }
  return false;
}

/** Field names listed in Connection header values (RFC 9110 §7.6.1: these are hop-by-hop too). */
function connectionListed(names: readonly string[], values: readonly string[]): Set<string> | undefined {
  let listed: Set<string> | undefined;
  for (let i = 0; i < names.length; i++) {
    if (names[i] !== 'connection') continue;
    for (const token of values[i]!.split(',')) {
      const t = token.trim().toLowerCase();
      if (t.length > 0) (listed ??= new Set()).add(t);
    }
  }
  return listed;
}

/**
 * Filters a flat raw header array (as Node's `req.rawHeaders`) down to the end-to-end fields, keeping
 * their case and order. Host stays: the upstream sees the authority the app asked for.
 */
export function requestHeaders(raw: readonly string[]): string[] {
  const names: string[] = [];
  const values: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    names.push(raw[i]!.toLowerCase());
    values.push(raw[i + 1]!);
  }
  const listed = connectionListed(names, values);
  const out: string[] = [];
  for (let i = 0; i < names.length; i++) {
    const n = names[i]!;
    if (HOP_BY_HOP.has(n) || listed?.has(n) === true) continue;
    out.push(raw[2 * i]!, values[i]!);
  }
  return out;
}

export interface ResponseHead {
  /** End-to-end fields for the downstream response, flat [name, value, ...]. */
  readonly headers: string[];
  /** The upstream's `Keep-Alive: timeout=N` hint in ms, if it sent one. */
  readonly keepAliveTimeoutMs: number | undefined;
  /** The upstream announced it will close (`Connection: close`). */
  readonly isClosing: boolean;
}

/** Filters undici's raw response headers (Buffers) for the downstream and reads the keep-alive hints. */
export function responseHeaders(raw: readonly Buffer[]): ResponseHead {
  const names: string[] = [];
  const values: string[] = [];
  let keepAliveTimeoutMs: number | undefined;
  let isClosing = false;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!.toString('latin1').toLowerCase();
    const v = raw[i + 1]!.toString('latin1');
    names.push(n);
    values.push(v);
    if (n === 'keep-alive') {
      const m = /(?:^|[,;\s])timeout\s*=\s*(\d+)/i.exec(v);
      if (m !== null) keepAliveTimeoutMs = Number(m[1]) * 1000;
    } else if (n === 'connection' && /(?:^|,)\s*close\s*(?:,|$)/i.test(v)) {
      isClosing = true;
    }
  }
  const listed = connectionListed(names, values);
  const headers: string[] = [];
  for (let i = 0; i < names.length; i++) {
    const n = names[i]!;
    if (HOP_BY_HOP.has(n) || listed?.has(n) === true) continue;
    headers.push(raw[2 * i]!.toString('latin1'), values[i]!);
  }
  return { headers, keepAliveTimeoutMs, isClosing };
}

/** The Upgrade tokens a request asks for, lower-case (RFC 9110 §7.8). */
export function upgradeTokens(value: string | undefined): string[] {
  if (value === undefined) return [];
  return value.split(',').map((t) => t.trim().toLowerCase().split('/')[0]!).filter((t) => t.length > 0);
}
