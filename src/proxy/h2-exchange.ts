/**
 * One downstream HTTP/2 stream to one upstream stream (issue 13): headers minus the connection-specific
 * fields (RFC 9113 §8.2.2; `te: trailers` kept), body streamed both ways with backpressure, trailers
 * forwarded (gRPC's status lives there), 1xx informational responses (103 Early Hints, 100 Continue) passed
 * on before the final one (at most H2_MAX_INFORMATIONAL), and the rescue rules:
 * - a stream that provably never reached the upstream (held for a PING, refused, above a GOAWAY's
 *   last-stream-id: RFC 9113 §8.7) is replayed once on another session whatever its method;
 * - a stream in an unknown state on a dead session is replayed only when safe: idempotent HTTP method or
 *   Idempotency-Key, or a gRPC method on h2.retry.grpcIdempotentMethods; no response header forwarded yet;
 *   body kept (<= retry.maxBodyBytes); grpc-timeout not passed; attempts and the retry budget left;
 * - anything else: gRPC gets a trailers-only UNAVAILABLE (grpc-status 14) naming the reason, plain h2 a 502
 *   (503 for overflow and the like) with x-sidecar-error; after response headers gRPC gets the same status in
 *   trailers (what a direct client sees when its transport drops), plain h2 an RST_STREAM.
 * A stream-level RST_STREAM from a live upstream session is the upstream's answer and is passed on as is,
 * except PROTOCOL_ERROR before any response header (a malformed response, which node:http2 resets itself):
 * the app gets 502 / grpc-status 14 `protocol_error`.
 */
import http2 from 'node:http2';
import type { ClientHttp2Stream, IncomingHttpHeaders, IncomingHttpStatusHeader, OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { H2Config } from '../config/index.js';
import type { AcquireFailure, CloseReason } from '../errors.js';
import { writeQueueSize } from '../pool/h2-driver.js';
import type { H2Driver, H2Requester } from '../pool/h2-driver.js';
import type { H2Pool } from '../pool/h2-pool.js';
import type { Clock } from '../util/clock.js';
import type { RetryBudget } from './retry-budget.js';

export type H2StreamOutcome = 'ok' | 'rescued' | 'reset' | 'failed';
export type H2ErrorReason = CloseReason | AcquireFailure;

/** What an exchange reports to its listener (which turns it into events). */
export interface H2ExchangeHost {
  readonly h2: H2Config;
  readonly pool: H2Pool;
  readonly clock: Clock;
  readonly budget: RetryBudget;
  /** The path is a gRPC method on h2.retry.grpcIdempotentMethods. */
  isGrpcIdempotent(path: string): boolean;
  /** The stream was placed again (replay or re-queue) because of `reason`. */
  rescued(reason: H2ErrorReason): void;
  /** The downstream stream ended: how, and why when not ok. */
  streamEnded(outcome: H2StreamOutcome, reason: H2ErrorReason | undefined): void;
}

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_PROTOCOL_ERROR, NGHTTP2_REFUSED_STREAM, NGHTTP2_FLAG_END_STREAM } = http2.constants;

/** RFC 9113 §8.2.2 connection-specific fields (and HTTP/1 framing ones), never forwarded in either direction. */
const CONNECTION_SPECIFIC: ReadonlySet<string> = new Set([
  'connection', 'proxy-connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'http2-settings', 'host',
]);

/** RFC 9110 §9.2.2 idempotent methods. */
const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Answered 503 (not 502): nothing is wrong with the upstream, we could not get a slot. */
const UNAVAILABLE_503: ReadonlySet<H2ErrorReason> = new Set<H2ErrorReason>(['overflow', 'shutting_down', 'pending_timeout', 'resolve_failed']);

/**
 * Informational (1xx) responses forwarded per stream before the final one; one more is a broken answer (502
 * protocol_error), as http.maxInformationalResponses' default for HTTP/1 routes. 103 Early Hints and 100
 * Continue go to the app as they come (HEADERS frames: not flow-controlled; this cap and the app session's
 * maxSessionMemory bound what a non-reading app can make us queue).
 */
export const H2_MAX_INFORMATIONAL = 10;

