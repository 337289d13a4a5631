/**
 * h2 listener (issue 13): an HTTP/2 server with prior knowledge (h2c, what grpc-js / grpc-go clients with
 * insecure credentials speak) on the route's local address. Each stream becomes an exchange
 * (proxy/h2-exchange.ts) on a stream slot from the route's H2Pool. The app's session is its own hop: its
 * PINGs and SETTINGS are answered by node:http2 here and never forwarded upstream.
 *
 * Downstream limits as the HTTP listener: http.maxDownstreamConnections app connections and the process fd
 * budget (over either: reset at accept), maxSessionMemory set explicitly. Drain: GOAWAY (NO_ERROR) to every
 * app session at once (new streams refused, the ones open finish), then the usual wait / reset sequence.
 */
import { EventEmitter, once } from 'node:events';
import http2 from 'node:http2';
import type { Http2Server, ServerHttp2Session } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import type { H2Config, RouteConfig } from '../config/index.js';
import type { DownstreamRejectReason, DownstreamResetReason } from '../errors.js';
import { H2_LIMITS, H2_SESSION_WINDOW, H2_STALL_CHECK_MS, H2_STREAM_WINDOW, StallWatch } from '../pool/h2-driver.js';
import type { H2Pool } from '../pool/h2-pool.js';
import { answerLocally, grpcMethodMatcher, isGrpcRequest, proxyH2Stream } from '../proxy/h2-exchange.js';
import type { H2ErrorReason, H2ExchangeHost, H2StreamOutcome } from '../proxy/h2-exchange.js';
import { RetryBudget } from '../proxy/retry-budget.js';
import { resetSocket } from '../proxy/tcp-pipe.js';
import type { Clock, Timer } from '../util/clock.js';
import { FdBudget } from './fd-budget.js';
import { listenOn } from './listen.js';

/**
 * App sessions get the upstream sessions' stall check (pool/h2-driver.ts, H2_STALL_CHECK_MS): an app that
 * sends a frame nghttp2 refuses as a connection error (a frame header over SETTINGS_MAX_FRAME_SIZE) gets a
 * GOAWAY from nghttp2, which then stops; node:http2 tells JS nothing and stops reading, so the session (and
 * its fd, and its slot under http.maxDownstreamConnections) would stay for ever, even after the app's FIN.
 * One sweep per listener, every other tick: a session silent for a whole sweep since it last spoke gets one
 * empty SETTINGS frame; unwritten H2_STALL_VERDICT_MS later, it is destroyed (downstreamReset protocol_error).
 */
const APP_STALL_SWEEP_MS = 2 * H2_STALL_CHECK_MS;
/** :method, :scheme, :authority, :path: counted by node:http2 among a request's fields, not by http.maxHeaderCount. */
const H2_PSEUDO_HEADERS = 4;

/** Streams one app session may have open (SETTINGS_MAX_CONCURRENT_STREAMS we advertise downstream). */
export const DOWNSTREAM_MAX_STREAMS = 1000;

export interface H2ListenerEvents {
  /** A downstream stream ended: ok, rescued (after a replay), reset (RST_STREAM), failed (answered by us). */
  streamEnded: [outcome: H2StreamOutcome, reason: H2ErrorReason | undefined];
  /** A stream was placed again (replayed or re-queued) because its session died or refused it. */
  streamRescued: [reason: H2ErrorReason];
  downstreamReset: [reason: DownstreamResetReason];
  downstreamRejected: [reason: DownstreamRejectReason, err?: Error];
}

