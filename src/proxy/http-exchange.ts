/**
 * One downstream HTTP request, proxied to the upstream through one or more attempts. Each attempt holds one
 * pool lease and drives that connection's undici Client with a dispatch handler that writes straight to the
 * downstream response (the cheapest design measured, see README). The exchange decides retries:
 *
 * - Only when nothing of the response has been forwarded yet, the failure is connection-level (the peer
 *   reset, closed, or went silent: RFC 9110 §9.2.2 lets a client retry an idempotent request automatically
 *   when the connection failed before the response), the request is safe to repeat (idempotent method or an
 *   `Idempotency-Key`), its body was fully buffered within retry.maxBodyBytes, attempts remain, and the
 *   route's retry budget allows it. Retries always use a fresh connection, never an idle sibling.
 * - Everything else gets 502 (504 for responseTimeoutMs) with `x-sidecar-error: <reason>`.
 *
 * The listener's sweep (every 100 ms, only over attempts still waiting for a response) may end an attempt
 * early: `abandon('no_ack')` when TCP_INFO proves the peer silent, `timeOut()` for responseTimeoutMs. An
 * abandoned attempt's connection is destroyed at once, so a late response on it can never reach the client:
 * the client gets exactly one response.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PassThrough } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { RouteConfig } from '../config/index.js';
import type { AcquireFailure, CloseReason } from '../errors.js';
import { AcquireError } from '../errors.js';
import type { AcquireOptions, Endpoint, Lease, LeaseRequester, Pool } from '../pool/index.js';
import type { Clock, Timer } from '../util/clock.js';
import { isRetrySafe, requestBodyFraming, requestHeaders, responseHeaders } from './http-headers.js';
import type { RetryBudget } from './retry-budget.js';

/**
 * Safety margin subtracted from the upstream's `Keep-Alive: timeout` hint: we retire an idle connection this
 * long before the upstream would, so a request written at the last moment never crosses the upstream's FIN.
 */
export const KEEPALIVE_HINT_MARGIN_MS = 1000;

/** 103 Early Hints are forwarded only while less than this is queued on the app's socket (back-pressure). */
const EARLY_HINTS_BACKLOG_BYTES = 16 * 1024;

/** 503 when the sidecar cannot serve now (overloaded, shutting down, name not resolvable yet); else 502. */
export function acquireFailureStatus(reason: AcquireFailure): 502 | 503 {
  return reason === 'overflow' || reason === 'shutting_down' || reason === 'resolve_failed' || reason === 'pending_timeout' ? 503 : 502;
}

/** Failures that mean "the connection died before answering", for which a safe request may be retried. */
const RETRYABLE: ReadonlySet<CloseReason> = new Set<CloseReason>([
  'peer_reset', 'peer_closed', 'user_timeout', 'keepalive_timeout', 'no_ack', 'sibling_evicted',
]);

/** Why the sidecar answered a request itself (the x-sidecar-error header and the log). */
export type SidecarErrorReason = CloseReason | AcquireFailure;

/** What the exchange needs from its listener (implemented by HttpListener). */
export interface ExchangeHost {
  readonly route: RouteConfig;
  readonly pool: Pool;
  readonly clock: Clock;
  readonly budget: RetryBudget;
  /** Adds/removes an attempt to/from the sweep set (attempts waiting for response headers). */
  watch(attempt: Attempt): void;
  unwatch(attempt: Attempt): void;
  /** A response was finished (forwarded or generated) with this status. */
  completed(status: number, durationMs: number): void;
  /** The downstream response closed (finished or not): the request is no longer in flight. */
  requestClosed(): void;
  retried(reason: CloseReason): void;
  budgetExhausted(): void;
  failed(reason: SidecarErrorReason, status: number): void;
}

const kExchange = Symbol('exchange');
type ExchangeResponse = ServerResponse & { [kExchange]?: HttpExchange };

/** The one 'close' listener of every proxied response (`this` is the response). */
function onResponseClose(this: ExchangeResponse): void {
  this[kExchange]?.onResponseClosed();
}

/**
 * The 'close' listener of a pipelined request queued behind an earlier response (`this` is the request).
 * Node never emits 'close' on a queued response whose socket closes (only the response attached to the socket
 * gets one); the request does get 'close' (abortIncoming). Without this the request stayed in flight for ever:
 * its upstream attempt ran on and the drain waited for drainTimeoutMs. The request also closes early in a normal
 * exchange (body read), so only a destroyed socket counts.
 */
