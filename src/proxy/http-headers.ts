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

/** Indexed by name length: 1 where some HOP_BY_HOP name has that length (only those names are looked up). */
const MAY_BE_HOP_BY_HOP: Uint8Array = (() => {
  const a = new Uint8Array(64);
  for (const n of HOP_BY_HOP) a[n.length] = 1;
  return a;
})();

/**
 * Fields a Connection header may never remove (RFC 9110 §7.6.1 lets a sender name only hop-by-hop fields):
 * Host is end-to-end (RFC 9112 §3.2), and the framing fields Content-Length / Transfer-Encoding are redone by
 * each side anyway; naming them must not change what the upstream sees.
 */
const NEVER_LISTED: ReadonlySet<string> = new Set(['host', 'content-length', 'transfer-encoding']);

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

/**
 * Adds the field names listed in one Connection header value (RFC 9110 §7.6.1: hop-by-hop too). Names that are
 * hop-by-hop anyway (`keep-alive` above all, which nearly every Connection header carries) are removed in the
 * first pass already, so they are not added: the second pass then runs only when a Connection header names
 * another field, which is rare.
 */
function addListed(listed: Set<string> | undefined, value: string): Set<string> | undefined {
  if (value.length === 10 && value.toLowerCase() === 'keep-alive') return listed;
  let out = listed;
  for (const token of value.split(',')) {
    const t = token.trim().toLowerCase();
    if (t.length > 0 && !HOP_BY_HOP.has(t) && !NEVER_LISTED.has(t)) (out ??= new Set<string>()).add(t);
  }
  return out;
}

/** The last Keep-Alive value parsed and its timeout: an upstream sends the same value on every response. */
let lastKeepAlive = '';
let lastKeepAliveMs: number | undefined;

function keepAliveTimeoutMs(value: string): number | undefined {
  if (value !== lastKeepAlive) {
    const m = /(?:^|[,;\s])timeout\s*=\s*(\d+)/i.exec(value);
    lastKeepAlive = value;
    lastKeepAliveMs = m !== null ? Number(m[1]) * 1000 : undefined;
  }
  return lastKeepAliveMs;
}

/**
 * Filters a flat raw header array (as Node's `req.rawHeaders`) down to the end-to-end fields, keeping
 * their case and order. Host stays: the upstream sees the authority the app asked for. One pass, plus a
 * second only when a Connection header names extra fields (rare): this runs on every request.
 */
export function requestHeaders(raw: readonly string[]): string[] {
  const out: string[] = [];
  let listed: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    // Only names as long as a hop-by-hop one are lower-cased and looked up: most fields skip both.
    if (MAY_BE_HOP_BY_HOP[name.length] === 1) {
      const lower = name.toLowerCase();
      if (HOP_BY_HOP.has(lower)) {
        if (lower === 'connection') listed = addListed(listed, raw[i + 1]!);
        continue;
      }
    }
    out.push(name, raw[i + 1]!);
  }
  if (listed === undefined) return out;
  const kept: string[] = [];
  for (let i = 0; i < out.length; i += 2) {
    if (!listed.has(out[i]!.toLowerCase())) kept.push(out[i]!, out[i + 1]!);
  }
  return kept;
}

/**
 * The request body's framing from a raw head (Node's parser has already refused CL+TE and differing duplicate
 * Content-Length): 'chunked' when any Transfer-Encoding is present, else the Content-Length (0 when absent:
 * no body). Reads `rawHeaders` because `req.headers` builds an object per request on first use.
 */
export function requestBodyFraming(raw: readonly string[]): number | 'chunked' {
  let length = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') return 'chunked';
    if (name.length === 14 && name.toLowerCase() === 'content-length') length = Number(raw[i + 1]);
  }
  return length;
}

