/**
 * The only code that reads errno strings. Pure: error (or event) + a little socket context in, reason out.
 */
import type { AcquireFailure, CloseReason } from '../errors.js';

export interface ClassifyContext {
  /** We wrote bytes to the peer after the last bytes we received from it ("last write newer than last read"). */
  readonly hasDataInFlight: boolean;
  /** TCP_USER_TIMEOUT in force on the socket (0 = none). */
  readonly userTimeoutMs: number;
  /**
   * HTTP/1: no request is outstanding on the connection, so an error undici raised itself (not a kernel errno)
   * means the upstream sent bytes nobody asked for: the framing is lost.
   */
  readonly isUnsolicited?: boolean;
}

/**
 * Maps an error on an established connection to a close reason.
 * ETIMEDOUT comes from the kernel in two ways (tcp(7)): keepalive probes unanswered on an idle connection,
 * or written data unacknowledged for TCP_USER_TIMEOUT. We cannot ask the kernel which after the fact (the fd
 * is gone by the time Node emits 'error'), so we use what we saw: data in flight + a user timeout set means
 * user_timeout; otherwise keepalive_timeout.
 */
export function classifyError(err: unknown, ctx: ClassifyContext): CloseReason {
  const code = errnoOf(err);
  if (code?.startsWith('HPE_') === true || (err instanceof Error && err.name === 'HTTPParserError')) return 'protocol_error';
  // node:http2's own session errors (a bad frame, an HTTP/1 answer to our preface: "Protocol error") reach
  // the socket too (the session destroys it with the same error): the upstream's framing is lost (issue 13).
  if (code?.startsWith('ERR_HTTP2_') === true) return 'protocol_error';
  // (UND_ERR_INFO excepted: undici's "reset" after a response that did not allow keep-alive, see below.)
  if (ctx.isUnsolicited === true && code !== 'UND_ERR_INFO' && code?.startsWith('UND_ERR_') === true) return 'protocol_error';
  switch (code) {
    case 'ETIMEDOUT':
      return ctx.hasDataInFlight && ctx.userTimeoutMs > 0 ? 'user_timeout' : 'keepalive_timeout';
    case 'ECONNRESET':
    case 'EPIPE':
      return 'peer_reset';
    // undici (http mode) destroys the socket with its own errors. UND_ERR_SOCKET is "other side closed" (the
    // upstream sent FIN); UND_ERR_INFO "reset" follows a response that did not allow keep-alive (the upstream
    // sent `Connection: close` or spoke HTTP/1.0, RFC 9112 §9.3): both are the peer ending the connection.
    case 'UND_ERR_SOCKET':
      // undici's own framing guards use this code too: bytes on an idle connection ("bad response": a late
      // HEAD body, bytes past Content-Length), a 100 to a request without Expect, a 101 to one without
      // Upgrade ("bad upgrade"). The upstream answered, but with bytes we cannot frame.
      return UNDICI_FRAMING_MESSAGES.has((err as Error).message) ? 'protocol_error' : 'peer_closed';
    case 'UND_ERR_INFO':
      return 'peer_closed';
    case 'UND_ERR_HEADERS_TIMEOUT':
      return 'response_timeout';
    // The upstream sent bytes that are not valid HTTP/1.1 framing (llhttp), or a body longer/shorter than
    // its Content-Length (RFC 9112 §6.3): the connection's framing is lost.
    // (Every llhttp error code, HPE_*, is handled before this switch.)
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
    case 'UND_ERR_HEADERS_OVERFLOW':
      return 'protocol_error';
    default:
      return 'other';
  }
}

/** undici SocketError messages that mean "the upstream's framing is broken", not "the upstream closed". */
const UNDICI_FRAMING_MESSAGES: ReadonlySet<string> = new Set(['bad response', 'bad upgrade']);

/** Maps a failed connect to an acquire failure. `timedOut` is true when our connect timer fired. */
export function classifyConnectError(err: unknown, timedOut: boolean): AcquireFailure {
  if (timedOut) return 'connect_timeout';
  switch (errnoOf(err)) {
    case 'ECONNREFUSED':
      return 'connect_refused';
    case 'ETIMEDOUT':
      return 'connect_timeout';
    // getaddrinfo(3) failures: the name does not resolve (now or at all). Not a connect failure: no address
    // was ever tried.
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL':
    case 'EAI_NONAME':
    case 'EAI_NODATA':
      return 'resolve_failed';
    default:
      return 'connect_error';
  }
}

/** The errno code of a Node error, or undefined. */
export function errnoOf(err: unknown): string | undefined {
  if (err !== null && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return undefined;
}