function onQueuedRequestClose(this: IncomingMessage & { [kExchange]?: HttpExchange }): void {
  if (this.socket?.destroyed === true) this[kExchange]?.onResponseClosed();
}

const FIRST_TRY: AcquireOptions = { isFresh: false };

/** Proxies one request; never throws (every failure becomes a generated response or a reset). */
export function proxyHttpRequest(host: ExchangeHost, req: IncomingMessage, res: ServerResponse): void {
  new HttpExchange(host, req, res).start();
}

/**
 * Callback-driven on purpose: the per-request path allocates no promise (acquire goes through
 * `Pool.checkout`, each attempt reports back through `attemptDone` / `attemptFailed`).
 */
class HttpExchange implements LeaseRequester {
  readonly startedAt: number;
  readonly headers: string[];
  body: Buffer | PassThrough | null = null;
  /** True while a failed attempt may be sent again (safe method, body buffered). */
  isReplayable: boolean;
  isDownstreamGone = false;
  /** onResponseClosed ran (from the response's 'close', or the queued request's: once only). */
  private isClosed = false;
  tries = 0;
  private current: Attempt | undefined;
  /** The endpoint of the last attempt: a retry avoids it when another endpoint is eligible (issue 14). */
  private lastEndpoint: Endpoint | undefined;
  /** Created only when acquire may wait or connect (no idle connection): an AbortController per request is
   * a measurable cost on the fast path. */
  private acquireAbort: AbortController | undefined;

  constructor(
    readonly host: ExchangeHost,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
  ) {
    this.startedAt = host.clock.now();
    this.headers = requestHeaders(req.rawHeaders);
    this.isReplayable = isRetrySafe(req.method ?? 'GET', req.rawHeaders);
  }

  start(): void {
    this.host.budget.noteRequest(this.startedAt);
    // 'close' comes once per response, finished or not; `on` spares the `once` wrapper, and one shared
    // function (the exchange rides on the response) spares a closure per request.
    (this.res as ExchangeResponse)[kExchange] = this;
    this.res.on('close', onResponseClose);
    if (this.res.socket === null) {
      // Pipelined behind an unfinished response: see onQueuedRequestClose.
      (this.req as IncomingMessage & { [kExchange]?: HttpExchange })[kExchange] = this;
      this.req.on('close', onQueuedRequestClose);
      // Sent upstream only when its turn comes (Node hands the response the socket once the one before it
      // finished), as nginx and HAProxy serve pipelined requests. Started at once, each queued request took
      // an upstream connection and buffered its response for an app that reads them in order: one app
      // connection pipelining 2000 GETs without reading held all 1024 upstream connections of the route and
      // >1 GiB of 1 MiB responses in flight. Node stops parsing further requests once the response at the
      // head backs up the socket, so what waits here is bounded by one read's worth of request heads.
      // One microtask later: the response before finished in a nextTick, ahead of the microtask in which its
      // attempt releases the upstream connection; starting now would connect a second one instead of reusing it.
      this.res.once('socket', () => {
        queueMicrotask(() => {
          if (!this.isDownstreamGone) this.begin();
        });
      });
      return;
    }
    this.begin();
  }

