/**
 * Owns upstream sockets for one route. A socket belongs to exactly one of: the connector (connecting set),
 * the idle set, or one Lease (leased set); closed connections are in no set. Only `moveTo` changes sets, so
 * stats() is derived from set sizes and cannot drift.
 *
 * The pool never imports metrics or logging: it emits typed events (connected, connectFailed,
 * sockoptFailed, closed) and whoever cares subscribes.
 */
import { EventEmitter, once } from 'node:events';
import net from 'node:net';
import type { PoolConfig } from '../config/index.js';
import type { AcquireFailure, CloseReason } from '../errors.js';
import { AcquireError, DEAD_PEER_REASONS } from '../errors.js';
import { classifyConnectError, classifyError } from '../liveness/index.js';
import { applySockopts } from '../sockopts/index.js';
import type { SockoptFailure } from '../sockopts/index.js';
import type { Clock, Timer } from '../util/clock.js';
import { UpstreamConn } from './conn.js';
import { transition } from './state.js';
import type { ConnEvent } from './state.js';

/** Most bytes a warm spare may receive while idle (a server greeting) before it is dropped. */
const MAX_IDLE_DATA_BYTES = 64 * 1024;
/** Longest pause between attempts to refill spares after failed connects. */
const MAX_REFILL_BACKOFF_MS = 30000;

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
   * A protocol client (http: one undici Client per connection) keeps reading the socket for its whole life,
   * idle or not, and sees FIN/RST/errors itself; the pool must then not attach its own idle reader (two
   * readers on one stream would steal each other's bytes).
   */
  readonly hasOwnReader?: boolean | undefined;
  /**
   * When a connection dies of a dead-peer reason (keepalive_timeout, user_timeout, no_ack), retire every idle
   * connection to the same remote address and port with sibling_evicted: they share the path that just
   * proved dead, and the next requests should not find them one by one (issue #4).
   */
  readonly siblingEviction?: boolean | undefined;
}

export interface AcquireOptions {
  /** Skip the idle set and connect anew (a retry after a dead connection must not land on a sibling). */
  readonly isFresh?: boolean;
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

/** A caller waiting for a connection slot (http maxPending queue). */
interface Waiter {
  readonly wake: () => void;
}

export class Pool extends EventEmitter<PoolEvents> {
  private readonly sets = {
    connecting: new Set<UpstreamConn>(),
    idle: new Set<UpstreamConn>(),
    leased: new Set<UpstreamConn>(),
  };
  private nextId = 1;
  private isClosing = false;
  private refillFailures = 0;
  private refillTimer: Timer | undefined;
  /** Every entry waits for a slot or an idle connection; FIFO. */
  private readonly waiters: Waiter[] = [];
  /**
   * Checkouts waiting for their validation macrotask (see `checkout`): every conn here is leased and not yet
   * handed out; the same index in the other two arrays holds its requester and abort signal.
   */
  private checkoutConns: UpstreamConn[] = [];
  private checkoutRequesters: LeaseRequester[] = [];
  private checkoutSignals: Array<AbortSignal | undefined> = [];

  constructor(
    readonly config: PoolConfig,
    private readonly clock: Clock,
    private readonly options: PoolOptions = {},
  ) {
    super();
  }

  /** Starts keeping warm spares (if configured). */
  start(): void {
    this.fill();
  }

  /** Idle connections (what `stats().idle` says, without building a snapshot). */
  get idleCount(): number {
    return this.sets.idle.size;
  }

  stats(): PoolStats {
    const { connecting, idle, leased } = this.sets;
    return { connecting: connecting.size, idle: idle.size, leased: leased.size, total: connecting.size + idle.size + leased.size };
  }

  /** Every live connection, for /debug. */
  *connections(): Iterable<UpstreamConn> {
    yield* this.sets.connecting;
    yield* this.sets.idle;
    yield* this.sets.leased;
  }

  /** Callers waiting in the pending queue (http maxPending). */
  get pendingCount(): number {
    return this.waiters.length;
  }

