/**
 * HTTP/2 protocol driver of one upstream connection (issue 13): the node:http2 ClientHttp2Session made on
 * the pool's already-configured socket, owned by the connection (UpstreamConn.h2). It keeps the session's
 * real state for the close reason and for the pool's policy: streams open, capacity (the lower of our cap
 * and the server's SETTINGS_MAX_CONCURRENT_STREAMS), when the upstream was last heard from, the one PING
 * outstanding, and GOAWAY.
 *
 * Liveness (issue 13, measured: on a blackholed flow PING callbacks never fire and in-flight streams get no
 * event at all, so only our own timer can tell):
 * - ping-before-use (nghttpx's model): a session that read nothing for pingIdleMs gets a PING before its next
 *   stream; new streams are held until the ACK (or any byte: bytesRead moved), at most pingTimeoutMs; then the
 *   session is dead (ping_timeout) and the held streams go elsewhere, whatever their method (they never left).
 * - periodic PING while streams are open and nothing was read for pingIntervalMs (gRFC A8: servers allow one
 *   every 5 min with calls open, 2 strikes; strikes reset when they send HEADERS or DATA, so a session that
 *   reads never pings): jitter only upward, one outstanding, any received byte postpones it.
 * "Heard from" is socket.bytesRead (it keeps counting under node:http2), read when a stream closes and when a
 * timer fires; TCP_INFO's last_data_recv dates bytes that arrived while nobody looked.
 */
import { AsyncResource } from 'node:async_hooks';
import http2 from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream, Http2Session, OutgoingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';
import type { H2Config } from '../config/index.js';
import type { CloseReason } from '../errors.js';
import { SidecarError } from '../errors.js';
import { readTcpInfo } from '../sockopts/index.js';
import type { Clock, Timer } from '../util/clock.js';
import type { UpstreamConn } from './conn.js';

/** The session state the pool keeps its sets by (h2_sessions{state}). */
export type H2SessionState = 'connecting' | 'ready' | 'full' | 'draining';

/**
 * PING kinds (h2_pings_sent_total{kind}): before_use (a silent session before its next stream), periodic
 * (streams open, nothing read for pingIntervalMs), ack_evidence (TCP_INFO: our bytes unacknowledged and
 * retransmitted; the PING confirms before anything is given up).
 */
export type H2PingKind = 'before_use' | 'periodic' | 'ack_evidence';

/** A caller waiting for a stream slot on some session (the h2 exchange). */
export interface H2Requester {
  /** A slot on `driver` is this requester's now: open the stream at once (synchronously). */
  onSession(driver: H2Driver): void;
  /** No session could be had (AcquireError: overflow, pending_timeout, connect_*, shutting_down). */
  onSessionFailed(err: unknown): void;
  /** The session it was held for died (ping_timeout, goaway) before a stream was opened; it is placed again. */
  onRequeued(reason: CloseReason): void;
  /** The downstream went away: the pool drops it from its queues instead of granting. */
  readonly isGone: boolean;
}

/** What the driver tells its pool (H2Pool implements it). */
export interface H2DriverHooks {
  /** Capacity, draining or open streams changed: re-file the session. */
  sessionChanged(driver: H2Driver): void;
  /** The session's first stream opened (the pool's ACK-evidence sweep runs while sessions are busy). */
  sessionBusy(driver: H2Driver): void;
  /** The session's first SETTINGS arrived with this SETTINGS_MAX_CONCURRENT_STREAMS (Infinity: none sent). */
  settingsReceived(driver: H2Driver, maxConcurrentStreams: number): void;
  /** No SETTINGS from the upstream within pingTimeoutMs of the connect: the session is failed with `reason`. */
  settingsTimedOut(driver: H2Driver, reason: CloseReason): void;
  /** Requesters held for a PING that was answered (or for the first SETTINGS): each gets its slot (onSession). */
  grant(driver: H2Driver, requesters: readonly H2Requester[]): void;
  /** Requesters held for a session (`from`) that died or drains before their stream opened: place them again. */
  requeue(requesters: readonly H2Requester[], reason: CloseReason, from: H2Driver): void;
  pingSent(driver: H2Driver, kind: H2PingKind): void;
  pingAcked(driver: H2Driver, rttMs: number): void;
  pingTimedOut(driver: H2Driver): void;
  goawayReceived(driver: H2Driver, code: number, lastStreamId: number, debug: string): void;
  /** Current periodic PING interval of the route (doubled on GOAWAY too_many_pings). */
  pingIntervalMs(): number;
  /** The session spent its reset budget (noteReset): retire it gracefully (reset_budget). */
  resetBudgetSpent(driver: H2Driver): void;
}

/** The error a session is destroyed with (never without one: streams would close with rstCode 0, no error). */
export class H2SessionError extends SidecarError {
  constructor(readonly reason: CloseReason) {
    super('SIDECAR_ERR_H2_SESSION', `upstream h2 session closed: ${reason}`);
  }
}

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR } = http2.constants;

