/**
 * Policy over the upstream connections (UpstreamConn) of one route: one set per state, limits, the pending
 * queue, eviction and sibling eviction. A connection belongs to exactly one of: the connecting set, the idle
 * set, or one Lease (leased set); closed connections are in no set. Only `moveTo` changes sets, so stats()
 * is derived from set sizes and cannot drift. Protocol differences come in through the connection's driver.
 *
 * Every connection belongs to one endpoint of the route's EndpointSet (issue 14: each address the host name
 * resolves to). `moveTo` keeps the endpoint's own per-state sets in step with the pool's, so a checkout
 * takes an idle connection of the endpoint P2C picked, and sibling eviction and ejection are per endpoint.
 *
 * The pool never imports metrics or logging: it emits typed events (connected, connectFailed,
 * sockoptFailed, closed) and whoever cares subscribes.
 */
import { EventEmitter, once } from 'node:events';
import type { PoolConfig } from '../config/index.js';
import type { Socket } from 'node:net';
import type { AcquireFailure, CloseReason } from '../errors.js';
import { AcquireError, DEAD_PEER_REASONS } from '../errors.js';
import { classifyConnectError } from '../liveness/index.js';
import type { SockoptFailure } from '../sockopts/index.js';
import type { Clock, Timer } from '../util/clock.js';
import { CheckoutBatch, PendingQueue } from './checkout-queue.js';
import type { CheckoutRecord, WaitOutcome } from './checkout-queue.js';
import { UpstreamConn } from './conn.js';
import type { ConnOwner } from './conn.js';
import { establish, openSocket } from './connector.js';
import { CONNECT_FAILURES, createRouteEndpoints, ejectEndpoint, shouldProbe } from './endpoint-glue.js';
import type { EndpointOwner } from './endpoint-glue.js';
import { isAvoided } from './endpoints.js';
import type { EjectReason, Endpoint, EndpointSet } from './endpoints.js';
import { Evictor } from './evictor.js';
import type { H1Driver } from './h1-driver.js';
import { Lease } from './lease.js';
import type { ResolveFn } from './resolver.js';
import { transition } from './state.js';
import type { ConnEvent } from './state.js';
/** Longest pause between attempts to refill spares after failed connects. */
const MAX_REFILL_BACKOFF_MS = 30000;
/** A spare closed by the upstream, unused, sooner than this after its connect was refused (see connClosed). */
const SPARE_REFUSED_WITHIN_MS = 1000;

export interface CloseInfo {
  readonly reason: CloseReason;
  readonly ageMs: number;
  readonly sinceLastRecvMs: number;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  readonly err: unknown;
}

export interface PoolEvents {
  connected: [conn: UpstreamConn, connectMs: number];
  connectFailed: [reason: AcquireFailure, err: unknown, connectMs: number];
  sockoptFailed: [conn: UpstreamConn, failure: SockoptFailure];
  closed: [conn: UpstreamConn, info: CloseInfo];
}

export interface PoolStats {
  readonly connecting: number;
  readonly idle: number;
  readonly leased: number;
  readonly total: number;
}

export interface PoolOptions {
  /** Idle connections are retired after this long (http keep-alive); undefined = only max age. */
  readonly idleTimeoutMs?: number | undefined;
  /**
   * Most idle connections kept (http); a release beyond it retires the connection with idle_evicted.
   * Undefined = no cap (tcp spares are capped by warmSpares instead).
   */
  readonly maxIdle?: number | undefined;
  /**
   * Acquires that may wait for a connection when maxConnections are in use (http). More fail at once with
   * overflow. 0 (the default, tcp) = never wait.
   */
  readonly maxPending?: number | undefined;
  /**
   * Longest wait in the pending queue (HAProxy's `timeout queue`); on expiry the acquire fails with
   * pending_timeout. 0 or undefined = no bound.
   */
  readonly pendingTimeoutMs?: number | undefined;
  /**
   * The protocol driver each connection gets (Envoy's instantiateActiveClient hook): undefined = raw bytes
   * (tcp); otherwise a factory called once per new socket (HTTP/1: `h1DriverFactory`, one undici Client per
   * connection). A factory, not a kind, so a tcp-only sidecar never loads undici (~18 MiB RSS).
   */
  readonly driver?: ((socket: Socket, backstopMs: number) => H1Driver) | undefined;
  /**
   * When a connection dies of a dead-peer reason (keepalive_timeout, user_timeout, no_ack), retire every idle
   * connection to the same remote address and port with sibling_evicted: they share the path that just
   * proved dead, and the next requests should not find them one by one (issue #4).
   */
  readonly siblingEviction?: boolean | undefined;
  /** Name resolution (tests pass a fake); default: c-ares with upstream.dnsServers or the system's resolv.conf. */
  readonly resolve?: ResolveFn | undefined;
  /** Uniform [0, 1) for P2C and jitter (tests pass a seeded one). */
  readonly random?: (() => number) | undefined;
}