/**
 * 103 Early Hints go to the app only while its connection is not backlogged (the HTTP/1 routes' rule, there
 * EARLY_HINTS_BACKLOG_BYTES of the socket's buffer): an app that does not read gets no more hints (advisory,
 * RFC 8297 §2); 100 Continue is always passed (the app's upload waits for it). node:http2 writes one batch
 * at a time and waits for it, so what piles up is not in the socket: backlogged = the kernel did not take the
 * last batch (bytes left in the socket's write queue: the app's receive buffer and our send buffer are full;
 * measured 6.9 KB left with 4.3 MB unread) or nghttp2 holds this many frames not yet serialized.
 */
const H2_EARLY_HINTS_BACKLOG_FRAMES = 64;

/** Re-queues of a stream held for a session that died before it opened (each costs >= one PING timeout). */
const MAX_REQUEUES = 3;

/**
 * A header block without the connection-specific fields; `te` survives only as "trailers". node:http2's
 * request() and respond() copy the object they get, so a block with nothing to strip (the common case) is
 * passed on as is, and only the rare one is copied (one pass over the names either way).
 */
function forwardable(h: IncomingHttpHeaders): OutgoingHttpHeaders {
  // RFC 9113 §8.3.1: a request may carry Host instead of :authority (HTTP/1 -> h2 translators). Host is
  // connection-specific here, so it becomes the :authority; otherwise node would fill in our upstream origin
  // and virtual-host routing at the upstream would break.
  if (h[':authority'] === undefined && typeof h.host === 'string') return { ...strip(h), ':authority': h.host };
  for (const name in h) {
    if (CONNECTION_SPECIFIC.has(name) || (name === 'te' && h[name] !== 'trailers')) return strip(h);
  }
  return h as OutgoingHttpHeaders;
}

function strip(h: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name of Object.keys(h)) {
    if (CONNECTION_SPECIFIC.has(name)) continue;
    const v = h[name];
    if (name === 'te' && v !== 'trailers') continue;
    out[name] = v;
  }
  return out;
}

/**
 * `ms` as a grpc-timeout value: at most 8 digits (gRPC over HTTP/2 spec), so the smallest unit that fits, as
 * grpc-go's encodeTimeout (a watch stream's "infinite" deadline of days would not fit in milliseconds).
 */
export function encodeGrpcTimeout(ms: number): string {
  const MAX = 99_999_999;
  if (ms <= MAX) return `${ms}m`;
  if (ms / 1000 <= MAX) return `${Math.ceil(ms / 1000)}S`;
  if (ms / 60_000 <= MAX) return `${Math.ceil(ms / 60_000)}M`;
  return `${Math.min(MAX, Math.ceil(ms / 3_600_000))}H`;
}

/** grpc-timeout (gRPC over HTTP/2 spec: 1-8 digits and a unit) in ms, or undefined. */
export function grpcTimeoutMs(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (m === null) return undefined;
  const n = Number(m[1]);
  switch (m[2]) {
    case 'H': return n * 3_600_000;
    case 'M': return n * 60_000;
    case 'S': return n * 1000;
    case 'm': return n;
    case 'u': return n / 1000;
    default: return n / 1_000_000;
  }
}

/** h2.retry.grpcIdempotentMethods as a predicate: exact "/pkg.Service/Method", or "/pkg.Service/*" for any method. */
export function grpcMethodMatcher(methods: readonly string[]): (path: string) => boolean {
  const exact = new Set(methods.filter((m) => !m.endsWith('/*')));
  const services = methods.filter((m) => m.endsWith('/*')).map((m) => m.slice(0, -1));
  return (path) => {
    if (exact.has(path)) return true;
    for (const p of services) if (path.length > p.length && path.startsWith(p) && path.indexOf('/', p.length) < 0) return true;
    return false;
  };
}

/** Starts proxying one downstream stream. */
/** `content-type: application/grpc*` (gRPC over HTTP/2: +proto, +json, ...). */
export function isGrpcRequest(headers: IncomingHttpHeaders): boolean {
  const ct = headers['content-type'];
  return typeof ct === 'string' && ct.startsWith('application/grpc');
}

