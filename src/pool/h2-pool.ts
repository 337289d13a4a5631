/**
 * Multiplexed pool policy for one h2 route (issue 13): upstream sessions (UpstreamConn + H2Driver) in one
 * set per session state (connecting, ready, full, draining); only `place` moves a session between sets, so
 * counts are derived and cannot drift. Every session belongs to one endpoint of the route (issue 14): a new
 * stream picks an endpoint by P2C with its open streams as the load, then goes to that endpoint's oldest ready
 * session with capacity (fill-first within the endpoint: few sessions, so spare ones go idle and are closed
 * after idleTimeoutMs, busy sessions are read from all the time and rarely need a ping-before-use; one death
 * still takes at most maxConcurrentStreams streams), else a new session to it, up to maxConnections; past
 * that, a ready session of another endpoint, else callers wait in a bounded FIFO. A session that dies of a
 * dead-peer reason (ping_timeout included) or a failed connect ejects its endpoint (endpoint-glue, as Pool).
 *
 * Like Pool, it emits connected / connectFailed / sockoptFailed / closed (metrics and logs subscribe), and
 * the h2 events (PING, GOAWAY) on `h2events`. It never imports metrics or logging.
 */
import { EventEmitter, once } from 'node:events';
import type { H2Config, PoolConfig } from '../config/index.js';
import type { AcquireFailure, CloseReason } from '../errors.js';
import { AcquireError, DEAD_PEER_REASONS } from '../errors.js';
import { classifyConnectError, hasNoAckEvidence } from '../liveness/index.js';
import { readTcpInfo } from '../sockopts/index.js';
import type { Clock, Timer } from '../util/clock.js';
import { UpstreamConn } from './conn.js';
import type { ConnOwner } from './conn.js';
import { establish, openSocket } from './connector.js';
import { CONNECT_FAILURES, createRouteEndpoints, ejectEndpoint, shouldProbe } from './endpoint-glue.js';
import type { EndpointOwner } from './endpoint-glue.js';
import type { EjectReason, Endpoint, EndpointSet } from './endpoints.js';
import { H2Driver } from './h2-driver.js';
import type { H2DriverHooks, H2PingKind, H2Requester, H2SessionState } from './h2-driver.js';
import type { PoolEvents, PoolStats } from './pool.js';
import type { ResolveFn } from './resolver.js';
import { transition } from './state.js';
import type { ConnEvent, ConnState } from './state.js';

/** Ceiling of the periodic PING back-off: gRFC A8's 2 h (the PING floor of a gRPC server with no calls). */
export const MAX_PING_INTERVAL_MS = 2 * 3600_000;

/** Most callers waiting for a stream slot when maxConnections sessions are full; more fail with overflow. */
export const H2_MAX_PENDING = 1024;
/** Longest wait in that queue (then pending_timeout), as http.pendingTimeoutMs's default. */
export const H2_PENDING_TIMEOUT_MS = 5000;

/** GOAWAY debug data gRPC servers send when we ping too often (gRFC A8). */
const TOO_MANY_PINGS = 'too_many_pings';
const { NGHTTP2_ENHANCE_YOUR_CALM } = { NGHTTP2_ENHANCE_YOUR_CALM: 0xb };

export interface H2PoolEvents {
  pingSent: [conn: UpstreamConn, kind: H2PingKind];
  pingAcked: [conn: UpstreamConn, rttMs: number];
  pingTimedOut: [conn: UpstreamConn];
  goawayReceived: [conn: UpstreamConn, code: number, lastStreamId: number, debug: string];
  /** The route's periodic PING interval was doubled after GOAWAY too_many_pings. */
  pingBackoff: [intervalMs: number];
}

/** ACK-evidence sweep period while some session has streams open (as the HTTP listener's sweep). */
const SWEEP_MS = 100;

export interface H2PoolOptions {
  /**
   * ACK evidence (issue 8's early check, for h2): every 100 ms while streams are open, a session whose
   * TCP_INFO shows bytes unacknowledged for afterMs and retransmitted gets a confirming PING and no new
   * streams. Undefined = off.
   */
  readonly ackEvidenceAfterMs?: number | undefined;
  /** Name resolution (tests pass a fake); default: c-ares with upstream.dnsServers or the system's resolv.conf. */
  readonly resolve?: ResolveFn | undefined;
  /** Uniform [0, 1) for P2C and jitter (tests pass a seeded one). */
  readonly random?: (() => number) | undefined;
}