/**
 * Stall check (issue 13, hostile upstreams): on a connection error nghttp2 decides by itself (a frame header
 * longer than SETTINGS_MAX_FRAME_SIZE, DATA on a stream that is not open, ...) it queues GOAWAY, sends it and
 * then wants neither to read nor to write. node:http2 (Node 20) reports none of it: OnInvalidFrame calls JS
 * only for fatal errors and ERR_STREAM_CLOSED, and MaybeStopReading just stops reading the socket, so there is
 * no 'error', no 'goaway', no stream 'close', and not even the upstream's FIN is read ('end' never fires).
 * Open streams would hang until a PING was due (5 min). What JS can observe is that frames are no longer
 * written: a session with streams open that read nothing for a whole tick of H2_STALL_CHECK_MS (0.5-1 s of
 * silence; once per silence: again only after the upstream sent something) gets an empty SETTINGS frame,
 * which no server polices (unlike PING, gRFC A8); if node:http2 has not written it H2_STALL_VERDICT_MS later
 * while the socket has nothing queued, the session is over: protocol_error. A PING that times out unwritten
 * gets the same verdict (onPingTimeout), not ping_timeout.
 */
export const H2_STALL_CHECK_MS = 500;

/**
 * Reset budget of one upstream session (H2Driver.noteReset). Servers close a connection whose client resets
 * too many streams (rapid reset, CVE-2023-44487): nghttp2 (node:http2, nghttpx, Apache httpd) after a burst of
 * 1000 RST_STREAMs, 33/s regenerated, with GOAWAY INTERNAL_ERROR; Envoy once 250 streams were reset within 1 s
 * of opening (or half of them after 500). Every stream still open dies with the session, and an h2 route puts
 * the cancels of all its app connections on the same few sessions. So a session is retired (drains: its open
 * streams finish; new ones go to a fresh session) well inside both limits: a bucket of 400 resets, 16/s
 * regenerated (nghttp2's at 40 % and half its rate), or RESET_MIN resets once they are a quarter of the
 * streams opened (Envoy's). The margin covers the streams a draining session still carries (at most
 * maxConcurrentStreams, 100 by default), which may be cancelled too.
 */
export const RESET_BUCKET = 400;
export const RESET_REFILL_PER_S = 16;
export const RESET_MIN = 120;

export class ResetBudget {
  private streams = 0;
  private resets = 0;
  private tokens = RESET_BUCKET;
  private at: number;

  constructor(private readonly clock: Clock) {
    this.at = clock.now();
  }

  noteStream(): void {
    this.streams++;
  }

  /** One RST_STREAM sent; true once the budget is spent (the session should be retired). */
  noteReset(): boolean {
    const now = this.clock.now();
    this.tokens = Math.min(RESET_BUCKET, this.tokens + ((now - this.at) * RESET_REFILL_PER_S) / 1000) - 1;
    this.at = now;
    this.resets++;
    return this.tokens <= 0 || (this.resets >= RESET_MIN && this.resets * 4 >= this.streams);
  }
}
/** A SETTINGS ACK: a frame header and no payload. */
const H2_SETTINGS_ACK_BYTES = 9;
export const H2_STALL_VERDICT_MS = 50;

/** libuv's write queue of a socket (node:http2 writes to it from C++: JS's writableLength stays 0). */
export function writeQueueSize(socket: Socket): number {
  return (socket as unknown as { _handle?: { writeQueueSize?: number } | null })._handle?.writeQueueSize ?? 0;
}

/**
 * The stall verdict (H2_STALL_CHECK_MS), shared with the app-facing listener: nothing was written since
 * `writtenAt` although nothing waits for the socket and nghttp2 holds frames: it will never send them.
 */
export function isH2Stalled(session: Http2Session, socket: Socket, writtenAt: number): boolean {
  if (session.destroyed || socket.destroyed || socket.bytesWritten !== writtenAt || writeQueueSize(socket) !== 0) return false;
  return (session.state.outboundQueueSize ?? 0) > 0;
}

/** What a StallWatch's owner does around a check. */
export interface StallHooks {
  /** Just before the check is submitted. */
  readonly onSend?: () => void;
  /** Its ACK came (its bytes are then already counted as checked). */
  readonly onAck?: () => void;
  /** The check was never written: nghttp2 ended the session without telling JS. */
  readonly onStalled: () => void;
}

/**
 * One session's stall check (H2_STALL_CHECK_MS), for the upstream driver and the app-facing listener alike: a
 * session silent for a whole tick since it last spoke gets one empty SETTINGS frame (no server polices those,
 * unlike PING); if node:http2 has not written it H2_STALL_VERDICT_MS later (isH2Stalled), `onStalled` runs.
 * At most one check per silence: the next only after the peer has sent something other than its ACK.
 */
export class StallWatch {
  /** bytesRead at the last tick, and at (or after the ACK of) the last check. */
  private tickBytes: number;
  private checkedBytes = -1;
  private isOutstanding = false;

