/**
 * Multiplexed pool policy for one h2 route (issue 13): upstream sessions (UpstreamConn + H2Driver) in one
 * set per session state (connecting, ready, full, draining); only `place` moves a session between sets, so
 * counts are derived and cannot drift. A stream goes to the oldest ready session with capacity (fill-first:
 * few sessions, so spare ones go idle and are closed after idleTimeoutMs, busy sessions are read from all the
 * time and rarely need a ping-before-use; one death still takes at most maxConcurrentStreams streams). When
 * every session is full a new one is opened, up to maxConnections; past that, callers wait in a bounded FIFO.
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
import { configureSocket, openSocket } from './connector.js';
import { EndpointSet } from './endpoints.js';
import { H2Driver } from './h2-driver.js';
import type { H2DriverHooks, H2PingKind, H2Requester, H2SessionState } from './h2-driver.js';
import type { PoolEvents, PoolStats } from './pool.js';
import { createResolver } from './resolver.js';
import type { ResolveFn } from './resolver.js';
import { transition } from './state.js';
import type { ConnEvent } from './state.js';

/** Most callers waiting for a stream slot when maxConnections sessions are full; more fail with overflow. */
export const H2_MAX_PENDING = 1024;
/** Longest wait in that queue (then pending_timeout), as http.pendingTimeoutMs's default. */
export const H2_PENDING_TIMEOUT_MS = 5000;

/** Close reasons after which idle sessions to the same address are retired (they share the dead path). */
const SIBLING_EVICTING: ReadonlySet<CloseReason> = new Set<CloseReason>([...DEAD_PEER_REASONS, 'ping_timeout']);

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