const CONNECTED: ConnEvent = { type: 'connected' };
const LEASE: ConnEvent = { type: 'lease' };
const RELEASE: ConnEvent = { type: 'release' };

interface Waiter {
  readonly r: H2Requester;
  readonly timer: Timer | undefined;
}

export class H2Pool extends EventEmitter<PoolEvents> implements ConnOwner, H2DriverHooks, EndpointOwner {
  /** One set per session state; a live session is in exactly one. */
  private readonly sets: Record<H2SessionState, Set<UpstreamConn>> = {
    connecting: new Set(),
    ready: new Set(),
    full: new Set(),
    draining: new Set(),
  };
  /** The set each live session is in (so `place` moves it only when its state changed). */
  private readonly filed = new Map<UpstreamConn, H2SessionState>();
  /** Requesters waiting for a connecting session, by session (at most maxConcurrentStreams each). */
  private readonly connectWaiters = new Map<UpstreamConn, H2Requester[]>();
  private readonly connectTimers = new Map<UpstreamConn, Timer>();
  /** The bounded FIFO of callers waiting for a stream slot (insertion order; a cancelled one leaves at once). */
  private readonly waiters = new Map<H2Requester, Waiter>();
  /** Connect failures each requester met (failure path only): it tries another endpoint at most once each. */
  private readonly connectTries = new WeakMap<H2Requester, number>();
  private readonly idleTimers = new Map<UpstreamConn, Timer>();
  /**
   * SETTINGS_MAX_CONCURRENT_STREAMS each endpoint's last session was sent: the stream budget of its next
   * connecting session (so a burst opens about ceil(N / limit) sessions, not N / our cap and then a re-queue).
   */
  private readonly learnedMax = new WeakMap<Endpoint, number>();
  private sweepTimer: Timer | undefined;
  private nextId = 1;
  private isClosing = false;
  /** The route's periodic PING interval; doubled (and counted) on GOAWAY too_many_pings. */
  private currentPingIntervalMs: number;
  readonly h2events = new EventEmitter<H2PoolEvents>();
  private readonly origin: string;
  /** The route's endpoints (resolved addresses) with their states, as Pool's. */
  readonly endpoints: EndpointSet;

  constructor(
    readonly config: PoolConfig,
    readonly h2: H2Config,
    private readonly clock: Clock,
    private readonly options: H2PoolOptions = {},
  ) {
    super();
    this.currentPingIntervalMs = h2.pingIntervalMs;
    const host = config.upstream.host.includes(':') ? `[${config.upstream.host}]` : config.upstream.host;
    this.origin = `http://${host}:${config.upstream.port}`;
    const streams = (ep: Endpoint): number => this.streamsOf(ep);
    this.endpoints = createRouteEndpoints(config, clock, { resolve: options.resolve, load: streams, inFlight: streams, ...(options.random !== undefined ? { random: options.random } : {}) }, this);
  }

  /** The P2C load of an endpoint: its open and held streams, and the streams waiting for its connects. */
  private streamsOf(ep: Endpoint): number {
    let n = 0;
    for (const c of ep.conns.leased) n += (c.h2?.openStreams ?? 0) + (c.h2?.heldCount ?? 0);
    for (const c of ep.conns.connecting) n += this.connectWaiters.get(c)?.length ?? 0;
    return n;
  }

  start(): void {
    // No warm sessions: the first stream opens one.
    void this.endpoints.start();
  }

  /** Sessions per state, for h2_sessions{state}. */
  sessionCounts(): Record<H2SessionState, number> {
    const s = this.sets;
    return { connecting: s.connecting.size, ready: s.ready.size, full: s.full.size, draining: s.draining.size };
  }