/** The status fields of a gRPC answer the sidecar makes itself (trailers-only, or trailers after a head). */
export function sidecarGrpcStatus(code: string, message: string, reason: string): OutgoingHttpHeaders {
  return { 'grpc-status': code, 'grpc-message': `sidecar: ${message}`, 'x-sidecar-error': reason };
}

/**
 * Answers the app's stream ourselves, before any response head went out: gRPC trailers-only (HTTP 200,
 * `grpcCode`), plain h2 `status` with a one-line text body. Throws what respond() throws.
 */
export function answerLocally(down: ServerHttp2Stream, isGrpc: boolean, status: number, grpcCode: string, message: string, reason: string): void {
  if (isGrpc) {
    down.respond({ ':status': 200, 'content-type': 'application/grpc', ...sidecarGrpcStatus(grpcCode, message, reason) }, { endStream: true });
    return;
  }
  const body = `sidecar: ${message}\n`;
  down.respond({ ':status': status, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'x-sidecar-error': reason });
  down.end(body);
}

export function proxyH2Stream(host: H2ExchangeHost, down: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
  new H2Exchange(host, down, headers).start();
}

const kExchange = Symbol('h2Exchange');
type ExchangeStream = ClientHttp2Stream & { [kExchange]: H2Exchange };

type DownStream = ServerHttp2Stream & { [kExchange]: H2Exchange };
const RESPOND_END_STREAM = Object.freeze({ endStream: true });
const RESPOND_WAIT_FOR_TRAILERS = Object.freeze({ waitForTrailers: true });

function ignore(): void {}
function downOnData(this: DownStream, chunk: Buffer): void {
  this[kExchange].onDownData(chunk);
}
function downOnEnd(this: DownStream): void {
  this[kExchange].onDownEnd();
}
/**
 * 'close' is a stream's last event: its link to the exchange goes with it. node:http2 drops a closed stream
 * from its session's stream Map, but V8 keeps a Map's replaced tables, with their old entries, alive until the
 * next scavenge (longer once promoted), so a closed stream lingers; unlinked, it holds only itself, not the
 * exchange, the other hop's stream and the header blocks.
 */
function downOnClose(this: DownStream): void {
  const ex = this[kExchange];
  (this as Partial<DownStream>)[kExchange] = undefined;
  ex.onDownClose();
}
function downOnTrailers(this: DownStream, t: IncomingHttpHeaders): void {
  this[kExchange].onDownTrailers(t);
}
function upOnWantTrailers(this: ExchangeStream): void {
  this[kExchange].onUpWantTrailers(this);
}
function downOnWantTrailers(this: DownStream): void {
  this[kExchange].onWantTrailers();
}
function upOnInfo(this: ExchangeStream, h: IncomingHttpHeaders & IncomingHttpStatusHeader): void {
  this[kExchange].onUpInfo(this, h);
}
function upOnResponse(this: ExchangeStream, h: IncomingHttpHeaders & IncomingHttpStatusHeader, flags: number): void {
  this[kExchange].onResponse(this, h, flags);
}
function upOnData(this: ExchangeStream, chunk: Buffer): void {
  this[kExchange].onUpData(this, chunk);
}
function upOnTrailers(this: ExchangeStream, t: IncomingHttpHeaders): void {
  this[kExchange].onUpTrailers(this, t);
}
function upOnEnd(this: ExchangeStream): void {
  this[kExchange].onUpEnd(this);
}
function upOnError(this: ExchangeStream, err: unknown): void {
  this[kExchange].onUpError(this, err);
}
function upOnClose(this: ExchangeStream): void {
  const ex = this[kExchange];
  (this as Partial<ExchangeStream>)[kExchange] = undefined;
  ex.onUpClose(this);
}