export class H2Listener extends EventEmitter<H2ListenerEvents> implements H2ExchangeHost {
  private readonly server: Http2Server;
  readonly budget: RetryBudget;
  readonly h2: H2Config;
  private readonly downstreams = new Set<Socket>();
  /** Open app sessions, with their stall-check state. */
  private readonly sessions = new Map<ServerHttp2Session, StallWatch>();
  private stallSweep: Timer | undefined;
  readonly isGrpcIdempotent: (path: string) => boolean;
  private inflight = 0;
  private isDraining = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    readonly route: RouteConfig,
    readonly pool: H2Pool,
    readonly clock: Clock,
    private readonly fds: FdBudget = new FdBudget(Infinity, 0),
  ) {
    super();
    this.h2 = route.h2;
    this.budget = new RetryBudget(route.h2.retry);
    this.isGrpcIdempotent = grpcMethodMatcher(route.h2.retry.grpcIdempotentMethods);
    // maxOutstandingSettings and streamReset* are missing from @types/node 20's ServerOptions: passed as a
    // variable, not a literal.
    const options: http2.ServerOptions & { maxOutstandingSettings: number; streamResetBurst: number; streamResetRate: number } = {
      maxSessionMemory: route.h2.maxSessionMemoryMiB,
      // Flood limits explicit (H2_LIMITS). unknownProtocolTimeout only acts on TLS sockets whose ALPN is not
      // h2 (none here: h2c); set so a later TLS listener does not inherit a silent default.
      maxSessionInvalidFrames: H2_LIMITS.maxSessionInvalidFramesDownstream,
      maxSessionRejectedStreams: H2_LIMITS.maxSessionRejectedStreams,
      maxSettings: H2_LIMITS.maxSettings,
      maxOutstandingSettings: H2_LIMITS.maxOutstandingSettings,
      maxOutstandingPings: H2_LIMITS.maxOutstandingPings,
      // Far above our own bound (the 'stream' handler answers past http.maxHeaderCount), so an app that sends a
      // few too many gets an answer; nghttp2 resets only a flood (the 64 KiB list size bounds it too).
      maxHeaderListPairs: Math.max(H2_LIMITS.maxHeaderListPairsDownstream, 4 * (route.http.maxHeaderCount + H2_PSEUDO_HEADERS)),
      unknownProtocolTimeout: 10_000,
      // nghttp2's rapid-reset limit on the app's RST_STREAMs (CVE-2023-44487) is 1000 at once, 33/s after, made
      // for internet-facing servers: a pod's own gRPC client whose calls hit their deadlines 50 times a second
      // would get its connection killed within a minute (a grpc-go server would not). Raised for the local
      // app; the upstream side has its own budget (ResetBudget). Node >= 22.10 / 23 (the image); Node 20
      // ignores the options and keeps nghttp2's defaults.
      streamResetBurst: 10_000,
      streamResetRate: 1_000,
      settings: { maxConcurrentStreams: DOWNSTREAM_MAX_STREAMS, initialWindowSize: H2_STREAM_WINDOW, enablePush: false, maxHeaderListSize: H2_LIMITS.maxHeaderListSize },
    };
    this.server = http2.createServer(options);
    this.server.on('connection', (s: Socket) => {
      if (this.downstreams.size >= route.http.maxDownstreamConnections) return this.reject(s, 'overflow');
      if (!this.fds.tryAdmit()) return this.reject(s, 'fd_reserve');
      s.setNoDelay(true);
      this.downstreams.add(s);
      s.once('close', () => {
        this.downstreams.delete(s);
        this.fds.release();
      });
    });
    this.server.on('session', (session: ServerHttp2Session) => {
      session.on('error', () => {
        // The app's session failed (bad frames, reset): its streams' close handlers clean up.
      });
      this.sessions.set(
        session,
        new StallWatch(session, session.socket as Socket, this.clock, {
          onStalled: () => {
            // Destroys its socket too (session.socket is node:http2's proxy: it may not be destroyed directly).
            session.destroy(new Error('protocol_error'), http2.constants.NGHTTP2_PROTOCOL_ERROR);
            this.emit('downstreamReset', 'protocol_error');
          },
        }),
      );
      session.once('close', () => this.sessions.delete(session));
      this.armStallSweep();
      try {
        session.setLocalWindowSize(H2_SESSION_WINDOW);
      } catch {
        // Not connected any more.
      }
      if (this.isDraining) session.close();
    });
    const maxFields = route.http.maxHeaderCount + H2_PSEUDO_HEADERS;
    this.server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
      this.inflight++;
      stream.on('close', this.onStreamClose);
      if (rawHeaders.length / 2 > maxFields) this.refuseHeaders(stream, headers, route.http.maxHeaderCount);
      else proxyH2Stream(this, stream, headers);
    });
    // accept() failures (EMFILE...) must not crash the process.
    this.server.on('error', (err: Error) => this.emit('downstreamRejected', 'accept_error', err));
  }

  listen(): Promise<AddressInfo> {
    return listenOn(this.server, this.route.listen);
  }

  get isListening(): boolean {
    return this.server.listening;
  }

  /** Open app connections. */
  get activeCount(): number {
    return this.downstreams.size;
  }

  /** Streams in flight. */
  get streamCount(): number {
    return this.inflight;
  }

  /** Drain: stop listening and send GOAWAY (NO_ERROR) to every app session; open streams finish. */
  async stopAccepting(): Promise<void> {
    this.isDraining = true;
    if (this.server.listening) this.server.close();
    for (const s of this.sessions.keys()) if (!s.closed && !s.destroyed) s.close();
  }

  async whenIdle(): Promise<void> {
    while (this.inflight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** At the drain timeout: reset every app session still open (streams see a reset, not a generated answer). */
  resetInFlight(reason: 'local_shutdown'): void {
    for (const s of this.sessions.keys()) {
      if (s.destroyed) continue;
      s.destroy(new Error(reason), http2.constants.NGHTTP2_INTERNAL_ERROR);
      this.emit('downstreamReset', reason);
    }
  }

  resetAll(_reason: 'local_shutdown'): void {
    for (const s of this.downstreams) if (!s.destroyed) resetSocket(s);
  }

  // H2ExchangeHost -----------------------------------------------------------------------------------------

  rescued(reason: H2ErrorReason): void {
    this.emit('streamRescued', reason);
  }

  streamEnded(outcome: H2StreamOutcome, reason: H2ErrorReason | undefined): void {
    this.emit('streamEnded', outcome, reason);
  }

  // ------------------------------------------------------------------------------------------------------

  private readonly onStreamClose = (): void => {
    if (--this.inflight === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  };

  private armStallSweep(): void {
    if (this.stallSweep !== undefined || this.sessions.size === 0) return;
    this.stallSweep = this.clock.setTimeout(this.onStallSweep, APP_STALL_SWEEP_MS);
  }

  private readonly onStallSweep = (): void => {
    this.stallSweep = undefined;
    for (const [session, watch] of this.sessions) if (!session.destroyed) watch.tick();
    this.armStallSweep();
  };

  /**
   * More header fields than http.maxHeaderCount (+ the 4 request pseudo-headers), as the HTTP/1 listener's 431
   * (RFC 6585 §5): answered here, nothing sent upstream. gRPC: trailers-only RESOURCE_EXHAUSTED (8), what gRPC
   * uses for metadata over a limit; plain h2: 431. The rest of an upload is dropped (RST_STREAM NO_ERROR).
   */
  private refuseHeaders(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, max: number): void {
    stream.on('error', () => {});
    try {
      answerLocally(stream, isGrpcRequest(headers), 431, '8', `request has more than ${max} header fields`, 'protocol_error');
      if (!stream.endAfterHeaders) {
        stream.resume();
        stream.close(http2.constants.NGHTTP2_NO_ERROR);
      }
    } catch {
      stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR);
    }
    this.emit('streamEnded', 'failed', 'protocol_error');
  }

  private reject(s: Socket, reason: DownstreamRejectReason): void {
    resetSocket(s);
    this.emit('downstreamRejected', reason);
  }
}