  /** As Pool.stats(): idle = sessions without a stream, leased (active) = sessions with streams. */
  stats(): PoolStats {
    let idle = 0;
    let leased = 0;
    for (const set of [this.sets.ready, this.sets.full, this.sets.draining]) {
      for (const c of set) {
        if ((c.h2?.openStreams ?? 0) > 0) leased++;
        else idle++;
      }
    }
    const connecting = this.sets.connecting.size;
    return { connecting, idle, leased, total: connecting + idle + leased };
  }

  /** Sessions without a stream (the fd budget counts them like idle pooled connections). */
  get idleCount(): number {
    let n = 0;
    for (const c of this.sets.ready) if ((c.h2?.openStreams ?? 0) === 0) n++;
    return n;
  }

  get pendingCount(): number {
    return this.waiters.size;
  }

  get pingIntervalMsNow(): number {
    return this.currentPingIntervalMs;
  }

  private get total(): number {
    const s = this.sets;
    return s.connecting.size + s.ready.size + s.full.size + s.draining.size;
  }

  *connections(): Iterable<UpstreamConn> {
    for (const set of Object.values(this.sets)) yield* set;
  }

  /**
   * Finds a stream slot for `r`: the oldest ready session (its ping-before-use may hold `r` briefly), else a
   * connecting session with room, else a new session, else the bounded queue. The answer comes through `r`.
   */
  checkout(r: H2Requester, avoid?: Endpoint): void {
    if (this.isClosing) {
      r.onSessionFailed(new AcquireError('shutting_down', 'the sidecar is shutting down'));
      return;
    }
    if (!this.endpoints.hasSet) {
      // The upstream name has not resolved yet (first round under way, or failing): wait for the first round.
      void this.endpoints.start().then(() => {
        if (r.isGone) return;
        if (this.endpoints.hasSet || this.isClosing) this.checkout(r, avoid);
        else r.onSessionFailed(new AcquireError('resolve_failed', `route ${this.config.name}: ${this.config.upstream.host} has not resolved yet (${this.endpoints.lastResolveError ?? 'no answer'})`));
      });
      return;
    }
    const ep = this.endpoints.pick(avoid);
    if (ep === undefined) {
      r.onSessionFailed(new AcquireError('resolve_failed', `route ${this.config.name}: no endpoint for ${this.config.upstream.host}`));
      return;
    }
    const driver = this.pickReady(ep);
    if (driver !== undefined) {
      driver.use(r);
      return;
    }
    if (this.joinConnect(ep, r)) return;
    if (this.total < this.config.maxConnections) {
      this.connect(ep, [r]);
      return;
    }
    // No slot for a session to the picked endpoint: a ready session of another eligible one, if any.
    const other = this.pickReady(undefined, avoid);
    if (other !== undefined) {
      other.use(r);
      return;
    }
    // A session with no stream counts against maxConnections only while it is usable: draining ones with no
    // stream are closing on their own.
    if (this.waiters.size >= H2_MAX_PENDING) {
      r.onSessionFailed(new AcquireError('overflow', `route ${this.config.name}: ${this.config.maxConnections} h2 sessions full and ${H2_MAX_PENDING} streams waiting`));
      return;
    }
    const waiter: Waiter = {
      r,
      timer: this.clock.setTimeout(() => {
        if (this.waiters.get(r) !== waiter) return;
        this.waiters.delete(r);
        r.onSessionFailed(new AcquireError('pending_timeout', `route ${this.config.name}: no h2 stream slot within ${H2_PENDING_TIMEOUT_MS} ms`));
      }, H2_PENDING_TIMEOUT_MS),
    };
    this.waiters.set(r, waiter);
  }

  /** The stream budget of a session to `ep` before its SETTINGS: the last one learned, else our cap. */
  private budgetOf(ep: Endpoint): number {
    return Math.min(this.h2.maxConcurrentStreams, this.learnedMax.get(ep) ?? Infinity);
  }

  /** The waiter list of a connect under way to `ep` with room in its budget (undefined: none). */
  private connectWithRoom(ep: Endpoint): H2Requester[] | undefined {
    const budget = this.budgetOf(ep);
    for (const conn of ep.conns.connecting) {
      const list = this.connectWaiters.get(conn);
      if (list !== undefined && list.length < budget && conn.closeReason === undefined) return list;
    }
    return undefined;
  }