class H2Exchange implements H2Requester {
  private readonly upHeaders: OutgoingHttpHeaders;
  private readonly isGrpc: boolean;
  private readonly isSafe: boolean;
  private readonly deadline: number;
  private readonly startedAt: number;
  /** Body chunks kept for a replay while their total stays <= maxBodyBytes. */
  private body: Buffer[] = [];
  private bodyBytes = 0;
  private isBodyKept = true;
  private isDownEnded: boolean;
  private isReadingDown = false;
  private up: ClientHttp2Stream | undefined;
  private driver: H2Driver | undefined;
  private isResponseStarted = false;
  private infos = 0;
  private isUpEnded = false;
  private trailers: OutgoingHttpHeaders | undefined;
  /** The app's request trailers (plain h2 only; kept for a replay like the body). */
  private reqTrailers: OutgoingHttpHeaders | undefined;
  private unsafeReplays = 0;
  private freeReplays = 0;
  private requeues = 0;
  private hasRescued = false;
  private upErr: unknown;
  isGone = false;

  constructor(
    private readonly host: H2ExchangeHost,
    private readonly down: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
  ) {
    this.startedAt = host.clock.now();
    this.upHeaders = forwardable(headers);
    this.isGrpc = isGrpcRequest(headers);
    const method = headers[':method'] ?? 'GET';
    const path = headers[':path'] ?? '/';
    this.isSafe = IDEMPOTENT.has(method) || headers['idempotency-key'] !== undefined || (this.isGrpc && host.isGrpcIdempotent(path));
    const timeoutMs = grpcTimeoutMs(headers['grpc-timeout']);
    this.deadline = timeoutMs !== undefined ? this.startedAt + timeoutMs : Infinity;
    this.isDownEnded = down.endAfterHeaders;
    host.budget.noteRequest(this.startedAt);
  }

  start(): void {
    const down = this.down;
    // The app reset or its session died: 'close' handles it.
    (down as DownStream)[kExchange] = this;
    down.on('error', ignore);
    down.on('close', downOnClose);
    // node:http2 emits 'end' of an empty body by itself (read(0) after END_STREAM), listener or not.
    if (!this.isDownEnded) {
      down.on('end', downOnEnd);
      // Request trailers (RFC 9113 §8.1) are forwarded for plain h2; a gRPC request never has any (its
      // request ends with END_STREAM on the last DATA), so gRPC streams keep the plain end.
      if (!this.isGrpc) down.on('trailers', downOnTrailers);
    }
    this.host.pool.checkout(this);
  }

  // H2Requester --------------------------------------------------------------------------------------------

  onSession(driver: H2Driver): void {
    if (this.isGone) return;
    this.driver = driver;
    const now = this.host.clock.now();
    if (this.unsafeReplays + this.freeReplays > 0 && this.deadline !== Infinity) {
      // The upstream sees the time left, not the app's original budget.
      this.upHeaders['grpc-timeout'] = encodeGrpcTimeout(Math.max(1, Math.floor(this.deadline - now)));
    }
    const isBodyless = this.isDownEnded && this.bodyBytes === 0;
    let up: ClientHttp2Stream;
    try {
      up = driver.request(this.upHeaders, isBodyless, !isBodyless && !this.isGrpc);
    } catch {
      // Refused by node:http2 before anything was sent. A closing or closed session: the stream never left
      // us (replay). A live session: the request itself cannot be sent as HTTP/2 (a CONNECT, a bad field),
      // which is the request's problem, never the session's.
      if (driver.session.closed || driver.session.destroyed) this.rescueOrFail(driver.requestRefused(), true);
      else this.fail('protocol_error');
      return;
    }
    this.up = up;
    // One set of module-level handlers for every stream (no closures per stream): `this` is the stream,
    // its exchange hangs off it.
    (up as ExchangeStream)[kExchange] = this;
    up.on('headers', upOnInfo);
    up.on('response', upOnResponse);
    up.on('data', upOnData);
    up.on('trailers', upOnTrailers);
    up.on('end', upOnEnd);
    up.on('error', upOnError);
    up.on('close', upOnClose);
    if (isBodyless) return;
    if (!this.isGrpc) up.on('wantTrailers', upOnWantTrailers);
    for (const chunk of this.body) up.write(chunk);
    if (this.isDownEnded) {
      up.end();
      return;
    }
    if (!this.isReadingDown) {
      this.isReadingDown = true;
      this.down.on('data', downOnData);
    } else {
      this.down.resume();
    }
  }

  onSessionFailed(err: unknown): void {
    if (this.isGone) return;
    const reason = (err as { reason?: H2ErrorReason }).reason ?? 'connect_error';
    this.fail(reason);
  }