  /** Reads (or streams) the body and asks for a connection: the response now owns the app's socket. */
  private begin(): void {
    // From the raw head, not `req.headers`: that getter builds a whole object per request on first use.
    const framing = requestBodyFraming(this.req.rawHeaders);
    if (framing === 0) {
      // Nothing to read: node:http dumps the (empty) request stream itself once the response finished.
      this.acquire();
      return;
    }
    const max = this.host.route.http.retry.maxBodyBytes;
    if (!this.isReplayable || (framing !== 'chunked' && framing > max)) {
      // Not replayable anyway: stream it, no buffering beyond the socket's.
      this.isReplayable = false;
      this.body = this.streamBody([]);
      this.acquire();
      return;
    }
    // Buffer for replay, up to maxBodyBytes; beyond that switch to streaming (and give up on retries).
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      size += chunk.length;
      if (size > max) {
        this.req.off('data', onData);
        this.req.off('end', onEnd);
        this.isReplayable = false;
        this.body = this.streamBody(chunks);
        this.acquire();
      }
    };
    const onEnd = (): void => {
      this.body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
      this.acquire();
    };
    this.req.on('data', onData);
    this.req.on('end', onEnd);
  }

  /** The response closed (finished or not). */
  onResponseClosed(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.host.requestClosed();
    if (this.res.writableFinished) return;
    // The app went away before its response was complete: stop the upstream side too.
    this.isDownstreamGone = true;
    this.acquireAbort?.abort();
    this.current?.cancel();
  }

  /**
   * A stream for undici to read the body from. Not `req` itself: undici destroys the body stream on failure,
   * and destroying an IncomingMessage destroys the downstream socket, which would take our 502 with it.
   */
  private streamBody(prefix: Buffer[]): PassThrough {
    const pt = new PassThrough();
    for (const c of prefix) pt.write(c);
    this.req.pipe(pt);
    pt.on('error', () => {
      // undici destroys it with the request's error; that error is handled in the attempt.
    });
    return pt;
  }

  /** Asks the pool for a connection: an idle one for the first try, a fresh one for a retry. */
  private acquire(): void {
    const pool = this.host.pool;
    const isFresh = this.tries > 0;
    // Without a signal a checkout that connects or queues would outlive a downstream that went away. Only a
    // route with idle connections skips it, and only with one endpoint: with several, P2C may pick one
    // without an idle connection and connect or queue for it.
    if (isFresh || pool.idleCount === 0 || pool.endpoints.isMulti) this.acquireAbort ??= new AbortController();
    pool.checkout(this, this.acquireAbort?.signal, isFresh ? { isFresh: true, avoid: this.lastEndpoint } : FIRST_TRY);
  }

  onLease(lease: Lease): void {
    if (this.isDownstreamGone) {
      lease.release();
      return;
    }
    this.tries++;
    this.lastEndpoint = lease.conn.endpoint;
    const attempt = new Attempt(this, lease);
    this.current = attempt;
    attempt.start();
  }

  onLeaseFailed(err: unknown): void {
    if (this.isDownstreamGone) return;
    const reason: AcquireFailure = err instanceof AcquireError ? err.reason : 'connect_error';
    this.replyError(acquireFailureStatus(reason), reason);
  }

  /** The current attempt is over: the response was forwarded, or cut, or the downstream went away. */
  attemptDone(): void {
    this.current = undefined;
  }

  /** The current attempt failed before anything of its response was forwarded: retry or answer ourselves. */
  attemptFailed(reason: CloseReason): void {
    this.current = undefined;
    if (this.isDownstreamGone) return;
    if (reason === 'response_timeout') {
      this.replyError(504, reason);
      return;
    }
    if (RETRYABLE.has(reason) && this.isReplayable && this.tries <= this.host.route.http.retry.attempts) {
      if (this.host.budget.tryTake(this.host.clock.now())) {
        this.host.retried(reason);
        this.acquire();
        return;
      }
      this.host.budgetExhausted();
    }
    this.replyError(502, reason);
  }

  /** Answers the request ourselves (nothing of an upstream response was sent yet). */
  private replyError(status: number, reason: SidecarErrorReason): void {
    this.host.failed(reason, status);
    const res = this.res;
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    // The upstream failed while the app was still sending its body (an upload slower than the upstream's own
    // timeout): the app gets this answer at once and its connection closes, instead of it uploading the rest
    // of a body nobody will read only to keep a connection alive.
    closeAfterUnfinishedBody(this.req, res);
    const body = `${status === 504 ? 'upstream response timeout' : status === 503 ? 'sidecar overloaded or shutting down' : 'upstream connection failed'}: ${reason}\n`;
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'x-sidecar-error': reason });
    res.end(this.req.method === 'HEAD' ? undefined : body);
    this.host.completed(status, this.host.clock.now() - this.startedAt);
  }
}

/**
 * A response goes out while the request body is still arriving: answer with `Connection: close` and close the
 * app connection after it, as nginx does (the rest of the body can no longer be framed for this connection).
 * Meanwhile the rest of the body is read and dropped, never left to hang the connection.
 */
function closeAfterUnfinishedBody(req: IncomingMessage, res: ServerResponse): void {
  if (req.complete) return;
  res.shouldKeepAlive = false;
  res.once('finish', () => {
    // Node closes the connection after this response (shouldKeepAlive false).
    req.unpipe();
    req.resume();
  });
}