export interface AcquireOptions {
  /** Skip the idle set and connect anew (a retry after a dead connection must not land on a sibling). */
  readonly isFresh?: boolean;
  /** The endpoint a retry just failed on: another one is picked when any is eligible. */
  readonly avoid?: Endpoint | undefined;
}

/**
 * Receives the outcome of `Pool.checkout`. The HTTP exchange implements it, so the per-request path needs no
 * closure or promise to learn about its lease.
 */
export interface LeaseRequester {
  onLease(lease: Lease): void;
  /** An AcquireError (overflow, connect_*, shutting_down), as `acquire` rejects with. */
  onLeaseFailed(err: unknown): void;
}

const LEASE: ConnEvent = { type: 'lease' };
const RELEASE: ConnEvent = { type: 'release' };

export class Pool extends EventEmitter<PoolEvents> implements ConnOwner, EndpointOwner {
  private readonly sets = {
    connecting: new Set<UpstreamConn>(),
    idle: new Set<UpstreamConn>(),
    leased: new Set<UpstreamConn>(),
  };
  private nextId = 1;
  private isClosing = false;
  /** One timer for the earliest end of an endpoint's spare back-off (Endpoint.spareNotBefore), and when. */
  private refillTimer: Timer | undefined;
  private refillAt = Infinity;
  private readonly pending: PendingQueue;
  private readonly batch: CheckoutBatch<LeaseRequester>;
  private readonly evictor: Evictor;
  /** Connect attempts still settling: the connect timer, the waiting promise and the abort hook. */
  private readonly connects = new Map<UpstreamConn, PendingConnect>();
  /** The route's endpoints (resolved addresses) with their states; protocol-agnostic. */
  readonly endpoints: EndpointSet;

  constructor(
    readonly config: PoolConfig,
    private readonly clock: Clock,
    private readonly options: PoolOptions = {},
  ) {
    super();
    this.pending = new PendingQueue(clock);
    this.batch = new CheckoutBatch((records) => this.validateCheckouts(records));
    this.evictor = new Evictor(clock, options.idleTimeoutMs, (conn, reason) => this.fail(conn, reason));
    this.endpoints = createRouteEndpoints(config, clock, { resolve: options.resolve, ...(options.random !== undefined ? { random: options.random } : {}) }, this);
  }

  // EndpointOwner ------------------------------------------------------------------------------------------

  endpointRemoved(ep: Endpoint): void {
    // Gone from DNS: idle connections go now, busy ones finish (release retires them).
    for (const c of [...ep.conns.idle]) this.fail(c, 'endpoint_removed');
  }

  /** The back-off of an ejected endpoint is over: one probe connect (it becomes an idle connection on success). */
  probeEndpoint(ep: Endpoint): void {
    if (!shouldProbe(this.endpoints, ep, this.isClosing, this.total < this.config.maxConnections)) return;
    this.connect(ep, false, undefined, true).catch(() => {
      // Reported through connectFailed; the endpoint set backs off again.
    });
  }

  endpointsResolved(): void {
    this.fill();
  }

  /** Starts resolving the upstream name and keeping warm spares (if configured). */
  start(): void {
    void this.endpoints.start().then(() => this.fill());
    this.fill();
  }

  /** Idle connections (what `stats().idle` says, without building a snapshot). */
  get idleCount(): number {
    return this.sets.idle.size;
  }

  stats(): PoolStats {
    const { connecting, idle, leased } = this.sets;
    return { connecting: connecting.size, idle: idle.size, leased: leased.size, total: this.total };
  }