  onRequeued(reason: CloseReason): void {
    if (++this.requeues > MAX_REQUEUES) {
      // Placed again too often: the pool still hands us a slot, onSession then gives up.
      this.isGone = true;
      this.fail(reason);
      return;
    }
    this.hasRescued = true;
    this.host.rescued(reason);
  }

  // Downstream --------------------------------------------------------------------------------------------

  onDownData(chunk: Buffer): void {
    if (this.isBodyKept) {
      this.bodyBytes += chunk.length;
      if (this.bodyBytes <= this.host.h2.retry.maxBodyBytes) this.body.push(chunk);
      else {
        this.isBodyKept = false;
        this.body = [];
      }
    }
    const up = this.up;
    if (up === undefined || up.destroyed) {
      // Between attempts: the chunk is kept above (or the stream cannot be replayed any more).
      this.down.pause();
      return;
    }
    if (!up.write(chunk)) {
      this.down.pause();
      up.once('drain', () => {
        if (this.up === up) this.down.resume();
      });
    }
  }


  onDownTrailers(t: IncomingHttpHeaders): void {
    this.reqTrailers = forwardable(t);
  }

  /** The upstream stream sent its last DATA: end it with the app's trailers (none: an empty END_STREAM DATA). */
  onUpWantTrailers(up: ClientHttp2Stream): void {
    if (up.destroyed) return;
    try {
      up.sendTrailers(this.reqTrailers ?? {});
    } catch {
      // A field node:http2 refuses in trailers (a pseudo-header): end the request without them.
      if (!up.destroyed) up.sendTrailers({});
    }
  }

  onDownEnd(): void {
    this.isDownEnded = true;
    const up = this.up;
    if (up !== undefined && !up.destroyed) up.end();
  }


  onDownClose(): void {
    const wasGone = this.isGone;
    this.isGone = true;
    const up = this.up;
    if (up !== undefined && !up.destroyed && !(this.isUpEnded && up.writableEnded)) this.cancelUp(up);
    // Still queued for a slot (no upstream stream yet): out of the pool's bounded queue now, not at its timeout.
    else if (up === undefined) this.host.pool.cancel(this);
    if (wasGone) return;
    // A stream that completed (the upstream's end reached the app) is ok; anything else was cut by the app.
    if (this.isUpEnded && this.down.rstCode === http2.constants.NGHTTP2_NO_ERROR) this.host.streamEnded(this.hasRescued ? 'rescued' : 'ok', undefined);
    else this.host.streamEnded('reset', 'downstream_closed');
  }


  onWantTrailers(): void {
    try {
      if (!this.down.destroyed) this.down.sendTrailers(this.trailers ?? {});
    } catch {
      // A trailer field node:http2 refuses (or the stream just closed): end the stream without it.
      this.down.close(NGHTTP2_INTERNAL_ERROR);
    }
  }

  // Upstream ----------------------------------------------------------------------------------------------

  onUpData(up: ClientHttp2Stream, chunk: Buffer): void {
    if (this.up === up && !this.down.write(chunk)) {
      up.pause();
      this.down.once('drain', () => up.resume());
    }
  }

  onUpTrailers(up: ClientHttp2Stream, t: IncomingHttpHeaders): void {
    if (this.up === up) this.trailers = forwardable(t);
  }

  onUpEnd(up: ClientHttp2Stream): void {
    if (this.up !== up) return;
    this.isUpEnded = true;
    if (this.isResponseStarted && !this.down.destroyed && !this.down.writableEnded) this.down.end();
  }

  onUpError(up: ClientHttp2Stream, err: unknown): void {
    // 'close' decides (rstCode, the session's close reason); the error matters if the session died with it.
    if (this.up === up) this.upErr = err;
  }