  private hasConnectRoom(ep: Endpoint): boolean {
    return this.connectWithRoom(ep) !== undefined;
  }

  /** Joins a connect under way to `ep` that has room in its budget (false: none). */
  private joinConnect(ep: Endpoint, r: H2Requester): boolean {
    const list = this.connectWithRoom(ep);
    list?.push(r);
    return list !== undefined;
  }

  /**
   * The caller went away (the app reset its stream or its session closed) while it may still be queued: it
   * leaves the queue now, so it no longer counts against H2_MAX_PENDING until its pending timeout.
   */
  cancel(r: H2Requester): void {
    const w = this.waiters.get(r);
    if (w === undefined) return;
    this.waiters.delete(r);
    w.timer?.clear();
  }

  /**
   * The oldest usable session with capacity (fill-first) of endpoint `ep`, or (`ep` undefined) of any eligible
   * endpoint but `avoid`; retires sessions past their max age on the way.
   */
  private pickReady(ep: Endpoint | undefined, avoid?: Endpoint): H2Driver | undefined {
    let best: UpstreamConn | undefined;
    const now = this.clock.now();
    for (const c of this.sets.ready) {
      if (ep !== undefined ? c.endpoint !== ep : c.endpoint === avoid || !this.endpoints.isEligible(c.endpoint)) continue;
      if (now >= c.maxAgeAt) {
        this.retire(c, 'max_age');
        continue;
      }
      if (best === undefined || c.id < best.id) best = c;
    }
    return best?.h2;
  }

  /** Closes every session with local_shutdown; waiters fail with shutting_down. Resolves once sockets closed. */
  async close(): Promise<void> {
    this.isClosing = true;
    this.sweepTimer?.clear();
    this.endpoints.close();
    const conns = [...this.connections()];
    const closed = conns.map((c) => (c.socket.closed ? undefined : once(c.socket, 'close')));
    for (const c of conns) this.fail(c, 'local_shutdown');
    const waiting = [...this.waiters.values()];
    this.waiters.clear();
    for (const w of waiting) {
      w.timer?.clear();
      w.r.onSessionFailed(new AcquireError('shutting_down', 'the sidecar is shutting down'));
    }
    await Promise.all(closed);
  }

  /** Ends a session now with `reason` (first cause wins). */
  fail(conn: UpstreamConn, reason: CloseReason): void {
    const decided = conn.decideReason({ kind: 'local', reason });
    const waiting = this.connectWaiters.get(conn);
    if (waiting !== undefined) {
      this.connectWaiters.delete(conn);
      const err = new AcquireError(this.isClosing ? 'shutting_down' : 'connect_error', `connect abandoned: ${decided}`);
      for (const r of waiting) r.onSessionFailed(err);
    }
    this.connectTimers.get(conn)?.clear();
    this.connectTimers.delete(conn);
    if (conn.h2 !== undefined) conn.h2.destroy(decided);
    else conn.socket.destroy();
    this.place(conn);
  }

  /** Graceful retirement: no new streams, GOAWAY, closes when its streams end. */
  private retire(conn: UpstreamConn, reason: CloseReason): void {
    const decided = conn.decideReason({ kind: 'local', reason });
    if (conn.h2 !== undefined && conn.h2.openStreams === 0) this.fail(conn, decided);
    else conn.h2?.drain(decided);
    this.place(conn);
  }

  // Session opening --------------------------------------------------------------------------------------

  /** Opens a session to `ep` for `requesters` (none: a probe of an ejected endpoint). */
  private connect(ep: Endpoint, requesters: H2Requester[]): void {
    const socket = openSocket(ep.address, ep.port);
    const conn = new UpstreamConn(this.nextId++, this.config.name, socket, this.clock.now(), true, this, this.config.keepalive.userTimeoutMs, undefined, ep);
    this.sets.connecting.add(conn);
    ep.conns.connecting.add(conn);
    this.filed.set(conn, 'connecting');
    this.connectWaiters.set(conn, requesters);
    this.connectTimers.set(conn, this.clock.setTimeout(() => this.connectFailed(conn, 'connect_timeout', undefined), this.config.connectTimeoutMs));
  }