/**
 * Passes the upstream's trailer section on (chunked responses; Node sends trailers only with chunked coding,
 * so an HTTP/1.0 app gets none, as RFC 9112 §7.1.2 allows). Before this they were dropped while the `Trailer`
 * field announcing them was forwarded. Hop-by-hop fields and those a trailer must not carry (RFC 9110 §6.5.1:
 * framing, routing, Host) are left out; a field Node refuses drops the whole section, never the response.
 * Returns true when the section says `Connection: close` (see onComplete).
 */
function forwardTrailers(res: ServerResponse, raw: ReadonlyArray<Buffer | string>): boolean {
  // undici 7 hands Buffers (its types say strings).
  const section = responseHeaders(raw.map((x) => (typeof x === 'string' ? Buffer.from(x, 'latin1') : x)));
  const fields = section.headers;
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i < fields.length; i += 2) {
    if (!NOT_IN_TRAILERS.has(fields[i]!.toLowerCase())) pairs.push([fields[i]!, fields[i + 1]!]);
  }
  if (pairs.length > 0) {
    try {
      res.addTrailers(pairs);
    } catch {
      // An invalid name or value (llhttp let it through, Node's writer does not): the trailers are advisory.
    }
  }
  return section.isClosing;
}

/** Fields never forwarded in a trailer section (RFC 9110 §6.5.1), beyond the hop-by-hop ones. */
const NOT_IN_TRAILERS: ReadonlySet<string> = new Set(['content-length', 'content-type', 'content-encoding', 'content-range', 'host', 'trailer', 'set-cookie', 'authorization', 'cache-control', 'expires', 'date', 'location', 'retry-after', 'vary']);

/**
 * One try of an exchange on one leased connection; also the undici dispatch handler (legacy callback API,
 * which undici 7's Request calls directly, without a wrapper). Settles exactly once.
 */
export class Attempt implements Dispatcher.DispatchHandler {
  /**
   * When the request was handed to the connection (clock ms), or, for a body streamed from the app, when its
   * last byte was written: the sweep measures from here.
   */
  writtenAt: number;
  /**
   * The app is still sending the body (streamed, not buffered): the upstream cannot be expected to answer
   * yet, so responseTimeoutMs ("time to wait for response headers") does not run. Measured from dispatch it
   * cut every upload slower than the bound with a 504 mid-body (Envoy likewise starts its route timeout at
   * the request's end of stream). Node's requestTimeout still bounds the upload as a whole.
   */
  isBodyStreaming: boolean;
  /** The listener's slot for this attempt in its sweep list while watched, else -1 (ExchangeHost.watch). */
  watchIndex = -1;
  private isSettled = false;
  private hasResponseStarted = false;
  private status = 0;
  private informationals = 0;
  private isUpstreamClosing = false;
  private abortDispatch: ((err?: Error) => void) | undefined;
  private resumeUpstream: (() => void) | undefined;

  constructor(
    private readonly ex: HttpExchange,
    readonly lease: Lease,
  ) {
    this.writtenAt = ex.host.clock.now();
    this.isBodyStreaming = ex.body instanceof PassThrough;
  }

  /** undici wrote the whole request (head and body) to the socket. Not in undici's types, called all the same. */
  onRequestSent(): void {
    if (!this.isBodyStreaming) return;
    this.isBodyStreaming = false;
    this.writtenAt = this.ex.host.clock.now();
  }

  /** True when the sweep may retry this attempt early (safe, replayable, no response byte, attempts left). */
  get canRetryEarly(): boolean {
    return this.ex.isReplayable && !this.hasResponseStarted && !this.isSettled && this.ex.tries <= this.ex.host.route.http.retry.attempts;
  }

  start(): void {
    this.ex.host.watch(this);
    const req = this.ex.req;
    const method = req.method ?? 'GET';
    // The connection's HTTP/1 driver counts the request as in flight until requestEnded().
    this.lease.h1.dispatch(
      {
        origin: undefined,
        path: req.url ?? '/',
        method,
        headers: this.ex.headers,
        body: this.ex.body,
        // undici closes the connection after every HEAD (its default, kept on purpose): a server that sends a
        // body anyway would have it parsed as the response to the next request, possibly another app's.
        // No one can tell when such bytes stop coming, so a HEAD's connection is never reused.
        headersTimeout: 0,
        bodyTimeout: 0,
      } as Dispatcher.DispatchOptions,
      this,
    );
  }

