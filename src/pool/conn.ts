/**
 * One upstream connection and everything about it: its socket (this is the only code that attaches socket
 * listeners; undici's Client adds its own once the H1 driver hands it the socket), its protocol driver, its
 * idle reader, its in-flight accounting and `decideReason`, the one function that decides why it closed.
 * Only the pool changes `state`; the proxy updates the traffic fields (lastRecvAt, bytesSent) it alone
 * observes on a raw (tcp) connection.
 */
import type { Socket } from 'node:net';
import type { CloseReason, SocketSnapshot } from '../errors.js';
import { classifyError } from '../liveness/index.js';
import type { EffectiveSockopts } from '../sockopts/index.js';
import type { Clock, Timer } from '../util/clock.js';
import type { Endpoint } from './endpoints.js';
import type { H1Driver } from './h1-driver.js';
import type { H2Driver } from './h2-driver.js';
import type { ConnState } from './state.js';

/** Most bytes a raw (tcp) warm spare may receive while idle (a server greeting) before it is dropped. */
export const MAX_IDLE_DATA_BYTES = 64 * 1024;

/**
 * What can end a connection. Each source reports its cause to `decideReason`; none works the reason out.
 * - `error`: the socket's 'error' (the kernel's errno) or the driver's error (undici's onError, often the
 *   same error object one listener later, or undici's own framing error).
 * - `end`: the upstream's FIN.
 * - `local`: our own decision (timers, sweep, shutdown, the downstream went away, bad framing).
 */
export type CloseCause =
  | { readonly kind: 'error'; readonly err: unknown }
  | { readonly kind: 'end' }
  | { readonly kind: 'local'; readonly reason: CloseReason; readonly err?: unknown };

/** What a connection tells its pool about its socket (the pool never listens to the socket itself). */
export interface ConnOwner {
  /** The TCP handshake completed. */
  connConnected(conn: UpstreamConn): void;
  /** The socket failed before connecting. */
  connConnectFailed(conn: UpstreamConn, err: unknown): void;
  /** The upstream sent FIN (the reason is already decided). */
  connEnded(conn: UpstreamConn): void;
  /** The socket closed; `conn.closeReason` is final. */
  connClosed(conn: UpstreamConn): void;
  /** The connection must be retired now (idle reader: unsolicited or too many bytes). */
  connFailed(conn: UpstreamConn, reason: CloseReason): void;
}

/** The connection a socket belongs to, set once by its constructor (the socket listeners are shared functions). */
const kConn = Symbol('UpstreamConn');
type OwnedSocket = Socket & { [kConn]: UpstreamConn };

export class UpstreamConn {
  state: ConnState;
  /** Options as read back from the kernel right after connect. */
  sockopts: EffectiveSockopts | undefined;
  connectedAt: number | undefined;
  /** When the last byte arrived from the upstream (clock ms); the connect time until then. */
  lastRecvAt: number;
  /** Raw (tcp, tunnel) accounting: bytes we sent, and that count when the last byte arrived. */
  bytesSent = 0;
  sentAtLastRecv = 0;
  private reason: CloseReason | undefined;
  private reasonErr: unknown;
  /** Was ever leased (set by the pool when it moves the connection to `leased`): false for an unused spare. */
  hasBeenLeased = false;
  /** We sent FIN first (the downstream ended), so a later upstream FIN is not the peer's initiative. */
  hasLocalEnded = false;
  /**
   * Bytes received while idle (e.g. a server greeting on a tcp warm spare), handed to the next lease first.
   * Created by the first such chunk: an http connection never has any (an empty array each: 32 B, idle).
   */
  idleData: Buffer[] | undefined;
  idleDataBytes = 0;
  private isIdleReading = false;
  /** Jittered deadline after which the connection is not reused. */
  maxAgeAt = Infinity;
  /**
   * Idle and max-age timers, armed lazily and kept across lease/release cycles (see pool/evictor.ts): each
   * re-checks the state when it fires. `idleTimerAt` is when the connection's entry in the pool's shared idle
   * timer heap is due (Infinity: none), `idleDeadline` when the current idle period ends.
   */
  idleTimerAt = Infinity;
  idleDeadline = Infinity;
  maxAgeTimer: Timer | undefined;
  /** The remote address actually connected to (after DNS), for sibling eviction and logs. */
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  /** Our local port, kept after close (the socket forgets it), to tie close events to flows in logs and tests. */
  localPort: number | undefined;
  /**
   * http: idle timeout learned from the upstream's `Keep-Alive: timeout=N` hint, already minus a safety
   * margin; the pool uses the lower of this and its configured idle timeout.
   */
  idleTimeoutHintMs: number | undefined;
  /**
   * HTTP/2 driver (issue 13): set by the h2 pool once the socket is connected and configured; the session's
   * streams and PING outstanding are this connection's data in flight.
   */
  h2: H2Driver | undefined;

  constructor(
    readonly id: number,
    readonly route: string,
    readonly socket: Socket,
    readonly openedAt: number,
    forLease: boolean,
    private readonly owner: ConnOwner,
    /** TCP_USER_TIMEOUT in force (0 = none): ETIMEDOUT with data in flight is then user_timeout. */
    private readonly userTimeoutMs: number,
    /** The protocol driver: undefined = raw byte pipe (tcp); H1Driver = HTTP/1 via undici. */
    readonly h1: H1Driver | undefined,
    /** The endpoint (address:port of the route) this connection goes to; fixed for its life. */
    readonly endpoint: Endpoint,
  ) {
    this.state = { state: 'connecting', since: openedAt, forLease };
    this.lastRecvAt = openedAt;
    // Every listener this connection needs, attached in the tick the socket was created (STYLE §9). Shared
    // functions that find the connection on the socket, not closures per connection (an idle pooled
    // connection then holds three closures and a context fewer).
    (socket as OwnedSocket)[kConn] = this;
    socket.on('error', UpstreamConn.onSocketError);
    socket.on('end', UpstreamConn.onSocketEnd);
    socket.on('close', UpstreamConn.onSocketClose);
    socket.once('connect', UpstreamConn.onSocketConnect);
  }