export interface ResponseHead {
  /** End-to-end fields for the downstream response, flat [name, value, ...]. */
  readonly headers: string[];
  /** The upstream's `Keep-Alive: timeout=N` hint in ms, if it sent one. */
  readonly keepAliveTimeoutMs: number | undefined;
  /** The upstream announced it will close (`Connection: close`). */
  readonly isClosing: boolean;
  /**
   * Transfer-Encoding names a coding other than one `chunked` (gzip, chunked; chunked twice; gzip alone).
   * undici decodes only chunked, so the body it hands over would still carry the other coding, and Node
   * re-frames it as plain content with no field saying so: the app would read coded bytes as the content.
   * RFC 9112 §6.1 forbids applying chunked twice; HAProxy refuses both. The exchange answers 502.
   */
  readonly hasForeignTransferCoding: boolean;
}

/** Buffer's own latin1 decoder (what toString('latin1') ends in, minus its argument handling); untyped in @types/node. */
interface LatinSlicer extends Buffer {
  latin1Slice(start: number, end: number): string;
}

/** Filters undici's raw response headers (Buffers) for the downstream and reads the keep-alive hints. */
export function responseHeaders(raw: readonly Buffer[]): ResponseHead {
  const out: string[] = [];
  let hintMs: number | undefined;
  let isClosing = false;
  let transferCodings = 0;
  let listed: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const nameBuf = raw[i]!;
    const name = (nameBuf as LatinSlicer).latin1Slice(0, nameBuf.length);
    const valueBuf = raw[i + 1]!;
    const value = (valueBuf as LatinSlicer).latin1Slice(0, valueBuf.length);
    if (MAY_BE_HOP_BY_HOP[name.length] !== 1) {
      out.push(name, value);
      continue;
    }
    const lower = name.toLowerCase();
    if (!HOP_BY_HOP.has(lower)) {
      out.push(name, value);
    } else if (lower === 'transfer-encoding') {
      // One field whose value is exactly `chunked` counts 1; anything else (another coding, a list, a
      // second field) pushes the count past 1.
      transferCodings += value.trim().toLowerCase() === 'chunked' ? 1 : 2;
    } else if (lower === 'keep-alive') {
      hintMs = keepAliveTimeoutMs(value) ?? hintMs;
    } else if (lower === 'connection') {
      if (value.length !== 10 || value.toLowerCase() !== 'keep-alive') {
        if (/(?:^|,)\s*close\s*(?:,|$)/i.test(value)) isClosing = true;
        listed = addListed(listed, value);
      }
    }
  }
  const hasForeignTransferCoding = transferCodings > 1;
  if (listed === undefined) return { headers: out, keepAliveTimeoutMs: hintMs, isClosing, hasForeignTransferCoding };
  const kept: string[] = [];
  for (let i = 0; i < out.length; i += 2) {
    if (!listed.has(out[i]!.toLowerCase())) kept.push(out[i]!, out[i + 1]!);
  }
  return { headers: kept, keepAliveTimeoutMs: hintMs, isClosing, hasForeignTransferCoding };
}

/**
 * An absolute-form request-target (`http://host:port/path?q`, RFC 9112 §3.2.2) split into the origin-form
 * path the upstream gets and the authority that replaces the received Host ("MUST ignore the received Host
 * header field ... and instead replace it with the host information of the request-target"). Forwarding the
 * target as sent, next to a Host that names another authority, leaves the upstream to pick one of two hosts
 * (routing, ACL and cache-key confusion). Undefined for anything else that is not origin-form: another
 * scheme, no authority, userinfo (RFC 9110 §4.2.4), a fragment.
 */
export function absoluteToOriginForm(target: string): { path: string; authority: string } | undefined {
  const m = /^https?:\/\/([^/?#@\s]+)([/?][^#\s]*)?$/i.exec(target);
  if (m === null) return undefined;
  const rest = m[2] ?? '/';
  return { path: rest.startsWith('?') ? `/${rest}` : rest, authority: m[1]! };
}

/** The Upgrade tokens a request asks for, lower-case (RFC 9110 §7.8). */
export function upgradeTokens(value: string | undefined): string[] {
  if (value === undefined) return [];
  return value.split(',').map((t) => t.trim().toLowerCase().split('/')[0]!).filter((t) => t.length > 0);
}