  /** Connections in any live set (what `stats().total` says, without building a snapshot). */
  private get total(): number {
    const { connecting, idle, leased } = this.sets;
    return connecting.size + idle.size + leased.size;
  }

  /** Every live connection, for /debug. */
  *connections(): Iterable<UpstreamConn> {
    yield* this.sets.connecting;
    yield* this.sets.idle;
    yield* this.sets.leased;
  }

  /** Callers waiting in the pending queue (http maxPending). */
  get pendingCount(): number {
    return this.pending.size;
  }

  /**
   * Hands out a connection: a validated idle one if any, else a new one. When maxConnections are in use the
   * caller waits in a FIFO of at most maxPending entries (0 = fail at once) for at most pendingTimeoutMs.
   * Rejects with AcquireError (overflow, pending_timeout, connect_*, shutting_down).
   */
  acquire(signal?: AbortSignal, opts: AcquireOptions = {}): Promise<Lease> {
    return this.acquireOn(undefined, signal, opts);
  }

  /** `acquire`, with the endpoint `checkout` already picked (P2C runs once per request, not twice). */
  private async acquireOn(picked: Endpoint | undefined, signal: AbortSignal | undefined, opts: AcquireOptions): Promise<Lease> {
    /** Set at the first wait: pendingTimeoutMs bounds the whole time in the queue (HAProxy's `timeout queue`). */
    let deadline: number | undefined;
    /** What pick leaves out: opts.avoid (the retry's last endpoint), then every endpoint whose connect failed. */
    let avoid: Endpoint | Endpoint[] | undefined = opts.avoid;
    /** Endpoints whose connect failed for this acquire: each is tried at most once, then the error stands. */
    let failed: Endpoint[] | undefined;
    if (!this.endpoints.hasSet) {
      if (this.isClosing) throw new AcquireError('shutting_down', 'the sidecar is shutting down');
      await this.firstResolution(signal);
      if (this.isClosing) throw new AcquireError('shutting_down', 'the sidecar is shutting down');
      if (!this.endpoints.hasSet) {
        throw new AcquireError('resolve_failed', `route ${this.config.name}: ${this.config.upstream.host} has not resolved yet (${this.endpoints.lastResolveError ?? 'no answer'})`);
      }
    }
    for (;;) {
      if (this.isClosing) throw new AcquireError('shutting_down', 'the sidecar is shutting down');
      let ep = picked ?? this.endpoints.pick(avoid);
      picked = undefined;
      if (ep === undefined) throw new AcquireError('resolve_failed', `route ${this.config.name}: no endpoint for ${this.config.upstream.host}`);
      if (opts.isFresh !== true && this.config.warmSpares > 0 && ep.conns.idle.size === 0) {
        // Warm spares exist so that nobody waits for a connect: take one of another endpoint rather than
        // connect to the picked one (the spares are spread over the endpoints, so the load still is).
        ep = this.endpoints.pickWithIdle(avoid) ?? ep;
      }
      const conn = opts.isFresh === true ? undefined : ep.conns.idle.values().next().value;
      if (conn !== undefined) {
        const lease = await this.leaseIdle(conn);
        if (lease !== undefined) return lease;
        continue;
      }
      if (this.total < this.config.maxConnections) {
        try {
          const fresh = await this.connect(ep, true, signal);
          return new Lease(this, fresh);
        } catch (err) {
          // The endpoint did not take the connect (it is ejected now): nothing was sent, so another endpoint
          // may be tried, once each, unless the caller went away. pick leaves out every endpoint tried so far
          // (and opts.avoid): when it still returns a failed one, every eligible endpoint was tried.
          if (!(err instanceof AcquireError) || !CONNECT_FAILURES.has(err.reason) || signal?.aborted === true || this.isClosing) throw err;
          (failed ??= []).push(ep);
          avoid = opts.avoid !== undefined ? [opts.avoid, ...failed] : failed;
          let other = this.endpoints.pick(avoid);
          // Every other one failed: the endpoint the retry wanted to avoid is still better than a 502.
          if (other !== undefined && opts.avoid !== undefined && failed.includes(other)) other = this.endpoints.pick(failed);
          if (other === undefined || failed.includes(other)) throw err;
          picked = other;
          continue;
        }
      }
      const spare = opts.isFresh === true ? undefined : this.idleOfOther(avoid);
      if (spare !== undefined) {
        // No slot for a connect to the picked endpoint, but another eligible one has an idle connection.
        const lease = await this.leaseIdle(spare);
        if (lease !== undefined) return lease;
        continue;
      }
      if (opts.isFresh === true && this.sets.idle.size > 0) {
        // A fresh connect is wanted but every slot is taken, partly by idle connections: retire the oldest
        // idle one to make room instead of queueing behind ourselves.
        const oldest = this.sets.idle.values().next().value;
        if (oldest !== undefined) this.fail(oldest, 'idle_evicted');
        continue;
      }
      const stranded = this.idleOfIneligible();
      if (stranded !== undefined) {
        // Every slot is taken, partly by idle connections of an ejected endpoint that nobody may use now:
        // retire one to make room rather than wait (or overflow) behind connections that will not serve.
        this.fail(stranded, 'idle_evicted');
        continue;
      }
      if (this.pending.size >= (this.options.maxPending ?? 0)) {
        throw new AcquireError('overflow', `route ${this.config.name}: maxConnections (${this.config.maxConnections}) in use and maxPending (${this.options.maxPending ?? 0}) waiting`);
      }
      const isRequeue = deadline !== undefined;
      const timeoutMs = this.options.pendingTimeoutMs ?? 0;
      deadline ??= this.clock.now() + timeoutMs;
      const leftMs = timeoutMs > 0 ? Math.max(1, deadline - this.clock.now()) : 0;
      const outcome = await new Promise<WaitOutcome>((resolve) => this.pending.wait(signal, resolve, leftMs, isRequeue));
      if (outcome === 'aborted') throw new AcquireError('connect_error', 'aborted: the downstream went away');
      if (outcome === 'timed_out') {
        throw new AcquireError('pending_timeout', `route ${this.config.name}: no connection free within pendingTimeoutMs (${this.options.pendingTimeoutMs ?? 0} ms)`);
      }
    }
  }