  constructor(
    private readonly session: Http2Session,
    private readonly socket: Socket,
    private readonly clock: Clock,
    private readonly hooks: StallHooks,
  ) {
    this.tickBytes = socket.bytesRead;
  }

  /** Starts the silence count afresh (the first tick after the owner's timer was idle). */
  restart(): void {
    this.tickBytes = this.socket.bytesRead;
  }

  /** One tick of the owner's timer: sends a check when one is due. */
  tick(): void {
    const socket = this.socket;
    const b = socket.bytesRead;
    const wasSilent = b === this.tickBytes;
    this.tickBytes = b;
    if (!wasSilent || b === this.checkedBytes || this.isOutstanding) return;
    const writtenAt = socket.bytesWritten;
    this.checkedBytes = b;
    this.isOutstanding = true;
    this.hooks.onSend?.();
    try {
      this.session.settings({}, (err: Error | null) => {
        this.isOutstanding = false;
        if (err !== null) return;
        this.checkedBytes = socket.bytesRead;
        this.hooks.onAck?.();
      });
    } catch {
      // Session closing, or SETTINGS ACKs outstanding: its close (or the next tick) tells.
      this.isOutstanding = false;
      return;
    }
    this.clock.setTimeout(() => {
      if (isH2Stalled(this.session, socket, writtenAt)) this.hooks.onStalled();
    }, H2_STALL_VERDICT_MS);
  }
}

/**
 * node:http2's flood and abuse limits, set explicitly on both sides (README "Limits and hostile input"); the
 * values follow node's defaults where Envoy and nghttpx agree with them, else theirs. Past a session limit
 * the session is destroyed (ERR_HTTP2_TOO_MANY_INVALID_FRAMES, ...: protocol_error), past a stream limit the
 * stream is reset (ENHANCE_YOUR_CALM).
 * - maxSessionInvalidFrames: invalid frames (malformed heads, empty DATA without END_STREAM: CVE-2019-9518)
 *   per session, counted over its whole life. From the app 100 (node: 1000; Envoy ends a session after 1
 *   consecutive empty frame and on any malformed message, stream_error_on_invalid_http_messaging: false). From
 *   the upstream node's 1000: each malformed response head counts one, so a long-lived session to a buggy
 *   endpoint would otherwise be killed (its healthy streams with it) at the 101st; a flood is still cut.
 * - maxSessionRejectedStreams 100 (node's): streams opened past our SETTINGS_MAX_CONCURRENT_STREAMS.
 * - maxSettings 32 (node's and nghttp2's): entries per SETTINGS frame; maxOutstandingSettings 10: our SETTINGS
 *   unacknowledged (the stall check keeps one); maxOutstandingPings 10: ours unacknowledged (we keep one).
 * - header list: maxHeaderListSize 64 KiB (advertised and enforced: Envoy max_request_headers_kb 60, nghttpx
 *   64 KiB request and response header buffers). Fields per block from the app: past http.maxHeaderCount (100:
 *   Envoy's and nghttpx's) + the 4 pseudo-headers the listener answers 431 / RESOURCE_EXHAUSTED itself;
 *   nghttp2's maxHeaderListPairs (4x that, at least 104) resets only a flood. From the upstream 128 (node's;
 *   nghttpx allows 500 response fields).
 * nghttp2's own bounds (not settable through node:http2) stay: 1000 queued outbound ACKs (Envoy's
 * max_outbound_control_frames), the rapid-reset rate limit, the CONTINUATION frame cap.
 */
export const H2_LIMITS = Object.freeze({
  maxSessionInvalidFramesDownstream: 100,
  maxSessionInvalidFramesUpstream: 1000,
  maxSessionRejectedStreams: 100,
  maxSettings: 32,
  maxOutstandingSettings: 10,
  maxOutstandingPings: 10,
  maxHeaderListSize: 64 * 1024,
  maxHeaderListPairsDownstream: 104,
  maxHeaderListPairsUpstream: 128,
});

/** Per-stream initial window (SETTINGS_INITIAL_WINDOW_SIZE) and session window we advertise upstream. */
export const H2_STREAM_WINDOW = 1 << 20;
export const H2_SESSION_WINDOW = 8 << 20;

/**
 * session.request() options with the priority fields node:http2 would otherwise add to its copy one by one
 * (setAndValidatePriorityOptions): measured ~3 µs of self time per request when they are missing.
 */
const REQUEST_BODYLESS = Object.freeze({ endStream: true, weight: 16, parent: 0, exclusive: false, silent: false });
const REQUEST_WITH_BODY = Object.freeze({ endStream: false, weight: 16, parent: 0, exclusive: false, silent: false });
/** A body that may end with trailers: the stream stays open after its last DATA until 'wantTrailers' is answered. */
const REQUEST_WITH_BODY_TRAILERS = Object.freeze({ ...REQUEST_WITH_BODY, waitForTrailers: true });