  /** Ends the connect under way for `conn` (nothing was sent on it); returns its waiters, if it had one. */
  private dropConnect(conn: UpstreamConn, reason: AcquireFailure): H2Requester[] | undefined {
    const waiting = this.connectWaiters.get(conn);
    if (waiting === undefined) return undefined;
    this.connectWaiters.delete(conn);
    this.connectTimers.get(conn)?.clear();
    this.connectTimers.delete(conn);
    this.setConnState(conn, transition(conn.state, { type: 'connect_failed', reason }, this.clock.now()).next);
    this.sets.connecting.delete(conn);
    this.filed.delete(conn);
    if (!conn.socket.destroyed) conn.socket.destroy();
    return waiting;
  }

  private connectFailed(conn: UpstreamConn, reason: AcquireFailure, err: unknown): void {
    const waiting = this.dropConnect(conn, reason);
    if (waiting === undefined) return;
    this.emit('connectFailed', reason, err, this.clock.now() - conn.openedAt);
    const ep = conn.endpoint;
    this.ejectEndpoint(conn, reason, err, true);
    const failure = new AcquireError(reason, `connect to ${this.config.upstream.host} (${ep.key}) failed: ${reason}`, { cause: err });
    for (const r of waiting) {
      if (r.isGone) continue;
      // Nothing was sent: another endpoint is tried, once each, while one is eligible.
      const tries = (this.connectTries.get(r) ?? 0) + 1;
      this.connectTries.set(r, tries);
      const other = this.endpoints.pick(ep);
      if (CONNECT_FAILURES.has(reason) && !this.isClosing && other !== undefined && other !== ep && tries < this.endpoints.size) this.checkout(r, ep);
      else r.onSessionFailed(failure);
    }
    this.serveWaiters();
  }

  /**
   * Connects under way to an endpoint that was just ejected (or removed) are given up, their streams placed
   * elsewhere now instead of waiting out connectTimeoutMs on a dead address (nothing was sent on them).
   */
  private abandonConnects(ep: Endpoint): void {
    for (const c of [...ep.conns.connecting]) {
      const waiting = this.connectWaiters.get(c);
      if (waiting === undefined || waiting.length === 0) continue;
      for (const r of this.dropConnect(c, 'connect_error') ?? []) if (!r.isGone) this.checkout(r, ep);
    }
  }

  /** Ejects the endpoint of a session that died of a dead-peer reason or whose connect failed (endpoint-glue). */
  private ejectEndpoint(conn: UpstreamConn, reason: EjectReason, err: unknown, isConnectFailure = false): void {
    // h2 sessions to a dead endpoint's path always go (as before endpoints: http.siblingEviction is HTTP/1's).
    const { isRetireIdle, isEligible } = ejectEndpoint(this.endpoints, conn.endpoint, reason, err, isConnectFailure, true);
    if (isRetireIdle) this.evictSiblings(conn);
    if (!isEligible) this.abandonConnects(conn.endpoint);
  }

  // EndpointOwner ------------------------------------------------------------------------------------------

  /** Gone from DNS: sessions without streams go now; busy ones get no new stream (drain) and finish. */
  endpointRemoved(ep: Endpoint): void {
    this.abandonConnects(ep);
    for (const c of [...ep.conns.idle, ...ep.conns.leased]) this.retire(c, 'endpoint_removed');
  }

  /** The back-off of an ejected endpoint is over: one probe session (idle on success, used or closed later). */
  probeEndpoint(ep: Endpoint): void {
    if (shouldProbe(this.endpoints, ep, this.isClosing, this.total < this.config.maxConnections)) this.connect(ep, []);
  }

  endpointsResolved(): void {
    // No warm sessions to open.
  }

  // ConnOwner ----------------------------------------------------------------------------------------------

  connConnectFailed(conn: UpstreamConn, err: unknown): void {
    this.connectFailed(conn, classifyConnectError(err, false), err);
  }