  /**
   * Leases an idle connection and validates it one macrotask later (checkout validation: a FIN or RST that
   * already arrived is processed first). undefined: it was retired, the caller tries again.
   */
  private async leaseIdle(conn: UpstreamConn): Promise<Lease | undefined> {
    this.apply(conn, LEASE);
    await new Promise<void>((resolve) => setImmediate(resolve));
    return this.validated(conn);
  }

  /**
   * The first resolution, bounded by the caller's signal and pendingTimeoutMs (the queue's bound: the wait
   * for a name is a wait for a connection too). Timing out leaves `hasSet` false, so the caller fails with
   * resolve_failed, which names the cause (the name), not pending_timeout (which would blame the pool).
   */
  private async firstResolution(signal: AbortSignal | undefined): Promise<void> {
    const timeoutMs = this.options.pendingTimeoutMs ?? 0;
    let timer: Timer | undefined;
    let onAbort: (() => void) | undefined;
    const isAborted = await new Promise<boolean>((resolve) => {
      if (signal?.aborted === true) return resolve(true);
      void this.endpoints.start().then(() => resolve(false));
      if (timeoutMs > 0) timer = this.clock.setTimeout(() => resolve(false), timeoutMs);
      if (signal !== undefined) signal.addEventListener('abort', (onAbort = () => resolve(true)), { once: true });
    });
    timer?.clear();
    if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
    if (isAborted) throw new AcquireError('connect_error', 'aborted: the downstream went away');
  }

  /** An idle connection of an eligible endpoint other than `avoid` (oldest first), if any. */
  private idleOfOther(avoid: Endpoint | readonly Endpoint[] | undefined): UpstreamConn | undefined {
    for (const c of this.sets.idle) if (!isAvoided(c.endpoint, avoid) && this.endpoints.isEligible(c.endpoint)) return c;
    return undefined;
  }

  /** An idle connection of an endpoint that is not eligible now (ejected), oldest first, if any. */
  private idleOfIneligible(): UpstreamConn | undefined {
    for (const c of this.sets.idle) if (!this.endpoints.isEligible(c.endpoint)) return c;
    return undefined;
  }