  /**
   * A 1xx block from the upstream (node:http2's 'headers' before 'response'; a 101 is malformed in HTTP/2,
   * RFC 9113 §8.6, and nghttp2 resets it PROTOCOL_ERROR itself): forwarded as is.
   */
  onUpInfo(up: ClientHttp2Stream, h: IncomingHttpHeaders & IncomingHttpStatusHeader): void {
    if (this.up !== up || this.isGone || this.isResponseStarted || this.down.destroyed) return;
    const status = Number(h[':status']);
    if (!(status >= 100 && status < 200)) return;
    if (++this.infos > H2_MAX_INFORMATIONAL) {
      this.fail('protocol_error');
      return;
    }
    if (status !== 100 && isAppBacklogged(this.down)) return;
    try {
      this.down.additionalHeaders(forwardable(h));
    } catch {
      // A field node:http2 will not send to the app, or its stream just closed: this hint is dropped.
    }
  }

  onResponse(up: ClientHttp2Stream, h: IncomingHttpHeaders & IncomingHttpStatusHeader, flags: number): void {
    if (this.up !== up || this.isGone || this.down.destroyed) return;
    this.isResponseStarted = true;
    const isEnd = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
    try {
      if (isEnd) {
        this.down.respond(forwardable(h), RESPOND_END_STREAM);
        this.isUpEnded = true;
      } else {
        this.down.respond(forwardable(h), RESPOND_WAIT_FOR_TRAILERS);
        this.down.on('wantTrailers', downOnWantTrailers);
      }
    } catch {
      // The upstream sent a header node:http2 will not forward (e.g. a bad :status): a broken answer.
      this.down.close(NGHTTP2_INTERNAL_ERROR);
      this.cancelUp(up);
      this.isGone = true;
      this.host.streamEnded('reset', 'protocol_error');
    }
  }

  onUpClose(up: ClientHttp2Stream): void {
    if (this.up !== up) return;
    this.up = undefined;
    if (this.isGone) return;
    if (this.isUpEnded && up.rstCode === http2.constants.NGHTTP2_NO_ERROR) {
      // Complete; the downstream's close reports the outcome. A complete response before the request ended
      // (an early 413, a trailers-only gRPC error on a client stream): RFC 9113 §8.1 ends the app's stream with
      // RST_STREAM(NO_ERROR) (node sends it after our END_STREAM), else the app's half stays open for ever.
      if (!this.isDownEnded && !this.down.destroyed) this.closeDownUnread();
      return;
    }
    const driver = this.driver;
    const conn = driver?.conn;
    const lastId = driver?.goawayLastStreamId;
    const isNeverProcessed =
      up.rstCode === NGHTTP2_REFUSED_STREAM || up.id === undefined || (lastId !== undefined && up.id > lastId) || driver?.isNeverWritten(up) === true;
    // The stream can close before its dead session reports: the session's error (on the stream) decides then.
    const reason = driver !== undefined && driver.session.destroyed && conn?.closeReason === undefined ? driver.sessionFailed(this.upErr) : conn?.closeReason;
    this.upErr = undefined;
    if (reason === undefined && !isNeverProcessed && !this.isResponseStarted && up.rstCode === NGHTTP2_PROTOCOL_ERROR) {
      // No response head, PROTOCOL_ERROR: node:http2 found the response malformed (RFC 9113 §8.2.1: an
      // upper-case or connection-specific field name, a bad pseudo-header...) and reset the stream itself, or the
      // upstream said its own framing broke. Either way no well-formed answer came: a proxy must not forward a
      // malformed response (§8.1.1), so the app gets ours (not replayed: the upstream had the request).
      this.fail('protocol_error');
      return;
    }
    if (reason === undefined && !isNeverProcessed) {
      // The upstream reset this one stream on a live session: its answer, passed on as is.
      this.isGone = true;
      if (!this.down.destroyed) this.down.close(up.rstCode !== 0 ? up.rstCode : NGHTTP2_INTERNAL_ERROR);
      this.host.streamEnded('reset', 'peer_reset');
      return;
    }
    // A dead session's decided reason; a stream refused by a live one is labelled by how it was refused.
    this.rescueOrFail(reason !== undefined ? reason : (driver?.refusalReason ?? 'peer_reset'), isNeverProcessed);
  }