  connConnected(conn: UpstreamConn): void {
    const waiting = this.connectWaiters.get(conn);
    if (waiting === undefined) return;
    this.connectWaiters.delete(conn);
    this.connectTimers.get(conn)?.clear();
    this.connectTimers.delete(conn);
    const socket = conn.socket;
    const now = this.clock.now();
    for (const f of establish(conn, this.config, now)) this.emit('sockoptFailed', conn, f);
    this.setConnState(conn, transition(conn.state, CONNECTED, now).next);
    conn.h2 = new H2Driver(conn, socket, this.origin, this.h2, this.clock, this, this.learnedMax.get(conn.endpoint));
    this.place(conn);
    this.emit('connected', conn, now - conn.openedAt);
    this.endpoints.noteConnected(conn.endpoint);
    const driver = conn.h2;
    const live = waiting.filter((r) => !r.isGone);
    if (conn.endpoint.state === 'removed') {
      // It left DNS while this session connected: its streams go elsewhere.
      this.fail(conn, 'endpoint_removed');
      for (const r of live) this.checkout(r, conn.endpoint);
      this.serveWaiters();
      return;
    }
    // Held until the upstream's first SETTINGS (its real stream limit), then granted up to it (grant).
    for (const r of live) {
      if (driver.isUsable && driver.capacity > 0) driver.use(r);
      else this.checkout(r);
    }
    this.serveWaiters();
  }

  connEnded(conn: UpstreamConn): void {
    // The upstream sent FIN (peer_closed is decided): it can send nothing more, so no stream open on the
    // session can ever get its answer. node:http2 does not close a session on FIN of a half-open socket
    // (ours are allowHalfOpen, see connector.ts), and with no PING due the streams would hang: end it now;
    // fail() keeps the reason the FIN decided (first cause wins); the streams get it and the rescue rules apply.
    this.fail(conn, 'peer_closed');
  }

  connFailed(conn: UpstreamConn, reason: CloseReason): void {
    this.fail(conn, reason);
  }

  connClosed(conn: UpstreamConn): void {
    const wasConnected = conn.connectedAt !== undefined;
    this.connectFailed(conn, 'connect_error', conn.closeError);
    const reason = conn.decideReason({ kind: 'local', reason: 'other' });
    // Ejected first, so streams held for this session are placed on another endpoint.
    if (wasConnected && DEAD_PEER_REASONS.has(reason)) this.ejectEndpoint(conn, reason, conn.closeError);
    conn.h2?.destroy(reason);
    this.idleTimers.get(conn)?.clear();
    this.idleTimers.delete(conn);
    this.place(conn);
    if (conn.state.state !== 'closed') this.setConnState(conn, transition(conn.state, { type: 'fail', reason }, this.clock.now()).next);
    this.place(conn);
    if (!wasConnected) return;
    const now = this.clock.now();
    const s = conn.socket;
    this.emit('closed', conn, {
      reason,
      ageMs: now - (conn.connectedAt ?? now),
      sinceLastRecvMs: now - Math.max(conn.lastRecvAt, conn.h2?.lastReadAt ?? 0),
      bytesRead: s.bytesRead,
      bytesWritten: s.bytesWritten,
      err: conn.closeError,
    });
    this.serveWaiters();
  }

  /**
   * Retires every session without streams of the same endpoint as `dead` (sibling_evicted); sessions of other
   * endpoints are untouched, busy ones finish (their endpoint, ejected, gets no new streams).
   */
  evictSiblings(dead: UpstreamConn): number {
    let n = 0;
    for (const c of [...dead.endpoint.conns.idle]) {
      if (c !== dead && c.h2 !== undefined && c.h2.openStreams === 0 && c.h2.heldCount === 0 && c.closeReason === undefined) {
        this.fail(c, 'sibling_evicted');
        n++;
      }
    }
    return n;
  }

  // H2DriverHooks ------------------------------------------------------------------------------------------

  sessionChanged(driver: H2Driver): void {
    this.place(driver.conn);
    if (driver.state === 'ready') this.serveWaiters();
  }

  sessionBusy(_driver: H2Driver): void {
    if (this.sweepTimer === undefined && this.options.ackEvidenceAfterMs !== undefined) {
      this.sweepTimer = this.clock.setTimeout(() => this.sweep(), SWEEP_MS);
    }
  }