  /**
   * Callback form of `acquire` for the per-request path, with the same semantics. An idle connection is taken
   * at once and validated one macrotask later, exactly as in `acquire`, but without a promise per request, and
   * the checkouts of one event-loop iteration share one setImmediate. Everything else (no idle connection,
   * isFresh, waiting, connecting, failures) goes through `acquire`.
   */
  checkout(requester: LeaseRequester, signal?: AbortSignal, opts: AcquireOptions = {}): void {
    let picked: Endpoint | undefined;
    if (!this.isClosing && opts.isFresh !== true && this.sets.idle.size > 0) {
      picked = this.endpoints.pick(opts.avoid);
      const conn = picked?.conns.idle.values().next().value;
      if (conn !== undefined) {
        this.apply(conn, LEASE);
        this.batch.add({ conn, requester, signal });
        return;
      }
    }
    this.acquireOn(picked, signal, opts).then(
      (lease) => requester.onLease(lease),
      (err: unknown) => requester.onLeaseFailed(err),
    );
  }

  /**
   * Checkout validation of a connection taken from idle one macrotask ago: still leased and reusable → its idle
   * reader stops (it ran through the window, so a FIN or bytes that arrived there were seen) and it is leased
   * out; otherwise it is retired and the caller tries again.
   */
  private validated(conn: UpstreamConn): Lease | undefined {
    if (conn.state.state !== 'leased' || !conn.isReusable) {
      this.fail(conn, 'peer_closed');
      return undefined;
    }
    this.fill();
    conn.stopIdleReader();
    return new Lease(this, conn);
  }

  /** Checkout validation, one macrotask after the checkouts: a FIN or RST that already arrived was handled. */
  private validateCheckouts(records: ReadonlyArray<CheckoutRecord<LeaseRequester>>): void {
    for (const { conn, requester, signal } of records) {
      const lease = this.validated(conn);
      if (lease !== undefined) requester.onLease(lease);
      else this.checkout(requester, signal);
    }
  }

  /**
   * Destroys every connection with local_shutdown (RST) and stops refilling. Resolves once every socket has
   * emitted 'close' (so its close line and metrics are out). Idempotent.
   */
  async close(): Promise<void> {
    this.isClosing = true;
    this.refillTimer?.clear();
    this.endpoints.close();
    const conns = [...this.connections()];
    const closed = conns.map((c) => (c.socket.closed ? undefined : once(c.socket, 'close')));
    for (const conn of conns) this.fail(conn, 'local_shutdown', true);
    // Waiters loop back into acquire and see isClosing.
    this.pending.wakeAll();
    await Promise.all(closed);
  }

  /** Retires a connection: the reason is decided by the connection (first cause wins); destroys the socket. */
  fail(conn: UpstreamConn, reason: CloseReason, reset = false): void {
    const decided = conn.decideReason({ kind: 'local', reason });
    // Shutdown or abort while connecting.
    const pc = this.takeConnect(conn);
    if (pc !== undefined) {
      pc.reject(new AcquireError(this.isClosing ? 'shutting_down' : 'connect_error', `connect abandoned: ${decided}`));
    }
    this.apply(conn, { type: 'fail', reason: decided }, reset);
  }

  /** Puts a leased connection back as idle (http keep-alive), or retires it when it is not reusable. */
  release(conn: UpstreamConn): void {
    if (conn.state.state !== 'leased') return;
    const now = this.clock.now();
    if (conn.endpoint.state === 'removed') {
      this.fail(conn, 'endpoint_removed');
      return;
    }
    if (!conn.isReusable) {
      this.fail(conn, 'peer_closed');
      return;
    }
    if (now >= conn.maxAgeAt) {
      this.fail(conn, 'max_age');
      return;
    }
    if (this.options.maxIdle !== undefined && this.sets.idle.size >= this.options.maxIdle) {
      this.fail(conn, 'idle_evicted');
      return;
    }
    if (conn.idleTimeoutHintMs !== undefined && conn.idleTimeoutHintMs <= 0) {
      // The upstream's Keep-Alive hint leaves no safe idle window: do not keep it.
      this.fail(conn, 'idle_evicted');
      return;
    }
    // A complete response from an ejected endpoint whose back-off is over proves it as well as a probe would.
    if (conn.endpoint.isProbeDue) this.endpoints.noteConnected(conn.endpoint);
    this.apply(conn, RELEASE, false, now);
    this.pending.wakeOne();
  }