  private static onSocketError(this: Socket, err: Error): void {
    const conn = (this as OwnedSocket)[kConn];
    if (conn.connectedAt === undefined && conn.state.state === 'connecting') conn.owner.connConnectFailed(conn, err);
    else conn.decideReason({ kind: 'error', err });
  }

  private static onSocketEnd(this: Socket): void {
    const conn = (this as OwnedSocket)[kConn];
    conn.decideReason({ kind: 'end' });
    conn.owner.connEnded(conn);
  }

  private static onSocketClose(this: Socket): void {
    const conn = (this as OwnedSocket)[kConn];
    conn.owner.connClosed(conn);
  }

  private static onSocketConnect(this: Socket): void {
    const conn = (this as OwnedSocket)[kConn];
    conn.owner.connConnected(conn);
  }

  /** The decided close reason (undefined while nothing ended the connection). */
  get closeReason(): CloseReason | undefined {
    return this.reason;
  }

  get closeError(): unknown {
    return this.reasonErr;
  }

  /**
   * The one function that decides why this connection closed: the first cause wins and is never revised; every
   * later cause gets the decided reason back. The inputs are the cause and the driver's real state, so the
   * same death gives the same reason whichever event (socket 'error' or undici's onError) reports it first.
   */
  decideReason(cause: CloseCause): CloseReason {
    if (this.reason !== undefined) return this.reason;
    switch (cause.kind) {
      case 'local':
        this.reasonErr = cause.err;
        this.reason = cause.reason;
        break;
      case 'end':
        this.reason = this.hasLocalEnded ? 'downstream_closed' : 'peer_closed';
        break;
      case 'error':
        this.reasonErr = cause.err;
        this.reason = classifyError(cause.err, {
          hasDataInFlight: this.hasDataInFlight,
          userTimeoutMs: this.userTimeoutMs,
          isUnsolicited: this.h1 !== undefined && !this.h1.hasRequestInFlight,
        });
        break;
    }
    return this.reason;
  }

  /** Called by the proxy for each chunk received from the upstream. */
  noteReceived(now: number): void {
    this.lastRecvAt = now;
    this.sentAtLastRecv = this.bytesSent;
  }

  /**
   * "Last write newer than last read" (liveness/classify): for HTTP/1, a request was written and its response
   * head has not arrived (the driver knows); for raw bytes (tcp, a WebSocket tunnel), more bytes sent than when the
   * last byte arrived.
   */
  get hasDataInFlight(): boolean {
    return this.h1?.isAwaitingHead === true || this.h2?.hasDataInFlight === true || this.bytesSent > this.sentAtLastRecv;
  }

  /**
   * Keep reading while idle: a paused socket would not notice FIN, RST or a keepalive death (libuv only polls
   * a socket it reads from). Raw: bytes that arrive (a greeting) are kept for the next lease, up to a bound.
   * HTTP/1: any byte while no request is outstanding is unsolicited, so the framing is lost: protocol_error,
   * never handed to a later request. Once undici's Client owns the socket it reads it itself, and its error
   * on unsolicited bytes decides protocol_error the same way (isUnsolicited in decideReason).
   */
  startIdleReader(clock: Clock): void {
    if (this.isIdleReading || this.h1?.hasClient === true) return;
    this.isIdleReading = true;
    this.idleClock = clock;
    this.socket.on('data', UpstreamConn.onIdleData);
    this.socket.resume();
  }

  stopIdleReader(): void {
    if (!this.isIdleReading) return;
    this.isIdleReading = false;
    this.socket.removeListener('data', UpstreamConn.onIdleData);
    this.socket.pause();
  }

  private idleClock: Clock | undefined;

  // Shared like the socket listeners above (not an arrow field: one closure and context per connection fewer).
  private static onIdleData(this: Socket, chunk: Buffer): void {
    const conn = (this as OwnedSocket)[kConn];
    conn.noteReceived(conn.idleClock?.now() ?? conn.lastRecvAt);
    if (conn.h1 !== undefined) {
      conn.owner.connFailed(conn, 'protocol_error');
      return;
    }
    (conn.idleData ??= []).push(chunk);
    conn.idleDataBytes += chunk.length;
    if (conn.idleDataBytes > MAX_IDLE_DATA_BYTES) conn.owner.connFailed(conn, 'protocol_error');
  }

  /** Reusable for another request: not failed, not ended by the peer, not destroyed. The one reuse check. */
  get isReusable(): boolean {
    const s = this.socket;
    return this.reason === undefined && !s.destroyed && !s.readableEnded;
  }

  snapshot(): SocketSnapshot {
    const s = this.socket;
    return {
      localAddress: s.localAddress,
      localPort: s.localPort,
      remoteAddress: s.remoteAddress ?? this.remoteAddress,
      remotePort: s.remotePort,
      bytesRead: s.bytesRead,
      bytesWritten: s.bytesWritten,
    };
  }
}