/**
 * Node 20's ClientHttp2Session.request() wraps its connect callback in a fresh AsyncResource's bind(), and
 * AsyncResource.prototype.bind defines a deprecated `asyncResource` accessor made by util.deprecate twice per
 * call (DEP0172: an Object.setPrototypeOf on each new function): ~6.5 µs and a share of GC per request in
 * the bench's profile (bench/lib/h2.ts), the largest single item. While our own request() call runs (a
 * synchronous window nobody else can observe), bind is this equivalent without the deprecated accessor: the
 * bound function still runs `fn` in the resource's async scope with the caller's `this`.
 */
const nodeBind = AsyncResource.prototype.bind;
export function scopeBind(this: AsyncResource, fn: (...args: unknown[]) => unknown, thisArg?: unknown): (...args: unknown[]) => unknown {
  const resource = this;
  if (thisArg !== undefined) return (...args: unknown[]) => resource.runInAsyncScope(fn, thisArg, ...args);
  return function (this: unknown, ...args: unknown[]) {
    return resource.runInAsyncScope(fn, this, ...args);
  };
}

/** session.request() with the cheap bind in place for exactly its duration (node's is back when it returns or throws). */
export function requestStream(session: ClientHttp2Session, headers: OutgoingHttpHeaders, isBodyless: boolean, canHaveTrailers = false): ClientHttp2Stream {
  const proto = AsyncResource.prototype as { bind: unknown };
  proto.bind = scopeBind;
  try {
    return session.request(headers, isBodyless ? REQUEST_BODYLESS : canHaveTrailers ? REQUEST_WITH_BODY_TRAILERS : REQUEST_WITH_BODY);
  } finally {
    proto.bind = nodeBind;
  }
}

interface Probe {
  readonly kind: H2PingKind;
  readonly sentAt: number;
  /** bytesRead when the PING went out (or at the last extension): any byte since counts as an answer. */
  bytesAt: number;
  /** bytesWritten when the PING was submitted: unchanged at the timeout = node:http2 stopped writing. */
  readonly writtenAt: number;
  /** node:http2 took the PING (session.ping returned true). */
  isSent: boolean;
  timer: Timer;
}

export class H2Driver {
  readonly session: ClientHttp2Session;
  /** Streams opened on this session and not closed yet. */
  openStreams = 0;
  /**
   * The server's SETTINGS_MAX_CONCURRENT_STREAMS; until its first SETTINGS arrive, the pool's hint (what this
   * endpoint's last session was told, else our cap): no stream is opened before then (hasSettings).
   */
  private remoteMax: number;
  /**
   * The upstream's first SETTINGS arrived. Before that no stream is opened on the session (grpc-go's client
   * is not READY before the server preface, nghttpx's neither): requesters placed on it are held (they count
   * against the capacity) and granted up to the real limit once it is known; at most pingTimeoutMs after the
   * connect, else the session is failed (settingsTimedOut) and they go elsewhere (they never left).
   */
  hasSettings = false;
  private settingsTimer: Timer | undefined;
  /** GOAWAY arrived (or we retire the session): no new streams; it closes when its streams end. */
  isDraining = false;
  /** Last-Stream-ID of the GOAWAY received: streams above it were never processed (RFC 9113 §6.8). */
  goawayLastStreamId: number | undefined;
  /**
   * TCP_INFO showed our bytes unacknowledged and retransmitted (a dead path, or one lost segment): no new
   * streams until the PING sent to confirm is answered (or any byte arrives); streams open stay where they are.
   */
  isSuspect = false;
  /** When bytes were last seen from the upstream (clock ms; approximate to when we looked). */
  lastReadAt: number;
  private bytesSeen: number;
  private probe: Probe | undefined;
  /** Streams waiting for the PING outstanding (ping-before-use). */
  private held: H2Requester[] = [];
  private periodicTimer: Timer | undefined;
  /** Stall check (H2_STALL_CHECK_MS): its timer, bytesRead at its last tick and after the last check. */
  private stallTimer: Timer | undefined;
  private readonly stallWatch: StallWatch;
  /** socket.bytesWritten when the stall verdict (or an unwritten PING) ended this session (before our GOAWAY). */
  private stalledWrittenAt: number | undefined;
  /** socket.bytesWritten when each open stream was submitted (isNeverWritten). */
  private readonly writtenAtOpen = new WeakMap<ClientHttp2Stream, number>();
  /** Idle since (no stream open), for the pool's idle timer. */
  idleSince: number;
  /** Streams opened and RST_STREAMs we sent on this session (ResetBudget). */
  private readonly resets: ResetBudget;