  /**
   * Retires every idle connection to the same endpoint (address and port) as `dead` (sibling eviction). Leased
   * siblings are left to their own request (the listener's early-retry sweep watches those). With one endpoint
   * (a ClusterIP Service: every connection goes to the VIP) that is every idle connection, as before.
   */
  evictSiblings(dead: UpstreamConn): number {
    let n = 0;
    for (const c of [...dead.endpoint.conns.idle]) {
      if (c !== dead) {
        this.fail(c, 'sibling_evicted');
        n++;
      }
    }
    return n;
  }

  /**
   * Ejects the endpoint of a connection that died of a dead-peer reason (or whose connect failed) and retires
   * its idle connections at once (endpoint-glue's rule: `siblingEviction` for http; a tcp route, which has no
   * such key, only with several endpoints).
   */
  private ejectEndpoint(conn: UpstreamConn, reason: EjectReason, err: unknown, isConnectFailure = false): void {
    const { isRetireIdle, isEligible } = ejectEndpoint(this.endpoints, conn.endpoint, reason, err, isConnectFailure, this.options.siblingEviction);
    if (isRetireIdle) this.evictSiblings(conn);
    if (!isEligible) this.abandonConnects(conn.endpoint);
  }

  /**
   * Connects under way for a waiting caller to an endpoint that was just ejected are given up, so the caller
   * moves on to another endpoint now instead of waiting out connectTimeoutMs on a dead address (nothing was
   * sent on them). Spares and probes finish on their own.
   */
  private abandonConnects(ep: Endpoint): void {
    for (const c of [...ep.conns.connecting]) {
      const pc = this.connects.get(c);
      if (pc === undefined || !pc.forLease) continue;
      this.takeConnect(c);
      this.apply(c, { type: 'connect_failed', reason: 'connect_error' }, true);
      pc.reject(new AcquireError('connect_error', `connect to ${this.config.upstream.host} (${ep.key}) abandoned: the endpoint was ejected`));
    }
  }