  /**
   * Hands out a connection: a validated idle one if any, else a new one. When maxConnections are in use the
   * caller waits in a FIFO of at most maxPending entries (0 = fail at once). Rejects with AcquireError
   * (overflow, connect_*, shutting_down).
   */
  async acquire(signal?: AbortSignal, opts: AcquireOptions = {}): Promise<Lease> {
    for (;;) {
      if (this.isClosing) throw new AcquireError('shutting_down', 'the sidecar is shutting down');
      const conn = opts.isFresh === true ? undefined : this.sets.idle.values().next().value;
      if (conn !== undefined) {
        this.apply(conn, LEASE);
        // Checkout validation: yield one macrotask so a FIN or RST that already arrived is processed first.
        await new Promise<void>((resolve) => setImmediate(resolve));
        const s = conn.socket;
        if (conn.state.state === 'leased' && conn.closeReason === undefined && !s.destroyed && !s.readableEnded) {
          this.fill();
          return new Lease(this, conn);
        }
        this.fail(conn, conn.closeReason ?? 'peer_closed');
        continue;
      }
      if (this.stats().total < this.config.maxConnections) break;
      if (opts.isFresh === true && this.sets.idle.size > 0) {
        // A fresh connect is wanted but every slot is taken, partly by idle connections: retire the oldest
        // idle one to make room instead of queueing behind ourselves.
        const oldest = this.sets.idle.values().next().value;
        if (oldest !== undefined) this.fail(oldest, 'idle_evicted');
        continue;
      }
      if (this.waiters.length >= (this.options.maxPending ?? 0)) {
        throw new AcquireError('overflow', `route ${this.config.name}: maxConnections (${this.config.maxConnections}) in use and maxPending (${this.options.maxPending ?? 0}) waiting`);
      }
      await this.waitForSlot(signal);
    }
    const conn = await this.connect(true, signal);
    return new Lease(this, conn);
  }

  /**
   * Callback form of `acquire` for the per-request path, with the same semantics. An idle connection is taken
   * at once and validated one macrotask later, exactly as in `acquire`, but without a promise per request, and
   * the checkouts of one event-loop iteration share one setImmediate. Everything else (no idle connection,
   * isFresh, waiting, connecting, failures) goes through `acquire`.
   */
  checkout(requester: LeaseRequester, signal?: AbortSignal, opts: AcquireOptions = {}): void {
    if (!this.isClosing && opts.isFresh !== true) {
      const conn = this.sets.idle.values().next().value;
      if (conn !== undefined) {
        this.apply(conn, LEASE);
        this.checkoutConns.push(conn);
        this.checkoutRequesters.push(requester);
        this.checkoutSignals.push(signal);
        if (this.checkoutConns.length === 1) setImmediate(this.validateCheckouts);
        return;
      }
    }
    this.acquire(signal, opts).then(
      (lease) => requester.onLease(lease),
      (err: unknown) => requester.onLeaseFailed(err),
    );
  }

  /** Checkout validation, one macrotask after the checkouts: a FIN or RST that already arrived was handled. */
  private readonly validateCheckouts = (): void => {
    const conns = this.checkoutConns;
    const requesters = this.checkoutRequesters;
    const signals = this.checkoutSignals;
    this.checkoutConns = [];
    this.checkoutRequesters = [];
    this.checkoutSignals = [];
    for (let i = 0; i < conns.length; i++) {
      const conn = conns[i]!;
      const s = conn.socket;
      if (conn.state.state === 'leased' && conn.closeReason === undefined && !s.destroyed && !s.readableEnded) {
        this.fill();
        requesters[i]!.onLease(new Lease(this, conn));
      } else {
        this.fail(conn, conn.closeReason ?? 'peer_closed');
        this.checkout(requesters[i]!, signals[i]);
      }
    }
  };