  /** The attempt failed with `reason`: replay it if the rules allow, else answer the app. */
  private rescueOrFail(reason: CloseReason, isNeverProcessed: boolean): void {
    const now = this.host.clock.now();
    const retry = this.host.h2.retry;
    const canReplay =
      !this.isResponseStarted &&
      this.isBodyKept &&
      now < this.deadline &&
      (isNeverProcessed
        ? this.freeReplays < 1
        : this.isSafe && this.unsafeReplays < retry.attempts && this.host.budget.tryTake(now));
    if (!canReplay) {
      this.fail(reason);
      return;
    }
    if (isNeverProcessed) this.freeReplays++;
    else this.unsafeReplays++;
    this.hasRescued = true;
    this.host.rescued(reason);
    if (this.isReadingDown) this.down.pause();
    // Another endpoint than the one that just failed, when there is one.
    this.host.pool.checkout(this, this.driver?.conn.endpoint);
  }

  /** RST_STREAM CANCEL to the upstream stream, counted against its session's reset budget (H2Driver.noteReset). */
  private cancelUp(up: ClientHttp2Stream): void {
    if (up.destroyed || up.closed) return;
    up.close(NGHTTP2_CANCEL);
    if (this.up === up) this.driver?.noteReset();
  }

  /** Answers the app ourselves (or resets its stream once response headers went out). */
  private fail(reason: H2ErrorReason): void {
    this.isGone = true;
    const down = this.down;
    if (this.up !== undefined) this.cancelUp(this.up);
    if (down.destroyed || down.closed) {
      this.host.streamEnded('reset', reason);
      return;
    }
    if (this.isGrpc && this.isResponseStarted && !down.writableEnded) {
      // The upstream's transport died mid-response. Connected directly, a gRPC client would see its transport
      // drop: UNAVAILABLE (grpc-js "Connection dropped", C-core "Socket closed", grpc-go "transport is
      // closing"), which retry policies and watch-stream reconnect logic act on. No RST_STREAM code says that
      // (gRPC's HTTP/2 mapping: INTERNAL_ERROR -> INTERNAL; REFUSED_STREAM -> UNAVAILABLE would claim the call
      // was never processed), so the response head already sent is ended with trailers (status 14) instead,
      // after whatever DATA was forwarded (onWantTrailers sends them).
      this.trailers ??= sidecarGrpcStatus('14', reason, reason);
      down.end();
      this.host.streamEnded('failed', reason);
      if (!this.isDownEnded && !down.destroyed) this.closeDownUnread();
      return;
    }
    if (this.isResponseStarted || down.headersSent) {
      down.close(NGHTTP2_INTERNAL_ERROR);
      this.host.streamEnded('reset', reason);
      return;
    }
    try {
      answerLocally(down, this.isGrpc, UNAVAILABLE_503.has(reason) ? 503 : 502, '14', reason, reason);
      this.host.streamEnded('failed', reason);
    } catch {
      down.close(NGHTTP2_INTERNAL_ERROR);
      this.host.streamEnded('reset', reason);
    }
    // Unread request body: the stream is answered; RST_STREAM(NO_ERROR) ends the app's half (RFC 9113 §8.1),
    // instead of reading and dropping an upload for ever.
    if (!this.isDownEnded && !down.destroyed) this.closeDownUnread();
  }

  /**
   * Ends the app's stream with RST_STREAM(NO_ERROR) once it is answered, dropping the rest of its upload.
   * The stream may be paused with request data buffered (backpressure from the upstream): node:http2 never
   * destroys a closed stream whose readable side still holds data, so it would stay in flight for ever and
   * keep the app's session (and socket) open. Unhooked from the exchange and flowing, the data is dropped.
   */
  private closeDownUnread(): void {
    const down = this.down;
    down.off('data', downOnData);
    down.resume();
    down.close(http2.constants.NGHTTP2_NO_ERROR);
  }
}

/** The app's connection has a hint-sized backlog (H2_EARLY_HINTS_BACKLOG_*): it is not reading. */
function isAppBacklogged(down: ServerHttp2Stream): boolean {
  const session = down.session;
  if (session === undefined) return true;
  if ((session.state.outboundQueueSize ?? 0) >= H2_EARLY_HINTS_BACKLOG_FRAMES) return true;
  const socket = session.socket as unknown as Parameters<typeof writeQueueSize>[0] | null;
  return socket !== null && writeQueueSize(socket) > 0;
}