  private connect(ep: Endpoint, forLease: boolean, signal: AbortSignal | undefined, isProbe = false): Promise<UpstreamConn> {
    const socket = openSocket(ep.address, ep.port);
    // Far beyond our own idle timers: undici's keep-alive timer is only a backstop, ours retires first.
    const h1 = this.options.driver?.(socket, this.config.maxAgeMs * 2);
    const conn = new UpstreamConn(this.nextId++, this.config.name, socket, this.clock.now(), forLease, this, this.config.keepalive.userTimeoutMs, h1, ep);
    this.moveTo(conn, conn.state, true);
    return new Promise<UpstreamConn>((resolve, reject) => {
      const onAbort = (): void => {
        // The downstream went away while we connected: not an upstream failure, so nothing is counted.
        this.fail(conn, 'downstream_closed');
      };
      const timer = this.clock.setTimeout(() => this.connectFailed(conn, 'connect_timeout', undefined), this.config.connectTimeoutMs);
      this.connects.set(conn, { forLease, isProbe, signal, onAbort, timer, resolve, reject });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Ends the connect under way for `conn`, if any (one settlement: timer and abort listener go with it). */
  private takeConnect(conn: UpstreamConn): PendingConnect | undefined {
    const pc = this.connects.get(conn);
    if (pc === undefined) return undefined;
    this.connects.delete(conn);
    pc.timer.clear();
    pc.signal?.removeEventListener('abort', pc.onAbort);
    return pc;
  }

  private connectFailed(conn: UpstreamConn, reason: AcquireFailure, err: unknown): void {
    const pc = this.takeConnect(conn);
    if (pc === undefined) return;
    this.apply(conn, { type: 'connect_failed', reason }, true);
    this.emit('connectFailed', reason, err, this.clock.now() - conn.openedAt);
    this.ejectEndpoint(conn, reason, err, true);
    if (!pc.forLease && !pc.isProbe) {
      this.scheduleRefill(conn.endpoint);
      this.fill();
    }
    const { host } = this.config.upstream;
    pc.reject(new AcquireError(reason, `connect to ${host} (${conn.endpoint.key}) failed: ${reason}`, { cause: err }));
  }

  // ConnOwner: what a connection reports about its socket ------------------------------------------------

  connConnectFailed(conn: UpstreamConn, err: unknown): void {
    this.connectFailed(conn, classifyConnectError(err, false), err);
  }

  connConnected(conn: UpstreamConn): void {
    const pc = this.takeConnect(conn);
    if (pc === undefined) return;
    const now = this.clock.now();
    for (const f of establish(conn, this.config, now)) this.emit('sockoptFailed', conn, f);
    if (!pc.forLease) conn.endpoint.spareFailures = 0;
    this.endpoints.noteConnected(conn.endpoint);
    this.apply(conn, { type: 'connected' });
    this.emit('connected', conn, now - conn.openedAt);
    pc.resolve(conn);
    if (conn.state.state === 'idle' && conn.endpoint.state === 'removed') {
      // A spare or probe to an address that left DNS while it connected.
      this.fail(conn, 'endpoint_removed');
      return;
    }
    // A spare that just went idle serves the first waiter (its slot may be the one a woken waiter lost).
    if (conn.state.state === 'idle') this.pending.wakeOne();
  }

  connEnded(conn: UpstreamConn): void {
    // An idle connection that got FIN is useless; a leased one is the proxy's to half-close.
    if (conn.state.state === 'idle') this.fail(conn, 'peer_closed');
  }

  connFailed(conn: UpstreamConn, reason: CloseReason): void {
    this.fail(conn, reason);
  }

  connClosed(conn: UpstreamConn): void {
    const wasConnected = conn.connectedAt !== undefined;
    this.connectFailed(conn, 'connect_error', conn.closeError);
    const reason = conn.decideReason({ kind: 'local', reason: 'other' });
    this.apply(conn, { type: 'fail', reason });
    // A slot is free now (a waiter may connect).
    this.pending.wakeOne();
    if (!wasConnected) return;
    const now = this.clock.now();
    const s = conn.socket;
    this.emit('closed', conn, {
      reason,
      ageMs: now - (conn.connectedAt ?? now),
      sinceLastRecvMs: now - conn.lastRecvAt,
      bytesRead: s.bytesRead,
      bytesWritten: s.bytesWritten,
      err: conn.closeError,
    });
    if (DEAD_PEER_REASONS.has(reason)) this.ejectEndpoint(conn, reason, conn.closeError);
    // A spare the upstream hung up on unused within a second of its connect (a server at its client limit:
    // redis at `maxclients` accepts, writes an error and closes) is refused, not replaced at once: refilling
    // on every such close reconnected thousands of times a second. Back off as after a failed connect. A spare
    // that lived longer (a server's auth timeout: MySQL connect_timeout 10 s, postgres 60 s) is replaced at once.
    // On an http route such a server writes its answer ("503, Connection: close") before closing, and the idle
    // reader closes the spare protocol_error first: the same refusal.
    const ageMs = now - (conn.connectedAt ?? now);
    const isRefusal = !conn.hasBeenLeased && ageMs < SPARE_REFUSED_WITHIN_MS && (reason === 'peer_closed' || reason === 'peer_reset' || reason === 'protocol_error');
    if (isRefusal) {
      this.scheduleRefill(conn.endpoint, true);
      // Its slot goes to another endpoint's spare (none while this one is the only one: it backs off).
      this.fill();
    } else {
      // A leased connection, or one that lived past the refusal window whatever ended it, ends a refusal run.
      if (conn.hasBeenLeased || ageMs >= SPARE_REFUSED_WITHIN_MS) conn.endpoint.spareRefusals = 0;
      this.fill();
    }
  }

  // -------------------------------------------------------------------------------------------------------

  /** Runs one transition and carries out its effects. The only place that moves a connection between sets. */
  private apply(conn: UpstreamConn, event: ConnEvent, reset = false, now = this.clock.now()): void {
    const from = conn.state;
    const { next, effects } = transition(from, event, now);
    if (next !== from) this.moveTo(conn, next);
    for (const effect of effects) {
      switch (effect) {
        case 'arm_idle_timers':
          this.evictor.arm(conn, now);
          conn.startIdleReader(this.clock);
          break;
        case 'clear_idle_timers':
          // Leaving idle. The timers stay armed and re-check the state when they fire. The idle reader keeps
          // running through checkout validation (handOut stops it): on a paused socket a FIN that arrives in
          // the validation window is buffered without 'end' and bytes go unseen, so validation would pass.
          break;
        case 'destroy':
          this.evictor.clear(conn);
          conn.stopIdleReader();
          if (reset && !conn.socket.destroyed && conn.socket.readyState === 'open') conn.socket.resetAndDestroy();
          else conn.socket.destroy();
          break;
      }
    }
  }

  /**
   * Moves a connection between the pool's sets and, in the same step, its endpoint's (`isNew`: it enters its
   * first set). A removed endpoint whose last connection closed is forgotten here.
   */
  private moveTo(conn: UpstreamConn, next: UpstreamConn['state'], isNew = false): void {
    const prev = conn.state.state;
    const ep = conn.endpoint;
    if (!isNew && prev !== 'closed') {
      this.sets[prev].delete(conn);
      ep.conns[prev].delete(conn);
    }
    conn.state = next;
    if (next.state === 'leased') conn.hasBeenLeased = true;
    if (next.state !== 'closed') {
      this.sets[next.state].add(conn);
      ep.conns[next.state].add(conn);
    } else if (ep.state === 'removed') {
      this.endpoints.forget(ep);
    }
  }

  private fill(): void {
    // Waiters first: a freed slot goes to a queued request, not to a new spare.
    // An endpoint in its spare back-off gets none; the others still do (pickForSpare).
    if (this.isClosing || this.config.warmSpares === 0 || this.pending.size > 0) return;
    // Only idle connections that may be handed out count: an ejected endpoint's keep their slots, not the job.
    let spares = 0;
    for (const ep of this.endpoints.list()) if (ep.conns.idle.size > 0 && this.endpoints.isEligible(ep)) spares += ep.conns.idle.size;
    for (const c of this.sets.connecting) if (c.state.state === 'connecting' && !c.state.forLease) spares++;
    while (spares < this.config.warmSpares && this.total < this.config.maxConnections) {
      // Spread over the endpoints: the one with the fewest spares gets the next.
      const ep = this.endpoints.pickForSpare();
      if (ep === undefined) return;
      this.connect(ep, false, undefined).catch(() => {
        // Reported through the connectFailed event; the refill backs off.
      });
      spares++;
    }
  }

  /**
   * Backs off new spares to `ep` after a failed spare connect or, `isRefused`, a spare it closed unused (counted
   * apart: a successful connect does not reset that run). Per endpoint: one refusing pod of a headless Service
   * does not hold back the spares of the others.
   */
  private scheduleRefill(ep: Endpoint, isRefused = false): void {
    if (this.isClosing) return;
    const n = isRefused ? ++ep.spareRefusals : ++ep.spareFailures;
    ep.spareNotBefore = this.clock.now() + Math.min(MAX_REFILL_BACKOFF_MS, 100 * 2 ** Math.min(n, 10));
    this.armRefill();
  }

  /** Arms the one refill timer for the earliest spare back-off still running (none: no timer). */
  private armRefill(): void {
    const now = this.clock.now();
    let at = Infinity;
    for (const e of this.endpoints.list()) if (e.spareNotBefore > now && e.spareNotBefore < at) at = e.spareNotBefore;
    if (this.isClosing || at === Infinity || (this.refillTimer !== undefined && this.refillAt <= at)) return;
    this.refillTimer?.clear();
    this.refillAt = at;
    this.refillTimer = this.clock.setTimeout(() => {
      this.refillTimer = undefined;
      this.refillAt = Infinity;
      this.fill();
      this.armRefill();
    }, at - now);
  }
}

/** A connect under way: settled once by connected, a connect failure, or fail() (abort, shutdown). */
interface PendingConnect {
  readonly forLease: boolean;
  /** A probe of an ejected endpoint (its failure does not slow the spare refill down). */
  readonly isProbe: boolean;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: () => void;
  readonly timer: Timer;
  readonly resolve: (conn: UpstreamConn) => void;
  readonly reject: (err: unknown) => void;
}