  /**
   * Reports a failure to the exchange one microtask later: never from inside undici's or the sweep's callback,
   * so the retry or the generated answer starts once this attempt's teardown is over.
   */
  private fail(reason: CloseReason): void {
    queueMicrotask(() => this.ex.attemptFailed(reason));
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abortDispatch = abort;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (this.isSettled) return false;
    const conn = this.lease.conn;
    const res = this.ex.res;
    conn.noteReceived(this.ex.host.clock.now());
    if (rawHeaders.length / 2 > this.ex.host.route.http.maxHeaderCount) {
      // More fields than we forward: never a silently truncated head. 502, connection not trusted.
      return this.refuseResponse();
    }
    // llhttp takes any three digits; undici hands 0xx on as if informational and then fails an assertion of
    // its own (reason `other`). No status below 100 exists (RFC 9110 §15): the framing is not HTTP.
    if (statusCode < 100) return this.refuseResponse();
    if (statusCode < 200) {
      // 1xx: forward 103 Early Hints (RFC 8297); others (102) carry nothing the app needs. 100 Continue never
      // comes: the sidecar answers Expect itself and does not forward it (RFC 9110 §10.1.1). An upstream that
      // sends more than maxInformationalResponses before the final one is not framing a response: 502.
      if (++this.informationals > this.ex.host.route.http.maxInformationalResponses) return this.refuseResponse();
      // Back-pressure: writeEarlyHints writes to the socket unconditionally; an app that does not read gets
      // no more hints once a hint-sized backlog is queued (hints are advisory, RFC 8297 §2).
      const backlog = res.socket?.writableLength ?? 0;
      if (statusCode === 103 && !res.headersSent && backlog < EARLY_HINTS_BACKLOG_BYTES) {
        const links = responseHeaders(rawHeaders).headers.filter((_v, i, a) => i % 2 === 1 && a[i - 1]!.toLowerCase() === 'link');
        if (links.length > 0) res.writeEarlyHints({ link: links });
      }
      return true;
    }
    this.ex.host.unwatch(this);
    this.lease.h1.headReceived();
    const head = responseHeaders(rawHeaders);
    // A body still carrying a coding undici does not decode is never passed on as the content.
    if (head.hasForeignTransferCoding) return this.refuseResponse();
    if (head.keepAliveTimeoutMs !== undefined) conn.idleTimeoutHintMs = head.keepAliveTimeoutMs - KEEPALIVE_HINT_MARGIN_MS;
    this.isUpstreamClosing = head.isClosing;
    this.status = statusCode;
    // A final response before the app's body was all read (an early 413/401, RFC 9110 §15.5.14): undici
    // destroys the upstream connection itself (its request was still being written), so it is never reused.
    if (this.ex.req.method !== 'HEAD') closeAfterUnfinishedBody(this.ex.req, res);
    try {
      res.writeHead(statusCode, statusText || undefined, head.headers);
    } catch {
      // Node refuses a field llhttp accepted (e.g. a control character in a value): nothing was sent yet,
      // so the app gets a 502, and the connection (whose framing we no longer trust) is destroyed.
      this.isSettled = true;
      this.lease.destroy('protocol_error');
      this.fail('protocol_error');
      return false;
    }
    this.hasResponseStarted = true;
    this.resumeUpstream = resume;
    return true;
  }

  /** The response head cannot be forwarded as the upstream sent it: 502 protocol_error, connection destroyed. */
  private refuseResponse(): boolean {
    this.isSettled = true;
    this.ex.host.unwatch(this);
    this.lease.destroy('protocol_error');
    this.abortDispatch?.();
    this.fail('protocol_error');
    return false;
  }

  onData(chunk: Buffer): boolean {
    if (this.isSettled) return false;
    if (this.ex.res.write(chunk)) return true;
    // Backpressure: undici pauses its parser (and so the upstream socket) until the app reads again.
    if (this.resumeUpstream !== undefined) {
      // Closures only while backed up: none is allocated per request on the fast path.
      this.ex.res.once('drain', () => this.onDrained());
      const ms = this.ex.host.route.http.downstreamWriteTimeoutMs;
      if (ms > 0 && this.stallTimer === undefined) this.stallTimer = this.ex.host.clock.setTimeout(() => this.onStalled(), ms);
    }
    return false;
  }