  /**
   * One pass over the busy sessions: TCP_INFO (one getsockopt each) for ACK evidence (liveness/ack-evidence).
   * Retransmission is required on top of "unacked and no ACK for afterMs": a session idle for a while has an
   * old last-ACK time the moment it writes again, and that alone proves nothing.
   */
  private sweep(): void {
    this.sweepTimer = undefined;
    const afterMs = this.options.ackEvidenceAfterMs;
    if (afterMs === undefined || this.isClosing) return;
    let isAnyBusy = false;
    for (const set of [this.sets.ready, this.sets.full]) {
      for (const c of set) {
        const d = c.h2;
        if (d === undefined || d.openStreams === 0) continue;
        isAnyBusy = true;
        if (d.isPingOutstanding) continue;
        const info = readTcpInfo(c.socket);
        if (info !== undefined && (info.retransmits > 0 || info.backoff > 0 || info.probes > 0) && hasNoAckEvidence(info, afterMs)) d.suspect();
      }
    }
    if (isAnyBusy) this.sweepTimer = this.clock.setTimeout(() => this.sweep(), SWEEP_MS);
  }

  settingsReceived(driver: H2Driver, maxConcurrentStreams: number): void {
    this.learnedMax.set(driver.conn.endpoint, maxConcurrentStreams);
  }

  settingsTimedOut(driver: H2Driver, reason: CloseReason): void {
    // As a PING timeout: ejected before the held streams are placed again (they go to another endpoint).
    this.place(driver.conn);
    if (DEAD_PEER_REASONS.has(reason)) this.ejectEndpoint(driver.conn, reason as EjectReason, undefined);
  }

  grant(driver: H2Driver, requesters: readonly H2Requester[]): void {
    for (const r of requesters) {
      if (r.isGone) continue;
      if (driver.isUsable && driver.capacity > 0) r.onSession(driver);
      else this.checkout(r);
    }
    this.place(driver.conn);
  }

  requeue(requesters: readonly H2Requester[], reason: CloseReason, from?: H2Driver): void {
    // Placed again on another endpoint when there is one (a dead-peer death has ejected `from`'s already).
    const avoid = from?.conn.endpoint;
    for (const r of requesters) {
      if (r.isGone) continue;
      r.onRequeued(reason);
      if (!r.isGone) this.checkout(r, avoid);
    }
  }

  pingSent(driver: H2Driver, kind: H2PingKind): void {
    this.h2events.emit('pingSent', driver.conn, kind);
  }

  pingAcked(driver: H2Driver, rttMs: number): void {
    this.h2events.emit('pingAcked', driver.conn, rttMs);
  }

  pingTimedOut(driver: H2Driver): void {
    this.h2events.emit('pingTimedOut', driver.conn);
    // Before the held streams are placed again: the endpoint is ejected (no new streams, its idle sessions
    // retired: they share the path that just proved dead).
    this.place(driver.conn);
    this.ejectEndpoint(driver.conn, 'ping_timeout', undefined);
  }

  goawayReceived(driver: H2Driver, code: number, lastStreamId: number, debug: string): void {
    this.h2events.emit('goawayReceived', driver.conn, code, lastStreamId, debug);
    if (code === NGHTTP2_ENHANCE_YOUR_CALM && debug.includes(TOO_MANY_PINGS)) {
      // Capped at gRFC A8's 2 h (a server's floor without calls): unbounded doubling by a hostile or buggy
      // upstream's GOAWAYs would pass 2^31-1 ms, which setTimeout clamps to 1 ms (a timer spinning per session).
      this.currentPingIntervalMs = Math.min(this.currentPingIntervalMs * 2, MAX_PING_INTERVAL_MS);
      this.h2events.emit('pingBackoff', this.currentPingIntervalMs);
    }
  }

  pingIntervalMs(): number {
    return this.currentPingIntervalMs;
  }

  resetBudgetSpent(driver: H2Driver): void {
    this.retire(driver.conn, 'reset_budget');
  }

  // --------------------------------------------------------------------------------------------------------