export class H2Pool extends EventEmitter<PoolEvents> implements ConnOwner, H2DriverHooks {
  /** One set per session state; a live session is in exactly one. */
  private readonly sets: Record<H2SessionState, Set<UpstreamConn>> = {
    connecting: new Set(),
    ready: new Set(),
    full: new Set(),
    draining: new Set(),
  };
  /** Requesters waiting for a connecting session, by session (at most maxConcurrentStreams each). */
  /** The set each live session is in (so `place` moves it only when its state changed). */
  private readonly filed = new Map<UpstreamConn, H2SessionState>();
  private readonly connectWaiters = new Map<UpstreamConn, H2Requester[]>();
  private readonly connectTimers = new Map<UpstreamConn, Timer>();
  private readonly waiters: Waiter[] = [];
  private readonly idleTimers = new Map<UpstreamConn, Timer>();
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
    const up = config.upstream;
    this.endpoints = new EndpointSet(
      config.name,
      up,
      clock,
      options.resolve ?? createResolver({ dnsServers: up.dnsServers }),
      options.random !== undefined ? { random: options.random } : {},
    );
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
    return this.waiters.length;
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
  checkout(r: H2Requester): void {
    if (this.isClosing) {
      r.onSessionFailed(new AcquireError('shutting_down', 'the sidecar is shutting down'));
      return;
    }
    if (!this.endpoints.hasSet) {
      // The upstream name has not resolved yet (first round under way, or failing): wait for the first round.
      void this.endpoints.start().then(() => {
        if (r.isGone) return;
        if (this.endpoints.hasSet || this.isClosing) this.checkout(r);
        else r.onSessionFailed(new AcquireError('resolve_failed', `route ${this.config.name}: ${this.config.upstream.host} has not resolved yet (${this.endpoints.lastResolveError ?? 'no answer'})`));
      });
      return;
    }
    const driver = this.pickReady();
    if (driver !== undefined) {
      driver.use(r);
      return;
    }
    for (const [conn, list] of this.connectWaiters) {
      if (list.length < this.h2.maxConcurrentStreams && conn.closeReason === undefined) {
        list.push(r);
        return;
      }
    }
    if (this.total < this.config.maxConnections) {
      this.connect([r]);
      return;
    }
    // A session with no stream counts against maxConnections only while it is usable: draining ones with no
    // stream are closing on their own.
    if (this.waiters.length >= H2_MAX_PENDING) {
      r.onSessionFailed(new AcquireError('overflow', `route ${this.config.name}: ${this.config.maxConnections} h2 sessions full and ${H2_MAX_PENDING} streams waiting`));
      return;
    }
    const waiter: Waiter = {
      r,
      timer: this.clock.setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i < 0) return;
        this.waiters.splice(i, 1);
        r.onSessionFailed(new AcquireError('pending_timeout', `route ${this.config.name}: no h2 stream slot within ${H2_PENDING_TIMEOUT_MS} ms`));
      }, H2_PENDING_TIMEOUT_MS),
    };
    this.waiters.push(waiter);
  }

  /** The oldest usable session with capacity (fill-first); retires sessions past their max age on the way. */
  private pickReady(): H2Driver | undefined {
    let best: UpstreamConn | undefined;
    const now = this.clock.now();
    for (const c of this.sets.ready) {
      if (now >= c.maxAgeAt) {
        this.retire(c, 'max_age');
        continue;
      }
      if (best === undefined || c.id < best.id) best = c;
      if (this.sets.ready.size === 1) break;
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
    for (const w of this.waiters.splice(0)) {
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

  private connect(requesters: H2Requester[]): void {
    const ep = this.endpoints.pick();
    if (ep === undefined) {
      const err = new AcquireError('resolve_failed', `route ${this.config.name}: no endpoint for ${this.config.upstream.host} (${this.endpoints.lastResolveError ?? 'not resolved yet'})`);
      for (const r of requesters) if (!r.isGone) r.onSessionFailed(err);
      return;
    }
    const socket = openSocket(ep.address, ep.port);
    const conn = new UpstreamConn(this.nextId++, this.config.name, socket, this.clock.now(), true, this, this.config.keepalive.userTimeoutMs, undefined, ep);
    this.sets.connecting.add(conn);
    this.filed.set(conn, 'connecting');
    this.connectWaiters.set(conn, requesters);
    this.connectTimers.set(conn, this.clock.setTimeout(() => this.connectFailed(conn, 'connect_timeout', undefined), this.config.connectTimeoutMs));
  }

  private connectFailed(conn: UpstreamConn, reason: AcquireFailure, err: unknown): void {
    const waiting = this.connectWaiters.get(conn);
    if (waiting === undefined) return;
    this.connectWaiters.delete(conn);
    this.connectTimers.get(conn)?.clear();
    this.connectTimers.delete(conn);
    conn.state = transition(conn.state, { type: 'connect_failed', reason }, this.clock.now()).next;
    this.sets.connecting.delete(conn);
    this.filed.delete(conn);
    if (!conn.socket.destroyed) conn.socket.destroy();
    this.emit('connectFailed', reason, err, this.clock.now() - conn.openedAt);
    const { host, port } = this.config.upstream;
    const failure = new AcquireError(reason, `connect to ${host}:${port} failed: ${reason}`, { cause: err });
    for (const r of waiting) if (!r.isGone) r.onSessionFailed(failure);
    this.serveWaiters();
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
    conn.connectedAt = now;
    conn.lastRecvAt = now;
    conn.remoteAddress = socket.remoteAddress;
    conn.remotePort = socket.remotePort;
    conn.localPort = socket.localPort;
    conn.maxAgeAt = now + this.config.maxAgeMs * (0.9 + 0.2 * Math.random());
    const result = configureSocket(socket, this.config.keepalive);
    conn.sockopts = result.effective;
    for (const f of result.failures) this.emit('sockoptFailed', conn, f);
    conn.state = transition(conn.state, CONNECTED, now).next;
    conn.h2 = new H2Driver(conn, socket, this.origin, this.h2, this.clock, this);
    this.place(conn);
    this.emit('connected', conn, now - conn.openedAt);
    const driver = conn.h2;
    const live = waiting.filter((r) => !r.isGone);
    // A brand-new session was just heard from (the handshake): no ping-before-use.
    for (const r of live) {
      if (driver.isUsable && driver.capacity > 0) r.onSession(driver);
      else this.checkout(r);
    }
    this.serveWaiters();
  }

  connEnded(_conn: UpstreamConn): void {
    // node:http2 reads the FIN and closes the session; its close decides the reason.
  }

  connFailed(conn: UpstreamConn, reason: CloseReason): void {
    this.fail(conn, reason);
  }

  connClosed(conn: UpstreamConn): void {
    const wasConnected = conn.connectedAt !== undefined;
    this.connectFailed(conn, 'connect_error', conn.closeError);
    const reason = conn.decideReason({ kind: 'local', reason: 'other' });
    conn.h2?.destroy(reason);
    this.idleTimers.get(conn)?.clear();
    this.idleTimers.delete(conn);
    this.place(conn);
    if (conn.state.state !== 'closed') conn.state = transition(conn.state, { type: 'fail', reason }, this.clock.now()).next;
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
    if (SIBLING_EVICTING.has(reason)) this.evictSiblings(conn);
    this.serveWaiters();
  }

  /** Retires every session without streams to the same address and port as `dead` (sibling_evicted). */
  evictSiblings(dead: UpstreamConn): number {
    let n = 0;
    for (const c of [...this.sets.ready, ...this.sets.full]) {
      if (c !== dead && c.remoteAddress === dead.remoteAddress && c.remotePort === dead.remotePort && c.h2?.openStreams === 0 && c.h2.heldCount === 0) {
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

  grant(driver: H2Driver, requesters: readonly H2Requester[]): void {
    for (const r of requesters) {
      if (r.isGone) continue;
      if (driver.isUsable && driver.capacity > 0) r.onSession(driver);
      else this.checkout(r);
    }
    this.place(driver.conn);
  }

  requeue(requesters: readonly H2Requester[], reason: CloseReason): void {
    for (const r of requesters) {
      if (r.isGone) continue;
      r.onRequeued(reason);
      if (!r.isGone) this.checkout(r);
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
    // Before the held streams are placed again: idle siblings share the path that just proved dead.
    this.place(driver.conn);
    this.evictSiblings(driver.conn);
  }

  goawayReceived(driver: H2Driver, code: number, lastStreamId: number, debug: string): void {
    this.h2events.emit('goawayReceived', driver.conn, code, lastStreamId, debug);
    if (code === NGHTTP2_ENHANCE_YOUR_CALM && debug.includes(TOO_MANY_PINGS)) {
      this.currentPingIntervalMs *= 2;
      this.h2events.emit('pingBackoff', this.currentPingIntervalMs);
    }
  }

  pingIntervalMs(): number {
    return this.currentPingIntervalMs;
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
    if (isBusy && conn.state.state === 'idle') conn.state = transition(conn.state, LEASE, now).next;
    else if (!isBusy && conn.state.state === 'leased') conn.state = transition(conn.state, RELEASE, now).next;
    if (!isBusy) {
      if (driver.isDraining || conn.closeReason !== undefined) {
        // A draining session whose last stream ended: node:http2 closes it; make sure the socket goes.
        if (!driver.session.destroyed && driver.session.closed) driver.destroy(conn.decideReason({ kind: 'local', reason: 'goaway' }));
      } else {
        this.armIdle(conn);
      }
    }
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
    while (this.waiters.length > 0) {
      const w = this.waiters[0]!;
      if (w.r.isGone) {
        this.waiters.shift();
        w.timer?.clear();
        continue;
      }
      const driver = this.pickReady();
      if (driver === undefined && this.total >= this.config.maxConnections) return;
      this.waiters.shift();
      w.timer?.clear();
      if (driver !== undefined) driver.use(w.r);
      else this.connect([w.r]);
    }
  }
}