  private stallTimer: Timer | undefined;

  private onDrained(): void {
    this.clearStall();
    this.resumeUpstream?.();
  }

  private clearStall(): void {
    this.stallTimer?.clear();
    this.stallTimer = undefined;
  }

  /**
   * The app has not read for downstreamWriteTimeoutMs: close its connection. Its response's 'close' then
   * cancels this attempt (downstream_closed), so the upstream connection is released from an app that may
   * never read again.
   */
  private onStalled(): void {
    this.stallTimer = undefined;
    if (this.isSettled) return;
    this.ex.host.failed('downstream_closed', this.status);
    this.ex.res.destroy();
  }

  onComplete(trailers?: ReadonlyArray<Buffer | string> | null): void {
    if (this.isSettled) return;
    this.isSettled = true;
    if (this.stallTimer !== undefined) this.clearStall();
    const host = this.ex.host;
    const now = host.clock.now();
    this.lease.conn.noteReceived(now);
    this.lease.h1.requestEnded();
    // llhttp takes a `Connection: close` even from the trailer section: the connection is then done for it.
    if (trailers !== undefined && trailers !== null && trailers.length > 0 && forwardTrailers(this.ex.res, trailers)) this.isUpstreamClosing = true;
    this.ex.res.end();
    host.completed(this.status, now - this.ex.startedAt);
    if (this.isUpstreamClosing) {
      this.lease.destroy('peer_closed');
    } else {
      // undici destroys the socket synchronously right after onComplete when the response did not allow
      // keep-alive; releasing a microtask later lets the pool see that and retire it instead of idling it.
      this.lease.h1.releaseSoon(this.lease);
    }
    this.ex.attemptDone();
  }

  onError(err: Error): void {
    if (this.stallTimer !== undefined) this.clearStall();
    if (this.isSettled) return;
    this.isSettled = true;
    this.ex.host.unwatch(this);
    const conn = this.lease.conn;
    // The connection decides (first cause wins: its socket 'error' may have reported the same death already).
    const reason = conn.decideReason({ kind: 'error', err });
    this.lease.h1.requestEnded();
    this.lease.destroy(reason);
    if (this.hasResponseStarted && this.status === 304 && (err as { code?: unknown }).code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') {
      // A 304 may carry the Content-Length of the representation it validates (RFC 9110 §8.6) and never has a
      // body (RFC 9112 §6.3), but undici 7 compares that field with the 0 bytes read and destroys the socket.
      // The response itself was complete: finish it for the app. The connection is gone (undici destroyed it),
      // so whatever followed on it (stray bytes) can never reach another response.
      const host = this.ex.host;
      this.ex.res.end();
      host.completed(this.status, host.clock.now() - this.ex.startedAt);
      this.ex.attemptDone();
      return;
    }
    if (this.hasResponseStarted) {
      // Part of the response went out: the only honest signal left is to cut the downstream response.
      this.ex.res.destroy();
      this.ex.host.failed(reason, this.status);
      this.ex.attemptDone();
      return;
    }
    this.fail(reason);
  }

  onUpgrade(): void {
    // Plain requests are never dispatched with `upgrade`; undici only calls this for upgrade requests.
    this.onError(new Error('unexpected upgrade'));
  }

  /** Sweep: TCP_INFO proved the peer silent. Retire the connection and let the exchange retry. */
  abandon(reason: 'no_ack'): void {
    if (this.isSettled) return;
    this.isSettled = true;
    this.ex.host.unwatch(this);
    this.lease.destroy(reason);
    this.fail(reason);
  }

  /** Sweep: responseTimeoutMs passed without response headers. The connection is destroyed, never reused. */
  timeOut(): void {
    if (this.isSettled) return;
    this.isSettled = true;
    this.ex.host.unwatch(this);
    this.lease.destroy('response_timeout');
    this.fail('response_timeout');
  }

  /** The downstream went away: close the upstream connection (its response has nowhere to go). */
  cancel(): void {
    if (this.stallTimer !== undefined) this.clearStall();
    if (this.isSettled) return;
    this.isSettled = true;
    this.ex.host.unwatch(this);
    this.lease.destroy('downstream_closed');
    this.abortDispatch?.();
    this.ex.attemptDone();
  }
}