  constructor(
    readonly conn: UpstreamConn,
    private readonly socket: Socket,
    origin: string,
    private readonly config: H2Config,
    private readonly clock: Clock,
    private readonly hooks: H2DriverHooks,
    remoteMaxHint = Infinity,
  ) {
    const now = clock.now();
    this.remoteMax = remoteMaxHint;
    this.resets = new ResetBudget(clock);
    this.lastReadAt = now;
    this.idleSince = now;
    this.bytesSeen = socket.bytesRead;
    // Some of node:http2's options are missing from @types/node's ClientSessionOptions (they apply to both
    // session types in core.js: setupHandle and updateOptionsBuffer): passed as a variable, not a literal.
    const options: http2.ClientSessionOptions & Partial<typeof H2_LIMITS> & { maxSessionInvalidFrames?: number } = {
      createConnection: () => socket,
      maxSessionMemory: config.maxSessionMemoryMiB,
      maxSessionInvalidFrames: H2_LIMITS.maxSessionInvalidFramesUpstream,
      maxSessionRejectedStreams: H2_LIMITS.maxSessionRejectedStreams,
      maxSettings: H2_LIMITS.maxSettings,
      maxOutstandingSettings: H2_LIMITS.maxOutstandingSettings,
      maxOutstandingPings: H2_LIMITS.maxOutstandingPings,
      maxHeaderListPairs: H2_LIMITS.maxHeaderListPairsUpstream,
      maxReservedRemoteStreams: 0,
      // Server push is refused (we would have nobody to give it to); our stream window is raised so a 2 MiB
      // message does not crawl at 64 KiB per round trip.
      settings: { enablePush: false, initialWindowSize: H2_STREAM_WINDOW, maxHeaderListSize: H2_LIMITS.maxHeaderListSize },
    };
    this.session = http2.connect(origin, options);
    const session = this.session;
    this.stallWatch = new StallWatch(session, socket, clock, {
      // Bytes read so far are dated now (TCP_INFO), so that the ACK alone can be told apart below.
      onSend: () => this.heardAt(this.clock.now()),
      // Its ACK's bytes are not "the upstream said something": when the ACK (9 bytes) is all that came, it
      // moves neither ping-before-use nor the periodic PING.
      onAck: () => {
        if (socket.bytesRead === this.bytesSeen + H2_SETTINGS_ACK_BYTES) this.bytesSeen = socket.bytesRead;
      },
      onStalled: () => {
        if (this.conn.closeReason === undefined) this.stalled();
      },
    });
    session.on('error', (err: unknown) => this.onSessionError(err));
    // node:http2 destroys the session with its own error (ERR_HTTP2_TOO_MANY_INVALID_FRAMES, ...) but emits
    // it only after the streams' errors and the socket's close: a stream's ERR_HTTP2_STREAM_ERROR would
    // decide (and be logged) first. Seen here synchronously, the session's error decides.
    const nodeDestroy = session.destroy;
    session.destroy = (err?: Error | number, code?: number): void => {
      if (err instanceof Error && !(err instanceof H2SessionError)) this.sessionFailed(err);
      nodeDestroy.call(session, err as Error, code);
    };
    session.on('remoteSettings', (settings) => {
      this.remoteMax = settings.maxConcurrentStreams ?? Infinity;
      if (!this.hasSettings) {
        this.hasSettings = true;
        this.settingsTimer?.clear();
        this.settingsTimer = undefined;
        this.noteBytes(this.clock.now());
        hooks.settingsReceived(this, this.remoteMax);
        // Not while a PING is outstanding (its ACK releases them).
        if (this.probe === undefined) this.releaseHeld();
      }
      hooks.sessionChanged(this);
    });
    this.settingsTimer = clock.setTimeout(() => this.onSettingsTimeout(), config.pingTimeoutMs);
    session.on('goaway', (code: number, lastStreamId: number, data: Buffer | undefined) => this.onGoaway(code, lastStreamId, data));
    session.once('connect', () => {
      try {
        session.setLocalWindowSize(H2_SESSION_WINDOW);
      } catch {
        // The session died in the same tick; its close reports why.
      }
    });
    session.once('close', () => this.onSessionClose());
  }

  /** Our cap, or the server's if lower. */
  get maxStreams(): number {
    return Math.min(this.config.maxConcurrentStreams, this.remoteMax);
  }

  /** Slots left for new streams (held streams count as taken). */
  get capacity(): number {
    return this.maxStreams - this.openStreams - this.held.length;
  }

  /** Not draining, not dead: may take new streams. */
  get isUsable(): boolean {
    return !this.isDraining && !this.isSuspect && this.conn.closeReason === undefined && !this.session.destroyed && !this.session.closed;
  }

  get state(): H2SessionState {
    if (!this.isUsable) return 'draining';
    return this.capacity > 0 ? 'ready' : 'full';
  }

  /** "Data in flight" for the close reason: a stream is open or a PING awaits its ACK. */
  get hasDataInFlight(): boolean {
    return this.openStreams > 0 || this.probe !== undefined;
  }

  get isPingOutstanding(): boolean {
    return this.probe !== undefined;
  }

  get heldCount(): number {
    return this.held.length;
  }