  /**
   * Files a session in the set of its current state; the only code that moves sessions between sets. Also
   * keeps the ConnState (idle / leased) in step for /debug and upstream_connections, and arms the idle timer.
   */
  private place(conn: UpstreamConn): void {
    const driver = conn.h2;
    const isClosed = conn.socket.destroyed && conn.state.state === 'closed';
    let next: H2SessionState | undefined;
    if (isClosed) next = undefined;
    else if (driver === undefined) next = conn.connectedAt === undefined && conn.closeReason === undefined ? 'connecting' : 'draining';
    else next = driver.state;
    const prev = this.filed.get(conn);
    if (prev !== next) {
      if (prev !== undefined) this.sets[prev].delete(conn);
      if (next === undefined) this.filed.delete(conn);
      else {
        this.filed.set(conn, next);
        this.sets[next].add(conn);
      }
    }
    if (next === undefined) return;
    if (driver === undefined || conn.state.state === 'closed' || conn.state.state === 'connecting') return;
    const isBusy = driver.openStreams > 0 || driver.heldCount > 0;
    const now = this.clock.now();
    if (isBusy && conn.state.state === 'idle') this.setConnState(conn, transition(conn.state, LEASE, now).next);
    else if (!isBusy && conn.state.state === 'leased') this.setConnState(conn, transition(conn.state, RELEASE, now).next);
    if (!isBusy) {
      // Streams answered on a live session of an ejected endpoint whose back-off is over (used anyway under the
      // panic threshold) prove it as a probe would (as Pool.release).
      if (conn.endpoint.isProbeDue && conn.closeReason === undefined) this.endpoints.noteConnected(conn.endpoint);
      if (driver.isDraining || conn.closeReason !== undefined) {
        // A draining session whose last stream ended: node:http2 closes it; make sure the socket goes.
        if (!driver.session.destroyed && driver.session.closed) driver.destroy(conn.decideReason({ kind: 'local', reason: 'goaway' }));
      } else {
        this.armIdle(conn);
      }
    }
  }

  /**
   * Changes a session's ConnState and, in the same step, its endpoint's sets (idle: no stream; leased: streams
   * open or held), so the endpoint's counts cannot drift. A removed endpoint whose last session closed is
   * forgotten here.
   */
  private setConnState(conn: UpstreamConn, next: ConnState): void {
    const prev = conn.state.state;
    const ep = conn.endpoint;
    if (prev === next.state) {
      conn.state = next;
      return;
    }
    if (prev !== 'closed') ep.conns[prev].delete(conn);
    conn.state = next;
    if (next.state !== 'closed') ep.conns[next.state].add(conn);
    else if (ep.state === 'removed') this.endpoints.forget(ep);
  }

  /** Idle timer, armed lazily: it re-checks when it fires (no clear/arm per stream). */
  private armIdle(conn: UpstreamConn): void {
    if (this.idleTimers.has(conn)) return;
    const driver = conn.h2;
    if (driver === undefined) return;
    const due = Math.max(1, driver.idleSince + this.h2.idleTimeoutMs - this.clock.now());
    this.idleTimers.set(
      conn,
      this.clock.setTimeout(() => {
        this.idleTimers.delete(conn);
        if (conn.closeReason !== undefined || driver.openStreams > 0 || driver.heldCount > 0) return;
        if (this.clock.now() - driver.idleSince >= this.h2.idleTimeoutMs) this.fail(conn, 'idle_evicted');
        else this.armIdle(conn);
      }, due),
    );
  }

  /** Hands freed capacity to queued callers, FIFO. */
  private serveWaiters(): void {
    for (const w of this.waiters.values()) {
      if (w.r.isGone) {
        this.waiters.delete(w.r);
        w.timer?.clear();
        continue;
      }
      const ep = this.endpoints.pick();
      if (ep === undefined) return;
      const driver = this.pickReady(ep) ?? this.pickReady(undefined);
      // A connect under way with room takes it before a new session is opened (no session per waiter).
      if (driver === undefined && this.total >= this.config.maxConnections && !this.hasConnectRoom(ep)) return;
      this.waiters.delete(w.r);
      w.timer?.clear();
      if (driver !== undefined) driver.use(w.r);
      else if (!this.joinConnect(ep, w.r)) this.connect(ep, [w.r]);
    }
  }
}