  /** Waits until a connection is released or closed (a slot may be free), or the signal aborts. */
  private waitForSlot(signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted === true) {
        reject(new AcquireError('connect_error', 'aborted: the downstream went away'));
        return;
      }
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new AcquireError('connect_error', 'aborted: the downstream went away'));
      };
      const waiter: Waiter = {
        wake: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      this.waiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Wakes the first waiter, if any: a connection went idle or a slot was freed. */
  private wakeWaiter(): void {
    this.waiters.shift()?.wake();
  }

  /**
   * Destroys every connection with local_shutdown (RST) and stops refilling. Resolves once every socket has
   * emitted 'close' (so its close line and metrics are out). Idempotent.
   */
  async close(): Promise<void> {
    this.isClosing = true;
    this.refillTimer?.clear();
    const conns = [...this.connections()];
    const closed = conns.map((c) => (c.socket.closed ? undefined : once(c.socket, 'close')));
    for (const conn of conns) this.fail(conn, 'local_shutdown', true);
    // Waiters loop back into acquire and see isClosing.
    while (this.waiters.length > 0) this.wakeWaiter();
    await Promise.all(closed);
  }

  /** Retires a connection: records the reason (first cause wins) and destroys the socket. */
  fail(conn: UpstreamConn, reason: CloseReason, reset = false): void {
    conn.recordReason(reason);
    this.apply(conn, { type: 'fail', reason: conn.closeReason ?? reason }, reset);
  }

  /** Puts a leased connection back as idle (http keep-alive), or retires it when past its max age. */
  release(conn: UpstreamConn): void {
    if (conn.state.state !== 'leased') return;
    const now = this.clock.now();
    if (now >= conn.maxAgeAt) {
      this.fail(conn, 'max_age');
      return;
    }
    const s = conn.socket;
    if (conn.closeReason !== undefined || s.destroyed || s.readableEnded) {
      this.fail(conn, conn.closeReason ?? 'peer_closed');
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
    this.apply(conn, RELEASE, false, now);
    this.wakeWaiter();
  }

  /**
   * Retires every idle connection to the same remote address and port as `dead` (sibling eviction). Leased
   * siblings are left to their own request (the listener's early-retry sweep watches those).
   */
  evictSiblings(dead: UpstreamConn): number {
    const addr = dead.remoteAddress;
    const port = dead.remotePort;
    if (addr === undefined) return 0;
    let n = 0;
    for (const c of [...this.sets.idle]) {
      if (c !== dead && c.remoteAddress === addr && c.remotePort === port) {
        this.fail(c, 'sibling_evicted');
        n++;
      }
    }
    return n;
  }

  private connect(forLease: boolean, signal: AbortSignal | undefined): Promise<UpstreamConn> {
    const { host, port } = this.config.upstream;
    const startedAt = this.clock.now();
    const socket = net.connect({ host, port, allowHalfOpen: true });
    const conn = new UpstreamConn(this.nextId++, this.config.name, socket, startedAt, forLease);
    this.sets.connecting.add(conn);
    return new Promise<UpstreamConn>((resolve, reject) => {
      let settled = false;
      const settleFailure = (reason: AcquireFailure, err: unknown): void => {
        if (settled) return;
        settled = true;
        timer.clear();
        signal?.removeEventListener('abort', onAbort);
        this.apply(conn, { type: 'connect_failed', reason }, true);
        this.emit('connectFailed', reason, err, this.clock.now() - startedAt);
        if (!forLease) this.scheduleRefill();
        reject(new AcquireError(reason, `connect to ${host}:${port} failed: ${reason}`, { cause: err }));
      };
      // The downstream went away while we connected: not an upstream failure, so nothing is counted.
      const onAbort = (): void => {
        if (settled) return;
        settled = true;
        timer.clear();
        this.fail(conn, 'downstream_closed');
        reject(new AcquireError('connect_error', 'aborted: the downstream went away'));
      };
      const timer = this.clock.setTimeout(() => settleFailure('connect_timeout', undefined), this.config.connectTimeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      // Error listener in the same tick the socket is created (STYLE §9).
      socket.on('error', (err) => {
        if (!settled) settleFailure(classifyConnectError(err, false), err);
        else conn.recordReason(classifyError(err, { hasDataInFlight: conn.hasDataInFlight, userTimeoutMs: this.config.keepalive.userTimeoutMs }), err);
      });
      socket.on('end', () => this.onEnd(conn));
      socket.on('close', () => this.onClose(conn));
      socket.once('connect', () => {
        if (settled) return;
        settled = true;
        timer.clear();
        signal?.removeEventListener('abort', onAbort);
        const now = this.clock.now();
        conn.connectedAt = now;
        conn.lastRecvAt = now;
        conn.remoteAddress = socket.remoteAddress;
        conn.remotePort = socket.remotePort;
        conn.localPort = socket.localPort;
        conn.maxAgeAt = now + this.config.maxAgeMs * (0.9 + 0.2 * Math.random());
        const result = applySockopts(socket, this.config.keepalive);
        conn.sockopts = result.effective;
        for (const f of result.failures) this.emit('sockoptFailed', conn, f);
        if (!forLease) this.refillFailures = 0;
        this.apply(conn, { type: 'connected' });
        this.emit('connected', conn, now - startedAt);
        resolve(conn);
      });
    });
  }

  private onEnd(conn: UpstreamConn): void {
    conn.recordReason(conn.hasLocalEnded ? 'downstream_closed' : 'peer_closed');
    // An idle connection that got FIN is useless; a leased one is the proxy's to half-close.
    if (conn.state.state === 'idle') this.fail(conn, 'peer_closed');
  }

  private onClose(conn: UpstreamConn): void {
    const wasConnected = conn.connectedAt !== undefined;
    this.apply(conn, { type: 'fail', reason: conn.closeReason ?? 'other' });
    // A slot is free now (a waiter may connect).
    this.wakeWaiter();
    if (!wasConnected) return;
    const now = this.clock.now();
    const s = conn.socket;
    this.emit('closed', conn, {
      reason: conn.closeReason ?? 'other',
      ageMs: now - (conn.connectedAt ?? now),
      sinceLastRecvMs: now - conn.lastRecvAt,
      bytesRead: s.bytesRead,
      bytesWritten: s.bytesWritten,
      err: conn.closeError,
    });
    if (this.options.siblingEviction === true && conn.closeReason !== undefined && DEAD_PEER_REASONS.has(conn.closeReason)) {
      this.evictSiblings(conn);
    }
    this.fill();
  }

  /** Runs one transition and carries out its effects. The only place that moves a connection between sets. */
  private apply(conn: UpstreamConn, event: ConnEvent, reset = false, now = this.clock.now()): void {
    const from = conn.state;
    const { next, effects } = transition(from, event, now);
    if (next !== from) this.moveTo(conn, next);
    for (const effect of effects) {
      switch (effect) {
        case 'arm_idle_timers':
          this.armIdleTimers(conn, now);
          break;
        case 'clear_idle_timers':
          this.clearIdleTimers(conn);
          break;
        case 'destroy':
          this.clearTimers(conn);
          if (reset && !conn.socket.destroyed && conn.socket.readyState === 'open') conn.socket.resetAndDestroy();
          else conn.socket.destroy();
          break;
      }
    }
  }

  private moveTo(conn: UpstreamConn, next: UpstreamConn['state']): void {
    const prev = conn.state.state;
    if (prev !== 'closed') this.sets[prev].delete(conn);
    conn.state = next;
    if (next.state !== 'closed') this.sets[next.state].add(conn);
  }

  private readonly idleDataHandlers = new WeakMap<UpstreamConn, (chunk: Buffer) => void>();

  /**
   * Arms the idle and max-age timers, lazily. A keep-alive connection goes idle once per request; arming two
   * fresh timers on every release and clearing them at the next lease cost ~2-3 µs per request (Node's timer
   * list insertion). So a connection keeps at most one idle and one max-age timer across lease/release cycles,
   * and each re-checks the state when it fires: an idle connection whose idle period is over is retired, one
   * still inside it re-arms for what remains, a leased one drops the timer (the next release arms it again).
   * What is observable stays as before: eviction at idleSince + idle timeout, or at maxAgeAt while idle
   * (release() retires a leased connection past its max age). Both timers are cleared on destroy.
   */
  private armIdleTimers(conn: UpstreamConn, now: number): void {
    conn.maxAgeTimer ??= this.clock.setTimeout(() => this.onMaxAgeTimer(conn), Math.max(0, conn.maxAgeAt - now));
    // The lower of the configured idle timeout and the upstream's Keep-Alive hint (already minus a margin):
    // we retire the socket before the upstream closes it, so a request never races the upstream's FIN.
    const idleMs = Math.min(this.options.idleTimeoutMs ?? Infinity, conn.idleTimeoutHintMs ?? Infinity);
    conn.idleDeadline = now + idleMs;
    // A timer already armed to fire before the new deadline is kept (it re-arms for the rest when it fires).
    if (idleMs !== Infinity && conn.idleDeadline < conn.idleTimerAt) {
      conn.idleTimer?.clear();
      this.armIdleTimer(conn, idleMs, now);
    }
    if (this.options.hasOwnReader === true) return;
    // Keep reading while idle: a paused socket would not notice FIN, RST or a keepalive death (libuv only
    // polls a socket it reads from). Bytes that arrive are kept for the next lease.
    const onData = (chunk: Buffer): void => {
      conn.noteReceived(this.clock.now());
      conn.idleData.push(chunk);
      conn.idleDataBytes += chunk.length;
      if (conn.idleDataBytes > MAX_IDLE_DATA_BYTES) this.fail(conn, 'protocol_error');
    };
    this.idleDataHandlers.set(conn, onData);
    conn.socket.on('data', onData);
    conn.socket.resume();
  }

  private armIdleTimer(conn: UpstreamConn, ms: number, now: number): void {
    conn.idleTimerAt = now + ms;
    conn.idleTimer = this.clock.setTimeout(() => this.onIdleTimer(conn), ms);
  }

  private onIdleTimer(conn: UpstreamConn): void {
    conn.idleTimer = undefined;
    conn.idleTimerAt = Infinity;
    if (conn.state.state !== 'idle') return;
    const now = this.clock.now();
    const leftMs = conn.idleDeadline - now;
    // Under 1 ms left is due: timers have 1 ms granularity, and the old per-period timer fired just as early.
    if (leftMs < 1) this.fail(conn, 'idle_evicted');
    else this.armIdleTimer(conn, leftMs, now);
  }

  private onMaxAgeTimer(conn: UpstreamConn): void {
    conn.maxAgeTimer = undefined;
    if (conn.state.state === 'idle') this.fail(conn, 'max_age');
  }

  /** Leaving idle: stop the idle reader. The timers stay armed and re-check the state when they fire. */
  private clearIdleTimers(conn: UpstreamConn): void {
    const onData = this.idleDataHandlers.get(conn);
    if (onData !== undefined) {
      conn.socket.removeListener('data', onData);
      this.idleDataHandlers.delete(conn);
      conn.socket.pause();
    }
  }

  /** Destroyed: clear every timer (and the idle reader). */
  private clearTimers(conn: UpstreamConn): void {
    conn.idleTimer?.clear();
    conn.idleTimer = undefined;
    conn.idleTimerAt = Infinity;
    conn.maxAgeTimer?.clear();
    conn.maxAgeTimer = undefined;
    this.clearIdleTimers(conn);
  }

  private fill(): void {
    if (this.isClosing || this.config.warmSpares === 0 || this.refillTimer !== undefined) return;
    let spares = this.sets.idle.size;
    for (const c of this.sets.connecting) if (c.state.state === 'connecting' && !c.state.forLease) spares++;
    while (spares < this.config.warmSpares && this.stats().total < this.config.maxConnections) {
      this.connect(false, undefined).catch(() => {
        // Reported through the connectFailed event; the refill backs off.
      });
      spares++;
    }
  }

  private scheduleRefill(): void {
    if (this.isClosing || this.refillTimer !== undefined) return;
    this.refillFailures++;
    const delay = Math.min(MAX_REFILL_BACKOFF_MS, 100 * 2 ** Math.min(this.refillFailures, 10));
    this.refillTimer = this.clock.setTimeout(() => {
      this.refillTimer = undefined;
      this.fill();
    }, delay);
  }
}

/**
 * A connection handed to one user. `release()` and `destroy()` are idempotent; the first call ends the lease.
 */
export class Lease {
  private isEnded = false;
  constructor(
    private readonly pool: Pool,
    readonly conn: UpstreamConn,
  ) {}

  get socket(): net.Socket {
    return this.conn.socket;
  }

  /** Bytes that arrived while the connection was idle; the caller must forward them first. */
  takeIdleData(): Buffer[] {
    const data = this.conn.idleData;
    this.conn.idleData = [];
    this.conn.idleDataBytes = 0;
    return data;
  }

  /** Half-closes towards the upstream (we send FIN) because the downstream did. */
  end(): void {
    this.conn.hasLocalEnded = true;
    this.conn.socket.end();
  }

  /** Returns the connection to the idle set (keep-alive reuse). */
  release(): void {
    if (this.isEnded) return;
    this.isEnded = true;
    this.pool.release(this.conn);
  }

  /** Retires the connection with a reason; `reset` sends RST instead of FIN. */
  destroy(reason: CloseReason, reset = false): void {
    if (this.isEnded) return;
    this.isEnded = true;
    this.pool.fail(this.conn, reason, reset);
  }
}