  /**
   * The pool picked this session for `r` (capacity > 0, usable). Granted at once unless the session has been
   * silent for pingIdleMs or a PING is outstanding: then `r` is held until the ACK or any byte.
   */
  use(r: H2Requester): void {
    if (!this.hasSettings) {
      this.held.push(r);
      this.hooks.sessionChanged(this);
      return;
    }
    if (this.probe === undefined) {
      const now = this.clock.now();
      if (now - this.heardAt(now) < this.config.pingIdleMs) {
        r.onSession(this);
        return;
      }
      this.sendPing('before_use');
    }
    this.held.push(r);
    this.hooks.sessionChanged(this);
  }

  /**
   * node:http2 refused to open a stream (session closing or destroyed: nothing was sent). The session is
   * ending: its reason (already decided by whatever closed it, else goaway for a graceful close) is returned
   * and no new stream is given to it.
   */
  requestRefused(): CloseReason {
    const decided = this.conn.decideReason({ kind: 'local', reason: this.session.destroyed ? 'other' : 'goaway' });
    this.drain(decided);
    return decided;
  }

  /** Why a stream was refused on a session that is still alive: above a GOAWAY's last-stream-id, or REFUSED_STREAM. */
  get refusalReason(): CloseReason {
    return this.goawayLastStreamId !== undefined ? 'goaway' : 'peer_reset';
  }

  /**
   * Opens one stream (throws what session.request throws). The caller listens for its 'close' first thing.
   * `canHaveTrailers`: the body may end with trailers (the caller answers 'wantTrailers').
   */
  request(headers: OutgoingHttpHeaders, isBodyless: boolean, canHaveTrailers = false): ClientHttp2Stream {
    const stream = requestStream(this.session, headers, isBodyless, canHaveTrailers);
    // node:http2 writes the HEADERS later (its write is scheduled, never done inside request()).
    this.writtenAtOpen.set(stream, this.socket.bytesWritten);
    this.resets.noteStream();
    if (this.openStreams++ === 0) {
      this.armPeriodic();
      // Silence counts from the first stream on (not from the first tick).
      if (this.stallTimer === undefined) this.stallWatch.restart();
      this.armStallCheck();
      this.hooks.sessionBusy(this);
    }
    stream.on('close', this.onStreamClose);
    if (this.capacity <= 0) this.hooks.sessionChanged(this);
    return stream;
  }

  /**
   * The session was ended by the stall verdict and not one byte had gone to the socket between `stream`'s
   * submission and the verdict: its HEADERS never left (nghttp2 had already ended the session silently), so the upstream
   * provably never saw it (replayed once, any method).
   */
  isNeverWritten(stream: ClientHttp2Stream): boolean {
    const at = this.writtenAtOpen.get(stream);
    return at !== undefined && this.stalledWrittenAt === at;
  }

  private readonly onStreamClose = (): void => {
    const now = this.clock.now();
    this.openStreams--;
    this.noteBytes(now);
    if (this.openStreams === 0) this.idleSince = now;
    this.hooks.sessionChanged(this);
  };

  /**
   * We reset one of this session's streams (RST_STREAM CANCEL: the app went away). Spends the reset budget
   * (RESET_BUCKET); once spent, the pool retires the session before the server's rapid-reset defence kills it.
   */
  noteReset(): void {
    if (this.resets.noteReset() && this.isUsable) this.hooks.resetBudgetSpent(this);
  }

  /** No new streams from now on (`reason` decided by the caller); the session closes once its streams ended. */
  drain(reason: CloseReason): void {
    if (this.isDraining) return;
    this.isDraining = true;
    this.requeueHeld(reason);
    if (!this.session.closed && !this.session.destroyed) this.session.close();
    this.hooks.sessionChanged(this);
  }

  /** Ends the session now, always with an error and a code (streams then fail with that error). */
  destroy(reason: CloseReason): void {
    this.clearTimers();
    this.requeueHeld(reason);
    // The code goes out in our GOAWAY: CANCEL when the peer is dead or misbehaved, NO_ERROR when we retire it.
    const code = reason === 'idle_evicted' || reason === 'max_age' || reason === 'local_shutdown' || reason === 'sibling_evicted' ? NGHTTP2_NO_ERROR : NGHTTP2_CANCEL;
    if (!this.session.destroyed) this.session.destroy(new H2SessionError(reason), code);
    if (!this.socket.destroyed) this.socket.destroy();
  }

  /** ACK evidence (the pool's sweep): stop placing streams here and confirm with a PING (one outstanding). */
  suspect(): void {
    if (this.probe !== undefined || !this.isUsable) return;
    this.isSuspect = true;
    this.sendPing('ack_evidence');
    this.hooks.sessionChanged(this);
  }

  // --------------------------------------------------------------------------------------------------------

  /** bytesRead moved since we last looked: the upstream spoke at `now` (or, dated by TCP_INFO, earlier). */
  private noteBytes(now: number): boolean {
    const b = this.socket.bytesRead;
    if (b === this.bytesSeen) return false;
    this.bytesSeen = b;
    this.lastReadAt = now;
    return true;
  }

  /** When the upstream was last heard from; bytes that arrived unseen are dated by TCP_INFO last_data_recv. */
  private heardAt(now: number): number {
    if (this.socket.bytesRead !== this.bytesSeen) {
      this.bytesSeen = this.socket.bytesRead;
      const info = readTcpInfo(this.socket);
      this.lastReadAt = info !== undefined ? Math.max(this.lastReadAt, now - info.lastDataRecvMs) : now;
    }
    return this.lastReadAt;
  }

  private sendPing(kind: H2PingKind): void {
    const now = this.clock.now();
    const probe: Probe = {
      kind,
      sentAt: now,
      bytesAt: this.socket.bytesRead,
      writtenAt: this.socket.bytesWritten,
      isSent: false,
      timer: this.clock.setTimeout(() => this.onPingTimeout(probe), this.config.pingTimeoutMs),
    };
    this.probe = probe;
    let isSent = false;
    try {
      isSent = this.session.ping((err) => {
        if (err === null) this.onPingAck(probe);
      });
    } catch {
      // Session already closing: its close reports why; the timer settles the held streams.
    }
    probe.isSent = isSent;
    if (isSent) {
      this.hooks.pingSent(this, kind);
      return;
    }
    // Not submitted: a closing session (our drain, or node:http2's own close after a GOAWAY) returns
    // undefined and cancels the PING. Its timeout would be a false ping_timeout (and eject a live endpoint)
    // for the long streams a draining session still carries: no probe; their liveness is TCP's (UT,
    // keepalive), and streams held for it go elsewhere.
    probe.timer.clear();
    this.probe = undefined;
    if (this.held.length > 0) this.requeueHeld(this.conn.decideReason({ kind: 'local', reason: this.session.destroyed ? 'other' : 'goaway' }));
  }

  private onPingAck(probe: Probe): void {
    if (this.probe !== probe) return;
    probe.timer.clear();
    this.probe = undefined;
    const now = this.clock.now();
    this.noteBytes(now);
    this.lastReadAt = now;
    this.hooks.pingAcked(this, now - probe.sentAt);
    this.clearSuspect();
    this.releaseHeld();
    if (this.openStreams > 0) this.armPeriodic();
  }

  private onPingTimeout(probe: Probe): void {
    if (this.probe !== probe) return;
    const b = this.socket.bytesRead;
    if (b !== probe.bytesAt) {
      // Any received byte counts as liveness: the held streams go, and the ACK gets another pingTimeoutMs.
      probe.bytesAt = b;
      this.noteBytes(this.clock.now());
      this.clearSuspect();
      this.releaseHeld();
      probe.timer = this.clock.setTimeout(() => this.onPingTimeout(probe), this.config.pingTimeoutMs);
      return;
    }
    if (probe.isSent && writeQueueSize(this.socket) > 0 && !this.socket.destroyed && this.isPeerAcking()) {
      // The PING is still queued behind DATA (bytes the kernel has not taken) while TCP_INFO shows the peer
      // alive: it ACKs what we send (or holds a zero window, i.e. is not reading). Not a silent peer: the ACK
      // gets another pingTimeoutMs. A peer that dies meanwhile stops ACKing (the next timeout ends it), or
      // TCP_USER_TIMEOUT ends the zero-window case.
      probe.timer = this.clock.setTimeout(() => this.onPingTimeout(probe), this.config.pingTimeoutMs);
      return;
    }
    this.probe = undefined;
    if (probe.isSent && this.socket.bytesWritten === probe.writtenAt && writeQueueSize(this.socket) === 0 && !this.socket.destroyed) {
      // The PING never left: not a silent peer, node:http2 stopped writing (see H2_STALL_CHECK_MS).
      this.stalled();
      return;
    }
    const decided = this.conn.decideReason({ kind: 'local', reason: 'ping_timeout' });
    this.hooks.pingTimedOut(this);
    this.destroy(decided);
  }

  /** TCP_INFO: an ACK arrived within pingTimeoutMs, or the peer advertises a zero window (alive, not reading). */
  private isPeerAcking(): boolean {
    const info = readTcpInfo(this.socket);
    return info !== undefined && info.state === 'established' && (info.sndWnd === 0 || info.lastAckRecvMs < this.config.pingTimeoutMs);
  }

  private clearSuspect(): void {
    if (!this.isSuspect) return;
    this.isSuspect = false;
    this.hooks.sessionChanged(this);
  }

  private releaseHeld(): void {
    if (this.held.length === 0 || !this.hasSettings) return;
    const held = this.held;
    this.held = [];
    if (this.isUsable) this.hooks.grant(this, held);
    // Not usable = draining or closed, which is only ever set with the reason decided (first cause wins).
    else this.hooks.requeue(held, this.conn.decideReason({ kind: 'local', reason: 'goaway' }), this);
  }

  private requeueHeld(reason: CloseReason): void {
    if (this.held.length === 0) return;
    const held = this.held;
    this.held = [];
    this.hooks.requeue(held, reason, this);
  }

  /**
   * Periodic PING while streams are open: fires when nothing was read for the route's interval (+0..10%, never
   * below). Armed lazily: one timer re-checks the state when it fires.
   */
  private armPeriodic(): void {
    if (this.periodicTimer !== undefined) return;
    const interval = this.hooks.pingIntervalMs() * (1 + 0.1 * Math.random());
    const now = this.clock.now();
    const due = Math.max(0, this.lastReadAt + interval - now);
    this.periodicTimer = this.clock.setTimeout(() => this.onPeriodic(interval), Math.max(1, due));
  }

  private onPeriodic(interval: number): void {
    this.periodicTimer = undefined;
    // Draining sessions too (a GOAWAY(NO_ERROR) from grpc-go's MaxConnectionAge, our max_age or
    // endpoint_removed): their long-lived streams still need liveness until they end.
    if (this.openStreams === 0 || this.session.destroyed) return;
    const now = this.clock.now();
    if (this.probe === undefined && now - this.heardAt(now) >= interval) this.sendPing('periodic');
    // While a PING is outstanding the ACK re-arms; otherwise wait for the next silent interval.
    if (this.probe === undefined) this.armPeriodic();
  }

  /** Stall check timer, armed lazily while streams are open (one timer re-checks the state when it fires). */
  private armStallCheck(): void {
    if (this.stallTimer !== undefined) return;
    this.stallTimer = this.clock.setTimeout(this.onStallTick, H2_STALL_CHECK_MS);
  }

  private readonly onStallTick = (): void => {
    this.stallTimer = undefined;
    if (this.openStreams === 0 || this.session.destroyed || this.conn.closeReason !== undefined) return;
    this.stallWatch.tick();
    this.armStallCheck();
  };

  /** nghttp2 ended the session without telling node:http2's JS (H2_STALL_CHECK_MS): it is failed now. */
  private stalled(): void {
    const err = new SidecarError('SIDECAR_ERR_H2_STALLED', 'node:http2 stopped writing to the upstream session: nghttp2 ended it on a connection error it did not report (a frame it could not accept)');
    const decided = this.conn.decideReason({ kind: 'local', reason: 'protocol_error', err });
    // Before destroy(): its GOAWAY (and whatever nghttp2 flushes with it) moves bytesWritten.
    if (decided === 'protocol_error') this.stalledWrittenAt = this.socket.bytesWritten;
    this.destroy(decided);
    this.hooks.sessionChanged(this);
  }

  /**
   * No SETTINGS within pingTimeoutMs of the connect: an upstream that sent nothing at all is as silent as one
   * that does not answer a PING (ping_timeout, a dead-peer reason: its endpoint is ejected); one that sent
   * bytes but no SETTINGS does not speak HTTP/2 (protocol_error). The held requesters go elsewhere.
   */
  private onSettingsTimeout(): void {
    this.settingsTimer = undefined;
    if (this.hasSettings || this.session.destroyed || this.conn.closeReason !== undefined) return;
    const reason: CloseReason = this.socket.bytesRead === 0 ? 'ping_timeout' : 'protocol_error';
    const decided = this.conn.decideReason({ kind: 'local', reason });
    this.hooks.settingsTimedOut(this, decided);
    this.destroy(decided);
  }

  private clearTimers(): void {
    this.settingsTimer?.clear();
    this.settingsTimer = undefined;
    this.stallTimer?.clear();
    this.stallTimer = undefined;
    this.periodicTimer?.clear();
    this.periodicTimer = undefined;
    this.probe?.timer.clear();
    this.probe = undefined;
  }

  private onGoaway(code: number, lastStreamId: number, data: Buffer | undefined): void {
    this.goawayLastStreamId = lastStreamId;
    this.conn.decideReason({ kind: 'local', reason: 'goaway' });
    this.hooks.goawayReceived(this, code, lastStreamId, data !== undefined && data.length > 0 ? data.toString('latin1').slice(0, 256) : '');
    this.isDraining = true;
    // node:http2 closes the session itself after this event (NO_ERROR: gracefully; else at once).
    this.requeueHeld('goaway');
    this.hooks.sessionChanged(this);
  }

  /**
   * The session failed with `err` (its 'error', or a stream's error when the stream's close comes first):
   * the connection decides the reason (liveness/classify: an errno, or node:http2's ERR_HTTP2_* =
   * protocol_error); first cause wins, so it is the same whichever event reports it.
   */
  sessionFailed(err: unknown): CloseReason {
    return err === undefined ? this.conn.decideReason({ kind: 'local', reason: 'other' }) : this.conn.decideReason({ kind: 'error', err });
  }

  private onSessionError(err: unknown): void {
    this.sessionFailed(err);
  }

  private onSessionClose(): void {
    this.clearTimers();
    // The upstream ended the session without an error (its FIN or a graceful GOAWAY already decided).
    const decided = this.conn.decideReason({ kind: 'end' });
    this.isDraining = true;
    this.requeueHeld(decided);
    if (!this.socket.destroyed) this.socket.destroy();
    this.hooks.sessionChanged(this);
  }
}

export { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR };
